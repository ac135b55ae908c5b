"""Shared pytest set-up for tests/.

``artifacts`` is ``test-artifacts/`` at the repository root (gitignored): browser screenshots and
pytest-mpl's failed-comparison images land there, to be looked at after a run or kept by CI.

Nothing here touches environment variables such as ``MPLBACKEND``: nbval starts the notebooks'
kernels from this process, and they must see the environment a student's kernel sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.project import ROOT

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` (created on demand)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

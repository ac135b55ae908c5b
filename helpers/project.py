"""Facts about the project itself, kept in one place.

``REPO_URL`` is where the series lives on GitHub. ``tools/nb.py`` writes it into every notebook's
Colab set-up cell and navigation bar, and the README's Colab links are built from it; a test checks
that they all agree.
"""

REPO_URL = "https://github.com/maskrcnn-step-by-step/maskrcnn-step-by-step"
"""The GitHub repository of the series (no trailing slash)."""

BRANCH = "main"
"""The branch that Colab links open."""


def colab_url(notebook_name: str) -> str:
    """The "Open in Colab" address of ``notebooks/<notebook_name>``."""
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{BRANCH}/notebooks/{notebook_name}"


from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the folder holding ``helpers/``, ``notebooks/`` and ``data/``)."""

DATA_DIR = ROOT / "data"
"""Shipped data, checkpoints and results (small files, licences beside them)."""

NOTEBOOKS_DIR = ROOT / "notebooks"
"""The notebooks of the series (their list, in reading order, is :data:`helpers.series.SERIES`)."""

SHAPES_CHECKPOINT = DATA_DIR / "shapes_maskrcnn.pt"
"""The shipped shapes Mask R-CNN trained in notebook 09 (loaded by notebooks 08-11)."""

SHAPES_TRAIN_LOG = DATA_DIR / "shapes_train_log.json"
"""The training log of :data:`SHAPES_CHECKPOINT`, with the command that produced it."""

ABLATION_RESULTS = DATA_DIR / "ablation_results.json"
"""The results of notebook 10's RoIAlign-versus-RoIPool ablation."""

ABLATION_CHECKPOINTS = DATA_DIR / "ablation"
"""The seed-0 models of the ablation (``<op>_stride<stride>_seed0.pt``)."""

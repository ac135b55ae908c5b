"""Colab, rehearsed (``tools/colab_rehearsal.py``), and the set-up cell it relies on.

- The stored set-up cell, run as Colab runs it (a stand-in ``google.colab`` imported first, the
  clone pointed at a local copy with ``MASKRCNN_SBS_REPO_URL`` / ``MASKRCNN_SBS_CLONE_DIR``):
  it clones, puts the clone first on ``sys.path``, changes into its ``notebooks/`` and calls
  ``enable_custom_widget_manager``; outside Colab it does nothing and prints nothing.
- The rehearsal reports a notebook that raises as failed, naming the cell, and rejects bad arguments.
- ``test_colab_rehearsal``: every notebook of the series, top to bottom, in the rehearsal's fresh
  environment with ipywidgets 7.7.5 and the pinned torch/torchvision, finishes without an error and
  without writing to stderr (several minutes: it is the same work as nbval, in one more environment).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import torchvision

from helpers.project import NOTEBOOKS_DIR, ROOT
from helpers.series import SERIES

_spec = importlib.util.spec_from_file_location("colab_rehearsal", ROOT / "tools" / "colab_rehearsal.py")
rehearsal = importlib.util.module_from_spec(_spec)
sys.modules["colab_rehearsal"] = rehearsal
_spec.loader.exec_module(rehearsal)


def setup_cell() -> str:
    nb = nbformat.read(NOTEBOOKS_DIR / SERIES[0].file, as_version=4)
    return next(c.source for c in nb.cells if "colab-setup" in c.metadata.get("tags", []))


REPORT = "\nimport json, os, sys\nprint('REPORT ' + json.dumps({'cwd': os.getcwd(), 'path0': sys.path[0]}))\n"


def _run(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def test_setup_cell_clones_the_local_copy(tmp_path: Path) -> None:
    stand_in = rehearsal.write_stand_in(tmp_path / "stand-in")
    clone = tmp_path / "content" / "maskrcnn-step-by-step"
    clone.parent.mkdir()
    log = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"PYTHONPATH": str(stand_in), rehearsal.ENV_REPO: f"file://{ROOT}",
                rehearsal.ENV_DIR: str(clone), rehearsal.ENV_LOG: str(log)})
    result = _run("import google.colab\n" + setup_cell() + REPORT, clone.parent, env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("REPORT "), result.stdout  # nothing else printed
    where = json.loads(lines[0][len("REPORT "):])
    assert where == {"cwd": str(clone / "notebooks"), "path0": str(clone)}
    assert (clone / "helpers" / "__init__.py").is_file()
    assert {p.name for p in (clone / "notebooks").glob("*.ipynb")} >= {e.file for e in SERIES}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["call"] for c in calls] == ["enable_custom_widget_manager"]


def test_setup_cell_outside_colab_does_nothing(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({rehearsal.ENV_REPO: f"file://{ROOT}", rehearsal.ENV_DIR: str(clone)})
    result = _run(setup_cell() + REPORT, tmp_path, env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert json.loads(result.stdout.split("REPORT ", 1)[1])["cwd"] == str(tmp_path)
    assert result.stdout.startswith("REPORT ")
    assert not clone.exists()


def test_rehearsal_reports_a_failing_notebook(tmp_path: Path) -> None:
    overlays = [rehearsal.install_overlay("ipywidgets7", rehearsal.IPYWIDGETS7),
                rehearsal.write_stand_in(tmp_path / "stand-in")]
    python = rehearsal.fresh_env(tmp_path / "env", overlays)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import ipywidgets\nx = 1"),
                                         nbformat.v4.new_code_cell("raise ValueError('boom')"),
                                         nbformat.v4.new_code_cell("print('never')")])
    nbformat.write(nb, tmp_path / "broken.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    report = rehearsal.execute_notebook(tmp_path / "broken.ipynb", python, tmp_path, env, timeout=120)
    assert report["status"] == "failed"
    assert "cell 1" in report["error"] and "ValueError" in report["error"] and "boom" in report["error"]
    # the fresh environment: ipywidgets 7.7 first, and the series' helpers not importable by itself
    probe = subprocess.run([str(python), "-c", "import ipywidgets, importlib.util; "
                            "print(ipywidgets.__version__, importlib.util.find_spec('helpers'))"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert probe.stdout.split() == ["7.7.5", "None"], probe.stdout + probe.stderr


def test_rehearsal_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"only: no notebook numbered \['99'\]"):
        rehearsal.rehearse(only=["99"])
    with pytest.raises(ValueError, match="torch and torchvision must be given together"):
        rehearsal.rehearse(torch="2.9.1")


@pytest.mark.timeout(3600)
def test_colab_rehearsal(tmp_path: Path) -> None:
    report = rehearsal.rehearse(workdir=tmp_path, strict=True, progress=False)
    failed = {r["notebook"]: r["error"] for r in report["notebooks"] if r["status"] != "ok"}
    assert failed == {}
    assert [r["notebook"] for r in report["notebooks"]] == [e.file for e in SERIES]
    assert report["versions"]["ipywidgets"] == "7.7.5"
    assert report["versions"]["torch"] == torch.__version__
    assert report["versions"]["torchvision"] == torchvision.__version__
    print(f"\ncolab rehearsal: {len(report['notebooks'])} notebooks in {report['seconds']:.0f} s: "
          + ", ".join(f"{r['notebook'].split('_')[0]} {r['seconds']:.0f} s" for r in report["notebooks"]))

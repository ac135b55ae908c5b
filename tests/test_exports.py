"""One copy of each piece: what a notebook writes in the open is what ``helpers`` holds.

- Every ``#@save helpers.<module>`` cell of a notebook stands verbatim in a marked block of
  ``helpers/<module>.py`` (``tools/nb.py export --check``), and the check catches drift either way:
  a block edited in ``helpers`` or a cell edited in a notebook.
- No private name (a leading underscore) crosses a module boundary: what another module, a test or
  a benchmark needs from ``helpers`` is public and documented.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.project import ROOT
from helpers.series import notebook_files


def run_export_check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "tools" / "nb.py"), "export", "--check"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def saved_cells(root: Path) -> list[tuple[Path, int, str]]:
    found = []
    for path in notebook_files(root / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and cell.source.startswith("#@save helpers."):
                found.append((path, i, cell.source))
    return found


def test_exported_cells_and_helpers_agree() -> None:
    result = run_export_check(ROOT)
    assert result.returncode == 0, f"tools/nb.py export --check failed:\n{result.stdout}{result.stderr}"


def test_every_notebook_that_rebuilds_an_op_exports_it() -> None:
    """The teaching versions of notebooks 01-03 live once, in their notebooks, exported into helpers.roi."""
    import helpers.roi as roi

    names = {re.search(r"^(?:def|class) (\w+)", src, re.M).group(1) for _, _, src in saved_cells(ROOT)}
    for name in ("bilinear", "bilinear_tv", "roi_align_loop", "axis_rule", "c_round", "roi_pool_loop"):
        assert name in names, f"{name} is not written in a #@save cell"
        assert name in roi.__all__ and callable(getattr(roi, name))


def test_saved_cells_only_define() -> None:
    """A #@save cell is copied into helpers verbatim: it must define things, not run a demonstration."""
    for path, i, src in saved_cells(ROOT):
        tree = ast.parse(src)
        for node in tree.body:
            ok = isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom, ast.Assign,
                                   ast.AnnAssign)) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
            assert ok, f"{path.name} cell {i}: a #@save cell may only define (found {type(node).__name__} at line {node.lineno})"


@pytest.fixture()
def repo_copy(tmp_path: Path) -> Path:
    for folder in ("tools", "helpers", "notebooks"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert run_export_check(tmp_path).returncode == 0
    return tmp_path


def test_check_catches_a_broken_copy_in_helpers(repo_copy: Path) -> None:
    path = repo_copy / "helpers" / "roi.py"
    text = path.read_text()
    broken = text.replace("return out  # [K, C, PH, PW]", "return out * 1.0001  # [K, C, PH, PW]", 1)
    if broken == text:  # the roi_align_loop block ends with a plain return
        start = text.index("def roi_align_loop(")
        broken = text[:start] + text[start:].replace("    return out\n", "    return out * 1.0001\n", 1)
    assert broken != text
    path.write_text(broken)
    result = run_export_check(repo_copy)
    assert result.returncode == 1 and "helpers/roi.py" in result.stdout


def test_check_catches_an_edited_notebook_cell(repo_copy: Path) -> None:
    path = repo_copy / "notebooks" / "03_roipool_vs_roialign.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("#@save") and "def c_round" in c.source)
    cell.source = cell.source.replace(">= 0.5", "> 0.5")
    nbformat.write(nb, path)
    result = run_export_check(repo_copy)
    assert result.returncode == 1 and "helpers/roi.py" in result.stdout
    # and `export` repairs it: helpers follows the notebook
    subprocess.run([sys.executable, str(repo_copy / "tools" / "nb.py"), "export"], cwd=repo_copy, check=True,
                   capture_output=True, timeout=120)
    assert run_export_check(repo_copy).returncode == 0
    assert "(v - t).abs() > 0.5" in (repo_copy / "helpers" / "roi.py").read_text()


def test_check_catches_a_block_without_its_cell(repo_copy: Path) -> None:
    path = repo_copy / "notebooks" / "01_bilinear_interpolation.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("#@save"))
    cell.source = cell.source.replace("#@save helpers.roi\n", "")
    nbformat.write(nb, path)
    result = run_export_check(repo_copy)
    assert result.returncode == 1 and "has no #@save cell" in result.stdout


def _display(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def _module_aliases(tree: ast.AST) -> set[str]:
    """Names bound to a helpers module: ``import helpers.roi as R``, ``from helpers import roi``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name.startswith("helpers")}
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
            folder = ROOT / node.module.replace(".", "/")
            names |= {a.asname or a.name for a in node.names
                      if (folder / f"{a.name}.py").is_file() or (folder / a.name).is_dir()}
    return names


def private_names_crossing(paths: list[Path], torchvision_too: bool = True) -> list[str]:
    """One line for every underscore name a file takes from a ``helpers`` module it is not, and, with
    ``torchvision_too``, from torchvision's private modules and functions (they change between the
    torchvision versions readers have: helpers must not rely on them; tests may, as references)."""
    problems = []
    for path in paths:
        tree = ast.parse(path.read_text())
        own = ".".join(path.relative_to(ROOT).with_suffix("").parts) if path.is_relative_to(ROOT) else ""
        aliases = _module_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("helpers", "torchvision"):
                names = [a.name for a in node.names]
                private_module = any(part.startswith("_") for part in node.module.split("."))
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                from_torchvision = node.module.startswith("torchvision")
                if (private and not from_torchvision and node.module != own) or \
                        (torchvision_too and from_torchvision and (private or private_module)):
                    problems.append(f"{_display(path)}:{node.lineno}: from {node.module} import {', '.join(names)}")
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                problems.append(f"{_display(path)}:{node.lineno}: {node.value.id}.{node.attr}")
            # monkeypatch.setattr(R, "_NAME", ...) / getattr(roi, "_name"): the same, by string
            if (isinstance(node, ast.Call) and len(node.args) >= 2 and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in aliases and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str) and node.args[1].value.startswith("_")
                    and not node.args[1].value.startswith("__")):
                problems.append(f"{_display(path)}:{node.lineno}: {node.args[0].id}.{node.args[1].value} (by name)")
    return problems


def test_no_private_name_crosses_a_module_boundary() -> None:
    def files(folder: str) -> list[Path]:
        return [p for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]

    problems = private_names_crossing(files("helpers"))
    problems += private_names_crossing(files("tests") + files("benchmarks") + files("tools"), torchvision_too=False)
    assert not problems, "private names used across modules (make them public and documented):\n" + "\n".join(problems)


def test_private_name_check_catches_one(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from helpers.roi import _check_input\nfrom helpers import roi as R\nR._check_input\n"
                     "from torchvision.ops.poolers import _setup_scales\nfrom torchvision.ops._utils import check_roi_boxes_shape\n"
                     "from helpers.roi import roi_align\nmonkeypatch.setattr(R, '_CHUNK', 1)\n")
    problems = private_names_crossing([probe])
    assert len(problems) == 5, problems

"""Maintain the notebooks: navigation bars, Colab set-up cells, the README's table, and re-execution in place.

    python tools/nb.py nav              # rewrite the generated cells of every notebook and the README table
    python tools/nb.py nav --check      # exit 1 if anything generated is stale (run by the tests)
    python tools/nb.py execute          # nav, then re-execute and re-save every notebook in place
    python tools/nb.py execute notebooks/02_roi_align.ipynb   # just one (or several)
    python tools/nb.py export           # write the notebooks' ``#@save`` cells into helpers/
    python tools/nb.py export --check   # exit 1 if helpers/ and the notebooks have drifted (run by the tests)

Generated cells are found by their cell tag and rewritten in place; everything else is yours:

- ``nav-top``      first cell: previous · contents · next · Open in Colab
- ``colab-setup``  the Colab set-up code cell (does nothing outside Colab)
- ``nav-bottom``   last cell: the same bar again
- ``pipeline-strip`` right after the title cell: the pipeline's stages in one line of Markdown, each
  linking its notebook, this notebook's stage in bold with a pin (from each notebook's ``stage`` in
  the manifest, so the strip cannot drift from the map that notebook 00 draws)

The list of notebooks, their titles and the README's "what you learn" lines come from one place,
:data:`helpers.series.SERIES`; ``nav`` also rewrites the README's table of notebooks (between
``<!-- notebooks:start -->`` and ``<!-- notebooks:end -->``). ``nav`` (and ``nav --check``) fails
when a notebook's heading (the first ``# `` heading of its first markdown cell that is not
generated) is not ``# NN · <title>`` of the manifest (``NN``: two digits, or two digits and a letter for
the later part of a split notebook, ``05b``), or when ``notebooks/`` holds a notebook that
the manifest lacks, or lacks one it lists. Adding a notebook: the file, one line in
``helpers/series.py``, then ``python tools/nb.py nav``.
Execution uses a fresh ``python3`` kernel per notebook, stores widget state complete (so GitHub
and nbviewer render it), and drops per-cell timing metadata so that re-saving is deterministic.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Sequence

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `helpers`, installed or not
from helpers.project import NOTEBOOKS_DIR, REPO_URL, ROOT, colab_url  # noqa: E402
from helpers.series import (PIPELINE_PATH, SERIES, STAGE_LABELS, STAGES, Notebook, check_series,  # noqa: E402
                            notebook_files)

NOTEBOOKS = NOTEBOOKS_DIR
README = ROOT / "README.md"
TABLE_START, TABLE_END = "<!-- notebooks:start -->", "<!-- notebooks:end -->"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

COLAB_DIR = "/content/maskrcnn-step-by-step"
COLAB_PACKAGES = ["pycocotools", "tqdm"]
# Environment variables the set-up cell reads (only the Colab rehearsal sets them): where to clone from, and into.
ENV_REPO, ENV_DIR = "MASKRCNN_SBS_REPO_URL", "MASKRCNN_SBS_CLONE_DIR"

NAV_TOP, NAV_BOTTOM, SETUP, STRIP = "nav-top", "nav-bottom", "colab-setup", "pipeline-strip"
GENERATED = {NAV_TOP, NAV_BOTTOM, SETUP, STRIP}
PIN = "\N{ROUND PUSHPIN}"


def notebook_paths(series: Sequence[Notebook] = SERIES, notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """The series in reading order, as listed in :data:`helpers.series.SERIES`."""
    return [notebooks_dir / entry.file for entry in series]


def series_problems(series: Sequence[Notebook] = SERIES, notebooks_dir: Path = NOTEBOOKS) -> list[str]:
    """Where the manifest and the notebook files disagree (and what is wrong with the manifest itself)."""
    problems = check_series(series)
    on_disk = {p.name for p in notebook_files(notebooks_dir)}
    listed = {entry.file for entry in series}
    for name in sorted(on_disk - listed):
        problems.append(f"{name} is not in helpers/series.py: add a line for it to SERIES")
    for name in sorted(listed - on_disk):
        problems.append(f"helpers/series.py lists {name}, which is not in {notebooks_dir.name}/")
    return problems


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not (_tags(cell) & GENERATED):
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise ValueError("notebook has no '# ' title in its first markdown cell")


def nav_markdown(paths: list[Path], i: int, titles: list[str]) -> str:
    parts = []
    parts.append(f"[← {titles[i - 1]}]({paths[i - 1].name})" if i > 0 else "← (start of the series)")
    parts.append("[Contents](../README.md)")
    parts.append(f"[{titles[i + 1]} →]({paths[i + 1].name})" if i + 1 < len(paths) else "(end of the series) →")
    return " · ".join(parts) + " · " + colab_badge(paths[i].name)


def pipeline_strip(series: Sequence[Notebook], i: int) -> str:
    """The pipeline strip of notebook ``i`` of ``series``, in plain Markdown (GitHub strips styles
    and scripts from notebook Markdown; bold, links, arrows and an emoji survive there and in Colab).

    First line: the path of one image, ``image → backbone + FPN → RPN → RoIAlign → box head → mask
    head → masks`` (:data:`helpers.series.PIPELINE_PATH`), each stage linking the notebook that
    rebuilds it; second line: RoIAlign's foundations and the notebooks that use the whole model. The
    stage of notebook ``i`` is bold, pinned and not linked; a notebook without a stage (00, the map
    itself) pins nothing and says that it draws the whole map.
    """
    here = series[i]
    if here.stage is not None and here.stage not in STAGES:
        raise ValueError(f"series[{i}].stage must be one of {STAGES} or None, got {here.stage!r}")

    def item(entry: Notebook, label: str) -> str:
        if entry.number == here.number:
            return f"{PIN} **{label} (this notebook)**"
        return f"[{label}]({entry.file})"

    def stage_items(stage: str) -> list[str]:
        label = STAGE_LABELS[stage]
        return [item(e, f"{label} {e.number}" if stage != "whole model" else e.number)
                for e in series if e.stage == stage]

    path = " → ".join(["image", *(" / ".join(stage_items(s)) or STAGE_LABELS[s] for s in PIPELINE_PATH), "masks"])
    foundations = " · ".join(x for s in STAGES if s not in PIPELINE_PATH and s != "whole model"
                             for x in stage_items(s))
    used = " · ".join(stage_items("whole model"))
    lead = ("**The pipeline** (this notebook draws it in full):" if here.stage is None
            else "**Where this notebook sits in the pipeline:**")
    lines = [f"{lead} {path}"]
    second = []
    if foundations:
        second.append(f"RoIAlign's foundations: {foundations}")
    if used:
        second.append(f"the whole model at work: {used}")
    if second:
        lines.append(" — ".join(second))
    return "\n\n".join(lines)


def colab_badge(notebook_name: str) -> str:
    """The "Open In Colab" badge linking ``notebooks/<notebook_name>``, in Markdown."""
    return f"[![Open In Colab]({COLAB_BADGE})]({colab_url(notebook_name)})"


def readme_table(series: Sequence[Notebook] = SERIES, link_dir: str = "notebooks") -> str:
    """The README's table of notebooks: number, title (linked), what you learn, Colab badge."""
    rows = ["| # | Notebook | What you learn | |", "|---|---|---|---|"]
    for entry in series:
        learn = entry.learn.replace("|", "\\|")
        rows.append(f"| {entry.number} | [{entry.title}]({link_dir}/{entry.file}) | {learn} | "
                    f"{colab_badge(entry.file)} |")
    return "\n".join(rows)


def with_readme_table(readme_text: str, table: str) -> str:
    """``readme_text`` with everything between the table markers replaced by ``table``."""
    start, end = readme_text.find(TABLE_START), readme_text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError(f"README lacks the markers {TABLE_START} ... {TABLE_END} around the table of notebooks")
    return readme_text[:start + len(TABLE_START)] + "\n" + table + "\n" + readme_text[end:]


def setup_source() -> str:
    return f'''# Colab set-up (written by tools/nb.py). Outside Colab this cell does nothing and prints nothing.
import sys

if "google.colab" in sys.modules:
    import importlib.util, os, subprocess
    REPO_URL = "{REPO_URL}"
    # tools/colab_rehearsal.py sets these two to rehearse on a local clone; on Colab they are unset
    REPO_URL = os.environ.get("{ENV_REPO}", REPO_URL)
    CLONE_DIR = os.environ.get("{ENV_DIR}", "{COLAB_DIR}")
    if not os.path.isdir(CLONE_DIR):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", REPO_URL, CLONE_DIR], check=True)
    missing = [p for p in {COLAB_PACKAGES!r} if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    sys.path.insert(0, CLONE_DIR)
    os.chdir(os.path.join(CLONE_DIR, "notebooks"))
    from google.colab import output
    output.enable_custom_widget_manager()'''


def _cell(kind: str, source: str, tag: str):
    make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
    cell = make(source)
    cell.metadata["tags"] = [tag]
    return cell


def apply_nav(nb, paths: list[Path], i: int, titles: list[str], series: Sequence[Notebook] = SERIES) -> None:
    """Rewrite (or insert) the four generated cells of notebook ``i`` (of ``paths`` and ``series``)."""
    bar = nav_markdown(paths, i, titles)
    wanted = {
        NAV_TOP: ("markdown", bar),
        NAV_BOTTOM: ("markdown", bar),
        SETUP: ("code", setup_source()),
        STRIP: ("markdown", pipeline_strip(series, i)),
    }
    found = {tag: None for tag in GENERATED}
    for idx, cell in enumerate(nb.cells):
        for tag in _tags(cell) & GENERATED:
            found[tag] = idx
    for tag, idx in found.items():
        kind, src = wanted[tag]
        if idx is not None:
            nb.cells[idx].source = src
    if found[NAV_TOP] is None:
        nb.cells.insert(0, _cell("markdown", bar, NAV_TOP))
    for tag, kind in ((SETUP, "code"), (STRIP, "markdown")):  # the strip ends up first, then the set-up
        if found[tag] is None:
            # right after the title cell (the first markdown cell that is not generated)
            pos = next(k for k, c in enumerate(nb.cells)
                       if c.cell_type == "markdown" and not (_tags(c) & GENERATED)) + 1
            nb.cells.insert(pos, _cell(kind, wanted[tag][1], tag))
    if found[NAV_BOTTOM] is None:
        nb.cells.append(_cell("markdown", bar, NAV_BOTTOM))


def merge_streams(outputs: list) -> list:
    """Consecutive ``stream`` outputs of the same name (stdout, stderr) as one output, as a reader sees
    them: how the kernel happened to flush a cell's prints must not change the saved notebook."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = merged[-1]["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def normalise(nb) -> None:
    """Metadata that must hold in every committed notebook, and one output per stream of a cell."""
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata.setdefault("language_info", {})["name"] = "python"
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    nbformat.validator.normalize(nb)


def nav(check: bool = False, series: Sequence[Notebook] = SERIES, notebooks_dir: Path = NOTEBOOKS,
        readme: Path = README) -> int:
    """Rewrite (or, with ``check``, only compare) the generated cells of every notebook of ``series``
    and the README's table of notebooks; return the exit status (1: stale, or a disagreement with
    the manifest, printed)."""
    problems = series_problems(series, notebooks_dir)
    if problems:
        print("the notebooks and helpers/series.py disagree:\n  " + "\n  ".join(problems))
        return 1
    paths = notebook_paths(series, notebooks_dir)
    nbs = [nbformat.read(p, as_version=4) for p in paths]
    titles = [entry.heading for entry in series]
    stale = []
    for i, (path, nb, entry) in enumerate(zip(paths, nbs, series)):
        try:
            heading = title_of(nb)
        except ValueError as exc:
            heading = f"(none: {exc})"
        if heading != entry.heading:
            problems.append(f"{path.name}: its heading is '# {heading}', helpers/series.py says '# {entry.heading}'")
        before = nbformat.writes(nb)
        apply_nav(nb, paths, i, titles, series)
        after = nbformat.writes(nb)
        if before != after:
            stale.append(path.name)
            if not check:
                nbformat.write(nb, path)
    text = readme.read_text(encoding="utf-8")
    link_dir = Path(os.path.relpath(notebooks_dir, readme.parent)).as_posix()
    wanted = with_readme_table(text, readme_table(series, link_dir))
    if wanted != text:
        stale.append(readme.name)
        if not check:
            readme.write_text(wanted, encoding="utf-8")
    if problems:
        print("headings that disagree with helpers/series.py (edit the notebook or the manifest):\n  "
              + "\n  ".join(problems))
    if check and stale:
        print("stale generated cells (run `python tools/nb.py nav`):", ", ".join(stale))
        return 1
    if not check:
        print(f"navigation: {len(paths)} notebooks, rewrote {len(stale)}")
    return 1 if problems else 0


def execute(paths: list[Path], timeout: int = 1800) -> None:
    from nbclient import NotebookClient

    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        normalise(nb)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                record_timing=False, resources={"metadata": {"path": str(path.parent)}})
        client.execute()
        normalise(nb)
        problems = []
        for k, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    problems.append(f"cell {k}: {out.ename}: {out.evalue}")
                if out.get("name") == "stderr":
                    problems.append(f"cell {k}: stderr: {out.text[:200]!r}")
        nbformat.write(nb, path)
        status = "OK" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems)
        print(f"executed {path.relative_to(ROOT)}: {status}")


# -- export: the functions a notebook writes in the open are the ones helpers/ holds ---------------------
# A code cell whose first line is ``#@save helpers.<module>`` (d2l's convention, with the module named)
# is copied verbatim, minus that line, into a block of helpers/<module>.py:
#
#     # @export notebooks/02_roi_align.ipynb: roi_align_loop (edit the notebook; tools/nb.py export writes this)
#     ...the cell's code...
#     # @end export roi_align_loop
#
# The block is keyed by the notebook and the first name the cell defines. `export` rewrites every block
# (a new one is appended at the end of its module, to be moved by hand if order matters); `export --check`
# fails when a block differs from its cell, a block has no cell, or a cell has no block.

SAVE = re.compile(r"^#@save\s+helpers\.(\w+)\s*$")
BLOCK = re.compile(r"^# @export (?P<nb>\S+): (?P<key>\w+) \(edit the notebook.*?\)\n(?P<body>.*?)^# @end export (?P=key)\n",
                   re.S | re.M)
DEFINES = re.compile(r"^(?:def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=", re.M)


def saved_cells(root: Path = ROOT) -> list[tuple[str, str, str, str]]:
    """Every ``#@save`` cell of the series: ``(notebook path, module, key, code)``."""
    found = []
    for path in notebook_files(root / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            first, _, rest = cell.source.partition("\n")
            m = SAVE.match(first.strip())
            if not m:
                continue
            code = rest.strip("\n") + "\n"
            d = DEFINES.search(code)
            if d is None:
                raise ValueError(f"{path.name}: a #@save cell defines nothing:\n{code[:200]}")
            found.append((f"notebooks/{path.name}", m.group(1), d.group(1) or d.group(2), code))
    return found


def block_text(nb: str, key: str, code: str) -> str:
    return (f"# @export {nb}: {key} (edit the notebook; tools/nb.py export writes this)\n"
            f"{code}# @end export {key}\n")


def export(check: bool = False, root: Path = ROOT) -> int:
    """Write (or, with ``check``, compare) every exported block of ``helpers/``; 1 if anything drifted."""
    cells = saved_cells(root)
    problems, changed = [], []
    modules = sorted({m for _, m, _, _ in cells} | {p.stem for p in (root / "helpers").glob("*.py")
                                                     if "# @export " in p.read_text()})
    for module in modules:
        path = root / "helpers" / f"{module}.py"
        if not path.is_file():
            problems.append(f"#@save names helpers.{module}, which does not exist")
            continue
        text = path.read_text()
        wanted = {(nb, key): code for nb, m, key, code in cells if m == module}
        seen = set()

        def replace(match: re.Match) -> str:
            ident = (match["nb"], match["key"])
            if ident not in wanted:
                problems.append(f"helpers/{module}.py: block {match['key']} of {match['nb']} has no #@save cell")
                return match.group(0)
            seen.add(ident)
            return block_text(*ident, wanted[ident])

        new = BLOCK.sub(replace, text)
        for ident, code in wanted.items():
            if ident not in seen:
                if check:
                    problems.append(f"helpers/{module}.py: no block for {ident[1]} of {ident[0]}")
                else:
                    new = new.rstrip("\n") + "\n\n\n" + block_text(*ident, code)
        if new != text:
            changed.append(f"helpers/{module}.py")
            if not check:
                path.write_text(new)
    if check and changed:
        problems.append("exported code differs from its notebook cell in " + ", ".join(changed)
                        + " (edit the notebook, then run `python tools/nb.py export`)")
    for p in problems:
        print(p)
    if not check:
        print(f"export: {len(cells)} cells, rewrote {len(changed)} module(s)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_nav = sub.add_parser("nav", help="rewrite navigation bars and Colab set-up cells")
    p_nav.add_argument("--check", action="store_true", help="only report stale cells; exit 1 if any")
    p_exe = sub.add_parser("execute", help="nav, then re-execute notebooks in place")
    p_exe.add_argument("paths", nargs="*", type=Path)
    p_exp = sub.add_parser("export", help="write the #@save cells of the notebooks into helpers/")
    p_exp.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    args = parser.parse_args(argv)
    if args.cmd == "nav":
        return nav(check=args.check)
    if args.cmd == "export":
        return export(check=args.check)
    nav()
    if export():
        return 1
    paths = [p.resolve() for p in args.paths] or notebook_paths()
    execute(paths)
    return 0


if __name__ == "__main__":
    sys.exit(main())

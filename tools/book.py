"""Build the series as a book: a static website of the notebooks with their stored outputs.

    python tools/book.py build                 # -> _build/html (open _build/html/index.html)
    python tools/book.py build --out DIR       # somewhere else
    python tools/book.py stage DIR             # only write the Sphinx source folder (to inspect it)

The builder is Sphinx with MyST-NB and the Sphinx Book Theme (pinned in ``requirements.txt``). The
notebooks are **never executed** here (``nb_execution_mode = "off"``): the book shows what is stored
in them, and nbval already checks that those outputs are what the code produces.

What ``build`` does, in a temporary source folder (the notebooks themselves are never touched):

1. ``index.md``: the series' title, the README's opening paragraph, the table of contents and the
   "what you learn" table, both from the manifest :data:`helpers.series.SERIES`.
2. Every notebook of the manifest, copied with three changes that only the book needs:
   - a slider panel's output (an ipywidgets view, whose picture lives in the notebook's saved widget
     state) becomes a static HTML still of the panel as saved: its sliders at their default values
     (disabled), its picture (the ``Image`` widget's PNG) and its readout table. A static site has
     no kernel to drive the sliders, and the JavaScript widget manager would have to come from a CDN;
     the still says so and links to Colab. The saved widget state is then dropped from the copy;
   - the navigation bars' "Contents" link (``../README.md``) points at the book's contents page;
   - any other link to a file of the repository outside ``notebooks/`` points at that file on GitHub.
3. ``sphinx-build -W --keep-going -n`` (every warning is an error, nitpicky), then a check of the
   result (:func:`check_site`): every page present, every internal link and image resolving, every
   stored output of every notebook rendered, the search page and its index present, and an
   "Open in Colab" link on every notebook page. ``build`` exits 1 and prints the problems otherwise.
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `helpers`, installed or not
from helpers.project import BRANCH, NOTEBOOKS_DIR, REPO_URL, ROOT, colab_url  # noqa: E402
from helpers.series import SERIES, Notebook  # noqa: E402

DEFAULT_OUT = ROOT / "_build" / "html"
TITLE = "Mask R-CNN, Step by Step"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
STILL_CLASS = "panel-still"
STILL_NOTE = ("The panel as saved in the notebook, at its default values. The sliders move only with a "
              "running kernel: open this notebook in Colab or Jupyter to drag them.")


def pages_url(repo_url: str = REPO_URL) -> str:
    """Where GitHub Pages publishes the book of ``repo_url``: ``https://<owner>.github.io/<repo>/``."""
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repo_url)
    if m is None:
        raise ValueError(f"repo_url must be https://github.com/<owner>/<repo>, got {repo_url!r}")
    return f"https://{m[1].lower()}.github.io/{m[2]}/"


# -- the panels' stills --------------------------------------------------------------------------------
def _model_state(states: dict, model_id: str) -> dict | None:
    entry = states.get(model_id)
    if entry is None:
        return None
    state = dict(entry.get("state", {}))
    for buf in entry.get("buffers", []):
        if buf.get("path") == ["value"] and buf.get("encoding") == "base64":
            state["value"] = base64.b64decode(buf["data"])
    state["_model_name"] = entry.get("model_name", state.get("_model_name", ""))
    return state


def _refs(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [v[len("IPY_MODEL_"):] for v in items if isinstance(v, str) and v.startswith("IPY_MODEL_")]


def widget_still(states: dict, model_id: str, depth: int = 0) -> str:
    """Static HTML for the widget ``model_id`` of a saved widget state (and its children): boxes as
    flex rows/columns, sliders, dropdowns and checkboxes disabled at their saved values, ``Image``
    widgets as ``<img>`` with their PNG inline, ``HTML``/``Label`` widgets as their text. Widgets of
    other kinds are left out. Raises ``ValueError`` when ``model_id`` is not in ``states``."""
    if depth > 50:
        raise ValueError("widget_still: the widget tree is deeper than 50 levels (a cycle?)")
    s = _model_state(states, model_id)
    if s is None:
        raise ValueError(f"widget_still: model_id {model_id!r} is not in the saved widget state")
    name = s["_model_name"]
    desc = html.escape(str(s.get("description") or ""))
    if name in ("HBoxModel", "VBoxModel", "BoxModel", "GridBoxModel"):
        direction = "row" if name == "HBoxModel" else "column"
        inner = "".join(widget_still(states, c, depth + 1) for c in _refs(s.get("children", [])))
        return (f'<div style="display:flex;flex-direction:{direction};gap:0.5em;'
                f'align-items:flex-start;flex-wrap:wrap">{inner}</div>')
    if name in ("FloatSliderModel", "IntSliderModel"):
        fmt = s.get("readout_format") or (".2f" if name == "FloatSliderModel" else "d")
        try:
            shown = format(s["value"], fmt)
        except (ValueError, TypeError):
            shown = str(s["value"])
        return (f'<label style="display:flex;gap:0.5em;align-items:center">{desc} '
                f'<input type="range" disabled min="{s.get("min")}" max="{s.get("max")}" '
                f'step="{s.get("step")}" value="{s["value"]}"> <span>{html.escape(shown)}</span></label>')
    if name == "DropdownModel":
        labels = s.get("_options_labels", [])
        index = s.get("index")
        opts = "".join(f'<option{" selected" if k == index else ""}>{html.escape(str(lab))}</option>'
                       for k, lab in enumerate(labels))
        return f'<label style="display:flex;gap:0.5em;align-items:center">{desc} <select disabled>{opts}</select></label>'
    if name == "CheckboxModel":
        checked = " checked" if s.get("value") else ""
        return f'<label><input type="checkbox" disabled{checked}> {desc}</label>'
    if name == "ImageModel":
        value = s.get("value") or b""
        if not value:
            return ""
        fmt = s.get("format") or "png"
        data = base64.b64encode(value).decode("ascii")
        alt = html.escape(f"the panel's picture at its default values ({fmt})")
        return f'<img src="data:image/{fmt};base64,{data}" alt="{alt}" style="max-width:100%;height:auto">'
    if name in ("HTMLModel", "LabelModel", "HTMLMathModel"):
        value = str(s.get("value") or "")
        return f"<div>{value if name != 'LabelModel' else html.escape(value)}</div>"
    return ""


def panel_stills(nb: Any) -> int:
    """Replace every widget view output of ``nb`` by its static still (in place); drop the saved widget
    state. Returns the number of outputs replaced. A view whose model is missing from the saved state
    is an error (the notebook was saved without its widget state)."""
    states = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    count = 0
    for k, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            model_id = data[WIDGET_VIEW]["model_id"]
            if model_id not in states:
                raise ValueError(f"cell {k}: widget {model_id} is not in the notebook's saved widget state "
                                 "(re-execute it with `python tools/nb.py execute`)")
            still = widget_still(states, model_id)
            out["data"] = {"text/html": f'<div class="{STILL_CLASS}">{still}'
                                        f'<p><em>{html.escape(STILL_NOTE)}</em></p></div>'}
            count += 1
    nb.metadata.pop("widgets", None)
    return count


# -- links -------------------------------------------------------------------------------------------------
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def book_links(markdown: str, series_files: set[str]) -> str:
    """``markdown`` with its repository links made right for the book: ``../README.md`` -> the book's
    contents page; another relative link leaving ``notebooks/`` -> the file on GitHub; links between
    notebooks of the series, anchors and absolute URLs unchanged."""

    def fix(m: re.Match) -> str:
        target = m[2]
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or target.startswith("#") or not parts.path:
            return m[0]
        path = posixpath.normpath(posixpath.join("notebooks", unquote(parts.path)))
        if path == "README.md":
            new = "index.md"
        elif path.startswith("notebooks/") and posixpath.basename(path) in series_files:
            return m[0]
        else:
            kind = "tree" if (ROOT / path).is_dir() else "blob"
            new = f"{REPO_URL}/{kind}/{BRANCH}/{path}"
        return m[1] + new + (f"#{parts.fragment}" if parts.fragment else "") + m[3]

    return LINK.sub(fix, markdown)


# -- the source folder -------------------------------------------------------------------------------------
def readme_intro(readme: Path = ROOT / "README.md") -> str:
    """The README's opening paragraph(s): everything between its title and its first ``##`` heading."""
    text = readme.read_text(encoding="utf-8")
    body = text.split("\n", 1)[1] if text.startswith("# ") else text
    return body.split("\n## ", 1)[0].strip()


def index_markdown(series: Sequence[Notebook] = SERIES) -> str:
    rows = ["| # | Notebook | What you learn |", "|---|---|---|"]
    for entry in series:
        learn = entry.learn.replace("|", "\\|")
        rows.append(f"| {entry.number} | [{entry.title}]({entry.file}) | {learn} |")
    toc = "\n".join(Path(entry.file).stem for entry in series)
    return (f"# {TITLE}\n\n{readme_intro()}\n\n"
            f"Every page is a notebook of the series with the outputs stored in it; the rocket button "
            f"at the top of a page opens it in Colab, to run and change.\n\n"
            "```{toctree}\n:maxdepth: 1\n:caption: The notebooks\n:hidden:\n\n" + toc + "\n```\n\n"
            "## The notebooks\n\n" + "\n".join(rows) + "\n\n"
            f"The source, the tests and the licence are in the [repository]({REPO_URL}).\n")


def conf_py() -> str:
    owner_repo = REPO_URL.removeprefix("https://github.com/")
    return f'''# Written by tools/book.py (edit that file, not this one).
project = {TITLE!r}
author = "the authors of {owner_repo}"
extensions = ["myst_nb"]
nb_execution_mode = "off"          # never execute: the book shows the outputs stored in the notebooks
nb_ipywidgets_js = {{}}              # panels are static stills (tools/book.py); no widget manager from a CDN
nb_merge_streams = True
myst_heading_anchors = 3
nitpicky = True
exclude_patterns = ["_build"]
html_theme = "sphinx_book_theme"
html_title = {TITLE!r}
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {{
    "repository_url": {REPO_URL!r},
    "repository_branch": {BRANCH!r},
    "path_to_docs": "notebooks",
    "use_repository_button": True,
    "launch_buttons": {{"colab_url": "https://colab.research.google.com"}},
    "show_toc_level": 2,
}}
'''


def stage(dest: Path, series: Sequence[Notebook] = SERIES, notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, int]:
    """Write the Sphinx source folder into ``dest`` (emptied first); return, per notebook file, the
    number of panel outputs made static."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "conf.py").write_text(conf_py(), encoding="utf-8")
    (dest / "index.md").write_text(index_markdown(series), encoding="utf-8")
    files = {entry.file for entry in series}
    stills = {}
    for entry in series:
        src = notebooks_dir / entry.file
        if not src.is_file():
            raise FileNotFoundError(f"helpers/series.py lists {entry.file}, which is not in {notebooks_dir}")
        nb = nbformat.read(src, as_version=4)
        stills[entry.file] = panel_stills(nb)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = book_links(cell.source, files)
        nbformat.write(nb, dest / entry.file)
    return stills


# -- checking the result -----------------------------------------------------------------------------------
class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []  # (tag, url)
        self.ids: set[str] = set()
        self.imgs = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "img":
            self.imgs += 1
        for key in ("href", "src"):
            if a.get(key) and tag in ("a", "img", "link", "script"):
                self.refs.append((tag, a[key] or ""))


def stored_outputs(nb: Any) -> dict[str, int]:
    """How many figures (``image/png``) and panel stills a notebook's stored outputs should show."""
    figures = panels = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_VIEW in data:
                panels += 1
            elif "image/png" in data:
                figures += 1
    return {"figures": figures, "panels": panels}


def check_site(out: Path, series: Sequence[Notebook] = SERIES, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[str]:
    """What is wrong with the built site in ``out`` (empty list: nothing)."""
    problems = []
    pages = ["index.html", "search.html", "searchindex.js"] + [Path(e.file).stem + ".html" for e in series]
    for page in pages:
        if not (out / page).is_file():
            problems.append(f"missing page {page}")
    parsed: dict[Path, _Refs] = {}
    for path in sorted(out.rglob("*.html")):
        if "_static" in path.relative_to(out).parts:  # the theme's template fragments, not pages
            continue
        p = _Refs()
        p.feed(path.read_text(encoding="utf-8"))
        parsed[path.resolve()] = p
    for path, p in parsed.items():
        for tag, url in p.refs:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith(("data:", "mailto:", "javascript:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            rel = path.relative_to(out.resolve())
            if not target.exists():
                problems.append(f"{rel}: broken link <{tag}> {url}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed.get(target).ids if target in parsed else set()
                if parts.fragment not in ids:
                    problems.append(f"{rel}: link {url} points at a missing anchor")
    for entry in series:
        page = (out / (Path(entry.file).stem + ".html")).resolve()
        if page not in parsed:
            continue
        text = page.read_text(encoding="utf-8")
        want = stored_outputs(nbformat.read(notebooks_dir / entry.file, as_version=4))
        got_panels = text.count(f'class="{STILL_CLASS}"')
        if got_panels != want["panels"]:
            problems.append(f"{entry.file}: {got_panels} panel stills on its page, {want['panels']} panels stored")
        # every stored figure is an <img> of the page's output area (plus one per panel still)
        figures = len(re.findall(r'<img[^>]+src="_images/', text))
        if figures < want["figures"]:
            problems.append(f"{entry.file}: {figures} figures on its page, {want['figures']} stored")
        if html.escape(colab_url(entry.file)) not in text and colab_url(entry.file) not in text:
            problems.append(f"{entry.file}: its page has no Open in Colab link ({colab_url(entry.file)})")
        if f"{entry.number} · " not in html.unescape(text):
            problems.append(f"{entry.file}: its page lacks its heading '{entry.heading}'")
    return problems


def build(out: Path = DEFAULT_OUT, series: Sequence[Notebook] = SERIES,
          notebooks_dir: Path = NOTEBOOKS_DIR) -> tuple[int, str, float]:
    """Stage, run Sphinx into ``out`` (warnings are errors), check the site.
    Returns ``(status, log, seconds)``; status 0 when Sphinx and :func:`check_site` found nothing."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="book-src-") as tmp:
        src = Path(tmp) / "src"
        stage(src, series, notebooks_dir)
        if out.exists():
            shutil.rmtree(out)
        doctrees = Path(tmp) / "doctrees"
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-n", "-q",
               "-d", str(doctrees), str(src), str(out)]
        result = subprocess.run(cmd, capture_output=True, text=True)
    log = (result.stdout + result.stderr).replace(tmp, "<src>")
    problems = [] if result.returncode == 0 else [f"sphinx-build exited {result.returncode}"]
    if out.is_dir():
        problems += check_site(out, series, notebooks_dir)
    if problems:
        log += "\n" + "\n".join(problems)
    return (1 if problems else 0), log, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_build = sub.add_parser("build", help="build the book into _build/html (or --out)")
    p_build.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default _build/html)")
    p_stage = sub.add_parser("stage", help="only write the Sphinx source folder")
    p_stage.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "stage":
        stills = stage(args.dest)
        print(f"staged {len(stills)} notebooks ({sum(stills.values())} panel stills) in {args.dest}")
        return 0
    status, log, seconds = build(args.out)
    if log.strip():
        print(log.strip())
    pages = len(list(args.out.glob("*.html"))) if args.out.is_dir() else 0
    print(f"book: {'OK' if status == 0 else 'FAILED'} in {seconds:.0f} s, {pages} pages in {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())

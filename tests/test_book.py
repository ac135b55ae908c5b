"""The series as a book (``tools/book.py``): it builds offline without warnings, and shows what is stored.

- ``test_book_builds``: ``tools/book.py``'s build into a temporary folder (Sphinx with ``-W -n``,
  notebooks never executed) exits 0 with an empty log; one page per notebook of the manifest plus the
  contents and search pages; :func:`book.check_site` (missing page, broken internal link or anchor,
  a stored figure or panel not on its page, no Colab link) finds nothing.
- The checks can fail: a deleted page, a broken link, a panel that did not render and a Sphinx
  warning are each caught (on a copy of the built site, or a build of a broken notebook).
- The panels' stills: the picture on the page is, byte for byte, the PNG of the Image widget in the
  notebook's saved widget state, and the slider values shown are the saved ones.
- In Chromium (marked ``browser``): a notebook page shows a figure and a panel page shows the panel's
  picture (``naturalWidth > 0``), and the search page finds a word of the series.
"""

from __future__ import annotations

import base64
import functools
import html
import http.server
import importlib.util
import re
import shutil
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from helpers.project import NOTEBOOKS_DIR, REPO_URL, ROOT, colab_url
from helpers.series import SERIES

_spec = importlib.util.spec_from_file_location("book", ROOT / "tools" / "book.py")
book = importlib.util.module_from_spec(_spec)
sys.modules["book"] = book
_spec.loader.exec_module(book)

PANEL_NOTEBOOKS = [e.file for e in SERIES
                   if book.stored_outputs(nbformat.read(NOTEBOOKS_DIR / e.file, as_version=4))["panels"]]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, float]:
    out = tmp_path_factory.mktemp("book") / "html"
    status, log, seconds = book.build(out)
    assert status == 0, log[-5000:]
    print(f"\nbook built in {seconds:.1f} s: {len(list(out.glob('*.html')))} pages")
    return out, log, seconds


@pytest.mark.timeout(600)
def test_book_builds(site: tuple[Path, str, float]) -> None:
    out, log, seconds = site
    assert log.strip() == "", log[-3000:]
    pages = sorted(p.name for p in out.glob("*.html"))
    for entry in SERIES:
        assert Path(entry.file).stem + ".html" in pages
    assert {"index.html", "search.html"} <= set(pages)
    assert book.check_site(out) == []
    index = (out / "index.html").read_text()
    for entry in SERIES:  # the contents, in the manifest's order
        assert f'href="{Path(entry.file).stem}.html"' in index
    order = [index.find(f'href="{Path(e.file).stem}.html"') for e in SERIES]
    assert order == sorted(order)
    assert "searchindex.js" in (out / "search.html").read_text()
    assert seconds < 300, f"the book took {seconds:.0f} s to build"


def test_every_page_opens_in_colab_and_links_back(site: tuple[Path, str, float]) -> None:
    out, _, _ = site
    for entry in SERIES:
        text = (out / (Path(entry.file).stem + ".html")).read_text()
        assert colab_url(entry.file) in text, entry.file
        assert 'href="index.html"' in text, entry.file  # the navigation bar's Contents link
        assert not re.search(r'href="[^"]*README\.md', text), entry.file  # the repository's, not the book's


def _copy(site: tuple[Path, str, float], tmp_path: Path) -> Path:
    dst = tmp_path / "html"
    shutil.copytree(site[0], dst)
    return dst


def test_check_site_finds_a_missing_page(site: tuple[Path, str, float], tmp_path: Path) -> None:
    out = _copy(site, tmp_path)
    (out / "03_roipool_vs_roialign.html").unlink()
    problems = book.check_site(out)
    assert "missing page 03_roipool_vs_roialign.html" in problems
    assert any("broken link" in p and "03_roipool_vs_roialign.html" in p for p in problems)


def test_check_site_finds_a_broken_link_and_anchor(site: tuple[Path, str, float], tmp_path: Path) -> None:
    out = _copy(site, tmp_path)
    page = out / "00_instance_segmentation.html"
    page.write_text(page.read_text().replace(
        "</body>", '<a href="nowhere.html">x</a><a href="01_bilinear_interpolation.html#no-such">y</a></body>'))
    problems = book.check_site(out)
    assert "00_instance_segmentation.html: broken link <a> nowhere.html" in problems
    assert any("no-such" in p and "missing anchor" in p for p in problems)


def test_check_site_finds_outputs_that_did_not_render(site: tuple[Path, str, float], tmp_path: Path) -> None:
    out = _copy(site, tmp_path)
    panel = out / (Path(PANEL_NOTEBOOKS[0]).stem + ".html")
    panel.write_text(panel.read_text().replace(f'class="{book.STILL_CLASS}"', 'class="gone"'))
    figures = out / "00_instance_segmentation.html"
    figures.write_text(re.sub(r'<img[^>]+src="_images/[^>]*>', "", figures.read_text()))
    problems = book.check_site(out)
    assert any(PANEL_NOTEBOOKS[0] in p and "panel stills" in p for p in problems), problems
    assert any("00_instance_segmentation.ipynb" in p and "figures" in p for p in problems), problems


def test_a_sphinx_warning_fails_the_build(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    series = SERIES[:2]
    for entry in series:
        shutil.copy(NOTEBOOKS_DIR / entry.file, notebooks / entry.file)
    nb = nbformat.read(notebooks / series[1].file, as_version=4)
    nb.cells.insert(2, nbformat.v4.new_markdown_cell("See {ref}`no-such-label`."))
    nbformat.write(nb, notebooks / series[1].file)
    # the navigation bar of the second notebook links a third, absent here: also a warning
    status, log, _ = book.build(tmp_path / "html", series, notebooks)
    assert status == 1
    assert "no-such-label" in log


def test_panel_still_is_the_saved_picture() -> None:
    # every panel of a notebook (05 has two) becomes one still: together they show each saved picture
    # once, and the sliders' saved values
    for name in PANEL_NOTEBOOKS:
        nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
        states = nb.metadata["widgets"][book.WIDGET_STATE]["state"]
        saved = [base64.b64decode(b["data"]) for m in states.values() if m["model_name"] == "ImageModel"
                 for b in m.get("buffers", []) if b["path"] == ["value"]]
        sliders = sorted((m["state"]["description"], float(m["state"]["value"])) for m in states.values()
                         if m["model_name"] in ("FloatSliderModel", "IntSliderModel"))
        book.panel_stills(nb)
        assert "widgets" not in nb.metadata
        stills = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", [])
                  if book.STILL_CLASS in o.get("data", {}).get("text/html", "")]
        assert stills, name
        shown = [base64.b64decode(s) for still in stills
                 for s in re.findall(r'src="data:image/png;base64,([^"]+)"', still)]
        assert shown and sorted(shown) == sorted(saved), name
        assert all(picture[:8] == b"\x89PNG\r\n\x1a\n" for picture in shown)
        values = sorted((html.unescape(k.strip()), float(v)) for still in stills
                        for k, v in re.findall(r'>([^<>]*) <input type="range" disabled [^>]*value="([^"]+)"', still))
        assert values == sliders, name


def test_widget_still_rejects_an_unknown_model() -> None:
    with pytest.raises(ValueError, match="model_id 'nope' is not in the saved widget state"):
        book.widget_still({}, "nope")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={book.WIDGET_VIEW: {"model_id": "abc", "version_major": 2, "version_minor": 0}})])])
    with pytest.raises(ValueError, match="widget abc is not in the notebook's saved widget state"):
        book.panel_stills(nb)


def test_book_links() -> None:
    files = {e.file for e in SERIES}
    assert book.book_links("[Contents](../README.md)", files) == "[Contents](index.md)"
    assert book.book_links("[b](02_roi_align.ipynb#x)", files) == "[b](02_roi_align.ipynb#x)"
    assert (book.book_links("[r](../helpers/roi.py)", files)
            == f"[r]({REPO_URL}/blob/main/helpers/roi.py)")
    assert book.book_links("[d](../data)", files) == f"[d]({REPO_URL}/tree/main/data)"
    assert book.book_links("[w](https://x.org/a.md) [s](#top)", files) == "[w](https://x.org/a.md) [s](#top)"


def test_pages_url() -> None:
    assert book.pages_url("https://github.com/Owner/repo-name") == "https://owner.github.io/repo-name/"
    with pytest.raises(ValueError, match="repo_url must be https://github.com/<owner>/<repo>"):
        book.pages_url("https://gitlab.com/a/b")
    readme = (ROOT / "README.md").read_text()
    assert book.pages_url() in readme, "the README does not link the published book"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_book_in_chromium(site: tuple[Path, str, float], tmp_path: Path, artifacts: Path) -> None:
    from playwright.sync_api import sync_playwright

    from browser_harness import launch_chromium

    out = site[0]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    shots = artifacts / "book"
    shots.mkdir(exist_ok=True)
    try:
        with sync_playwright() as pw:
            ctx = launch_chromium(pw, tmp_path / "profile")
            page = ctx.new_page()
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            # a figure of notebook 00
            page.goto(f"{base}/00_instance_segmentation.html", wait_until="load")
            fig = page.locator(".cell_output img").first
            fig.scroll_into_view_if_needed()
            assert fig.evaluate("img => img.complete && img.naturalWidth") > 0
            page.screenshot(path=str(shots / "00_figure.png"))
            # a panel's default picture
            name = Path(PANEL_NOTEBOOKS[0]).stem
            page.goto(f"{base}/{name}.html", wait_until="load")
            still = page.locator(f".{book.STILL_CLASS} img").first
            still.scroll_into_view_if_needed()
            assert still.evaluate("img => img.complete && img.naturalWidth") > 100
            assert still.is_visible()
            page.screenshot(path=str(shots / f"{name}_panel.png"))
            # search works offline
            page.goto(f"{base}/search.html?q=RoIAlign", wait_until="load")
            page.wait_for_selector("#search-results li", timeout=30000)
            hits = page.locator("#search-results li a").all_inner_texts()
            assert any("RoIAlign" in h for h in hits), hits
            local = [u for u in failed if u.startswith(base)]
            assert local == [], f"requests to the book that failed: {local}"
            ctx.close()
    finally:
        server.shutdown()

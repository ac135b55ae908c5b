"""The slider panels of notebooks 01-07 driven in a real JupyterLab, in headless Chromium.

For each notebook the test starts JupyterLab (127.0.0.1, a free port, a token, no browser of its
own) over a temporary copy of ``notebooks/``, opens the notebook in Debian's ``/usr/bin/chromium``
through Playwright, clears it, runs all cells, waits for the kernel to be idle, finds the panel by
its slider names and then, step by step, moves sliders as a student does: focusing a slider's
handle and pressing ArrowRight or PageUp, or clicking its readout, selecting all, typing a number
and pressing Enter. After every step it checks what the page shows:

- the slider's readout shows the new value (old + step for ArrowRight, old + 5 steps for PageUp:
  noUiSlider's page multiplier; the typed number for typing);
- the readout table beside the figure (``td.panel-value[data-key=...]``) shows the new numbers,
  which equal the table of the kernel's ``panel.state`` and an independent recomputation in this
  process (``torch.nn.functional.grid_sample``, ``torchvision.ops.roi_align``/``roi_pool``) for the
  values now on the sliders;
- the picture (the ``<img>``'s bytes, fetched from its blob URL) differs from the previous step,
  is byte for byte the PNG the kernel's Image widget holds, and redrawing the current slider values
  in the kernel gives the same bytes (so it is the picture *of* those values);
- no stderr or error output anywhere in the notebook, ``panel.error`` is None;
- the picture and the readout numbers lie within the notebook's visible width in a window the
  size of a common laptop screen (1366 x 680 with JupyterLab's file browser open): a number a
  student would have to scroll sideways to find fails the test (checked after the last step, so
  the other checks still run and report).

A screenshot of the panel is kept per step under ``test-artifacts/browser/<notebook>/``.

Chromium must be at ``/usr/bin/chromium`` (``apt-get install -y chromium``); if it is missing or
cannot start the tests fail and say so. Skip them with ``-m "not browser"``.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision

from browser_harness import HOW_TO, VIEWPORT, JupyterLab, KernelPanel, LabNotebook, PanelView, launch_chromium
from helpers.project import NOTEBOOKS_DIR, ROOT

# each test well under 2 minutes on 2 busy cores; the limit only stops a hung browser or kernel
pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOKS = NOTEBOOKS_DIR


def notebook_named(prefix: str) -> str:
    found = sorted(p.name for p in NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
    if len(found) != 1:
        pytest.fail(f"expected one notebook {prefix}_*.ipynb in notebooks/, found {found}", pytrace=False)
    return found[0]


# ---------------------------------------------------------------------------------------------
# fixtures: one JupyterLab and one Chromium for the module
# ---------------------------------------------------------------------------------------------
class Browser:
    """Playwright + Chromium, started once; a failure to start is kept and reported by each test."""

    def __init__(self, profile: Path) -> None:
        self.failure: str | None = None
        self.context = None
        self._pw = None
        try:
            from playwright.sync_api import sync_playwright

            self._pw = sync_playwright().start()
        except Exception as exc:  # noqa: BLE001
            self.failure = f"Playwright could not start: {exc}"
            return
        try:
            self.context = launch_chromium(self._pw, profile)
        except pytest.fail.Exception as exc:
            self.failure = str(exc)

    def page(self) -> Any:
        if self.failure:
            pytest.fail(self.failure, pytrace=False)
        return self.context.new_page()

    def close(self) -> None:
        if self.context is not None:
            self.context.close()
        if self._pw is not None:
            self._pw.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> JupyterLab:
    server = JupyterLab(NOTEBOOKS, tmp_path_factory.mktemp("jupyterlab"), extra_dirs=(ROOT / "data",))
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(f"JupyterLab did not start: {exc}", pytrace=False)
    yield server
    server.stop()


def test_chromium_starts(browser: Browser) -> None:
    """Fails, with the reason and the fix, when /usr/bin/chromium is missing or cannot start."""
    page = browser.page()
    page.set_content("<p id='x'>ok</p>")
    assert page.inner_text("#x") == "ok", HOW_TO
    page.close()


# ---------------------------------------------------------------------------------------------
# the steps a student takes, and what each must change
# ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    label: str
    slider: str
    how: str                 # "ArrowRight" / "PageUp" (keyboard on the handle), "type", "toggle" (Space on a
                             # checkbox), "select" (a dropdown's option, by its text) or "ArrowDown" (a dropdown's key)
    text: str = ""           # what to type into the readout, or the option to select
    changes: tuple[str, ...] = ()   # readout keys whose text must change with this step
    message: bool = False    # the step makes the RoI empty: a message instead of numbers


def expected_value(how: str, text: str, old: Any, lo: Any, hi: Any, step: Any, options: list | None = None) -> Any:
    if how == "toggle":
        return not old
    if how in ("select", "ArrowDown"):
        labels = [str(o[0]) for o in options]
        index = labels.index(text) if how == "select" else min(labels.index(next(
            str(o[0]) for o in options if o[1] == old)) + 1, len(labels) - 1)
        return options[index][1]
    if how == "ArrowRight":
        return min(old + step, hi)
    if how == "PageUp":
        return min(old + 5 * step, hi)  # noUiSlider's keyboardPageMultiplier is 5
    return min(max(float(text), lo), hi)


def readout_numbers(text: str) -> list[float]:
    return [float(t) for t in text.replace("(", " ").replace(")", " ").replace(",", " ").split()]


def parse_table(readout_html: str) -> dict[str, str]:
    """``{data-key: text}`` of the readout HTML, whitespace collapsed as a browser renders it."""
    return {html.unescape(k): " ".join(html.unescape(v).split()) for k, v in
            re.findall(r"<td class='panel-value' data-key='([^']*)'>([^<]*)</td>", readout_html)}


def check_consistent(nb: LabNotebook, view: PanelView, k: KernelPanel, where: str) -> None:
    """The page shows exactly what the kernel holds, and the picture is that of the slider values."""
    assert k.error is None, f"{where}: panel.error = {k.error}"
    assert view.png[:8] == b"\x89PNG\r\n\x1a\n", f"{where}: the page's picture is not a PNG"
    assert view.png_sha == k.png_sha, f"{where}: the page's picture differs from the kernel's Image widget"
    assert k.redraw_matches, f"{where}: redrawing the current slider values gives another picture"
    assert k.readout_html == k.table, f"{where}: the readout is not the table of panel.state"
    assert view.readout == parse_table(k.readout_html), f"{where}: the page's readout differs from the kernel's"
    for name, text in view.sliders.items():
        value, fmt = k.values[name], k.formats[name]
        shown = k.labels.get(name) or (format(value, fmt) if fmt else str(value))
        assert text == shown, f"{where}: slider {name} shows {text!r}, the kernel holds {value!r}"
    assert nb.error_outputs() == [], f"{where}: error output in the page: {nb.error_outputs()}"
    if k.message is None:
        assert view.notice == "", f"{where}: unexpected notice {view.notice!r}"
    else:
        assert view.readout == {} and k.message in view.notice, f"{where}: the message is not shown"


def drive(browser: Browser, lab: JupyterLab, artifacts: Path, prefix: str, sliders: list[str],
          steps: list[Step], reference: Callable[[dict, KernelPanel, str], None], extra: str,
          cls: str, controls: tuple[str, ...] = (), latency: str | None = None,
          run_timeout: float = 100.0, tag: str = "") -> list[str]:
    """Open notebook ``prefix``, run it, then take ``steps`` on the panel; returns a log of what changed.

    ``controls``: the labels of the panel's checkboxes and dropdowns (``sliders``: its sliders).
    ``latency``: a slider label; after the steps, :data:`LATENCY_MOVES` key presses on it are timed from
    the key to the new picture on screen (:meth:`LabNotebook.latency`), written to
    ``test-artifacts/browser/latency-<notebook>.json``. Not asserted (a timed test on a shared 2-core CI machine
    measures the machine): ``benchmarks/bench_sliders.py --browser`` prints them against its floor.
    """
    name = notebook_named(prefix)
    stem = Path(name).stem + (f"-{tag}" if tag else "")   # tag: a second panel of the same notebook
    shots = artifacts / "browser" / stem
    shutil.rmtree(shots, ignore_errors=True)
    page = browser.page()
    nb = LabNotebook(page, lab, name, shots)
    log: list[str] = []
    t0 = time.monotonic()
    try:
        nb.open()
        ran = nb.run_all(run_timeout)
        assert nb.error_outputs() == [], f"error output after running all cells: {nb.error_outputs()}"
        panel = nb.find_panel(sliders)
        mid = nb.panel_model_id(panel)
        assert mid, "the panel's cell output has no widget view"
        nb.wait_idle()
        k = nb.kernel_panel(mid, extra)
        assert k.cls == cls, f"found a {k.cls}, expected a {cls}"
        label = {n: d for n, d in k.descriptions.items() if d in sliders or d in controls}  # name -> label on the page
        assert sorted(label.values()) == sorted([*sliders, *controls]), f"slider labels {k.descriptions}"

        def look() -> PanelView:
            seen = nb.view(panel, sliders, controls)
            seen.sliders = {n: seen.sliders[d] for n, d in label.items()}
            return seen

        view = look()
        check_consistent(nb, view, k, "after run all")
        reference(view.readout, k, "after run all")
        nb.screenshot("run-all", panel)
        log.append(f"{name}: opened and ran all cells in {ran:.1f} s; {cls} found by sliders {sliders}")
        # checked at the end, so that the steps are still taken and reported when it fails
        clipped = {"after run all": view.clipped} if view.clipped else {}
        for step in steps:
            where = f"{name} step '{step.label}'"
            old_value = k.values[step.slider]
            lo, hi, inc = k.steps[step.slider]
            if step.how == "type":
                nb.type_value(panel, label[step.slider], step.text)
            elif step.how == "toggle":
                nb.toggle(panel, label[step.slider])
            elif step.how == "select":
                nb.choose(panel, label[step.slider], step.text)
            elif step.how == "ArrowDown":
                nb.dropdown_key(panel, label[step.slider], "ArrowDown")
            else:
                nb.press(panel, label[step.slider], step.how)
            nb.wait_new_image(panel, view.src)
            nb.wait_idle()
            new_view = look()
            new_k = nb.kernel_panel(mid, extra)
            nb.screenshot(re.sub(r"[^a-z0-9]+", "-", step.label.lower()), panel)
            want = expected_value(step.how, step.text, old_value, lo, hi, inc, k.extra.get("options", {}).get(step.slider))
            got = new_k.values[step.slider]
            assert math.isclose(got, want, abs_tol=1e-9), f"{where}: slider {step.slider} = {got}, expected {want}"
            check_consistent(nb, new_view, new_k, where)
            assert new_view.png != view.png, f"{where}: the picture did not change"
            assert new_view.sliders[step.slider] != view.sliders[step.slider], f"{where}: slider readout unchanged"
            if step.message:
                assert new_k.message is not None, f"{where}: expected a message for an empty RoI"
                changed = ["(message) " + new_k.message]
            else:
                assert new_k.message is None, f"{where}: unexpected message {new_k.message}"
                reference(new_view.readout, new_k, where)
                changed = [key for key in new_view.readout if new_view.readout.get(key) != view.readout.get(key)]
                for key in step.changes:
                    assert key in changed, f"{where}: readout {key!r} did not change ({new_view.readout.get(key)})"
            log.append(f"{step.label}: {step.slider} {view.sliders[step.slider]} -> {new_view.sliders[step.slider]}; "
                       f"picture {view.png_sha[:8]} -> {new_view.png_sha[:8]}; readout changed: {', '.join(changed)}")
            if new_view.clipped:
                clipped[step.label] = new_view.clipped
            view, k = new_view, new_k
        if latency is not None:
            nb.wait_idle()
            times = nb.latency(panel, latency, LATENCY_MOVES)
            nb.screenshot("after-latency", panel)
            assert len(times) == LATENCY_MOVES, f"{name}: {len(times)} pictures for {LATENCY_MOVES} key presses"
            result = latency_summary(times)
            result.update(notebook=name, panel=cls, slider=latency, moves=len(times),
                          load_average=[round(v, 2) for v in os.getloadavg()], cpus=os.cpu_count())
            (artifacts / "browser").mkdir(parents=True, exist_ok=True)
            (artifacts / "browser" / f"latency-{stem}.json").write_text(json.dumps(result, indent=1))
            log.append(f"latency, key press -> picture on screen, {len(times)} presses on {latency}: "
                       f"median {result['median_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, max {result['max_ms']:.0f} ms")
            k = nb.kernel_panel(mid, extra)
            assert k.error is None, f"{name}: panel.error after the latency moves: {k.error}"
        assert nb.error_outputs() == []
        nb.screenshot("final-page", full=True)
        parts = sorted({p for names in clipped.values() for p in names})
        assert not clipped, (
            f"{name}: {parts} lie outside the notebook's visible width in a {VIEWPORT['width']}x"
            f"{VIEWPORT['height']} window with the file browser open ({len(clipped)} of {len(steps) + 1} "
            "views), so a student cannot see them without scrolling sideways (see the screenshots)")
    except BaseException:
        nb.screenshot("failure", full=True)
        log.append("FAILED (see the failure screenshot)")
        raise
    finally:
        page.close()
        log.append(f"total {time.monotonic() - t0:.1f} s")
        (shots / "steps.txt").write_text("\n".join(log) + "\n")
        print("\n".join(log))
    return log


LATENCY_MOVES = 50
"""Key presses timed per panel (the issue asks for a p95 over at least 50)."""

def latency_summary(times: list[float]) -> dict[str, Any]:
    """Median, p95 (nearest rank, as numpy's default linear interpolation would blur it) and max in ms."""
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median_ms": float(statistics.median(ordered)), "p95_ms": float(p95), "max_ms": float(ordered[-1]),
            "samples_ms": [round(t, 1) for t in times]}


def close(text: str, value: float, digits: int, where: str, key: str) -> None:
    shown = float(text)
    assert abs(shown - value) <= 0.5 * 10 ** -digits + 1e-9, f"{where}: {key} shows {text}, reference {value:.6f}"


def rows_match(readout: dict, prefix: str, reference: torch.Tensor, where: str) -> None:
    rows = [key for key in readout if re.fullmatch(rf"{re.escape(prefix)}row \d+", key)]
    assert len(rows) == reference.shape[0], f"{where}: {len(rows)} rows shown, expected {reference.shape[0]}"
    for i, row in enumerate(reference.tolist()):
        shown = readout_numbers(readout[f"{prefix}row {i}"])
        assert len(shown) == len(row) and all(abs(a - b) <= 0.0005 + 1e-9 for a, b in zip(shown, row)), \
            f"{where}: {prefix}row {i} shows {shown}, reference {[round(v, 4) for v in row]}"


# ---------------------------------------------------------------------------------------------
# notebook 01: the sample point of bilinear interpolation
# ---------------------------------------------------------------------------------------------
def bilinear_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The interpolated value and neighbours, recomputed with grid_sample (align_corners=True,
    border padding: torchvision's rule for -1 <= x <= W, -1 <= y <= H)."""
    feature = torch.tensor(k.extra["feature"], dtype=torch.float64)
    h, w = feature.shape
    x, y = k.values["x"], k.values["y"]
    grid = torch.tensor([[[[2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1]]]], dtype=torch.float64)
    value = F.grid_sample(feature[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    close(readout["x"], x, 4, where, "x")
    close(readout["y"], y, 4, where, "y")
    close(readout["interpolated"], float(value), 4, where, "interpolated")
    cx, cy = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    x_low, y_low = min(int(math.floor(cx)), w - 1), min(int(math.floor(cy)), h - 1)
    assert readout["x_low"] == str(x_low) and readout["y_low"] == str(y_low), f"{where}: x_low/y_low"
    x_high, y_high = min(x_low + 1, w - 1), min(y_low + 1, h - 1)
    close(readout["A top-left value"], float(feature[y_low, x_low]), 4, where, "A")
    close(readout["D bottom-right value"], float(feature[y_high, x_high]), 4, where, "D")


def test_notebook_01_sample_point(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("x ArrowRight", "x", "ArrowRight", changes=("x", "interpolated")),
        Step("y PageUp", "y", "PageUp", changes=("y", "interpolated")),
        Step("type x 2.55", "x", "type", "2.55", changes=("x", "x_low", "A top-left value", "interpolated")),
        Step("type y -0.75", "y", "type", "-0.75", changes=("y", "y_low", "interpolated")),
    ]
    drive(browser, lab, artifacts, "01", ["x", "y"], steps, bilinear_reference,
          'dict(feature=p.feature.tolist())', "BilinearPanel", latency="x")


# ---------------------------------------------------------------------------------------------
# notebook 02: the RoI of RoIAlign
# ---------------------------------------------------------------------------------------------
def roi_align_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """Pooled output and bin size recomputed with torchvision.ops.roi_align for the sliders' values."""
    feature = torch.tensor(k.extra["feature"], dtype=torch.float64)
    v = k.values
    p, sr, aligned = int(v["output_size"]), int(v["sampling_ratio"]), bool(v["aligned"])
    box = torch.tensor([[0.0, v["x1"], v["y1"], v["x2"], v["y2"]]], dtype=torch.float64)
    out = torchvision.ops.roi_align(feature[None, None], box, p, 1.0, sr if sr > 0 else -1, aligned)[0, 0]
    rows_match(readout, "", out, where)
    inverted = v["x2"] <= v["x1"] or v["y2"] <= v["y1"]
    assert ("note" in readout) == inverted, f"{where}: an inverted box must be explained, only that one"
    if inverted:
        assert "torchvision" in readout["note"], f"{where}: note {readout['note']!r}"
    for key in ("x1", "y1", "x2", "y2"):
        close(readout[key], v[key], 4, where, key)
    offset = 0.5 if aligned else 0.0
    width = (v["x2"] - offset) - (v["x1"] - offset)
    close(readout["bin width"], (width if aligned else max(width, 1.0)) / p, 4, where, "bin width")


def test_notebook_02_roi_sliders(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("x1 ArrowRight", "x1", "ArrowRight", changes=("x1", "bin width", "row 0")),
        Step("y2 PageUp", "y2", "PageUp", changes=("y2", "bin height")),
        Step("type x2 4.5", "x2", "type", "4.5", changes=("x2", "bin width")),
        Step("output size ArrowRight", "output_size", "ArrowRight", changes=("bin width", "row 2")),
        Step("type sampling ratio 0", "sampling_ratio", "type", "0", changes=("samples per bin",)),
        Step("type x1 5 (inverted: torchvision's answer)", "x1", "type", "5", changes=("x1", "note")),
        Step("toggle aligned", "aligned", "toggle", changes=("note",)),
        Step("type x2 1.5 (torchvision fails: a message)", "x2", "type", "1.5", message=True),
        Step("type x1 0.5", "x1", "type", "0.5", changes=("x1", "bin width")),
    ]
    drive(browser, lab, artifacts, "02", ["x1", "y1", "x2", "y2", "output size", "sampling ratio"], steps,
          roi_align_reference, 'dict(feature=p.feature.tolist())', "RoIAlignPanel", controls=("aligned",),
          latency="x1")


# ---------------------------------------------------------------------------------------------
# notebook 03: the sliding RoI, RoIPool against RoIAlign
# ---------------------------------------------------------------------------------------------
def pool_vs_align_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """Both outputs for the shifted box, recomputed with torchvision.ops.roi_pool / roi_align."""
    feature = torch.tensor(k.extra["feature"], dtype=torch.float64)[None, None]
    v, p, sr = k.values, k.extra["output_size"], k.extra["sampling_ratio"]
    s = v["shift"]
    box = torch.tensor([[0.0, v["x1"] + s, v["y1"], v["x2"] + s, v["y2"]]], dtype=torch.float64)
    pool = torchvision.ops.roi_pool(feature, box, p, 1.0)[0, 0]
    align = torchvision.ops.roi_align(feature, box, p, 1.0, sr, False)[0, 0]
    close(readout["shift"], s, 4, where, "shift")
    close(readout["RoIPool bin (0, 0)"], float(pool[0, 0]), 4, where, "RoIPool bin (0, 0)")
    close(readout["RoIAlign bin (0, 0)"], float(align[0, 0]), 4, where, "RoIAlign bin (0, 0)")
    rows_match(readout, "RoIPool ", pool, where)
    rows_match(readout, "RoIAlign ", align, where)
    corners = [int(math.floor(abs(c) + 0.5)) * (1 if c >= 0 else -1) for c in box[0, 1:].tolist()]  # C round()
    assert readout_numbers(readout["RoIPool corners"]) == corners, f"{where}: RoIPool corners"


def test_notebook_03_sliding_roi(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("shift ArrowRight", "shift", "ArrowRight", changes=("shift", "x1 + shift", "RoIAlign bin (0, 0)")),
        Step("shift PageUp", "shift", "PageUp", changes=("shift", "RoIAlign bin (0, 0)")),
        Step("type shift 1.5", "shift", "type", "1.5", changes=("shift", "RoIPool corners", "RoIPool bin (0, 0)")),
        Step("type x1 0.6", "x1", "type", "0.6", changes=("x1 + shift", "RoIAlign bin (0, 0)")),
    ]
    drive(browser, lab, artifacts, "03", ["x1", "y1", "x2", "y2", "shift"], steps, pool_vs_align_reference,
          'dict(feature=p.feature.tolist(), output_size=p.output_size, sampling_ratio=p.sampling_ratio)',
          "RoIPoolVsAlignPanel", latency="shift")


# ---------------------------------------------------------------------------------------------
# notebook 04: the FPN level of a box
# ---------------------------------------------------------------------------------------------
def fpn_level_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The level recomputed here in float64 (k = floor(4 + log2(sqrt(wh) / 224) + 1e-6), torchvision 0.29's
    rule, clamped to 2..5) and by torchvision's own LevelMapper on the panel's box."""
    from torchvision.ops.poolers import LevelMapper

    w, h = k.values["w"], k.values["h"]
    side = math.sqrt(float(w) * float(h))
    unclamped = math.floor(4 + math.log2(side / 224) + 1e-6)
    level = min(max(unclamped, 2), 5)
    cx, cy = k.extra["centre"]
    box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], dtype=torch.float32)
    assert level == int(LevelMapper(2, 5)([box])[0]) + 2, f"{where}: float64 rule and LevelMapper disagree"
    assert readout["w"] == str(w) and readout["h"] == str(h), f"{where}: w/h"
    close(readout["sqrt(wh)"], side, 3, where, "sqrt(wh)")
    assert readout["k unclamped"] == str(unclamped), f"{where}: k unclamped {readout['k unclamped']}, expected {unclamped}"
    assert readout["level"] == str(level), f"{where}: level {readout['level']}, expected {level}"
    assert readout["feature map"] == str(level - 2), f"{where}: feature map"
    assert readout["stride"] == str(2 ** level), f"{where}: stride"
    close(readout["spatial_scale"], 2.0 ** -level, 4, where, "spatial_scale")
    assert readout["cells w x h"] == f"{w / 2 ** level:.3g} x {h / 2 ** level:.3g}", f"{where}: cells"


@pytest.mark.timeout(900)
def test_notebook_04_fpn_level(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("w ArrowRight", "w", "ArrowRight", changes=("w", "sqrt(wh)", "cells w x h")),
        Step("h PageUp", "h", "PageUp", changes=("h", "sqrt(wh)")),
        Step("type w 600", "w", "type", "600", changes=("w", "k unclamped", "level", "stride")),
        Step("type h 0 (an empty box: a message)", "h", "type", "0", message=True),
        Step("type h 900", "h", "type", "900", changes=("h", "level", "stride")),
        Step("w ArrowRight at P5", "w", "ArrowRight", changes=("w", "sqrt(wh)")),
    ]
    drive(browser, lab, artifacts, "04", ["w (px)", "h (px)"], steps, fpn_level_reference,
          'dict(centre=list(p.centre))', "FPNLevelPanel", latency="w (px)", run_timeout=500)


# ---------------------------------------------------------------------------------------------
# notebook 05: the anchor-matching thresholds
# ---------------------------------------------------------------------------------------------
def anchor_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The counts recomputed here with torchvision's Matcher on the IoU matrix of the kernel's anchors
    (torchvision.ops.box_iou), for the sliders' thresholds."""
    from torchvision.models.detection._utils import Matcher

    v = k.values
    gt = torch.tensor(k.extra["gt"], dtype=torch.float32)
    anchors = torch.tensor(k.extra["anchors"], dtype=torch.float32)
    matches = Matcher(v["fg"], v["bg"], allow_low_quality_matches=bool(v["low_quality"]))(
        torchvision.ops.box_iou(gt, anchors))
    assert readout["positives"] == str(int((matches >= 0).sum())), f"{where}: positives"
    assert readout["ignored"] == str(int((matches == -2).sum())), f"{where}: ignored"
    assert readout["negatives"] == str(int((matches == -1).sum())), f"{where}: negatives"


@pytest.mark.timeout(900)
def test_notebook_05_anchor_thresholds(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("fg ArrowRight", "fg", "ArrowRight", changes=("positives",)),
        Step("type bg 0.1", "bg", "type", "0.1", changes=("ignored", "negatives")),
        Step("type bg 0.9 (bg > fg: a message)", "bg", "type", "0.9", message=True),
        Step("type bg 0.3", "bg", "type", "0.3", changes=("ignored",)),
    ]
    drive(browser, lab, artifacts, "05", ["fg IoU >=", "bg IoU <"], steps, anchor_reference,
          'dict(gt=p.gt_boxes.tolist(), anchors=p.anchors.tolist())', "AnchorMatchPanel", controls=("low-quality",),
          latency="fg IoU >=", run_timeout=500)


def ground_truth_box_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The counts recomputed here: torchvision.ops.box_iou with the moved box, torchvision's Matcher as the
    RPN uses it (0.7, 0.3, low-quality matches) and as the box head uses it (0.5, 0.5) on the proposals."""
    from torchvision.models.detection._utils import Matcher

    v, g = k.values, k.extra["box"]
    gt = torch.tensor(k.extra["gt"], dtype=torch.float32)
    gt[g] = torch.tensor([v["x1"], v["y1"], v["x2"], v["y2"]], dtype=torch.float32)
    iou = torchvision.ops.box_iou(gt, torch.tensor(k.extra["anchors"], dtype=torch.float32))
    labels = Matcher(0.7, 0.3, allow_low_quality_matches=True)(iou)
    proposals = torch.tensor(k.extra["proposals"], dtype=torch.float32)
    head = Matcher(0.5, 0.5, allow_low_quality_matches=False)(torchvision.ops.box_iou(gt, proposals))
    assert readout["box"] == f"({v['x1']}, {v['y1']}, {v['x2']}, {v['y2']})", f"{where}: box {readout['box']}"
    close(readout["best anchor IoU"], float(iou[g].max()), 4, where, "best anchor IoU")
    for key, want in (("positive anchors (this box)", labels == g), ("positive anchors (all boxes)", labels >= 0),
                      ("ignored anchors", labels == -2), ("negative anchors", labels == -1),
                      ("box-head positives (this box)", head == g)):
        assert readout[key] == str(int(want.sum())), f"{where}: {key} shows {readout[key]}, torchvision {int(want.sum())}"


@pytest.mark.timeout(900)
def test_notebook_05_ground_truth_box(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("x2 ArrowRight", "x2", "ArrowRight", changes=("box", "best anchor IoU")),
        Step("y1 PageUp", "y1", "PageUp", changes=("box", "best anchor IoU")),
        Step("type x1 36", "x1", "type", "36", changes=("box",)),
        Step("type y1 85", "y1", "type", "85", changes=("box",)),
        Step("type x2 68", "x2", "type", "68", changes=("box",)),
        Step("type y2 117", "y2", "type", "117", changes=("box", "best anchor IoU")),
        Step("type x2 30 (inverted: a message)", "x2", "type", "30", message=True),
        Step("type x2 68", "x2", "type", "68", changes=("box",)),
    ]
    drive(browser, lab, artifacts, "05", ["x1", "y1", "x2", "y2"], steps, ground_truth_box_reference,
          'dict(gt=p.gt_boxes.tolist(), anchors=p.anchors.tolist(), proposals=p.proposals.tolist(), box=p.box_index)',
          "GroundTruthBoxPanel", latency="x2", run_timeout=500, tag="ground-truth-box")


# ---------------------------------------------------------------------------------------------
# notebook 06: the trained box head, score threshold and per-class NMS
# ---------------------------------------------------------------------------------------------
def detection_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The survivors recomputed here with torchvision.ops.batched_nms on the kernel's candidates."""
    v = k.values
    boxes = torch.tensor(k.extra["boxes"], dtype=torch.float32)
    scores = torch.tensor(k.extra["scores"], dtype=torch.float32)
    labels = torch.tensor(k.extra["labels"], dtype=torch.int64)
    above = torch.where(scores > v["score_thresh"])[0]
    kept = above[torchvision.ops.batched_nms(boxes[above], scores[above], labels[above], v["nms_thresh"])[:30]]
    assert readout["candidates"] == str(len(scores)), f"{where}: candidates"
    assert readout["above score"] == str(len(above)), f"{where}: above score"
    assert readout["kept"] == str(len(kept)), f"{where}: kept {readout['kept']}, torchvision {len(kept)}"
    assert readout["removed by NMS or the cap"] == str(len(above) - len(kept)), f"{where}: removed"
    names = k.extra["names"]
    for t, i in enumerate(kept[:10].tolist()):
        b = [round(float(c), 1) for c in boxes[i]]
        want = f"{names[int(labels[i])]} {float(scores[i]):.3f} {b}"
        assert readout[f"#{t}"] == " ".join(want.split()), f"{where}: #{t} shows {readout[f'#{t}']}, torchvision {want}"


@pytest.mark.timeout(900)
def test_notebook_06_detections(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("score PageUp", "score_thresh", "PageUp", changes=("above score", "kept")),
        Step("type score 0.5", "score_thresh", "type", "0.5", changes=("above score",)),
        Step("NMS ArrowRight", "nms_thresh", "ArrowRight"),
        Step("type NMS 0.95", "nms_thresh", "type", "0.95", changes=("kept",)),
        Step("select validation image 0", "image", "select", "validation image 0", changes=("#0",)),
        Step("select validation image 46", "image", "select", "validation image 46", changes=("#0",)),
    ]
    drive(browser, lab, artifacts, "06", ["score >", "NMS IoU >"], steps, detection_reference,
          'dict(boxes=p.candidates[p.index][0].tolist(), scores=p.candidates[p.index][1].tolist(), '
          'labels=p.candidates[p.index][2].tolist(), names=list(p.class_names), '
          'options={"image": [list(o) for o in p.sliders["image"].options]})',
          "DetectionPanel", controls=("image",), latency="NMS IoU >", run_timeout=500)


# ---------------------------------------------------------------------------------------------
# notebook 07: one proposal's mask target and the trained mask head's prediction
# ---------------------------------------------------------------------------------------------
def mask_roi_reference(readout: dict, k: KernelPanel, where: str) -> None:
    """The matched object (torchvision.ops.box_iou) and the 28 x 28 target (torchvision.ops.roi_align of
    its mask, adaptive sampling, aligned as the toggle says), recomputed here."""
    v = k.values
    box = torch.tensor([[v["x1"], v["y1"], v["x2"], v["y2"]]], dtype=torch.float32)
    iou = torchvision.ops.box_iou(box, torch.tensor(k.extra["gt"], dtype=torch.float32))[0]
    g = int(iou.argmax())
    assert readout["matched object"].startswith(f"{g} "), f"{where}: matched {readout['matched object']}, expected {g}"
    close(readout["box IoU"], float(iou[g]), 4, where, "box IoU")
    mask = torch.tensor(k.extra["masks"][g], dtype=torch.float32)[None, None]
    target = torchvision.ops.roi_align(mask, [box], 28, 1.0, -1, bool(v["aligned"]))[0, 0]
    assert readout["target cells > 0.5"] == str(int((target > 0.5).sum())), f"{where}: target cells"
    close(readout["target sum"], float(target.sum()), 2, where, "target sum")
    assert readout["aligned"] == str(bool(v["aligned"])), f"{where}: aligned"


@pytest.mark.timeout(900)
def test_notebook_07_mask_roi(browser: Browser, lab: JupyterLab, artifacts: Path) -> None:
    steps = [
        Step("x1 ArrowRight", "x1", "ArrowRight", changes=("x1", "target sum")),
        Step("y2 PageUp", "y2", "PageUp", changes=("y2", "target sum")),
        Step("type x2 70", "x2", "type", "70", changes=("x2", "box IoU")),
        Step("toggle aligned", "aligned", "toggle", changes=("aligned", "target sum")),
        Step("type x1 100 (inverted: a message)", "x1", "type", "100", message=True),
        Step("type x1 50", "x1", "type", "50", changes=("x1",)),
    ]
    drive(browser, lab, artifacts, "07", ["x1", "y1", "x2", "y2"], steps, mask_roi_reference,
          'dict(gt=p.gt_boxes.tolist(), masks=p.gt_masks.tolist())', "MaskRoIPanel",
          controls=("aligned (target)",), latency="x1", run_timeout=500)

"""The figures the notebooks' text relies on, tested at two depths (nbval never compares images).

Each figure is produced exactly as its notebook produces it: the notebook's code cells are run
in order, in this process (Agg backend, ``plt.show`` a no-op), up to the cell that draws it, and
that cell's figure is taken. Then:

1. **the numbers behind the figure**: the artist data (the map shown, the RoI rectangle, the bin
   lines, the sample point coordinates, the plotted curves, the bars and dots) are compared with
   an independent recomputation in this file: torchvision's rules written out in float64,
   ``torchvision.ops.roi_align``/``roi_pool``, ``pycocotools`` for mask IoU;
2. **the picture itself** with pytest-mpl against the PNGs committed in ``tests/baseline/``.

Tolerance, and why text is left out of the picture: matplotlib's text depends on the font found
on the machine (the bundled DejaVu Sans, or a system copy of another version when one is
installed, e.g. by Debian's chromium) and on the FreeType it was built with (pip wheels bundle one,
conda-forge links the system's); a glyph that moves by one pixel changes many pixels. So before
comparing, :func:`without_text` hides every text (titles, axis labels, tick labels, value labels,
legends); the layout is fixed (``figsize``, no tight/constrained layout in these cells), so hiding
text moves nothing else. What remains (image cells, rectangles, bin lines, points, curves, bars)
is rasterised by Agg identically everywhere, and is compared with an RMS tolerance of
``TOLERANCE`` (on 0-255): room for antialiasing differences between matplotlib releases, yet a
point or bin line moved by a tenth of a pixel of the map fails (``test_tolerance_catches_a_moved_point``).
The text itself is checked at depth 1 (value labels, titles).

Regenerate the baselines (after an intended change of a figure; look at them before committing)::

    .venv/bin/python -m pytest tests/test_figures.py --mpl-generate-path=tests/baseline

``--mpl`` is in pyproject's ``addopts``, so the README's test command compares them; on a failure
the baseline, the result and their difference are written to ``test-artifacts/mpl/``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from helpers.project import NOTEBOOKS_DIR, ROOT
from helpers.series import notebook_files

NOTEBOOKS = NOTEBOOKS_DIR
TOLERANCE = 1.0
MPL = dict(baseline_dir="baseline", tolerance=TOLERANCE, style="default", savefig_kwargs={"dpi": 72})

# figure id -> (notebook prefix, substrings that together identify the first code cell drawing it)
FIGURES = {
    "grid_01": ("01", ("viz.draw_feature_grid(", "viz.draw_roi_bins(", "viz.draw_sample_points(")),
    "areas_01": ("01", ("viz.draw_opposite_areas(",)),
    "grid_02": ("02", ("viz.draw_feature_grid(", "viz.draw_roi_bins(", "viz.draw_sample_points(")),
    "staircase_03": ("03", ("viz.draw_shift_curves(",)),
    "iou_03": ("03", ("viz.draw_iou_plot(",)),
    "recall_05": ("05b", ("draw_recall_curves(",)),
    "refine_06": ("06", ("draw_box_refinement(",)),
    "mask_errors_07": ("07", ("draw_mask_errors(",)),
}


# ---------------------------------------------------------------------------------------------
# running a notebook's cells in this process
# ---------------------------------------------------------------------------------------------
class NotebookRun:
    """The code cells of one notebook run in order (as a fresh kernel would), stopping once every
    wanted figure is drawn. ``figures[id]`` is the figure of the cell that drew it; ``ns`` the
    notebook's variables at that point."""

    def __init__(self, prefix: str) -> None:
        paths = sorted(NOTEBOOKS.glob(f"{prefix}_*.ipynb"))
        if len(paths) != 1:
            pytest.fail(f"expected one notebook {prefix}_*.ipynb, found {[p.name for p in paths]}", pytrace=False)
        self.name = paths[0].name
        wanted = {fid: marks for fid, (p, marks) in FIGURES.items() if p == prefix}
        nb = nbformat.read(paths[0], as_version=4)
        from IPython.display import display

        self.ns: dict[str, Any] = {"__name__": "__main__", "display": display}
        self.figures: dict[str, Figure] = {}
        show = plt.show
        plt.show = lambda *args, **kwargs: None
        plt.close("all")
        # a kernel runs in the notebook's folder; and what the notebook changes globally (seeds,
        # threads, dtype) must not leak into the tests that run after this one in this process
        saved = (os.getcwd(), torch.get_rng_state(), np.random.get_state(), random.getstate(),
                 torch.get_default_dtype(), torch.get_num_threads(), np.get_printoptions())
        os.chdir(NOTEBOOKS)
        try:
            for k, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not wanted.keys() - self.figures.keys():
                    continue
                if any(line.lstrip().startswith(("%", "!")) for line in cell.source.splitlines()):
                    pytest.fail(f"{self.name} cell {k} uses IPython syntax; this runner cannot run it")
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(cell.source, f"{self.name}[cell {k}]", "exec"), self.ns)  # noqa: S102
                for fid, marks in wanted.items():
                    if fid not in self.figures and all(m in cell.source for m in marks):
                        self.figures[fid] = plt.gcf()
                keep = {f.number for f in self.figures.values()}
                for num in plt.get_fignums():
                    if num not in keep:
                        plt.close(num)
        finally:
            plt.show = show
            os.chdir(saved[0])
            torch.set_rng_state(saved[1])
            np.random.set_state(saved[2])
            random.setstate(saved[3])
            torch.set_default_dtype(saved[4])
            torch.set_num_threads(saved[5])
            np.set_printoptions(**saved[6])
        missing = sorted(wanted.keys() - self.figures.keys())
        if missing:
            pytest.fail(f"{self.name}: no code cell draws {[wanted[m] for m in missing]}", pytrace=False)


_RUNS: dict[str, NotebookRun] = {}


def figure_of(fid: str) -> tuple[Figure, dict[str, Any]]:
    prefix = FIGURES[fid][0]
    if prefix not in _RUNS:
        _RUNS[prefix] = NotebookRun(prefix)
    run = _RUNS[prefix]
    return run.figures[fid], run.ns


def without_text(fig: Figure) -> Figure:
    """Hide every text of ``fig`` (see the module docstring) and return it."""
    for ax in fig.axes:
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
        ax.set_xlabel("")
        ax.set_ylabel("")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(NullFormatter())
            axis.set_minor_formatter(NullFormatter())
        for text in ax.texts:
            text.set_visible(False)
        if ax.get_legend() is not None:
            ax.get_legend().set_visible(False)
    for text in fig.texts:
        text.set_visible(False)
    return fig


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------
def roi_align_geometry(box: tuple[float, ...], output: int, sampling_ratio: int) -> tuple[np.ndarray, ...]:
    """torchvision's RoIAlign rule (aligned=False, spatial_scale=1) in float64:
    returns (bin edges x, bin edges y, sample points [N, 2] in row-major bin order, then grid order)."""
    x1, y1, x2, y2 = box
    roi_w, roi_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    bw, bh = roi_w / output, roi_h / output
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / output)
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / output)
    points = [(x1 + j * bw + (ix + 0.5) * bw / gw, y1 + i * bh + (iy + 0.5) * bh / gh)
              for i in range(output) for j in range(output) for iy in range(gh) for ix in range(gw)]
    return (x1 + np.arange(output + 1) * bw, y1 + np.arange(output + 1) * bh, np.array(points))


def only(items: list, what: str) -> Any:
    assert len(items) == 1, f"expected one {what}, found {len(items)}"
    return items[0]


def check_grid_axes(ax: Any, feature: np.ndarray, box: tuple[float, ...], output: int, sampling_ratio: int) -> None:
    """A feature-grid axes: the map, the RoI rectangle, its bin lines and its sample points."""
    from helpers.viz import COLORS

    h, w = feature.shape
    image = only(ax.images, "image")
    assert np.array_equal(np.asarray(image.get_array()), feature), "the map drawn is not the feature map"
    assert np.allclose(image.get_extent(), (-0.5, w - 0.5, h - 0.5, -0.5)), "pixel (0, 0) must be centred at (0, 0)"
    labels = sorted((round(t.get_position()[0], 6), t.get_text()) for t in ax.texts if t.get_visible()
                    and t.get_text() and abs(t.get_position()[0] - round(t.get_position()[0])) < 1e-9)
    assert [t for _, t in labels] == [t for _, t in sorted(
        (x, f"{feature[y, x]:g}") for y in range(h) for x in range(w))], "value labels differ from the map"
    edges_x, edges_y, points = roi_align_geometry(box, output, sampling_ratio)
    rect = only([p for p in ax.patches if isinstance(p, Rectangle) and p.get_zorder() == 4], "RoI rectangle")
    assert np.allclose([*rect.get_xy(), rect.get_width(), rect.get_height()],
                       [box[0], box[1], box[2] - box[0], box[3] - box[1]]), "the RoI rectangle is not the box"
    lines = only([c for c in ax.collections if isinstance(c, LineCollection) and c.get_zorder() == 4], "bin lines")
    vertical = sorted({round(s[0][0], 9) for s in lines.get_segments() if math.isclose(s[0][0], s[-1][0])})
    horizontal = sorted({round(s[0][1], 9) for s in lines.get_segments() if math.isclose(s[0][1], s[-1][1])})
    inner_x, inner_y = set(np.round(edges_x[1:-1], 9)), set(np.round(edges_y[1:-1], 9))
    assert inner_x <= set(vertical) <= set(np.round(edges_x, 9)), f"vertical bin lines at {vertical}, edges {edges_x}"
    assert inner_y <= set(horizontal) <= set(np.round(edges_y, 9)), f"horizontal bin lines at {horizontal}"
    dots = only([c for c in ax.collections if isinstance(c, PathCollection)
                 and np.allclose(c.get_facecolor()[0][:3], matplotlib.colors.to_rgb(COLORS["sample"]))], "sample points")
    assert np.allclose(dots.get_offsets(), points, atol=1e-12), \
        f"sample points drawn {dots.get_offsets().tolist()}, torchvision's rule gives {points.tolist()}"


# ---------------------------------------------------------------------------------------------
# the figures
# ---------------------------------------------------------------------------------------------
WORKED_FEATURE = np.arange(1.0, 17.0).reshape(4, 4)
WORKED_BOX = (1.2, 0.8, 2.8, 2.2)


@pytest.mark.mpl_image_compare(**MPL)
def test_grid_with_bins_and_sample_points_01() -> Figure:
    """Notebook 01: the 4x4 map 1..16, RoI (1.2, 0.8, 2.8, 2.2), 2x2 bins, the bin centres."""
    fig, _ = figure_of("grid_01")
    ax = only(fig.axes, "axes")
    check_grid_axes(ax, WORKED_FEATURE, WORKED_BOX, 2, 1)
    assert ax.get_ylim() == (3.5, -0.5)  # y points down (moved here from the notebook, as plumbing)
    dots = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) == 4]
    assert np.allclose(dots[-1].get_offsets(), [[1.6, 1.15], [2.4, 1.15], [1.6, 1.85], [2.4, 1.85]])
    # the values at those points, as the text states them, from an independent reference
    grid = torch.tensor(dots[-1].get_offsets(), dtype=torch.float64)
    norm = (2 * grid / 3 - 1)[None, None]  # align_corners=True: pixel centres 0..3 -> -1..1
    values = torch.nn.functional.grid_sample(torch.tensor(WORKED_FEATURE)[None, None], norm, align_corners=True)
    assert np.allclose(values.flatten().numpy(), [7.2, 8.0, 10.0, 10.8])
    return without_text(fig)


@pytest.mark.mpl_image_compare(**MPL)
def test_grid_with_bins_and_sample_points_02() -> Figure:
    """Notebook 02: sampling_ratio 1 and 2 on the worked RoI, adaptive on a 3.0 x 2.5 box."""
    fig, _ = figure_of("grid_02")
    cases = [(WORKED_BOX, 1), (WORKED_BOX, 2), ((0.4, 0.3, 3.4, 2.8), -1)]
    assert len(fig.axes) == len(cases)
    for ax, (box, sr) in zip(fig.axes, cases):
        check_grid_axes(ax, WORKED_FEATURE, box, 2, sr)
    counts = [len(only([c for c in ax.collections if isinstance(c, PathCollection)
                        and c.get_zorder() == 5], "sample points").get_offsets()) for ax in fig.axes]
    assert counts == [4, 16, 16], f"samples drawn per panel {counts}: 2x2 bins x (1, 4, 2x2 adaptive)"
    return without_text(fig)


RAMP = torch.arange(10, dtype=torch.float64).repeat(8, 1)[None, None]  # [1, 1, 8, 10], value = x
START = (1.2, 0.8, 4.6, 4.4)
SHIFTS = np.arange(41) * 0.05


@pytest.mark.mpl_image_compare(**MPL)
def test_staircase_versus_smooth_03() -> Figure:
    """Notebook 03: bin (0, 0) of RoIPool (steps), the centre of its rounded bin (dashed steps) and RoIAlign
    (line) as the RoI slides right: the rounding and the max drawn apart."""
    fig, _ = figure_of("staircase_03")
    ax = only(fig.axes, "axes")
    by_label = {line.get_label(): line for line in ax.get_lines()}
    assert len(by_label) == 3, list(by_label)
    (pool_line,) = [v for k, v in by_label.items() if "max" in k]
    (centre_line,) = [v for k, v in by_label.items() if "rounded" in k]
    (align_line,) = [v for k, v in by_label.items() if k.startswith("RoIAlign")]
    assert pool_line.get_drawstyle() == centre_line.get_drawstyle() == "steps-post"
    assert centre_line.get_linestyle() == "--" and align_line.get_drawstyle() == "default"
    boxes = torch.tensor([[0.0, *START]], dtype=torch.float64).repeat(len(SHIFTS), 1)
    boxes[:, [1, 3]] += torch.tensor(SHIFTS)[:, None]
    pool = torchvision.ops.roi_pool(RAMP, boxes, 2, 1.0)[:, 0, 0, 0].numpy()
    align = torchvision.ops.roi_align(RAMP, boxes, 2, 1.0, 2, False)[:, 0, 0, 0].numpy()
    for line in (pool_line, centre_line, align_line):
        assert np.allclose(line.get_xdata(), SHIFTS), "the x axis is not the shift 0..2 in steps of 0.05"
    assert np.array_equal(pool_line.get_ydata(), pool), "the staircase is not torchvision's roi_pool"
    assert np.allclose(align_line.get_ydata(), align, atol=1e-12), "the line is not torchvision's roi_align"
    # the rounded bin, recomputed here: corners rounded half away from zero, width x2 - x1 + 1, bin 0 holds
    # columns x1 .. x1 + ceil(w / 2) - 1; its centre is their middle, and RoIPool's max here its last column
    x1 = np.floor(START[0] + SHIFTS + 0.5)
    x2 = np.floor(START[2] + SHIFTS + 0.5)
    last = x1 + np.ceil(np.maximum(x2 - x1 + 1, 1) / 2) - 1
    assert np.array_equal(last, pool)
    assert np.allclose(centre_line.get_ydata(), (x1 + last) / 2), "the dashed steps are not the rounded bin's centre"
    # what the text says: RoIAlign's bin (0, 0) reads the x of its bin centre; RoIPool jumps by whole pixels;
    # rounding alone strays at most 0.40 from the true centre, rounding + max up to 1.05
    assert np.allclose(align, START[0] + SHIFTS + (START[2] - START[0]) / 4)
    assert set(np.diff(pool)) <= {0.0, 1.0} and sorted(set(pool)) == [3.0, 4.0, 5.0]
    assert np.isclose(np.abs((x1 + last) / 2 - align).max(), 0.40) and np.isclose(np.abs(pool - align).max(), 1.05)
    return without_text(fig)


def independent_ious(masks: Any, boxes: Any, stride: int, method: str, m: int = 28) -> list[float]:
    """Crop each object's box from its average-pooled mask with torchvision's ops, paste the crop
    back bilinearly (numpy, float64; crop pixel centres at (i + 0.5) / M of the box, edges repeated),
    threshold at 0.5 and score against the true mask with pycocotools."""
    from pycocotools import mask as mask_utils

    masks = torch.as_tensor(np.asarray(masks))
    boxes = torch.as_tensor(np.asarray(boxes), dtype=torch.float64)
    features = torch.nn.functional.avg_pool2d(masks[:, None].double(), stride)
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float64)[:, None], boxes], dim=1)
    if method == "RoIPool":
        crops = torchvision.ops.roi_pool(features, rois, m, 1 / stride)[:, 0]
    else:
        crops = torchvision.ops.roi_align(features, rois, m, 1 / stride, 2, method.endswith("aligned=True"))[:, 0]
    size = masks.shape[-1]
    out = []
    for crop, box, mask in zip(crops.numpy(), boxes.tolist(), masks.numpy()):
        x1, y1, x2, y2 = box
        centres = np.arange(size) + 0.5
        u = (centres - x1) / (x2 - x1) * m - 0.5        # crop coordinates of every image column
        v = (centres - y1) / (y2 - y1) * m - 0.5
        inside = ((centres >= x1) & (centres <= x2))[None, :] & ((centres >= y1) & (centres <= y2))[:, None]
        uc, vc = np.clip(u, 0, m - 1), np.clip(v, 0, m - 1)
        u0, v0 = np.minimum(np.floor(uc).astype(int), m - 2), np.minimum(np.floor(vc).astype(int), m - 2)
        fu, fv = uc - u0, vc - v0
        pasted = ((1 - fv)[:, None] * ((1 - fu)[None, :] * crop[v0][:, u0] + fu[None, :] * crop[v0][:, u0 + 1])
                  + fv[:, None] * ((1 - fu)[None, :] * crop[v0 + 1][:, u0] + fu[None, :] * crop[v0 + 1][:, u0 + 1]))
        predicted = np.asfortranarray(((pasted * inside) >= 0.5).astype(np.uint8))
        truth = np.asfortranarray(mask.astype(np.uint8))
        out.append(float(mask_utils.iou([mask_utils.encode(predicted)], [mask_utils.encode(truth)], [0])[0, 0]))
    return out


@pytest.mark.mpl_image_compare(**MPL)
def test_misalignment_iou_plot_03() -> Figure:
    """Notebook 03: mean mask IoU per op and stride (bars, every object a dot), and one object slid
    across a stride-32 cell (lines); every IoU recomputed independently."""
    fig, ns = figure_of("iou_03")
    for var in ("masks", "boxes", "slid_masks", "slid_boxes", "offsets", "METHODS", "STRIDES"):
        assert var in ns, f"notebook 03 no longer defines {var!r}; update tests/test_figures.py"
    methods, strides = list(ns["METHODS"]), list(ns["STRIDES"])
    assert methods == ["RoIPool", "RoIAlign aligned=False", "RoIAlign aligned=True"] and strides == [16, 32]
    bars_ax, offsets_ax = fig.axes
    reference = {name: {s: independent_ious(ns["masks"], ns["boxes"], s, name) for s in strides} for name in methods}
    # bars: one container per method, heights = mean IoU per stride; dots: every object
    heights = [[r.get_height() for r in container] for container in bars_ax.containers]
    assert len(heights) == len(methods)
    dots = [c for c in bars_ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == len(methods)
    for name, drawn, scatter in zip(methods, heights, dots):
        want = [float(np.mean(reference[name][s])) for s in strides]
        assert np.allclose(drawn, want, atol=1e-3), f"{name}: bars {drawn}, independent means {want}"
        trials = np.concatenate([reference[name][s] for s in strides])
        assert np.allclose(scatter.get_offsets()[:, 1], trials, atol=2e-3), f"{name}: dots differ from the IoUs"
    # the right panel: the same object at 17 offsets, stride 32
    lines = offsets_ax.get_lines()
    assert [line.get_label() for line in lines] == methods
    for name, line in zip(methods, lines):
        want = independent_ious(ns["slid_masks"], ns["slid_boxes"], 32, name)
        assert np.allclose(line.get_xdata(), ns["offsets"]) and np.allclose(line.get_ydata(), want, atol=2e-3), name
    # what the text says: alignment beats rounding, and matters more at stride 32
    mean = {n: [np.mean(reference[n][s]) for s in strides] for n in methods}
    assert all(a > p for a, p in zip(mean["RoIAlign aligned=True"], mean["RoIPool"]))
    assert mean["RoIAlign aligned=True"][1] - mean["RoIPool"][1] > mean["RoIAlign aligned=True"][0] - mean["RoIPool"][0]
    return without_text(fig)


# ---------------------------------------------------------------------------------------------
# the trained model, notebooks 05-07 (recomputed with torchvision's own modules and pycocotools)
# ---------------------------------------------------------------------------------------------
def trained_model() -> Any:
    from helpers.model import load_checkpoint
    from helpers.project import SHAPES_CHECKPOINT

    return load_checkpoint(SHAPES_CHECKPOINT)[0]


VAL_SEED = 1_000_000  # notebook 09's validation images


@pytest.mark.mpl_image_compare(**MPL)
def test_proposal_recall_05() -> Figure:
    """Notebook 05b: proposal recall before and after NMS over validation images 0..24, recomputed with
    torchvision's RegionProposalNetwork (NMS off: its nms_thresh set to 1.0) and torchvision's box_iou."""
    import copy

    from helpers.shapes import ShapesDataset

    fig, ns = figure_of("recall_05")
    ax = only(fig.axes, "axes")
    lines = {line.get_label().split(";")[0]: line for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(lines) == {"before NMS", "after NMS"}, list(lines)
    thresholds = np.round(np.arange(0.5, 0.951, 0.05), 2)
    model = trained_model()
    no_nms = copy.deepcopy(model.rpn)
    no_nms.nms_thresh = 1.0
    no_nms._post_nms_top_n = {"training": 10**6, "testing": 10**6}
    val = ShapesDataset(200, seed=VAL_SEED)
    best: dict[str, list[torch.Tensor]] = {"before NMS": [], "after NMS": []}
    with torch.no_grad():
        for i in range(ns["N_RECALL"]):
            image, target = val[i]
            images = model.transform([image])[0]
            features = model.backbone(images.tensors)
            for name, rpn in (("before NMS", no_nms), ("after NMS", model.rpn)):
                boxes = rpn(images, features)[0][0]
                best[name].append(torchvision.ops.box_iou(target["boxes"], boxes).max(dim=1).values)
    assert ns["N_RECALL"] == 25
    for name, line in lines.items():
        b = torch.cat(best[name])
        want = [(b >= t).double().mean().item() for t in thresholds]
        assert np.allclose(line.get_xdata(), thresholds) and np.allclose(line.get_ydata(), want, atol=1e-12), name
        assert f"{want[0]:.2f} at 0.5; {want[4]:.2f} at 0.7" in line.get_label()
    # what the text says: every object found at 0.5; NMS costs recall at 0.7 and more at 0.9
    before, after = lines["before NMS"].get_ydata(), lines["after NMS"].get_ydata()
    assert before[0] == after[0] == 1.0 and before[4] > after[4] and before[8] - after[8] > before[4] - after[4]
    return without_text(fig)


@pytest.mark.mpl_image_compare(**MPL)
def test_box_refinement_06() -> Figure:
    """Notebook 06: the loosest proposal on each object and its refinement, decoded again with
    torchvision's BoxCoder; the IoUs written beside them from torchvision's box_iou."""
    from matplotlib.patches import FancyArrowPatch
    from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

    fig, ns = figure_of("refine_06")
    ax = fig.axes[0]
    proposals, deltas, target = ns["val_proposals"], ns["val_deltas"], ns["val_target"]
    model = trained_model()
    with torch.no_grad():  # the proposals are the trained RPN's own
        images = model.transform([ns["val_image"]])[0]
        assert torch.equal(proposals, model.rpn(images, model.backbone(images.tensors))[0][0])
    iou = torchvision.ops.box_iou(proposals, target["boxes"])
    best, matched = iou.max(dim=1)
    shown = [int(torch.where((best >= 0.5) & (matched == g))[0][best[(best >= 0.5) & (matched == g)].argmin()])
             for g in range(len(target["boxes"]))]
    assert shown == ns["shown"]
    classes = ns["val_logits"][:, 1:].argmax(dim=1) + 1
    refined = TVBoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(
        deltas.view(len(proposals), -1, 4)[torch.arange(len(proposals)), classes], proposals)
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    dashed = [r for r in rects if r.get_linestyle() == "--"]
    solid = [r for r in rects if r.get_linestyle() == "-"]
    for drawn, boxes in ((dashed, proposals[shown]), (solid, refined[shown])):
        assert len(drawn) == len(shown)
        for rect, (x1, y1, x2, y2) in zip(drawn, boxes.tolist()):
            assert np.allclose([*rect.get_xy(), rect.get_width(), rect.get_height()],
                               [x1 - 0.5, y1 - 0.5, x2 - x1, y2 - y1], atol=1e-4)
    from helpers.viz import CLASS_COLORS

    for rect, k in zip(solid, classes[shown].tolist()):
        assert np.allclose(rect.get_edgecolor()[:3], matplotlib.colors.to_rgb(CLASS_COLORS[k]))
    assert len([p for p in ax.patches if isinstance(p, FancyArrowPatch)]) == 2 * len(shown)
    after = torchvision.ops.box_iou(refined[shown], target["boxes"])[torch.arange(len(shown)), matched[shown]]
    texts = [t.get_text() for t in ax.texts]
    for i, k in enumerate(shown):
        assert f"{best[k]:.2f}→{after[i]:.2f}" in texts[i], (texts[i], float(best[k]), float(after[i]))
    # what the text says: every one of the loose proposals moves closer to its object
    assert (after > best[shown]).all()
    return without_text(fig)


@pytest.mark.mpl_image_compare(**MPL)
def test_mask_errors_07() -> Figure:
    """Notebook 07: hit / missed / extra pixels of the trained model's final masks against the true
    masks, recomputed from the model's own output; the IoU in each title from pycocotools."""
    from pycocotools import mask as mask_utils

    from helpers.viz import MASK_ERROR_COLORS

    fig, ns = figure_of("mask_errors_07")
    model = trained_model()
    image, target = ns["val_image"], ns["val_target"]
    with torch.no_grad():
        output = model([image])[0]
    keep = output["scores"] >= 0.5
    masks, boxes, labels = output["masks"][keep, 0] > 0.5, output["boxes"][keep], output["labels"][keep]
    panels = fig.axes[1:]
    assert len(panels) == len(target["boxes"])
    colors = {key: np.array(matplotlib.colors.to_rgb(c)) for key, c in MASK_ERROR_COLORS.items()}
    for g, ax in enumerate(panels):
        same = torch.where(labels == target["labels"][g])[0]
        d = int(same[torchvision.ops.box_iou(target["boxes"][g:g + 1], boxes[same])[0].argmax()])
        pred, truth = masks[d].numpy(), target["masks"][g].numpy().astype(bool)
        overlay = np.asarray(ax.images[-1].get_array())
        for key, where in (("hit", pred & truth), ("missed", truth & ~pred), ("extra", pred & ~truth)):
            assert np.allclose(overlay[where][:, :3], colors[key]), (g, key)
        assert (overlay[~(pred | truth)][:, 3] == 0).all()
        rle = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (pred, truth)]
        iou = mask_utils.iou([rle[0]], [rle[1]], [0])[0, 0]
        assert f"IoU {iou:.3f}" in ax.get_title(), (ax.get_title(), iou)
        assert f"{int((truth & ~pred).sum())} missed, {int((pred & ~truth).sum())} extra" in ax.get_title()
    return without_text(fig)


# ---------------------------------------------------------------------------------------------
# the picture comparison can fail
# ---------------------------------------------------------------------------------------------
def _rms_after_moving_a_point(dx: float) -> float:
    from matplotlib.testing.compare import calculate_rms

    from helpers import viz

    def draw(offset: float) -> np.ndarray:
        with matplotlib.style.context("default"):
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            viz.draw_feature_grid(torch.tensor(WORKED_FEATURE), ax=ax)
            viz.draw_roi_bins(WORKED_BOX, 2, ax=ax)
            viz.draw_sample_points(np.array([[1.6 + offset, 1.15], [2.4, 1.15], [1.6, 1.85], [2.4, 1.85]]), ax=ax)
            without_text(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=MPL["savefig_kwargs"]["dpi"])
            plt.close(fig)
        buffer.seek(0)
        return (plt.imread(buffer)[..., :3] * 255).astype(np.int16)

    return calculate_rms(draw(0.0), draw(dx))


def test_tolerance_catches_a_moved_point() -> None:
    """A sample point moved by 0.1 map pixel exceeds the tolerance; the same drawing twice is exact."""
    assert _rms_after_moving_a_point(0.0) == 0.0
    assert _rms_after_moving_a_point(0.1) > TOLERANCE


# ---------------------------------------------------------------------------------------------
# the tensor shapes of the whole model (notebook 08): measured, not typed in
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped_model_and_image() -> tuple[Any, torch.Tensor]:
    from helpers.model import load_checkpoint
    from helpers.project import SHAPES_CHECKPOINT
    from helpers.shapes import ShapesDataset

    model, _ = load_checkpoint(SHAPES_CHECKPOINT)
    image, _ = ShapesDataset(200, seed=1_000_000)[46]  # the image notebook 08 follows
    return model, image


def direct_shapes(model: Any, image: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The same shapes, from calling the model's modules one by one (no hooks)."""
    with torch.no_grad():
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        proposals, _ = model.rpn(images, features)
        heads = model.roi_heads
        # the series' model pools with its method ``pool``; torchvision's assembly with its pooler modules
        pool = model.pool if hasattr(model, "pool") else None
        box_roi = pool(features, proposals, images.image_sizes, 7) if pool else heads.box_roi_pool(
            features, proposals, images.image_sizes)
        box_features = heads.box_head(box_roi)
        class_logits, box_deltas = heads.box_predictor(box_features)
        detections = model([image])[0]
        boxes = [detections["boxes"] * images.image_sizes[0][0] / image.shape[-2]]
        mask_roi = pool(features, boxes, images.image_sizes, 14) if pool else heads.mask_roi_pool(
            features, boxes, images.image_sizes)
        mask_features = heads.mask_head(mask_roi)
        mask_logits = heads.mask_predictor(mask_features)
    out = {"image": tuple(image.shape), "batch": tuple(images.tensors.shape)}
    out.update({f"P{k + 2}": tuple(f.shape) for k, f in enumerate(features.values())})
    out.update(proposals=tuple(proposals[0].shape), box_roi=tuple(box_roi.shape),
               box_features=tuple(box_features.shape), class_logits=tuple(class_logits.shape),
               box_deltas=tuple(box_deltas.shape), detections=tuple(detections["boxes"].shape),
               mask_roi=tuple(mask_roi.shape), mask_features=tuple(mask_features.shape),
               mask_logits=tuple(mask_logits.shape), masks=tuple(detections["masks"].shape))
    return out


def test_model_shapes_are_measured(shipped_model_and_image: tuple[Any, torch.Tensor]) -> None:
    from helpers.viz import measure_model_shapes

    model, image = shipped_model_and_image
    shapes = measure_model_shapes(model, image)
    assert {s.key: s.shape for s in shapes.steps} == direct_shapes(model, image)
    # what the recap teaches: 7x7 and 14x14 RoIs, 28x28 masks, one per class, pasted at image size
    n, k = shapes["detections"].shape[0], shapes["class_logits"].shape[1]
    assert shapes["box_roi"].shape[2:] == (7, 7) and shapes["mask_roi"].shape[2:] == (14, 14)
    assert shapes["mask_logits"].shape == (n, k, 28, 28) and shapes["masks"].shape == (n, 1, *image.shape[1:])
    assert shapes["box_deltas"].shape[1] == 4 * k
    with pytest.raises(ValueError, match="image"):
        measure_model_shapes(model, image[0])
    with pytest.raises(TypeError, match="model"):
        measure_model_shapes(torch.nn.Linear(2, 2), image)


@pytest.mark.mpl_image_compare(**MPL)
def test_model_shapes_figure(shipped_model_and_image: tuple[Any, torch.Tensor]) -> Figure:
    from helpers.viz import draw_model_shapes, measure_model_shapes

    model, image = shipped_model_and_image
    shapes = measure_model_shapes(model, image)
    artists = draw_model_shapes(shapes)
    fig = artists.ax.figure
    # every step is drawn once, with exactly its measured shape
    assert set(artists.shape_texts) == set(shapes.keys())
    for step in shapes.steps:
        assert artists.shape_texts[step.key].get_text() == "[" + ", ".join(map(str, step.shape)) + "]"
    # readable: text at least 8 pt, nothing cut off, no two texts overlapping
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox
    extents = []
    for text in artists.texts:
        assert text.get_fontsize() >= 8, text.get_text()
        bb = text.get_window_extent(renderer)
        assert inside.x0 <= bb.x0 and bb.x1 <= inside.x1 and inside.y0 <= bb.y0 and bb.y1 <= inside.y1, text.get_text()
        extents.append((text.get_text(), bb))
    for i, (ta, a) in enumerate(extents):
        for tb, b in extents[i + 1:]:
            assert not a.overlaps(b), (ta, tb)
    return without_text(fig)


@pytest.mark.mpl_image_compare(**MPL)
def test_opposite_areas_01() -> Figure:
    """Notebook 01: the unit square cut at (dx, dy) = (0.6, 0.15); each rectangle's area is the weight of
    the neighbour opposite it, and that weight is what torchvision's RoIAlign gives the neighbour."""
    fig, ns = figure_of("areas_01")
    areas = ns["areas"]
    ax = only(fig.axes, "axes")
    assert areas.ax is ax and ax.get_ylim()[0] > ax.get_ylim()[1]  # y down
    feature = torch.tensor(WORKED_FEATURE)
    corner = {"A": (1, 1), "B": (2, 1), "C": (1, 2), "D": (2, 2)}  # (x, y) of each neighbour
    for name, rect in areas.rects.items():
        area = rect.get_width() * rect.get_height()
        # the rectangle lies opposite its corner: from the point to the far side of the unit square
        cx, cy = corner[name][0] - 1, corner[name][1] - 1
        xs = (rect.get_x(), rect.get_x() + rect.get_width())
        ys = (rect.get_y(), rect.get_y() + rect.get_height())
        assert np.allclose(xs, (0.6, 1.0) if cx == 0 else (0.0, 0.6)), (name, xs)
        assert np.allclose(ys, (0.15, 1.0) if cy == 0 else (0.0, 0.15)), (name, ys)
        # torchvision: a 1x1 roi_align with one sample at (1.6, 1.15) of a map that is 1 at the neighbour
        one_hot = torch.zeros(4, 4, dtype=torch.float64)
        one_hot[corner[name][1], corner[name][0]] = 1.0
        box = torch.tensor([[0, 2.1, 1.65, 2.1, 1.65]], dtype=torch.float64)  # the point + 0.5, aligned=True
        reference = torchvision.ops.roi_align(one_hot[None, None], box, 1, 1.0, 1, True).item()
        assert math.isclose(area, reference, abs_tol=1e-12) and math.isclose(areas.weights[name], reference), name
        assert f"{reference:.2g}" in areas.formulas[name].get_text() and areas.formulas[name].get_text().startswith(name)
        value = feature[corner[name][1], corner[name][0]].item()
        assert areas.corners[name].get_text() == f"{name} = {value:g}"
    assert math.isclose(sum(areas.weights.values()), 1.0)
    with pytest.raises(ValueError, match="dx"):
        ns["viz"].draw_opposite_areas(1.2, 0.5)
    return without_text(fig)



# ---------------------------------------------------------------------------------------------
# the figure standard on what the notebooks store
# ---------------------------------------------------------------------------------------------
def _png_dpi(png: bytes) -> float | None:
    """The resolution a PNG records in its pHYs chunk (matplotlib writes the dpi it saved at), or None."""
    import struct

    at = 8
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        if kind == b"pHYs":
            per_metre, _, unit = struct.unpack(">IIB", png[at + 8:at + 17])
            return per_metre * 0.0254 if unit == 1 else None
        if kind == b"IDAT":
            return None
        at += 12 + length
    return None


def test_every_stored_figure_is_at_least_110_dpi() -> None:
    """The series' figure standard: every figure a notebook stores (plots and panel snapshots) was
    rendered at 110 dpi or more (``helpers.viz.FIGURE_DPI`` for plots, ``Panel.snapshot`` for panels)."""
    import base64

    from helpers.viz import FIGURE_DPI

    assert FIGURE_DPI >= 110
    checked = 0
    for path in notebook_files(NOTEBOOKS):
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "image/png" in data:
                    dpi = _png_dpi(base64.b64decode(data["image/png"]))
                    assert dpi is not None and round(dpi) >= 110, f"{path.name} cell {k}: {dpi} dpi"
                    checked += 1
    assert checked > 40


def test_every_stored_figure_is_at_most_1000_px_wide() -> None:
    """The series' figure standard, "text at least 8 pt at the size shown": JupyterLab, GitHub (about
    980 px) and the book show a notebook's output at most about 1000 px wide and scale a wider picture
    down, so a 1600-px figure's 8 pt text would show at about 5 pt. Every stored PNG is <= 1000 px wide."""
    import base64
    import struct

    checked, too_wide = 0, []
    for path in notebook_files(NOTEBOOKS):
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "image/png" in data:
                    png = base64.b64decode(data["image/png"])
                    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR", f"{path.name} cell {k}"
                    width, height = struct.unpack(">II", png[16:24])  # IHDR: the first chunk
                    if width > 1000:
                        too_wide.append(f"{path.name} cell {k}: {width} x {height} px")
                    checked += 1
    assert checked > 40
    assert not too_wide, "figures wider than 1000 px:\n" + "\n".join(too_wide)


# ---------------------------------------------------------------------------------------------
# the figure standard: labels a student can read, colours a colour-blind student can tell apart
# ---------------------------------------------------------------------------------------------
def assert_labels_readable(fig: Figure, labels: list) -> None:
    """On ``fig`` as finally drawn (layout engine included): every visible label's patch lies inside
    its axes, no two patches overlap, and the text is at least 8 pt."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = [t for t in labels if t.get_visible()]
    patches = []
    for text in shown:
        assert text.get_fontsize() >= 8, text.get_text()
        patch = text.get_bbox_patch()
        extent = patch.get_window_extent(renderer) if patch is not None else text.get_window_extent(renderer)
        frame = text.axes.get_window_extent(renderer)
        assert (frame.x0 - 1 <= extent.x0 and extent.x1 <= frame.x1 + 1 and frame.y0 - 1 <= extent.y0
                and extent.y1 <= frame.y1 + 1), f"label {text.get_text()!r} reaches outside its axes"
        patches.append((text, extent))
    for i, (ta, a) in enumerate(patches):
        for tb, b in patches[:i]:
            if ta.axes is tb.axes:
                assert not a.overlaps(b), f"labels {ta.get_text()!r} and {tb.get_text()!r} overlap"


def crowded_predictions(target: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """The truth plus, per object, two boxes jittered around it with other classes (a detector's worst
    case: several labels wanting the same corner), scored below the truth so it keeps its place."""
    gen = torch.Generator().manual_seed(seed)
    boxes, labels, scores = [target["boxes"]], [target["labels"]], [torch.full((len(target["boxes"]),), 0.99)]
    for k in (1, 2):
        jitter = (torch.rand(len(target["boxes"]), 4, generator=gen) - 0.5) * 12
        boxes.append((target["boxes"] + jitter).clamp(0, 128))
        labels.append((target["labels"] + k - 1) % 3 + 1)
        scores.append(torch.rand(len(target["boxes"]), generator=gen) * 0.4 + 0.5)
    return {"boxes": torch.cat(boxes), "labels": torch.cat(labels), "scores": torch.cat(scores)}


@pytest.mark.parametrize("layout", ["six_09", "worst_09", "final_08"])
def test_instance_labels_stay_inside_and_apart_in_the_notebooks_grids(layout: str) -> None:
    """The grids of notebooks 08 (final overlay, a 2.2-inch panel) and 09 (six predictions, worst
    images), laid out as there (constrained), with three labelled boxes per object: after the figure
    is drawn, no label is cut by its axes' edge and none covers another."""
    from helpers.shapes import CLASSES, ShapesDataset
    from helpers.viz import draw_instance_predictions

    val = ShapesDataset(200, seed=1_000_000)
    shape, figsize, images = {"six_09": ((4, 3), (8, 10.4), list(range(6)) * 2),
                              "worst_09": ((2, 4), (9, 5.6), [72, 150, 168, 13] * 2),
                              "final_08": ((2, 4), (8.8, 4.8), [4])}[layout]
    fig, axes = plt.subplots(*shape, figsize=figsize, layout="constrained")
    labels = []
    for ax, i in zip(axes.ravel(), images):
        image, target = val[i]
        art = draw_instance_predictions(image, crowded_predictions(target, i), CLASSES, ax, title=f"image {i}\nof {layout}")
        assert len(art.labels) == 3 * len(target["boxes"])
        labels += art.labels
    # the placer finds room for nearly all of them (a label it leaves out is hidden, never overlapping)
    assert sum(t.get_visible() for t in labels) >= 0.9 * len(labels)
    assert_labels_readable(fig, labels)
    plt.close(fig)


def test_a_long_label_at_the_right_edge_slides_inside() -> None:
    """A box touching the image's right edge: its label slides left instead of being cut off."""
    from helpers.viz import draw_instance_predictions

    prediction = {"boxes": torch.tensor([[110.0, 40, 128, 70], [112, 60, 128, 90]]), "labels": torch.tensor([3, 3]),
                  "scores": torch.tensor([0.99, 0.98])}
    fig, ax = plt.subplots(figsize=(2.6, 2.6), layout="constrained")
    art = draw_instance_predictions(torch.zeros(3, 128, 128), prediction, ["bg", "circle", "square", "triangle"], ax,
                                    title="right edge")
    assert all(t.get_visible() for t in art.labels)
    assert_labels_readable(fig, art.labels)
    plt.close(fig)


def test_box_refinement_labels_do_not_cover_each_other() -> None:
    """Notebook 06's loosest proposals: pairs whose labels want the same place (two objects side by side)."""
    from helpers.viz import draw_box_refinement

    proposals = torch.tensor([[40.0, 60, 70, 100], [52, 58, 90, 110], [60, 5, 110, 50]])
    refined = proposals + torch.tensor([[2.0, 2, -2, -2], [3, 1, -1, -3], [-2, -2, 2, 2]])
    fig, axes = plt.subplots(1, 2, figsize=(8.8, 4.5))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.94, wspace=0.04)
    out = draw_box_refinement(torch.zeros(3, 128, 128), proposals, refined, refined, [3, 1, 2],
                              ["bg", "circle", "square", "triangle"], axes[0],
                              ious=(torch.tensor([0.52, 0.51, 0.54]), torch.tensor([0.7, 0.88, 0.81])), title="t")
    assert [t.get_text() for t in out["texts"]] == ["triangle 0.52→0.70", "circle 0.51→0.88", "square 0.54→0.81"]
    assert all(t.get_visible() for t in out["texts"])
    assert_labels_readable(fig, out["texts"])
    plt.close(fig)


def test_mask_target_numbers_and_paste_titles_are_apart() -> None:
    """Notebook 07: five nested proposals' numbers (each on a patch of its proposal's colour) and the
    four paste-step titles, none on another."""
    from helpers.viz import MASK_COLORS, draw_mask_targets, draw_paste_steps

    boxes = torch.tensor([[18.0, 30, 50, 60], [22, 28, 54, 58], [12, 24, 60, 74], [20, 34, 46, 62], [60, 28, 88, 56]])
    fig_targets = plt.figure()
    plt.close(fig_targets)
    out = draw_mask_targets(torch.zeros(3, 100, 100), torch.zeros(100, 100), boxes, torch.zeros(5, 28, 28))
    assert [t.get_text() for t in out["numbers"]] == ["0", "1", "2", "3", "4"]
    for k, text in enumerate(out["numbers"]):
        assert matplotlib.colors.to_hex(text.get_bbox_patch().get_facecolor()) == MASK_COLORS[k].lower()
    assert all(t.get_visible() for t in out["numbers"])
    assert_labels_readable(out["numbers"][0].figure, out["numbers"])
    plt.close(out["numbers"][0].figure)
    mask = torch.rand(28, 28, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(mask, (1, 1, 1, 1))
    steps = draw_paste_steps(mask, padded, (30.0, 30, 78, 78), (28.3, 28.3, 79.7, 79.7), (28, 28, 79, 79),
                             torch.zeros(128, 128), torch.zeros(3, 128, 128))
    fig = steps["mask"].axes.figure
    fig.canvas.draw()
    titles = [ax.title.get_window_extent(fig.canvas.get_renderer()) for ax in fig.axes]
    gap = 4 * fig.dpi / 72  # at least 4 pt between neighbouring titles
    for left, right in zip(titles, titles[1:]):
        assert right.x0 - left.x1 >= gap, (left, right)
    plt.close(fig)


def test_the_loss_legend_of_09_sits_beside_the_curves() -> None:
    """Notebook 09's loss curves: the legend is outside the axes, so it covers no curve."""
    import json

    from helpers.project import SHAPES_TRAIN_LOG
    from helpers.train import LOSS_NAMES

    nb = nbformat.read(next(NOTEBOOKS.glob("09_*.ipynb")), as_version=4)
    cell = only([c for c in nb.cells if c.cell_type == "code" and "moving average" in c.source
                 and "ax.legend(" in c.source], "loss-curve cell")
    show = plt.show
    plt.show = lambda *args, **kwargs: None
    try:
        ns = {"log": json.loads(Path(SHAPES_TRAIN_LOG).read_text()), "LOSS_NAMES": LOSS_NAMES, "np": np, "plt": plt}
        exec(compile(cell.source, "09[loss curves]", "exec"), ns)  # noqa: S102
    finally:
        plt.show = show
    fig, ax = ns["fig"], ns["ax"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer)), "the legend sits on the axes"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", *LOSS_NAMES]
    plt.close(fig)


# colour vision deficiency, simulated (Machado, Oliveira and Fernandes 2009, severity 1.0; linear RGB)
CVD = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}
MIN_CVD_DISTANCE = 12.0
"""The smallest CIELAB distance (CIE76) two colours drawn side by side may keep under a simulated
deficiency: tab10's orange and green (the old square and triangle) fall to about 5 under protanopia;
Okabe-Ito's closest pair (orange and yellow for a deuteranope) keeps about 17."""


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (any shape [..., 3]) to CIELAB (D65)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _simulate(hexes: list[str], matrix: np.ndarray) -> np.ndarray:
    rgb = np.array([matplotlib.colors.to_rgb(c) for c in hexes])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ matrix.T, 0, 1)
    return np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)


def min_cvd_distance(colors: list[str]) -> tuple[float, str]:
    """The closest pair of ``colors`` in CIELAB under every simulated deficiency (and normal vision)."""
    worst = (math.inf, "")
    for name, matrix in {"normal": np.eye(3), **CVD}.items():
        lab = _lab(_simulate(colors, matrix))
        for i in range(len(colors)):
            for j in range(i):
                d = float(np.linalg.norm(lab[i] - lab[j]))
                if d < worst[0]:
                    worst = (d, f"{colors[j]} / {colors[i]} ({name})")
    return worst


def test_the_cvd_check_can_fail() -> None:
    """The check separates: tab10's orange and green (the series' old square and triangle) fail it,
    and so does a colour against itself darkened by a hair."""
    assert min_cvd_distance(["#ff7f0e", "#2ca02c"])[0] < MIN_CVD_DISTANCE
    assert min_cvd_distance(["#0072B2", "#0070B0"])[0] < MIN_CVD_DISTANCE
    assert min_cvd_distance(["#000000", "#ffffff"])[0] > 90


def test_every_palette_is_okabe_ito_and_colour_blind_safe() -> None:
    """Every categorical palette takes its colours from Okabe-Ito (or neutral greys), and colours drawn
    side by side stay apart under simulated deuteranopia and protanopia."""
    from helpers.viz import palettes

    okabe = {c.lower() for c in palettes.OKABE_ITO.values()}
    grey = lambda c: len({round(v, 3) for v in matplotlib.colors.to_rgb(c)}) == 1  # noqa: E731
    groups = {
        "classes": list(palettes.CLASS_COLORS[1:]),
        "instances": list(palettes.INSTANCE_COLORS[1:]),
        "levels": list(palettes.LEVEL_COLORS.values()),
        "rpn": list(palettes.RPN_COLORS.values()),
        "mask proposals": list(palettes.MASK_COLORS),
        "mask errors": list(palettes.MASK_ERROR_COLORS.values()),
        "comparisons": list(palettes.COMPARISON_COLORS),
        "roi pictures": sorted({c.lower() for k, c in palettes.COLORS.items() if k != "grid"}),  # grid: pixel borders
        "default cycle": list(palettes.OKABE_ITO_CYCLE),
        "opposite areas": list(__import__("helpers.viz", fromlist=["x"]).OPPOSITE_AREA_COLORS.values()),
    }
    for name, colors in groups.items():
        assert all(c.lower() in okabe or grey(c) for c in colors), (name, colors)
        assert len({c.lower() for c in colors}) == len(colors), f"{name}: a colour used twice"
        distance, pair = min_cvd_distance(colors)
        assert distance >= MIN_CVD_DISTANCE, f"{name}: {pair} only {distance:.1f} apart"
    # the mask errors also stand apart from every class colour they are drawn beside
    distance, pair = min_cvd_distance([palettes.MASK_ERROR_COLORS["missed"], palettes.MASK_ERROR_COLORS["extra"],
                                       palettes.MASK_ERROR_COLORS["hit"]])
    assert distance >= MIN_CVD_DISTANCE, pair
    # labels are written in black or white, whichever contrasts more with their patch
    assert palettes.text_color_on(palettes.OKABE_ITO["yellow"]) == "black"
    assert palettes.text_color_on(palettes.OKABE_ITO["blue"]) == "white"
    with pytest.raises(ValueError, match="background must be a matplotlib colour"):
        palettes.text_color_on("not-a-colour")
    # plain plots take the same colours, in a fresh interpreter that imports helpers.viz (as a notebook
    # does; here, pytest-mpl's style="default" resets the rcParams of this process)
    import subprocess
    import sys

    cycle = subprocess.run([sys.executable, "-c", "import helpers.viz, matplotlib.pyplot as plt; "
                            "print(' '.join(plt.rcParams['axes.prop_cycle'].by_key()['color']))"],
                           cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}).stdout.split()
    assert [c.lower() for c in cycle] == [c.lower() for c in palettes.OKABE_ITO_CYCLE]


def test_labels_are_placed_again_when_the_layout_changes() -> None:
    """Labels placed on a large axes, then the figure is shrunk and laid out again (tight_layout): at
    the next draw they are placed again, still inside and apart; a removed label no longer takes room."""
    from helpers.viz import place_box_labels

    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax in axes:
        ax.imshow(np.zeros((128, 128)), extent=(-0.5, 127.5, 127.5, -0.5))
    boxes = torch.tensor([[10.0, 10, 60, 60], [14, 12, 64, 58], [90, 20, 128, 50], [20, 70, 70, 120]])
    labels = place_box_labels(axes[0], boxes, ["circle 0.99", "square 0.98", "triangle 0.97", "circle 0.51"],
                              ["#0072B2", "#E69F00", "#009E73", "#0072B2"])
    first = [t.get_position() for t in labels]
    fig.set_size_inches(4.5, 2.4)
    fig.tight_layout()
    assert_labels_readable(fig, labels)
    assert [t.get_position() for t in labels] != first  # moved to fit the smaller axes
    labels[0].remove()
    fig.canvas.draw()
    assert labels[1].get_visible()
    plt.close(fig)

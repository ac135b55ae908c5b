"""Tests of helpers.viz (drawing helpers of notebooks 01-03) and the slider panels of helpers.widgets.

The panels are driven as a user would drive them: 200 seeded random slider moves each, through
``panel.set(...)``. After every move the panel must hold no unexpected error, and the artists it drew
must show the numbers computed independently here: ``torchvision.ops.roi_align`` / ``roi_pool``,
``torch.nn.functional.grid_sample`` and ``helpers.roi.roi_sample_points`` / ``roi_pool_bins``.
Inverted or empty RoIs show what torchvision returns for them (``state["note"]`` says why); where
torchvision itself fails, ``panel.message``; never ``panel.error``.

Run: ``.venv/bin/pytest tests/test_viz_widgets.py -q``.
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision.ops as tv  # noqa: E402
from PIL import Image  # noqa: E402

from helpers import viz  # noqa: E402
from helpers.project import ROOT  # noqa: E402
from helpers.roi import roi_pool_bins, roi_sample_points  # noqa: E402
from helpers.widgets import BilinearPanel, RoIAlignPanel, RoIPoolVsAlignPanel  # noqa: E402

MOVES = 200
WORKED = torch.arange(1.0, 17.0).reshape(4, 4)
WORKED_BOX = (1.2, 0.8, 2.8, 2.2)
CENTRES = [[1.6, 1.15], [2.4, 1.15], [1.6, 1.85], [2.4, 1.85]]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ------------------------------------------------------------------------------------------------
# independent references
# ------------------------------------------------------------------------------------------------


def tv_point(feature: torch.Tensor, x: float, y: float) -> float:
    """torchvision's bilinear value at (x, y), edge rules included: a 1x1 legacy RoIAlign of the
    unit box centred on (x, y) has exactly one sample, at its centre."""
    box = torch.tensor([[x - 0.5, y - 0.5, x + 0.5, y + 0.5]], dtype=torch.float64)
    return tv.roi_align(feature.double()[None, None], [box], 1, 1.0, 1, False).item()


def grid_sample_point(feature: torch.Tensor, x: float, y: float) -> float:
    """Bilinear value at (x, y) inside the map through F.grid_sample (align_corners=True)."""
    h, w = feature.shape
    grid = torch.tensor([[[[2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1]]]], dtype=torch.float64)
    return F.grid_sample(feature.double()[None, None], grid, align_corners=True).item()


def random_move(panel: Any, rng: np.random.Generator) -> dict[str, Any]:
    """Values for 1 to 3 randomly chosen sliders, on their grid, as a drag would leave them."""
    names = list(panel.sliders)
    chosen = rng.choice(names, size=int(rng.integers(1, min(3, len(names)) + 1)), replace=False)
    move = {}
    for name in chosen:
        s = panel.sliders[str(name)]
        if isinstance(s, widgets.Checkbox):
            move[str(name)] = bool(rng.integers(2))
        elif isinstance(s, widgets.Dropdown):
            move[str(name)] = s.options[int(rng.integers(len(s.options)))][1]
        elif isinstance(s, widgets.IntSlider):
            move[str(name)] = int(rng.integers(s.min, s.max + 1))
        else:
            steps = int(round((s.max - s.min) / s.step))
            move[str(name)] = round(s.min + s.step * int(rng.integers(0, steps + 1)), 10)
    return move


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(int)


def full_redraw(panel: Any) -> np.ndarray:
    """The figure drawn from scratch by matplotlib (what ``panel.fig`` shows in a notebook)."""
    buffer = io.BytesIO()
    panel.fig.savefig(buffer, format="png", dpi=panel.dpi)
    return pixels(buffer.getvalue())


# ------------------------------------------------------------------------------------------------
# helpers.viz
# ------------------------------------------------------------------------------------------------


def test_log_prints_shape_dtype_min_max(capsys):
    viz.log("feature", WORKED)
    viz.log("empty", torch.zeros(0, 3))
    viz.log("array", np.array([[2, -3]], dtype=np.int64))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["feature", "shape", "(4,", "4)", "dtype", "torch.float32", "min", "1", "max", "16"]
    assert "shape (0, 3)" in lines[1] and lines[1].split()[-3:] == ["-", "max", "-"]
    assert "dtype int64" in lines[2] and lines[2].split()[-4:] == ["min", "-3", "max", "2"]


def test_feature_grid_puts_pixel_centres_at_integers_y_down():
    fig, ax = plt.subplots()
    grid = viz.draw_feature_grid(WORKED, ax=ax)
    assert list(grid.image.get_extent()) == [-0.5, 3.5, 3.5, -0.5]
    assert ax.get_ylim() == (3.5, -0.5) and ax.get_xlim() == (-0.5, 3.5)
    assert [t.get_text() for t in grid.texts] == [str(v) for v in range(1, 17)]       # row-major
    assert grid.texts[6].get_position() == (2, 1 + viz.LABEL_DY)                       # feature[1, 2] = 7 at x=2, y=1
    assert np.array_equal(grid.centres.get_offsets(), viz.pixel_centres(4, 4))
    assert viz.pixel_centres(2, 3).tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    grid.set_feature(torch.arange(6.0).reshape(2, 3))                                   # resize in place
    assert list(grid.image.get_extent()) == [-0.5, 2.5, 1.5, -0.5]
    assert [t.get_text() for t in grid.texts if t.get_visible()] == ["0", "1", "2", "3", "4", "5"]
    grid.set_feature(torch.arange(25.0).reshape(5, 5))
    assert len(grid.texts) == 25 and grid.texts[24].get_text() == "24"


def test_feature_grid_accepts_batched_maps_and_rejects_others():
    viz.draw_feature_grid(WORKED[None, None], values=False)
    with pytest.raises(ValueError, match=r"feature must be a single map of shape \[H, W\]"):
        viz.draw_feature_grid(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="feature must be a Tensor, an ndarray or a sequence"):
        viz.draw_feature_grid({"a": 1})


def test_roi_bins_of_the_worked_example():
    xs, ys = viz.roi_bin_edges(WORKED_BOX, 2)
    assert np.allclose(xs, [1.2, 2.0, 2.8]) and np.allclose(ys, [0.8, 1.5, 2.2])
    s = roi_sample_points(WORKED_BOX, 2, sampling_ratio=1)                    # helpers.roi's arithmetic
    assert np.allclose(xs, s.bin_edges_x[0].numpy()) and np.allclose(ys, s.bin_edges_y[0].numpy())
    segments = viz.roi_bin_segments(WORKED_BOX, (2, 2))
    assert np.allclose(segments, [[[2.0, 0.8], [2.0, 2.2]], [[1.2, 1.5], [2.8, 1.5]]])
    assert viz.roi_bin_segments(WORKED_BOX, 1).shape == (0, 2, 2)
    assert viz.roi_bin_segments((0, 0, 3, 2), (2, 3)).shape == (3, 2, 2)
    fig, ax = plt.subplots()
    roi = viz.draw_roi_bins(WORKED_BOX, 2, ax=ax)
    dots = viz.draw_sample_points(torch.tensor(CENTRES), ax=ax)
    assert np.allclose(roi.rect.get_xy(), (1.2, 0.8))
    assert math.isclose(roi.rect.get_width(), 1.6) and math.isclose(roi.rect.get_height(), 1.4)
    assert np.allclose(np.array(roi.lines.get_segments()), segments)
    assert np.allclose(dots.get_offsets(), s.points[0, :, :, 0, 0].reshape(-1, 2).numpy())
    roi.set_box((0.0, 0.5, 3.0, 2.5), (3, 1))
    assert np.allclose(roi.rect.get_xy(), (0.0, 0.5)) and roi.rect.get_width() == 3.0
    assert np.allclose(np.array(roi.lines.get_segments()), [[[0, 0.5 + 2 / 3], [3, 0.5 + 2 / 3]], [[0, 0.5 + 4 / 3], [3, 0.5 + 4 / 3]]])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: viz.roi_bin_edges((1, 2, 3), 2), ValueError, r"box must hold exactly 4 numbers"),
        (lambda: viz.roi_bin_edges(WORKED_BOX, 0), ValueError, r"output_size must be a positive int"),
        (lambda: viz.roi_bin_edges(WORKED_BOX, (2, -1)), ValueError, r"output_size must be a positive int"),
        (lambda: viz.draw_sample_points(torch.zeros(4, 3)), ValueError, r"points must have shape \[\.\.\., 2\]"),
        (lambda: viz.cell_rectangles(torch.zeros(2, 3)), ValueError, r"bins must have shape \[\.\.\., 4\]"),
        (lambda: viz.draw_sample_points("points"), TypeError, r"points must be a Tensor"),
    ],
)
def test_viz_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_roipool_bins_drawn_as_whole_pixels():
    bins = roi_pool_bins(WORKED_BOX, 2, 1.0, 4, 4)                          # columns [1, 3) and [2, 4) overlap
    rects = viz.cell_rectangles(bins.bins)
    assert rects.shape == (4, 4, 2)
    assert np.allclose(rects[0], [[0.5, 0.5], [2.5, 0.5], [2.5, 1.5], [0.5, 1.5]])
    assert np.allclose(rects[3], [[1.5, 1.5], [3.5, 1.5], [3.5, 2.5], [1.5, 2.5]])
    empty = viz.cell_rectangles(torch.tensor([[2, 2, 0, 3]]))               # no rows: zero area
    assert np.isclose(np.ptp(empty[0, :, 1]), 0.0)
    polys = viz.draw_roipool_bins(bins.bins)
    assert np.allclose([p.vertices[:4] for p in polys.get_paths()], rects)


def test_neighbours_follow_the_weights():
    fig, ax = plt.subplots()
    art = viz.draw_neighbours(1.6, 1.15, [[1, 1], [2, 1], [1, 2], [2, 2]], [0.34, 0.51, 0.06, 0.09], ax=ax)
    assert np.allclose(art.point.get_offsets(), [[1.6, 1.15]])
    assert np.allclose(art.markers.get_offsets(), [[1, 1], [2, 1], [1, 2], [2, 2]])
    assert [t.get_text() for t in art.labels] == ["A 0.34", "B 0.51", "C 0.06", "D 0.09"]
    assert np.allclose(np.array(art.spokes.get_segments())[:, 0], [[1.6, 1.15]] * 4)
    sizes = art.markers.get_sizes()
    assert sizes[1] > sizes[0] > sizes[3] > sizes[2]                         # bigger weight, bigger marker


def test_pooled_output_resizes_in_place():
    out = viz.draw_pooled_output(torch.tensor([[7.2, 8.0], [10.0, 10.8]]))
    assert [t.get_text() for t in out.texts] == ["7.2", "8", "10", "10.8"]
    assert [t.get_position() for t in out.texts] == [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    out.set_values(torch.arange(9.0).reshape(3, 3))
    assert [t.get_text() for t in out.texts] == [str(v) for v in range(9)]
    out.set_values(torch.ones(1, 1))
    assert [t.get_visible() for t in out.texts] == [True] + [False] * 8
    assert np.allclose(out.image.get_array(), [[1.0]]) and out.lines.get_segments() == []


def test_shift_curves_and_iou_plot_show_their_numbers():
    shifts = np.arange(5) * 0.5
    lines = viz.draw_shift_curves(shifts, [3, 3, 4, 4, 5], [2.0, 2.5, 3.0, 3.5, 4.0], extra={"other": np.zeros(5)})
    assert np.allclose(lines["RoIPool"].get_ydata(), [3, 3, 4, 4, 5]) and lines["RoIPool"].get_drawstyle() == "steps-post"
    assert np.allclose(lines["RoIAlign"].get_xdata(), shifts) and set(lines) == {"RoIPool", "RoIAlign", "other"}
    results = {"a": {16: [0.5, 0.7], 32: [0.2, 0.4]}, "b": {16: [0.9, 0.9], 32: [0.8, 0.6]}}
    out = viz.draw_iou_plot(results)
    assert np.allclose(out["means"]["a"], [0.6, 0.3]) and np.allclose(out["means"]["b"], [0.9, 0.7])
    assert [bar.get_height() for bar in out["bars"]["b"]] == pytest.approx([0.9, 0.7])
    assert np.allclose(np.sort(out["dots"]["a"].get_offsets()[:, 1]), [0.2, 0.4, 0.5, 0.7])
    assert viz.draw_iou_plot({}) == {"bars": {}, "dots": {}, "means": {}}


def test_mask_outlines_one_contour_per_mask():
    yy, xx = np.mgrid[0:20, 0:20]
    disc = ((xx - 10) ** 2 + (yy - 10) ** 2 <= 36).astype(float)
    out = viz.draw_mask_outlines({"truth": disc, "shifted": np.roll(disc, 2, axis=1)}, image=disc, box=(4, 4, 16, 16))
    assert set(out) == {"truth", "shifted"}
    vertices = out["truth"].allsegs[0][0]
    radius = np.hypot(vertices[:, 0] - 10, vertices[:, 1] - 10)
    assert radius.min() > 5.5 and radius.max() < 7.0                          # the 0.5 level line of a radius-6 disc
    ax = out["truth"].axes
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["truth", "shifted"]
    assert all(t.get_fontsize() >= 8 for t in legend.get_texts())           # figure standard: text >= 8 pt
    # the legend sits under the axes and their tick labels: it hides no outline and no tick label
    assert legend.get_window_extent(renderer).y1 < ax.get_window_extent(renderer).y0
    for label in ax.get_xticklabels():
        if label.get_text():
            assert not legend.get_window_extent(renderer).overlaps(label.get_window_extent(renderer)), label


# ------------------------------------------------------------------------------------------------
# BilinearPanel (notebook 01)
# ------------------------------------------------------------------------------------------------


def test_bilinear_panel_starts_on_the_worked_example():
    panel = BilinearPanel()
    assert [s.description for s in panel.sliders.values()] == ["x", "y"]
    state = panel.state
    assert math.isclose(state["interpolated"], 7.2) and panel.error is None
    assert [state[f"{k} value"] for k in ("A top-left", "B top-right", "C bottom-left", "D bottom-right")] == [6, 7, 10, 11]
    assert math.isclose(state["dx"], 0.6) and math.isclose(state["dy"], 0.15)
    assert "class='panel-value' data-key='interpolated'>7.2<" in panel.readout.value
    assert panel.heading.get_text() == "value at (1.60, 1.15) = 7.2"
    for (x, y), expected in zip(CENTRES, [7.2, 8.0, 10.0, 10.8]):
        assert math.isclose(panel.set(x=x, y=y)["interpolated"], expected, rel_tol=1e-12)


def test_bilinear_panel_200_random_moves():
    feature = torch.rand(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    panel = BilinearPanel(feature)
    rng = np.random.default_rng(1)
    for _ in range(MOVES):
        state = panel.set(**random_move(panel, rng))
        assert panel.error is None and panel.message is None
        x, y = panel.sliders["x"].value, panel.sliders["y"].value
        assert state["x"] == x and state["y"] == y
        assert math.isclose(state["interpolated"], tv_point(feature, x, y), abs_tol=1e-12)
        if 0 <= x <= 5 and 0 <= y <= 4:
            assert math.isclose(state["interpolated"], grid_sample_point(feature, x, y), abs_tol=1e-12)
        assert np.allclose(panel.neighbours.point.get_offsets(), [[x, y]])
        x0, y0 = min(max(math.floor(max(x, 0)), 0), 5), min(max(math.floor(max(y, 0)), 0), 4)
        x1, y1 = min(x0 + 1, 5), min(y0 + 1, 4)
        assert np.array_equal(panel.neighbours.markers.get_offsets(), [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
        weights = [state[f"{k} weight"] for k in ("A top-left", "B top-right", "C bottom-left", "D bottom-right")]
        assert math.isclose(sum(weights), 1.0) and min(weights) >= 0
        assert [t.get_text() for t in panel.neighbours.labels] == [f"{k} {w:.2f}" for k, w in zip("ABCD", weights)]


# ------------------------------------------------------------------------------------------------
# RoIAlignPanel (notebook 02)
# ------------------------------------------------------------------------------------------------


def tv_rule_points(box: tuple[float, float, float, float], p: int, sr: int, aligned: bool) -> np.ndarray:
    """torchvision's sample points for any box (loops over its CPU kernel's rule, spatial_scale 1):
    start = x1 - 0.5 * aligned, size = x2 - x1 (at least 1 unless aligned), bin = size / p, grid =
    sr or ceil(size / p), sample = start + bin_index * bin + (i + 0.5) * bin / grid. ``[N, 2]`` (x, y)."""
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if not aligned:
        w, h = max(w, 1.0), max(h, 1.0)
    gw = sr if sr > 0 else math.ceil(w / p)
    gh = sr if sr > 0 else math.ceil(h / p)
    pts = [(x1 - off + j * w / p + (ix + 0.5) * (w / p) / gw, y1 - off + i * h / p + (iy + 0.5) * (h / p) / gh)
           for i in range(p) for j in range(p) for iy in range(max(gh, 0)) for ix in range(max(gw, 0))]
    return np.array(pts, dtype=np.float64).reshape(-1, 2)


def sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    return a[np.lexsort((a[:, 1], a[:, 0]))]


def check_roi_align_panel(panel: RoIAlignPanel, state: dict[str, Any]) -> None:
    v = panel.values()
    x1, y1, x2, y2 = v["x1"], v["y1"], v["x2"], v["y2"]
    p, sr, aligned = v["output_size"], v["sampling_ratio"], v["aligned"]
    box = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)
    h, w = panel.feature.shape
    xmin, xmax = panel.ax.get_xlim()
    ymax, ymin = panel.ax.get_ylim()
    assert xmin < -1 and xmax > w and ymin < -1 and ymax > h                 # the zero frame [-1, W] in view
    if x2 <= x1 or y2 <= y1:                                                 # torchvision's answer, not a refusal
        try:
            reference = tv.roi_align(panel.feature[None, None], [box], p, 1.0, sr if sr > 0 else -1, aligned)[0, 0]
        except (RuntimeError, ValueError):                                   # torchvision itself fails: a message
            assert panel.message and "fails" in panel.message and state == {} and panel.error is None
            return
        assert panel.message is None and "torchvision" in state["note"]
        assert torch.equal(panel.pooled, reference)
        pts = panel.points.get_offsets()
        expected = tv_rule_points((x1, y1, x2, y2), p, sr, aligned)
        assert np.allclose(sorted_rows(pts), sorted_rows(expected), atol=1e-9)
        assert pts.size == 0 or (pts[:, 0].min() >= xmin and pts[:, 0].max() <= xmax
                                 and pts[:, 1].min() >= ymin and pts[:, 1].max() <= ymax)
        if len(expected):                                                    # the drawn samples average to the output
            values = [tv_point(panel.feature, float(x), float(y)) if -1 <= x <= w and -1 <= y <= h else 0.0
                      for x, y in expected]
            grid = len(expected) // (p * p)
            order = [(i, j) for i in range(p) for j in range(p)]
            means = {ij: np.mean(values[k * grid:(k + 1) * grid]) for k, ij in enumerate(order)}
            assert np.allclose([means[ij] for ij in order], reference.reshape(-1).numpy(), atol=1e-9)
        return
    assert "note" not in state
    assert panel.message is None and panel.points.get_visible()
    p, sr, aligned = v["output_size"], v["sampling_ratio"], v["aligned"]
    box = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)
    reference = tv.roi_align(panel.feature[None, None], [box], p, 1.0, sr, aligned)[0, 0]
    assert torch.allclose(panel.pooled, reference, atol=1e-12)
    assert np.allclose(panel.output.image.get_array(), reference.numpy())
    assert panel.output.image.get_clim() == panel.grid.image.get_clim()      # one grey scale for map and output
    assert np.allclose(sorted_rows(panel.points.get_offsets()), sorted_rows(tv_rule_points((x1, y1, x2, y2), p, sr, aligned)))
    readout = [[float(u) for u in state[f"row {i}"].split()] for i in range(p)]     # rounded to 3 decimals
    assert np.allclose(readout, reference.numpy(), atol=5e-4 + 1e-9, rtol=0)
    drawn = [float(t.get_text()) for t in panel.output.texts if t.get_visible()]  # 3 significant digits
    assert np.allclose(drawn, reference.reshape(-1).numpy(), rtol=5e-3, atol=1e-9)
    assert np.allclose(panel.given.get_xy(), (x1, y1))                       # the box the sliders give
    assert math.isclose(panel.given.get_width(), x2 - x1) and math.isclose(panel.given.get_height(), y2 - y1)
    s = roi_sample_points(box[0], p, 1.0, sr, aligned)                        # the region RoIAlign samples
    offset = 0.5 if aligned else 0.0
    width = (x2 - x1) if aligned else max(x2 - x1, 1.0)
    height = (y2 - y1) if aligned else max(y2 - y1, 1.0)
    assert np.allclose(panel.roi_artists.rect.get_xy(), (x1 - offset, y1 - offset))
    assert math.isclose(panel.roi_artists.rect.get_width(), width) and math.isclose(panel.roi_artists.rect.get_height(), height)
    assert np.allclose(np.array(panel.roi_artists.lines.get_segments()).reshape(-1, 2, 2),
                       viz.roi_bin_segments((x1 - offset, y1 - offset, x1 - offset + width, y1 - offset + height), p))
    points = s.points[0].reshape(-1, 2)
    points = points[~torch.isnan(points[:, 0])]
    assert np.allclose(panel.points.get_offsets(), points.numpy())
    assert state["samples per bin"] == len(points) // (p * p)


def test_roi_align_panel_200_random_moves():
    panel = RoIAlignPanel()
    names = [s.description for s in panel.sliders.values()]
    assert names == ["x1", "y1", "x2", "y2", "output size", "sampling ratio", "aligned"]
    check_roi_align_panel(panel, panel.state)
    rng = np.random.default_rng(2)
    inverted = 0
    for _ in range(MOVES):
        state = panel.set(**random_move(panel, rng))
        assert panel.error is None
        check_roi_align_panel(panel, state)
        v = panel.values()
        inverted += v["x2"] <= v["x1"] or v["y2"] <= v["y1"]
    assert 0 < inverted < MOVES                                               # both cases were exercised


def test_roi_align_panel_inverted_and_empty_boxes_show_torchvision():
    """x2 < x1 is not refused: the panel shows torchvision's output and says why; where torchvision's
    own kernel fails (aligned, adaptive, one side negative), that is the message."""
    panel = RoIAlignPanel()
    f = panel.feature[None, None]
    cases = [({"x2": 0.5}, False, 2), ({"y2": -1.0}, True, 2), ({"x1": 2.0, "x2": 2.0}, True, 0),
             ({"x1": 3.0, "x2": 1.5}, True, 0)]
    for move, aligned, sr in cases:
        state = panel.set(**move, aligned=aligned, sampling_ratio=sr)
        v = panel.values()
        box = torch.tensor([[v["x1"], v["y1"], v["x2"], v["y2"]]], dtype=torch.float64)
        assert panel.error is None and panel.message is None and "note" in state
        assert torch.equal(panel.pooled, tv.roi_align(f, [box], 2, 1.0, sr if sr else -1, aligned)[0, 0])
        assert "torchvision" in panel.readout.value and panel.notice.value == ""
        panel.set(x1=1.2, y1=0.8, x2=3.6, y2=3.4, aligned=False, sampling_ratio=2)
        assert panel.message is None and "note" not in panel.state
    state = panel.set(x1=3.0, x2=1.5, aligned=True, sampling_ratio=0, output_size=1)   # ceil(-1.5) = -1 samples
    with pytest.raises((RuntimeError, ValueError)):
        tv.roi_align(f, [torch.tensor([[3.0, 0.8, 1.5, 3.4]], dtype=torch.float64)], 1, 1.0, -1, True)
    assert state == {} and panel.error is None and "fails" in panel.message and "fails" in panel.notice.value
    assert not panel.points.get_visible()


def test_roi_align_panel_png_is_what_matplotlib_draws():
    """The fast redraw (cached background + moving artists) shows what a full redraw shows."""
    panel = RoIAlignPanel()
    rng = np.random.default_rng(3)
    before = panel.image.value
    for _ in range(5):
        panel.set(**random_move(panel, rng))
        assert panel.image.value == panel.png()                              # deterministic, and what was sent
        diff = np.abs(pixels(panel.image.value) - full_redraw(panel)).max(axis=-1)
        assert (diff > 0).mean() < 1e-3, f"{(diff > 0).mean():.2%} of pixels differ from a full redraw"
    assert panel.image.value != before


def stock_full_redraw(panel: Any) -> np.ndarray:
    """The figure drawn from scratch by matplotlib's own Agg canvas and renderer (no glyph cache)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    mine = panel.fig.canvas
    FigureCanvasAgg(panel.fig)
    try:
        assert type(panel.fig.canvas.get_renderer()).__name__ == "RendererAgg"
        return full_redraw(panel)
    finally:
        panel.fig.set_canvas(mine)


@pytest.mark.parametrize("name", ["BilinearPanel", "RoIAlignPanel", "RoIPoolVsAlignPanel", "FPNLevelPanel",
                                  "AnchorMatchPanel", "GroundTruthBoxPanel", "DetectionPanel", "MaskRoIPanel"])
def test_every_panel_png_is_what_matplotlib_draws(name: str, request: pytest.FixtureRequest):
    """Every panel's fast PNG (cached background, moving artists redrawn, glyphs from the cache) shows what
    matplotlib's own renderer draws from scratch: nothing a moving artist covers is lost (frames, ground
    truth drawn above), no text is drawn differently."""
    import helpers.widgets as hw

    cls = getattr(hw, name)
    if name == "DetectionPanel":
        model, val = request.getfixturevalue("trained_and_val")
        panel = cls(model, val, indices=(46, 0))
    elif name == "MaskRoIPanel":
        model, val = request.getfixturevalue("trained_and_val")
        panel = cls(model, *val[46])
    else:
        panel = cls()
    assert isinstance(panel, hw.BlitPanel)                                  # no panel redraws everything
    rng = np.random.default_rng(11)
    for _ in range(6):
        panel.set(**random_move(panel, rng))
        assert panel.error is None
        assert panel.image.value == panel.png()
        diff = np.abs(pixels(panel.image.value) - stock_full_redraw(panel)).max(axis=-1)
        assert (diff > 0).mean() < 1e-3, f"{name}: {(diff > 0).mean():.2%} of pixels differ from a full redraw"


def test_glyph_cache_draws_text_as_matplotlib_does():
    """Text through the panels' renderer (bitmaps kept per glyph and sub-pixel fraction, layouts kept),
    drawn twice so the second comes from the cache, is pixel for pixel matplotlib's own, rotated included."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from helpers.widgets.panel import PanelCanvas

    def draw(canvas_class: type, repeat: int) -> np.ndarray:
        fig = Figure(figsize=(3.0, 2.0), dpi=80)
        canvas = canvas_class(fig)
        for k, (x, y, angle) in enumerate([(0.1, 0.1, 0), (0.333, 0.47, 0), (0.517, 0.2113, 30), (0.05, 0.8, 90)]):
            fig.text(x, y, f"IoU {0.1234 * (k + 1):.3f} gj", fontsize=8 + 2 * k, rotation=angle)
        for _ in range(repeat):
            canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    stock = draw(FigureCanvasAgg, 1)
    assert (stock[..., :3] < 128).any()                                      # text was drawn
    assert np.array_equal(draw(PanelCanvas, 1), stock)
    assert np.array_equal(draw(PanelCanvas, 2), stock)


def test_panels_reject_bad_feature_maps():
    with pytest.raises(TypeError, match=r"feature must be a torch.Tensor\[H, W\]"):
        RoIAlignPanel(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"feature must be a single map Tensor\[H, W\]"):
        BilinearPanel(torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="feature must be a floating-point tensor"):
        RoIPoolVsAlignPanel(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="unknown slider"):
        BilinearPanel().set(z=1.0)


# ------------------------------------------------------------------------------------------------
# RoIPoolVsAlignPanel (notebook 03)
# ------------------------------------------------------------------------------------------------


def test_roipool_vs_align_panel_200_random_moves():
    feature = torch.rand(7, 9, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 10
    panel = RoIPoolVsAlignPanel(feature, box=(1.2, 0.8, 4.6, 4.4), output_size=3, sampling_ratio=2)
    assert [s.description for s in panel.sliders.values()] == ["x1", "y1", "x2", "y2", "shift"]
    rng = np.random.default_rng(5)
    messages = 0
    for move_index in range(MOVES):
        state = panel.set(**random_move(panel, rng))
        assert panel.error is None
        v = panel.values()
        x1, y1, x2, y2, shift = v["x1"], v["y1"], v["x2"], v["y2"], v["shift"]
        given = torch.tensor([[x1 + shift, y1, x2 + shift, y2]], dtype=torch.float64)
        pooled = tv.roi_pool(feature[None, None], [given], 3)[0, 0]                  # torchvision on the box as given
        aligned = tv.roi_align(feature[None, None], [given], 3, 1.0, 2, False)[0, 0]
        assert torch.equal(panel.pooled, pooled) and torch.allclose(panel.aligned_out, aligned, atol=1e-12)
        assert np.allclose(sorted_rows(panel.align_points.get_offsets()),
                           sorted_rows(tv_rule_points(tuple(given[0].tolist()), 3, 2, False)))
        assert panel.message is None
        if x2 <= x1 or y2 <= y1:
            assert "torchvision" in state["note"]
            messages += 1
            continue
        box = given
        assert state["RoIPool bin (0, 0)"] == pooled[0, 0].item()
        assert math.isclose(state["RoIAlign bin (0, 0)"], aligned[0, 0].item(), abs_tol=1e-12)
        bins = roi_pool_bins(box[0], 3, 1.0, 7, 9, dtype=torch.float64)
        assert state["RoIPool corners"] == f"({bins.x1}, {bins.y1}, {bins.x2}, {bins.y2})"
        assert np.allclose([p.vertices[:4] for p in panel.pool_polys.get_paths()], viz.cell_rectangles(bins.bins))
        assert np.allclose(panel.pool_box.get_xy(), (x1 + shift, y1)) and math.isclose(panel.pool_box.get_width(), x2 - x1)
        points = roi_sample_points(box[0], 3, sampling_ratio=2).points[0].reshape(-1, 2)
        assert np.allclose(panel.align_points.get_offsets(), points.numpy())
        assert panel.cursor.get_xdata()[0] == shift
        assert np.allclose(panel.pool_dot.get_ydata(), [pooled[0, 0].item()])
        if move_index % 20 == 0:                                              # the whole curve, now and then
            slid = box.repeat(len(panel.shifts), 1)
            slid[:, [0, 2]] += (panel.shifts - shift)[:, None]
            assert np.allclose(panel.curves["RoIPool"].get_ydata(), tv.roi_pool(feature[None, None], [slid], 3)[:, 0, 0, 0].numpy())
            assert np.allclose(panel.curves["RoIAlign"].get_ydata(),
                               tv.roi_align(feature[None, None], [slid], 3, 1.0, 2, False)[:, 0, 0, 0].numpy(), atol=1e-12)
    assert 0 < messages < MOVES


def test_roipool_vs_align_panel_staircase_on_the_ramp():
    """The numbers behind notebook 03's staircase figure: RoIAlign reads the bin centre exactly,
    RoIPool jumps by whole pixels."""
    panel = RoIPoolVsAlignPanel()                                             # ramp: value = x
    state = panel.set(x1=1.2, y1=0.8, x2=4.6, y2=4.4, shift=0.0)
    assert state["RoIPool corners"] == "(1, 1, 5, 4)" and state["RoIPool bin (0, 0)"] == 3.0
    bin_centre = 1.2 + panel.shifts + (4.6 - 1.2) / 4
    assert np.allclose(panel.align_curve.numpy(), bin_centre.numpy())
    steps = np.diff(panel.pool_curve.numpy())
    assert set(steps) <= {0.0, 1.0} and steps.sum() == 2.0
    assert sorted(set(panel.pool_curve.tolist())) == [3.0, 4.0, 5.0]
    panel.set(shift=0.9)
    assert panel.state["RoIPool bin (0, 0)"] == 4.0                            # x1 + shift = 2.1 and x2 + shift = 5.5 round up
    diff = np.abs(pixels(panel.png()) - full_redraw(panel)).max(axis=-1)
    assert (diff > 0).mean() < 1e-3


# ------------------------------------------------------------------------------------------------
# numbers the notebooks teach (beyond the panels)
# ------------------------------------------------------------------------------------------------


def test_worked_example_numbers():
    """Notebook 01: the four bins 7.2, 8.0, 10.0, 10.8 from grid_sample and from torchvision."""
    values = [grid_sample_point(WORKED, x, y) for x, y in CENTRES]
    assert np.allclose(values, [7.2, 8.0, 10.0, 10.8])
    out = tv.roi_align(WORKED.double()[None, None], [torch.tensor([WORKED_BOX], dtype=torch.float64)], 2, 1.0, 1, False)
    assert np.allclose(out.reshape(-1).numpy(), values)
    # the notes' neighbour list is (row, col): read as (x, y) it names other pixels
    assert [WORKED[r, c].item() for r, c in [(1, 1), (1, 2), (2, 1), (2, 2)]] == [6, 7, 10, 11]
    assert [WORKED[y, x].item() for x, y in [(1, 1), (1, 2), (2, 1), (2, 2)]] == [6, 10, 7, 11]


def test_aligned_false_reads_half_a_feature_pixel_off():
    """Notebook 02: on an average-pooled ramp, aligned=True reads the box centre, aligned=False
    reads half a feature pixel (stride / 2 image pixels) further right."""
    for stride in (4, 16):
        image = (torch.arange(16 * stride, dtype=torch.float64) + 0.5).repeat(2 * stride, 1)[None, None]
        feature = F.avg_pool2d(image, stride)                               # [1, 1, 2, 16]: image x of each centre
        boxes = torch.tensor([[0, 2.0 * stride, 0.0, 5.5 * stride, 1.0], [0, 7.25 * stride, 0.0, 9.0 * stride, 1.0]],
                             dtype=torch.float64)
        centre = (boxes[:, 1] + boxes[:, 3]) / 2
        read_true = tv.roi_align(feature, boxes, 1, 1 / stride, 1, True)[:, 0, 0, 0]
        read_false = tv.roi_align(feature, boxes, 1, 1 / stride, 1, False)[:, 0, 0, 0]
        assert torch.allclose(read_true, centre) and torch.allclose(read_false, centre + stride / 2)


def test_c_round_versus_torch_round_in_roipool():
    """Notebook 03: RoIPool rounds halves away from zero (2.5 -> 3), unlike torch.round (2.5 -> 2)."""
    decreasing = (10 - torch.arange(8, dtype=torch.float64)).repeat(3, 1)[None, None]
    out = tv.roi_pool(decreasing, [torch.tensor([[2.5, 0.0, 5.0, 2.0]], dtype=torch.float64)], 1).item()
    assert 10 - out == 3 and torch.round(torch.tensor(2.5)) == 2
    assert roi_pool_bins((2.5, 0.0, 5.0, 2.0), 1).x1 == 3 and roi_pool_bins((-2.5, 0.0, 5.0, 2.0), 1).x1 == -3


def test_notebook_03_iou_table_matches_an_independent_recomputation():
    """Notebook 03's IoU table: re-run its experiment cells, recompute every IoU with torchvision's
    ops and pycocotools instead of helpers.roi and numpy, and compare with the stored output."""
    from pycocotools import mask as mask_utils

    path = ROOT / "notebooks" / "03_roipool_vs_roialign.ipynb"
    nb = nbformat.read(path, as_version=4)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    start = next(i for i, s in enumerate(sources) if s.startswith("SIZE, M = 256, 28"))
    namespace: dict[str, Any] = {}
    exec("\n".join(sources[1:3]), namespace)                                  # the imports and seeds cells
    exec(sources[start], namespace)                                          # make_object, crop_all, paste, ...
    masks, boxes, paste, methods = namespace["masks"], namespace["boxes"], namespace["paste"], namespace["METHODS"]
    rois = torch.cat([torch.arange(len(boxes), dtype=torch.float64)[:, None], boxes], dim=1)
    rle = lambda m: mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))  # noqa: E731
    means = {}
    for stride in (16, 32):
        features = F.avg_pool2d(torch.from_numpy(masks)[:, None].double(), stride)
        crops = {"RoIPool": tv.roi_pool(features, rois, 28, 1 / stride),
                 "RoIAlign aligned=False": tv.roi_align(features, rois, 28, 1 / stride, 2, False),
                 "RoIAlign aligned=True": tv.roi_align(features, rois, 28, 1 / stride, 2, True)}
        for name in methods:
            ious = [mask_utils.iou([rle(paste(c[0], b) >= 0.5)], [rle(m)], [0])[0, 0]
                    for c, b, m in zip(crops[name], boxes, masks)]
            means[name, stride] = (np.mean(ious), np.std(ious))
    table_cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("table = {name"))
    printed = "".join(o.get("text", "") for o in table_cell.outputs)
    for name in methods:
        row = next(line for line in printed.splitlines() if line.startswith(name + " "))
        expected = "".join(f"{means[name, s][0]:>11.3f} ± {means[name, s][1]:.3f}" for s in (16, 32))
        assert row == f"{name:<24}" + expected
    for stride in (16, 32):                                                   # the story the notebook tells
        assert means["RoIAlign aligned=True", stride][0] > means["RoIPool", stride][0]


# ------------------------------------------------------------------------------------------------
# DetectionPanel (notebook 06) and MaskRoIPanel (notebook 07): the trained model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_and_val():
    from helpers.model import load_checkpoint
    from helpers.project import SHAPES_CHECKPOINT
    from helpers.shapes import ShapesDataset

    model, _ = load_checkpoint(SHAPES_CHECKPOINT)
    return model, ShapesDataset(200, seed=1_000_000)


def test_mask_roi_panel_200_random_moves(trained_and_val):
    """Every move: the target is torchvision's roi_align of the matched object's mask (aligned as the
    toggle says), the pasted mask and its IoU follow from the drawn 28x28 prediction; inverted boxes
    are a message."""
    from helpers.mask_head import paste_masks_in_image
    from helpers.shapes import CLASSES
    from helpers.widgets import MaskRoIPanel

    model, val = trained_and_val
    image, target = val[46]
    panel = MaskRoIPanel(model, image, target, class_names=CLASSES)
    assert panel.error is None and panel.state["box IoU"] == 1.0             # starts on object 0's own box
    masks = target["masks"].double()
    rng = np.random.default_rng(7)
    messages = 0
    for _ in range(MOVES):
        state = panel.set(**random_move(panel, rng))
        assert panel.error is None
        v = panel.values()
        x1, y1, x2, y2, aligned = v["x1"], v["y1"], v["x2"], v["y2"], v["aligned"]
        if x2 <= x1 or y2 <= y1:
            assert panel.message and "Empty or inverted proposal" in panel.message and state == {}
            assert not panel.box_patch.get_visible()
            messages += 1
            continue
        assert panel.message is None and panel.box_patch.get_visible()
        box = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64)
        g = int(tv.box_iou(box, target["boxes"].double())[0].argmax())
        assert panel.matched == g
        expected = tv.roi_align(masks[g][None, None], [box], 28, 1.0, -1, aligned)[0, 0]
        assert torch.allclose(panel.target.double(), expected, atol=1e-5)
        assert np.allclose(panel.target_image.get_array(), panel.target.numpy())
        assert np.allclose(panel.pred_image.get_array(), panel.probability.numpy())
        assert 0 <= float(panel.probability.min()) and float(panel.probability.max()) <= 1
        pasted = paste_masks_in_image(panel.probability[None, None], box.float(), image.shape[-2:])[0, 0] > 0.5
        truth = masks[g] > 0.5
        union = int((pasted | truth).sum())
        assert math.isclose(state["mask IoU"], round(int((pasted & truth).sum()) / union if union else 0.0, 4))
        assert state["target cells > 0.5"] == int((expected > 0.5).sum())
        assert np.allclose(panel.box_patch.get_xy(), (x1 - 0.5, y1 - 0.5))
        shift = -0.5 if aligned else 0.0
        assert np.allclose(panel.sampled_patch.get_xy(), (x1 + shift, y1 + shift))
    assert 0 < messages < MOVES


def test_mask_roi_panel_prediction_is_the_models_own(trained_and_val):
    """On a detection's box, the panel's pasted probability is the whole model's mask for it."""
    from helpers.widgets import MaskRoIPanel

    model, val = trained_and_val
    image, target = val[46]
    with torch.no_grad():
        out = model([image])[0]
    panel = MaskRoIPanel(model, image, target)
    for d in range(3):
        b = out["boxes"][d].tolist()
        panel.set(x1=b[0], y1=b[1], x2=b[2], y2=b[3])
        assert int(target["labels"][panel.matched]) == int(out["labels"][d])
        assert torch.allclose(panel.pasted, out["masks"][d, 0], atol=1e-5)


def test_detection_panel_200_random_moves(trained_and_val):
    """Every move: the survivors are torchvision's batched_nms of the candidates above the score
    threshold (capped at 30), drawn in their class's colour; at the model's own settings they are the
    model's detections."""
    from helpers.shapes import CLASSES
    from helpers.widgets import DetectionPanel

    model, val = trained_and_val
    panel = DetectionPanel(model, val, indices=(46, 0, 1), class_names=CLASSES)
    for index in (46, 0, 1):
        panel.set(image=index, score_thresh=0.05, nms_thresh=0.5)
        with torch.no_grad():
            out = model([val[index][0]])[0]
        assert torch.equal(panel.boxes, out["boxes"]) and torch.equal(panel.labels, out["labels"])
        assert torch.equal(panel.scores, out["scores"])
    rng = np.random.default_rng(8)
    seen_cross = False
    for _ in range(MOVES):
        state = panel.set(**random_move(panel, rng))
        assert panel.error is None and panel.message is None
        v = panel.values()
        boxes, scores, labels = panel.candidates[v["image"]]
        above = torch.where(scores > v["score_thresh"])[0]
        kept = above[tv.batched_nms(boxes[above], scores[above], labels[above], v["nms_thresh"])[:30]]
        assert torch.equal(panel.kept, kept)
        assert state["kept"] == len(kept) and state["removed by NMS or the cap"] == len(above) - len(kept)
        drawn = sum(len(lines.get_segments()) for lines in panel.class_lines.values())
        assert drawn == len(kept) and len(panel.faint_lines.get_segments()) == len(above) - len(kept)
        for c, lines in panel.class_lines.items():
            assert np.allclose(np.array(lines.get_segments()).reshape(-1, 5, 2),
                               viz.box_outlines(boxes[kept][labels[kept] == c]))
        iou = tv.box_iou(boxes[kept], boxes[kept])
        cross = [(i, j) for i in range(len(kept)) for j in range(i + 1, len(kept))
                 if labels[kept][i] != labels[kept][j] and iou[i, j] > 0.5]
        assert (state["cross-class pairs"] == "none") == (not cross)
        seen_cross |= bool(cross)
        labelled = [t for t in panel.labels_text if t.get_visible()]
        assert 0 < len(labelled) <= len(kept) or len(kept) == 0
    assert seen_cross


def test_snapshot_is_readable_and_leaves_the_panel_as_it_was():
    panel = RoIAlignPanel()
    before = panel.png()
    snap = panel.snapshot()
    image = Image.open(io.BytesIO(snap.png))
    assert image.size == (960, 480) and snap.dpi == 120 and "120 dpi" in repr(snap)
    assert snap._repr_png_() == snap.png
    assert panel.png() == before                                             # the live picture is unchanged
    with pytest.raises(ValueError, match="dpi must be an int >= 110"):
        panel.snapshot(dpi=80)
    for panel in (RoIAlignPanel(), RoIPoolVsAlignPanel()):                   # figure standard: text >= 8 pt
        sizes = [t.get_fontsize() for t in panel.fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert min(sizes) >= 8, sorted(sizes)[:5]


# ------------------------------------------------------------------------------------------------
# the panels in the exact states the notebooks set them to (moved from notebooks 01, 02, 03, 05:
# where the artists are is plumbing; the notebooks keep the numbers they teach)
# ------------------------------------------------------------------------------------------------


def test_notebook_01_panel_artists():
    """Notebook 01's panel at (2.4, 1.85) and back at the worked example (1.6, 1.15)."""
    panel = BilinearPanel(torch.arange(1.0, 17.0).reshape(4, 4))
    state = panel.set(x=2.4, y=1.85)
    assert math.isclose(state["interpolated"], tv_point(WORKED, 2.4, 1.85), rel_tol=1e-12)
    assert np.allclose(panel.neighbours.point.get_offsets(), [[2.4, 1.85]])
    assert np.allclose(panel.neighbours.markers.get_offsets(), [[2, 1], [3, 1], [2, 2], [3, 2]])
    assert panel.error is None
    panel.set(x=1.6, y=1.15)
    assert [t.get_text() for t in panel.neighbours.labels] == ["A 0.34", "B 0.51", "C 0.06", "D 0.09"]


def test_notebook_02_panel_artists():
    """Notebook 02's panel on (-0.8, 0.5, 3.9, 4.2), 3x3, adaptive, aligned; then x2 < x1 (no samples)."""
    panel = RoIAlignPanel()
    panel.set(x1=-0.8, y1=0.5, x2=3.9, y2=4.2, output_size=3, sampling_ratio=0, aligned=True)
    box_now = (-0.8, 0.5, 3.9, 4.2)
    assert np.allclose(panel.given.get_xy(), (-0.8, 0.5)) and np.isclose(panel.given.get_width(), 4.7)
    assert np.allclose(sorted_rows(panel.points.get_offsets()), sorted_rows(tv_rule_points(box_now, 3, 0, True)))
    points = roi_sample_points(torch.tensor(box_now, dtype=torch.float64), 3, 1.0, 0, True).points[0].reshape(-1, 2)
    assert np.allclose(panel.points.get_offsets(), points.numpy())
    panel.set(x2=-1.0)
    assert len(panel.points.get_offsets()) == 0 and panel.error is None and panel.message is None


def test_notebook_03_figures_and_panel_artists():
    """Notebook 03: the RoIPool bins figure of the worked box, and the panel on the ramp at shift 0.45."""
    bins = roi_pool_bins(WORKED_BOX, 2, 1.0, 4, 4)
    fig, ax = plt.subplots()
    polys = viz.draw_roipool_bins(bins.bins, ax=ax, alpha=0.3)
    drawn = np.array([p.vertices[:4] for p in polys.get_paths()])
    assert np.allclose(drawn, viz.cell_rectangles(bins.bins))
    assert np.allclose(drawn[0], [[0.5, 0.5], [2.5, 0.5], [2.5, 1.5], [0.5, 1.5]])     # bin (0, 0): columns 1-2, row 1

    ramp = torch.arange(10, dtype=torch.float64).repeat(8, 1)[None, None]              # value = x
    start = torch.tensor([1.2, 0.8, 4.6, 4.4], dtype=torch.float64)
    shifts = torch.arange(41, dtype=torch.float64) * 0.05
    slid = start.repeat(41, 1)
    slid[:, [0, 2]] += shifts[:, None]
    pool_curve = tv.roi_pool(ramp, [slid], 2)[:, 0, 0, 0]
    align_curve = tv.roi_align(ramp, [slid], 2, 1.0, 2, False)[:, 0, 0, 0]
    lines = viz.draw_shift_curves(shifts, pool_curve, align_curve, ax=ax)
    assert np.allclose(lines["RoIPool"].get_ydata(), pool_curve.numpy())
    assert np.allclose(lines["RoIAlign"].get_ydata(), align_curve.numpy())
    assert np.allclose(lines["RoIAlign"].get_xdata(), shifts.numpy())

    panel = RoIPoolVsAlignPanel(ramp[0, 0], box=tuple(start.tolist()))
    panel.set(shift=0.45)
    assert np.allclose(panel.curves["RoIPool"].get_ydata(), pool_curve.numpy())
    assert np.allclose(panel.curves["RoIAlign"].get_ydata(), align_curve.numpy(), atol=1e-12)
    moved = start.clone()
    moved[[0, 2]] += 0.45
    assert np.allclose([p.vertices[:4] for p in panel.pool_polys.get_paths()],
                       viz.cell_rectangles(roi_pool_bins(moved, 2, 1.0, 8, 10).bins))
    assert np.allclose(sorted_rows(panel.align_points.get_offsets()),
                       sorted_rows(tv_rule_points(tuple(moved.tolist()), 2, 2, False)))
    assert panel.error is None


def test_notebook_05_anchor_panel_draws_what_torchvision_labels():
    """Notebook 05's panel (its example image and anchors) at the four settings the notebook visits:
    one drawn outline per positive and per ignored anchor, as torchvision's Matcher labels them."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

    from helpers.widgets import AnchorMatchPanel

    panel = AnchorMatchPanel()
    iou = tv.box_iou(panel.gt_boxes, panel.anchors)
    for fg, bg, low_quality in [(0.7, 0.3, True), (0.7, 0.3, False), (0.5, 0.3, True), (0.5, 0.5, False)]:
        state = panel.set(fg=fg, bg=bg, low_quality=low_quality)
        matcher = RegionProposalNetwork(AnchorGenerator(), RPNHead(1, 1), fg, bg, 256, 0.5, {"training": 1, "testing": 1},
                                        {"training": 1, "testing": 1}, 0.7).proposal_matcher
        matcher.allow_low_quality_matches = low_quality
        expected = matcher(iou.clone())
        assert state["positives"] == int((expected >= 0).sum()) == len(panel.positive_lines.get_segments())
        assert state["ignored"] == int((expected == -2).sum()) == len(panel.ignored_lines.get_segments())
    assert panel.error is None


def test_ground_truth_box_panel_200_random_moves_follow_torchvision():
    """Notebook 05's ground-truth box panel, 200 seeded moves of its four sliders (inverted boxes included):
    the counts and the drawn outlines are those of torchvision's RPN Matcher (fg 0.7, bg 0.3, low-quality on)
    and box-head Matcher (0.5, 0.5) on torchvision.ops.box_iou with the moved box; an empty box is a message."""
    from torchvision.models.detection._utils import Matcher

    from helpers.widgets import GroundTruthBoxPanel
    from helpers.widgets.trained import image_features, shipped_model

    panel = GroundTruthBoxPanel(box=3)
    assert panel.values() == dict(x1=44, y1=93, x2=58, y2=109)
    found = image_features(shipped_model(), panel.picture)                 # the model's own RPN output
    assert found.image_sizes[0] == found.original_size and torch.equal(panel.proposals, found.proposals)
    rpn_matcher, head_matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True), Matcher(0.5, 0.5, False)
    rng, home = np.random.default_rng(5), panel.values()
    messages = 0
    for _ in range(200):
        name = ["x1", "y1", "x2", "y2"][int(rng.integers(4))]             # within 20 pixels of the start
        panel.set(**{name: int(home[name] + rng.integers(-20, 21))})
        assert panel.error is None
        v = panel.values()
        if v["x2"] <= v["x1"] or v["y2"] <= v["y1"]:
            assert panel.message is not None and panel.state == {} and "empty or inverted" in panel.message
            assert len(panel.positive_lines.get_segments()) == 0
            messages += 1
            continue
        assert panel.message is None
        gt = panel.gt_boxes.clone()
        gt[3] = torch.tensor([v["x1"], v["y1"], v["x2"], v["y2"]], dtype=torch.float32)
        iou = tv.box_iou(gt, panel.anchors)
        labels = rpn_matcher(iou)
        head = head_matcher(tv.box_iou(gt, panel.proposals))
        s = panel.state
        assert s["positive anchors (this box)"] == int((labels == 3).sum())
        assert s["positive anchors (all boxes)"] == int((labels >= 0).sum()) == len(panel.positive_lines.get_segments())
        assert s["ignored anchors"] == int((labels == -2).sum()) == len(panel.ignored_lines.get_segments())
        assert s["negative anchors"] == int((labels == -1).sum())
        assert s["box-head positives (this box)"] == int((head == 3).sum()) == len(panel.proposal_lines.get_segments())
        assert abs(s["best anchor IoU"] - float(iou[3].max())) <= 5e-5
        drawn = np.array(panel.gt_lines.get_segments()[0])
        assert np.allclose(drawn.min(0), [v["x1"] - 0.5, v["y1"] - 0.5]) and np.allclose(drawn.max(0), [v["x2"] - 0.5, v["y2"] - 0.5])
    assert 5 <= messages <= 150                                            # both kinds of state visited


def test_ground_truth_box_panel_rejects_bad_arguments():
    from helpers.widgets import GroundTruthBoxPanel

    with pytest.raises(ValueError, match="box must be an int"):
        GroundTruthBoxPanel(box=4, proposals=None)
    with pytest.raises(ValueError, match="proposals must be"):
        GroundTruthBoxPanel(proposals="untrained")
    with pytest.raises(ValueError, match="gt_boxes"):
        GroundTruthBoxPanel(torch.zeros(3, 8, 8), None)
    panel = GroundTruthBoxPanel(box=0, proposals=None)                   # no proposals: anchors only
    assert "box-head positives (this box)" not in panel.state and panel.error is None

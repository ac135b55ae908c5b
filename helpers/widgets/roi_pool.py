"""Notebook 03's panel: an RoI slid by sub-pixel steps, RoIPool's quantised bins against RoIAlign's."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.patches import Rectangle

from helpers import roi, viz
from helpers.widgets.panel import (BlitPanel, as_feature_map, box_problem, coordinate_slider, one_thread,
                                   readout_rows, torchvision_sampling)


class RoIPoolVsAlignPanel(BlitPanel):
    """Notebook 03: slide an RoI by sub-pixel steps; RoIPool's quantised bins against RoIAlign's.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the box) and ``shift``, a horizontal shift added to
    ``x1`` and ``x2`` (0 to ``max_shift`` pixels). Left: RoIPool's bins (whole pixels from the
    rounded corners, shaded; overlaps darker) and the box (dotted). Middle: RoIAlign's exact bins and
    sample points (legacy ``aligned=False``, as in the paper, and as its title says). Right: output bin (0, 0) of both ops
    against the shift, the current shift marked: RoIPool moves in steps, RoIAlign smoothly.
    Numbers from :func:`helpers.roi.roi_pool_bins`, :func:`helpers.roi.roi_pool`,
    :func:`helpers.roi.roi_align`.

    An empty or inverted box (``x2 <= x1`` or ``y2 <= y1``) is not refused: both ops grow it, as
    torchvision does (RoIPool: ``max(x2 - x1 + 1, 1)`` in rounded corners; RoIAlign with ``aligned=False``:
    ``max(x2 - x1, 1)``), so it behaves as the box ``(x1, y1, max(x1, x2), max(y1, y2))``; the panel pools
    that box and says so in the readout (``note``); the tests check it against torchvision on the inverted box.

    Args:
        feature: ``Tensor[H, W]``; default an 8x8 map whose every pixel holds its own ``x``
            (so an output says *where* the op looked). The curve's y axis is fixed to the map's range.
        box: starting ``(x1, y1, x2, y2)`` before the shift.
        output_size: ``PH = PW`` of both ops.
        sampling_ratio: RoIAlign's samples per bin side.
        max_shift, shift_step: the shift slider's range and step (also the curve's resolution).
        step: step of the coordinate sliders.

    Attributes:
        shifts: ``Tensor[S]`` the shifts of the curve; ``pool_curve``, ``align_curve``: ``Tensor[S]``.
        pool_bins: :class:`helpers.roi.RoIPoolBins` of the shifted box.
        pooled, aligned_out: ``Tensor[PH, PW]`` outputs of RoIPool and RoIAlign for the shifted box.
    """

    title = "RoIPool vs RoIAlign"

    def __init__(self, feature: Any = None, box: tuple[float, float, float, float] = (1.2, 0.8, 4.6, 4.4),
                 output_size: int = 2, sampling_ratio: int = 2, max_shift: float = 2.0,
                 shift_step: float = 0.05, step: float = 0.05) -> None:
        self.feature = as_feature_map(feature, torch.arange(8.0).repeat(8, 1))
        self.output_size = int(output_size)
        self.sampling_ratio = int(sampling_ratio)
        n = int(round(max_shift / shift_step))
        self.shifts = torch.arange(n + 1, dtype=torch.float64) * shift_step
        h, w = self.feature.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        sliders: dict[str, widgets.Widget] = {
            "x1": coordinate_slider("x1", x1, -1.0, float(w), step),
            "y1": coordinate_slider("y1", y1, -1.0, float(h), step),
            "x2": coordinate_slider("x2", x2, -1.0, float(w), step),
            "y2": coordinate_slider("y2", y2, -1.0, float(h), step),
            "shift": coordinate_slider("shift", 0.0, 0.0, float(self.shifts[-1]), shift_step),
        }
        super().__init__(sliders, figsize=(8.3, 3.4))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax_pool, self.ax_align, self.ax_curve = self.fig.subplots(
            1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
        p = self.output_size
        for ax, title in ((self.ax_pool, "RoIPool:\nrounded, whole pixels"),
                          (self.ax_align, "RoIAlign, legacy aligned=False:\nexact bins, samples")):
            # small cells: each value stands just above its centre dot, clear of the dots
            viz.draw_feature_grid(self.feature, ax=ax, fontsize=8, value_dy=-0.2, value_va="baseline")
            ax.set_title(title, fontsize=10)
            ax.set_xlim(-1.5, w + 0.5)
            ax.set_ylim(h + 0.5, -1.5)
        self.pool_polys = viz.draw_roipool_bins(torch.zeros(p, p, 4), ax=self.ax_pool, alpha=0.25)
        self.pool_box = Rectangle((0, 0), 1, 1, fill=False, linestyle=":", linewidth=1.5,
                                   edgecolor=viz.COLORS["roi"], zorder=4)
        self.ax_pool.add_patch(self.pool_box)
        self.align_artists = viz.draw_roi_bins((0, 0, 1, 1), p, ax=self.ax_align)
        self.align_points = viz.draw_sample_points(np.zeros((1, 2)), ax=self.ax_align, size=12)
        zeros = torch.zeros_like(self.shifts)
        self.curves = viz.draw_shift_curves(self.shifts, zeros, zeros, ax=self.ax_curve,
                                             ylabel="output bin (0, 0)", xlabel="shift (pixels)")
        # outputs are averages or maxima of map values, or 0: this range always holds them
        low, high = min(float(self.feature.min()), 0.0), max(float(self.feature.max()), 0.0)
        pad = 0.05 * (high - low) + 0.05
        self.ax_curve.set_ylim(low - pad, high + pad)
        self.ax_curve.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=8, frameon=False)
        self.cursor = self.ax_curve.axvline(0.0, color=viz.COLORS["grid"], linestyle="--", linewidth=1)
        (self.pool_dot,) = self.ax_curve.plot([0], [0], "o", color=viz.COLORS["roipool"], zorder=5)
        (self.align_dot,) = self.ax_curve.plot([0], [0], "o", color=viz.COLORS["roialign"], zorder=5)
        self.fig.subplots_adjust(left=0.07, right=0.98, top=0.84, bottom=0.13, wspace=0.35)

    def dynamic(self) -> list[Artist]:
        a = self.align_artists
        return [self.pool_polys, self.pool_box, a.rect, a.lines, self.align_points, self.cursor,
                self.curves["RoIPool"], self.curves["RoIAlign"], self.pool_dot, self.align_dot]

    @staticmethod
    def grown(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        """The ordinary box that RoIPool and RoIAlign (``aligned=False``) treat exactly as ``(x1, y1, x2, y2)``:
        ``(x1, y1, max(x1, x2), max(y1, y2))``. Both grow a box to at least one pixel from ``x1`` (``y1``),
        RoIPool as ``max(round(x2) - round(x1) + 1, 1)``, RoIAlign as ``max(x2 - x1, 1)``."""
        return x1, y1, max(x1, x2), max(y1, y2)

    def curve(self, x1: float, y1: float, x2: float, y2: float) -> tuple[Any, Any]:
        """Bin (0, 0) of RoIPool and RoIAlign for the box shifted right by each of :attr:`shifts`.

        Returns:
            ``(Tensor[S], Tensor[S])`` (float64).
        """
        x1, y1, x2, y2 = self.grown(x1, y1, x2, y2)
        boxes = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float64).repeat(len(self.shifts), 1)
        boxes[:, 0] += self.shifts
        boxes[:, 2] += self.shifts
        f = self.feature[None, None]
        with one_thread():
            pool = roi.roi_pool(f, [boxes], self.output_size, 1.0)[:, 0, 0, 0]
            align = roi.roi_align(f, [boxes], self.output_size, 1.0, self.sampling_ratio, False)[:, 0, 0, 0]
        return pool, align

    def update(self, x1: float, y1: float, x2: float, y2: float, shift: float) -> dict[str, Any]:
        h, w = self.feature.shape
        p = self.output_size
        x1, y1, x2, y2, shift = float(x1), float(y1), float(x2), float(y2), float(shift)
        problem = box_problem(x1, y1, x2, y2)
        gx1, gy1, gx2, gy2 = self.grown(x1, y1, x2, y2)
        given = torch.tensor([x1 + shift, y1, x2 + shift, y2], dtype=torch.float64)
        box = torch.tensor([gx1 + shift, gy1, gx2 + shift, gy2], dtype=torch.float64)
        f = self.feature[None, None]
        with one_thread():
            self.pool_bins = roi.roi_pool_bins(box, p, 1.0, h, w, dtype=torch.float64)
            self.pooled = roi.roi_pool(f, [box[None]], p, 1.0)[0, 0]
            self.aligned_out = roi.roi_align(f, [box[None]], p, 1.0, self.sampling_ratio, False)[0, 0]
            region, points = torchvision_sampling(given, p, self.sampling_ratio, False)
        self.sampling_region = region
        self.pool_polys.set_verts(list(viz.cell_rectangles(self.pool_bins.bins)))
        bx1, _, bx2, _ = (float(v) for v in given)
        viz.move_rectangle(self.pool_box, given)
        self.align_artists.set_box(region, p)
        self.align_points.set_offsets(points.numpy())
        self.pool_curve, self.align_curve = self.curve(x1, y1, x2, y2)
        self.curves["RoIPool"].set_ydata(self.pool_curve.numpy())
        self.curves["RoIAlign"].set_ydata(self.align_curve.numpy())
        self.cursor.set_xdata([shift, shift])
        self.pool_dot.set_data([shift], [float(self.pooled[0, 0])])
        self.align_dot.set_data([shift], [float(self.aligned_out[0, 0])])
        b = self.pool_bins
        numbers: dict[str, Any] = {"shift": shift, "x1 + shift": bx1, "x2 + shift": bx2,
                                   "RoIPool corners": f"({b.x1}, {b.y1}, {b.x2}, {b.y2})",
                                   "RoIPool bin (0, 0)": float(self.pooled[0, 0]),
                                   "RoIAlign bin (0, 0)": float(self.aligned_out[0, 0])}
        if problem:
            numbers["note"] = (f"{problem}. torchvision does not refuse it: RoIPool takes max(x2 - x1 + 1, 1) "
                               "rounded pixels, RoIAlign (aligned=False) max(x2 - x1, 1), so both pool it as the box "
                               f"({gx1 + shift:g}, {gy1:g}, {gx2 + shift:g}, {gy2:g}), widened to one pixel "
                               "where it is empty.")
        numbers.update({f"RoIPool {k}": v for k, v in readout_rows(self.pooled).items()})
        numbers.update({f"RoIAlign {k}": v for k, v in readout_rows(self.aligned_out).items()})
        return numbers

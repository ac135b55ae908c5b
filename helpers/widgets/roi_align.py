"""Notebook 02's panel: an RoI dragged over a feature map, RoIAlign's bins, sample points and output."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.patches import Rectangle

from helpers import roi, viz
from helpers.widgets.panel import (BlitPanel, PanelMessage, as_feature_map, box_problem, coordinate_slider,
                                   heading_text, one_thread, readout_rows, sample_points, sampled_box)


class RoIAlignPanel(BlitPanel):
    """Notebook 02: drag an RoI over a feature map; see RoIAlign's bins, sample points and output.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the box, in feature-map pixels: ``spatial_scale = 1``),
    ``output size`` (``PH = PW``), ``sampling ratio`` (samples per bin side; 0 = adaptive, which
    torchvision also writes as -1) and ``aligned``. An empty or inverted box shows a message.

    Drawn: the box as given (dotted), the region RoIAlign actually samples (solid: shifted by -0.5
    when aligned, at least 1x1 when not) with its bins (dashed), the sample points (hollow where
    they fall outside ``[-1, W] x [-1, H]`` and count as 0), and on the right the pooled output.
    The numbers come from :func:`helpers.roi.roi_sample_points` and :func:`helpers.roi.roi_align`.

    Args:
        feature: ``Tensor[H, W]``; default a seeded 6x6 map of integers 0..9.
        box: the starting ``(x1, y1, x2, y2)``.
        output_size, sampling_ratio, aligned: starting values (``sampling_ratio <= 0``: adaptive).
        max_output_size, max_sampling_ratio: slider ranges.
        step: step of the coordinate sliders.

    Attributes:
        sampling: :class:`helpers.roi.RoIAlignSampling` of the current box.
        sampled_box: ``(x1, y1, x2, y2)`` of the region actually sampled (the solid rectangle).
        pooled: ``Tensor[PH, PW]`` (float64), the output drawn on the right.
    """

    title = "RoIAlign"

    def __init__(self, feature: Any = None, box: tuple[float, float, float, float] = (1.2, 0.8, 3.6, 3.4),
                 output_size: int = 2, sampling_ratio: int = 2, aligned: bool = False,
                 max_output_size: int = 4, max_sampling_ratio: int = 4, step: float = 0.05) -> None:
        default = torch.randint(0, 10, (6, 6), generator=torch.Generator().manual_seed(0)).double()
        self.feature = as_feature_map(feature, default)
        h, w = self.feature.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        style = {"description_width": "initial"}
        sliders: dict[str, widgets.Widget] = {
            "x1": coordinate_slider("x1", x1, -1.5, w + 0.5, step),
            "y1": coordinate_slider("y1", y1, -1.5, h + 0.5, step),
            "x2": coordinate_slider("x2", x2, -1.5, w + 0.5, step),
            "y2": coordinate_slider("y2", y2, -1.5, h + 0.5, step),
            "output_size": widgets.IntSlider(value=output_size, min=1, max=max_output_size,
                                             description="output size", style=style),
            "sampling_ratio": widgets.IntSlider(value=max(int(sampling_ratio), 0), min=0, max=max_sampling_ratio,
                                                description="sampling ratio", style=style),
            "aligned": widgets.Checkbox(value=bool(aligned), description="aligned", indent=False),
        }
        super().__init__(sliders, figsize=(8.0, 4.0))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax, self.ax_out = self.fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
        self.grid = viz.draw_feature_grid(self.feature, ax=self.ax)
        self.given = Rectangle((0, 0), 1, 1, fill=False, linestyle=":", linewidth=1.5,
                                edgecolor=viz.COLORS["roi"], zorder=4)
        self.ax.add_patch(self.given)
        self.roi_artists = viz.draw_roi_bins((0, 0, 1, 1), 1, ax=self.ax)
        self.points = viz.draw_sample_points(np.zeros((1, 2)), ax=self.ax, size=18)
        self.ax.set_xlim(-1.7, w + 0.7)
        self.ax.set_ylim(h + 0.7, -1.7)
        self.heading = heading_text(self.ax, fontsize=10)
        self.output = viz.draw_pooled_output(torch.zeros(1, 1), ax=self.ax_out, title="RoIAlign output (average)")
        self.fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.12, wspace=0.25)

    def dynamic(self) -> list[Artist]:
        r = self.roi_artists
        return [self.given, r.rect, r.lines, self.points, self.heading, *self.output.artists()]

    def _show(self, visible: bool) -> None:
        for artist in self.dynamic():
            artist.set_visible(visible)
        self.heading.set_visible(True)

    def update(self, x1: float, y1: float, x2: float, y2: float, output_size: int, sampling_ratio: int,
               aligned: bool) -> dict[str, Any]:
        problem = box_problem(x1, y1, x2, y2)
        if problem:
            self._show(False)
            self.heading.set_text("no RoI: x1 < x2 and y1 < y2 needed")
            raise PanelMessage(problem)
        self._show(True)
        x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
        p, sr, al = int(output_size), int(sampling_ratio), bool(aligned)
        box = torch.tensor([x1, y1, x2, y2], dtype=torch.float64)
        with one_thread():
            s = roi.roi_sample_points(box, p, 1.0, sr, al)
            self.pooled = roi.roi_align(self.feature[None, None], [box[None]], p, 1.0, sr, al)[0, 0]
        self.sampling = s
        h, w = self.feature.shape
        # the region actually sampled: from (start_x, start_y), PW bins of bin_w by PH bins of bin_h
        self.sampled_box = sampled_box(s, p)
        viz.move_rectangle(self.given, (x1, y1, x2, y2))
        self.roi_artists.set_box(self.sampled_box, p)
        pts = sample_points(s).numpy()
        inside = (pts[:, 0] >= -1) & (pts[:, 0] <= w) & (pts[:, 1] >= -1) & (pts[:, 1] <= h)
        blue, white = np.array([0.12, 0.47, 0.71, 1.0]), np.array([1.0, 1.0, 1.0, 1.0])
        self.points.set_offsets(pts)
        self.points.set_facecolors(np.where(inside[:, None], blue, white))
        self.points.set_edgecolors(np.where(inside[:, None], white, blue))
        self.output.set_values(self.pooled)
        gh, gw = int(s.grid_h[0]), int(s.grid_w[0])
        mode = "adaptive" if sr <= 0 else "fixed"
        self.heading.set_text(f"{p}x{p} bins, {gh}x{gw} samples per bin ({mode})")
        numbers: dict[str, Any] = {"x1": x1, "y1": y1, "x2": x2, "y2": y2,
                                   "bin width": float(s.bin_w[0]), "bin height": float(s.bin_h[0]),
                                   "samples per bin": gh * gw, "samples outside (read as 0)": int((~inside).sum())}
        numbers.update(readout_rows(self.pooled))
        return numbers


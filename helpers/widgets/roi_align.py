"""Notebook 02's panel: an RoI dragged over a feature map, RoIAlign's bins, sample points and output."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
import torchvision
from matplotlib.artist import Artist
from matplotlib.patches import Rectangle

from helpers import roi, viz
from helpers.widgets.panel import (BlitPanel, PanelMessage, as_feature_map, box_problem, coordinate_slider, heading_text, one_thread,
                                   readout_rows, sample_points, sampled_box, torchvision_box_note,
                                   torchvision_sampling)


class RoIAlignPanel(BlitPanel):
    """Notebook 02: drag an RoI over a feature map; see RoIAlign's bins, sample points and output.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the box, in feature-map pixels: ``spatial_scale = 1``),
    ``output size`` (``PH = PW``), ``sampling ratio`` (samples per bin side; 0 = adaptive, which
    torchvision also writes as -1) and ``aligned``. An empty or inverted box (``x2 <= x1`` or ``y2 <= y1``)
    is not refused: the panel shows what ``torchvision.ops.roi_align`` returns for it (``aligned=False``
    grows the box to at least 1 x 1; ``aligned=True`` keeps a zero or negative size) and says why in the
    readout (``note``) and above the picture.

    Drawn: the box as given (dotted), the region RoIAlign actually samples (solid: shifted by -0.5
    when aligned, at least 1x1 when not) with its bins (dashed), the sample points (hollow where
    they fall outside ``[-1, W] x [-1, H]`` and count as 0; that frame is drawn dashed, and the view
    always holds it and every sample), and on the right the pooled output, shaded on the feature map's
    own grey scale (one colour bar for both: the same grey is the same number).
    The numbers come from :func:`helpers.roi.roi_sample_points` and :func:`helpers.roi.roi_align`
    (empty or inverted boxes: ``torchvision.ops.roi_align`` and :func:`helpers.widgets.panel.torchvision_sampling`).

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
        low, high = self.grid.image.get_clim()
        self.clim = (min(low, 0.0), high)          # 0 (what samples beyond the frame read) is on the scale too
        self.grid.image.set_clim(*self.clim)
        self.frame = Rectangle((-1, -1), w + 1, h + 1, fill=False, linestyle="--", linewidth=1.0,
                               edgecolor=viz.COLORS["grid"], zorder=1)
        self.ax.add_patch(self.frame)
        self.ax.text(-1, h + 0.1, "samples beyond the dashed frame read 0", ha="left", va="top", fontsize=8,
                     color="#555555")
        self.given = Rectangle((0, 0), 1, 1, fill=False, linestyle=":", linewidth=1.5,
                                edgecolor=viz.COLORS["roi"], zorder=4)
        self.ax.add_patch(self.given)
        self.roi_artists = viz.draw_roi_bins((0, 0, 1, 1), 1, ax=self.ax)
        self.points = viz.draw_sample_points(np.zeros((1, 2)), ax=self.ax, size=18)
        # every sample lies in the region sampled: from x1 - 0.5 (aligned, x1 >= -1.5) to x1 + 1 (grown,
        # x1 <= W + 0.5), so [-2, W + 1.5] holds them all, and the frame [-1, W]
        self.ax.set_xlim(-2.2, w + 1.7)
        self.ax.set_ylim(h + 1.7, -2.2)
        self.heading = heading_text(self.ax, fontsize=9)
        self.output = viz.draw_pooled_output(torch.zeros(1, 1), ax=self.ax_out, title="RoIAlign output (average)",
                                             clim=self.clim)
        self.fig.subplots_adjust(left=0.07, right=0.87, top=0.88, bottom=0.12, wspace=0.25)
        cax = self.fig.add_axes((0.89, 0.2, 0.015, 0.6))
        bar = self.fig.colorbar(self.grid.image, cax=cax)
        bar.ax.tick_params(labelsize=8)
        bar.set_label("value (map and output)", fontsize=8)

    def dynamic(self) -> list[Artist]:
        r = self.roi_artists
        return [self.given, r.rect, r.lines, self.points, self.heading, *self.output.artists()]

    def update(self, x1: float, y1: float, x2: float, y2: float, output_size: int, sampling_ratio: int,
               aligned: bool) -> dict[str, Any]:
        x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
        p, sr, al = int(output_size), int(sampling_ratio), bool(aligned)
        box = torch.tensor([x1, y1, x2, y2], dtype=torch.float64)
        note = torchvision_box_note(x1, y1, x2, y2, al, sr, p)
        h, w = self.feature.shape
        for artist in self.dynamic():
            artist.set_visible(True)
        with one_thread():
            if note is None:
                s = roi.roi_sample_points(box, p, 1.0, sr, al)
                self.pooled = roi.roi_align(self.feature[None, None], [box[None]], p, 1.0, sr, al)[0, 0]
                self.sampled_box = sampled_box(s, p)     # from (start_x, start_y), PW bins of bin_w by PH of bin_h
                pts = sample_points(s).numpy()
                self.sampling = s
            else:                                       # what torchvision does with an empty or inverted box
                try:
                    self.pooled = torchvision.ops.roi_align(self.feature[None, None], [box[None]], p, 1.0,
                                                            sr if sr > 0 else -1, al)[0, 0]
                except (RuntimeError, ValueError) as exc:   # its CPU kernel sizes a buffer by grid_h * grid_w
                    for artist in self.dynamic():
                        artist.set_visible(False)
                    self.heading.set_visible(True)
                    self.heading.set_text("torchvision.ops.roi_align fails on this box")
                    raise PanelMessage(
                        f"{box_problem(x1, y1, x2, y2)}. With aligned=True and adaptive sampling, torchvision's "
                        f"grid is ceil(size / {p}) per side, here negative on one side and positive on the other; "
                        f"its CPU kernel then fails: {type(exc).__name__}: {exc}") from None
                self.sampled_box, points = torchvision_sampling(box, p, sr, al)
                pts = points.numpy()
                self.sampling = None
        viz.move_rectangle(self.given, (x1, y1, x2, y2))
        self.roi_artists.set_box(self.sampled_box, p)
        inside = (pts[:, 0] >= -1) & (pts[:, 0] <= w) & (pts[:, 1] >= -1) & (pts[:, 1] <= h)
        blue, white = np.array([0.12, 0.47, 0.71, 1.0]), np.array([1.0, 1.0, 1.0, 1.0])
        self.points.set_offsets(pts if len(pts) else np.zeros((0, 2)))
        self.points.set_facecolors(np.where(inside[:, None], blue, white) if len(pts) else blue[None])
        self.points.set_edgecolors(np.where(inside[:, None], white, blue) if len(pts) else white[None])
        self.output.set_values(self.pooled, self.clim)
        bx1, by1, bx2, by2 = self.sampled_box
        bin_w, bin_h = (bx2 - bx1) / p, (by2 - by1) / p
        mode = "adaptive" if sr <= 0 else "fixed"
        n_points = len(pts)
        per_bin = n_points // (p * p)
        if note is None:
            self.heading.set_text(f"{p}x{p} bins, {int(s.grid_h[0])}x{int(s.grid_w[0])} samples per bin ({mode})")
        elif n_points == 0:
            self.heading.set_text("inverted or empty box: no sample (output 0)")
        else:
            self.heading.set_text("inverted or empty box: " + ("grown to 1 x 1" if not al else "bins run backwards"))
        numbers: dict[str, Any] = {"x1": x1, "y1": y1, "x2": x2, "y2": y2,
                                   "bin width": round(bin_w, 6), "bin height": round(bin_h, 6),
                                   "samples per bin": per_bin, "samples outside (read as 0)": int((~inside).sum())}
        if note is not None:
            numbers["note"] = note
        numbers.update(readout_rows(self.pooled))
        return numbers

"""Notebook 01's panel: a sample point dragged over a feature map, its four neighbours and weights."""

from __future__ import annotations

from typing import Any

import torch
from matplotlib.artist import Artist
from matplotlib.patches import Rectangle

from helpers import roi, viz
from helpers.widgets.panel import BlitPanel, as_feature_map, coordinate_slider, heading_text, one_thread


class BilinearPanel(BlitPanel):
    """Notebook 01: move a sample point over a feature map; see its four neighbours and weights.

    Sliders ``x`` and ``y`` move the point (pixel centres at integers, y down) over ``[-1, W]`` and
    ``[-1, H]``, the region where torchvision's bilinear rules still read the map (further out a
    sample is 0; within one pixel of the border the border value is repeated). The picture shows the
    point and its neighbours A (top-left), B (top-right), C (bottom-left), D (bottom-right), marker
    size and spoke width growing with the weight. The numbers come from
    :func:`helpers.roi.bilinear_weights` and :func:`helpers.roi.bilinear_interpolate`.

    Args:
        feature: ``Tensor[H, W]``; default the 4x4 map 1..16 of the worked example.
        x, y: the starting point; default the worked example's first bin centre (1.6, 1.15).
        step: slider step.

    Attributes:
        weights: :class:`helpers.roi.BilinearWeights` of the current point (float64).
        value: the interpolated value (float).
    """

    title = "bilinear interpolation"

    def __init__(self, feature: Any = None, x: float = 1.6, y: float = 1.15, step: float = 0.05) -> None:
        self.feature = as_feature_map(feature, torch.arange(1.0, 17.0).reshape(4, 4))
        h, w = self.feature.shape
        super().__init__({"x": coordinate_slider("x", x, -1.0, float(w), step),
                          "y": coordinate_slider("y", y, -1.0, float(h), step)},
                         figsize=(4.6, 4.4))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax = self.fig.add_subplot()
        self.grid = viz.draw_feature_grid(self.feature, ax=self.ax)
        bw = roi.bilinear_weights(h, w, 0.0, 0.0, dtype=torch.float64)
        self.neighbours = viz.draw_neighbours(0.0, 0.0, bw.positions, bw.weights, ax=self.ax)
        # beyond this dotted frame torchvision's rules give 0; inside it the border is repeated
        self.ax.add_patch(Rectangle((-1, -1), w + 1, h + 1, fill=False, linestyle=":",
                                     edgecolor=viz.COLORS["grid"]))
        self.ax.set_xlim(-1.3, w + 0.3)
        self.ax.set_ylim(h + 0.3, -1.3)
        self.heading = heading_text(self.ax)
        self.fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.12)

    def dynamic(self) -> list[Artist]:
        n = self.neighbours
        return [n.spokes, n.markers, n.point, *n.labels, self.heading]

    def update(self, x: float, y: float) -> dict[str, Any]:
        h, w = self.feature.shape
        x, y = float(x), float(y)
        with one_thread():
            self.weights = roi.bilinear_weights(h, w, x, y, dtype=torch.float64)
            self.value = float(roi.bilinear_interpolate(self.feature, x, y))
        positions = self.weights.positions
        self.neighbours.set(x, y, positions, self.weights.weights)
        self.heading.set_text(f"value at ({x:.2f}, {y:.2f}) = {self.value:.4g}")
        numbers: dict[str, Any] = {"x": x, "y": y,
                                   "x_low": int(self.weights.x_low), "y_low": int(self.weights.y_low),
                                   "dx": float(self.weights.lx), "dy": float(self.weights.ly)}
        names = ["A top-left", "B top-right", "C bottom-left", "D bottom-right"]
        for name, (px, py), wt in zip(names, positions.tolist(), self.weights.weights.tolist()):
            numbers[f"{name} value"] = float(self.feature[py, px])
            numbers[f"{name} weight"] = float(wt)
        numbers["interpolated"] = self.value
        return numbers


"""Notebook 04's panel: a box's width and height, and the FPN level its RoIAlign reads."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

from helpers.widgets.panel import BlitPanel, PanelMessage, heading_text


# -- notebook 04: which FPN level a box is pooled from ----------------------------------------------
class FPNLevelPanel(BlitPanel):
    """Box width and height -> the FPN level its RoIAlign reads, drawn over the cells of every level.

    Left: the same box (centred on pixel ``centre`` of the resized image) over the cell borders of
    P2 .. P5 (strides 4 .. 32); the level the rule picks is framed in its colour. Right: the level
    against ``sqrt(wh)`` (:func:`helpers.viz.draw_level_curve`) with the box marked.

    A slider move redraws the four level pictures and the curve's marker only; the curve, its axes and
    labels are drawn once (:class:`helpers.widgets.panel.BlitPanel`).

    Readout (:attr:`state`): ``w``, ``h``, ``sqrt(wh)``, ``k unclamped`` (``floor(4 + log2(sqrt(wh)/224)
    + 1e-6)``), ``level`` (clamped to 2..5), ``feature map`` (``'0'..'3'``), ``stride``,
    ``spatial_scale`` and ``cells w x h`` (the box's size in cells of its level). A box of zero width or
    height has no size to pick a level by: the panel shows a message (the RPN drops such boxes,
    ``remove_small_boxes``, before anything is pooled; torchvision's ``LevelMapper`` alone would send
    one to P2, ``log2(0) = -inf`` clamped).

    Args:
        width, height: initial box size in pixels.
        max_side: the sliders' maximum.
        centre: ``(x, y)`` of the box centre in image pixels (default: the middle of an 800 x 1088 image).
        dpi: PNG resolution.
    """

    title = "FPN level of a box"
    LEVELS: tuple[int, ...] = (2, 3, 4, 5)

    def __init__(self, width: int = 160, height: int = 96, max_side: int = 1024,
                 centre: tuple[float, float] = (544.0, 400.0), dpi: int = 72) -> None:
        self.centre = (float(centre[0]), float(centre[1]))
        sliders = {
            "w": widgets.IntSlider(value=width, min=0, max=max_side, step=1, description="w (px)",
                                   continuous_update=False),
            "h": widgets.IntSlider(value=height, min=0, max=max_side, step=1, description="h (px)",
                                   continuous_update=False),
        }
        super().__init__(sliders, figsize=(8.3, 2.6), dpi=dpi)

    def build(self) -> None:
        import numpy as np
        import torch
        from matplotlib.collections import LineCollection
        from matplotlib.patches import Rectangle

        from helpers.fpn import map_levels, raw_levels
        from helpers.viz import COLORS, LEVEL_COLORS, draw_level_curve

        grid = self.fig.add_gridspec(1, 6, width_ratios=[1, 1, 1, 1, 0.3, 2.2], left=0.01, right=0.99,
                                     bottom=0.16, top=0.74, wspace=0.08)
        self.level_axes, self.grids, self.rects, self.headings = [], [], [], []
        for i, k in enumerate(self.LEVELS):
            ax = self.fig.add_subplot(grid[0, i])
            lines = LineCollection([], colors=COLORS["grid"], linewidths=0.6)
            ax.add_collection(lines)
            rect = Rectangle((0, 0), 1, 1, fill=False, edgecolor=COLORS["roi"], linewidth=2, zorder=3)
            ax.add_patch(rect)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            self.level_axes.append(ax)
            self.grids.append(lines)
            self.rects.append(rect)
            self.headings.append(heading_text(ax, fontsize=9))   # redrawn alone (ax.title cannot be)
        self.curve_ax = self.fig.add_subplot(grid[0, 5])
        sides = 2.0 ** np.linspace(3, 11, 801)                              # 8 .. 2048 px
        boxes = torch.tensor(np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], 1),
                             dtype=torch.float64)
        self.curve = draw_level_curve(sides, map_levels(boxes), torch.floor(raw_levels(boxes)), ax=self.curve_ax,
                                      title=None)
        self.curve_ax.get_legend().remove()                                # the notebook's figure has it
        self.curve_ax.tick_params(labelsize=8)
        self._level_colors = LEVEL_COLORS

    def dynamic(self) -> list[Any]:
        # the level pictures piece by piece (their limits, frames and headings follow the box), not as
        # whole axes: an axes' draw would lay out its empty tick axes and its title on every move
        parts = []
        for ax, lines, rect, heading in zip(self.level_axes, self.grids, self.rects, self.headings):
            parts += [ax.patch, lines, rect, *ax.spines.values(), heading]
        return [*parts, self.curve.marker]

    def update(self, w: int, h: int) -> dict[str, Any]:
        import math

        import torch

        from helpers.fpn import FPN_NAMES, map_levels, raw_levels
        from helpers.viz import cell_border_segments

        cx, cy = self.centre
        if w <= 0 or h <= 0:
            half = max(0.65 * max(w, h), 24.0)
            for k, ax, lines, rect in zip(self.LEVELS, self.level_axes, self.grids, self.rects):
                lines.set_segments(list(cell_border_segments(2 ** k, (cx - half, cx + half), (cy - half, cy + half))))
                rect.set_xy((cx - w / 2, cy - h / 2))
                rect.set_width(w)
                rect.set_height(h)
                ax.set_xlim(cx - half, cx + half)
                ax.set_ylim(cy + half, cy - half)
                for spine in ax.spines.values():
                    spine.set_edgecolor("#bbbbbb")
                    spine.set_linewidth(0.8)
            for k, heading in zip(self.LEVELS, self.headings):
                heading.set_text(f"P{k} · '{FPN_NAMES[k - 2]}'\nstride {2 ** k}\nno level")
                heading.set_color("#555555")
                heading.set_fontweight("normal")
            self.curve.marker.set_data([], [])
            raise PanelMessage(f"a {w} x {h} box is empty: it has no size to choose a level by (the RPN drops such "
                               "boxes before pooling; LevelMapper alone would send it to P2: log2(0) = -inf, clamped)")
        box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], dtype=torch.float32)
        level = int(map_levels(box)[0])
        unclamped = int(torch.floor(raw_levels(box))[0])
        side = math.sqrt(w * h)
        half = max(0.65 * max(w, h), 24.0)
        x_range, y_range = (cx - half, cx + half), (cy - half, cy + half)
        for k, ax, lines, rect in zip(self.LEVELS, self.level_axes, self.grids, self.rects):
            stride = 2 ** k
            lines.set_segments(list(cell_border_segments(stride, x_range, y_range)))
            rect.set_xy((cx - w / 2, cy - h / 2))
            rect.set_width(w)
            rect.set_height(h)
            ax.set_xlim(*x_range)
            ax.set_ylim(y_range[1], y_range[0])                               # y grows downwards
            chosen = k == level
            for spine in ax.spines.values():
                spine.set_edgecolor(self._level_colors[k] if chosen else "#bbbbbb")
                spine.set_linewidth(3.0 if chosen else 0.8)
        for k, heading in zip(self.LEVELS, self.headings):
            stride, chosen = 2 ** k, k == level
            heading.set_text(f"P{k} · '{FPN_NAMES[k - 2]}'\nstride {stride}\n{w / stride:.3g} x {h / stride:.3g} cells")
            heading.set_color(self._level_colors[k] if chosen else "#555555")
            heading.set_fontweight("bold" if chosen else "normal")
        self.curve.marker.set_data([side], [level])
        stride = 2 ** level
        return {
            "w": w,
            "h": h,
            "sqrt(wh)": round(side, 3),
            "k unclamped": unclamped,
            "level": level,
            "feature map": FPN_NAMES[level - 2],
            "stride": stride,
            "spatial_scale": 1.0 / stride,
            "cells w x h": f"{w / stride:.3g} x {h / stride:.3g}",
        }



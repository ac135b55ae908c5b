"""Notebooks 02-03's pictures: an RoI cut into RoIAlign's bins, its sample points and pooled output,
RoIPool's quantised bins, and the two ops compared (a shifted RoI, mask IoU, mask outlines).

The numbers behind the pictures come from small pure functions (:func:`roi_bin_edges`,
:func:`roi_bin_segments`, :func:`cell_rectangles`) that notebooks and tests can assert on. Boxes
are ``(x1, y1, x2, y2)`` in the coordinates of the map they are drawn on (pixel centres on integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from helpers.viz.bilinear import lightened_clim
from helpers.viz.core import (ArrayLike, as_box, as_map, as_numpy, as_output_size, axes_or_new, box_rectangle,
                              image_extent, move_rectangle, set_pixel_limits)
from helpers.viz.palettes import COLORS, COMPARISON_COLORS


# -- RoIs and RoIAlign's bins ---------------------------------------------------------------------
def roi_bin_edges(box: ArrayLike, output_size: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The bin borders of an RoI cut into ``output_size`` equal bins (RoIAlign's bins, no rounding).

    Args:
        box: ``(x1, y1, x2, y2)`` in feature-map coordinates (already scaled and shifted).
        output_size: ``PH`` or ``(PH, PW)``.

    Returns:
        ``(xs, ys)``: ``float64[PW + 1]`` and ``float64[PH + 1]``, from ``x1`` to ``x2`` and from
        ``y1`` to ``y2``.
    """
    x1, y1, x2, y2 = as_box(box)
    ph, pw = as_output_size(output_size)
    return x1 + (x2 - x1) * np.arange(pw + 1) / pw, y1 + (y2 - y1) * np.arange(ph + 1) / ph


def roi_bin_segments(box: ArrayLike, output_size: int | tuple[int, int]) -> np.ndarray:
    """The inner bin borders of an RoI as line segments ``float64[(PH-1)+(PW-1), 2, 2]``.

    Vertical lines first (left to right), then horizontal ones (top to bottom); each segment is
    ``[[x_a, y_a], [x_b, y_b]]``.
    """
    xs, ys = roi_bin_edges(box, output_size)
    x1, y1, x2, y2 = as_box(box)
    vertical = [[[x, y1], [x, y2]] for x in xs[1:-1]]
    horizontal = [[[x1, y], [x2, y]] for y in ys[1:-1]]
    return np.array(vertical + horizontal, dtype=np.float64).reshape(-1, 2, 2)


@dataclass
class RoIArtists:
    """What :func:`draw_roi_bins` drew; :meth:`set_box` moves it in place."""

    rect: Rectangle
    lines: LineCollection

    def set_box(self, box: ArrayLike, output_size: int | tuple[int, int]) -> None:
        """Move the RoI rectangle and its bin lines to ``box`` cut into ``output_size`` bins."""
        move_rectangle(self.rect, box)
        self.lines.set_segments(list(roi_bin_segments(box, output_size)))


def draw_roi_bins(box: ArrayLike, output_size: int | tuple[int, int], ax: Axes | None = None, *,
                  color: str | None = None, linestyle: str = "-", linewidth: float = 2.0,
                  label: str | None = None) -> RoIArtists:
    """Draw an RoI and the borders of its ``output_size`` bins (RoIAlign's: no rounding).

    Args:
        box: ``(x1, y1, x2, y2)`` in the coordinates of the map drawn on ``ax``.
        output_size: ``PH`` or ``(PH, PW)`` bins.
        ax: where to draw; ``None`` makes a new figure.
        color: defaults to ``COLORS["roi"]``.
        label: legend label of the rectangle.

    Returns:
        :class:`RoIArtists`: the rectangle (``xy = (x1, y1)``, ``width = x2 - x1``,
        ``height = y2 - y1``) and the bin lines (:func:`roi_bin_segments`).
    """
    ax = axes_or_new(ax)
    color = color or COLORS["roi"]
    rect = box_rectangle(ax, box, color, linestyle, linewidth, label)
    lines = LineCollection(list(roi_bin_segments(box, output_size)), colors=color,
                           linewidths=linewidth * 0.5, linestyles="--", zorder=4)
    ax.add_collection(lines)
    return RoIArtists(rect=rect, lines=lines)


def draw_sample_points(points: ArrayLike, ax: Axes | None = None, *, color: str | None = None,
                       size: float = 28, marker: str = "o", label: str | None = None) -> PathCollection:
    """Draw bilinear sample points.

    Args:
        points: ``Tensor[..., 2]`` of ``(x, y)`` (any leading shape; flattened row-major).
        ax: where to draw; ``None`` makes a new figure.
        color: defaults to ``COLORS["sample"]``.

    Returns:
        The scatter collection; ``get_offsets()`` gives the points as ``[N, 2]``. Move it with
        ``set_offsets``.
    """
    array = as_numpy(points, "points")
    if array.shape[-1:] != (2,):
        raise ValueError(f"points must have shape [..., 2] holding (x, y), got {tuple(array.shape)}")
    array = array.reshape(-1, 2)
    ax = axes_or_new(ax)
    return ax.scatter(array[:, 0], array[:, 1], s=size, color=color or COLORS["sample"], marker=marker,
                      edgecolors="white", linewidths=0.6, zorder=5, label=label)


@dataclass
class OutputArtists:
    """What :func:`draw_pooled_output` drew; :meth:`set_values` redraws it in place."""

    ax: Axes
    image: AxesImage
    lines: LineCollection
    texts: list[Text]
    fmt: str = "{:.3g}"

    def set_values(self, values: ArrayLike, clim: tuple[float, float] | None = None) -> None:
        """Show a new ``[PH, PW]`` output (its size may change), reusing the labels already made."""
        array = as_map(values)
        ph, pw = array.shape
        self.image.set_data(array)
        self.image.set_clim(*(clim or lightened_clim(array, 0.6)))
        xs, ys = np.arange(1, pw) / pw, np.arange(1, ph) / ph
        self.lines.set_segments([[[x, 0], [x, 1]] for x in xs] + [[[0, y], [1, y]] for y in ys])
        while len(self.texts) < ph * pw:
            self.texts.append(self.ax.text(0, 0, "", ha="center", va="center", fontsize=11, color=COLORS["text"]))
        for k, text in enumerate(self.texts):
            if k < ph * pw:
                i, j = divmod(k, pw)
                text.set_position(((j + 0.5) / pw, (i + 0.5) / ph))
                text.set_text(self.fmt.format(array[i, j]))
                text.set_visible(True)
            else:
                text.set_visible(False)

    def artists(self) -> list[Any]:
        """Everything that :meth:`set_values` changes, in drawing order, for a panel's fast redraw
        (the frame comes after the image, which would otherwise cover it)."""
        return [self.image, self.lines, *self.ax.spines.values(), *self.texts]


def draw_pooled_output(values: ArrayLike, ax: Axes | None = None, *, fmt: str = "{:.3g}",
                       clim: tuple[float, float] | None = None, title: str | None = None) -> OutputArtists:
    """Draw a pooled ``PH x PW`` output (one RoI, one channel) as a square of cells with their values.

    The output fills the unit square whatever its size (cell ``(i, j)`` is centred at
    ``((j + 0.5) / PW, (i + 0.5) / PH)``, row 0 on top), so the frame never changes when the size does.

    Args:
        values: ``Tensor[PH, PW]`` (or ``[1, 1, PH, PW]``).
        ax: where to draw; ``None`` makes a new figure.
        fmt: format of the value labels.
        clim: colour limits; default from the values (lightened like :func:`draw_feature_grid`).

    Returns:
        :class:`OutputArtists`.
    """
    array = as_map(values)
    ax = axes_or_new(ax, figsize=(3.0, 3.0))
    image = ax.imshow(array, cmap="Greys", extent=(0, 1, 1, 0), origin="upper", interpolation="nearest")
    lines = LineCollection([], colors=COLORS["grid"], linewidths=1.0)
    ax.add_collection(lines)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=10)
    out = OutputArtists(ax=ax, image=image, lines=lines, texts=[], fmt=fmt)
    out.set_values(array, clim)
    return out


# -- RoIPool's quantised bins -------------------------------------------------------------------
def cell_rectangles(bins: ArrayLike) -> np.ndarray:
    """Polygons covering whole pixels for RoIPool's integer bins.

    Args:
        bins: ``[..., 4]`` integer ``(hstart, hend, wstart, wend)`` per bin (the layout of
            :attr:`helpers.roi.RoIPoolBins.bins`): rows ``hstart .. hend - 1`` and columns
            ``wstart .. wend - 1``. An empty bin (``hend <= hstart`` or ``wend <= wstart``) gives a
            polygon of zero area.

    Returns:
        ``float64[N, 4, 2]``: each bin's corners ``(x, y)`` clockwise from
        ``(wstart - 0.5, hstart - 0.5)`` to ``(wend - 0.5, hend - 0.5)`` (pixel centres sit at integers).
    """
    array = as_numpy(bins, "bins")
    if array.shape[-1:] != (4,):
        raise ValueError(f"bins must have shape [..., 4] holding (hstart, hend, wstart, wend), "
                         f"got {tuple(array.shape)}")
    array = array.reshape(-1, 4)
    ys, xs = array[:, 0] - 0.5, array[:, 2] - 0.5
    ye, xe = np.maximum(array[:, 1], array[:, 0]) - 0.5, np.maximum(array[:, 3], array[:, 2]) - 0.5
    return np.stack([np.stack([xs, ys], 1), np.stack([xe, ys], 1),
                     np.stack([xe, ye], 1), np.stack([xs, ye], 1)], axis=1)


def draw_roipool_bins(bins: ArrayLike, ax: Axes | None = None, *, color: str | None = None,
                      alpha: float = 0.18, label: str | None = None) -> PolyCollection:
    """Draw RoIPool's bins: whole pixels, possibly overlapping (overlaps look darker).

    Args:
        bins: ``[PH, PW, 4]`` (or ``[N, 4]``) integer ``(hstart, hend, wstart, wend)``, ends
            exclusive, in pixels of the map drawn on ``ax``: ``helpers.roi.roi_pool_bins(...).bins``
            (see :func:`cell_rectangles`).
        color: defaults to ``COLORS["roipool"]``.

    Returns:
        The polygon collection, one polygon per bin in row-major order; move it with
        ``set_verts(list(cell_rectangles(new_bins)))``.
    """
    ax = axes_or_new(ax)
    color = color or COLORS["roipool"]
    polys = PolyCollection(list(cell_rectangles(bins)), facecolors=color, edgecolors=color, alpha=alpha,
                           linewidths=1.5, zorder=3, label=label)
    ax.add_collection(polys)
    return polys


# -- RoIPool versus RoIAlign ----------------------------------------------------------------------
def draw_shift_curves(shifts: ArrayLike, roipool: ArrayLike, roialign: ArrayLike, ax: Axes | None = None, *,
                      extra: Mapping[str, ArrayLike] | None = None, xlabel: str = "RoI shift (pixels)",
                      ylabel: str = "output of one bin") -> dict[str, Line2D]:
    """Plot one output bin against a sub-pixel shift of the RoI: RoIPool's staircase, RoIAlign's curve.

    Args:
        shifts: ``[S]`` the shifts (x axis).
        roipool: ``[S]`` RoIPool's output for the bin, drawn as steps (``drawstyle="steps-post"``).
        roialign: ``[S]`` RoIAlign's output for the same bin, drawn as a line.
        extra: more ``label -> [S]`` curves (e.g. ``aligned=True``), drawn dashed in fixed colours.

    Returns:
        ``label -> Line2D``; ``get_xdata()``/``get_ydata()`` are the numbers plotted.
    """
    ax = axes_or_new(ax, figsize=(6.0, 3.5))
    s = as_numpy(shifts, "shifts")
    lines = {
        "RoIPool": ax.plot(s, as_numpy(roipool, "roipool"), drawstyle="steps-post", color=COLORS["roipool"],
                           linewidth=2, label="RoIPool (max over whole pixels)")[0],
        "RoIAlign": ax.plot(s, as_numpy(roialign, "roialign"), color=COLORS["roialign"], linewidth=2,
                            label="RoIAlign (bilinear average)")[0],
    }
    extra_colors = [COLORS["aligned"], COLORS["neighbour"], COLORS["truth"]]
    for k, (name, values) in enumerate((extra or {}).items()):
        lines[name] = ax.plot(s, as_numpy(values, name), linestyle="--", linewidth=1.5,
                              color=extra_colors[k % len(extra_colors)], label=name)[0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return lines


def draw_iou_plot(results: Mapping[str, Mapping[int, ArrayLike]], ax: Axes | None = None, *,
                  colors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Mean mask IoU per method and feature stride (bars) with every single trial (dots).

    Args:
        results: ``method -> {stride -> [T] IoUs}`` (every method must have the same strides).
        colors: ``method -> colour``; defaults cycle through RoIPool green, RoIAlign blue, orange.

    Returns:
        ``{"bars": {method: BarContainer}, "dots": {method: PathCollection}, "means": {method: [S]}}``.
    """
    ax = axes_or_new(ax, figsize=(6.0, 3.5))
    methods = list(results)
    if not methods:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
        return {"bars": {}, "dots": {}, "means": {}}
    strides = list(results[methods[0]])
    default = COMPARISON_COLORS
    width = 0.8 / len(methods)
    out: dict[str, Any] = {"bars": {}, "dots": {}, "means": {}}
    for m, method in enumerate(methods):
        color = (colors or {}).get(method, default[m % len(default)])
        means = np.array([as_numpy(results[method][s], "iou").mean() for s in strides])
        centres = np.arange(len(strides)) + (m - (len(methods) - 1) / 2) * width
        out["bars"][method] = ax.bar(centres, means, width=width * 0.9, color=color, alpha=0.6, label=method)
        xs, ys = [], []
        for c, s in zip(centres, strides):
            trial = as_numpy(results[method][s], "iou").reshape(-1)
            # spread the dots evenly across the bar (deterministic, no jitter)
            offsets = np.linspace(-0.3, 0.3, len(trial)) * width if len(trial) > 1 else np.zeros(1)
            xs.extend(c + offsets)
            ys.extend(trial)
        out["dots"][method] = ax.scatter(xs, ys, s=10, color=color, edgecolors="black", linewidths=0.3, zorder=3)
        out["means"][method] = means
    ax.set_xticks(np.arange(len(strides)), [f"stride {s}" for s in strides])
    ax.set_ylabel("mask IoU with the true mask")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return out


def draw_mask_outlines(masks: Mapping[str, ArrayLike], ax: Axes | None = None, *,
                       image: ArrayLike | None = None, colors: Mapping[str, str] | None = None,
                       box: ArrayLike | None = None) -> dict[str, Any]:
    """Outline several binary masks of one image on top of each other (e.g. truth vs predictions).

    Args:
        masks: ``label -> Tensor[H, W]`` masks (values in [0, 1]; outlined at 0.5).
        image: optional ``[H, W]`` background (drawn in light grey).
        colors: ``label -> colour``; defaults: truth black, then green, blue, orange.
        box: optional ``(x1, y1, x2, y2)`` drawn dashed, in the same pixel-centre coordinates.

    The legend (8 pt, the figure standard) sits under the axes, below the tick labels, so it hides
    no outline.

    Returns:
        ``label -> QuadContourSet``.
    """
    ax = axes_or_new(ax)
    default = (COLORS["truth"], *COMPARISON_COLORS[:3])
    if image is not None:
        array = as_map(image)
        h, w = array.shape
        ax.imshow(array, cmap="Greys", clim=(0, 2.5), extent=image_extent(h, w), interpolation="nearest")
    out: dict[str, Any] = {}
    handles = []
    for k, (label, mask) in enumerate(masks.items()):
        array = as_map(mask)
        color = (colors or {}).get(label, default[k % len(default)])
        out[label] = ax.contour(np.arange(array.shape[1]), np.arange(array.shape[0]), array, levels=[0.5],
                                colors=[color], linewidths=1.5)
        handles.append(Line2D([], [], color=color, label=label))
    if box is not None:
        x1, y1, x2, y2 = as_box(box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle=":", edgecolor=COLORS["grid"]))
    if masks:
        first = as_map(next(iter(masks.values())))
        set_pixel_limits(ax, *first.shape)
    ax.set_aspect("equal")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), borderaxespad=2.5,
              ncol=min(len(handles), 2), fontsize=8, frameon=False)    # under the tick labels: hides no outline
    return out



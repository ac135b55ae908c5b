"""Notebook 01's pictures: a feature map as a grid of pixels, and a sample point with its four
bilinear neighbours. The grid is also the background of the RoI pictures of notebooks 02-03.

A map ``Tensor[H, W]`` is drawn with the centre of pixel ``(x, y)`` on the integer point ``(x, y)``
and ``y`` pointing down (:func:`helpers.viz.core.image_extent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from helpers.viz.core import ArrayLike, as_map, as_numpy, axes_or_new, image_extent, set_pixel_limits
from helpers.viz.palettes import COLORS, OKABE_ITO

LABEL_DY = 0.25
"""Value labels sit this far below their pixel centre, so the centre dot stays visible."""


# -- the feature map -----------------------------------------------------------------------------
@dataclass
class GridArtists:
    """What :func:`draw_feature_grid` drew; :meth:`set_feature` redraws it in place."""

    ax: Axes
    image: AxesImage
    texts: list[Text] = field(default_factory=list)
    centres: PathCollection | None = None
    fmt: str = "{:g}"
    lighten: float = 0.6
    value_dy: float = LABEL_DY
    value_va: str = "center"

    def set_feature(self, feature: ArrayLike) -> None:
        """Show a new map (its size may differ), reusing the value labels already made."""
        array = as_map(feature)
        h, w = array.shape
        self.image.set_data(array)
        self.image.set_extent(image_extent(h, w))
        self.image.set_clim(*lightened_clim(array, self.lighten))
        _grid_ticks(self.ax, h, w)
        if self.centres is not None:
            self.centres.set_offsets(pixel_centres(h, w))
        if self.texts:  # the map was drawn with its values: keep them in step
            while len(self.texts) < h * w:
                self.texts.append(self.ax.text(0, 0, "", ha="center", va=self.value_va, fontsize=9,
                                               color=COLORS["text"], clip_on=True))
            for k, text in enumerate(self.texts):
                if k < h * w:
                    y, x = divmod(k, w)
                    text.set_position((x, y + self.value_dy))
                    text.set_text(self.fmt.format(array[y, x]))
                    text.set_visible(True)
                else:
                    text.set_visible(False)


def lightened_clim(array: np.ndarray, lighten: float) -> tuple[float, float]:
    """Colour limits that keep the darkest pixel mid-grey, so black labels stay readable.

    Args:
        array: the values shown.
        lighten: how far to push the upper limit beyond the largest value, as a fraction of the range.

    Returns:
        ``(low, high)`` for ``set_clim`` (a constant map gets a range of 1).
    """
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    if high == low:
        high = low + 1.0
    return low, high + lighten * (high - low)


def _grid_ticks(ax: Axes, h: int, w: int) -> None:
    """Integer ticks at the pixel centres, light lines on the pixel borders, y pointing down."""
    set_pixel_limits(ax, h, w)
    step_x = 1 if w <= 16 else int(np.ceil(w / 8))
    step_y = 1 if h <= 16 else int(np.ceil(h / 8))
    ax.set_xticks(range(0, w, step_x))
    ax.set_yticks(range(0, h, step_y))
    ax.set_xticks(np.arange(-0.5, w, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, h, 1.0), minor=True)
    ax.tick_params(which="minor", length=0)
    ax.grid(which="minor", color=COLORS["grid"], linewidth=0.6)
    ax.grid(which="major", visible=False)


def pixel_centres(h: int, w: int) -> np.ndarray:
    """The centres of an ``H x W`` map as ``[H*W, 2]`` points ``(x, y)``, row-major."""
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=1)


def draw_feature_grid(feature: ArrayLike, ax: Axes | None = None, *, values: bool = True,
                      centres: bool = True, cmap: str = "Greys", fmt: str = "{:g}",
                      fontsize: float = 9, lighten: float = 0.6, title: str | None = None,
                      value_dy: float = LABEL_DY, value_va: str = "center") -> GridArtists:
    """Draw a feature map as a grid of pixels, centres at integer ``(x, y)``, ``y`` pointing down.

    Args:
        feature: ``Tensor[H, W]`` (or ``[1, 1, H, W]``), the map to draw.
        ax: where to draw; ``None`` makes a new figure.
        values: write each pixel's value at its centre (formatted with ``fmt``).
        centres: mark the pixel centres (the points bilinear interpolation reads) with dots.
        cmap: colour map; the colour limits are stretched by ``lighten`` so the darkest pixel is
            mid-grey and labels stay readable.
        value_dy, value_va: each value is written at ``(x, y + value_dy)`` with this vertical
            alignment: by default centred a quarter pixel below the centre; in small cells
            (``value_dy=-0.2, value_va="baseline"``) standing on a line just above the centre dot,
            so the digit and the dots below it do not touch.
        title: axes title.

    Returns:
        :class:`GridArtists` holding the image (``extent = image_extent(H, W)``), the
        value labels (row-major) and the centre dots.
    """
    if value_va not in ("center", "top", "bottom", "baseline", "center_baseline"):
        raise ValueError(f"value_va must be one of 'center', 'top', 'bottom', 'baseline', 'center_baseline', "
                         f"got {value_va!r}")
    array = as_map(feature)
    h, w = array.shape
    ax = axes_or_new(ax)
    image = ax.imshow(array, cmap=cmap, extent=image_extent(h, w), origin="upper",
                      interpolation="nearest", clim=lightened_clim(array, lighten))
    dots = None
    if centres:
        centre_points = pixel_centres(h, w)
        dots = ax.scatter(centre_points[:, 0], centre_points[:, 1], s=6, color=COLORS["grid"], zorder=2)
    texts = []
    if values:
        for y in range(h):
            for x in range(w):
                texts.append(ax.text(x, y + value_dy, fmt.format(array[y, x]), ha="center", va=value_va,
                                     fontsize=fontsize, color=COLORS["text"], clip_on=True))
    _grid_ticks(ax, h, w)
    ax.set_xlabel("x")
    ax.set_ylabel("y (down)")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return GridArtists(ax=ax, image=image, texts=texts, centres=dots, fmt=fmt, lighten=lighten, value_dy=value_dy,
                       value_va=value_va)


# -- bilinear interpolation ---------------------------------------------------------------------
@dataclass
class NeighbourArtists:
    """What :func:`draw_neighbours` drew; :meth:`set` moves it in place."""

    point: PathCollection
    markers: PathCollection
    spokes: LineCollection
    labels: list[Text]

    def set(self, x: float, y: float, neighbours: ArrayLike, weights: ArrayLike) -> None:
        """Move the sample point to ``(x, y)`` and the four neighbours/weights to new values."""
        corners = as_numpy(neighbours, "neighbours").reshape(4, 2)
        w = as_numpy(weights, "weights").reshape(4)
        self.point.set_offsets([[x, y]])
        self.markers.set_offsets(corners)
        self.markers.set_sizes(60 + 340 * np.clip(w, 0, 1))
        self.spokes.set_segments([[[x, y], [cx, cy]] for cx, cy in corners])
        self.spokes.set_linewidths(0.5 + 3 * np.clip(w, 0, 1))
        for k, (text, (cx, cy)) in enumerate(zip(self.labels, corners)):
            # "A 0.34" just above-left (A, C) or above-right (B, D) of its pixel centre, clear of
            # the value label that draw_feature_grid writes below the centre
            left = k in (0, 2)
            text.set_position((cx - 0.12 if left else cx + 0.12, cy - 0.22))
            text.set_horizontalalignment("right" if left else "left")
            text.set_text(f"{'ABCD'[k]} {w[k]:.2f}")


def draw_neighbours(x: float, y: float, neighbours: ArrayLike, weights: ArrayLike,
                    ax: Axes | None = None, *, color: str | None = None) -> NeighbourArtists:
    """Draw a sample point, its four bilinear neighbours and their weights.

    Args:
        x, y: the sample point.
        neighbours: ``[4, 2]`` neighbour pixel centres ``(x, y)`` in the order A = top-left
            ``(x0, y0)``, B = top-right ``(x1, y0)``, C = bottom-left ``(x0, y1)``, D = bottom-right
            ``(x1, y1)`` (``y`` points down, so "top" is the smaller ``y``).
        weights: ``[4]`` their weights (they sum to 1 inside the map).
        color: neighbour colour, defaults to ``COLORS["neighbour"]``.

    Returns:
        :class:`NeighbourArtists`; marker area and spoke width grow with the weight.
    """
    ax = axes_or_new(ax)
    color = color or COLORS["neighbour"]
    point = ax.scatter([x], [y], s=70, color=COLORS["sample"], edgecolors="white", zorder=7, label="sample point")
    markers = ax.scatter(np.zeros(4), np.zeros(4), s=60, facecolors="none", edgecolors=color,
                         linewidths=2, zorder=6, label="neighbours")
    spokes = LineCollection([[[0, 0], [0, 0]]] * 4, colors=color, zorder=6)
    ax.add_collection(spokes)
    labels = [ax.text(0, 0, "", color=color, fontsize=9, ha="center", va="center", zorder=8,
                      fontweight="bold", clip_on=True) for _ in range(4)]
    artists = NeighbourArtists(point=point, markers=markers, spokes=spokes, labels=labels)
    artists.set(x, y, neighbours, weights)
    return artists




OPPOSITE_AREA_COLORS: dict[str, str] = {"A": OKABE_ITO["orange"], "B": OKABE_ITO["sky blue"],
                                         "C": OKABE_ITO["bluish green"], "D": OKABE_ITO["reddish purple"]}
"""Okabe-Ito colours of the four neighbours in :func:`draw_opposite_areas` (orange, sky blue, bluish
green, reddish purple): a neighbour's corner and the rectangle that is its weight share a colour."""


@dataclass
class OppositeAreaArtists:
    """What :func:`draw_opposite_areas` drew, by neighbour name (``"A"`` .. ``"D"``).

    Attributes:
        rects: the sub-rectangle whose area is that neighbour's weight (the one opposite to it).
        labels: the text inside each rectangle (``"weight of A\n0.34"``, ``"D: 0.09"`` in a thin one,
            empty where the rectangle is too small to hold it).
        corners: the text naming each corner (``"A = 6"``).
        weights: each neighbour's weight, the area of its rectangle.
        formulas: below the square, one line per neighbour (``"A: (1 − dx)(1 − dy) = 0.4 × 0.85 = 0.34"``).
    """

    ax: Axes
    rects: dict[str, Any]
    labels: dict[str, Text]
    corners: dict[str, Text]
    weights: dict[str, float]
    formulas: dict[str, Text]


def draw_opposite_areas(dx: float, dy: float, values: ArrayLike | None = None, ax: Axes | None = None,
                        *, title: str | None = None) -> OppositeAreaArtists:
    """Bilinear weights as areas: the unit square between four pixel centres, cut by the sample point
    into four rectangles; each neighbour's weight is the area of the rectangle *opposite* to it.

    The square is drawn with ``y`` pointing down (A top-left, B top-right, C bottom-left, D
    bottom-right, the names of notebook 01), the point at ``(dx, dy)`` from A. A's weight
    ``(1 - dx)(1 - dy)`` is the bottom-right rectangle, B's ``dx (1 - dy)`` the bottom-left, C's
    ``(1 - dx) dy`` the top-right, D's ``dx dy`` the top-left; each rectangle has its neighbour's colour.

    Args:
        dx, dy: the point's offsets from A, each in [0, 1].
        values: optional ``[A, B, C, D]`` map values written beside the corners.
        ax: where to draw; ``None`` makes a new 4.8 x 6.4 inch figure.
        title: optional axes title.

    Returns:
        :class:`OppositeAreaArtists`.

    Raises:
        ValueError: ``dx`` or ``dy`` outside [0, 1], or ``values`` without exactly four entries.
    """
    for name, v in (("dx", dx), ("dy", dy)):
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (the point's offset from A), got {v}")
    vals = None if values is None else as_numpy(values, "values").reshape(-1)
    if vals is not None and vals.size != 4:
        raise ValueError(f"values must hold the four neighbours' values [A, B, C, D], got {vals.size}")
    dx, dy = float(dx), float(dy)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 6.4))
        fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=0.94 if title else 1.0)
    corner = {"A": (0.0, 0.0), "B": (1.0, 0.0), "C": (0.0, 1.0), "D": (1.0, 1.0)}
    # the rectangle opposite each corner: (x, y, width, height), y down
    rect_of = {"A": (dx, dy, 1 - dx, 1 - dy), "B": (0.0, dy, dx, 1 - dy), "C": (dx, 0.0, 1 - dx, dy),
               "D": (0.0, 0.0, dx, dy)}
    factors = {"A": (1 - dx, 1 - dy), "B": (dx, 1 - dy), "C": (1 - dx, dy), "D": (dx, dy)}
    symbols = {"A": "(1 − dx)(1 − dy)", "B": "dx (1 − dy)", "C": "(1 − dx) dy", "D": "dx dy"}
    rects, labels, corners, weights, formulas = {}, {}, {}, {}, {}
    for k, name in enumerate("ABCD"):
        x, y, w, h = rect_of[name]
        colour = OPPOSITE_AREA_COLORS[name]
        rects[name] = ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, alpha=0.45, edgecolor=colour,
                                             linewidth=1.5))
        fw, fh = factors[name]
        weights[name] = fw * fh
        if w >= 0.3 and h >= 0.3:
            text = f"weight of {name}\n{fw * fh:.2g}"
        elif w >= 0.25 and h >= 0.1:
            text = f"{name}: {fw * fh:.2g}"
        else:
            text = ""  # too small to hold a label: the list below the square names it
        labels[name] = ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9, linespacing=1.15)
        formulas[name] = ax.text(-0.2, 1.3 + 0.15 * k, f"{name}: {symbols[name]} = {fw:.2g} × {fh:.2g} = {fw * fh:.2g}",
                                 ha="left", va="center", fontsize=9, color="black")
        ax.plot([-0.26], [1.3 + 0.15 * k], "s", ms=8, color=colour, alpha=0.7)
        cx, cy = corner[name]
        ax.plot([cx], [cy], "o", ms=10, color=colour, markeredgecolor="black", zorder=3)
        text = name if vals is None else f"{name} = {vals[k]:g}"
        corners[name] = ax.text(cx + (-0.05 if cx == 0 else 0.05), cy + (-0.05 if cy == 0 else 0.05), text,
                                ha="right" if cx == 0 else "left", va="bottom" if cy == 0 else "top",
                                fontsize=10, fontweight="bold")
    ax.plot([dx], [dy], "o", ms=8, color=COLORS["sample"], markeredgecolor="white", zorder=4)
    ax.annotate(f"point: dx = {dx:g}, dy = {dy:g}", (dx, dy), xytext=(0.5, -0.22), ha="center", va="bottom",
                fontsize=9, color=COLORS["sample"], arrowprops=dict(arrowstyle="-", color=COLORS["sample"], lw=0.8))
    ax.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], color="black", linewidth=1.0)
    ax.set_xlim(-0.32, 1.32)
    ax.set_ylim(1.85, -0.34)  # y down, as in the feature map
    ax.set_aspect("equal")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return OppositeAreaArtists(ax=ax, rects=rects, labels=labels, corners=corners, weights=weights,
                               formulas=formulas)

"""Notebook 01's pictures: a feature map as a grid of pixels, and a sample point with its four
bilinear neighbours. The grid is also the background of the RoI pictures of notebooks 02-03.

A map ``Tensor[H, W]`` is drawn with the centre of pixel ``(x, y)`` on the integer point ``(x, y)``
and ``y`` pointing down (:func:`helpers.viz.core.image_extent`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import AxesImage
from matplotlib.text import Text

from helpers.viz.core import ArrayLike, as_map, as_numpy, axes_or_new, image_extent, set_pixel_limits
from helpers.viz.palettes import COLORS

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
                self.texts.append(self.ax.text(0, 0, "", ha="center", va="center", fontsize=9,
                                               color=COLORS["text"], clip_on=True))
            for k, text in enumerate(self.texts):
                if k < h * w:
                    y, x = divmod(k, w)
                    text.set_position((x, y + LABEL_DY))
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
                      fontsize: float = 9, lighten: float = 0.6, title: str | None = None) -> GridArtists:
    """Draw a feature map as a grid of pixels, centres at integer ``(x, y)``, ``y`` pointing down.

    Args:
        feature: ``Tensor[H, W]`` (or ``[1, 1, H, W]``), the map to draw.
        ax: where to draw; ``None`` makes a new figure.
        values: write each pixel's value at its centre (formatted with ``fmt``).
        centres: mark the pixel centres (the points bilinear interpolation reads) with dots.
        cmap: colour map; the colour limits are stretched by ``lighten`` so the darkest pixel is
            mid-grey and labels stay readable.
        title: axes title.

    Returns:
        :class:`GridArtists` holding the image (``extent = image_extent(H, W)``), the
        value labels (row-major) and the centre dots.
    """
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
                texts.append(ax.text(x, y + LABEL_DY, fmt.format(array[y, x]), ha="center", va="center",
                                     fontsize=fontsize, color=COLORS["text"], clip_on=True))
    _grid_ticks(ax, h, w)
    ax.set_xlabel("x")
    ax.set_ylabel("y (down)")
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return GridArtists(ax=ax, image=image, texts=texts, centres=dots, fmt=fmt, lighten=lighten)


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



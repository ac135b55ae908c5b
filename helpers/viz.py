"""Drawing helpers shared by the notebooks and the slider panels.

One function per picture type, in the spirit of matterport's ``visualize.py`` (without its
``(y1, x1, y2, x2)`` boxes and unseeded colours):

- every ``draw_*`` function takes the data first and ``ax=None`` (``None``: a new figure is made
  with :func:`matplotlib.pyplot.subplots`), draws, and returns the artists it created, so that a
  panel can later *move* them (``set_data``, ``set_xy``, ``set_offsets``...) instead of re-plotting;
- the numbers a picture shows come from small pure functions (:func:`roi_bin_edges`,
  :func:`roi_bin_segments`, :func:`cell_rectangles`) that notebooks and tests can assert on;
- colours are fixed (:data:`COLORS`), nothing is random, so figures are identical run after run.

Conventions (the same as :mod:`helpers.roi` and torchvision's ops):

- a feature map ``Tensor[H, W]`` is drawn with the centre of pixel ``(x, y)`` at the *integer*
  point ``(x, y)``: pixel ``(0, 0)`` is the top-left one and covers ``[-0.5, 0.5] x [-0.5, 0.5]``,
  ``x`` grows to the right and ``y`` grows **downwards** (the y axis is inverted);
- boxes are ``(x1, y1, x2, y2)`` in those same coordinates.

Adding a helper: append a ``draw_<picture>(data, ax=None, ...)`` function at the end of the file
that returns its artists; take colours from :data:`COLORS` (add a key if you need a new one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

COLORS: dict[str, str] = {
    "roi": "#d62728",        # red: the RoI and its RoIAlign bins
    "sample": "#1f77b4",     # blue: bilinear sample points
    "roipool": "#2ca02c",    # green: RoIPool's quantised bins and its curves
    "roialign": "#1f77b4",   # blue: RoIAlign's curves
    "aligned": "#ff7f0e",    # orange: RoIAlign with aligned=True
    "neighbour": "#9467bd",  # purple: the four bilinear neighbours
    "truth": "#000000",      # black: ground truth (masks, true values)
    "text": "#000000",
    "grid": "#9e9e9e",       # light grey: pixel borders
}
"""Fixed colours, one per kind of thing drawn (never drawn at random)."""

LABEL_DY = 0.25
"""Value labels sit this far below their pixel centre, so the centre dot stays visible."""

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]


# -- small utilities ---------------------------------------------------------------------------
def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.0, 4.0)) -> Axes:
    """``ax`` itself, or the axes of a new pyplot figure of ``figsize`` inches."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _numpy(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a float64 NumPy array (detached, on the CPU)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a Tensor, an ndarray or a sequence of numbers, "
                        f"got {type(values).__name__}") from exc


def _feature_2d(feature: ArrayLike) -> np.ndarray:
    """A ``[H, W]`` array from ``Tensor[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]``."""
    array = _numpy(feature, "feature")
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"feature must be a single map of shape [H, W] (or [1, 1, H, W]), "
                         f"got shape {tuple(array.shape)}")
    return array


def _box(box: ArrayLike) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` as four floats."""
    array = _numpy(box, "box").reshape(-1)
    if array.shape != (4,):
        raise ValueError(f"box must hold exactly 4 numbers (x1, y1, x2, y2), got {array.size}")
    x1, y1, x2, y2 = (float(v) for v in array)
    return x1, y1, x2, y2


def _size(output_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(PH, PW)`` from an int or a pair, as torchvision's ``output_size``."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if int(ph) != ph or int(pw) != pw or ph <= 0 or pw <= 0:
        raise ValueError(f"output_size must be a positive int or a pair of positive ints, got {output_size!r}")
    return int(ph), int(pw)


def log(name: str, tensor: ArrayLike) -> None:
    """Print ``name``, shape, dtype, min and max of a tensor in one line (matterport's ``log``).

    Args:
        name: what to call the tensor in the printout.
        tensor: a Tensor, an ndarray or anything NumPy can turn into an array.

    Example::

        >>> log("feature", torch.arange(1.0, 17.0).reshape(4, 4))
        feature              shape (4, 4)         dtype torch.float32    min 1          max 16
    """
    if isinstance(tensor, torch.Tensor):
        shape, dtype = tuple(tensor.shape), str(tensor.dtype)
        values = tensor.detach().to("cpu")
        low, high = (values.min().item(), values.max().item()) if values.numel() else (None, None)
    else:
        array = np.asarray(tensor)
        shape, dtype = tuple(array.shape), str(array.dtype)
        low, high = (array.min().item(), array.max().item()) if array.size else (None, None)

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return str(v)
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    print(f"{name:<20} shape {str(shape):<14} dtype {dtype:<16} min {fmt(low):<10} max {fmt(high)}")


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
        array = _feature_2d(feature)
        h, w = array.shape
        self.image.set_data(array)
        self.image.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
        self.image.set_clim(*_clim(array, self.lighten))
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


def _clim(array: np.ndarray, lighten: float) -> tuple[float, float]:
    """Colour limits that keep the darkest pixel mid-grey, so black labels stay readable."""
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
    if high == low:
        high = low + 1.0
    return low, high + lighten * (high - low)


def _grid_ticks(ax: Axes, h: int, w: int) -> None:
    """Integer ticks at the pixel centres, light lines on the pixel borders, y pointing down."""
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)  # y grows downwards
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
        :class:`GridArtists` holding the image (``extent = (-0.5, W-0.5, H-0.5, -0.5)``), the
        value labels (row-major) and the centre dots.
    """
    array = _feature_2d(feature)
    h, w = array.shape
    ax = _axes(ax)
    image = ax.imshow(array, cmap=cmap, extent=(-0.5, w - 0.5, h - 0.5, -0.5), origin="upper",
                      interpolation="nearest", clim=_clim(array, lighten))
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
    x1, y1, x2, y2 = _box(box)
    ph, pw = _size(output_size)
    return x1 + (x2 - x1) * np.arange(pw + 1) / pw, y1 + (y2 - y1) * np.arange(ph + 1) / ph


def roi_bin_segments(box: ArrayLike, output_size: int | tuple[int, int]) -> np.ndarray:
    """The inner bin borders of an RoI as line segments ``float64[(PH-1)+(PW-1), 2, 2]``.

    Vertical lines first (left to right), then horizontal ones (top to bottom); each segment is
    ``[[x_a, y_a], [x_b, y_b]]``.
    """
    xs, ys = roi_bin_edges(box, output_size)
    x1, y1, x2, y2 = _box(box)
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
        x1, y1, x2, y2 = _box(box)
        self.rect.set_xy((x1, y1))
        self.rect.set_width(x2 - x1)
        self.rect.set_height(y2 - y1)
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
    ax = _axes(ax)
    color = color or COLORS["roi"]
    x1, y1, x2, y2 = _box(box)
    rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=linewidth,
                     linestyle=linestyle, label=label, zorder=4)
    ax.add_patch(rect)
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
    array = _numpy(points, "points")
    if array.shape[-1:] != (2,):
        raise ValueError(f"points must have shape [..., 2] holding (x, y), got {tuple(array.shape)}")
    array = array.reshape(-1, 2)
    ax = _axes(ax)
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
        array = _feature_2d(values)
        ph, pw = array.shape
        self.image.set_data(array)
        self.image.set_clim(*(clim or _clim(array, 0.6)))
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
    array = _feature_2d(values)
    ax = _axes(ax, figsize=(3.0, 3.0))
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
    array = _numpy(bins, "bins")
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
    ax = _axes(ax)
    color = color or COLORS["roipool"]
    polys = PolyCollection(list(cell_rectangles(bins)), facecolors=color, edgecolors=color, alpha=alpha,
                           linewidths=1.5, zorder=3, label=label)
    ax.add_collection(polys)
    return polys


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
        corners = _numpy(neighbours, "neighbours").reshape(4, 2)
        w = _numpy(weights, "weights").reshape(4)
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
    ax = _axes(ax)
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
    ax = _axes(ax, figsize=(6.0, 3.5))
    s = _numpy(shifts, "shifts")
    lines = {
        "RoIPool": ax.plot(s, _numpy(roipool, "roipool"), drawstyle="steps-post", color=COLORS["roipool"],
                           linewidth=2, label="RoIPool (max over whole pixels)")[0],
        "RoIAlign": ax.plot(s, _numpy(roialign, "roialign"), color=COLORS["roialign"], linewidth=2,
                            label="RoIAlign (bilinear average)")[0],
    }
    extra_colors = [COLORS["aligned"], COLORS["neighbour"], COLORS["truth"]]
    for k, (name, values) in enumerate((extra or {}).items()):
        lines[name] = ax.plot(s, _numpy(values, name), linestyle="--", linewidth=1.5,
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
    ax = _axes(ax, figsize=(6.0, 3.5))
    methods = list(results)
    if not methods:
        ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes)
        return {"bars": {}, "dots": {}, "means": {}}
    strides = list(results[methods[0]])
    default = [COLORS["roipool"], COLORS["roialign"], COLORS["aligned"], COLORS["neighbour"]]
    width = 0.8 / len(methods)
    out: dict[str, Any] = {"bars": {}, "dots": {}, "means": {}}
    for m, method in enumerate(methods):
        color = (colors or {}).get(method, default[m % len(default)])
        means = np.array([_numpy(results[method][s], "iou").mean() for s in strides])
        centres = np.arange(len(strides)) + (m - (len(methods) - 1) / 2) * width
        out["bars"][method] = ax.bar(centres, means, width=width * 0.9, color=color, alpha=0.6, label=method)
        xs, ys = [], []
        for c, s in zip(centres, strides):
            trial = _numpy(results[method][s], "iou").reshape(-1)
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

    Returns:
        ``label -> QuadContourSet``.
    """
    ax = _axes(ax)
    default = [COLORS["truth"], COLORS["roipool"], COLORS["roialign"], COLORS["aligned"]]
    if image is not None:
        array = _feature_2d(image)
        h, w = array.shape
        ax.imshow(array, cmap="Greys", clim=(0, 2.5), extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    out: dict[str, Any] = {}
    handles = []
    for k, (label, mask) in enumerate(masks.items()):
        array = _feature_2d(mask)
        color = (colors or {}).get(label, default[k % len(default)])
        out[label] = ax.contour(np.arange(array.shape[1]), np.arange(array.shape[0]), array, levels=[0.5],
                                colors=[color], linewidths=1.5)
        handles.append(Line2D([], [], color=color, label=label))
    if box is not None:
        x1, y1, x2, y2 = _box(box)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle=":", edgecolor=COLORS["grid"]))
    if masks:
        first = _feature_2d(next(iter(masks.values())))
        ax.set_xlim(-0.5, first.shape[1] - 0.5)
        ax.set_ylim(first.shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.legend(handles=handles, loc="lower right", fontsize=7)
    return out


# -- add new drawing helpers below: one `draw_<picture>(data, ax=None, ...)` per picture type ----


# -- label maps, detections and the map of the series (notebook 00) ------------------------------
CLASS_COLORS: tuple[str, ...] = ("#e8e8e8", "#1f77b4", "#ff7f0e", "#2ca02c")
"""Fixed colours of the shapes classes in a semantic map: background light grey, circle blue,
square orange, triangle green (index = label, as ``helpers.shapes.CLASSES``)."""

INSTANCE_COLORS: tuple[str, ...] = ("#e8e8e8", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                    "#bcbd22", "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c")
"""Fixed colours of an instance map: 0 (no instance) light grey, then one colour per instance id
(cycled after 10); chosen apart from :data:`CLASS_COLORS` so the two maps are not confused."""


@dataclass
class LabelMapArtists:
    """What :func:`draw_label_map` drew."""

    image: AxesImage
    values: list[int]
    """The label values present in the map, ascending (one legend entry each)."""
    legend_labels: list[str]
    """The legend's texts, in the order of :attr:`values`."""
    colors: list[str]
    """The colour each value in :attr:`values` is drawn with."""


def draw_label_map(label_map: ArrayLike, names: Sequence[str] | Mapping[int, str], ax: Axes | None = None, *,
                   colors: Sequence[str] | None = None, title: str | None = None,
                   legend: bool = True, legend_loc: str = "upper left") -> LabelMapArtists:
    """Draw an integer label map (semantic classes or instance ids) with one fixed colour per value.

    Args:
        label_map: ``Tensor[H, W]`` of non-negative integers (0 = background / no instance).
        names: the legend text of each value: a sequence indexed by value, or ``value -> name``.
        ax: where to draw; ``None`` makes a new figure.
        colors: colour of each value (indexed by value, cycled after the first colour, which
            belongs to 0 alone); defaults to :data:`CLASS_COLORS`.
        title: axes title.
        legend: add a legend with one entry per value present, outside the axes on the right.

    Returns:
        :class:`LabelMapArtists`: the image (pixel ``(x, y)`` centred on the integer point, ``y``
        down), the values present, their legend texts and colours.
    """
    array = _feature_2d(label_map)
    if array.size and (array.min() < 0 or not np.array_equal(array, np.round(array))):
        raise ValueError("label_map must hold non-negative integers")
    values = sorted(int(v) for v in np.unique(array))
    palette = list(colors or CLASS_COLORS)
    if len(palette) < 2:
        raise ValueError("colors must hold at least two colours (one for 0, one or more for the labels)")

    def colour(v: int) -> str:
        return palette[v] if v < len(palette) else palette[1 + (v - 1) % (len(palette) - 1)]

    def name(v: int) -> str:
        if isinstance(names, Mapping):
            return str(names.get(v, v))
        return str(names[v]) if v < len(names) else str(v)

    top = max(values) if values else 0
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([colour(v) for v in range(top + 1)])
    ax = _axes(ax)
    h, w = array.shape
    image = ax.imshow(array, cmap=cmap, vmin=-0.5, vmax=top + 0.5, interpolation="nearest",
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5), origin="upper")
    labels = [name(v) for v in values]
    drawn = [colour(v) for v in values]
    if legend:
        handles = [Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="black", linewidth=0.5) for c in drawn]
        ax.legend(handles, labels, loc=legend_loc, bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0.0)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return LabelMapArtists(image=image, values=values, legend_labels=labels, colors=drawn)


def draw_detections(image: ArrayLike, boxes: ArrayLike, labels: Sequence[int] | torch.Tensor,
                    names: Sequence[str], ax: Axes | None = None, *, scores: ArrayLike | None = None,
                    colors: Sequence[str] | None = None, title: str | None = None) -> list[Rectangle]:
    """Draw an RGB image with labelled boxes (object detection's view of it).

    Args:
        image: ``Tensor[3, H, W]`` (or ``[H, W, 3]``) in ``[0, 1]``.
        boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)`` in the *pixel-edge* convention of torchvision's
            detection targets and outputs (the image spans ``[0, W] x [0, H]``; a box around columns
            ``c0..c1`` has ``x2 = c1 + 1``). They are drawn shifted by -0.5 so that they hug the
            pixels of the image, whose pixel centres sit on integer points.
        labels: ``[N]`` class indices into ``names``.
        names: class names.
        scores: optional ``[N]`` scores written after the class name.
        colors: colour per class index; defaults to :data:`CLASS_COLORS`.
        title: axes title.

    Returns:
        The ``N`` rectangles, in order (``get_xy() = (x1 - 0.5, y1 - 0.5)``, width ``x2 - x1``);
        an image without boxes says "no instances".
    """
    picture = _numpy(image, "image")
    if picture.ndim == 3 and picture.shape[0] == 3:
        picture = picture.transpose(1, 2, 0)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got shape {tuple(picture.shape)}")
    box_array = _numpy(boxes, "boxes").reshape(-1, 4)
    label_list = [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    if len(label_list) != len(box_array):
        raise ValueError(f"labels must have one entry per box: {len(label_list)} labels for {len(box_array)} boxes")
    palette = list(colors or CLASS_COLORS)
    ax = _axes(ax)
    h, w = picture.shape[:2]
    ax.imshow(np.clip(picture, 0, 1), extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    rects = []
    score_list = None if scores is None else _numpy(scores, "scores").reshape(-1)
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(box_array, label_list)):
        color = palette[label % len(palette)]
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2)
        ax.add_patch(rect)
        text = names[label] if label < len(names) else str(label)
        if score_list is not None:
            text += f" {score_list[k]:.2f}"
        ax.text(x1 - 0.5, y1 - 1.5, text, color="white", fontsize=7, va="bottom",
                bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0}, clip_on=True)
        rects.append(rect)
    if not rects:
        ax.text(0.5, 0.5, "no instances", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return rects


PIPELINE_NOTEBOOKS: tuple[tuple[str, str], ...] = (
    ("01", "bilinear interpolation"),
    ("02", "RoIAlign"),
    ("03", "RoIPool vs RoIAlign"),
    ("04", "backbone and FPN"),
    ("05", "region proposal network"),
    ("06", "box head and losses"),
    ("07", "mask head"),
    ("08", "the whole model, one image through every stage"),
    ("09", "train on a CPU, score with COCO mask AP"),
    ("10", "RoIAlign vs RoIPool ablation"),
    ("11", "the pretrained COCO model on real photos"),
)
"""The notebooks after 00, as ``(number, what it rebuilds or does)``, drawn by :func:`draw_pipeline`."""


@dataclass
class PipelineArtists:
    """What :func:`draw_pipeline` drew: boxes by key, arrows as ``(from, to)`` keys, all texts."""

    ax: Axes
    boxes: dict[str, Any]
    arrows: list[tuple[str, str]]
    texts: list[Text]

    def notebooks_named(self) -> list[str]:
        """The notebook numbers written in the figure ("notebook NN"), read back from its texts."""
        import re

        found = set()
        for text in self.texts:
            found.update(re.findall(r"notebook (\d\d)", text.get_text()))
        return sorted(found)


def draw_pipeline(ax: Axes | None = None, *, notebooks: Sequence[tuple[str, str]] = PIPELINE_NOTEBOOKS) -> PipelineArtists:
    """Draw the map of the series: Mask R-CNN's stages as boxes and arrows, each naming its notebook.

    The main row is the path of one image: image -> backbone + FPN -> RPN -> RoIAlign -> box head
    (class + box) and mask head -> detections and masks. RoIAlign's two foundations (01, 03) hang
    below it; the notebooks that use the whole model (08-11) sit in a band underneath. The dashed
    arrow from the box head to the mask head is the inference path: at test time the mask head
    runs on the *detected* boxes, after the box head and NMS (He et al., 2017, section 3.1).

    Args:
        ax: where to draw; ``None`` makes a new 14 x 5.6 inch figure.
        notebooks: ``(number, title)`` of notebooks 01-11 (defaults to :data:`PIPELINE_NOTEBOOKS`).

    Returns:
        :class:`PipelineArtists`; :meth:`PipelineArtists.notebooks_named` reads the notebook
        numbers back from the drawn texts, so a notebook can assert that all of them are there.
    """
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    titles = dict(notebooks)
    missing = [f"{k:02d}" for k in range(1, 12) if f"{k:02d}" not in titles]
    if missing:
        raise ValueError(f"notebooks must name notebooks 01-11; missing {', '.join(missing)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(14.0, 5.6))
        fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=1.0)
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 5.6)
    ax.set_axis_off()

    stage_colour, base_colour, whole_colour, data_colour = "#dbe9f6", "#fde9d3", "#e2f0d9", "#f2f2f2"
    boxes: dict[str, Any] = {}
    texts: list[Text] = []
    centres: dict[str, tuple[float, float, float, float]] = {}

    def box(key: str, x: float, y: float, w: float, h: float, text: str, face: str, bold_first: bool = True,
            fontsize: float = 8.5) -> None:
        patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=face,
                               edgecolor="#555555", linewidth=1.0)
        ax.add_patch(patch)
        first, _, rest = text.partition("\n")
        if rest:
            texts.append(ax.text(x + w / 2, y + h * 0.64, first, ha="center", va="center", fontsize=fontsize + 0.5,
                                 fontweight="bold" if bold_first else "normal"))
            texts.append(ax.text(x + w / 2, y + h * 0.3, rest, ha="center", va="center", fontsize=fontsize - 0.5,
                                 color="#333333"))
        else:
            texts.append(ax.text(x + w / 2, y + h / 2, first, ha="center", va="center", fontsize=fontsize))
        boxes[key] = patch
        centres[key] = (x, y, w, h)

    arrows: list[tuple[str, str]] = []

    def arrow(a: str, b: str, start: tuple[float, float], end: tuple[float, float], label: str = "",
              dashed: bool = False, rad: float = 0.0, label_xy: tuple[float, float] | None = None) -> None:
        patch = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.2,
                                color="#444444", linestyle="--" if dashed else "-",
                                connectionstyle=f"arc3,rad={rad}")
        ax.add_patch(patch)
        arrows.append((a, b))
        if label:
            lx, ly = label_xy or ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.14)
            texts.append(ax.text(lx, ly, label, ha="center", va="bottom", fontsize=7, color="#444444",
                                 style="italic"))

    def right(k: str) -> tuple[float, float]:
        x, y, w, h = centres[k]
        return x + w, y + h / 2

    def left(k: str) -> tuple[float, float]:
        x, y, w, h = centres[k]
        return x, y + h / 2

    def nb(number: str) -> str:
        return f"notebook {number}"

    import textwrap

    row, hh = 3.55, 0.95
    box("image", 0.1, row, 1.1, hh, "image\n3 x H x W", data_colour)
    box("backbone", 1.75, row, 1.8, hh, f"backbone + FPN\n{nb('04')}", stage_colour)
    box("rpn", 4.35, row, 1.5, hh, f"RPN\n{nb('05')}", stage_colour)
    box("roialign", 6.65, row, 1.5, hh, f"RoIAlign\n{nb('02')}", stage_colour)
    box("boxhead", 8.95, row + 0.75, 2.1, hh, f"box head\nclass + box, {nb('06')}", stage_colour)
    box("maskhead", 8.95, row - 0.75, 2.1, hh, f"mask head\n{nb('07')}", stage_colour)
    box("detections", 11.6, row + 0.75, 2.3, hh, "detections\nclass, score, box", data_colour)
    box("masks", 11.6, row - 0.75, 2.3, hh, "masks\n28 x 28, pasted into the box", data_colour)

    arrow("image", "backbone", right("image"), left("backbone"))
    arrow("backbone", "rpn", right("backbone"), left("rpn"), "feature maps")
    arrow("rpn", "roialign", right("rpn"), left("roialign"), "proposals")
    bx, by, bw, bh = centres["backbone"]
    rx, ry, rw, rh = centres["roialign"]
    arrow("backbone", "roialign", (bx + bw * 0.6, by + bh), (rx + rw * 0.4, ry + rh), "the same feature maps",
          rad=-0.3, label_xy=(5.1, row + hh + 0.62))
    for head in ("boxhead", "maskhead"):
        x, y, w, h = centres[head]
        arrow("roialign", head, right("roialign"), (x, y + h / 2), "7 x 7" if head == "boxhead" else "14 x 14",
              label_xy=(8.55, y + h / 2 + (0.12 if head == "boxhead" else -0.4)))
    arrow("boxhead", "detections", right("boxhead"), left("detections"))
    arrow("maskhead", "masks", right("maskhead"), left("masks"))
    hx, hy, hw, hh2 = centres["boxhead"]
    mx, my, mw, mh = centres["maskhead"]
    arrow("boxhead", "maskhead", (hx + hw * 0.5, hy), (mx + mw * 0.5, my + mh), dashed=True)
    texts.append(ax.text(hx + hw * 0.5 + 0.1, (hy + my + mh) / 2, "at test time: the detected boxes",
                         fontsize=6.5, va="center", ha="left", color="#444444", style="italic"))

    # RoIAlign's foundations, below it
    box("bilinear", 4.7, 1.75, 1.9, 0.8, f"bilinear interpolation\n{nb('01')}", base_colour, fontsize=7.5)
    box("roipool", 6.95, 1.75, 1.9, 0.8, f"RoIPool vs RoIAlign\n{nb('03')}", base_colour, fontsize=7.5)
    for key in ("bilinear", "roipool"):
        x, y, w, h = centres[key]
        arrow(key, "roialign", (x + w / 2, y + h), (rx + rw * (0.3 if key == "bilinear" else 0.7), ry), dashed=True)

    # the notebooks that use the whole model, in a band underneath
    texts.append(ax.text(0.15, 1.3, "the whole model", fontsize=9, fontweight="bold", ha="left", va="center"))
    width, gap, x0 = 3.2, 0.28, 0.15
    for k, number in enumerate(("08", "09", "10", "11")):
        box(f"nb{number}", x0 + k * (width + gap), 0.1, width, 0.95,
            f"{nb(number)}\n{textwrap.fill(titles[number], 34)}", whole_colour, fontsize=8)
    return PipelineArtists(ax=ax, boxes=boxes, arrows=arrows, texts=texts)


# -- feature-pyramid levels (notebook 04) ----------------------------------------------------------
LEVEL_COLORS: dict[int, str] = {2: "#1f77b4", 3: "#2ca02c", 4: "#ff7f0e", 5: "#9467bd", 6: "#8c564b"}
"""Fixed colour of each FPN level (P2 .. P6) in the pyramid pictures of notebook 04."""


def level_boundaries(k_min: int = 2, k_max: int = 5, canonical_scale: float = 224,
                     canonical_level: int = 4) -> np.ndarray:
    """The box sides ``sqrt(wh)`` at which the FPN level steps up: ``224 * 2 ** (k - 4)`` for ``k_min < k <= k_max``.

    With the defaults: ``[112, 224, 448]`` (P2 below 112, P3 from 112, P4 from 224, P5 from 448).

    Returns:
        ``float64[k_max - k_min]``
    """
    ks = np.arange(k_min + 1, k_max + 1, dtype=np.float64)
    return canonical_scale * 2.0 ** (ks - canonical_level)


def cell_border_segments(stride: float, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """The borders of the cells of a feature map of ``stride`` inside a window, in image pixels.

    Cell ``j`` of a map with stride ``s`` is centred on image pixel ``s * j`` (what RoIAlign's
    ``spatial_scale = 1 / s`` assumes), so its borders are at ``s * (j - 0.5)`` and ``s * (j + 0.5)``.

    Args:
        stride: the map's stride in pixels.
        x_range, y_range: ``(low, high)`` of the window, image pixels.

    Returns:
        ``float64[n, 2, 2]``: vertical borders first (left to right), then horizontal ones (top to
        bottom), each ``[[x_a, y_a], [x_b, y_b]]`` spanning the window.
    """
    if not stride > 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    (x0, x1), (y0, y1) = x_range, y_range

    def borders(low: float, high: float) -> np.ndarray:
        first = np.ceil(low / stride + 0.5)
        last = np.floor(high / stride + 0.5)
        return stride * (np.arange(first, last + 1) - 0.5)

    vertical = [[[x, y0], [x, y1]] for x in borders(x0, x1)]
    horizontal = [[[x0, y], [x1, y]] for y in borders(y0, y1)]
    return np.array(vertical + horizontal, dtype=np.float64).reshape(-1, 2, 2)


@dataclass
class LevelCurveArtists:
    """What :func:`draw_level_curve` drew."""

    ax: Axes
    level: Line2D
    """The clamped level against the box side (a step curve)."""
    unclamped: Line2D
    """``floor(4 + log2(side / 224) + eps)`` before clamping (dashed)."""
    boundaries: list[Line2D]
    """One vertical line per boundary of :func:`level_boundaries`."""
    marker: Line2D
    """A single point that panels move to the current box."""


def draw_level_curve(sides: ArrayLike, levels: ArrayLike, unclamped: ArrayLike, ax: Axes | None = None, *,
                     k_min: int = 2, k_max: int = 5, canonical_scale: float = 224, canonical_level: int = 4,
                     title: str | None = "which level a box is pooled from") -> LevelCurveArtists:
    """Plot the FPN level against the box side ``sqrt(wh)`` on a log axis.

    The numbers come from the caller (``helpers.fpn.map_levels`` and ``raw_levels``), so a notebook
    can assert on exactly what is drawn.

    Args:
        sides: ``[S]`` box sides ``sqrt(wh)`` in pixels, increasing.
        levels: ``[S]`` the clamped levels of those boxes.
        unclamped: ``[S]`` the levels before clamping (``floor`` of ``raw_levels``).
        ax: where to draw; ``None`` makes a new figure.
        k_min, k_max, canonical_scale, canonical_level: the rule's constants (for the guides).
        title: axes title.

    Returns:
        :class:`LevelCurveArtists`.
    """
    s, k, u = _numpy(sides, "sides"), _numpy(levels, "levels"), _numpy(unclamped, "unclamped")
    if not (s.shape == k.shape == u.shape) or s.ndim != 1:
        raise ValueError(f"sides, levels and unclamped must be 1-D of one length, got {s.shape}, {k.shape}, {u.shape}")
    ax = _axes(ax, figsize=(6.0, 3.2))
    for level in range(k_min, k_max + 1):
        ax.axhspan(level - 0.5, level + 0.5, color=LEVEL_COLORS.get(level, "#cccccc"), alpha=0.08, linewidth=0)
    (unclamped_line,) = ax.plot(s, u, linestyle="--", color=COLORS["grid"], drawstyle="steps-post",
                                label="floor(4 + log2(side/224)) before clamping")
    (level_line,) = ax.plot(s, k, color=COLORS["truth"], drawstyle="steps-post", linewidth=2,
                            label=f"level used (clamped to {k_min}..{k_max})")
    lines = []
    for b in level_boundaries(k_min, k_max, canonical_scale, canonical_level):
        lines.append(ax.axvline(b, color=COLORS["roi"], linewidth=0.8, linestyle=":"))
        ax.text(b, k_max + 0.62, f"{b:g}", color=COLORS["roi"], ha="center", va="bottom", fontsize=8)
    (marker,) = ax.plot([], [], marker="o", markersize=9, color=COLORS["roi"], linestyle="none", zorder=5)
    ax.set_xscale("log", base=2)
    ticks = [2.0 ** e for e in range(int(np.ceil(np.log2(s.min()))), int(np.floor(np.log2(s.max()))) + 1)] if s.size else []
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("box side sqrt(w h), pixels (log scale)")
    ax.set_ylabel("FPN level k")
    ax.set_yticks(range(int(np.floor(u.min())) if u.size else k_min, k_max + 2))
    ax.set_ylim((np.floor(u.min()) if u.size else k_min) - 0.5, k_max + 1.5)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    if title:
        ax.set_title(title, pad=14)
    return LevelCurveArtists(ax=ax, level=level_line, unclamped=unclamped_line, boundaries=lines, marker=marker)


# -- notebook 05: anchors, matched anchors and proposals ---------------------------------------
RPN_COLORS: dict[str, str] = {
    "gt": "#000000",         # black: ground-truth boxes
    "positive": "#2ca02c",   # green: anchors labelled object (1)
    "ignored": "#ff7f0e",    # orange: anchors between the thresholds (-1, not in the loss)
    "negative": "#9e9e9e",   # grey: background anchors (0)
    "proposal": "#d62728",   # red: proposals after NMS
    "anchor": "#1f77b4",     # blue: anchors drawn for their own sake
}
"""Fixed colours of notebook 05's pictures (one per kind of box)."""


def box_outlines(boxes: ArrayLike, shift: float = -0.5) -> np.ndarray:
    """Closed outlines of boxes, ready for a ``LineCollection`` (``set_segments``).

    Args:
        boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)`` in the pixel-edge convention of the detector
            (the image spans ``[0, W] x [0, H]``).
        shift: added to every coordinate; ``-0.5`` puts the boxes on an image drawn with pixel
            centres on integer points (as :func:`draw_image` and :func:`draw_detections` draw it).

    Returns:
        ``ndarray[N, 5, 2]``: corners ``(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)`` shifted.
    """
    b = _numpy(boxes, "boxes")
    if b.size == 0:
        return np.zeros((0, 5, 2))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {tuple(b.shape)}")
    x1, y1, x2, y2 = (b[:, i] + shift for i in range(4))
    return np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                     np.stack([x1, y2], 1), np.stack([x1, y1], 1)], axis=1)


def draw_image(image: ArrayLike, ax: Axes | None = None, *, title: str | None = None,
               dim: float = 0.0) -> AxesImage:
    """An RGB image with pixel ``(x, y)`` centred on the integer point ``(x, y)``, y downwards.

    Args:
        image: ``Tensor[3, H, W]`` (or ``[H, W, 3]``) in ``[0, 1]``.
        title: axes title.
        dim: blend towards white by this fraction (0: the image as is), so boxes drawn on top stand out.

    Returns:
        The ``AxesImage`` (``extent = (-0.5, W - 0.5, H - 0.5, -0.5)``).
    """
    picture = _numpy(image, "image")
    if picture.ndim == 3 and picture.shape[0] == 3:
        picture = picture.transpose(1, 2, 0)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got shape {tuple(picture.shape)}")
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be in [0, 1], got {dim}")
    ax = _axes(ax)
    h, w = picture.shape[:2]
    shown = np.clip(picture, 0, 1) * (1 - dim) + dim
    artist = ax.imshow(shown, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return artist


def draw_boxes(boxes: ArrayLike, ax: Axes | None = None, *, color: str = RPN_COLORS["anchor"],
               linewidth: float = 1.0, alpha: float = 1.0, linestyle: str = "-", label: str | None = None,
               shift: float = -0.5, zorder: float = 2.0) -> LineCollection:
    """Box outlines as one ``LineCollection`` (one artist for any number of boxes, movable with
    ``set_segments(box_outlines(new_boxes))``).

    Args:
        boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)`` (pixel-edge convention; see :func:`box_outlines`).
        color, linewidth, alpha, linestyle, zorder: the lines' style.
        label: legend entry (``None``: none).
        shift: see :func:`box_outlines`.

    Returns:
        The ``LineCollection`` (``get_segments()`` gives the ``N`` outlines).
    """
    ax = _axes(ax)
    lines = LineCollection(list(box_outlines(boxes, shift)), colors=color, linewidths=linewidth, alpha=alpha,
                           linestyles=linestyle, label=label, zorder=zorder)
    ax.add_collection(lines)
    return lines


# -- the mask head (notebook 07) ------------------------------------------------------------------
MASK_COLORS: tuple[str, ...] = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
"""Fixed colours for proposals / instances, taken in order (never at random)."""


def _image_hwc(image: ArrayLike) -> np.ndarray:
    """An RGB ``[H, W, 3]`` array in [0, 1] from ``Tensor[3, H, W]`` (or a ``[H, W]`` grey map)."""
    array = _numpy(image, "image")
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be Tensor[3, H, W] or [H, W], got shape {tuple(array.shape)}")
    return np.clip(array, 0.0, 1.0)


def _show_image(ax: Axes, image: ArrayLike) -> AxesImage:
    """Draw an image with pixel centres at integer ``(x, y)`` and ``y`` pointing down."""
    array = _image_hwc(image)
    h, w = array.shape[:2]
    return ax.imshow(array, extent=(-0.5, w - 0.5, h - 0.5, -0.5), origin="upper", interpolation="nearest")


def _rect(ax: Axes, box: ArrayLike, color: str, linestyle: str = "-", linewidth: float = 1.8,
          label: str | None = None) -> Rectangle:
    x1, y1, x2, y2 = _box(box)
    rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=linestyle,
                     linewidth=linewidth, label=label, zorder=4)
    ax.add_patch(rect)
    return rect


def draw_mask_targets(image: ArrayLike, gt_mask: ArrayLike, boxes: ArrayLike, targets: ArrayLike,
                      axes: Sequence[Axes] | None = None, *, title: str | None = None) -> dict[str, Any]:
    """An image with its ground-truth mask and P proposals, and beside it each proposal's M x M target.

    Args:
        image: ``Tensor[3, H, W]`` in [0, 1].
        gt_mask: ``Tensor[H, W]`` the ground-truth mask the proposals are matched to (outlined in black).
        boxes: ``Tensor[P, 4]`` proposals ``(x1, y1, x2, y2)``, drawn in :data:`MASK_COLORS` order.
        targets: ``Tensor[P, M, M]`` the targets (values in [0, 1], drawn in grey levels).
        axes: ``P + 1`` axes (image first); ``None`` makes a figure with one row.

    Returns:
        ``{"boxes": [Rectangle] * P, "targets": [AxesImage] * P, "outline": QuadContourSet}``.
    """
    box_array = _numpy(boxes, "boxes").reshape(-1, 4)
    target_array = _numpy(targets, "targets")
    if target_array.ndim != 3 or target_array.shape[0] != box_array.shape[0]:
        raise ValueError(f"targets must be [P, M, M] with one target per box ({box_array.shape[0]} boxes), "
                         f"got shape {tuple(target_array.shape)}")
    p = box_array.shape[0]
    if axes is None:
        _, axes = plt.subplots(1, p + 1, figsize=(2.2 * p + 4.4, 3.3),
                               gridspec_kw={"width_ratios": [2.0] + [1] * p})
    axes = list(np.atleast_1d(axes))
    if len(axes) != p + 1:
        raise ValueError(f"axes must hold {p + 1} axes (the image, then one per proposal), got {len(axes)}")
    _show_image(axes[0], image)
    mask = _feature_2d(gt_mask)
    outline = axes[0].contour(np.arange(mask.shape[1]), np.arange(mask.shape[0]), mask, levels=[0.5],
                              colors=[COLORS["truth"]], linewidths=1.2)
    rects, shown = [], []
    for k in range(p):
        color = MASK_COLORS[k % len(MASK_COLORS)]
        rects.append(_rect(axes[0], box_array[k], color))
        axes[0].text(box_array[k, 0], box_array[k, 1] - 1, str(k), color=color, fontsize=8, va="bottom",
                     fontweight="bold")
        m = target_array.shape[-1]
        ax = axes[k + 1]
        shown.append(ax.imshow(target_array[k], cmap="Greys_r", vmin=0, vmax=1, interpolation="nearest",
                               extent=(-0.5, m - 0.5, target_array.shape[1] - 0.5, -0.5)))
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)
        soft = int(((target_array[k] > 0) & (target_array[k] < 1)).sum())
        ax.set_title(f"target {k}: {m}x{m}\n{soft} soft cells", fontsize=8, color=color)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_title(title or "proposals and the true mask (black)", fontsize=9)
    return {"boxes": rects, "targets": shown, "outline": outline}


def draw_class_competition(truths: Mapping[str, ArrayLike], probabilities: Mapping[str, Mapping[str, ArrayLike]],
                           axes: Any = None, *, threshold: float = 0.5) -> dict[str, Any]:
    """Probability maps per class learned with two losses (rows), with the true masks outlined.

    Args:
        truths: ``class name -> Tensor[M, M]`` true masks (outlined in black).
        probabilities: ``loss name -> {class name -> Tensor[M, M]}`` probability maps in [0, 1].
        axes: ``[rows, classes]`` axes; ``None`` makes a figure.
        threshold: the level drawn as a white contour (the mask the threshold would keep).

    Returns:
        ``{(loss, class): AxesImage}``.
    """
    names, rows = list(truths), list(probabilities)
    if axes is None:
        _, axes = plt.subplots(len(rows), len(names), figsize=(2.7 * len(names) + 0.8, 2.5 * len(rows)),
                               squeeze=False)
    axes = np.asarray(axes).reshape(len(rows), len(names))
    out: dict[Any, Any] = {}
    for r, loss in enumerate(rows):
        for c, name in enumerate(names):
            ax = axes[r, c]
            prob = _feature_2d(probabilities[loss][name])
            truth = _feature_2d(truths[name])
            h, w = prob.shape
            out[(loss, name)] = ax.imshow(prob, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                          extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            ax.contour(np.arange(w), np.arange(h), truth, levels=[0.5], colors=[COLORS["truth"]], linewidths=1.2)
            if (prob > threshold).any() and (prob <= threshold).any():
                ax.contour(np.arange(w), np.arange(h), prob, levels=[threshold], colors=["white"],
                           linewidths=1.0, linestyles="--")
            ax.set_xticks([])
            ax.set_yticks([])
            kept = int((prob > threshold).sum())
            ax.set_title(f"{loss}: p({name})\n{kept} px > {threshold:g}, max {prob.max():.2f}", fontsize=8)
    return out


def draw_paste_steps(mask: ArrayLike, padded: ArrayLike, box: ArrayLike, expanded_box: ArrayLike,
                     int_box: ArrayLike, pasted: ArrayLike, image: ArrayLike, axes: Sequence[Axes] | None = None,
                     *, gt_mask: ArrayLike | None = None, threshold: float = 0.5, margin: int = 4) -> dict[str, Any]:
    """The four steps of pasting one M x M mask into the image, side by side.

    1. the ``M x M`` probabilities; 2. padded by one cell of zeros (the original cells framed);
    3. resized to the integer box and pasted: the detection box (red, dashed), the box scaled by
    ``(M + 2) / M`` (orange) and the pixels of its integer version (grey: pixels ``x1 .. x2``
    inclusive, so from ``x1 - 0.5`` to ``x2 + 0.5``), zoomed to the box; 4. the mask thresholded
    at ``threshold`` over the image, the true mask outlined in black.

    Args:
        mask: ``Tensor[M, M]``; padded: ``Tensor[M + 2p, M + 2p]``.
        box, expanded_box: ``(x1, y1, x2, y2)`` floats; int_box: the truncated expanded box.
        pasted: ``Tensor[H, W]`` pasted probabilities; image: ``Tensor[3, H, W]``.
        gt_mask: optional ``Tensor[H, W]`` true mask to outline in step 4.

    Returns:
        ``{"mask", "padded", "pasted", "overlay": AxesImage, "boxes": [Rectangle] * 3}``.
    """
    if axes is None:
        _, axes = plt.subplots(1, 4, figsize=(13.0, 3.4))
    axes = list(np.atleast_1d(axes))
    if len(axes) != 4:
        raise ValueError(f"axes must hold 4 axes, got {len(axes)}")
    m_arr, p_arr, pasted_arr = _feature_2d(mask), _feature_2d(padded), _feature_2d(pasted)
    m, s = m_arr.shape[0], p_arr.shape[0]
    pad = (s - m) // 2
    out: dict[str, Any] = {}
    out["mask"] = axes[0].imshow(m_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                 extent=(-0.5, m - 0.5, m - 0.5, -0.5))
    axes[0].set_title(f"1. the {m}x{m} mask (sigmoid)", fontsize=9)
    out["padded"] = axes[1].imshow(p_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                   extent=(-0.5, s - 0.5, s - 0.5, -0.5))
    axes[1].add_patch(Rectangle((pad - 0.5, pad - 0.5), m, m, fill=False, edgecolor="white", linestyle="--",
                                linewidth=1.2))
    axes[1].set_title(f"2. padded by {pad}: {s}x{s}", fontsize=9)
    h, w = pasted_arr.shape
    out["pasted"] = axes[2].imshow(pasted_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                   extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ix1, iy1, ix2, iy2 = _box(int_box)
    rects = [_rect(axes[2], box, COLORS["roi"], "--", label="detection box"),
             _rect(axes[2], expanded_box, COLORS["aligned"], label=f"box x {s}/{m}"),
             _rect(axes[2], (ix1 - 0.5, iy1 - 0.5, ix2 + 0.5, iy2 + 0.5), COLORS["grid"], ":",
                   label="integer box's pixels")]
    axes[2].set_xlim(ix1 - margin - 0.5, ix2 + margin + 0.5)
    axes[2].set_ylim(iy2 + margin + 0.5, iy1 - margin - 0.5)
    axes[2].legend(loc="lower center", fontsize=6, bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
    axes[2].set_title(f"3. resized to {int(ix2 - ix1 + 1)}x{int(iy2 - iy1 + 1)} px, pasted", fontsize=9)
    out["overlay"] = _show_image(axes[3], image)
    tint = np.zeros((h, w, 4))
    tint[..., 0], tint[..., 3] = 1.0, 0.45 * (pasted_arr > threshold)
    axes[3].imshow(tint, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    if gt_mask is not None:
        gt = _feature_2d(gt_mask)
        axes[3].contour(np.arange(w), np.arange(h), gt, levels=[0.5], colors=[COLORS["truth"]], linewidths=1.0)
    axes[3].set_title(f"4. > {threshold:g} over the image (truth: black)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    out["boxes"] = rects
    return out


def draw_paste_profiles(profiles: Mapping[str, ArrayLike], ax: Axes | None = None, *,
                        truth: ArrayLike | None = None, box: ArrayLike | None = None, start: int = 0,
                        threshold: float = 0.5) -> dict[str, Line2D]:
    """One image row of pasted mask probabilities, one curve per pasting variant (e.g. padding 0 / 1).

    Args:
        profiles: ``label -> Tensor[L]`` the values of pixels ``start .. start + L - 1`` of one row.
        truth: optional ``Tensor[L]`` the true mask on the same pixels (drawn as grey bars).
        box: optional ``(x1, y1, x2, y2)``; its ``x1`` and ``x2`` are drawn as dashed vertical lines.
        start: the x of the first value.
        threshold: drawn as a dotted horizontal line.

    Returns:
        ``label -> Line2D`` (``get_xdata()`` are pixel x, ``get_ydata()`` the values).
    """
    ax = _axes(ax, figsize=(7.0, 2.8))
    lines: dict[str, Line2D] = {}
    if truth is not None:
        t = _numpy(truth, "truth").reshape(-1)
        ax.bar(start + np.arange(t.size), t, width=1.0, color=COLORS["grid"], alpha=0.35, label="true mask")
    palette = [COLORS["roipool"], COLORS["roialign"], COLORS["aligned"], COLORS["neighbour"]]
    for k, (label, values) in enumerate(profiles.items()):
        v = _numpy(values, label).reshape(-1)
        lines[label] = ax.plot(start + np.arange(v.size), v, "o-", markersize=3.5, linewidth=1.4,
                               color=palette[k % len(palette)], label=label)[0]
    if box is not None:
        x1, _, x2, _ = _box(box)
        for x in (x1, x2):
            ax.axvline(x, color=COLORS["roi"], linestyle="--", linewidth=1.2)
        ax.text(x1, 1.08, "box x1", color=COLORS["roi"], fontsize=8, ha="center")
        ax.text(x2, 1.08, "box x2", color=COLORS["roi"], fontsize=8, ha="center")
    ax.axhline(threshold, color=COLORS["text"], linestyle=":", linewidth=1.0)
    ax.set_ylim(-0.05, 1.18)
    ax.set_xlabel("x (pixel centre)")
    ax.set_ylabel("pasted probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return lines


# -- instance predictions on photographs and shapes, and the RoIAlign/RoIPool ablation (notebooks 10, 11) --
PREDICTION_COLORS: tuple[str, ...] = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
                                      "#f032e6", "#bfef45", "#469990", "#9a6324")
"""Fixed colours of predicted instances, by rank (highest score first), cycled after 10."""


def instance_overlay(masks: ArrayLike, colors: Sequence[str] = PREDICTION_COLORS, *, mask_thresh: float = 0.5,
                     alpha: float = 0.45) -> np.ndarray:
    """The RGBA layer that paints each predicted mask in its colour.

    Args:
        masks: ``Tensor[D, 1, H, W]`` or ``[D, H, W]`` mask probabilities (torchvision's pasted masks).
        colors: colour of instance ``k`` is ``colors[k % len(colors)]``.
        mask_thresh: a pixel belongs to a mask when its probability is ``> mask_thresh`` (as
            torchvision's COCO evaluation and :mod:`helpers.evaluate` binarise).
        alpha: opacity of a painted pixel.

    Returns:
        ``float array [H, W, 4]``: where several masks claim a pixel the later (lower-scored) one
        wins; pixels of no mask have alpha 0.
    """
    from matplotlib.colors import to_rgb

    m = _numpy(masks, "masks")
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"masks must be [D, 1, H, W] or [D, H, W], got shape {tuple(m.shape)}")
    if not 0.0 <= float(mask_thresh) < 1.0:
        raise ValueError(f"mask_thresh must be in [0, 1), got {mask_thresh}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not colors:
        raise ValueError("colors must hold at least one colour")
    layer = np.zeros((*m.shape[1:], 4))
    for k, mask in enumerate(m > mask_thresh):  # [H, W] bool each
        layer[mask] = (*to_rgb(colors[k % len(colors)]), alpha)
    return layer


@dataclass
class InstanceArtists:
    """What :func:`draw_instance_predictions` drew: one rectangle, label and outline set per instance."""

    image: AxesImage
    overlay: AxesImage | None
    rectangles: list[Rectangle]
    labels: list[Text]
    overlay_rgba: np.ndarray | None


def draw_instance_predictions(image: ArrayLike, prediction: Mapping[str, Any], names: Sequence[str],
                              ax: Axes | None = None, *, score_thresh: float = 0.5, mask_thresh: float = 0.5,
                              alpha: float = 0.45, colors: Sequence[str] = PREDICTION_COLORS,
                              title: str | None = None) -> InstanceArtists:
    """Draw a detector's instances on an image: mask overlays, boxes, and "name score" labels.

    Args:
        image: ``Tensor[3, H, W]`` (``uint8`` 0-255 or float 0-1) or ``[H, W, 3]``.
        prediction: one torchvision eval-mode output: ``boxes Tensor[D, 4]`` ``(x1, y1, x2, y2)`` in
            the pixel-edge convention (drawn shifted by -0.5 to hug pixel centres, as
            :func:`draw_detections`), ``labels Tensor[D]``, ``scores Tensor[D]``, optional
            ``masks Tensor[D, 1, H, W]`` probabilities.
        names: ``names[label]`` is a label's name (``weights.meta["categories"]`` for COCO).
        score_thresh: only detections with ``score >= score_thresh`` are drawn.
        mask_thresh, alpha, colors: see :func:`instance_overlay`; instance ``k`` (rank among the kept
            detections) takes ``colors[k % len(colors)]`` for its mask, box and label.
        title: axes title.

    Returns:
        :class:`InstanceArtists`; with nothing above the threshold the axes say "no detections
        above <score_thresh>" and the lists are empty.
    """
    if not isinstance(prediction, Mapping) or not {"boxes", "labels", "scores"} <= set(prediction):
        raise TypeError("prediction must be a dict with 'boxes', 'labels' and 'scores'")
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)) or not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be a float in [0, 1], got {score_thresh!r}")
    picture = _numpy(image, "image")
    if picture.ndim == 3 and picture.shape[0] == 3 and picture.shape[2] != 3:
        picture = picture.transpose(1, 2, 0)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got shape {tuple(picture.shape)}")
    if picture.dtype == np.uint8 or picture.max() > 1.0:
        picture = picture.astype(np.float64) / 255.0
    scores = _numpy(prediction["scores"], "scores").reshape(-1)
    keep = np.flatnonzero(scores >= score_thresh)
    boxes = _numpy(prediction["boxes"], "boxes").reshape(-1, 4)[keep]
    labels = [int(v) for v in _numpy(prediction["labels"], "labels").reshape(-1)[keep]]
    ax = _axes(ax, figsize=(6.0, 6.0))
    h, w = picture.shape[:2]
    shown = ax.imshow(np.clip(picture, 0, 1), extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    overlay = rgba = None
    if "masks" in prediction and len(keep):
        rgba = instance_overlay(_numpy(prediction["masks"], "masks")[keep], colors, mask_thresh=mask_thresh,
                                alpha=alpha)
        overlay = ax.imshow(rgba, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    rects, texts = [], []
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels)):
        color = colors[k % len(colors)]
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.8)
        ax.add_patch(rect)
        name = names[label] if 0 <= label < len(names) else str(label)
        near_top = y1 < 0.08 * h  # no room above the box: write the label just inside it
        texts.append(ax.text(x1 - 0.5, y1 - 0.5 if near_top else y1 - 1.5, f"{name} {scores[keep[k]]:.2f}",
                             color="white", fontsize=7, va="top" if near_top else "bottom", clip_on=True,
                             bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0}))
        rects.append(rect)
    if not rects:
        ax.text(0.5, 0.5, f"no detections above {score_thresh:g}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return InstanceArtists(image=shown, overlay=overlay, rectangles=rects, labels=texts, overlay_rgba=rgba)


def draw_ablation_bars(rows: Sequence[Mapping[str, Any]], kind: str = "mask",
                       metrics: Sequence[str] = ("AP", "AP50", "AP75"), ax: Axes | None = None, *,
                       scale: float = 100.0) -> dict[tuple[int, str, str], Any]:
    """Grouped bars of the ablation: for each stride and metric, RoIAlign next to RoIPool, ± std error bars.

    Args:
        rows: :func:`helpers.ablation.summarise`'s rows (``feature_stride``, ``op``, and
            ``"<kind>_<metric>": (mean, std)``).
        kind: ``"mask"`` or ``"box"``.
        metrics: which metrics, one group of bars each per stride.
        scale: multiply values (100: AP in percent, as the paper prints it).

    Returns:
        ``(stride, op, metric) -> the Rectangle of that bar`` (its height is the scaled mean).
    """
    if kind not in ("mask", "box"):
        raise ValueError(f"kind must be 'mask' or 'box', got {kind!r}")
    if not rows:
        raise ValueError("rows must hold at least one summary row")
    ax = _axes(ax, figsize=(7.0, 3.2))
    strides = sorted({int(r["feature_stride"]) for r in rows})
    ops = [op for op in ("align", "pool") if any(r["op"] == op for r in rows)]
    color = {"align": COLORS["roialign"], "pool": COLORS["roipool"]}
    label = {"align": "RoIAlign", "pool": "RoIPool"}
    width = 0.8 / len(ops)
    bars: dict[tuple[int, str, str], Any] = {}
    ticks, tick_labels = [], []
    for g, (stride, metric) in enumerate((s, m) for s in strides for m in metrics):
        x0 = g + (g // len(metrics)) * 0.6  # a gap between strides
        for j, op in enumerate(ops):
            row = next((r for r in rows if int(r["feature_stride"]) == stride and r["op"] == op), None)
            if row is None:
                continue
            mean, std = row[f"{kind}_{metric}"]
            bar = ax.bar(x0 + (j - (len(ops) - 1) / 2) * width, mean * scale, width, yerr=std * scale, capsize=3,
                         color=color[op], label=label[op] if g == 0 else None)[0]
            ax.text(bar.get_x() + width / 2, mean * scale + std * scale + 1, f"{mean * scale:.1f}", ha="center",
                    va="bottom", fontsize=7)
            bars[(stride, op, metric)] = bar
        ticks.append(x0)
        tick_labels.append(f"{metric}\nstride {stride}")
    ax.set_xticks(ticks)
    ax.set_xticklabels(tick_labels, fontsize=8)
    ax.set_ylabel(f"{kind} {'AP (%)' if scale == 100 else 'AP'}")
    ax.set_ylim(0, 1.08 * scale)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return bars

"""Pictures of images, boxes and instances: label maps and labelled boxes (notebook 00), images with
anchors or proposals (notebooks 05-06), and a detector's instance predictions (notebooks 08-11).

Images are ``Tensor[3, H, W]`` drawn with pixel centres on integer points
(:func:`helpers.viz.core.image_extent`). Detection boxes are in torchvision's *pixel-edge*
convention (the image spans ``[0, W] x [0, H]``), so they are drawn shifted by -0.5 to hug the pixels.

Every box, mask and label takes the colour of its *class* (:func:`helpers.viz.palettes.class_color`),
the same for ground truth and prediction; labels are written at :data:`LABEL_FONTSIZE` pt and placed
by :func:`place_box_labels` so that no label covers another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox
from matplotlib.text import Text

from helpers.viz.core import ArrayLike, as_map, as_numpy, as_rgb, axes_or_new, image_extent, set_pixel_limits
from helpers.viz.palettes import CLASS_COLORS, RPN_COLORS, class_color, text_color_on


LABEL_FONTSIZE = 8.0
"""The size of box labels ("circle 0.94"), in points: the series' figure standard's smallest text."""


class BoxLabelPlacer(Artist):
    """An invisible artist of an axes that places the box labels of :func:`place_box_labels` again
    each time the axes is drawn, on the axes as finally laid out (after ``tight_layout``, a
    constrained layout, or panels drawn later have moved it), so the labels never reach past the
    axes' edges nor cover one another in the picture stored. One per axes, drawn before anything
    else in it."""

    def __init__(self) -> None:
        super().__init__()
        self.set_zorder(-1e9)
        self.set_in_layout(False)
        self.entries: list[tuple[np.ndarray, Text]] = []
        """``(box (x1, y1, x2, y2) in data units, label)`` in placing order."""
        self.left_out: set[int] = set()
        """``id`` of the labels this placer hid for want of room (made visible again when room appears)."""

    @staticmethod
    def of(ax: Axes) -> "BoxLabelPlacer":
        """The axes' placer, added on first use."""
        for artist in ax.get_children():
            if isinstance(artist, BoxLabelPlacer):
                return artist
        placer = BoxLabelPlacer()
        ax.add_artist(placer)
        return placer

    def place(self, renderer: Any) -> None:
        """Put every label where it lies within the axes and covers no label placed before it."""
        ax = self.axes
        self.entries = [(box, label) for box, label in self.entries if label.axes is ax]  # drop removed labels
        if ax is None or not self.entries:
            return
        frame = ax.get_window_extent(renderer)
        dpi = ax.figure.dpi
        gap = 2 * dpi / 72   # two points between a box edge and its label
        pad = dpi / 72       # the label's patch reaches 1 pt past its text
        to_display = ax.transData.transform
        to_data = ax.transData.inverted().transform

        def free(extent: Bbox, placed: list[Bbox]) -> bool:
            inside = (extent.x0 >= frame.x0 - 0.5 and extent.x1 <= frame.x1 + 0.5 and extent.y0 >= frame.y0 - 0.5
                      and extent.y1 <= frame.y1 + 0.5)
            return inside and not any(extent.overlaps(other) for other in placed)

        placed: list[Bbox] = []
        for box, label in self.entries:
            if not label.get_visible() and id(label) not in self.left_out:
                continue  # hidden by its owner: not ours to place
            size = label.get_window_extent(renderer)
            w, h = size.width + 2 * pad, size.height + 2 * pad   # the patch, in display units
            (ax0, ay0), (ax1, ay1) = to_display([(box[0], box[1]), (box[2], box[3])])
            left, right = min(ax0, ax1), max(ax0, ax1)
            top, bottom = max(ay0, ay1), min(ay0, ay1)           # display y grows upwards
            xs = tuple(min(max(x, frame.x0), frame.x1 - w) for x in (left, right - w))  # slid into the axes
            step = h + gap
            rows = [top + gap, top - gap - h, bottom - gap - h, bottom + gap]  # above, inside top, below, inside bottom
            for k in range(1, int(frame.height // step) + 2):
                rows += [top + gap + k * step, bottom - gap - h - k * step]
                if top - gap - h - k * step > bottom + gap:
                    rows.append(top - gap - h - k * step)
            candidates = [(x, y) for y in rows for x in xs]
            chosen = next(((x, y) for x, y in candidates if free(Bbox.from_bounds(x, y, w, h), placed)), None)
            if chosen is None:  # anywhere in the axes, nearest to the box's top-left corner
                grid = [(x, y) for y in np.arange(frame.y0, frame.y1 - h + 0.5, h / 2)
                        for x in np.arange(frame.x0, frame.x1 - w + 0.5, max(w / 6, 1.0))]
                grid.sort(key=lambda q: (q[0] - left) ** 2 + (q[1] + h - top) ** 2)
                chosen = next(((x, y) for x, y in grid if free(Bbox.from_bounds(x, y, w, h), placed)), None)
            x, y = chosen if chosen is not None else candidates[0]
            label.set_position(tuple(to_data((x + pad, y + pad))))
            if chosen is None:
                label.set_visible(False)
                self.left_out.add(id(label))
            else:
                label.set_visible(True)
                self.left_out.discard(id(label))
                placed.append(Bbox.from_bounds(x, y, w, h))

    def draw(self, renderer: Any) -> None:
        self.place(renderer)
        self.stale = False


def place_box_labels(ax: Axes, boxes: ArrayLike, texts: Sequence[str], colors: Sequence[str], *,
                     fontsize: float = LABEL_FONTSIZE, shift: float = -0.5) -> list[Text]:
    """Write each box's label on a patch of its colour, inside the axes, where it covers no label
    written before it (on this axes, by this call or an earlier one).

    The places tried, in order (each left-aligned on the box's left edge, else right-aligned on its
    right edge, slid sideways into the axes where the box reaches past them): just above the box's
    top edge, just inside it, just below the bottom edge, just inside it; then one, two, ... label
    heights further up, further down, and further inside the box; failing all of these, the free
    place of the axes nearest to the box. The first place whose patch lies within the axes and
    overlaps no patch already placed wins; a label with no free place at all is left out (made
    invisible: the figure standard prefers a missing label to one on top of another). Place the
    highest-scored boxes first: they keep the best places.

    The labels are placed now, and placed again each time the figure is drawn
    (:class:`BoxLabelPlacer`), on the axes as finally laid out: ``tight_layout``, a constrained
    layout and panels drawn later cannot push them off the axes or onto each other.

    Args:
        ax: the axes, already framed (limits as they will be shown).
        boxes: ``Tensor[N, 4]`` ``(x1, y1, x2, y2)``, pixel-edge convention (see :func:`box_outlines`).
        texts, colors: ``N`` label texts and their background colours (the text is black or white,
            whichever reads better on it: :func:`helpers.viz.palettes.text_color_on`).
        fontsize: in points (at least 8: the figure standard).
        shift: added to the box coordinates, as :func:`box_outlines`.

    Returns:
        The ``N`` texts, in order (``get_visible()`` is ``False`` for a label left out).
    """
    box_array = as_numpy(boxes, "boxes").reshape(-1, 4) + shift
    if not len(texts) == len(colors) == len(box_array):
        raise ValueError(f"texts and colors must have one entry per box: {len(texts)} texts, {len(colors)} colors, "
                         f"{len(box_array)} boxes")
    if fontsize < 8:
        raise ValueError(f"fontsize must be at least 8 (the series' figure standard), got {fontsize}")
    figure = ax.figure
    engine = figure.get_layout_engine()
    if engine is not None:
        engine.execute(figure)
    placer = BoxLabelPlacer.of(ax)
    artists: list[Text] = []
    for box, text, color in zip(box_array, texts, colors):
        label = ax.text(box[0], box[1], text, color=text_color_on(color), fontsize=fontsize, ha="left", va="bottom",
                        clip_on=True, zorder=6, bbox={"facecolor": color, "edgecolor": "none", "pad": 1.0})
        placer.entries.append((np.asarray(box, dtype=np.float64), label))
        artists.append(label)
    placer.place(figure.canvas.get_renderer())
    return artists


# -- label maps and labelled boxes (notebook 00) -------------------------------------------------
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
    array = as_map(label_map)
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
    cmap = ListedColormap([colour(v) for v in range(top + 1)])
    ax = axes_or_new(ax)
    h, w = array.shape
    image = ax.imshow(array, cmap=cmap, vmin=-0.5, vmax=top + 0.5, interpolation="nearest",
                      extent=image_extent(h, w), origin="upper")
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
        scores: optional ``[N]`` scores written after the class name (labels placed by
            :func:`place_box_labels`: above the box where that covers no other label).
        colors: colour per class index (see :func:`helpers.viz.palettes.class_color`); defaults to
            :data:`CLASS_COLORS`.
        title: axes title.

    Returns:
        The ``N`` rectangles, in order (``get_xy() = (x1 - 0.5, y1 - 0.5)``, width ``x2 - x1``);
        an image without boxes says "no instances".
    """
    picture = as_rgb(image)
    box_array = as_numpy(boxes, "boxes").reshape(-1, 4)
    label_list = [int(v) for v in (labels.tolist() if isinstance(labels, torch.Tensor) else labels)]
    if len(label_list) != len(box_array):
        raise ValueError(f"labels must have one entry per box: {len(label_list)} labels for {len(box_array)} boxes")
    palette = list(colors or CLASS_COLORS)
    ax = axes_or_new(ax)
    h, w = picture.shape[:2]
    ax.imshow(np.clip(picture, 0, 1), extent=image_extent(h, w), interpolation="nearest")
    set_pixel_limits(ax, h, w)
    ax.set_aspect("equal")
    rects, texts, box_colors = [], [], []
    score_list = None if scores is None else as_numpy(scores, "scores").reshape(-1)
    for k, ((x1, y1, x2, y2), label) in enumerate(zip(box_array, label_list)):
        color = class_color(label, palette)
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2)
        ax.add_patch(rect)
        text = names[label] if label < len(names) else str(label)
        if score_list is not None:
            text += f" {score_list[k]:.2f}"
        texts.append(text)
        box_colors.append(color)
        rects.append(rect)
    if title:  # before the labels: they are placed on the axes as laid out with it
        ax.set_title(title)
    place_box_labels(ax, box_array, texts, box_colors)
    if not rects:
        ax.text(0.5, 0.5, "no instances", ha="center", va="center", transform=ax.transAxes)
    return rects


# -- images, anchors and proposals (notebooks 05-06) ---------------------------------------------
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
    b = as_numpy(boxes, "boxes")
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
        The ``AxesImage`` (``extent = image_extent(H, W)``, i.e. ``(-0.5, W - 0.5, H - 0.5, -0.5)``).
    """
    picture = as_rgb(image)
    if not 0.0 <= dim <= 1.0:
        raise ValueError(f"dim must be in [0, 1], got {dim}")
    ax = axes_or_new(ax)
    h, w = picture.shape[:2]
    shown = np.clip(picture, 0, 1) * (1 - dim) + dim
    artist = ax.imshow(shown, extent=image_extent(h, w), interpolation="nearest")
    set_pixel_limits(ax, h, w)
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
    ax = axes_or_new(ax)
    lines = LineCollection(list(box_outlines(boxes, shift)), colors=color, linewidths=linewidth, alpha=alpha,
                           linestyles=linestyle, label=label, zorder=zorder)
    ax.add_collection(lines)
    return lines


# -- a detector's instance predictions (notebooks 08-11) -----------------------------------------
def instance_overlay(masks: ArrayLike, colors: Sequence[str] = CLASS_COLORS[1:], *, mask_thresh: float = 0.5,
                     alpha: float = 0.45) -> np.ndarray:
    """The RGBA layer that paints each predicted mask in its colour.

    Args:
        masks: ``Tensor[D, 1, H, W]`` or ``[D, H, W]`` mask probabilities (torchvision's pasted masks).
        colors: colour of instance ``k`` is ``colors[k % len(colors)]``; pass one colour per instance,
            its class's (:func:`helpers.viz.palettes.class_color`), as :func:`draw_instance_predictions` does.
        mask_thresh: a pixel belongs to a mask when its probability is ``> mask_thresh`` (as
            torchvision's COCO evaluation and :mod:`helpers.evaluate` binarise).
        alpha: opacity of a painted pixel.

    Returns:
        ``float array [H, W, 4]``: where several masks claim a pixel the later (lower-scored) one
        wins; pixels of no mask have alpha 0.
    """
    m = as_numpy(masks, "masks")
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
                              alpha: float = 0.45, colors: Sequence[str] = CLASS_COLORS,
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
        mask_thresh, alpha: see :func:`instance_overlay`.
        colors: the class palette: an instance of class ``c`` takes ``class_color(c, colors)``
            (:func:`helpers.viz.palettes.class_color`) for its mask, box and label, so truth and
            prediction drawn with this function match; defaults to :data:`CLASS_COLORS`.
        title: axes title.

    Returns:
        :class:`InstanceArtists`; with nothing above the threshold the axes say "no detections
        above <score_thresh>" and the lists are empty.
    """
    if not isinstance(prediction, Mapping) or not {"boxes", "labels", "scores"} <= set(prediction):
        raise TypeError("prediction must be a dict with 'boxes', 'labels' and 'scores'")
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)) or not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be a float in [0, 1], got {score_thresh!r}")
    picture = as_rgb(image, ambiguous_as_hwc=True)
    if picture.dtype == np.uint8 or picture.max() > 1.0:
        picture = picture.astype(np.float64) / 255.0
    scores = as_numpy(prediction["scores"], "scores").reshape(-1)
    keep = np.flatnonzero(scores >= score_thresh)
    boxes = as_numpy(prediction["boxes"], "boxes").reshape(-1, 4)[keep]
    labels = [int(v) for v in as_numpy(prediction["labels"], "labels").reshape(-1)[keep]]
    ax = axes_or_new(ax, figsize=(6.0, 6.0))
    h, w = picture.shape[:2]
    shown = ax.imshow(np.clip(picture, 0, 1), extent=image_extent(h, w), interpolation="nearest")
    set_pixel_limits(ax, h, w)
    ax.set_aspect("equal")
    instance_colors = [class_color(label, colors) for label in labels]
    overlay = rgba = None
    if "masks" in prediction and len(keep):
        rgba = instance_overlay(as_numpy(prediction["masks"], "masks")[keep], instance_colors,
                                mask_thresh=mask_thresh, alpha=alpha)
        overlay = ax.imshow(rgba, extent=image_extent(h, w), interpolation="nearest")
    rects = []
    for (x1, y1, x2, y2), color in zip(boxes, instance_colors):
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.8)
        ax.add_patch(rect)
        rects.append(rect)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:  # before the labels: they are placed on the axes as laid out with it
        ax.set_title(title, fontsize=9)
    texts = place_box_labels(ax, boxes, [f"{names[label] if 0 <= label < len(names) else label} {scores[i]:.2f}"
                                         for label, i in zip(labels, keep)], instance_colors)
    if not rects:
        ax.text(0.5, 0.5, f"no detections above {score_thresh:g}", ha="center", va="center", transform=ax.transAxes)
    return InstanceArtists(image=shown, overlay=overlay, rectangles=rects, labels=texts, overlay_rgba=rgba)



"""The plumbing every picture shares: axes, arrays, boxes, images and their extent, ``log``.

The one convention behind every picture (the same as :mod:`helpers.roi` and torchvision's ops):
pixel ``(x, y)`` of a map or an image is drawn with its *centre* on the integer point ``(x, y)``,
so pixel ``(0, 0)`` covers ``[-0.5, 0.5] x [-0.5, 0.5]``, and ``y`` grows **downwards**. The
:func:`image_extent` of an ``H x W`` picture is therefore ``(-0.5, W - 0.5, H - 0.5, -0.5)``;
every module of :mod:`helpers.viz` draws its images with it and frames them with
:func:`set_pixel_limits`.
"""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.image import AxesImage
from cycler import cycler
from matplotlib.patches import Rectangle

from helpers.viz.palettes import OKABE_ITO_CYCLE

FIGURE_DPI = 110
"""The resolution of every figure the notebooks store (the series' figure standard: 110 dpi or more).
Set once, here, on import: every notebook imports :mod:`helpers.viz`, and the inline backend renders a
figure at its ``figure.dpi``. (Slider panels render at their own ``dpi``; their stored copies are
:meth:`helpers.widgets.panel.Panel.snapshot`, at 120.)"""
if plt.rcParams["figure.dpi"] < FIGURE_DPI:
    plt.rcParams["figure.dpi"] = FIGURE_DPI
plt.rcParams["axes.prop_cycle"] = cycler(color=list(OKABE_ITO_CYCLE))
"""Plain plots (``ax.plot`` without a colour) take their colours in the order of
:data:`helpers.viz.palettes.OKABE_ITO_CYCLE`, the series' colour-blind-safe palette, not tab10's."""

ArrayLike = torch.Tensor | np.ndarray | Sequence[float]
"""What the drawing helpers accept as numbers: a Tensor, an ndarray or a (nested) sequence."""

Extent = tuple[float, float, float, float]
"""``(left, right, bottom, top)``, as :meth:`matplotlib.axes.Axes.imshow` takes its ``extent``."""


def axes_or_new(ax: Axes | None, figsize: tuple[float, float] = (4.0, 4.0)) -> Axes:
    """``ax`` itself, or the axes of a new pyplot figure of ``figsize`` inches."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def as_numpy(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a float64 NumPy array (detached, on the CPU).

    Raises:
        TypeError: naming ``name`` when ``values`` cannot be read as numbers.
    """
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a Tensor, an ndarray or a sequence of numbers, "
                        f"got {type(values).__name__}") from exc


def as_map(feature: ArrayLike) -> np.ndarray:
    """A ``[H, W]`` float64 array from ``Tensor[H, W]``, ``[1, H, W]`` or ``[1, 1, H, W]`` (a feature
    map, a mask, a pooled output...)."""
    array = as_numpy(feature, "feature")
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"feature must be a single map of shape [H, W] (or [1, 1, H, W]), "
                         f"got shape {tuple(array.shape)}")
    return array


def as_box(box: ArrayLike) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` as four floats."""
    array = as_numpy(box, "box").reshape(-1)
    if array.shape != (4,):
        raise ValueError(f"box must hold exactly 4 numbers (x1, y1, x2, y2), got {array.size}")
    x1, y1, x2, y2 = (float(v) for v in array)
    return x1, y1, x2, y2


def as_output_size(output_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(PH, PW)`` from an int or a pair, as torchvision's ``output_size``."""
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    if int(ph) != ph or int(pw) != pw or ph <= 0 or pw <= 0:
        raise ValueError(f"output_size must be a positive int or a pair of positive ints, got {output_size!r}")
    return int(ph), int(pw)


def as_rgb(image: ArrayLike, *, ambiguous_as_hwc: bool = False) -> np.ndarray:
    """An ``[H, W, 3]`` float64 array from an RGB ``Tensor[3, H, W]`` or ``[H, W, 3]`` (values unchanged).

    Args:
        image: the picture.
        ambiguous_as_hwc: read a ``[3, H, 3]`` picture as ``[H, W, 3]`` (``True``) or as
            ``[3, H, W]`` (``False``, the default).
    """
    picture = as_numpy(image, "image")
    if picture.ndim == 3 and picture.shape[0] == 3 and not (ambiguous_as_hwc and picture.shape[2] == 3):
        picture = picture.transpose(1, 2, 0)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"image must be [3, H, W] or [H, W, 3], got shape {tuple(picture.shape)}")
    return picture


def as_rgb_or_grey(image: ArrayLike) -> np.ndarray:
    """An RGB ``[H, W, 3]`` array clipped to [0, 1] from ``Tensor[3, H, W]``, ``[1, H, W]`` or a ``[H, W]`` grey map."""
    array = as_numpy(image, "image")
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be Tensor[3, H, W] or [H, W], got shape {tuple(array.shape)}")
    return np.clip(array, 0.0, 1.0)


def image_extent(h: int, w: int) -> Extent:
    """The ``imshow`` extent that puts the centre of pixel ``(x, y)`` of an ``H x W`` picture on the
    integer point ``(x, y)``, ``y`` pointing down: ``(-0.5, W - 0.5, H - 0.5, -0.5)``."""
    return (-0.5, w - 0.5, h - 0.5, -0.5)


def set_pixel_limits(ax: Axes, h: int, w: int) -> None:
    """Frame ``ax`` on an ``H x W`` picture drawn with :func:`image_extent` (``y`` pointing down)."""
    left, right, bottom, top = image_extent(h, w)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)


def show_image(ax: Axes, image: ArrayLike) -> AxesImage:
    """Draw an RGB image (or a grey map, see :func:`as_rgb_or_grey`) with :func:`image_extent`."""
    array = as_rgb_or_grey(image)
    h, w = array.shape[:2]
    return ax.imshow(array, extent=image_extent(h, w), origin="upper", interpolation="nearest")


def box_rectangle(ax: Axes, box: ArrayLike, color: str, linestyle: str = "-", linewidth: float = 1.8,
                  label: str | None = None) -> Rectangle:
    """Add the outline of ``box`` ``(x1, y1, x2, y2)`` (coordinates as drawn, no shift) to ``ax``.

    Returns:
        The rectangle (``xy = (x1, y1)``, ``width = x2 - x1``, ``height = y2 - y1``, above images: ``zorder=4``).
    """
    x1, y1, x2, y2 = as_box(box)
    rect = Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linestyle=linestyle,
                     linewidth=linewidth, label=label, zorder=4)
    ax.add_patch(rect)
    return rect


def move_rectangle(rect: Rectangle, box: ArrayLike) -> None:
    """Move ``rect`` onto ``box`` ``(x1, y1, x2, y2)``: ``xy = (x1, y1)``, ``width = x2 - x1``, ``height = y2 - y1``."""
    x1, y1, x2, y2 = as_box(box)
    rect.set_xy((x1, y1))
    rect.set_width(x2 - x1)
    rect.set_height(y2 - y1)


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

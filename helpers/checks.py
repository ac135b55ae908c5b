"""Argument checks shared by every module of :mod:`helpers`, kept in one place.

Like torchvision's ``ops/_utils.py``, but with ``TypeError``/``ValueError`` instead of ``assert``
(asserts vanish under ``python -O``). Every check has the same argument order,
``check_x(value, name, ...)``, returns the checked value (converted where that is harmless:
``numpy.int64`` to ``int``, a list of ints to a ``list``), and raises an error that names the
argument, says what was wrong and what is allowed. No function here computes anything a
notebook teaches.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = [
    "check_int",
    "check_number",
    "check_bool",
    "check_choice",
    "check_tensor",
    "check_boxes",
    "check_list",
    "check_hw",
    "check_positive_numbers",
    "check_size",
    "check_paired",
    "check_indices",
    "upcast",
    "kernel_dtype",
]

T = TypeVar("T")


def _bounds_text(minimum: float | None, maximum: float | None, minimum_open: bool = False) -> str:
    low = "(" if minimum_open else "["
    lo = "-inf" if minimum is None else f"{minimum}"
    hi = "inf" if maximum is None else f"{maximum}"
    return f"in {low}{lo}, {hi}]"


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int``; ``bool`` is refused (``True`` is an int to Python, never to us).

    Raises:
        TypeError: ``value`` is not an integer (a float such as ``2.0`` included).
        ValueError: ``value`` is below ``minimum`` or above ``maximum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_number(value: Any, name: str, minimum: float | None = None, maximum: float | None = None, *,
                 minimum_open: bool = False, finite: bool = True, allow_scalar_tensor: bool = False,
                 interval: bool = False) -> float:
    """``value`` as a ``float``, checked against ``[minimum, maximum]`` (``(minimum, ...`` with
    ``minimum_open``); NaN is always refused, infinity unless ``finite=False``.

    ``allow_scalar_tensor`` accepts a one-element tensor (``torch.tensor(0.5)``) as its number.
    ``interval=True`` names the whole allowed interval when a bound is broken
    (``"min_scale must be in (0.0, 0.5], got 0.0"``) instead of the one bound (``"must be > 0.0"``).
    """
    if allow_scalar_tensor and isinstance(value, Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    too_low = minimum is not None and (value < minimum or (minimum_open and value == minimum))
    if interval and (too_low or (maximum is not None and value > maximum)):
        raise ValueError(f"{name} must be {_bounds_text(minimum, maximum, minimum_open)}, got {value}")
    if too_low:
        raise ValueError(f"{name} must be {'>' if minimum_open else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool`` (``0``/``1`` and strings are refused: ``"False"`` is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_choice(value: Any, name: str, choices: Iterable[T]) -> T:
    """``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_tensor(value: Any, name: str, dims: int | None = None, *, shape: str = "",
                 floating: bool | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """``value`` if it is a ``Tensor`` with ``dims`` dimensions.

    Args:
        shape: how the shape reads in the message, e.g. ``"[N, C, H, W]"``.
        floating: ``True`` requires a floating-point dtype, ``False`` an integer one (not bool).
        dtype: require exactly this dtype.
    """
    what = f"Tensor{shape}"
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a {what}, got {type(value).__name__}")
    if dims is not None and value.dim() != dims:
        raise ValueError(f"{name} must be a {what} ({dims} dimensions), got shape {tuple(value.shape)}")
    if dtype is not None and value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {value.dtype}")
    if floating is True and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor (int64), got {value.dtype}")
    return value


def check_boxes(value: Any, name: str, n: int | None = None, *, floating: bool = True, finite: bool = False,
                ordered: bool = False, positive_size: bool = False) -> Tensor:
    """``value`` if it is a ``Tensor[N, 4]`` of ``(x1, y1, x2, y2)`` boxes.

    Args:
        n: require exactly ``n`` rows.
        floating: require a floating-point dtype.
        finite: refuse NaN and infinity.
        ordered: require ``x2 >= x1`` and ``y2 >= y1`` (the first offending row is named).
        positive_size: require ``x2 > x1`` and ``y2 > y1`` (for code that divides by the size).
    """
    boxes = check_tensor(value, name, shape="[N, 4] of (x1, y1, x2, y2)")
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if floating and not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {boxes.dtype}")
    if n is not None and boxes.shape[0] != n:
        raise ValueError(f"{name} must hold {n} boxes, got {boxes.shape[0]}")
    if finite and boxes.numel() and not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{name} must hold finite numbers (no nan or inf)")
    if ordered or positive_size:
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        bad = ~((w > 0) & (h > 0)) if positive_size else ~((w >= 0) & (h >= 0))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            rule = "x2 > x1 and y2 > y1" if positive_size else "x2 >= x1 and y2 >= y1"
            raise ValueError(f"{name} must have {rule} (boxes are (x1, y1, x2, y2)); "
                             f"row {i} is {[round(float(v), 4) for v in boxes[i].tolist()]}")
    return boxes


def check_list(value: Any, name: str, of: type | tuple[type, ...] | None = None, *, length: int | None = None,
               minimum_length: int = 0, what: str = "a list") -> list[Any]:
    """``value`` as a ``list`` if it is a list or tuple (a tensor, string or dict is refused).

    Args:
        of: the type every item must have (``bool`` is refused where ``int`` is asked).
        length: require exactly this many items.
        minimum_length: require at least this many.
        what: how the list reads in the message, e.g. ``"a list with one Tensor per image"``.
    """
    if isinstance(value, (Tensor, Mapping, str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    items = list(value)
    if of is not None:
        for i, item in enumerate(items):
            if (isinstance(item, bool) and of is not bool) or not isinstance(item, of):
                kind = of.__name__ if isinstance(of, type) else " or ".join(t.__name__ for t in of)
                raise TypeError(f"{name}[{i}] must be a {kind}, got {type(item).__name__} {item!r}")
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must hold exactly {length} item(s), got {len(items)}")
    if len(items) < minimum_length:
        raise ValueError(f"{name} must hold at least {minimum_length} item(s), got {len(items)}")
    return items


def check_hw(value: Any, name: str) -> tuple[int, int]:
    """A ``(height, width)`` pair of positive ints (a 1-d tensor of two is accepted)."""
    if isinstance(value, Tensor):
        value = tuple(int(v) for v in value.tolist()) if value.dim() == 1 else value
    if not isinstance(value, (tuple, list, torch.Size)) or len(value) != 2:
        raise TypeError(f"{name} must be a (height, width) pair, got {value!r}")
    return check_int(value[0], f"{name} height", minimum=1), check_int(value[1], f"{name} width", minimum=1)


def check_positive_numbers(value: Any, name: str, integer: bool = False) -> tuple[Any, ...]:
    """A non-empty tuple of finite positive numbers (ints with ``integer=True``)."""
    if isinstance(value, (str, bytes, Tensor)) or not isinstance(value, Sequence) or len(value) == 0:
        raise TypeError(f"{name} must be a non-empty tuple of positive numbers, got {value!r}")
    for v in value:
        kind = numbers.Integral if integer else numbers.Real
        if isinstance(v, bool) or not isinstance(v, kind):
            raise TypeError(f"{name} must hold positive {'ints' if integer else 'numbers'}, got {v!r}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must hold finite positive numbers, got {v!r}")
    return tuple(value)


def check_size(value: Any, name: str) -> tuple[int, int]:
    """An output size given as an ``int`` (a square) or a ``(height, width)`` pair, as ``(int, int) >= 1``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    return check_int(value[0], f"{name} height", minimum=1), check_int(value[1], f"{name} width", minimum=1)


def check_paired(first: Tensor, second: Tensor, first_name: str, second_name: str, *, dtype: bool = True) -> None:
    """Two tensors whose rows go together: the same number of rows and (with ``dtype``) the same dtype."""
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"{first_name} and {second_name} must have the same number of rows, "
                         f"got {first.shape[0]} and {second.shape[0]}")
    if dtype and first.dtype != second.dtype:
        raise TypeError(f"{first_name} and {second_name} must have the same dtype, got {first.dtype} and {second.dtype}")


def check_indices(value: Any, name: str, size: int, *, length: int | None = None, per: str = "item",
                  of: str = "items") -> Tensor:
    """``value`` if it is an integer ``Tensor[P]`` of indices into ``size`` things (each in ``[0, size)``).

    Args:
        length: require exactly this many indices, one per ``per`` (``"box"``: the message names it).
        of: what the indices point into, for the message (``"gt_masks"``).
    """
    t = check_tensor(value, name, 1, shape="[P]", floating=False)
    if length is not None and t.shape[0] != length:
        raise ValueError(f"{name} must hold one index per {per}: {length} of them, got {t.shape[0]} indices")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= size):
        raise ValueError(f"{name} must lie in [0, {size}) (one of the {size} {of}), "
                         f"got values from {int(t.min())} to {int(t.max())}")
    return t


# -- dtypes: torchvision's rules, in one place ----------------------------------------------------
def upcast(t: Tensor) -> Tensor:
    """``t`` in a dtype whose products do not overflow, as torchvision's ``ops.boxes._upcast``:
    float16 / bfloat16 -> float32, int8 / uint8 / int16 -> int32; float32, float64, int32, int64 as they are.

    torchvision (and :func:`helpers.boxes.box_area` / :func:`helpers.boxes.box_iou`) upcast boxes with it
    before multiplying: a 300 x 300 box has area 90000, above float16's largest number (65504).
    """
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def kernel_dtype(t: Tensor, name: str, op: str, native: dict[str, tuple[torch.dtype, ...]],
                 autocast_devices: tuple[str, ...]) -> torch.dtype:
    """The dtype torchvision's ``op`` computes ``t`` in on ``t``'s device, or a ``TypeError`` where it refuses.

    torchvision's C++ kernels accept the ``native`` dtypes of each device type (``{"cpu": (float32,
    float64), ...}``); under ``torch.autocast`` for a device in ``autocast_devices`` (where torchvision
    registers an autocast wrapper for ``op``), every floating dtype but float64 is computed in float32
    (and, for ops that return features, cast back by the caller). Everything else is refused, as
    torchvision refuses it, with a message that names the argument, the dtypes allowed and the way out.
    """
    device = t.device.type
    if device in autocast_devices and torch.is_autocast_enabled(device) and t.is_floating_point():
        return t.dtype if t.dtype == torch.float64 else torch.float32
    allowed = native.get(device, native.get("cpu", ()))
    if t.dtype in allowed:
        return t.dtype
    names = ", ".join(_NAMES.get(d, str(d)) for d in allowed)
    hint = (f"; or call it under torch.autocast({device!r}), which computes in float32 as torchvision does"
            if device in autocast_devices and t.is_floating_point() else f"; cast it, e.g. {name}.float()")
    raise TypeError(f"{name} must be {names} on {device} (torchvision's {op} refuses {t.dtype} there too), "
                    f"got {t.dtype}{hint}")

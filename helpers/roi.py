"""Bilinear interpolation, RoIAlign and RoIPool, rebuilt in plain PyTorch (notebooks 01-03).

Every function here follows the rules of torchvision's CPU kernels
(``torchvision/csrc/ops/cpu/roi_align_kernel.cpp``, ``roi_align_common.h``, ``roi_pool_kernel.cpp``)
and is checked against ``torchvision.ops.roi_align`` / ``torchvision.ops.roi_pool`` in
``tests/test_roi.py``. Nothing in this module calls those ops: they are what is being rebuilt.

Conventions
-----------
- Feature maps are ``Tensor[N, C, H, W]``. Pixel ``(x, y)`` has its *centre* at the integer
  coordinates ``(x, y)``; ``x`` grows to the right, ``y`` grows **downwards**, ``(0, 0)`` is the centre
  of the top-left pixel. The value of pixel ``(x, y)`` is ``feature[..., y, x]`` (row ``y``, column ``x``).
- Boxes are ``(x1, y1, x2, y2)`` in *image* coordinates; ``spatial_scale`` (``1 / stride``) maps them
  onto the feature map. Two formats, as in torchvision: a ``Tensor[K, 5]`` whose first column is the
  batch index of the image each box belongs to, or a list with one ``Tensor[L, 4]`` per image.
- ``aligned=False`` is torchvision's default (the "legacy" RoIAlign of the original Mask R-CNN code):
  the scaled box corners are used directly as pixel-centre coordinates, and a box is made at least
  1x1 on the feature map. ``aligned=True`` (Detectron2) reads box corners as continuous coordinates
  in which pixel ``i`` spans ``[i, i + 1]`` (centre at ``i + 0.5``), so it subtracts 0.5 to reach
  pixel-centre coordinates: the box ``(0, 0, 1, 1)`` then covers exactly pixel ``(0, 0)`` and its
  one-bin sample lands on that pixel's centre. Without the shift the samples sit half a pixel
  down-right of where the box is.

The functions
-------------
Functions marked (nb) are exported verbatim from the notebook that writes them in the open (their
``#@save`` cells; ``python tools/nb.py export`` writes them here, the tests check they have not drifted):
they are the teaching versions, and the references the fast versions are tested against.

- :func:`bilinear` (nb 01): one point inside the map, the textbook formula.
- :func:`bilinear_tv` (nb 02): one point with torchvision's edge rules.
- :func:`bilinear_weights`, :func:`bilinear_interpolate`: the same rules, vectorised over points.
- :func:`roi_sample_points`: where RoIAlign samples (bins and points), for drawing.
- :func:`roi_align_loop` (nb 02): RoIAlign as plain loops (slow, readable).
- :func:`axis_rule`, :func:`roi_align_padded` (nb 02b): RoIAlign vectorised on grids padded to the
  largest one; ``reduce="max"`` gives the max variant.
- :func:`roi_align`: the fast version, differentiable, equal to ``torchvision.ops.roi_align``.
- :func:`roi_align_max`: the paper's "RoIAlign (max)" variant (not in torchvision).
- :func:`c_round` (nb 03): C's rounding, halves away from zero.
- :func:`roi_pool_loop` (nb 03): RoIPool as plain loops.
- :func:`roi_pool_bins`, :func:`roi_pool`: RoIPool's integer bins and the fast RoIPool.
- :func:`convert_boxes_to_roi_format`: list of ``Tensor[L, 4]`` -> ``Tensor[K, 5]``.

How the vectorised versions are fast
------------------------------------
A RoIAlign bin is a weighted sum of feature pixels: ``grid_h x grid_w`` samples (4 with
``sampling_ratio=2``), each the bilinear mix of its 4 neighbours, so at most 16 pixels. :func:`roi_align`
lists every bin's (pixel index, weight) pairs, computed with exactly the float operations of
torchvision's kernel, and does the weighted gather over the channels-last map ``Tensor[N*H*W, C]``
in one call: a sparse CSR matrix ``[bins, N*H*W]`` times the map (MKL, multithreaded; backward is
the transposed matrix times the output gradient) on big problems, ``F.embedding_bag(mode="sum",
per_sample_weights=...)`` on small ones (no thread start-up). ``benchmarks/bench_roi_align.py``
measures both against torchvision. :func:`roi_pool` finds every bin's maximum with a 2-D sparse
table (maxima of all ``2^i x 2^j`` windows), four look-ups per bin.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from helpers.checks import kernel_dtype

__all__ = [
    "BilinearWeights",
    "RoIAlignSampling",
    "RoIPoolBins",
    "bilinear_weights",
    "bilinear_interpolate",
    "convert_boxes_to_roi_format",
    "roi_sample_points",
    "bilinear",
    "bilinear_tv",
    "roi_align_loop",
    "axis_rule",
    "roi_align_padded",
    "check_roi_args",
    "roi_align_kernel",
    "roi_align",
    "roi_align_max",
    "c_round",
    "roi_pool_loop",
    "roi_pool_bins",
    "roi_pool",
]

BoxesType = Union[Tensor, Sequence[Tensor]]
OutputSizeType = Union[int, Sequence[int]]

# C's FLT_MAX: torchvision's RoIPool starts every bin's running maximum at -FLT_MAX (for float AND
# double inputs), and only a value strictly greater than it can win.
_FLT_MAX = float(torch.finfo(torch.float32).max)

# The vectorised functions work in chunks (of RoIs for RoIAlign, of channels for RoIPool) so that
# no temporary exceeds about this many elements (matters only for huge adaptive grids or maps).
CHUNK_ELEMENTS = 1 << 24

# Below this many multiply-adds (sparse entries x channels) RoIAlign gathers with F.embedding_bag,
# above it with a CSR sparse matmul (see _weighted_gather and benchmarks/bench_roi_align.py).
CSR_MIN_WORK = 1 << 21


# The dtypes torchvision's RoIAlign / RoIPool kernels accept (CPU and CUDA). float16 is computed here in
# float32 and cast back (more exact than torchvision's float16 kernel, see benchmarks/dtype_table.py);
# bfloat16 only under torch.autocast, whose wrapper computes in float32 (roi_align on CPU and CUDA,
# roi_pool on CUDA only), as in torchvision.
ROI_DTYPES = {"cpu": (torch.float32, torch.float64, torch.float16), "cuda": (torch.float32, torch.float64, torch.float16)}


def _float32_entry(input: Tensor, op: str, autocast_devices: tuple[str, ...]) -> Tensor | None:
    """The dtype rule at the entry of :func:`roi_align` / :func:`roi_pool`: refuse what torchvision
    refuses (see :func:`helpers.checks.kernel_dtype`). Returns ``None`` when ``input`` can be computed
    as it is (float32 / float64, autocast off), else the input to compute with (float16 / bfloat16 as
    float32): the caller then calls itself on it with autocast off (else autocast would run the sparse
    matmul in bfloat16) and casts the result back to ``input.dtype``."""
    _check_input(input)
    kernel_dtype(input, "input", op, ROI_DTYPES, autocast_devices)
    if input.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(input.device.type):
        return None
    return input if input.dtype in (torch.float32, torch.float64) else input.float()


# --------------------------------------------------------------------------------------------------
# Argument checking (ValueError / TypeError that name the argument and say what is allowed)
# --------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_output_size(output_size: OutputSizeType) -> tuple[int, int]:
    """``output_size`` -> ``(PH, PW)``; an int means a square output."""
    if _is_int(output_size):
        sizes = (int(output_size), int(output_size))  # type: ignore[arg-type]
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        if not all(_is_int(s) for s in output_size):
            raise TypeError(
                f"output_size must be an int or a pair of ints (height, width), got {output_size!r}"
            )
        sizes = (int(output_size[0]), int(output_size[1]))
    else:
        raise TypeError(
            f"output_size must be an int or a pair of ints (height, width), got {output_size!r}"
        )
    if sizes[0] <= 0 or sizes[1] <= 0:
        raise ValueError(f"output_size must be positive (>= 1), got {output_size!r}")
    return sizes


def _check_spatial_scale(spatial_scale: float) -> float:
    if not isinstance(spatial_scale, numbers.Real) or isinstance(spatial_scale, bool):
        raise TypeError(
            f"spatial_scale must be a positive finite real number (e.g. 1/16), got {spatial_scale!r}"
        )
    value = float(spatial_scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"spatial_scale must be a positive finite real number (e.g. 1/16), got {spatial_scale!r}"
        )
    return value


def _check_sampling_ratio(sampling_ratio: int) -> int:
    if not _is_int(sampling_ratio):
        raise TypeError(
            "sampling_ratio must be an integer: > 0 for that many samples per bin side, "
            f"<= 0 for adaptive (ceil(bin size)), got {sampling_ratio!r}"
        )
    return int(sampling_ratio)


def _check_aligned(aligned: bool) -> bool:
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"aligned must be a bool (True or False), got {aligned!r}")
    return bool(aligned)


def _check_input(input: Tensor) -> None:
    if not isinstance(input, Tensor):
        raise TypeError(f"input must be a torch.Tensor[N, C, H, W], got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(
            f"input must be a 4-D tensor [N, C, H, W], got {input.dim()}-D with shape {tuple(input.shape)}"
        )
    if not input.is_floating_point():
        raise TypeError(
            f"input must be a floating-point tensor (float32, float64 or float16), got dtype {input.dtype}"
        )
    if input.shape[2] < 1 or input.shape[3] < 1:
        raise ValueError(f"input must have H >= 1 and W >= 1, got shape {tuple(input.shape)}")


def _check_box_tensor(name: str, t: object, columns: int) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2 or t.shape[1] != columns:
        layout = "[K, 5] (batch index, x1, y1, x2, y2)" if columns == 5 else "[L, 4] (x1, y1, x2, y2)"
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers (floating point or integer), got dtype {t.dtype}")
    return t


def convert_boxes_to_roi_format(boxes: Sequence[Tensor]) -> Tensor:
    """Turn a list of per-image boxes into torchvision's ``Tensor[K, 5]`` RoI format.

    Args:
        boxes (list of Tensor[L_i, 4]): ``boxes[i]`` holds the ``(x1, y1, x2, y2)`` boxes of image ``i``.

    Returns:
        Tensor[K, 5]: ``(i, x1, y1, x2, y2)`` rows, images in order, ``K = sum(L_i)``; dtype of the
        first tensor (all are cast to it).
    """
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a list of Tensor[L, 4], got {type(boxes).__name__}")
    if len(boxes) == 0:
        return torch.zeros(0, 5)
    parts = [_check_box_tensor(f"boxes[{i}]", b, 4) for i, b in enumerate(boxes)]
    dtype = parts[0].dtype if parts[0].is_floating_point() else torch.get_default_dtype()
    rows = [
        torch.cat([torch.full_like(b[:, :1], i, dtype=dtype), b.to(dtype)], dim=1) for i, b in enumerate(parts)
    ]
    return torch.cat(rows, dim=0)


def _check_boxes(boxes: BoxesType, input: Tensor) -> Tensor:
    """Validate ``boxes`` against ``input``; return a detached ``Tensor[K, 5]`` of ``input.dtype``."""
    n = input.shape[0]
    if isinstance(boxes, (list, tuple)):
        if len(boxes) != n:
            raise ValueError(
                f"boxes as a list must hold one Tensor[L, 4] per image: input has N={n} images, "
                f"the list has {len(boxes)} entries"
            )
        for i, b in enumerate(boxes):
            _check_box_tensor(f"boxes[{i}]", b, 4)
            if b.device != input.device:
                raise ValueError(f"boxes[{i}] must be on the same device as input ({input.device}), got {b.device}")
        rois = (
            convert_boxes_to_roi_format([b.detach().to(input.dtype) for b in boxes])
            if n > 0
            else input.new_zeros(0, 5)
        )
    elif isinstance(boxes, Tensor):
        rois = _check_box_tensor("boxes", boxes, 5).detach()
        if rois.device != input.device:
            raise ValueError(f"boxes must be on the same device as input ({input.device}), got {rois.device}")
        if rois.shape[0] > 0:
            idx = rois[:, 0].double()
            bad = (idx != idx.round()) | (idx < 0) | (idx >= n) | ~torch.isfinite(idx)
            if bool(bad.any()):
                r = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"boxes[:, 0] must be an integer batch index in [0, {n}) (input has N={n} images); "
                    f"row {r} has {rois[r, 0].item()!r}"
                )
    else:
        raise TypeError(
            "boxes must be a Tensor[K, 5] (batch index, x1, y1, x2, y2) or a list of Tensor[L, 4] "
            f"(one per image), got {type(boxes).__name__}"
        )
    # torchvision requires boxes and input to have the same dtype (it raises a RuntimeError);
    # here boxes are cast to input's dtype, which is what a torchvision user has to do by hand.
    rois = rois.to(input.dtype)
    _check_coordinates("boxes", rois[:, 1:])
    return rois


def _check_coordinates(name: str, xyxy: Tensor) -> None:
    """``xyxy``: Tensor[K, 4]. Finite, x2 >= x1, y2 >= y1."""
    if xyxy.shape[0] == 0:
        return
    finite = torch.isfinite(xyxy).all(dim=1)
    if not bool(finite.all()):
        r = int((~finite).nonzero()[0, 0])
        raise ValueError(
            f"{name} coordinates must be finite (no NaN or inf); box {r} is {xyxy[r].tolist()}"
        )
    inverted = (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
    if bool(inverted.any()):
        r = int(inverted.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1; box {r} is {xyxy[r].tolist()}"
        )


def check_roi_args(
    input: Tensor,
    boxes: BoxesType,
    output_size: OutputSizeType,
    spatial_scale: float,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> tuple[Tensor, int, int, float, int, bool]:
    """Check the arguments of :func:`roi_align` / :func:`roi_pool` (same meaning) and normalise them.

    Raises ``TypeError`` / ``ValueError`` naming the argument and what is allowed.

    Returns:
        ``(rois, PH, PW, spatial_scale, sampling_ratio, aligned)``: ``rois`` a detached
        ``Tensor[K, 5]`` in ``input``'s dtype (a list of boxes converted), the rest as Python scalars,
        ready for :func:`roi_align_kernel`.
    """
    _check_input(input)
    ph, pw = _check_output_size(output_size)
    scale = _check_spatial_scale(spatial_scale)
    sr = _check_sampling_ratio(sampling_ratio)
    al = _check_aligned(aligned)
    rois = _check_boxes(boxes, input)
    return rois, ph, pw, scale, sr, al


def _single_box(name: str, box: object) -> Tensor:
    """A single box given as Tensor[4] / Tensor[1, 4] or a sequence of 4 numbers -> float64 Tensor[4]."""
    if isinstance(box, Tensor):
        t = box.detach()
        if t.dim() == 2 and t.shape[0] == 1:
            t = t[0]
        if t.shape != (4,):
            raise ValueError(f"{name} must be one box (x1, y1, x2, y2): Tensor[4], got shape {tuple(box.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
        return t.double()
    if isinstance(box, (list, tuple)) and len(box) == 4 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in box
    ):
        return torch.tensor([float(v) for v in box], dtype=torch.float64)
    raise TypeError(f"{name} must be one box (x1, y1, x2, y2): a Tensor[4] or 4 numbers, got {box!r}")


# --------------------------------------------------------------------------------------------------
# Bilinear interpolation (notebook 01)
# --------------------------------------------------------------------------------------------------


# @export notebooks/01_bilinear_interpolation.ipynb: bilinear (edit the notebook; tools/nb.py export writes this)
def bilinear(feature: torch.Tensor, x: float, y: float) -> float:
    '''Value of feature[H, W] at the real point (x, y), 0 <= x <= W-1, 0 <= y <= H-1 (centres at integers, y down).'''
    H, W = feature.shape
    x0, y0 = math.floor(x), math.floor(y)
    x_next, y_next = min(x0 + 1, W - 1), min(y0 + 1, H - 1)        # pinned on the last column / row
    dx, dy = x - x0, y - y0
    A, B, C, D = feature[y0, x0], feature[y0, x_next], feature[y_next, x0], feature[y_next, x_next]
    return float((1 - dx) * (1 - dy) * A + dx * (1 - dy) * B + (1 - dx) * dy * C + dx * dy * D)
# @end export bilinear


@dataclass(frozen=True)
class BilinearWeights:
    """The four neighbours of sample point(s) ``(x, y)`` and their bilinear weights.

    All fields have the shape of the (broadcast) sample coordinates, ``S``; ``weights`` and
    ``positions`` add a trailing axis of 4 neighbours, in torchvision's order
    ``(top-left, top-right, bottom-left, bottom-right)`` = ``(x_low, y_low), (x_high, y_low),
    (x_low, y_high), (x_high, y_high)``. Remember y grows downwards: "top" is the smaller row.

    Attributes:
        x, y (Tensor[S]): the coordinates actually used, after torchvision's clamping
            (``<= 0`` becomes 0; a low index ``>= size - 1`` pins the coordinate to ``size - 1``).
        x_low, x_high, y_low, y_high (LongTensor[S]): neighbour columns and rows.
        lx, ly (Tensor[S]): fractional distances ``x - x_low`` and ``y - y_low`` (the "dx", "dy").
        weights (Tensor[S, 4]): ``(hy*hx, hy*lx, ly*hx, ly*lx)`` with ``hx = 1 - lx``, ``hy = 1 - ly``;
            they sum to 1 for a sample inside, and are all 0 for a sample outside.
        inside (BoolTensor[S]): False when ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` (or NaN):
            torchvision then gives the sample the value 0 (and, like torchvision's forward kernel,
            its neighbour indices are set to 0).
    """

    x: Tensor
    y: Tensor
    x_low: Tensor
    x_high: Tensor
    y_low: Tensor
    y_high: Tensor
    lx: Tensor
    ly: Tensor
    weights: Tensor
    inside: Tensor

    @property
    def positions(self) -> Tensor:
        """LongTensor[S, 4, 2]: the four neighbours as ``(x, y)`` pairs, in the order of ``weights``."""
        xs = torch.stack([self.x_low, self.x_high, self.x_low, self.x_high], dim=-1)
        ys = torch.stack([self.y_low, self.y_low, self.y_high, self.y_high], dim=-1)
        return torch.stack([xs, ys], dim=-1)


def _coords(value: Union[float, Tensor], dtype: torch.dtype, device: torch.device | None) -> Tensor:
    if isinstance(value, Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"sample coordinates must be real numbers, got dtype {value.dtype}")
        return value.to(dtype=dtype, device=device)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=dtype, device=device)
    raise TypeError(f"sample coordinates must be numbers or tensors, got {type(value).__name__}")


def bilinear_weights(
    height: int,
    width: int,
    x: Union[float, Tensor],
    y: Union[float, Tensor],
    dtype: torch.dtype | None = None,
) -> BilinearWeights:
    """Neighbours and weights that bilinear interpolation at ``(x, y)`` uses on an ``H x W`` map.

    torchvision's RoIAlign rules (``roi_align_common.h``), in order:

    1. a sample with ``y < -1`` or ``y > H`` or ``x < -1`` or ``x > W`` is *outside*: weight 0;
    2. otherwise ``y <= 0`` becomes 0 (``x`` likewise);
    3. ``y_low = int(y)``; if ``y_low >= H - 1`` then ``y_low = y_high = H - 1`` and ``y = H - 1``,
       else ``y_high = y_low + 1`` (``x`` likewise);
    4. ``ly = y - y_low``, ``lx = x - x_low``, ``hy = 1 - ly``, ``hx = 1 - lx``;
       weights ``hy*hx, hy*lx, ly*hx, ly*lx`` for ``(x_low, y_low), (x_high, y_low), (x_low, y_high),
       (x_high, y_high)``.

    Args:
        height (int): ``H``, number of rows of the feature map.
        width (int): ``W``, number of columns.
        x (float or Tensor[S]): sample column coordinate(s), pixel centres at integers.
        y (float or Tensor[S]): sample row coordinate(s), y grows downwards; broadcast with ``x``.
        dtype (torch.dtype, optional): arithmetic precision; default: ``x``'s dtype if it is a
            floating tensor, else the default dtype (float32). torchvision computes in the input's dtype.

    Returns:
        BilinearWeights: fields of shape ``S`` (0-d for scalar ``x``, ``y``); see its docstring.

    Example:
        >>> bw = bilinear_weights(4, 4, 1.6, 1.15)
        >>> bw.positions.tolist()    # (x, y) of the four neighbours
        [[1, 1], [2, 1], [1, 2], [2, 2]]
        >>> [round(w, 4) for w in bw.weights.tolist()]
        [0.34, 0.51, 0.06, 0.09]
    """
    if not _is_int(height) or not _is_int(width) or height < 1 or width < 1:
        raise ValueError(f"height and width must be integers >= 1, got height={height!r}, width={width!r}")
    if dtype is None:
        if isinstance(x, Tensor) and x.is_floating_point():
            dtype = x.dtype
        elif isinstance(y, Tensor) and y.is_floating_point():
            dtype = y.dtype
        else:
            dtype = torch.get_default_dtype()
    device = x.device if isinstance(x, Tensor) else (y.device if isinstance(y, Tensor) else None)
    xt, yt = torch.broadcast_tensors(_coords(x, dtype, device), _coords(y, dtype, device))

    # 1. outside the extended map [-1, H] x [-1, W] (written as not-inside so that NaN is outside)
    inside = (yt >= -1.0) & (yt <= height) & (xt >= -1.0) & (xt <= width)
    # 2. clamp at 0 (outside samples are parked at 0 so that int() below stays harmless)
    yt = torch.where(inside & (yt > 0), yt, torch.zeros_like(yt))
    xt = torch.where(inside & (xt > 0), xt, torch.zeros_like(xt))
    # 3. integer neighbours, pinned at the last row / column
    y_low = yt.long()
    x_low = xt.long()
    pin_y = y_low >= height - 1
    pin_x = x_low >= width - 1
    y_low = torch.where(pin_y, torch.full_like(y_low, height - 1), y_low)
    x_low = torch.where(pin_x, torch.full_like(x_low, width - 1), x_low)
    y_high = torch.where(pin_y, y_low, y_low + 1)
    x_high = torch.where(pin_x, x_low, x_low + 1)
    yt = torch.where(pin_y, y_low.to(dtype), yt)
    xt = torch.where(pin_x, x_low.to(dtype), xt)
    # 4. weights
    ly = yt - y_low.to(dtype)
    lx = xt - x_low.to(dtype)
    hy = 1.0 - ly
    hx = 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=-1)
    weights = torch.where(inside[..., None], weights, torch.zeros_like(weights))
    zero = torch.zeros_like(y_low)
    return BilinearWeights(
        x=xt,
        y=yt,
        x_low=torch.where(inside, x_low, zero),
        x_high=torch.where(inside, x_high, zero),
        y_low=torch.where(inside, y_low, zero),
        y_high=torch.where(inside, y_high, zero),
        lx=torch.where(inside, lx, torch.zeros_like(lx)),
        ly=torch.where(inside, ly, torch.zeros_like(ly)),
        weights=weights,
        inside=inside,
    )


def bilinear_interpolate(feature: Tensor, x: Union[float, Tensor], y: Union[float, Tensor]) -> Tensor:
    """Value of ``feature`` at the real-valued point(s) ``(x, y)``, with torchvision's RoIAlign rules.

    See :func:`bilinear_weights` for the rules (outside ``[-1, W] x [-1, H]`` gives 0; the border
    row/column is repeated up to distance 1). Differentiable with respect to ``feature``.

    Args:
        feature (Tensor[H, W] or Tensor[C, H, W]): the map, pixel centres at integer coordinates,
            ``feature[..., y, x]``.
        x (float or Tensor[S]): column coordinate(s).
        y (float or Tensor[S]): row coordinate(s), y grows downwards; broadcast with ``x``.

    Returns:
        Tensor[S] for a 2-D ``feature`` or Tensor[C, S] for a 3-D one (``S`` = broadcast shape of
        ``x`` and ``y``; 0-d / ``[C]`` for scalars), in ``feature``'s dtype.

    Example (the worked example of notebook 01: neighbours 6, 7, 10, 11, dx = 0.6, dy = 0.15):
        >>> f = torch.arange(1.0, 17.0).reshape(4, 4)
        >>> round(bilinear_interpolate(f, 1.6, 1.15).item(), 4)
        7.2
    """
    if not isinstance(feature, Tensor):
        raise TypeError(f"feature must be a torch.Tensor[H, W] or [C, H, W], got {type(feature).__name__}")
    if feature.dim() not in (2, 3):
        raise ValueError(f"feature must be 2-D [H, W] or 3-D [C, H, W], got shape {tuple(feature.shape)}")
    if not feature.is_floating_point():
        raise TypeError(f"feature must be a floating-point tensor, got dtype {feature.dtype}")
    height, width = feature.shape[-2], feature.shape[-1]
    if height < 1 or width < 1:
        raise ValueError(f"feature must have H >= 1 and W >= 1, got shape {tuple(feature.shape)}")
    bw = bilinear_weights(height, width, x, y, dtype=feature.dtype)
    flat = feature.reshape(*feature.shape[:-2], height * width)  # [C, H*W] or [H*W]
    idx = torch.stack(
        [
            bw.y_low * width + bw.x_low,
            bw.y_low * width + bw.x_high,
            bw.y_high * width + bw.x_low,
            bw.y_high * width + bw.x_high,
        ],
        dim=-1,
    )  # [S, 4]
    values = flat[..., idx]  # [C, S, 4] or [S, 4]
    return (values * bw.weights).sum(dim=-1)


# --------------------------------------------------------------------------------------------------
# RoIAlign: where it samples
# --------------------------------------------------------------------------------------------------


@dataclass
class _RoIGeometry:
    """Per-RoI quantities of torchvision's RoIAlign kernel, all ``[K]``, in the boxes' dtype."""

    start_x: Tensor
    start_y: Tensor
    bin_w: Tensor
    bin_h: Tensor
    grid_w: Tensor  # LongTensor[K]
    grid_h: Tensor  # LongTensor[K]
    count: Tensor  # LongTensor[K], max(grid_h * grid_w, 1)


def _roi_geometry(xyxy: Tensor, ph: int, pw: int, scale: float, sr: int, aligned: bool) -> _RoIGeometry:
    """xyxy: Tensor[K, 4]. Same float operations, in the same order, as torchvision's kernel."""
    offset = 0.5 if aligned else 0.0
    start_x = xyxy[:, 0] * scale - offset  # [K]
    start_y = xyxy[:, 1] * scale - offset
    end_x = xyxy[:, 2] * scale - offset
    end_y = xyxy[:, 3] * scale - offset
    roi_w = end_x - start_x
    roi_h = end_y - start_y
    if not aligned:  # "force malformed RoIs to be 1x1"
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_w = roi_w / pw
    bin_h = roi_h / ph
    if sr > 0:
        grid_w = torch.full_like(start_x, sr, dtype=torch.long)
        grid_h = torch.full_like(start_x, sr, dtype=torch.long)
    else:  # adaptive: ceil(roi size / output size) samples per bin side
        grid_w = torch.ceil(roi_w / pw).long()
        grid_h = torch.ceil(roi_h / ph).long()
    count = (grid_h * grid_w).clamp(min=1)
    return _RoIGeometry(start_x, start_y, bin_w, bin_h, grid_w, grid_h, count)


@dataclass
class _Samples:
    """Every sample point of a set of RoIs, flat (``S`` samples, bins in (k, ph, pw) order)."""

    bin_index: Tensor  # LongTensor[S], bin = (k * PH + ph) * PW + pw
    roi_index: Tensor  # LongTensor[S]
    iy: Tensor  # LongTensor[S]
    ix: Tensor  # LongTensor[S]
    x: Tensor  # Tensor[S]
    y: Tensor  # Tensor[S]
    bin_first: Tensor  # LongTensor[B], index of each bin's first sample (B = K * PH * PW)
    bin_count: Tensor  # LongTensor[B], number of samples in each bin (grid_h * grid_w, may be 0)


def _segment_ids(count: Tensor, first: Tensor, total: int) -> Tensor:
    """``repeat_interleave(arange(len(count)), count)`` without it (its CPU kernel starts threads even
    for a handful of elements, which costs milliseconds on a busy machine): mark where each non-empty
    segment starts with the jump in segment id, then a cumulative sum."""
    ids = torch.zeros(total, dtype=torch.long, device=count.device)
    if total == 0:
        return ids
    nonempty = (count > 0).nonzero().squeeze(1)  # segment ids in increasing order
    jumps = torch.diff(nonempty, prepend=nonempty.new_zeros(1))
    ids[first[nonempty]] = jumps
    return torch.cumsum(ids, 0)


def _sample_points(geo: _RoIGeometry, ph: int, pw: int) -> _Samples:
    """Flat list of all sample points; RoIs may have different (adaptive) grids."""
    k_count = geo.start_x.shape[0]
    device = geo.start_x.device
    dtype = geo.start_x.dtype
    per_roi = geo.grid_h * geo.grid_w  # [K]
    n_bins = k_count * ph * pw
    bin_count = per_roi[:, None].expand(k_count, ph * pw).reshape(n_bins)  # [B]
    bin_first = torch.cumsum(bin_count, 0) - bin_count  # [B]
    total = int(bin_count.sum()) if n_bins > 0 else 0
    bin_index = _segment_ids(bin_count, bin_first, total)  # [S]
    j = torch.arange(total, device=device) - bin_first[bin_index]  # position inside the bin
    roi = bin_index // (ph * pw)
    p_h = (bin_index // pw) % ph
    p_w = bin_index % pw
    gw = geo.grid_w[roi]
    gh = geo.grid_h[roi]
    iy = j // gw
    ix = j - iy * gw
    bh = geo.bin_h[roi]
    bw = geo.bin_w[roi]
    # torchvision: y = roi_start_h + ph * bin_size_h + (iy + .5f) * bin_size_h / roi_bin_grid_h
    y = (geo.start_y[roi] + p_h.to(dtype) * bh) + (iy.to(dtype) + 0.5) * bh / gh.to(dtype)
    x = (geo.start_x[roi] + p_w.to(dtype) * bw) + (ix.to(dtype) + 0.5) * bw / gw.to(dtype)
    return _Samples(bin_index, roi, iy, ix, x, y, bin_first, bin_count)


@dataclass(frozen=True)
class RoIAlignSampling:
    """Where RoIAlign samples, in feature-map coordinates (after ``spatial_scale`` and ``aligned``).

    ``K`` RoIs, ``PH x PW`` bins each, a ``grid_h[k] x grid_w[k]`` grid of sample points per bin.
    ``GH = max(grid_h)``, ``GW = max(grid_w)`` (they differ between RoIs only with adaptive sampling).

    Attributes:
        batch_index (LongTensor[K]): image of each RoI (0 for boxes given without one).
        start_x, start_y (Tensor[K]): top-left corner of the RoI on the feature map.
        bin_w, bin_h (Tensor[K]): bin size (RoI size / output size; a legacy RoI is at least 1x1).
        grid_w, grid_h (LongTensor[K]): samples per bin side (``sampling_ratio`` or adaptive
            ``ceil(bin size)``; 0 is possible for an empty aligned RoI, whose bins are then 0).
        count (LongTensor[K]): ``max(grid_h * grid_w, 1)``, the divisor of the average.
        bin_edges_x (Tensor[K, PW + 1]): ``start_x + j * bin_w``; ``bin_edges_y`` (Tensor[K, PH + 1]) likewise.
        points (Tensor[K, PH, PW, GH, GW, 2]): sample ``(x, y)``:
            ``start + p * bin + (i + 0.5) * bin / grid``; NaN where ``i >= grid`` of that RoI.
    """

    batch_index: Tensor
    start_x: Tensor
    start_y: Tensor
    bin_w: Tensor
    bin_h: Tensor
    grid_w: Tensor
    grid_h: Tensor
    count: Tensor
    bin_edges_x: Tensor
    bin_edges_y: Tensor
    points: Tensor


def _boxes_for_drawing(boxes: object) -> Tensor:
    """Tensor[K, 5] from a single box, Tensor[K, 4], Tensor[K, 5] or a list of Tensor[L, 4]."""
    if isinstance(boxes, (list, tuple)) and len(boxes) == 4 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in boxes
    ):
        xyxy = _single_box("boxes", boxes)[None]
        return torch.cat([xyxy.new_zeros(1, 1), xyxy], dim=1)
    if isinstance(boxes, (list, tuple)):
        return convert_boxes_to_roi_format(list(boxes)).detach()
    if isinstance(boxes, Tensor):
        t = boxes.detach()
        if t.dim() == 1 and t.shape[0] == 4:
            t = t[None]
        if t.dim() != 2 or t.shape[1] not in (4, 5):
            raise ValueError(
                "boxes must be one box (4 numbers or Tensor[4]), Tensor[K, 4], Tensor[K, 5] or a list of "
                f"Tensor[L, 4], got shape {tuple(boxes.shape)}"
            )
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"boxes must hold real numbers, got dtype {t.dtype}")
        if not t.is_floating_point():
            t = t.to(torch.get_default_dtype())
        if t.shape[1] == 4:
            t = torch.cat([t.new_zeros(t.shape[0], 1), t], dim=1)
        return t
    raise TypeError(
        "boxes must be one box (4 numbers or Tensor[4]), Tensor[K, 4], Tensor[K, 5] or a list of "
        f"Tensor[L, 4], got {type(boxes).__name__}"
    )


def roi_sample_points(
    boxes: Union[BoxesType, Sequence[float]],
    output_size: OutputSizeType,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> RoIAlignSampling:
    """The bins and sample points RoIAlign uses for each box (for drawing and for teaching).

    These are exactly the coordinates :func:`roi_align` interpolates at (same code, same float
    operations as torchvision's kernel), before the edge rules of :func:`bilinear_weights`.

    Args:
        boxes: one box ``(x1, y1, x2, y2)`` (4 numbers or Tensor[4]), Tensor[K, 4], Tensor[K, 5]
            (batch index first) or a list of Tensor[L, 4]. Computed in the boxes' dtype
            (float64 for Python numbers).
        output_size (int or (int, int)): ``(PH, PW)`` bins.
        spatial_scale (float): image -> feature-map scale (``1 / stride``). Default 1.0.
        sampling_ratio (int): samples per bin side; ``<= 0`` means adaptive. Default -1.
        aligned (bool): shift by -0.5 pixel (see module docstring). Default False.

    Returns:
        RoIAlignSampling: bin edges and ``points`` Tensor[K, PH, PW, GH, GW, 2] of ``(x, y)``.

    Example (notebook 01's RoI, 2x2 bins of 0.8 x 0.7, one sample at each bin centre):
        >>> s = roi_sample_points((1.2, 0.8, 2.8, 2.2), 2, sampling_ratio=1)
        >>> [[round(v, 2) for v in p] for p in s.points[0, :, :, 0, 0].reshape(-1, 2).tolist()]
        [[1.6, 1.15], [2.4, 1.15], [1.6, 1.85], [2.4, 1.85]]
    """
    ph, pw = _check_output_size(output_size)
    scale = _check_spatial_scale(spatial_scale)
    sr = _check_sampling_ratio(sampling_ratio)
    al = _check_aligned(aligned)
    rois = _boxes_for_drawing(boxes)
    _check_coordinates("boxes", rois[:, 1:])
    geo = _roi_geometry(rois[:, 1:], ph, pw, scale, sr, al)
    k_count = rois.shape[0]
    gh_max = int(geo.grid_h.max()) if k_count else 0
    gw_max = int(geo.grid_w.max()) if k_count else 0
    smp = _sample_points(geo, ph, pw)
    points = torch.full((k_count * ph * pw, gh_max, gw_max, 2), float("nan"), dtype=rois.dtype)
    points[smp.bin_index, smp.iy, smp.ix, 0] = smp.x
    points[smp.bin_index, smp.iy, smp.ix, 1] = smp.y
    dtype = rois.dtype
    jx = torch.arange(pw + 1, dtype=dtype)
    jy = torch.arange(ph + 1, dtype=dtype)
    return RoIAlignSampling(
        batch_index=rois[:, 0].long(),
        start_x=geo.start_x,
        start_y=geo.start_y,
        bin_w=geo.bin_w,
        bin_h=geo.bin_h,
        grid_w=geo.grid_w,
        grid_h=geo.grid_h,
        count=geo.count,
        bin_edges_x=geo.start_x[:, None] + jx * geo.bin_w[:, None],
        bin_edges_y=geo.start_y[:, None] + jy * geo.bin_h[:, None],
        points=points.reshape(k_count, ph, pw, gh_max, gw_max, 2),
    )


# --------------------------------------------------------------------------------------------------
# RoIAlign: readable reference
# --------------------------------------------------------------------------------------------------


# @export notebooks/02_roi_align.ipynb: bilinear_tv (edit the notebook; tools/nb.py export writes this)
def bilinear_tv(fmap: torch.Tensor, x: float, y: float) -> torch.Tensor:
    '''fmap[C, H, W] at the real point (x, y) with torchvision's edge rules; returns Tensor[C].'''
    C, H, W = fmap.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:         # rule 1: too far outside, the sample is 0
        return fmap.new_zeros(C)
    y, x = max(y, 0.0), max(x, 0.0)                     # rule 2: clamp to the first row / column
    y0, x0 = int(y), int(x)
    if y0 >= H - 1:                                      # rule 3: pin to the last row
        y0 = y1 = H - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= W - 1:                                      # ... and column
        x0 = x1 = W - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    dx, dy = x - x0, y - y0
    return ((1 - dx) * (1 - dy) * fmap[:, y0, x0] + dx * (1 - dy) * fmap[:, y0, x1]
            + (1 - dx) * dy * fmap[:, y1, x0] + dx * dy * fmap[:, y1, x1])
# @end export bilinear_tv


# @export notebooks/02_roi_align.ipynb: roi_align_loop (edit the notebook; tools/nb.py export writes this)
def roi_align_loop(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    '''RoIAlign with plain loops. input[N, C, H, W], boxes[K, 5] = (n, x1, y1, x2, y2) -> [K, C, PH, PW].'''
    PH, PW = (output_size, output_size) if isinstance(output_size, int) else output_size
    K, C = boxes.shape[0], input.shape[1]
    out = input.new_zeros(K, C, PH, PW)
    offset = 0.5 if aligned else 0.0
    for k, (n, bx1, by1, bx2, by2) in enumerate(boxes.tolist()):
        x1, y1 = bx1 * spatial_scale - offset, by1 * spatial_scale - offset    # feature-map coordinates
        x2, y2 = bx2 * spatial_scale - offset, by2 * spatial_scale - offset
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned:                                      # legacy: at least 1 x 1
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_w, bin_h = roi_w / PW, roi_h / PH
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / PW)
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / PH)
        for i in range(PH):
            for j in range(PW):
                total = input.new_zeros(C)
                for iy in range(grid_h):
                    y = y1 + i * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + j * bin_w + (ix + 0.5) * bin_w / grid_w
                        total = total + bilinear_tv(input[int(n)], x, y)
                out[k, :, i, j] = total / max(grid_h * grid_w, 1)   # the average
    return out
# @end export roi_align_loop


# --------------------------------------------------------------------------------------------------
# RoIAlign: vectorised on a padded grid (notebook 02b), the teaching version
# --------------------------------------------------------------------------------------------------


# @export notebooks/02b_roi_align_fast.ipynb: axis_rule (edit the notebook; tools/nb.py export writes this)
def axis_rule(c: torch.Tensor, size: int):
    '''torchvision's edge rules along one axis for coordinates c: (low, high, frac, valid), each like c.'''
    valid = (c >= -1.0) & (c <= size)                         # rule 1
    c = c.clamp(min=0.0)                                      # rule 2
    low = c.long()                                            # int() = floor for c >= 0
    pinned = low >= size - 1                                  # rule 3
    low = torch.where(pinned, size - 1, low)
    high = torch.where(pinned, size - 1, low + 1)
    frac = torch.where(pinned, torch.zeros_like(c), c - low)
    return low, high, frac, valid


def roi_align_padded(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, reduce="avg"):
    '''Vectorised RoIAlign on grids padded to the largest one. input[N, C, H, W], boxes[K, 5] -> [K, C, PH, PW];
    reduce="max" for the max variant.'''
    PH, PW = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    K = boxes.shape[0]
    if K == 0:
        return input.new_zeros(0, C, PH, PW)
    n = boxes[:, 0].long()                                                   # [K]
    xyxy = boxes[:, 1:].to(input.dtype) * spatial_scale - (0.5 if aligned else 0.0)
    x1, y1 = xyxy[:, 0], xyxy[:, 1]                                          # [K]
    roi_w, roi_h = xyxy[:, 2] - x1, xyxy[:, 3] - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / PW, roi_h / PH                                    # [K]
    if sampling_ratio > 0:
        grid_w = grid_h = torch.full_like(n, sampling_ratio)
    else:
        grid_w, grid_h = torch.ceil(roi_w / PW).long(), torch.ceil(roi_h / PH).long()
    GH, GW = int(grid_h.max()), int(grid_w.max())                            # pad to the largest grid
    iy, ix = torch.arange(GH, device=input.device), torch.arange(GW, device=input.device)
    y = (y1[:, None, None] + torch.arange(PH, device=input.device)[None, :, None] * bin_h[:, None, None]
         + (iy + 0.5) * bin_h[:, None, None] / grid_h.clamp(min=1)[:, None, None])   # [K, PH, GH]
    x = (x1[:, None, None] + torch.arange(PW, device=input.device)[None, :, None] * bin_w[:, None, None]
         + (ix + 0.5) * bin_w[:, None, None] / grid_w.clamp(min=1)[:, None, None])   # [K, PW, GW]
    y_lo, y_hi, ly, y_ok = axis_rule(y, H)                                   # [K, PH, GH] each
    x_lo, x_hi, lx, x_ok = axis_rule(x, W)                                   # [K, PW, GW] each
    y_ok = y_ok & (iy < grid_h[:, None, None])                               # drop the padding samples
    x_ok = x_ok & (ix < grid_w[:, None, None])

    def pixels(rows, cols):                                                  # -> [K, PH, GH, PW, GW, C]
        return input[n[:, None, None, None, None], :, rows[:, :, :, None, None], cols[:, None, None, :, :]]

    wy = lambda t: t[:, :, :, None, None, None]                              # [K, PH, GH] -> broadcastable
    wx = lambda t: t[:, None, None, :, :, None]                              # [K, PW, GW] -> broadcastable
    values = (wy(1 - ly) * wx(1 - lx) * pixels(y_lo, x_lo) + wy(1 - ly) * wx(lx) * pixels(y_lo, x_hi)
              + wy(ly) * wx(1 - lx) * pixels(y_hi, x_lo) + wy(ly) * wx(lx) * pixels(y_hi, x_hi))
    inside = wy(y_ok) & wx(x_ok)                                             # [K, PH, GH, PW, GW, 1]
    values = values * inside                                                 # outside samples count as 0
    if reduce == "avg":
        count = (grid_h * grid_w).clamp(min=1).to(input.dtype)[:, None, None, None]
        pooled = values.sum(dim=(2, 4)) / count                              # [K, PH, PW, C]
    else:                                                                    # max: padding samples must not win
        padding = ~(wy(iy < grid_h[:, None, None]) & wx(ix < grid_w[:, None, None]))
        pooled = values.masked_fill(padding, -math.inf).amax(dim=(2, 4))
        pooled = torch.where(torch.isinf(pooled), torch.zeros_like(pooled), pooled)  # a bin without samples: 0
    return pooled.permute(0, 3, 1, 2)                                        # [K, C, PH, PW]
# @end export axis_rule


# --------------------------------------------------------------------------------------------------
# RoIAlign: vectorised
# --------------------------------------------------------------------------------------------------


def _compute_dtype(input: Tensor) -> torch.dtype:
    # half types are computed in float32 and cast back
    return input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32


def _channels_last_table(input: Tensor) -> Tensor:
    """Tensor[N, C, H, W] -> Tensor[N*H*W, C]: one row of channels per feature pixel."""
    n, c, h, w = input.shape
    return input.permute(0, 2, 3, 1).reshape(n * h * w, c)


def _neighbour_table(smp: _Samples, batch_index: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Flat pixel indices (into Tensor[N*H*W, C]) and bilinear weights, both Tensor[S, 4]."""
    bw = bilinear_weights(height, width, smp.x, smp.y, dtype=smp.x.dtype)
    base = batch_index[smp.roi_index] * (height * width)  # [S]
    row_low = base + bw.y_low * width
    row_high = base + bw.y_high * width
    idx = torch.stack([row_low + bw.x_low, row_low + bw.x_high, row_high + bw.x_low, row_high + bw.x_high], 1)
    return idx, bw.weights


def _roi_chunks(cost: Tensor) -> list[tuple[int, int]]:
    """Split RoIs [0, K) into consecutive chunks whose summed ``cost`` stays below the budget."""
    k_count = cost.shape[0]
    if k_count == 0:
        return []
    total = int(cost.sum())
    if total <= CHUNK_ELEMENTS:
        return [(0, k_count)]
    chunks, start, acc = [], 0, 0
    for k, v in enumerate(cost.tolist()):
        if acc + v > CHUNK_ELEMENTS and k > start:
            chunks.append((start, k))
            start, acc = k, 0
        acc += v
    chunks.append((start, k_count))
    return chunks


def _csr(crow: Tensor, col: Tensor, val: Tensor, size: tuple[int, int]) -> Tensor:
    """A torch CSR matrix, without torch's one-time "beta" warning (which notebooks would print)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, col, val, size=size, check_invariants=False)


class _SparseWeightedGather(torch.autograd.Function):
    """``out[B, C] = W @ table`` for a sparse weight matrix ``W[B, P]`` given as coalesced COO triplets.

    ``row``, ``col`` (LongTensor[E]) are sorted by ``(row, col)`` with no duplicate pair (what CSR
    requires); ``val`` (Tensor[E]) are the weights. Forward: one CSR x dense matmul (MKL, threaded).
    Backward (w.r.t. ``table`` only): ``W^T @ grad`` with the transposed CSR built by a stable sort.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, table: Tensor, row: Tensor, col: Tensor, val: Tensor, n_rows: int
    ) -> Tensor:
        n_pix = table.shape[0]
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=row.device)
        crow[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
        ctx.save_for_backward(row, col, val)
        ctx.n_rows = n_rows
        ctx.n_pix = n_pix
        return _csr(crow, col, val, (n_rows, n_pix)) @ table

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        row, col, val = ctx.saved_tensors
        order = torch.argsort(col, stable=True)  # by column, rows ascending inside a column
        crow_t = torch.zeros(ctx.n_pix + 1, dtype=torch.long, device=col.device)
        crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=ctx.n_pix), 0)
        w_t = _csr(crow_t, row[order], val[order], (ctx.n_pix, ctx.n_rows))
        with torch.autocast(grad.device.type, enabled=False):  # a backward() called under autocast: no bfloat16 CSR
            return w_t @ grad.contiguous(), None, None, None, None


class _FixedBagGather(torch.autograd.Function):
    """``out[b] = sum_e w[b, e] * table[idx[b, e]]``: every bin a bag of the same number of entries.

    Forward: one ``F.embedding_bag`` (no sort, no sparse matrix). Backward (w.r.t. ``table`` only):
    ``W^T @ grad`` with the transposed weight matrix built by one stable sort of the entries by pixel;
    repeated (pixel, bin) pairs are left as they are (the CSR product adds them up, as a sum should).
    """

    @staticmethod
    def forward(ctx, table: Tensor, idx: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(idx, w)
        ctx.n_pix = table.shape[0]
        return F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[0]:
            return None, None, None
        idx, w = ctx.saved_tensors
        n_bins, entries = idx.shape
        col = idx.reshape(-1)
        order = torch.argsort(col, stable=True)  # entries by pixel, bins ascending inside a pixel
        crow_t = torch.zeros(ctx.n_pix + 1, dtype=torch.long, device=col.device)
        crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=ctx.n_pix), 0)
        w_t = _csr(crow_t, order // entries, w.reshape(-1)[order], (ctx.n_pix, n_bins))  # entry e is in bin e // entries
        with torch.autocast(grad.device.type, enabled=False):  # a backward() called under autocast: no bfloat16 CSR
            return w_t @ grad.contiguous(), None, None


def _coalesce(row: Tensor, col: Tensor, val: Tensor, n_cols: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort COO triplets by (row, col) and sum the weights of repeated pairs (CSR needs distinct pairs)."""
    key = row * n_cols + col
    key, order = torch.sort(key)
    val = val[order]
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    run = torch.cumsum(first, 0) - 1
    key = key[first]
    summed = val.new_zeros(key.shape[0]).index_add_(0, run, val)
    return key // n_cols, key % n_cols, summed


def _weighted_gather(table: Tensor, row: Tensor, col: Tensor, val: Tensor, n_rows: int, backend: str) -> Tensor:
    """``out[r] = sum over entries e with row[e] == r of val[e] * table[col[e]]``: Tensor[n_rows, C].

    Entries must be grouped by row, rows in increasing order (each row a contiguous block).
    ``backend``: ``"csr"`` (sparse CSR matmul: fastest on big problems), ``"embedding_bag"``
    (``F.embedding_bag(mode="sum", per_sample_weights=...)``: no thread start-up, fastest on small
    ones) or ``"auto"`` (the default: picks by the amount of work, ``entries x channels``).
    """
    if backend == "auto":
        # MKL's sparse matmul always starts its threads: worth it for big problems only
        backend = "csr" if val.shape[0] * table.shape[1] >= CSR_MIN_WORK else "embedding_bag"
    if backend == "csr":
        r, c, v = _coalesce(row, col, val, table.shape[0])
        return _SparseWeightedGather.apply(table, r, c, v, n_rows)
    if backend == "embedding_bag":
        counts = torch.bincount(row, minlength=n_rows)
        offsets = torch.cumsum(counts, 0) - counts
        return F.embedding_bag(col, table, offsets, mode="sum", per_sample_weights=val)
    raise ValueError(f"backend must be 'csr' or 'embedding_bag', got {backend!r}")


def _grid_taps(
    start: Tensor, bin_size: Tensor, n_bins: int, grid: Tensor, g_max: int, size: int
) -> tuple[Tensor, Tensor]:
    """One axis of the bilinear taps of RoIs, on their sampling grids padded to ``g_max`` samples.

    Bilinear interpolation is separable: a sample's four weights are ``(hy, ly) x (hx, lx)`` and it is
    outside when its ``y`` or its ``x`` is, so each axis can be handled on its own ``[K, bins, g_max]``
    coordinates (``g_max`` times fewer than the samples), with the float operations of
    :func:`_sample_points` and :func:`bilinear_weights` in their order (the same bits).

    Args:
        start, bin_size (Tensor[K]): ``start_x`` / ``bin_w`` (or ``start_y`` / ``bin_h``) of the RoIs.
        n_bins (int): ``PW`` (or ``PH``). grid (LongTensor[K]): samples per bin side of each RoI.
        g_max (int): ``max(grid)``. size (int): ``W`` (or ``H``).

    Returns:
        ``(index, weight)``, both ``[K, n_bins, g_max, 2]``: the low and high neighbour (pixel column or
        row) of every sample and their weights ``(1 - frac, frac)``; 0 for a sample outside
        ``[-1, size]`` and for the padding samples ``i >= grid[k]``.
    """
    dtype = start.dtype
    p = torch.arange(n_bins, dtype=dtype, device=start.device)[None, :, None]
    i = torch.arange(g_max, dtype=dtype, device=start.device)
    b = bin_size[:, None, None]
    g = grid.clamp(min=1).to(dtype)[:, None, None]
    c = (start[:, None, None] + p * b) + (i + 0.5) * b / g  # [K, n_bins, g_max], as in _sample_points
    inside = (c >= -1.0) & (c <= size) & (i < g)
    c = torch.where(inside & (c > 0), c, torch.zeros_like(c))
    low = c.long()
    pin = low >= size - 1
    low = torch.where(pin, torch.full_like(low, size - 1), low)
    high = torch.where(pin, low, low + 1)
    frac = torch.where(pin, low.to(dtype), c) - low.to(dtype)
    weight = torch.stack([1.0 - frac, frac], -1) * inside[..., None]  # 0 outside (weights are finite)
    return torch.stack([low, high], -1), weight


def _dense_axis_weights(index: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """One axis's taps ``[K, P, G, 2]`` (from :func:`_grid_taps`) as dense rows over a window of the map.

    Returns ``(first, dense)``: ``first`` (LongTensor[K]) is the first pixel of each RoI's window and
    ``dense[k, p, e]`` (Tensor[K, P, E]) the summed weight of pixel ``first[k] + e`` in bin ``p`` (over
    the bin's samples and their two neighbours); ``E`` is the widest window. Taps of weight 0 (samples
    outside the map, grid padding) do not widen the window.
    """
    k, p = index.shape[:2]
    used = weight != 0
    first = torch.where(used, index, torch.full_like(index, torch.iinfo(torch.long).max)).flatten(1).amin(1)
    last = torch.where(used, index, torch.full_like(index, -1)).flatten(1).amax(1)
    first = torch.where(last >= 0, first, torch.zeros_like(first))  # a RoI with no weight at all: any window
    extent = max(int((last - first).max()) + 1, 1)
    local = (index - first[:, None, None, None]).clamp(0, extent - 1)  # only weight-0 taps get clamped
    dense = weight.new_zeros(k, p, extent).scatter_add_(2, local.reshape(k, p, -1), weight.reshape(k, p, -1))
    return first, dense


def _separable_pool(
    maps: Tensor, batch: Tensor, rows: Tensor, wy: Tensor, cols: Tensor, wx: Tensor, count: Tensor
) -> Tensor:
    """RoIAlign (avg) of single-channel ``maps`` [N, H, W] as ``Ay @ window @ Ax^T / count`` per RoI.

    Bilinear sampling and the bin average are separable: bin ``(p, q)`` of RoI ``k`` is
    ``sum_y sum_x Ay[p, y] * map[y, x] * Ax[q, x] / count``, where ``Ay[p, y]`` sums the row weights
    of the bin's sample rows that touch pixel row ``y`` (:func:`_dense_axis_weights`, over the rows the
    RoI reaches) and ``Ax`` likewise for columns. Two batched matrix products over each RoI's window
    replace ``PH * PW * GH * GW * 4`` gathered pixels per RoI (mask targets: 14-28x less work than the
    gather, and no index tensors of that size). The same sum as the gather, added in another order:
    equal to it (and to torchvision) up to float rounding.

    Args:
        maps (Tensor[N, H, W]), batch (LongTensor[K]): the map of each RoI.
        rows, wy (``[K, PH, GH, 2]``), cols, wx (``[K, PW, GW, 2]``): :func:`_grid_taps` of each axis.
        count (LongTensor[K]): samples per bin.

    Returns:
        Tensor[K * PH * PW, 1]
    """
    height, width = maps.shape[1:]
    y0, ay = _dense_axis_weights(rows, wy)  # [K], [K, PH, EY]
    x0, ax = _dense_axis_weights(cols, wx)  # [K], [K, PW, EX]
    ys = (y0[:, None] + torch.arange(ay.shape[2], device=maps.device)).clamp(max=height - 1)  # [K, EY]
    xs = (x0[:, None] + torch.arange(ax.shape[2], device=maps.device)).clamp(max=width - 1)  # [K, EX]
    window = maps[batch[:, None, None], ys[:, :, None], xs[:, None, :]]  # [K, EY, EX]
    out = torch.bmm(torch.bmm(ay, window), ax.transpose(1, 2))  # [K, PH, PW]
    return (out / count.to(out.dtype)[:, None, None]).reshape(-1, 1)


def _avg_pool_by_grid(
    table: Tensor, geo: _RoIGeometry, batch: Tensor, ph: int, pw: int, height: int, width: int, backend: str
) -> Tensor:
    """RoIAlign (avg) of RoIs ``geo`` on the channels-last ``table`` [N*H*W, C] -> Tensor[K*PH*PW, C].

    The fast path of :func:`roi_align_kernel` for ``mode="avg"``. Every bin gets the same number of
    (pixel, weight) entries, ``GH * GW * 4`` for the largest grid ``GH x GW`` (samples past a RoI's
    own grid weigh 0), built by broadcasting the two axes of :func:`_grid_taps` (no per-sample ids,
    no :func:`_segment_ids`, no bincount), in the order of :func:`_neighbour_table` and with its
    weights ``(wy * wx) / count``. Single-channel maps (the mask targets: ground-truth masks as a
    ``[G, 1, H, W]`` batch) skip the entries: two matrix products per RoI (:func:`_separable_pool`).
    Without autograd (inference), the gather is one ``F.embedding_bag`` over fixed-size bags. With
    more channels and adaptive grids that differ, RoIs are grouped by grid first (padding would put
    zero entries into the sparse gather). Measured against the general path (``_sample_points`` + sparse
    gather), single-threaded: mask targets (16 RoIs, 28x28, adaptive) ~3x faster, box pooling (512 RoIs,
    64 channels, ``sampling_ratio=2``) forward ~1.5x; far more on busy cores (fewer multithreaded ops).
    """
    k_count = geo.start_x.shape[0]
    c = table.shape[1]
    same_grid = bool((geo.grid_h == geo.grid_h[0]).all()) and bool((geo.grid_w == geo.grid_w[0]).all())
    if c == 1 or same_grid:
        groups: list[Tensor | None] = [None]
    else:
        key = geo.grid_h * (int(geo.grid_w.max()) + 1) + geo.grid_w
        groups = [(key == v).nonzero().squeeze(1) for v in torch.unique(key).tolist()]
    out = None if len(groups) == 1 else table.new_zeros(k_count, ph * pw, c)
    for sel in groups:
        start_x, start_y, bin_w, bin_h, grid_w, grid_h, count, b = (
            t if sel is None else t[sel]
            for t in (geo.start_x, geo.start_y, geo.bin_w, geo.bin_h, geo.grid_w, geo.grid_h, geo.count, batch)
        )
        kg, n_bins = start_x.shape[0], start_x.shape[0] * ph * pw
        gh, gw = int(grid_h.max()), int(grid_w.max())
        if gh * gw == 0:  # empty aligned RoIs: no samples, their bins are 0 (a zero gradient, as torchvision's)
            pooled = table.new_zeros(n_bins, c) + table[:0].sum()  # the empty sum keeps the autograd graph
        elif c == 1:  # one channel (the mask targets): two small matrix products per RoI
            rows, wy = _grid_taps(start_y, bin_h, ph, grid_h, gh, height)  # [Kg, PH, GH, 2]
            cols, wx = _grid_taps(start_x, bin_w, pw, grid_w, gw, width)  # [Kg, PW, GW, 2]
            pooled = _separable_pool(table[:, 0].reshape(-1, height, width), b, rows, wy, cols, wx, count)
        else:
            rows, wy = _grid_taps(start_y, bin_h, ph, grid_h, gh, height)  # [Kg, PH, GH, 2]
            cols, wx = _grid_taps(start_x, bin_w, pw, grid_w, gw, width)  # [Kg, PW, GW, 2]
            # entries of bin (k, p, q), in the order (sample row i, sample column j, neighbour a, b)
            base = (b * (height * width))[:, None, None, None, None, None, None]
            idx = base + rows[:, :, None, :, None, :, None] * width + cols[:, None, :, None, :, None, :]
            w = wy[:, :, None, :, None, :, None] * wx[:, None, :, None, :, None, :]
            w = w / count.to(w.dtype)[:, None, None, None, None, None, None]
            entries = gh * gw * 4
            idx, w = idx.reshape(n_bins, entries), w.reshape(n_bins, entries)
            if backend == "auto":  # every bin has ``entries`` entries: fixed-size bags, no offsets, no sort
                if torch.is_grad_enabled() and table.requires_grad:
                    pooled = _FixedBagGather.apply(table, idx, w)  # backward: one CSR matmul
                else:
                    pooled = F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)
            elif backend == "embedding_bag":
                pooled = F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)
            else:
                row = torch.arange(n_bins, device=idx.device)[:, None].expand(-1, entries)
                pooled = _weighted_gather(table, row.reshape(-1), idx.reshape(-1), w.reshape(-1), n_bins, backend)
        if out is None:
            return pooled
        out = out.index_put((sel,), pooled.reshape(kg, ph * pw, c))
    assert out is not None
    return out.reshape(k_count * ph * pw, c)


def roi_align_kernel(
    input: Tensor,
    rois: Tensor,
    ph: int,
    pw: int,
    scale: float,
    sr: int,
    aligned: bool,
    mode: str,
    backend: str = "auto",
) -> Tensor:
    """The vectorised RoIAlign of :func:`roi_align` on arguments already checked by :func:`check_roi_args`.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        rois (Tensor[K, 5]): ``(batch index, x1, y1, x2, y2)``, checked.
        ph, pw, scale, sr, aligned: output size, ``spatial_scale``, ``sampling_ratio``, ``aligned``.
        mode (str): ``"avg"`` (torchvision's RoIAlign) or ``"max"`` (the paper's max variant).
        backend (str): how each bin's weighted sum of pixels is gathered: ``"csr"`` (a sparse CSR
            matmul, fastest on big problems), ``"embedding_bag"`` (fastest on small ones) or ``"auto"``
            (picks by the amount of work). The benchmark and the tests compare the two.

    Returns:
        Tensor[K, C, PH, PW]
    """
    n, c, height, width = input.shape
    k_count = rois.shape[0]
    out_dtype = input.dtype
    dtype = _compute_dtype(input)
    x = input.to(dtype)
    rois = rois.to(dtype)
    if k_count == 0 or c == 0:
        return x.new_zeros(k_count, c, ph, pw).to(out_dtype) + x.sum() * 0  # keeps the graph
    table = _channels_last_table(x)  # [N*H*W, C]
    geo = _roi_geometry(rois[:, 1:], ph, pw, scale, sr, aligned)
    batch = rois[:, 0].long()
    outs = []
    for lo, hi in _roi_chunks(geo.grid_h * geo.grid_w * (ph * pw * 4)):
        sub = _RoIGeometry(*(getattr(geo, f)[lo:hi] for f in _RoIGeometry.__dataclass_fields__))
        n_bins = (hi - lo) * ph * pw
        if mode == "avg":
            # a bin = sum over its samples' 4 neighbours of (weight / count) * pixel: one sparse row per bin
            pooled = _avg_pool_by_grid(table, sub, batch[lo:hi], ph, pw, height, width, backend)
        else:
            smp = _sample_points(sub, ph, pw)  # S samples, grouped by bin
            idx, w = _neighbour_table(smp, batch[lo:hi], height, width)  # [S, 4] pixel indices, weights
            # one sparse row per sample (its bilinear value), then the max over each bin's samples
            n_samples = smp.x.shape[0]
            row = torch.arange(n_samples, device=idx.device)[:, None].expand(-1, 4)
            values = _weighted_gather(table, row.reshape(-1), idx.reshape(-1), w.reshape(-1), n_samples, backend)
            pooled = values.new_zeros(n_bins, c).scatter_reduce(
                0, smp.bin_index[:, None].expand(-1, c), values, reduce="amax", include_self=False
            )  # [B, C]; a bin without samples stays 0
        outs.append(pooled.reshape(hi - lo, ph, pw, c))  # [k, PH, PW, C]
    out = torch.cat(outs) if len(outs) > 1 else outs[0]  # [K, PH, PW, C]
    return out.permute(0, 3, 1, 2).contiguous().to(out_dtype)  # [K, C, PH, PW]


def roi_align(
    input: Tensor,
    boxes: BoxesType,
    output_size: OutputSizeType,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoIAlign with average pooling (Mask R-CNN), equal to ``torchvision.ops.roi_align``.

    Each box is cut into ``PH x PW`` bins; each bin's value is the average of bilinear samples on a
    ``grid_h x grid_w`` grid inside it (see :func:`roi_sample_points` and :func:`bilinear_weights`).
    Vectorised: every bin becomes a weighted sum of (at most ``4 * grid_h * grid_w``) feature
    pixels, all computed by one sparse gather (see the module docstring). Differentiable with
    respect to ``input``; not with respect to ``boxes`` (torchvision gives no box gradient either).

    Args:
        input (Tensor[N, C, H, W]): feature maps, float32, float64 or float16 (computed in float32 and
            cast back); bfloat16 only under ``torch.autocast`` (computed in float32, cast back), as in
            torchvision, which refuses bfloat16 otherwise.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): ``(x1, y1, x2, y2)`` boxes in image coordinates,
            with the batch index as first column, or one tensor per image (the list must have N
            entries). Need ``x2 >= x1``, ``y2 >= y1``, finite values. They are cast to ``input``'s
            dtype (torchvision instead raises an error when the dtypes differ).
        output_size (int or (int, int)): ``(PH, PW)``.
        spatial_scale (float): image -> feature-map scale, ``1 / stride``. Default 1.0.
        sampling_ratio (int): samples per bin side if > 0; if <= 0, adaptive: ``ceil(roi height / PH)``
            by ``ceil(roi width / PW)``. Default -1.
        aligned (bool): if True, shift the scaled box by -0.5 pixel (Detectron2's "aligned"); if False
            (default, legacy), force the box to be at least 1x1 on the feature map.

    Returns:
        Tensor[K, C, PH, PW]: the pooled features, K = number of boxes (may be 0).
    """
    x = _float32_entry(input, "roi_align", ("cpu", "cuda"))
    if x is not None:                                    # float16 / bfloat16, or autocast on: float32, autocast off
        with torch.autocast(input.device.type, enabled=False):
            return roi_align(x, boxes, output_size, spatial_scale, sampling_ratio, aligned).to(input.dtype)
    rois, ph, pw, scale, sr, al = check_roi_args(
        input, boxes, output_size, spatial_scale, sampling_ratio, aligned
    )
    return roi_align_kernel(input, rois, ph, pw, scale, sr, al, mode="avg")


def roi_align_max(
    input: Tensor,
    boxes: BoxesType,
    output_size: OutputSizeType,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """"RoIAlign (max)" of the Mask R-CNN paper (Table 2c): the **maximum** of each bin's samples.

    Not torchvision's behaviour: ``torchvision.ops.roi_align`` (and Detectron2) *average* the
    samples. Same sample points and edge rules as :func:`roi_align`; a sample outside the map
    (value 0 in RoIAlign) takes part in the maximum as 0, and a bin without samples (an empty
    aligned box with adaptive sampling) is 0. The gradient of a bin goes to the sample(s) that hold
    its maximum (shared evenly between ties).

    Args and Returns: as :func:`roi_align`.
    """
    x = _float32_entry(input, "roi_align", ("cpu", "cuda"))
    if x is not None:                                    # float16 / bfloat16, or autocast on: float32, autocast off
        with torch.autocast(input.device.type, enabled=False):
            return roi_align_max(x, boxes, output_size, spatial_scale, sampling_ratio, aligned).to(input.dtype)
    rois, ph, pw, scale, sr, al = check_roi_args(
        input, boxes, output_size, spatial_scale, sampling_ratio, aligned
    )
    return roi_align_kernel(input, rois, ph, pw, scale, sr, al, mode="max")


# --------------------------------------------------------------------------------------------------
# RoIPool (notebook 03)
# --------------------------------------------------------------------------------------------------


# @export notebooks/03_roipool_vs_roialign.ipynb: c_round (edit the notebook; tools/nb.py export writes this)
def c_round(v: torch.Tensor) -> torch.Tensor:
    '''C's round(): to the nearest integer, halves away from zero (torch.round and Python's round go to even).'''
    t = torch.trunc(v)                                       # drop the fraction: toward zero
    return torch.where((v - t).abs() >= 0.5, t + torch.sign(v), t)
# @end export c_round


# @export notebooks/03_roipool_vs_roialign.ipynb: roi_pool_loop (edit the notebook; tools/nb.py export writes this)
def roi_pool_loop(input, boxes, output_size, spatial_scale=1.0):
    '''RoIPool with plain loops. input[N, C, H, W], boxes[K, 5] = (n, x1, y1, x2, y2) -> [K, C, PH, PW].'''
    PH, PW = (output_size, output_size) if isinstance(output_size, int) else output_size
    N, C, H, W = input.shape
    out = input.new_zeros(boxes.shape[0], C, PH, PW)
    for k in range(boxes.shape[0]):
        n = int(boxes[k, 0])
        x1, y1, x2, y2 = c_round(boxes[k, 1:].to(input.dtype) * spatial_scale).long().tolist()   # 1. rounded corners
        roi_w, roi_h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)              # 2. inclusive ends
        bin_w, bin_h = roi_w / PW, roi_h / PH
        for i in range(PH):
            h0 = min(max(y1 + math.floor(i * bin_h), 0), H)                  # 3. whole-pixel bins, clipped
            h1 = min(max(y1 + math.ceil((i + 1) * bin_h), 0), H)
            for j in range(PW):
                w0 = min(max(x1 + math.floor(j * bin_w), 0), W)
                w1 = min(max(x1 + math.ceil((j + 1) * bin_w), 0), W)
                if h1 > h0 and w1 > w0:                                      # 4. max; an empty bin stays 0
                    out[k, :, i, j] = input[n, :, h0:h1, w0:w1].amax(dim=(1, 2))
    return out
# @end export roi_pool_loop


@dataclass
class _PoolBins:
    start_x: Tensor  # LongTensor[K], rounded corners
    start_y: Tensor
    end_x: Tensor
    end_y: Tensor
    roi_w: Tensor  # LongTensor[K], inclusive: end - start + 1, at least 1
    roi_h: Tensor
    bin_w: Tensor  # Tensor[K]
    bin_h: Tensor
    hstart: Tensor  # LongTensor[K, PH]
    hend: Tensor
    wstart: Tensor  # LongTensor[K, PW]
    wend: Tensor


def _pool_bins(xyxy: Tensor, ph: int, pw: int, scale: float, height: int | None, width: int | None) -> _PoolBins:
    """torchvision's RoIPool bin arithmetic for Tensor[K, 4] boxes (in the boxes' dtype)."""
    dtype = xyxy.dtype
    corners = c_round(xyxy * scale).long()  # [K, 4]
    sx, sy, ex, ey = corners.unbind(1)
    roi_w = (ex - sx + 1).clamp(min=1)  # inclusive ends; malformed boxes become 1 wide
    roi_h = (ey - sy + 1).clamp(min=1)
    bin_w = roi_w.to(dtype) / pw
    bin_h = roi_h.to(dtype) / ph
    ih = torch.arange(ph, dtype=dtype, device=xyxy.device)
    iw = torch.arange(pw, dtype=dtype, device=xyxy.device)
    hstart = torch.floor(ih * bin_h[:, None]).long() + sy[:, None]  # [K, PH]
    hend = torch.ceil((ih + 1) * bin_h[:, None]).long() + sy[:, None]
    wstart = torch.floor(iw * bin_w[:, None]).long() + sx[:, None]  # [K, PW]
    wend = torch.ceil((iw + 1) * bin_w[:, None]).long() + sx[:, None]
    if height is not None:
        hstart, hend = hstart.clamp(0, height), hend.clamp(0, height)
    if width is not None:
        wstart, wend = wstart.clamp(0, width), wend.clamp(0, width)
    return _PoolBins(sx, sy, ex, ey, roi_w, roi_h, bin_w, bin_h, hstart, hend, wstart, wend)


@dataclass(frozen=True)
class RoIPoolBins:
    """RoIPool's integer bins for one box (what torchvision's ``roi_pool`` max-pools over).

    Attributes:
        x1, y1, x2, y2 (int): box corners times ``spatial_scale``, rounded half away from zero.
        roi_width, roi_height (int): ``x2 - x1 + 1`` and ``y2 - y1 + 1`` (inclusive ends), at least 1.
        bin_w, bin_h (float): ``roi_width / PW``, ``roi_height / PH`` (in the box dtype's precision).
        hstart, hend (LongTensor[PH]): bin rows ``[hstart, hend)``: ``y1 + floor(i * bin_h)`` to
            ``y1 + ceil((i + 1) * bin_h)``, clipped to ``[0, H]`` when ``height`` is given.
        wstart, wend (LongTensor[PW]): bin columns likewise.
    """

    x1: int
    y1: int
    x2: int
    y2: int
    roi_width: int
    roi_height: int
    bin_w: float
    bin_h: float
    hstart: Tensor
    hend: Tensor
    wstart: Tensor
    wend: Tensor

    @property
    def bins(self) -> Tensor:
        """LongTensor[PH, PW, 4]: ``(hstart, hend, wstart, wend)`` of every bin."""
        ph, pw = self.hstart.shape[0], self.wstart.shape[0]
        return torch.stack(
            [
                self.hstart[:, None].expand(ph, pw),
                self.hend[:, None].expand(ph, pw),
                self.wstart[None, :].expand(ph, pw),
                self.wend[None, :].expand(ph, pw),
            ],
            dim=-1,
        )

    @property
    def empty(self) -> Tensor:
        """BoolTensor[PH, PW]: bins with no pixel (``hend <= hstart`` or ``wend <= wstart``); output 0."""
        return (self.hend <= self.hstart)[:, None] | (self.wend <= self.wstart)[None, :]


def roi_pool_bins(
    box: Union[Tensor, Sequence[float]],
    output_size: OutputSizeType,
    spatial_scale: float = 1.0,
    height: int | None = None,
    width: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> RoIPoolBins:
    """RoIPool's quantised bins for one box, as in torchvision's ``roi_pool_kernel.cpp``.

    Args:
        box (Tensor[4] or 4 numbers): ``(x1, y1, x2, y2)`` in image coordinates.
        output_size (int or (int, int)): ``(PH, PW)``.
        spatial_scale (float): image -> feature-map scale. Default 1.0.
        height, width (int, optional): feature-map size ``H``, ``W``; when given, bins are clipped to
            ``[0, H]`` / ``[0, W]`` as RoIPool does (without them, bins are not clipped).
        dtype (torch.dtype): precision of the arithmetic (RoIPool uses the input's dtype). Default float32.

    Returns:
        RoIPoolBins: rounded corners and per-bin ``[hstart, hend) x [wstart, wend)``; ``.bins`` gives
        LongTensor[PH, PW, 4].

    Example (notebook 03): box (1.2, 0.8, 2.8, 2.2) -> corners (1, 1, 3, 2), 3 x 2 pixels; 2x2 bins
        of 1.5 x 1 overlap in column 2.
        >>> b = roi_pool_bins((1.2, 0.8, 2.8, 2.2), 2, 1.0, 4, 4)
        >>> b.bins.tolist()
        [[[1, 2, 1, 3], [1, 2, 2, 4]], [[2, 3, 1, 3], [2, 3, 2, 4]]]
    """
    xyxy = _single_box("box", box).to(dtype)
    ph, pw = _check_output_size(output_size)
    scale = _check_spatial_scale(spatial_scale)
    for name, v in (("height", height), ("width", width)):
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}")
    _check_coordinates("box", xyxy[None])
    pb = _pool_bins(xyxy[None], ph, pw, scale, height, width)
    return RoIPoolBins(
        x1=int(pb.start_x[0]),
        y1=int(pb.start_y[0]),
        x2=int(pb.end_x[0]),
        y2=int(pb.end_y[0]),
        roi_width=int(pb.roi_w[0]),
        roi_height=int(pb.roi_h[0]),
        bin_w=float(pb.bin_w[0]),
        bin_h=float(pb.bin_h[0]),
        hstart=pb.hstart[0],
        hend=pb.hend[0],
        wstart=pb.wstart[0],
        wend=pb.wend[0],
    )


def roi_pool(
    input: Tensor,
    boxes: BoxesType,
    output_size: OutputSizeType,
    spatial_scale: float = 1.0,
) -> Tensor:
    """RoIPool (Fast R-CNN), equal to ``torchvision.ops.roi_pool``, gradients included.

    Rules (torchvision's CPU kernel): box corners times ``spatial_scale`` are rounded half away from
    zero (C ``round``); ends are inclusive (width ``x2 - x1 + 1``, at least 1); bin ``i`` covers rows
    ``[y1 + floor(i * bin_h), y1 + ceil((i + 1) * bin_h))`` clipped to ``[0, H]`` (columns likewise),
    so neighbouring bins may overlap; each bin takes the maximum; an empty bin gives 0. The gradient
    goes to the first maximal pixel in row-major order (torchvision's argmax); NaN never wins, and
    a value must exceed ``-FLT_MAX`` to win (a bin of values ``<= -FLT_MAX`` outputs ``-FLT_MAX``).
    See :func:`roi_pool_bins` for one box's bins.

    Args:
        input (Tensor[N, C, H, W]): feature maps, float32, float64 or float16 (computed in float32 and
            cast back: a maximum is exact in any dtype); bfloat16 is refused on the CPU, even under
            ``torch.autocast``, as torchvision refuses it (its autocast wrapper is CUDA-only).
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): as in :func:`roi_align`.
        output_size (int or (int, int)): ``(PH, PW)``.
        spatial_scale (float): image -> feature-map scale. Default 1.0.

    Returns:
        Tensor[K, C, PH, PW]
    """
    x = _float32_entry(input, "roi_pool", ("cuda",))
    if x is not None:                                    # float16 (bfloat16 under CUDA autocast): float32
        with torch.autocast(input.device.type, enabled=False):
            return roi_pool(x, boxes, output_size, spatial_scale).to(input.dtype)
    rois, ph, pw, scale, _, _ = check_roi_args(input, boxes, output_size, spatial_scale)
    n, c, height, width = input.shape
    k_count = rois.shape[0]
    if k_count == 0 or c == 0:
        return input.new_zeros(k_count, c, ph, pw) + input.sum() * 0  # keeps the graph
    pb = _pool_bins(rois[:, 1:], ph, pw, scale, height, width)
    # every bin (k, ph, pw) as flat arrays over the M non-empty bins
    hs, he = pb.hstart[:, :, None].expand(-1, -1, pw), pb.hend[:, :, None].expand(-1, -1, pw)  # [K, PH, PW]
    ws, we = pb.wstart[:, None, :].expand(-1, ph, -1), pb.wend[:, None, :].expand(-1, ph, -1)
    nonempty = ((he > hs) & (we > ws)).reshape(-1)
    sel = nonempty.nonzero().squeeze(1)  # [M]
    hs, he, ws, we = (t.reshape(-1)[sel] for t in (hs, he, ws, we))
    batch = rois[:, 0].long()[sel // (ph * pw)]  # [M]
    winner = _bin_argmax(input, batch, hs, he, ws, we)  # [M, C] flat pixel (h * W + w) or -1
    # differentiable gather of the winners (the gradient goes to them, as in torchvision)
    table = _channels_last_table(input).reshape(-1)  # [N*H*W*C]
    chan = torch.arange(c, device=input.device)
    pix = batch[:, None] * (height * width) + winner.clamp(min=0)  # [M, C]
    picked = table[pix * c + chan]  # [M, C]
    picked = torch.where(winner >= 0, picked, torch.full_like(picked, -_FLT_MAX))  # no winner: -FLT_MAX
    out = input.new_zeros(k_count * ph * pw, c).index_put((sel,), picked)  # empty bins stay 0
    return out.reshape(k_count, ph, pw, c).permute(0, 3, 1, 2).contiguous()  # [K, C, PH, PW]


def _log2_floor(v: Tensor) -> Tensor:
    """floor(log2(v)) of a LongTensor of values >= 1, exactly."""
    j = torch.floor(torch.log2(v.double())).long()
    j = j - ((1 << j) > v).long()
    return j + ((1 << (j + 1)) <= v).long()


def _bin_argmax(input: Tensor, batch: Tensor, hs: Tensor, he: Tensor, ws: Tensor, we: Tensor) -> Tensor:
    """For M rectangles ``[hs, he) x [ws, we)`` of images ``batch`` (all LongTensor[M], non-empty),
    the flat index ``h * W + w`` of the first maximum in row-major order, per channel: LongTensor[M, C];
    -1 where no value beats ``-FLT_MAX`` (NaN never wins). This is torchvision's scan with
    ``if (v > maxval)``, computed without scanning: a 2-D sparse table holds, for every window of
    ``2^i x 2^j`` pixels, its maximum and first argmax; any rectangle is covered by four such windows
    (they overlap), and of equal maxima the smallest flat index wins."""
    n, c, height, width = input.shape
    if hs.numel() == 0:
        return torch.full((0, c), -1, dtype=torch.long, device=input.device)
    step = max(1, CHUNK_ELEMENTS // (4 * n * height * width))  # channels per pass (bounds memory)
    if step < c:
        return torch.cat([_bin_argmax(input[:, i : i + step], batch, hs, he, ws, we) for i in range(0, c, step)], 1)
    with torch.no_grad():
        vals = input.permute(0, 2, 3, 1).contiguous()  # [N, H, W, C], channels last
        vals = vals.masked_fill_(~(vals > -_FLT_MAX), -math.inf)  # NaN and values <= -FLT_MAX never win
        idx = torch.arange(height * width, device=input.device).reshape(1, height, width, 1)
        idx = idx.expand(n, -1, -1, c).contiguous()  # [N, H, W, C] flat pixel index of each value
        jh = _log2_floor(he - hs)  # [M], window 2^jh rows
        jw = _log2_floor(we - ws)
        best_v = vals.new_full((hs.shape[0], c), -math.inf)
        best_i = torch.full((hs.shape[0], c), -1, dtype=torch.long, device=input.device)

        def better(av: Tensor, ai: Tensor, bv: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
            take = (bv > av) | ((bv == av) & (bi < ai))
            return torch.where(take, bv, av), torch.where(take, bi, ai)

        row_v, row_i = vals, idx  # windows of 2^i rows x 1 column, i = level_h
        for level_h in range(int(jh.max()) + 1):
            if level_h > 0:
                s = 1 << (level_h - 1)
                row_v, row_i = better(row_v[:, :-s], row_i[:, :-s], row_v[:, s:], row_i[:, s:])
            win_v, win_i = row_v, row_i  # windows of 2^level_h rows x 2^level_w columns
            for level_w in range(int(jw.max()) + 1):
                if level_w > 0:
                    s = 1 << (level_w - 1)
                    win_v, win_i = better(win_v[:, :, :-s], win_i[:, :, :-s], win_v[:, :, s:], win_i[:, :, s:])
                m = ((jh == level_h) & (jw == level_w)).nonzero().squeeze(1)
                if m.numel() == 0:
                    continue
                b = batch[m]
                tops = (hs[m], he[m] - (1 << level_h))  # two row starts that cover [hs, he)
                lefts = (ws[m], we[m] - (1 << level_w))
                bv, bi = best_v[m], best_i[m]
                for r in tops:
                    for col in lefts:
                        bv, bi = better(bv, bi, win_v[b, r, col], win_i[b, r, col])
                best_v[m], best_i[m] = bv, bi
        return torch.where(best_v > -math.inf, best_i, torch.full_like(best_i, -1))

"""Feature-pyramid levels: which level an RoI is pooled from, and multi-scale RoIAlign.

Written in the open in ``notebooks/04_backbone_fpn.ipynb`` and checked there (and in
``tests/test_fpn.py``) to give exactly the numbers of torchvision's ``torchvision.ops.poolers``:
:func:`map_levels` is its ``LevelMapper`` and :func:`multiscale_roi_align` its
``MultiScaleRoIAlign``, with RoIAlign itself taken from :func:`helpers.roi.roi_align` (or, with
``op="pool"``, RoIPool from :func:`helpers.roi.roi_pool`, for notebook 10's ablation); and
:func:`fpn_top_down` is the forward pass of its ``FeaturePyramidNetwork`` (used by the series' own
model, :mod:`helpers.maskrcnn`).

The rule (eq. 1 of the FPN paper, Lin et al. 2017): a box of width ``w`` and height ``h`` (in
pixels of the image the backbone saw) is pooled from level::

    k = floor(k0 + log2(sqrt(w * h) / 224) + eps),   clamped to [k_min, k_max]

with ``k0 = 4`` (a 224 x 224 box, the ImageNet crop size, goes to P4, whose stride 16 is the one
the single-scale C4 detectors used) and ``eps = 1e-6``. The feature map of level ``k`` has stride
``2 ** k`` pixels, so RoIAlign reads it with ``spatial_scale = 2 ** -k``.

Where ``eps`` goes: torchvision 0.29 adds it *after* the ``log2`` (``floor(k0 + log2(s / 224) +
eps)``); maskrcnn-benchmark added it *inside* (``log2(s / 224 + eps)``). Both only nudge boxes that
sit on a boundary (``sqrt(wh)`` = 112, 224, 448...) up to the level they belong to when float
rounding puts ``log2`` a hair below the integer. Here it is added after the log, as in torchvision.

Conventions: boxes are ``(x1, y1, x2, y2)`` in image pixels, ``x`` to the right, ``y`` **downwards**,
``(0, 0)`` the top-left pixel; feature maps are ``Tensor[N, C, H, W]``; levels are absolute FPN
levels (2 for P2 = feature map ``'0'``, stride 4, ... 5 for P5 = ``'3'``, stride 32).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from helpers.checks import check_boxes, check_hw, check_int, check_number, check_size, upcast
from helpers.roi import roi_align, roi_pool

__all__ = [
    "FPN_NAMES",
    "FPN_STRIDES",
    "box_sides",
    "raw_levels",
    "check_level_args",
    "map_levels",
    "feature_size",
    "infer_scale",
    "infer_scales",
    "check_pyramid_inputs",
    "check_multiscale_args",
    "multiscale_roi_align",
    "fpn_top_down",
]

FPN_NAMES: tuple[str, ...] = ("0", "1", "2", "3", "pool")
"""The names of the feature maps torchvision's ResNet-FPN backbone returns, finest first."""

FPN_STRIDES: dict[str, int] = {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}
"""Stride in image pixels of each feature map of torchvision's ResNet-FPN backbone (P2..P6)."""


# -- argument checks ----------------------------------------------------------------------------
def _checked_boxes(boxes: Any, name: str) -> Tensor:
    """``check_boxes`` with finite numbers and ``x2 >= x1``, ``y2 >= y1`` (a box's side is ``sqrt`` of its area)."""
    return check_boxes(boxes, name, finite=True, ordered=True)


def _concat_boxes(boxes: Any, name: str = "boxes") -> Tensor:
    """A ``Tensor[K, 4]`` or a list of ``Tensor[K_i, 4]`` (one per image) -> ``Tensor[sum K_i, 4]``."""
    if isinstance(boxes, Tensor):
        return _checked_boxes(boxes, name)
    if isinstance(boxes, (list, tuple)):
        if len(boxes) == 0:
            raise ValueError(f"{name} must hold at least one Tensor[K_i, 4] (one per image)")
        parts = [_checked_boxes(b, f"{name}[{i}]") for i, b in enumerate(boxes)]
        if len({p.dtype for p in parts}) > 1:
            raise TypeError(f"{name} must all have the same dtype, got {sorted(str(p.dtype) for p in parts)}")
        return torch.cat(parts, dim=0)
    raise TypeError(f"{name} must be a Tensor[K, 4] or a list of Tensor[K_i, 4], got {type(boxes).__name__}")


# -- the level rule -----------------------------------------------------------------------------
def box_sides(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """The side ``sqrt(w * h)`` of the square with each box's area.

    Args:
        boxes (Tensor[K, 4] or list of Tensor[K_i, 4]): ``(x1, y1, x2, y2)``, floating point,
            ``x2 >= x1`` and ``y2 >= y1``.

    Returns:
        Tensor[K]: ``sqrt((x2 - x1) * (y2 - y1))`` in the dtype of ``boxes`` (same arithmetic as
        torchvision's ``box_area`` followed by ``sqrt``).
    """
    b = upcast(_concat_boxes(boxes))                                              # half -> float32, as box_area
    return torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))                 # [K]


def raw_levels(boxes: Tensor | Sequence[Tensor], canonical_scale: float = 224, canonical_level: int = 4,
               eps: float = 1e-6) -> Tensor:
    """The level *before* ``floor`` and clamping: ``k0 + log2(sqrt(wh) / canonical_scale) + eps``.

    ``floor`` of this is the level the FPN rule asks for; :func:`map_levels` then clamps it to the
    levels that exist. A zero-area box gives ``-inf``.

    Args:
        boxes (Tensor[K, 4] or list of Tensor[K_i, 4]): ``(x1, y1, x2, y2)`` in image pixels.
        canonical_scale (float): box side that goes to ``canonical_level`` (224 in the paper).
        canonical_level (int): ``k0``, the level of a ``canonical_scale``-sided box (4).
        eps (float): added after the ``log2``, as in torchvision (see the module docstring).

    Returns:
        Tensor[K]: floating point, the dtype of ``boxes`` (float32 for float16 / bfloat16 boxes).
    """
    s0 = check_number(canonical_scale, "canonical_scale", 0.0, minimum_open=True)
    k0 = check_int(canonical_level, "canonical_level")
    eps = check_number(eps, "eps", 0.0)
    s = box_sides(boxes)                                                          # [K]
    # the same operations, in the same order, as torchvision's LevelMapper.__call__
    return k0 + torch.log2(s / s0) + torch.tensor(eps, dtype=s.dtype)             # [K]


def check_level_args(boxes: Tensor | Sequence[Tensor], k_min: int = 2, k_max: int = 5, canonical_scale: float = 224,
                     canonical_level: int = 4, eps: float = 1e-6) -> tuple[Tensor, int, int, float, int, float]:
    """The argument checks of :func:`map_levels`, in one call.

    Checks, in this order: ``k_min`` and ``k_max`` are ints with ``k_min <= k_max``; ``canonical_scale``
    a positive number, ``canonical_level`` an int, ``eps >= 0``; ``boxes`` a floating-point
    ``Tensor[K, 4]`` (or a non-empty list of ``Tensor[K_i, 4]`` of one dtype) of finite boxes with
    ``x2 >= x1`` and ``y2 >= y1``. Raises ``TypeError`` / ``ValueError`` naming the argument.

    Returns:
        ``(boxes, k_min, k_max, canonical_scale, canonical_level, eps)``: ``boxes`` as one
        ``Tensor[K, 4]`` (a list concatenated; float16 / bfloat16 upcast to float32), the rest as Python numbers.
    """
    k_min, k_max = check_int(k_min, "k_min"), check_int(k_max, "k_max")
    if k_min > k_max:
        raise ValueError(f"k_min must be <= k_max, got k_min={k_min}, k_max={k_max}")
    s0 = check_number(canonical_scale, "canonical_scale", 0.0, minimum_open=True)
    k0 = check_int(canonical_level, "canonical_level")
    eps = check_number(eps, "eps", 0.0)
    # upcast as torchvision's LevelMapper (via box_area): a float16 area above 65504 would be inf
    return upcast(_concat_boxes(boxes)), k_min, k_max, s0, k0, eps


# @export notebooks/04_backbone_fpn.ipynb: map_levels (edit the notebook; tools/nb.py export writes this)
def map_levels(boxes, k_min=2, k_max=5, canonical_scale=224, canonical_level=4, eps=1e-6):
    """The FPN level each box is pooled from, clamp(floor(k0 + log2(sqrt(wh) / 224) + eps), k_min, k_max),
    as torchvision's LevelMapper (which returns k - k_min). boxes[K, 4] (or one tensor per image) -> int64 [K]."""
    boxes, k_min, k_max, s0, k0, eps = check_level_args(boxes, k_min, k_max, canonical_scale, canonical_level, eps)
    w = boxes[:, 2] - boxes[:, 0]                                  # [K]
    h = boxes[:, 3] - boxes[:, 1]                                  # [K]
    s = torch.sqrt(w * h)                                          # [K]: side of the square with the box's area
    k = k0 + torch.log2(s / s0) + torch.tensor(eps, dtype=s.dtype)  # [K]: LevelMapper's operations, in its order
    return torch.clamp(torch.floor(k), min=k_min, max=k_max).to(torch.int64)    # [K]
# @end export map_levels


# -- strides and scales -------------------------------------------------------------------------
def feature_size(size: int, stride: int) -> int:
    """Height (or width) of the feature map of a given stride for an image side of ``size`` pixels.

    Every stride-2 step of the ResNet-FPN backbone (the 7x7 stem convolution with padding 3, the
    3x3 max-pool with padding 1, the 3x3 stride-2 convolutions with padding 1, and the 1x1
    stride-2 subsampling that makes ``'pool'``) maps ``n`` to ``floor((n - 1) / 2) + 1 =
    ceil(n / 2)``; repeated, that is ``ceil(size / stride)``.

    Args:
        size (int): image height or width in pixels, ``>= 1``.
        stride (int): a power of two, ``>= 1``.

    Returns:
        int: ``ceil(size / stride)``.
    """
    size = check_int(size, "size", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    if stride & (stride - 1):
        raise ValueError(f"stride must be a power of two, got {stride}")
    n = size
    for _ in range(stride.bit_length() - 1):
        n = (n - 1) // 2 + 1                                                     # one stride-2 step
    return n


def infer_scale(feature_shape: Sequence[int], image_shape: Sequence[int]) -> float:
    """The ``spatial_scale`` of a feature map, inferred from its shape as torchvision does.

    ``2 ** round(log2(feature_height / image_height))``: the rounding absorbs the padding to a
    multiple of 32 and the ``ceil`` of odd sizes. torchvision (``_infer_scale``) computes it from
    both sides but uses the *height* only; so does this function.

    Args:
        feature_shape (sequence of int): ``(..., H_feat, W_feat)``, e.g. ``feature.shape``.
        image_shape (sequence of int): ``(H_img, W_img)`` of the image before padding.

    Returns:
        float: a power of two, e.g. ``0.25`` for stride 4.
    """
    if not isinstance(feature_shape, (tuple, list, torch.Size)) or len(feature_shape) < 2:
        raise TypeError(f"feature_shape must be a shape (..., H, W), got {feature_shape!r}")
    fh, _ = check_hw(tuple(feature_shape[-2:]), "feature_shape")
    ih, _ = check_hw(image_shape, "image_shape")
    approx_scale = float(fh) / float(ih)
    return 2 ** float(torch.tensor(approx_scale).log2().round())                 # as torchvision


def infer_scales(features: Sequence[Tensor], image_shapes: Sequence[Sequence[int]]) -> tuple[list[float], int, int]:
    """Scales of a list of feature maps and the range of levels they cover (torchvision's ``_setup_scales``).

    The image shape used is the largest height and largest width over ``image_shapes`` (the
    batch is padded to it). Levels are ``-log2(scale)``; ``k_min`` comes from the first map and
    ``k_max`` from the last.

    Args:
        features (list of Tensor[N, C, H_l, W_l]): finest first.
        image_shapes (list of (H, W)): the size of each image before padding, as
            ``GeneralizedRCNNTransform`` reports it (``ImageList.image_sizes``).

    Returns:
        (scales, k_min, k_max): ``list[float]`` one per map, and two ints.
    """
    if not isinstance(image_shapes, (list, tuple)) or len(image_shapes) == 0:
        raise ValueError("image_shapes must be a non-empty list of (height, width) pairs, one per image")
    shapes = [check_hw(s, f"image_shapes[{i}]") for i, s in enumerate(image_shapes)]
    original = (max(h for h, _ in shapes), max(w for _, w in shapes))
    scales = [infer_scale(tuple(f.shape), original) for f in features]
    lvl_min = -torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item()
    lvl_max = -torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item()
    return scales, int(lvl_min), int(lvl_max)


# -- multi-scale RoIAlign -------------------------------------------------------------------------
def check_pyramid_inputs(features: Mapping[str, Tensor], boxes: Sequence[Tensor],
                         featmap_names: Sequence[str] = ("0", "1", "2", "3")) -> tuple[list[Tensor], Tensor]:
    """The argument checks of :func:`multiscale_roi_align`; returns the maps it pools from and all boxes.

    Args:
        features (Mapping[str, Tensor[N, C, H_l, W_l]]): the backbone's output.
        boxes (list of Tensor[K_i, 4]): one tensor per image (``N`` of them), the dtype of the features.
        featmap_names (sequence of str): the maps to pool from; each must be in ``features``.

    Returns:
        (maps, all_boxes): the maps named in ``featmap_names``, in the order of ``features``
        (torchvision's order), sharing ``N`` and ``C``; and ``Tensor[sum K_i, 4]``.
    """
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a mapping name -> Tensor[N, C, H, W], got {type(features).__name__}")
    if isinstance(featmap_names, str) or not isinstance(featmap_names, Sequence) or len(featmap_names) == 0:
        raise TypeError(f"featmap_names must be a non-empty list of str, got {featmap_names!r}")
    missing = [n for n in featmap_names if n not in features]
    if missing:
        raise ValueError(f"featmap_names {missing} not in features (which has {list(features)})")
    names = [k for k in features if k in featmap_names]                            # torchvision's order
    for name in names:
        f = features[name]
        if not isinstance(f, Tensor) or f.dim() != 4:
            raise ValueError(f"features[{name!r}] must be a Tensor[N, C, H, W], got "
                             f"{tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__}")
    maps = [features[k] for k in names]
    if any(f.shape[:2] != maps[0].shape[:2] for f in maps):
        raise ValueError(f"the selected feature maps must share N and C, got {[tuple(f.shape) for f in maps]}")
    if isinstance(boxes, Tensor) or not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a list of Tensor[K_i, 4], one per image, got {type(boxes).__name__}")
    if len(boxes) != maps[0].shape[0]:
        raise ValueError(f"boxes must hold one Tensor[K_i, 4] per image: features have N={maps[0].shape[0]}, "
                         f"got {len(boxes)}")
    all_boxes = _concat_boxes(boxes)                                                # [K, 4]
    if all_boxes.dtype != maps[0].dtype:
        raise TypeError(f"boxes must have the dtype of the features ({maps[0].dtype}), got {all_boxes.dtype}")
    return maps, all_boxes


def check_multiscale_args(features: Mapping[str, Tensor], boxes: Sequence[Tensor],
                          image_shapes: Sequence[Sequence[int]], output_size: int | Sequence[int] = 7,
                          sampling_ratio: int = 2, featmap_names: Sequence[str] = ("0", "1", "2", "3"),
                          op: str = "align") -> tuple[list[Tensor], Tensor, tuple[int, int], int]:
    """The argument checks of :func:`multiscale_roi_align`, in one call.

    Checks, in this order: ``features``, ``boxes`` and ``featmap_names`` (:func:`check_pyramid_inputs`);
    ``output_size`` (an int or a pair of positive ints); ``sampling_ratio`` (an int); ``op`` (``"align"``
    or ``"pool"``); ``image_shapes``
    (a non-empty list of ``(H, W)``, checked by :func:`infer_scales`); and that the selected maps are
    consecutive pyramid levels, each half the size of the previous (scales ``2^-k_min``,
    ``2^-(k_min+1)``, ...). Raises ``TypeError`` / ``ValueError`` naming the argument.

    Returns:
        ``(maps, all_boxes, output_size, sampling_ratio)``: the maps to pool from, finest first; all
        boxes as one ``Tensor[sum K_i, 4]``; ``output_size`` as ``(PH, PW)``; ``sampling_ratio`` an int.
    """
    maps, all_boxes = check_pyramid_inputs(features, boxes, featmap_names)
    output_size = check_size(output_size, "output_size")
    sampling_ratio = check_int(sampling_ratio, "sampling_ratio")
    if not isinstance(op, str) or op not in ("align", "pool"):
        raise ValueError(f"op must be 'align' (RoIAlign) or 'pool' (RoIPool), got {op!r}")
    scales, k_min, _ = infer_scales(maps, image_shapes)
    if scales != [2.0 ** -(k_min + i) for i in range(len(maps))]:
        raise ValueError(f"the selected feature maps must be consecutive pyramid levels (each half the size of "
                         f"the previous); inferred scales {scales}")
    return maps, all_boxes, output_size, sampling_ratio


# @export notebooks/04_backbone_fpn.ipynb: multiscale_roi_align (edit the notebook; tools/nb.py export writes this)
def multiscale_roi_align(features, boxes, image_shapes, output_size=7, sampling_ratio=2,
                         featmap_names=("0", "1", "2", "3"), *, canonical_scale=224, canonical_level=4,
                         op="align"):
    """RoIAlign from the pyramid level that suits each box: torchvision's MultiScaleRoIAlign.
    features {name: [N, C, H_l, W_l]}, boxes: one Tensor[K_i, 4] per image, image_shapes: each image's (H, W)
    before padding -> Tensor[sum K_i, C, PH, PW], rows in the order of the boxes.
    op="align": roi_align (02); op="pool": roi_pool (03) from the same levels, sampling_ratio unused."""
    maps, all_boxes, output_size, sampling_ratio = check_multiscale_args(
        features, boxes, image_shapes, output_size, sampling_ratio, featmap_names, op)  # 1. maps, finest first; [K, 4]
    # 2. scale of map l = 2^round(log2(H_l / H)), H the largest unpadded height: 1/4 .. 1/32; k = -log2(scale)
    scales, k_min, k_max = infer_scales(maps, image_shapes)
    ids = torch.cat([torch.full((len(b), 1), float(i), dtype=all_boxes.dtype, device=maps[0].device)
                     for i, b in enumerate(boxes)])                               # [K, 1]: the image of each box
    rois = torch.cat([ids, all_boxes.to(maps[0].device)], dim=1)                  # [K, 5]

    def pool(f, rois, scale):                                                     # the op on one map
        if op == "pool":
            return roi_pool(f, rois, output_size, spatial_scale=scale)
        return roi_align(f, rois, output_size, spatial_scale=scale, sampling_ratio=sampling_ratio)

    if len(maps) == 1:                                                            # one map: every box uses it
        return pool(maps[0], rois, scales[0])
    levels = map_levels(all_boxes, k_min, k_max, canonical_scale, canonical_level)  # 3. [K]: each box's level
    out = maps[0].new_zeros((len(rois), maps[0].shape[1]) + output_size)          # [K, C, PH, PW]
    for i, (f, scale) in enumerate(zip(maps, scales)):                            # 4. one pooling per level
        idx = torch.where(levels == k_min + i)[0]                                 # the boxes of level k_min + i
        if len(idx):
            out[idx] = pool(f, rois[idx], scale)
    return out
# @end export multiscale_roi_align


# @export notebooks/04_backbone_fpn.ipynb: fpn_top_down (edit the notebook; tools/nb.py export writes this)
def fpn_top_down(inner_blocks, layer_blocks, features):
    """The FPN's forward pass: C maps (finest first) -> P maps of the same sizes. A lateral 1x1
    convolution on each C; coarse to fine, the coarser result upsampled (nearest) and added; then a
    3x3 convolution of each sum. inner_blocks[i], layer_blocks[i]: the 1x1 and 3x3 layers of level i."""
    last = inner_blocks[-1](features[-1])                         # lateral 1x1 on the coarsest map
    p = [layer_blocks[-1](last)]                                  # its 3x3 conv
    for i in range(len(features) - 2, -1, -1):                    # coarse to fine
        lateral = inner_blocks[i](features[i])                    # 1x1: C_i -> the FPN's channels
        last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")   # + upsampled coarser
        p.insert(0, layer_blocks[i](last))                        # P_i = 3x3 conv of the sum
    return p
# @end export fpn_top_down

"""torchvision's ``MaskRCNN`` assembled for the synthetic-shapes task, with a small backbone trained from scratch.

No pretrained weights are reachable offline, and on a laptop CPU a big backbone sees far fewer
images in the same time (a ResNet-18 FPN costs 9 times the arithmetic of the backbone below per
image; notebook 09 counts it). So the model here is torchvision's
own :class:`~torchvision.models.detection.MaskRCNN` (its RPN, RoI heads, losses and post-processing,
untouched) around a small residual backbone with BatchNorm, a feature pyramid from
:class:`torchvision.ops.FeaturePyramidNetwork`, anchors sized for 128 x 128 images, and fewer
proposals and sampled RoIs than the COCO defaults.

``build_model(config)`` builds, by default (``impl="series"``), the same network from the series' own
modules (:class:`helpers.maskrcnn.SeriesMaskRCNN`: same state dict, same losses and detections);
``impl="torchvision"`` builds the torchvision assembly described above, the reference it is tested
against. One checkpoint loads into either.

Everything the builder decides is in one :class:`ShapesModelConfig` of plain types, so that a
checkpoint is ``{"state_dict": ..., "config": dict}`` and loads with ``torch.load(weights_only=True)``.
Two knobs exist for the RoIAlign-against-RoIPool ablation (notebook 10):

- ``pool``: ``"align"`` (RoIAlign, torchvision's default) or ``"pool"`` (RoIPool, Fast R-CNN's
  quantised pooling), used for *both* the box and the mask branch (:class:`MultiScaleRoIPooler`);
- ``feature_stride``: ``None`` for the feature pyramid (strides 4, 8, 16, 32), or one int for a
  single feature map at that stride (the paper's C4/C5 set-ups). Stages past that stride keep their
  depth and parameters but stop downsampling and dilate instead, so only the stride changes.

Conventions: images ``Tensor[3, H, W]`` float in ``[0, 1]``; boxes ``(x1, y1, x2, y2)`` in pixels,
(0, 0) the top-left pixel, ``y`` growing downwards; labels ``1..num_classes-1``, 0 the background.

Written for notebooks 08 (one image through every stage) and 09 (training and COCO evaluation).
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align, roi_pool
from torchvision.ops.poolers import LevelMapper

from helpers.checks import check_choice, check_int, check_list, check_number
from helpers.fpn import infer_scales

__all__ = [
    "ShapesModelConfig",
    "ShapesBackbone",
    "MultiScaleRoIPooler",
    "pooler_scales",
    "build_model",
    "count_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "POOL_OPS",
    "IMPLEMENTATIONS",
]

POOL_OPS: tuple[str, ...] = ("align", "pool")
"""The RoI pooling operations :func:`build_model` accepts by name."""

_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)  # the natural stride of stage 0, 1, 2, ...


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass
class ShapesModelConfig:
    """Every choice :func:`build_model` makes, in plain types (a checkpoint stores ``asdict(config)``).

    Attributes:
        num_classes: classes including the background (4 for circle, square, triangle).
        image_size: images are resized so that both sides are ``image_size`` at most
            (``min_size = max_size = image_size`` in torchvision's transform; 128 for the shapes).
        image_mean, image_std: per-channel normalisation applied by the transform.
        stem_channels: channels of the stride-2 stem convolution.
        widths: channels of each backbone stage; stage ``i`` has stride ``4 * 2**i`` (so the
            number of entries is the backbone depth: 4 stages reach stride 32).
        blocks: residual blocks per stage (each two 3x3 convolutions).
        fpn_channels: channels of every pyramid level (and of the single map without FPN).
        feature_stride: ``None``: a feature pyramid over all stages (levels named ``"0"``, ``"1"``...,
            strides 4, 8, 16, 32). An int (4, 8, 16... up to the last stage's stride): one feature map
            ``"0"`` at that stride; later stages dilate instead of downsampling.
        anchor_sizes: anchor side lengths in pixels. With the pyramid: one per level, smallest on the
            finest level. With one map: all of them on that map.
        aspect_ratios: anchor height / width ratios, the same at every level.
        pool: ``"align"`` (RoIAlign) or ``"pool"`` (RoIPool) for both the box and the mask branch.
        sampling_ratio: RoIAlign's samples per bin side (torchvision's default 2; ignored by RoIPool).
        canonical_scale: the ``224`` of FPN's level rule ``k = floor(4 + log2(sqrt(wh) / 224))``.
        rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train, rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test: proposals kept per level before NMS / per image after NMS.
        rpn_batch_size_per_image: anchors sampled per image for the RPN loss.
        box_batch_size_per_image: RoIs sampled per image for the box and mask losses.
        box_score_thresh, box_nms_thresh, box_detections_per_img: post-processing.
        representation_size: width of the box head's two fully connected layers.
        mask_layers: channels of the mask head's 3x3 convolutions (torchvision: four of 256).
        mask_dim_reduced: channels of the mask predictor's 2x up-sampling transposed convolution.
    """

    num_classes: int = 4
    image_size: int = 128
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.25, 0.25, 0.25])
    stem_channels: int = 24
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    blocks: int = 1
    fpn_channels: int = 64
    feature_stride: int | None = None
    anchor_sizes: list[int] = field(default_factory=lambda: [12, 24, 48, 96])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    pool: str = "align"
    sampling_ratio: int = 2
    canonical_scale: int = 224
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 150
    rpn_batch_size_per_image: int = 128
    box_batch_size_per_image: int = 64
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 30
    representation_size: int = 256
    mask_layers: list[int] = field(default_factory=lambda: [64, 64, 64, 64])
    mask_dim_reduced: int = 64

    def __post_init__(self) -> None:
        self.validate()

    # -- checks ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first bad field and what is allowed."""
        for name in _POSITIVE_INTS:
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.sampling_ratio, "sampling_ratio", minimum=0)
        if self.num_classes < 2:
            raise ValueError(f"num_classes counts the background too, so it must be >= 2, got {self.num_classes}")
        if self.image_size < 32:
            raise ValueError(f"image_size must be >= 32 pixels, got {self.image_size}")
        check_list(self.image_mean, "image_mean", numbers.Real, length=3)
        _check_positive_list(self.image_std, "image_std", numbers.Real, length=3)
        widths = _check_positive_list(self.widths, "widths", numbers.Integral, what="channel counts")
        if len(widths) > len(_STRIDES):
            raise ValueError(f"widths must hold 1 to {len(_STRIDES)} positive channel counts, got {widths}")
        strides = _STRIDES[: len(widths)]
        if self.feature_stride is not None and check_int(self.feature_stride, "feature_stride") not in strides:
            raise ValueError(f"feature_stride must be None (a feature pyramid) or one of {list(strides)} "
                             f"(the stage strides of a {len(widths)}-stage backbone), got {self.feature_stride}")
        sizes = _check_positive_list(self.anchor_sizes, "anchor_sizes", numbers.Real, what="pixel sizes")
        if self.feature_stride is None and len(sizes) != len(widths):
            raise ValueError(f"with a feature pyramid, anchor_sizes needs one size per level: {len(widths)} "
                             f"(one per entry of widths), got {len(sizes)}")
        _check_positive_list(self.aspect_ratios, "aspect_ratios", numbers.Real)
        check_choice(self.pool, "pool", POOL_OPS)
        _check_positive_list(self.mask_layers, "mask_layers", numbers.Integral, what="channel counts")
        for name in ("box_score_thresh", "box_nms_thresh"):
            check_number(getattr(self, name), name, 0.0, 1.0)

    # -- conversions ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The configuration as a dict of plain types (ints, floats, str, None, lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ShapesModelConfig":
        """Rebuild a configuration from :meth:`to_dict`'s output (unknown keys are an error)."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of config fields, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()})

    @property
    def level_strides(self) -> list[int]:
        """The stride of every feature map the heads see (``[4, 8, 16, 32]`` for the pyramid)."""
        if self.feature_stride is None:
            return list(_STRIDES[: len(self.widths)])
        return [self.feature_stride]


_POSITIVE_INTS: tuple[str, ...] = (
    "num_classes", "image_size", "stem_channels", "blocks", "fpn_channels", "canonical_scale",
    "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img", "representation_size",
    "mask_dim_reduced")
"""The :class:`ShapesModelConfig` fields that must be ints >= 1."""


def _check_positive_list(value: Any, name: str, of: type, length: int | None = None, what: str = "") -> list[Any]:
    """A non-empty list of positive numbers of type ``of`` (the config's lists of sizes and channels)."""
    values = check_list(value, name, of, length=length, minimum_length=1)
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive{' ' + what if what else ''}, got {values}")
    return values


# ----------------------------------------------------------------------------------------------
# backbone
# ----------------------------------------------------------------------------------------------
def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1, dilation: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _ResidualBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with an identity shortcut (ResNet's basic block)."""

    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(channels, channels, dilation=dilation)
        self.conv2 = _conv_bn_relu(channels, channels, dilation=dilation, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.conv2(self.conv1(x)))


class ShapesBackbone(nn.Module):
    """A small residual backbone with BatchNorm and either a feature pyramid or one feature map.

    Layout: stem (3x3 conv, stride 2) -> stage 0 (stride 4) -> stage 1 (stride 8) -> ...; each stage is
    a stride-2 3x3 conv to ``widths[i]`` channels followed by ``blocks`` residual blocks. With
    ``config.feature_stride = None`` a :class:`torchvision.ops.FeaturePyramidNetwork` (no extra
    max-pool level) turns the stage outputs ``C2, C3, ...`` into ``P2, P3, ...`` with
    ``fpn_channels`` channels each. With an int stride, stages after that stride use stride 1 and
    dilation 2, 4, ... instead, and a 1x1 conv maps the last stage to ``fpn_channels``.

    Args:
        config: a :class:`ShapesModelConfig`.
        pyramid: builds the feature pyramid from ``(in_channels_list, out_channels)``:
            :class:`torchvision.ops.FeaturePyramidNetwork` (the default), or the series' own
            :class:`helpers.maskrcnn.FeaturePyramid` (same layers, same state dict, same initialisation).

    Attributes:
        out_channels: channels of every output map (torchvision's detection models read this).

    Shapes:
        ``forward(Tensor[N, 3, H, W]) -> OrderedDict[str, Tensor[N, fpn_channels, H / s, W / s]]``
        with keys ``"0", "1", ...`` and strides ``s`` = :attr:`ShapesModelConfig.level_strides`.
    """

    def __init__(self, config: ShapesModelConfig,
                 pyramid: Callable[[list[int], int], nn.Module] = FeaturePyramidNetwork) -> None:
        super().__init__()
        if not isinstance(config, ShapesModelConfig):
            raise TypeError(f"config must be a ShapesModelConfig, got {type(config).__name__}")
        self.config = config
        self.stem = _conv_bn_relu(3, config.stem_channels, stride=2)
        stages = []
        c_in, stride, dilation = config.stem_channels, 2, 1
        for width in config.widths:
            if config.feature_stride is not None and stride * 2 > config.feature_stride:
                step, dilation = 1, dilation * 2  # keep the resolution, widen the view instead
            else:
                step, stride = 2, stride * 2
            first = _conv_bn_relu(c_in, width, stride=step, dilation=max(1, dilation // 2) if step == 1 else 1)
            blocks = [_ResidualBlock(width, dilation=dilation) for _ in range(config.blocks)]
            stages.append(nn.Sequential(first, *blocks))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.out_channels = config.fpn_channels
        if config.feature_stride is None:
            self.fpn: nn.Module | None = pyramid(list(config.widths), config.fpn_channels)
            self.proj: nn.Module | None = None
        else:
            self.fpn = None
            self.proj = nn.Sequential(nn.Conv2d(c_in, config.fpn_channels, 1), nn.ReLU(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is None:  # the backbone's own convs (FPN inits itself)
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for stage in self.stages:  # zero-init the last BN of each block: blocks start as identities
            for block in stage[1:]:
                nn.init.zeros_(block.conv2[1].weight)

    def stage_outputs(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        """The raw stage outputs ``C2, C3, ...`` (before the pyramid), keyed ``"c2", "c3", ...``."""
        x = self.stem(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[f"c{i + 2}"] = x
        return out

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be Tensor[N, 3, H, W], got {getattr(x, 'shape', type(x).__name__)}")
        feats = self.stage_outputs(x)
        if self.fpn is not None:
            pyramid = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats.values())))
            return OrderedDict((str(i), f) for i, f in enumerate(pyramid.values()))
        last = next(reversed(feats.values()))
        return OrderedDict([("0", self.proj(last))])


# ----------------------------------------------------------------------------------------------
# the RoI pooler: RoIAlign or RoIPool over one or several levels
# ----------------------------------------------------------------------------------------------
PoolFn = Callable[[Tensor, Tensor, tuple[int, int], float, int], Tensor]
"""``op(features Tensor[N, C, H, W], rois Tensor[K, 5], output_size, spatial_scale, sampling_ratio)
-> Tensor[K, C, PH, PW]``: the signature of a custom pooling op for :class:`MultiScaleRoIPooler`."""


def _align(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
           sampling_ratio: int) -> Tensor:
    return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=False)


def _pool(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
          sampling_ratio: int) -> Tensor:
    return roi_pool(features, rois, output_size, spatial_scale)


def pooler_scales(features: Sequence[Tensor], image_shapes: Sequence[tuple[int, int]], canonical_scale: int = 224,
                  canonical_level: int = 4) -> tuple[list[float], LevelMapper]:
    """Each feature map's ``spatial_scale`` and the FPN level rule over the levels they cover.

    The scale of a map is ``2 ** round(log2(feature_height / image_height))`` with the tallest
    image of the batch (the batch is padded to it): the power of two nearest to how much smaller
    the map is (:func:`helpers.fpn.infer_scales`). Its level is ``-log2(scale)`` (stride 4: level 2);
    the first and last maps give ``k_min`` and ``k_max`` of the level rule
    ``k = floor(canonical_level + log2(sqrt(wh) / canonical_scale) + 1e-6)``, clamped to them
    (torchvision's :class:`~torchvision.ops.poolers.LevelMapper`). The same numbers as torchvision's
    ``MultiScaleRoIAlign`` infers on its first call.

    Args:
        features: the maps, finest first, each ``Tensor[N, C, H_l, W_l]``.
        image_shapes: ``(H, W)`` of each image before padding (``ImageList.image_sizes``).
        canonical_scale, canonical_level: FPN's level rule (224 and 4 in the paper).

    Returns:
        ``(scales, level_mapper)``: one float per map, and a callable ``boxes -> Tensor[K]`` of level
        indices (0 = the first map).
    """
    scales, k_min, k_max = infer_scales(features, image_shapes)
    return scales, LevelMapper(k_min, k_max, canonical_scale, canonical_level)


class MultiScaleRoIPooler(MultiScaleRoIAlign):
    """torchvision's :class:`~torchvision.ops.MultiScaleRoIAlign` with a choice of pooling op.

    It keeps MultiScaleRoIAlign's rules exactly: each feature map's scale is inferred as the power of
    two nearest to ``map size / image size``; with several maps an RoI of area ``wh`` goes to level
    ``k = floor(canonical_level + log2(sqrt(wh) / canonical_scale) + 1e-6)`` clamped to the levels
    present; RoIAlign runs with ``aligned=False`` as in Mask R-CNN's reference code. It is a
    subclass so that torchvision's ``MaskRCNN`` (which type-checks its poolers) accepts it.

    Args:
        featmap_names: names of the feature maps to pool from (``["0", "1", "2", "3"]``).
        output_size: ``PH = PW`` (int) or ``(PH, PW)``.
        sampling_ratio: RoIAlign's samples per bin side (0: adaptive); unused by RoIPool.
        op: ``"align"`` (:func:`torchvision.ops.roi_align`), ``"pool"``
            (:func:`torchvision.ops.roi_pool`), or a callable with the :data:`PoolFn` signature (for
            example the series' own ``helpers.roi.roi_align`` wrapped to that signature).
        canonical_scale, canonical_level: FPN's level rule (224 and 4 in the paper).

    Shapes:
        ``forward(x: {name: Tensor[N, C, H_l, W_l]}, boxes: list of Tensor[K_i, 4] (x1, y1, x2, y2)
        in image pixels, image_shapes: list of (H, W)) -> Tensor[sum K_i, C, PH, PW]``.
    """

    def __init__(self, featmap_names: Sequence[str], output_size: int | tuple[int, int], sampling_ratio: int,
                 op: str | PoolFn = "align", *, canonical_scale: int = 224, canonical_level: int = 4) -> None:
        if isinstance(featmap_names, str) or not isinstance(featmap_names, (list, tuple)) or not featmap_names:
            raise TypeError(f"featmap_names must be a non-empty list of str, got {featmap_names!r}")
        if isinstance(output_size, int) and not isinstance(output_size, bool):
            if output_size < 1:
                raise ValueError(f"output_size must be >= 1, got {output_size}")
        elif not (isinstance(output_size, (tuple, list)) and len(output_size) == 2
                  and all(isinstance(s, int) and s >= 1 for s in output_size)):
            raise ValueError(f"output_size must be a positive int or a pair (PH, PW), got {output_size!r}")
        check_int(sampling_ratio, "sampling_ratio", minimum=-1)
        if isinstance(op, str):
            if op not in POOL_OPS:
                raise ValueError(f"op must be one of {POOL_OPS} or a callable, got {op!r}")
            self_op: PoolFn = _align if op == "align" else _pool
            name = op
        elif callable(op):
            self_op, name = op, getattr(op, "__name__", "custom")
        else:
            raise TypeError(f"op must be one of {POOL_OPS} or a callable, got {type(op).__name__}")
        super().__init__(list(featmap_names), output_size, sampling_ratio,
                         canonical_scale=canonical_scale, canonical_level=canonical_level)
        self.op: PoolFn = self_op
        self.op_name = name

    def levels(self, boxes: list[Tensor]) -> Tensor:
        """The pyramid level index (0 = the first map in ``featmap_names``) of every box: ``Tensor[K]``.

        Only valid after one :meth:`forward` (the scales are inferred from the first batch).
        """
        if self.map_levels is None:
            raise RuntimeError("levels() needs the scales: call forward() once first")
        return self.map_levels(boxes)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        missing = [name for name in self.featmap_names if name not in x]
        if missing:
            raise ValueError(f"feature map(s) {missing} are missing from x, which holds {list(x)}")
        feats = [x[name] for name in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = pooler_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)], dim=0)
        if len(feats) == 1:
            return self.op(feats[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)  # [K]
        result = feats[0].new_zeros((len(rois), feats[0].shape[1], *self.output_size))  # [K, C, PH, PW]
        for level, (feat, scale) in enumerate(zip(feats, self.scales)):
            idx = torch.where(levels == level)[0]
            result[idx] = self.op(feat, rois[idx], self.output_size, scale, self.sampling_ratio).to(result.dtype)
        return result

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(featmap_names={self.featmap_names}, output_size={self.output_size}, "
                f"sampling_ratio={self.sampling_ratio}, op={self.op_name!r})")


# ----------------------------------------------------------------------------------------------
# the whole model
# ----------------------------------------------------------------------------------------------
_MASKRCNN_ARGUMENTS: tuple[str, ...] = (
    "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image", "box_score_thresh", "box_nms_thresh", "box_detections_per_img",
    "box_batch_size_per_image")
"""The :class:`ShapesModelConfig` fields that are ``MaskRCNN`` arguments of the same name."""


IMPLEMENTATIONS: tuple[str, ...] = ("torchvision", "series")
"""What :func:`build_model` can assemble: torchvision's ``MaskRCNN`` or the series' own
:class:`helpers.maskrcnn.SeriesMaskRCNN` (same state dict, same numbers)."""


def build_model(config: ShapesModelConfig | Mapping[str, Any] | None = None, *, impl: str = "series",
                **overrides: Any) -> nn.Module:
    """Build Mask R-CNN for the shapes task (random initial weights, nothing downloaded).

    Args:
        config: a :class:`ShapesModelConfig`, a dict of its fields, or ``None`` for the defaults.
        impl: ``"series"`` (the default): :class:`helpers.maskrcnn.SeriesMaskRCNN`, made only of the
            series' own pieces; ``"torchvision"``: torchvision's ``MaskRCNN`` around the series'
            backbone (the reference). Both have the same state-dict keys and shapes (and, after the
            same ``torch.manual_seed``, the same initial weights).
        **overrides: config fields to change, e.g. ``build_model(pool="pool", feature_stride=16)``.

    Returns:
        ``SeriesMaskRCNN`` (or torchvision's ``MaskRCNN``) in training mode. Call it as torchvision documents:
        ``model(images, targets) -> dict of five losses`` in training mode, ``model(images) -> list of
        {boxes Tensor[D, 4], labels Tensor[D], scores Tensor[D], masks Tensor[D, 1, H, W]}`` in eval mode.
        The config used is attached as ``model.shapes_config``.

    Raises:
        TypeError / ValueError: for a bad config or override (the message names the field).
    """
    if config is None:
        config = ShapesModelConfig()
    elif isinstance(config, Mapping):
        config = ShapesModelConfig.from_dict(config)
    elif not isinstance(config, ShapesModelConfig):
        raise TypeError(f"config must be a ShapesModelConfig, a dict or None, got {type(config).__name__}")
    if overrides:
        config = ShapesModelConfig.from_dict({**config.to_dict(), **overrides})
    check_choice(impl, "impl", IMPLEMENTATIONS)
    if impl == "series":
        from helpers.maskrcnn import SeriesMaskRCNN  # imported here: helpers.maskrcnn imports this module

        return SeriesMaskRCNN(config)

    backbone = ShapesBackbone(config)
    names = [str(i) for i in range(len(config.level_strides))]
    if config.feature_stride is None:
        sizes = tuple((int(s),) for s in config.anchor_sizes)
    else:
        sizes = (tuple(int(s) for s in config.anchor_sizes),)
    ratios = (tuple(float(r) for r in config.aspect_ratios),) * len(sizes)
    anchor_generator = AnchorGenerator(sizes=sizes, aspect_ratios=ratios)
    box_pool = MultiScaleRoIPooler(names, 7, config.sampling_ratio, op=config.pool,
                                   canonical_scale=config.canonical_scale)
    mask_pool = MultiScaleRoIPooler(names, 14, config.sampling_ratio, op=config.pool,
                                    canonical_scale=config.canonical_scale)
    c = config.fpn_channels
    box_head = TwoMLPHead(c * 7 * 7, config.representation_size)
    box_predictor = FastRCNNPredictor(config.representation_size, config.num_classes)
    mask_head = MaskRCNNHeads(c, list(config.mask_layers), 1)
    mask_predictor = MaskRCNNPredictor(config.mask_layers[-1], config.mask_dim_reduced, config.num_classes)
    model = MaskRCNN(
        backbone, num_classes=None, min_size=config.image_size, max_size=config.image_size,
        image_mean=list(config.image_mean), image_std=list(config.image_std),
        rpn_anchor_generator=anchor_generator, box_roi_pool=box_pool, box_head=box_head, box_predictor=box_predictor,
        mask_roi_pool=mask_pool, mask_head=mask_head, mask_predictor=mask_predictor,
        **{name: getattr(config, name) for name in _MASKRCNN_ARGUMENTS},  # passed on unchanged
    )
    model.shapes_config = config
    return model


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------
# checkpoints: a plain state_dict + a config dict, loadable with torch.load(weights_only=True)
# ----------------------------------------------------------------------------------------------
def save_checkpoint(model: MaskRCNN, path: str | Path, extra: Mapping[str, Any] | None = None,
                    dtype: torch.dtype = torch.float32) -> Path:
    """Save ``{"state_dict", "config", "extra"}`` to ``path`` (plain types only), in full or half precision.

    Args:
        model: a model from :func:`build_model` (it carries ``shapes_config``).
        path: the file to write (its folder is created).
        extra: more plain-typed information to store (classes, training command, metrics).
        dtype: the floating-point tensors are stored in this dtype: ``torch.float32`` (exact) or
            ``torch.float16`` (half the bytes; notebook 10's ablation models). Integer tensors
            (BatchNorm's ``num_batches_tracked``) are stored as they are. :func:`load_checkpoint`
            reads either into a float32 model.

    Returns:
        The path written.
    """
    config = getattr(model, "shapes_config", None)
    if not isinstance(config, ShapesModelConfig):
        raise TypeError("model must come from helpers.model.build_model (it has no shapes_config)")
    check_choice(dtype, "dtype", (torch.float32, torch.float16))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().cpu().to(dtype, copy=True) if v.is_floating_point() else v.detach().cpu().clone())
             for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "config": config.to_dict(), "extra": dict(extra or {})}, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", *,
                    impl: str = "series") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved by :func:`save_checkpoint`, in eval mode.

    Loads with ``torch.load(weights_only=True)``: nothing but tensors and plain types is unpickled.
    Weights saved in float16 (``save_checkpoint(..., dtype=torch.float16)``) are copied into the
    float32 model exactly (every float16 value is a float32 value).

    Args:
        path: a checkpoint file.
        map_location: where to put the weights.
        impl: the model to load them into, as in :func:`build_model` (``"series"``, the default, or
            ``"torchvision"``).

    Returns:
        ``(model, checkpoint)``: the model in eval mode, and the loaded dict (``config``, ``extra``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m helpers.train`")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "config" not in checkpoint:
        raise ValueError(f"{path} is not a helpers.model checkpoint (it needs 'state_dict' and 'config' keys)")
    model = build_model(checkpoint["config"], impl=impl)
    model.load_state_dict(checkpoint["state_dict"])
    model.to(map_location).eval()
    return model, checkpoint

"""What the panels of notebooks 06 and 07 need from the trained model, through its public modules only.

The shipped model is either torchvision's ``MaskRCNN`` assembly (:func:`helpers.model.build_model`,
``impl="torchvision"``) or the series' own :class:`helpers.maskrcnn.SeriesMaskRCNN` (``impl="series"``).
Both have ``transform``, ``backbone``, ``rpn`` and ``roi_heads.{box_head, box_predictor, mask_head,
mask_predictor}``; they differ only in how RoIs are pooled (torchvision: ``roi_heads.box_roi_pool`` /
``roi_heads.mask_roi_pool``; the series: ``model.pool(features, boxes, image_sizes, output_size)``).
The functions below hide that one difference, so a panel works with either model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor

__all__ = ["ImageFeatures", "shipped_model", "validation_set", "image_features", "pool_rois", "mask_logits",
           "box_head_outputs"]

VALIDATION_SEED = 1_000_000
"""The seed of the validation images (``helpers.train``'s; notebooks 08 and 09 use it too)."""


def shipped_model() -> Any:
    """The trained shapes model shipped with the series (:data:`helpers.project.SHAPES_CHECKPOINT`), in eval mode."""
    from helpers.model import load_checkpoint
    from helpers.project import SHAPES_CHECKPOINT

    return load_checkpoint(SHAPES_CHECKPOINT)[0]


def validation_set(size: int = 200) -> Any:
    """``helpers.shapes.ShapesDataset(size, seed=1_000_000)``: the validation images (seeded, never trained on)."""
    from helpers.shapes import ShapesDataset

    return ShapesDataset(size, seed=VALIDATION_SEED)


@dataclass
class ImageFeatures:
    """One image through the transform, the backbone + FPN and the RPN (computed once per image).

    Attributes:
        features: the feature maps (``"0"``, ``"1"``... and ``"pool"``), each ``Tensor[1, C, h, w]``.
        image_sizes: ``[(H, W)]``, the size of the transformed image (boxes live in its pixels).
        proposals: ``Tensor[P, 4]``, the RPN's proposals (eval mode: ``rpn_post_nms_top_n_test``).
        original_size: ``(H, W)`` of the image given.
    """

    features: Mapping[str, Tensor]
    image_sizes: list[tuple[int, int]]
    proposals: Tensor
    original_size: tuple[int, int]


def image_features(model: Any, image: Tensor) -> ImageFeatures:
    """Run ``model``'s transform, backbone and RPN on one ``Tensor[3, H, W]`` image (no gradient).

    Raises:
        TypeError: ``image`` is not a floating-point ``Tensor[3, H, W]``.
        ValueError: ``model`` is in training mode (its RPN would sample, and need targets).
    """
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise TypeError(f"image must be a floating-point Tensor[3, H, W], got "
                        f"{tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__}")
    if model.training:
        raise ValueError("model must be in eval mode (call model.eval()); the panels show inference")
    with torch.no_grad():
        batch, _ = model.transform([image])
        features = model.backbone(batch.tensors)
        proposals, _ = model.rpn(batch, features)
    return ImageFeatures(features=features, image_sizes=[tuple(int(v) for v in s) for s in batch.image_sizes],
                         proposals=proposals[0], original_size=(int(image.shape[1]), int(image.shape[2])))


def pool_rois(model: Any, features: ImageFeatures, boxes: Tensor, branch: str) -> Tensor:
    """Multi-scale RoIAlign of ``boxes`` (``Tensor[R, 4]`` in the transformed image's pixels) as ``model``
    pools them for ``branch`` ``"box"`` (7 x 7) or ``"mask"`` (14 x 14): ``Tensor[R, C, S, S]``."""
    if branch not in ("box", "mask"):
        raise ValueError(f"branch must be 'box' or 'mask', got {branch!r}")
    heads = model.roi_heads
    with torch.no_grad():
        if hasattr(model, "pool"):  # the series' SeriesMaskRCNN
            return model.pool(features.features, [boxes], features.image_sizes, 7 if branch == "box" else 14)
        pooler = heads.box_roi_pool if branch == "box" else heads.mask_roi_pool
        return pooler(features.features, [boxes], features.image_sizes)


def mask_logits(model: Any, features: ImageFeatures, boxes: Tensor) -> Tensor:
    """The mask branch on ``boxes``: 14 x 14 RoIAlign, the head's convolutions, the 2x up-sampling and the
    per-class 1x1 convolution: ``Tensor[R, K, 28, 28]`` logits (no gradient)."""
    heads = model.roi_heads
    with torch.no_grad():
        return heads.mask_predictor(heads.mask_head(pool_rois(model, features, boxes, "mask")))


def box_head_outputs(model: Any, features: ImageFeatures) -> tuple[Tensor, Tensor]:
    """The box branch on every proposal: ``(class_logits Tensor[P, K], box_regression Tensor[P, 4K])``."""
    heads = model.roi_heads
    with torch.no_grad():
        return heads.box_predictor(heads.box_head(pool_rois(model, features, features.proposals, "box")))

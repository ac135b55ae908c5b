"""The region proposal network, piece by piece: anchors, matching, sampling, losses, proposals.

Written in the open in ``notebooks/05_rpn.ipynb`` (anchors, matching, sampling) and
``notebooks/05b_rpn_losses_proposals.ipynb`` (the head's outputs, losses, proposals); every function
here is checked there and in
``tests/test_rpn.py`` against the torchvision code it mirrors (same names, same arguments, same
numbers):

==============================  ==========================================================
here                            torchvision
==============================  ==========================================================
:func:`cell_anchors`            ``AnchorGenerator.generate_anchors``
:func:`grid_anchors`            ``AnchorGenerator.grid_anchors``
:class:`AnchorGenerator`        ``models.detection.anchor_utils.AnchorGenerator``
:func:`match_anchors`           ``models.detection._utils.Matcher`` (``__call__``)
:func:`assign_targets_to_anchors`   ``RegionProposalNetwork.assign_targets_to_anchors``
:func:`sample_balanced`         ``models.detection._utils.BalancedPositiveNegativeSampler``
:func:`concat_box_prediction_layers`  ``models.detection.rpn.concat_box_prediction_layers``
:func:`rpn_loss`                ``RegionProposalNetwork.compute_loss`` (after sampling)
:func:`filter_proposals`        ``RegionProposalNetwork.filter_proposals``
:class:`RegionProposalNetwork`  ``models.detection.rpn.RegionProposalNetwork``
==============================  ==========================================================

The box operations it needs (IoU, clipping, small-box removal, NMS) live in :mod:`helpers.boxes`,
as torchvision keeps them in ``torchvision.ops.boxes``.

None of these functions calls the torchvision function it rebuilds (the tests do, to compare).
They use plain tensor operations plus ``torch.sort``/``torch.topk``/``torch.randperm`` where
torchvision uses exactly those, so that ties and random draws come out the same.

Conventions:

- Boxes are ``(x1, y1, x2, y2)`` in image pixels, x to the right, y **downwards**, width ``x2 - x1``
  (no ``+ 1``). For the detector an image of size ``(H, W)`` spans ``[0, W] x [0, H]``: that is what
  :func:`helpers.boxes.clip_boxes_to_image` clips to, and what ``helpers.shapes``' boxes (COCO's pixel-edge
  convention) use. With that reading the anchor centres ``(i * stride, j * stride)`` sit on the
  *corners* of the stride cells; torchvision does it that way and so do we.
- Anchors of one image are ordered level by level, then row ``y``, column ``x``, then anchor
  ``a`` (sizes x ratios, ratio-major): index ``((y * W + x) * A + a)`` inside a level. The head's
  outputs are flattened into the same order by :func:`concat_box_prediction_layers`.
- ``aspect_ratio`` means height / width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from helpers.box_coder import BoxCoder
from helpers.boxes import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from helpers.checks import check_boxes, check_int, check_number, check_positive_numbers

__all__ = [
    "MASK_RCNN_ANCHOR_SIZES", "MASK_RCNN_ASPECT_RATIOS",
    "cell_anchors", "check_grid_args", "grid_anchors", "AnchorGenerator",
    "BELOW_LOW_THRESHOLD", "BETWEEN_THRESHOLDS", "check_match_args", "match_anchors", "assign_targets_to_anchors",
    "sample_one_image", "sample_balanced", "check_concat_args", "concat_box_prediction_layers",
    "binary_cross_entropy_with_logits", "smooth_l1_loss", "rpn_loss",
    "filter_proposals",
    "RegionProposalNetwork",
]

MASK_RCNN_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
"""torchvision's Mask R-CNN anchor sizes: one size per FPN level ``'0'..'3'``, ``'pool'``."""

MASK_RCNN_ASPECT_RATIOS: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),) * 5
"""torchvision's Mask R-CNN aspect ratios (height / width), the same three on every level."""

BELOW_LOW_THRESHOLD = -1
"""Matcher code for an anchor whose best IoU is below the low threshold (background)."""

BETWEEN_THRESHOLDS = -2
"""Matcher code for an anchor whose best IoU lies in ``[low, high)`` (ignored by the loss)."""


# -- anchors ---------------------------------------------------------------------------------------

# @export notebooks/05_rpn.ipynb: cell_anchors (edit the notebook; tools/nb.py export writes this)
def cell_anchors(sizes, aspect_ratios, dtype=torch.float32, device="cpu"):
    """The zero-centred anchors of one feature-map cell: for every ratio r = h / w and size s, a box
    s / sqrt(r) wide and s * sqrt(r) tall, corners rounded as torchvision rounds them (torch.round,
    halves to even). -> Tensor[R*S, 4], ratio-major."""
    sizes, aspect_ratios = check_positive_numbers(sizes, "sizes"), check_positive_numbers(aspect_ratios, "aspect_ratios")
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)           # [S]
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)   # [R]
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)                # [R*S], ratio-major
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()           # [R*S, 4]
# @end export cell_anchors


def check_grid_args(grid_sizes: Sequence[Sequence[int]], strides: Sequence[Sequence[int]],
                    cell_anchors_per_level: Sequence[Tensor]) -> None:
    """The argument checks of :func:`grid_anchors`, in one call.

    Checks that the three lists have one entry per level, and, level by level, that ``grid_sizes[l]``
    and ``strides[l]`` are pairs ``(y, x)`` and ``cell_anchors_per_level[l]`` a floating-point
    ``Tensor[A_l, 4]``. Raises ``ValueError`` / ``TypeError`` naming the argument and the level.
    """
    if not (len(grid_sizes) == len(strides) == len(cell_anchors_per_level)):
        raise ValueError(f"grid_sizes, strides and cell_anchors_per_level must have one entry per level, "
                         f"got {len(grid_sizes)}, {len(strides)} and {len(cell_anchors_per_level)}")
    for level, (size, stride, base) in enumerate(zip(grid_sizes, strides, cell_anchors_per_level)):
        if len(size) != 2 or len(stride) != 2:
            raise ValueError(f"grid_sizes[{level}] and strides[{level}] must be pairs (y, x), got {size} and {stride}")
        check_boxes(base, f"cell_anchors_per_level[{level}]")


# @export notebooks/05_rpn.ipynb: grid_anchors (edit the notebook; tools/nb.py export writes this)
def grid_anchors(grid_sizes, strides, cell_anchors_per_level):
    """Each level's cell anchors slid over its feature map: on a level of stride (sy, sx) the anchors of
    cell (y, x) are shifted by (x * sx, y * sy). One entry per level: grid_sizes (H_l, W_l), strides
    (sy, sx), cell anchors [A_l, 4] -> list of Tensor[H_l * W_l * A_l, 4], ordered row y, column x, anchor a."""
    check_grid_args(grid_sizes, strides, cell_anchors_per_level)
    anchors = []
    for (gh, gw), (sh, sw), base in zip(grid_sizes, strides, cell_anchors_per_level):   # base: [A, 4]
        ys = torch.arange(0, int(gh), dtype=torch.int32, device=base.device) * int(sh)   # [gh]
        xs = torch.arange(0, int(gw), dtype=torch.int32, device=base.device) * int(sw)   # [gw]
        ys, xs = torch.meshgrid(ys, xs, indexing="ij")                                   # [gh, gw] each
        xs, ys = xs.reshape(-1), ys.reshape(-1)                                          # [gh*gw]
        shifts = torch.stack([xs, ys, xs, ys], dim=1)                                    # [gh*gw, 4]
        anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))           # [gh*gw*A, 4]
    return anchors
# @end export grid_anchors


class AnchorGenerator(nn.Module):
    """Anchors for a batch of images and its feature maps; mirrors torchvision's ``AnchorGenerator``.

    Args:
        sizes (tuple of tuples): anchor sizes per level, e.g. :data:`MASK_RCNN_ANCHOR_SIZES`.
        aspect_ratios (tuple of tuples): height / width ratios per level.

    Call ``generator(image_list, feature_maps)`` with an ``ImageList`` (anything with ``.tensors``
    ``Tensor[N, C, H, W]`` and ``.image_sizes``) and a list of ``Tensor[N, C_l, H_l, W_l]``. The
    stride of a level is ``H // H_l`` and ``W // W_l`` of the *padded batch* (integer division, as in
    torchvision; exact only when the image size is a multiple of every stride, which
    ``GeneralizedRCNNTransform`` guarantees by padding to a multiple of 32).

    Returns:
        list (one per image) of Tensor[sum_l H_l * W_l * A_l, 4] (all images get the same anchors).
    """

    def __init__(self, sizes: Sequence[Sequence[float]] = MASK_RCNN_ANCHOR_SIZES,
                 aspect_ratios: Sequence[Sequence[float]] = MASK_RCNN_ASPECT_RATIOS) -> None:
        super().__init__()
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) == 0:
            raise TypeError(f"sizes must be a tuple of tuples (one per level), got {sizes!r}")
        if isinstance(aspect_ratios, (str, bytes)) or not isinstance(aspect_ratios, Sequence):
            raise TypeError(f"aspect_ratios must be a tuple of tuples (one per level), got {aspect_ratios!r}")
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"sizes and aspect_ratios must have one entry per level, "
                             f"got {len(sizes)} and {len(aspect_ratios)}")
        self.sizes = tuple(check_positive_numbers(s, f"sizes[{i}]") for i, s in enumerate(sizes))
        self.aspect_ratios = tuple(check_positive_numbers(r, f"aspect_ratios[{i}]") for i, r in enumerate(aspect_ratios))
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self) -> list[int]:
        """``A_l = len(sizes[l]) * len(aspect_ratios[l])`` per level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_list: Any, feature_maps: Sequence[Tensor]) -> list[Tensor]:
        tensors = getattr(image_list, "tensors", None)
        if not isinstance(tensors, Tensor) or tensors.dim() != 4:
            raise TypeError("image_list must be an ImageList (with .tensors Tensor[N, C, H, W] and .image_sizes)")
        if isinstance(feature_maps, Tensor) or not isinstance(feature_maps, Sequence):
            raise TypeError(f"feature_maps must be a list of Tensor[N, C, H_l, W_l], got {type(feature_maps).__name__}")
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(f"this generator has {len(self.cell_anchors)} levels of anchors, "
                             f"got {len(feature_maps)} feature maps")
        for i, f in enumerate(feature_maps):
            if not isinstance(f, Tensor) or f.dim() != 4:
                raise ValueError(f"feature_maps[{i}] must be a Tensor[N, C, H, W]")
        image_h, image_w = tensors.shape[-2:]
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        for i, (gh, gw) in enumerate(grid_sizes):
            if gh == 0 or gw == 0 or gh > image_h or gw > image_w:
                raise ValueError(f"feature_maps[{i}] is {gh}x{gw}: it must be non-empty and no larger "
                                 f"than the image ({image_h}x{image_w})")
        strides = [(image_h // gh, image_w // gw) for gh, gw in grid_sizes]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        self.cell_anchors = [a.to(dtype=dtype, device=device) for a in self.cell_anchors]
        per_level = grid_anchors(grid_sizes, strides, self.cell_anchors)
        all_levels = torch.cat(per_level)
        return [all_levels.clone() for _ in range(len(image_list.image_sizes))]


# -- IoU and matching -----------------------------------------------------------------------------

def check_match_args(match_quality_matrix: Tensor, high_threshold: float = 0.7, low_threshold: float = 0.3,
                     allow_low_quality_matches: bool = True) -> tuple[float, float]:
    """The argument checks of :func:`match_anchors`, in one call; returns ``(high, low)`` as Python floats.

    Checks, in this order: ``match_quality_matrix`` is a ``Tensor[M, N]``; both thresholds are finite
    numbers with ``low <= high``; ``allow_low_quality_matches`` is a bool; and neither ``M`` nor ``N``
    is 0 (torchvision's message: there is nothing to match). Raises ``TypeError`` / ``ValueError``.
    """
    if not isinstance(match_quality_matrix, torch.Tensor) or match_quality_matrix.dim() != 2:
        raise TypeError("match_quality_matrix must be a Tensor[M, N] (M ground-truth boxes, N anchors)")
    high = check_number(high_threshold, "high_threshold")
    low = check_number(low_threshold, "low_threshold")
    if low > high:
        raise ValueError(f"low_threshold ({low}) must be <= high_threshold ({high})")
    if not isinstance(allow_low_quality_matches, bool):
        raise TypeError("allow_low_quality_matches must be a bool")
    if 0 in match_quality_matrix.shape:
        raise ValueError(f"No {'ground-truth' if match_quality_matrix.shape[0] == 0 else 'proposal'} boxes "
                         f"available for one of the images during training")
    return high, low


# @export notebooks/05_rpn.ipynb: match_anchors (edit the notebook; tools/nb.py export writes this)
def match_anchors(match_quality_matrix, high_threshold=0.7, low_threshold=0.3, allow_low_quality_matches=True):
    """For each anchor, the index of its best ground-truth box, or BELOW_LOW_THRESHOLD (-1, background) or
    BETWEEN_THRESHOLDS (-2, ignored): torchvision's Matcher. match_quality_matrix[M boxes, N anchors] of
    IoUs -> int64 [N]. allow_low_quality_matches: every box also claims its best anchor(s), ties included."""
    high, low = check_match_args(match_quality_matrix, high_threshold, low_threshold, allow_low_quality_matches)
    best_iou, best_gt = match_quality_matrix.max(dim=0)                     # [N] each: per anchor, best IoU and box
    matches = best_gt.clone()
    matches[best_iou < low] = BELOW_LOW_THRESHOLD                           # -1: background
    matches[(best_iou >= low) & (best_iou < high)] = BETWEEN_THRESHOLDS     # -2: ignored
    if allow_low_quality_matches:
        best_per_gt = match_quality_matrix.max(dim=1).values                # [M]: per box, its best IoU with any anchor
        _, claimed = torch.where(match_quality_matrix == best_per_gt[:, None])   # every (box, anchor) pair at that value
        matches[claimed] = best_gt[claimed]                                 # the anchor takes ITS best box
    return matches
# @end export match_anchors


def _gt_boxes_of(target: Any, i: int) -> Tensor:
    boxes = target["boxes"] if isinstance(target, Mapping) else target
    check_boxes(boxes, f"targets[{i}]['boxes']")
    return boxes


def assign_targets_to_anchors(anchors: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor] | Tensor],
                              fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3
                              ) -> tuple[list[Tensor], list[Tensor]]:
    """Label every anchor 1 (object), 0 (background) or -1 (ignored) and give it a box to regress to.

    An image without ground truth labels all its anchors 0 and gets zero boxes as targets (as in
    torchvision: their deltas are ``-inf`` but no positive anchor ever uses them).

    Args:
        anchors (list of Tensor[A, 4]): anchors per image.
        targets (list of dict with ``"boxes"`` Tensor[M_i, 4], or list of Tensor[M_i, 4]).
        fg_iou_thresh, bg_iou_thresh (float): the matcher's high and low thresholds.

    Returns:
        labels (list of Tensor[A] float32), matched_gt_boxes (list of Tensor[A, 4]).
    """
    if isinstance(anchors, Tensor) or not isinstance(anchors, Sequence):
        raise TypeError("anchors must be a list of Tensor[A, 4] (one per image)")
    if isinstance(targets, (Tensor, Mapping)) or not isinstance(targets, Sequence):
        raise TypeError("targets must be a list (one per image) of dicts with 'boxes' or of Tensor[M, 4]")
    if len(anchors) != len(targets):
        raise ValueError(f"anchors and targets must have one entry per image, got {len(anchors)} and {len(targets)}")
    labels, matched_gt_boxes = [], []
    for i, (anchors_i, target) in enumerate(zip(anchors, targets)):
        check_boxes(anchors_i, f"anchors[{i}]")
        gt_boxes = _gt_boxes_of(target, i)
        if gt_boxes.numel() == 0:
            matched = torch.zeros(anchors_i.shape, dtype=torch.float32, device=anchors_i.device)
            labels_i = torch.zeros((anchors_i.shape[0],), dtype=torch.float32, device=anchors_i.device)
        else:
            idx = match_anchors(box_iou(gt_boxes, anchors_i), fg_iou_thresh, bg_iou_thresh, True)  # [A]
            matched = gt_boxes.index_select(0, idx.clamp(min=0))                # [A, 4] ((*) in helpers.boxes)
            labels_i = (idx >= 0).to(torch.float32)                             # [A]
            labels_i[idx == BELOW_LOW_THRESHOLD] = 0.0
            labels_i[idx == BETWEEN_THRESHOLDS] = -1.0
        labels.append(labels_i)
        matched_gt_boxes.append(matched)
    return labels, matched_gt_boxes


# -- sampling ---------------------------------------------------------------------------------------

# @export notebooks/05_rpn.ipynb: sample_one_image (edit the notebook; tools/nb.py export writes this)
def sample_one_image(labels, batch_size_per_image=256, positive_fraction=0.5):
    """One image's draw of torchvision's BalancedPositiveNegativeSampler: labels[A] (1 positive, 0 negative,
    -1 ignored) -> (indices of the sampled positives, of the sampled negatives), positives drawn first."""
    positive = torch.where(labels >= 1)[0]
    negative = torch.where(labels == 0)[0]
    num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
    num_neg = min(negative.numel(), batch_size_per_image - num_pos)
    pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
    neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
    return pos, neg
# @end export sample_one_image


def sample_balanced(labels: Sequence[Tensor], batch_size_per_image: int = 256,
                    positive_fraction: float = 0.5) -> tuple[list[Tensor], list[Tensor]]:
    """Pick at most ``batch_size_per_image`` anchors per image, at most a ``positive_fraction`` of them positive.

    Per image: ``num_pos = min(#positives, int(batch_size_per_image * positive_fraction))``, then
    ``num_neg = min(#negatives, batch_size_per_image - num_pos)`` (negatives fill the places that
    positives leave free). Which ones: the first ``num_pos`` of ``torch.randperm(#positives)`` and the
    first ``num_neg`` of ``torch.randperm(#negatives)``, drawn in that order, image by image, from
    torch's global generator: seed it, and the draw is torchvision's draw. Each image's draw is
    :func:`sample_one_image` (notebook 05); this function checks the arguments and turns its indices
    into torchvision's masks.

    Args:
        labels (list of Tensor[A]): per anchor ``>= 1`` positive, ``0`` negative, ``-1`` ignored.
        batch_size_per_image (int): anchors per image that enter the loss.
        positive_fraction (float): in ``[0, 1]``.

    Returns:
        pos_masks, neg_masks: lists of Tensor[A] uint8, 1 where an anchor was picked.
    """
    if isinstance(labels, Tensor) or not isinstance(labels, Sequence):
        raise TypeError("labels must be a list of Tensor[A] (one per image)")
    batch = check_int(batch_size_per_image, "batch_size_per_image", minimum=0)
    fraction = check_number(positive_fraction, "positive_fraction", 0.0, 1.0)
    pos_masks, neg_masks = [], []
    for i, labels_i in enumerate(labels):
        if not isinstance(labels_i, Tensor) or labels_i.dim() != 1:
            raise ValueError(f"labels[{i}] must be a Tensor[A]")
        pos, neg = sample_one_image(labels_i, batch, fraction)                  # indices, drawn in that order
        pos_mask = torch.zeros_like(labels_i, dtype=torch.uint8)
        neg_mask = torch.zeros_like(labels_i, dtype=torch.uint8)
        pos_mask[pos] = 1
        neg_mask[neg] = 1
        pos_masks.append(pos_mask)
        neg_masks.append(neg_mask)
    return pos_masks, neg_masks


# -- head outputs and losses ----------------------------------------------------------------------

def check_concat_args(box_cls: Sequence[Tensor], box_regression: Sequence[Tensor]) -> None:
    """The argument checks of :func:`concat_box_prediction_layers`, in one call.

    Checks that both lists hold one tensor per level (at least one level) and, level by level, that
    ``box_cls[l]`` is ``[N, A*C, H, W]`` and ``box_regression[l]`` ``[N, A*4, H, W]`` with the same
    ``N``, ``H``, ``W``, ``A >= 1``, and ``A*C`` a multiple of ``A``. Raises ``ValueError`` naming the level.
    """
    if len(box_cls) != len(box_regression) or len(box_cls) == 0:
        raise ValueError(f"box_cls and box_regression must hold one tensor per level, "
                         f"got {len(box_cls)} and {len(box_regression)}")
    for level, (cls, reg) in enumerate(zip(box_cls, box_regression)):
        if cls.dim() != 4 or reg.dim() != 4 or reg.shape[1] % 4 or cls.shape[0] != reg.shape[0] \
                or cls.shape[2:] != reg.shape[2:]:
            raise ValueError(f"level {level}: box_cls must be [N, A*C, H, W] and box_regression [N, A*4, H, W] "
                             f"with the same N, H, W; got {tuple(cls.shape)} and {tuple(reg.shape)}")
        axc, a = cls.shape[1], reg.shape[1] // 4
        if a == 0 or axc % a:
            raise ValueError(f"level {level}: box_cls has {axc} channels, not a multiple of {a} anchors")


# @export notebooks/05b_rpn_losses_proposals.ipynb: concat_box_prediction_layers (edit the notebook; tools/nb.py export writes this)
def concat_box_prediction_layers(box_cls, box_regression):
    """The head's per-level maps box_cls[N, A*C, H, W] (C = 1 for the RPN) and box_regression[N, A*4, H, W]
    flattened into the anchors' order (image, level, row, column, anchor) -> [N * sum HWA, C], [N * sum HWA, 4]."""
    check_concat_args(box_cls, box_regression)
    cls_flat, reg_flat = [], []
    for cls, reg in zip(box_cls, box_regression):                              # one level at a time
        n, axc, h, w = cls.shape
        a = reg.shape[1] // 4                                                  # anchors per cell
        c = axc // a                                                           # classes (1 for the RPN)
        cls_flat.append(cls.view(n, a, c, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, c))   # [N, H*W*A, C]
        reg_flat.append(reg.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))   # [N, H*W*A, 4]
    return torch.cat(cls_flat, dim=1).flatten(0, -2), torch.cat(reg_flat, dim=1).reshape(-1, 4)
# @end export concat_box_prediction_layers


# @export notebooks/05b_rpn_losses_proposals.ipynb: binary_cross_entropy_with_logits (edit the notebook; tools/nb.py export writes this)
def binary_cross_entropy_with_logits(logits, targets):
    """Mean of -[y log s(x) + (1 - y) log(1 - s(x))] over logits x and targets y in [0, 1] (s = sigmoid),
    written stably as (1 - y) x - log s(x) with log s(x) = min(x, 0) - log1p(exp(-|x|)). NaN for none."""
    log_sigmoid = torch.clamp(logits, max=0) - torch.log1p(torch.exp(-logits.abs()))   # [K]
    return ((1 - targets) * logits - log_sigmoid).mean()


def smooth_l1_loss(input, target, beta=1.0 / 9):
    """Sum of 0.5 z**2 / beta where z = |input - target| < beta, else z - 0.5 beta: quadratic near zero,
    linear far away (beta = 1/9 for the RPN). The sum, not the mean."""
    beta = check_number(beta, "beta", 0.0, minimum_open=True)
    z = (input - target).abs()
    return torch.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta).sum()
# @end export binary_cross_entropy_with_logits


def rpn_loss(objectness: Tensor, pred_bbox_deltas: Tensor, labels: Sequence[Tensor],
             regression_targets: Sequence[Tensor], pos_masks: Sequence[Tensor],
             neg_masks: Sequence[Tensor], beta: float = 1.0 / 9) -> tuple[Tensor, Tensor]:
    """The two RPN losses over the sampled anchors (torchvision's ``compute_loss`` after sampling).

    - objectness: mean binary cross-entropy with logits over all sampled anchors (positives and
      negatives), targets 1 / 0;
    - box: smooth L1 (``beta``) summed over the 4 deltas of the sampled *positive* anchors, divided
      by the number of sampled anchors (positives + negatives, not positives only).

    Args:
        objectness (Tensor[sum A, 1] or Tensor[sum A]): logits, all images stacked.
        pred_bbox_deltas (Tensor[sum A, 4]): predicted deltas.
        labels (list of Tensor[A_i]): 1 / 0 / -1 per anchor.
        regression_targets (list of Tensor[A_i, 4]): encoded matched boxes.
        pos_masks, neg_masks (lists of Tensor[A_i]): from :func:`sample_balanced`.
        beta (float): the smooth L1 switch point.

    Returns:
        (objectness_loss, box_loss): two Tensor[].
    """
    pos = torch.where(torch.cat(list(pos_masks), dim=0))[0]                     # [P]
    neg = torch.where(torch.cat(list(neg_masks), dim=0))[0]                     # [Q]
    sampled = torch.cat([pos, neg], dim=0)                                      # [P+Q]
    objectness = objectness.flatten()
    labels_all = torch.cat(list(labels), dim=0)
    targets_all = torch.cat(list(regression_targets), dim=0)
    if not (objectness.shape[0] == labels_all.shape[0] == pred_bbox_deltas.shape[0] == targets_all.shape[0]):
        raise ValueError(f"objectness ({objectness.shape[0]}), pred_bbox_deltas ({pred_bbox_deltas.shape[0]}), "
                         f"labels ({labels_all.shape[0]}) and regression_targets ({targets_all.shape[0]}) "
                         f"must cover the same anchors")
    # the positive anchors' rows, by index_select (see the (*) note in helpers.boxes)
    box_loss = smooth_l1_loss(pred_bbox_deltas.index_select(0, pos), targets_all.index_select(0, pos),
                              beta) / sampled.numel()
    objectness_loss = binary_cross_entropy_with_logits(objectness[sampled], labels_all[sampled])
    return objectness_loss, box_loss


# -- from deltas to proposals ---------------------------------------------------------------------

def filter_proposals(proposals: Tensor, objectness: Tensor, image_shapes: Sequence[tuple[int, int]],
                     num_anchors_per_level: Sequence[int], pre_nms_top_n: int = 1000, post_nms_top_n: int = 1000,
                     nms_thresh: float = 0.7, score_thresh: float = 0.0, min_size: float = 1e-3
                     ) -> tuple[list[Tensor], list[Tensor]]:
    """From every decoded anchor to a few hundred proposals per image (torchvision's order of steps).

    Per image: (1) on each level keep the ``pre_nms_top_n`` highest objectness logits
    (``torch.topk``, as torchvision: which of several *equal* logits make the cut is up to
    ``topk``, the same call on both sides); (2) scores = sigmoid(logits); (3) clip boxes to the image; (4) drop boxes with
    a side ``< min_size``; (5) drop scores ``< score_thresh``; (6) NMS per level
    (:func:`helpers.boxes.batched_nms` with the level as category); (7) keep the first ``post_nms_top_n``.

    Args:
        proposals (Tensor[N, A, 4]): decoded boxes of all anchors of N images.
        objectness (Tensor[N * A, 1] or Tensor[N, A]): logits in the same order.
        image_shapes (list of (H, W)): the size of each image (before padding).
        num_anchors_per_level (list of int): summing to A.
        pre_nms_top_n, post_nms_top_n (int): torchvision uses 2000/2000 in training and 1000/1000 at
            test time.
        nms_thresh, score_thresh, min_size: as in torchvision (0.7, 0.0, 1e-3).

    Returns:
        boxes (list of Tensor[K_i, 4]), scores (list of Tensor[K_i]) by decreasing score.
    """
    if not isinstance(proposals, Tensor) or proposals.dim() != 3 or proposals.shape[2] != 4:
        raise ValueError("proposals must be a Tensor[N, A, 4]")
    num_images, num_anchors = proposals.shape[:2]
    if not isinstance(objectness, Tensor) or objectness.numel() != num_images * num_anchors:
        raise ValueError(f"objectness must hold one logit per proposal ({num_images} x {num_anchors})")
    if len(image_shapes) != num_images:
        raise ValueError(f"image_shapes must have one (H, W) per image ({num_images}), got {len(image_shapes)}")
    per_level = [check_int(n, "num_anchors_per_level entries", minimum=0) for n in num_anchors_per_level]
    if sum(per_level) != num_anchors:
        raise ValueError(f"num_anchors_per_level must sum to the number of anchors per image ({num_anchors}), "
                         f"got {sum(per_level)}")
    pre_n = check_int(pre_nms_top_n, "pre_nms_top_n", minimum=1)
    post_n = check_int(post_nms_top_n, "post_nms_top_n", minimum=1)
    device = proposals.device
    objectness = objectness.detach().reshape(num_images, -1)                    # [N, A]
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=device)
                        for i, n in enumerate(per_level)]).reshape(1, -1).expand_as(objectness)  # [N, A]

    top_idx, offset = [], 0
    for ob in objectness.split(per_level, dim=1):                               # [N, A_l]
        k = min(pre_n, ob.shape[1])
        top_idx.append(ob.topk(k, dim=1).indices + offset)                      # [N, k]
        offset += ob.shape[1]
    top_idx = torch.cat(top_idx, dim=1)                                         # [N, sum k]
    batch_idx = torch.arange(num_images, device=device)[:, None]
    # objectness[batch_idx, top_idx] etc., as gathers (see the (*) note in helpers.boxes)
    objectness, levels = objectness.gather(1, top_idx), levels.gather(1, top_idx)             # [N, sum k]
    proposals = proposals.gather(1, top_idx[:, :, None].expand(-1, -1, 4))                    # [N, sum k, 4]
    probs = torch.sigmoid(objectness)

    final_boxes, final_scores = [], []
    for boxes, scores, lvl, shape in zip(proposals, probs, levels, image_shapes):
        boxes = clip_boxes_to_image(boxes, shape)
        keep = remove_small_boxes(boxes, min_size)
        boxes, scores, lvl = boxes.index_select(0, keep), scores[keep], lvl[keep]   # (*) in helpers.boxes
        keep = torch.where(scores >= score_thresh)[0]
        boxes, scores, lvl = boxes.index_select(0, keep), scores[keep], lvl[keep]
        keep = batched_nms(boxes, scores, lvl, nms_thresh)[:post_n]
        final_boxes.append(boxes.index_select(0, keep))
        final_scores.append(scores[keep])
    return final_boxes, final_scores


# -- the whole module ------------------------------------------------------------------------------

class RegionProposalNetwork(nn.Module):
    """The RPN assembled from the functions above; same constructor and ``forward`` as torchvision's.

    Args:
        anchor_generator: an :class:`AnchorGenerator` (or torchvision's).
        head: a module mapping a list of feature maps to ``(objectness list, deltas list)``, e.g.
            ``torchvision.models.detection.rpn.RPNHead``.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction: training settings.
        pre_nms_top_n, post_nms_top_n (dict with ``"training"`` and ``"testing"`` ints).
        nms_thresh, score_thresh: inference settings.

    ``forward(images, features, targets=None)`` returns ``(boxes per image, losses)``; the losses
    dict (``loss_objectness``, ``loss_rpn_box_reg``) is empty outside training.

    Attributes:
        num_sampled_anchors: after a training ``forward``, the number of anchors sampled over the batch
            (positives and negatives), the count both losses divide by (``Tensor[]`` int64 on the
            anchors' device). :class:`helpers.maskrcnn.SeriesMaskRCNN` reads it to normalise its losses
            by the global batch under DistributedDataParallel.
    """

    def __init__(self, anchor_generator: nn.Module, head: nn.Module, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: Mapping[str, int] | None = None, post_nms_top_n: Mapping[str, int] | None = None,
                 nms_thresh: float = 0.7, score_thresh: float = 0.0) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.fg_iou_thresh = check_number(fg_iou_thresh, "fg_iou_thresh")
        self.bg_iou_thresh = check_number(bg_iou_thresh, "bg_iou_thresh")
        if self.bg_iou_thresh > self.fg_iou_thresh:
            raise ValueError(f"bg_iou_thresh ({bg_iou_thresh}) must be <= fg_iou_thresh ({fg_iou_thresh})")
        self.batch_size_per_image = check_int(batch_size_per_image, "batch_size_per_image", minimum=0)
        self.positive_fraction = check_number(positive_fraction, "positive_fraction", 0.0, 1.0)
        self._pre_nms_top_n = dict(pre_nms_top_n or {"training": 2000, "testing": 1000})
        self._post_nms_top_n = dict(post_nms_top_n or {"training": 2000, "testing": 1000})
        for name, d in (("pre_nms_top_n", self._pre_nms_top_n), ("post_nms_top_n", self._post_nms_top_n)):
            if set(d) != {"training", "testing"}:
                raise ValueError(f"{name} must be a dict with keys 'training' and 'testing', got {sorted(d)}")
        self.nms_thresh = check_number(nms_thresh, "nms_thresh")
        self.score_thresh = check_number(score_thresh, "score_thresh")
        self.min_size = 1e-3
        self.num_sampled_anchors: Tensor | None = None

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def forward(self, images: Any, features: Mapping[str, Tensor],
                targets: Sequence[Mapping[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        features_list = list(features.values())
        objectness, pred_bbox_deltas = self.head(features_list)
        anchors = self.anchor_generator(images, features_list)
        num_images = len(anchors)
        num_anchors_per_level = [o[0].numel() for o in objectness]             # A_l * H_l * W_l
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors).view(num_images, -1, 4)
        boxes, _ = filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level,
                                    self.pre_nms_top_n(), self.post_nms_top_n(), self.nms_thresh,
                                    self.score_thresh, self.min_size)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None")
            labels, matched_gt_boxes = assign_targets_to_anchors(anchors, targets, self.fg_iou_thresh,
                                                                 self.bg_iou_thresh)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            pos, neg = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction)
            loss_objectness, loss_box = rpn_loss(objectness, pred_bbox_deltas, labels, regression_targets, pos, neg)
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_box}
            # the count both losses divide by (SeriesMaskRCNN reads it under DDP: see its share_of_global_batch)
            self.num_sampled_anchors = sum(p.sum() + n.sum() for p, n in zip(pos, neg))
        return boxes, losses

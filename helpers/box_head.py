"""The box head of Faster/Mask R-CNN: two FC layers, class scores and per-class deltas, its losses, and post-processing.

Written in the open in ``notebooks/06_box_head.ipynb`` and checked there (and in
``tests/test_box_head.py``) against the torchvision code each piece mirrors:

======================================  =================================================================
here                                    torchvision (``torchvision.models.detection``)
======================================  =================================================================
:class:`TwoMLPHead`                     ``faster_rcnn.TwoMLPHead`` (same state dict)
:class:`FastRCNNPredictor`              ``faster_rcnn.FastRCNNPredictor`` (same state dict)
:func:`assign_targets_to_proposals`     ``roi_heads.RoIHeads.assign_targets_to_proposals``
:func:`select_training_samples`         ``roi_heads.RoIHeads.select_training_samples``
:func:`fastrcnn_loss`                   ``roi_heads.fastrcnn_loss``
:func:`postprocess_detections`          ``roi_heads.RoIHeads.postprocess_detections``
======================================  =================================================================

The pieces shared with the region proposal network are imported: the matcher and the balanced
sampler from :mod:`helpers.rpn` (notebook 05), IoU, clipping, small-box removal and NMS from
:mod:`helpers.boxes`, box encoding from :mod:`helpers.box_coder`; none of them calls the torchvision function it rebuilds.

Conventions: boxes are ``(x1, y1, x2, y2)`` in pixels of the resized image, ``x`` to the right,
``y`` **downwards**, ``(0, 0)`` the top-left pixel, an image of size ``(H, W)`` spanning
``[0, W] x [0, H]``. ``num_classes`` counts the background: label 0 is the background and labels
``1 .. num_classes - 1`` are objects (torchvision's convention; the paper's K is ``num_classes - 1``).
Like torchvision, the predictor outputs 4 deltas for *every* class, background included
(``4 * num_classes``, the paper's ``4K`` plus 4 that are never trained or used).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.box_coder import DEFAULT_BBOX_XFORM_CLIP, BoxCoder, check_weights
from helpers.boxes import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from helpers.checks import check_boxes, check_int, check_list, check_number, check_tensor
from helpers.rpn import BELOW_LOW_THRESHOLD, BETWEEN_THRESHOLDS, match_anchors, sample_balanced

__all__ = [
    "BOX_HEAD_DEFAULTS",
    "TwoMLPHead",
    "FastRCNNPredictor",
    "assign_targets_to_proposals",
    "select_training_samples",
    "smooth_l1",
    "cross_entropy",
    "fastrcnn_loss",
    "postprocess_detections",
]

BOX_HEAD_DEFAULTS: dict[str, Any] = {
    "representation_size": 1024,
    "output_size": 7,
    "sampling_ratio": 2,
    "fg_iou_thresh": 0.5,
    "bg_iou_thresh": 0.5,
    "batch_size_per_image": 512,
    "positive_fraction": 0.25,
    "bbox_reg_weights": (10.0, 10.0, 5.0, 5.0),
    "beta": 1.0 / 9,
    "score_thresh": 0.05,
    "nms_thresh": 0.5,
    "detections_per_img": 100,
}
"""torchvision's defaults for the box branch of ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn``."""

PER_IMAGE = "a list with one entry per image"
"""How the per-image list arguments read in error messages."""


# -- the two modules ----------------------------------------------------------------------------------
class TwoMLPHead(nn.Module):
    """Flatten each RoI's pooled features, then two fully connected layers with ReLU (fc6, fc7).

    Same parameters (``fc6.weight``, ``fc6.bias``, ``fc7.weight``, ``fc7.bias``) as torchvision's
    ``TwoMLPHead``, so state dicts load either way.

    Args:
        in_channels (int): length of a flattened RoI feature: ``C * PH * PW`` (256 * 7 * 7 = 12544).
        representation_size (int): width of both layers (1024 in torchvision).
    """

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.representation_size = check_int(representation_size, "representation_size", minimum=1)
        self.fc6 = nn.Linear(self.in_channels, self.representation_size)
        self.fc7 = nn.Linear(self.representation_size, self.representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor[K, C, PH, PW] or Tensor[K, C*PH*PW]). Returns: Tensor[K, representation_size]."""
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise TypeError(f"x must be a Tensor[K, C, PH, PW] (RoI features), got "
                            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        x = x.flatten(start_dim=1)                                               # [K, C*PH*PW]
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have C * PH * PW = in_channels = {self.in_channels} numbers per RoI, "
                             f"got {x.shape[1]}")
        x = F.relu(self.fc6(x))                                                  # [K, R]
        return F.relu(self.fc7(x))                                               # [K, R]

    @classmethod
    def from_torchvision(cls, module: nn.Module) -> "TwoMLPHead":
        """A copy of a ``torchvision.models.detection.faster_rcnn.TwoMLPHead`` (its state dict)."""
        from torchvision.models.detection.faster_rcnn import TwoMLPHead as TorchvisionTwoMLPHead

        if not isinstance(module, TorchvisionTwoMLPHead):
            raise TypeError(f"module must be torchvision's TwoMLPHead, got {type(module).__name__}")
        head = cls(module.fc6.in_features, module.fc6.out_features)
        head.load_state_dict(module.state_dict())
        return head.to(module.fc6.weight.device, module.fc6.weight.dtype)


class FastRCNNPredictor(nn.Module):
    """Class scores and per-class box deltas from the box representation.

    ``cls_score`` gives ``num_classes`` logits (background first; softmax gives p in R^(K+1));
    ``bbox_pred`` gives ``4 * num_classes`` deltas ``(dx, dy, dw, dh)``, class ``c`` at columns
    ``4c .. 4c+3``. The 4 deltas of the background (class 0) exist, as in torchvision, but no loss
    trains them and post-processing drops them.

    Args:
        in_channels (int): the representation size (1024).
        num_classes (int): number of classes *including* the background (91 for COCO, 4 for shapes).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.num_classes = check_int(num_classes, "num_classes", minimum=2)
        self.cls_score = nn.Linear(self.in_channels, self.num_classes)
        self.bbox_pred = nn.Linear(self.in_channels, self.num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (Tensor[K, in_channels] or Tensor[K, in_channels, 1, 1]).

        Returns:
            (scores Tensor[K, num_classes], bbox_deltas Tensor[K, 4 * num_classes]).
        """
        if not isinstance(x, Tensor) or x.dim() not in (2, 4):
            raise TypeError(f"x must be a Tensor[K, {self.in_channels}] (or [K, {self.in_channels}, 1, 1]), got "
                            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if x.dim() == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"x with 4 dimensions must be [K, C, 1, 1], got {tuple(x.shape)}")
        x = x.flatten(start_dim=1)                                               # [K, in_channels]
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have in_channels = {self.in_channels} numbers per RoI, got {x.shape[1]}")
        return self.cls_score(x), self.bbox_pred(x)                              # [K, C], [K, 4C]

    @classmethod
    def from_torchvision(cls, module: nn.Module) -> "FastRCNNPredictor":
        """A copy of a ``torchvision.models.detection.faster_rcnn.FastRCNNPredictor`` (its state dict)."""
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TorchvisionPredictor

        if not isinstance(module, TorchvisionPredictor):
            raise TypeError(f"module must be torchvision's FastRCNNPredictor, got {type(module).__name__}")
        predictor = cls(module.cls_score.in_features, module.cls_score.out_features)
        predictor.load_state_dict(module.state_dict())
        return predictor.to(module.cls_score.weight.device, module.cls_score.weight.dtype)


# -- training targets -----------------------------------------------------------------------------------
def assign_targets_to_proposals(proposals: Sequence[Tensor], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor],
                                fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5
                                ) -> tuple[list[Tensor], list[Tensor]]:
    """Give every proposal a ground-truth box and a class label (0 = background, -1 = ignored).

    Per image: IoU of every ground-truth box with every proposal; each proposal takes its best box
    (:func:`helpers.rpn.match_anchors` *without* low-quality matches). Best IoU ``>= fg_iou_thresh``:
    the class of that box; ``< bg_iou_thresh``: 0 (background); in between (empty with torchvision's
    0.5 / 0.5): -1 (ignored by the sampler). An image without ground truth labels everything 0.

    Args:
        proposals (list of Tensor[N_i, 4]): per image, floating point.
        gt_boxes (list of Tensor[M_i, 4]): per image, same dtype.
        gt_labels (list of Tensor[M_i] int64): per image, classes ``>= 1``.
        fg_iou_thresh, bg_iou_thresh (float): ``0 <= bg <= fg <= 1``.

    Returns:
        (matched_idxs, labels): lists of Tensor[N_i] int64; ``matched_idxs`` is the index of the
        matched box, clamped to ``>= 0`` (background and ignored proposals point at box 0, as in
        torchvision), ``labels`` the class or 0 / -1.
    """
    proposals = check_list(proposals, "proposals", minimum_length=1, what=PER_IMAGE)
    gt_boxes = check_list(gt_boxes, "gt_boxes", minimum_length=1, what=PER_IMAGE)
    gt_labels = check_list(gt_labels, "gt_labels", minimum_length=1, what=PER_IMAGE)
    if not len(proposals) == len(gt_boxes) == len(gt_labels):
        raise ValueError(f"proposals, gt_boxes and gt_labels must have one entry per image, got "
                         f"{len(proposals)}, {len(gt_boxes)} and {len(gt_labels)}")
    fg = check_number(fg_iou_thresh, "fg_iou_thresh", 0.0, 1.0, interval=True)
    bg = check_number(bg_iou_thresh, "bg_iou_thresh", 0.0, 1.0, interval=True)
    if bg > fg:
        raise ValueError(f"bg_iou_thresh ({bg}) must be <= fg_iou_thresh ({fg})")
    matched_idxs, labels = [], []
    for i, (props, boxes, classes) in enumerate(zip(proposals, gt_boxes, gt_labels)):
        check_boxes(props, f"proposals[{i}]")
        check_boxes(boxes, f"gt_boxes[{i}]")
        check_tensor(classes, f"gt_labels[{i}]", 1, shape="[N] of int64 class labels", dtype=torch.int64)
        if classes.shape[0] != boxes.shape[0]:
            raise ValueError(f"gt_labels[{i}] must have one label per box: {classes.shape[0]} labels, "
                             f"{boxes.shape[0]} boxes")
        if boxes.numel() == 0:                                                    # an image of background
            matched = torch.zeros((props.shape[0],), dtype=torch.int64, device=props.device)
            labels_i = torch.zeros((props.shape[0],), dtype=torch.int64, device=props.device)
        else:
            idx = match_anchors(box_iou(boxes, props), fg, bg, allow_low_quality_matches=False)  # [N_i]
            matched = idx.clamp(min=0)                                             # [N_i]
            labels_i = classes[matched].to(torch.int64)                           # [N_i]
            labels_i[idx == BELOW_LOW_THRESHOLD] = 0
            labels_i[idx == BETWEEN_THRESHOLDS] = -1
        matched_idxs.append(matched)
        labels.append(labels_i)
    return matched_idxs, labels


def select_training_samples(proposals: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]],
                            fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                            batch_size_per_image: int = 512, positive_fraction: float = 0.25,
                            bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0)
                            ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
    """The RoIs one training step of the box head sees, with their labels and regression targets.

    Per image, as torchvision's ``RoIHeads.select_training_samples``:

    1. append the ground-truth boxes to the proposals (so every object has at least one perfect
       positive, even when the RPN has not learned anything yet);
    2. :func:`assign_targets_to_proposals`;
    3. sample at most ``batch_size_per_image`` of them, at most ``positive_fraction`` positive
       (:func:`helpers.rpn.sample_balanced`, torch's global generator: seed it to get torchvision's
       draw), kept in index order;
    4. encode each sampled proposal's matched box as deltas with ``bbox_reg_weights``
       (:class:`helpers.box_coder.BoxCoder`). Background proposals get deltas too; the loss ignores them.

    Args:
        proposals (list of Tensor[N_i, 4]): per image.
        targets (list of dict): per image, ``"boxes"`` Tensor[M_i, 4] (floating point) and
            ``"labels"`` Tensor[M_i] int64.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights:
            torchvision's ``box_*`` options (defaults: 0.5, 0.5, 512, 0.25, (10, 10, 5, 5)).

    Returns:
        (proposals, matched_idxs, labels, regression_targets): lists over images of the sampled
        Tensor[S_i, 4], Tensor[S_i] int64, Tensor[S_i] int64 and Tensor[S_i, 4].
    """
    proposals = check_list(proposals, "proposals", minimum_length=1, what=PER_IMAGE)
    targets = check_list(targets, "targets", minimum_length=1, what=PER_IMAGE)
    if len(proposals) != len(targets):
        raise ValueError(f"proposals and targets must have one entry per image, got {len(proposals)} and {len(targets)}")
    for i, t in enumerate(targets):
        if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
        if not isinstance(t["boxes"], Tensor) or not t["boxes"].is_floating_point():
            raise TypeError(f"targets[{i}]['boxes'] must be a floating-point Tensor[M, 4]")
    for i, p in enumerate(proposals):
        check_boxes(p, f"proposals[{i}]")
    batch = check_int(batch_size_per_image, "batch_size_per_image", minimum=1)
    fraction = check_number(positive_fraction, "positive_fraction", 0.0, 1.0, interval=True)
    coder = BoxCoder(check_weights(bbox_reg_weights, "bbox_reg_weights"))

    dtype = proposals[0].dtype
    gt_boxes = [t["boxes"].to(dtype) for t in targets]
    gt_labels = [t["labels"] for t in targets]
    proposals = [torch.cat((p, g)) for p, g in zip(proposals, gt_boxes)]          # step 1
    matched_idxs, labels = assign_targets_to_proposals(proposals, gt_boxes, gt_labels,
                                                       fg_iou_thresh, bg_iou_thresh)  # step 2
    pos_masks, neg_masks = sample_balanced(labels, batch, fraction)             # step 3
    matched_gt_boxes = []
    for i in range(len(proposals)):
        keep = torch.where(pos_masks[i] | neg_masks[i])[0]                       # [S_i], ascending
        # rows of 2-D tensors by index_select, not x[keep]: the same rows (see the (*) note in helpers.boxes)
        proposals[i], labels[i], matched_idxs[i] = proposals[i].index_select(0, keep), labels[i][keep], matched_idxs[i][keep]
        boxes = gt_boxes[i] if gt_boxes[i].numel() else torch.zeros((1, 4), dtype=dtype, device=keep.device)
        matched_gt_boxes.append(boxes.index_select(0, matched_idxs[i]))          # [S_i, 4]
    regression_targets = list(coder.encode(matched_gt_boxes, proposals))         # step 4
    return proposals, matched_idxs, labels, regression_targets


# -- the losses ----------------------------------------------------------------------------------------------
def smooth_l1(x: Tensor, beta: float = 1.0 / 9) -> Tensor:
    """Elementwise smooth L1 (Huber with slope 1): ``0.5 x**2 / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``.

    Quadratic near zero, linear beyond ``beta``; both pieces meet with equal value and slope at ``|x| = beta``.

    Args:
        x (Tensor[...]): differences (prediction - target).
        beta (float): the switch point, ``> 0`` (torchvision's box head: 1/9).

    Returns:
        Tensor[...], same shape.
    """
    beta = check_number(beta, "beta", 0.0, minimum_open=True)
    z = x.abs()
    return torch.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean over rows of ``-log softmax(logits)[label]``, with the max subtracted first for stability.

    Args:
        logits (Tensor[N, C]): unnormalised class scores.
        labels (Tensor[N] int64): in ``[0, C)``.

    Returns:
        Tensor[] (a scalar).
    """
    shifted = logits - logits.max(dim=1, keepdim=True).values                  # [N, C]
    log_probs = shifted - torch.log(torch.exp(shifted).sum(dim=1, keepdim=True))  # [N, C]
    return -log_probs[torch.arange(logits.shape[0], device=logits.device), labels].mean()


def fastrcnn_loss(class_logits: Tensor, box_regression: Tensor, labels: Tensor | Sequence[Tensor],
                  regression_targets: Tensor | Sequence[Tensor], beta: float = 1.0 / 9) -> tuple[Tensor, Tensor]:
    """The box head's two losses, as torchvision's ``fastrcnn_loss``.

    - classification: cross-entropy over the ``num_classes`` scores, averaged over *all* sampled RoIs;
    - box: smooth L1 (``beta``, 1/9) between the 4 deltas *of the true class* and the target, summed
      over the *positive* RoIs (label > 0) and divided by the number of *all* sampled RoIs.

    Args:
        class_logits (Tensor[N, C]): ``C = num_classes`` (background included).
        box_regression (Tensor[N, 4C]): per-class deltas, class ``c`` at columns ``4c .. 4c+3``.
        labels (Tensor[N] int64 or list of Tensor[N_i]): class per sampled RoI, ``0 .. C-1``.
        regression_targets (Tensor[N, 4] or list of Tensor[N_i, 4]): encoded matched boxes.
        beta (float): the smooth L1 switch point.

    Returns:
        (classification_loss, box_loss): two Tensor[].
    """
    class_logits = check_tensor(class_logits, "class_logits", 2, shape="[N, num_classes]", floating=True)
    box_regression = check_tensor(box_regression, "box_regression", 2, shape="[N, 4 * num_classes]", floating=True)
    if not isinstance(labels, Tensor):
        labels = torch.cat(check_list(labels, "labels", minimum_length=1, what=PER_IMAGE), dim=0)
    if not isinstance(regression_targets, Tensor):
        regression_targets = torch.cat(check_list(regression_targets, "regression_targets", minimum_length=1,
                                                  what=PER_IMAGE), dim=0)
    labels = check_tensor(labels, "labels", 1, shape="[N] of int64 class labels", dtype=torch.int64)
    regression_targets = check_boxes(regression_targets, "regression_targets")
    n, num_classes = class_logits.shape
    if n == 0:
        raise ValueError("fastrcnn_loss needs at least one sampled RoI (torchvision would return nan)")
    if box_regression.shape != (n, 4 * num_classes):
        raise ValueError(f"box_regression must have shape [N, 4 * num_classes] = {[n, 4 * num_classes]}, "
                         f"got {list(box_regression.shape)}")
    if labels.shape[0] != n or regression_targets.shape[0] != n:
        raise ValueError(f"labels ({labels.shape[0]}) and regression_targets ({regression_targets.shape[0]}) "
                         f"must have one row per RoI (N = {n})")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"labels must be in [0, {num_classes - 1}] (0 = background), got {labels.unique().tolist()}")

    classification_loss = cross_entropy(class_logits, labels)                   # []
    positive = torch.where(labels > 0)[0]                                         # [P]
    # [P, 4]: the true class's deltas only, i.e. box_regression.reshape(n, num_classes, 4)[positive, labels[positive]]
    # as one index_select of rows (see the (*) note in helpers.boxes)
    deltas = box_regression.reshape(n * num_classes, 4).index_select(0, positive * num_classes + labels[positive])
    box_loss = smooth_l1(deltas - regression_targets.index_select(0, positive), beta).sum() / labels.numel()
    return classification_loss, box_loss


# -- inference -----------------------------------------------------------------------------------------------
def postprocess_detections(class_logits: Tensor, box_regression: Tensor, proposals: Sequence[Tensor],
                           image_shapes: Sequence[Sequence[int]], score_thresh: float = 0.05,
                           nms_thresh: float = 0.5, detections_per_img: int = 100,
                           bbox_reg_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                           bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP
                           ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """From scores and deltas to detections, as torchvision's ``RoIHeads.postprocess_detections``.

    1. softmax over the classes; decode every class's deltas against its proposal;
    2. per image: clip the boxes to the image; drop the background column; every
       (proposal, class) pair becomes a candidate;
    3. keep candidates with score ``> score_thresh``, then those with both sides ``>= 0.01``;
    4. NMS per class (``batched_nms``, IoU ``> nms_thresh`` suppresses); keep the best
       ``detections_per_img``, by decreasing score.

    Args:
        class_logits (Tensor[N, C]): all images' RoIs stacked, ``C = num_classes``.
        box_regression (Tensor[N, 4C]): per-class deltas.
        proposals (list of Tensor[N_i, 4]): the RoIs per image, ``sum N_i = N``.
        image_shapes (list of (H, W)): per image, the size boxes are clipped to.
        score_thresh (float): 0.05. nms_thresh (float): 0.5. detections_per_img (int): 100.
        bbox_reg_weights (4 numbers): (10, 10, 5, 5). bbox_xform_clip (float): ``log(1000/16)``.

    Returns:
        (boxes, scores, labels): lists over images of Tensor[D_i, 4], Tensor[D_i], Tensor[D_i] int64.
    """
    class_logits = check_tensor(class_logits, "class_logits", 2, shape="[N, num_classes]", floating=True)
    box_regression = check_tensor(box_regression, "box_regression", 2, shape="[N, 4 * num_classes]", floating=True)
    proposals = check_list(proposals, "proposals", minimum_length=1, what=PER_IMAGE)
    for i, p in enumerate(proposals):
        check_boxes(p, f"proposals[{i}]")
    image_shapes = check_list(image_shapes, "image_shapes", minimum_length=1, what=PER_IMAGE)
    if len(image_shapes) != len(proposals):
        raise ValueError(f"image_shapes must have one (H, W) per image: {len(image_shapes)} for {len(proposals)} images")
    for i, s in enumerate(image_shapes):
        if isinstance(s, (str, bytes)) or not isinstance(s, Sequence) or len(s) != 2:
            raise TypeError(f"image_shapes[{i}] must be a (height, width) pair, got {s!r}")
    n, num_classes = class_logits.shape
    if num_classes < 2:
        raise ValueError(f"class_logits must have at least 2 columns (background + one class), got {num_classes}")
    if sum(p.shape[0] for p in proposals) != n:
        raise ValueError(f"class_logits has {n} rows but the proposals hold {sum(p.shape[0] for p in proposals)} boxes")
    if box_regression.shape != (n, 4 * num_classes):
        raise ValueError(f"box_regression must have shape [N, 4 * num_classes] = {[n, 4 * num_classes]}, "
                         f"got {list(box_regression.shape)}")
    score_thresh = check_number(score_thresh, "score_thresh", 0.0, 1.0, interval=True)
    nms_thresh = check_number(nms_thresh, "nms_thresh", 0.0, 1.0, interval=True)
    detections_per_img = check_int(detections_per_img, "detections_per_img", minimum=0)
    coder = BoxCoder(check_weights(bbox_reg_weights, "bbox_reg_weights"), bbox_xform_clip)

    boxes_per_image = [p.shape[0] for p in proposals]
    pred_boxes = coder.decode(box_regression, proposals).reshape(n, num_classes, 4)  # [N, C, 4] (also for N = 0)
    pred_scores = F.softmax(class_logits, -1)                                   # [N, C]

    all_boxes, all_scores, all_labels = [], [], []
    for boxes, scores, shape in zip(pred_boxes.split(boxes_per_image, 0), pred_scores.split(boxes_per_image, 0),
                                    image_shapes):
        boxes = clip_boxes_to_image(boxes, (int(shape[0]), int(shape[1])))      # [N_i, C, 4]
        labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)  # [N_i, C]
        boxes, scores, labels = boxes[:, 1:], scores[:, 1:], labels[:, 1:]      # drop the background
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)  # one per pair
        keep = torch.where(scores > score_thresh)[0]
        boxes, scores, labels = boxes.index_select(0, keep), scores[keep], labels[keep]   # (*) in helpers.boxes
        keep = remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes.index_select(0, keep), scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
        all_boxes.append(boxes.index_select(0, keep))
        all_scores.append(scores[keep])
        all_labels.append(labels[keep])
    return all_boxes, all_scores, all_labels

"""Box encoding and decoding: the ``(dx, dy, dw, dh)`` deltas that the RPN and the box head predict.

Written in the open in ``notebooks/05_rpn.ipynb`` and checked there (and in
``tests/test_box_coder.py``) to give exactly the numbers of torchvision's
``torchvision.models.detection._utils.BoxCoder``; ``notebooks/06`` imports it for the box head.

A box is ``(x1, y1, x2, y2)`` in pixels, x to the right, y **downwards**. Its width is ``x2 - x1``
and its centre ``x1 + 0.5 * width`` (torchvision's convention: no ``+ 1``). Relative to a
*reference* box ``a`` (an anchor or a proposal), a box ``g`` is encoded as::

    dx = wx * (gx - ax) / aw        dw = ww * log(gw / aw)
    dy = wy * (gy - ay) / ah        dh = wh * log(gh / ah)

where ``(gx, gy)`` and ``(ax, ay)`` are the centres and ``(wx, wy, ww, wh)`` the weights: ``(1, 1, 1, 1)``
for the RPN, ``(10, 10, 5, 5)`` for the box head. Decoding inverts it, after clamping ``dw`` and
``dh`` to at most ``bbox_xform_clip = log(1000 / 16)`` so that ``exp`` cannot overflow.

Mind torchvision's argument names: in ``encode_boxes(reference_boxes, proposals)`` the
``reference_boxes`` are the *targets* (ground truth) and the ``proposals`` are the boxes the deltas
are measured from (anchors). Both are kept here so that code can be swapped one for the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from helpers.checks import check_boxes, check_list, check_number, check_paired, check_tensor

__all__ = ["BoxCoder", "encode_boxes", "decode_boxes", "check_weights", "check_encode_args", "check_decode_args",
           "DEFAULT_BBOX_XFORM_CLIP"]

DEFAULT_BBOX_XFORM_CLIP: float = math.log(1000.0 / 16)
"""torchvision's default upper bound on ``dw`` and ``dh`` before ``exp`` (about 4.135)."""


# -- the weights (the generic checks are in helpers.checks) -----------------------------------------

def check_weights(weights: Sequence[float] | Tensor, name: str = "weights") -> tuple[float, float, float, float]:
    """Box-coder weights ``(wx, wy, ww, wh)`` as four Python floats, each finite and positive.

    Args:
        weights: 4 numbers (a list, a tuple or a ``Tensor[4]``), e.g. ``(10, 10, 5, 5)`` for the box head.
        name: the argument's name in the error message (``"bbox_reg_weights"`` for the box head).

    Raises:
        TypeError: not a sequence or tensor, or an item that is not a plain number.
        ValueError: not 4 numbers, or one that is zero, negative or not finite.
    """
    if isinstance(weights, Tensor):
        if weights.numel() != 4:
            raise ValueError(f"{name} must hold 4 numbers (wx, wy, ww, wh), got a tensor of shape {tuple(weights.shape)}")
        values = [float(v) for v in weights.flatten().tolist()]
    else:
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise TypeError(f"{name} must be a sequence of 4 numbers (wx, wy, ww, wh), got {type(weights).__name__}")
        if len(weights) != 4:
            raise ValueError(f"{name} must hold 4 numbers (wx, wy, ww, wh), got {len(weights)}")
        values = []
        for v in weights:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must hold plain numbers, got {type(v).__name__}")
            values.append(float(v))
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be 4 finite positive numbers, got {tuple(values)}")
    return values[0], values[1], values[2], values[3]


def check_encode_args(reference_boxes: Tensor, proposals: Tensor,
                      weights: Sequence[float] | Tensor = (1.0, 1.0, 1.0, 1.0)) -> tuple[float, float, float, float]:
    """The argument checks of :func:`encode_boxes`, in one call; returns the weights as four Python floats.

    Checks, in this order: both are floating-point ``Tensor[N, 4]``; they have the same ``N`` (their
    dtypes may differ, as in torchvision: under autocast the proposals are bfloat16 and the ground truth
    float32; the deltas then have the promoted dtype); every proposal has ``x2 > x1`` and ``y2 > y1`` (the deltas divide by its width and
    height); the weights (:func:`check_weights`). Raises ``TypeError`` / ``ValueError``.
    """
    check_boxes(reference_boxes, "reference_boxes")
    check_boxes(proposals, "proposals")
    check_paired(reference_boxes, proposals, "reference_boxes", "proposals", dtype=False)
    check_boxes(proposals, "proposals", positive_size=True)
    return check_weights(weights)


def check_decode_args(rel_codes: Tensor, boxes: Tensor, weights: Sequence[float] | Tensor = (1.0, 1.0, 1.0, 1.0),
                      bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP
                      ) -> tuple[tuple[float, float, float, float], float]:
    """The argument checks of :func:`decode_boxes`, in one call; returns ``((wx, wy, ww, wh), clip)`` as Python floats.

    Checks, in this order: ``rel_codes`` is a ``Tensor[N, 4K]`` with ``K >= 1``, floating point;
    ``boxes`` a floating-point ``Tensor[N, 4]`` with the same ``N`` (any floating dtype: it is cast to
    that of ``rel_codes``); the weights (:func:`check_weights`); ``bbox_xform_clip`` a number
    (``inf`` allowed). Raises ``TypeError`` / ``ValueError``.
    """
    check_tensor(rel_codes, "rel_codes", shape="[N, 4K]")
    if rel_codes.dim() != 2 or rel_codes.shape[1] % 4 != 0 or rel_codes.shape[1] == 0:
        raise ValueError(f"rel_codes must have shape [N, 4K] with K >= 1, got {tuple(rel_codes.shape)}")
    check_tensor(rel_codes, "rel_codes", floating=True)
    check_boxes(boxes, "boxes")
    check_paired(rel_codes, boxes, "rel_codes", "boxes", dtype=False)
    return check_weights(weights), check_number(bbox_xform_clip, "bbox_xform_clip", finite=False)


# -- the two functions ---------------------------------------------------------------------------

# @export notebooks/05_rpn.ipynb: encode_boxes (edit the notebook; tools/nb.py export writes this)
def encode_boxes(reference_boxes, proposals, weights=(1.0, 1.0, 1.0, 1.0)):
    """The deltas (dx, dy, dw, dh) of each reference box (the target) relative to its proposal (e.g. an
    anchor). reference_boxes[N, 4], proposals[N, 4] with x2 > x1, y2 > y1 -> [N, 4]; torchvision's
    arithmetic in its order, so float32 results agree bit for bit."""
    weights = check_encode_args(reference_boxes, proposals, weights)              # (wx, wy, ww, wh), floats
    wx, wy, ww, wh = torch.as_tensor(weights, dtype=reference_boxes.dtype,
                                     device=reference_boxes.device)                # 0-dim tensors, like torchvision
    aw = proposals[:, 2:3] - proposals[:, 0:1]                                     # [N, 1]
    ah = proposals[:, 3:4] - proposals[:, 1:2]
    ax, ay = proposals[:, 0:1] + 0.5 * aw, proposals[:, 1:2] + 0.5 * ah             # anchor centre
    gw = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
    gh = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
    gx, gy = reference_boxes[:, 0:1] + 0.5 * gw, reference_boxes[:, 1:2] + 0.5 * gh   # target centre
    return torch.cat((wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                      ww * torch.log(gw / aw), wh * torch.log(gh / ah)), dim=1)     # [N, 4]


def decode_boxes(rel_codes, boxes, weights=(1.0, 1.0, 1.0, 1.0), bbox_xform_clip=DEFAULT_BBOX_XFORM_CLIP):
    """The inverse of encode_boxes: deltas rel_codes[N, 4K] (K sets, one per class in the box head) applied
    to boxes[N, 4] -> [N, 4K]. dw and dh are clamped to at most bbox_xform_clip = log(1000 / 16) before exp."""
    (wx, wy, ww, wh), clip = check_decode_args(rel_codes, boxes, weights, bbox_xform_clip)   # Python floats
    boxes = boxes.to(rel_codes.dtype)
    aw, ah = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]                   # [N]
    ax, ay = boxes[:, 0] + 0.5 * aw, boxes[:, 1] + 0.5 * ah
    dx, dy = rel_codes[:, 0::4] / wx, rel_codes[:, 1::4] / wy                       # [N, K]
    dw = torch.clamp(rel_codes[:, 2::4] / ww, max=clip)
    dh = torch.clamp(rel_codes[:, 3::4] / wh, max=clip)
    x, y = dx * aw[:, None] + ax[:, None], dy * ah[:, None] + ay[:, None]           # [N, K]: centres
    half_w, half_h = 0.5 * (torch.exp(dw) * aw[:, None]), 0.5 * (torch.exp(dh) * ah[:, None])
    return torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), dim=2).flatten(1)   # [N, 4K]
# @end export encode_boxes


class BoxCoder:
    """Encode and decode boxes as deltas; mirrors ``torchvision.models.detection._utils.BoxCoder``.

    Args:
        weights (4 numbers): ``(wx, wy, ww, wh)``: ``(1, 1, 1, 1)`` in the RPN, ``(10, 10, 5, 5)``
            in the box head.
        bbox_xform_clip (float): upper bound on ``dw`` and ``dh`` when decoding.

    Example::

        coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        deltas = coder.encode_single(gt_boxes, anchors)          # Tensor[N, 4]
        boxes = coder.decode_single(deltas, anchors)             # == gt_boxes (up to rounding)
    """

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 bbox_xform_clip: float = DEFAULT_BBOX_XFORM_CLIP) -> None:
        self.weights = check_weights(weights)
        self.bbox_xform_clip = check_number(bbox_xform_clip, "bbox_xform_clip", finite=False)

    def __repr__(self) -> str:
        return f"BoxCoder(weights={self.weights}, bbox_xform_clip={self.bbox_xform_clip:.4f})"

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas of ``reference_boxes`` relative to ``proposals``.

        Args:
            reference_boxes (Tensor[N, 4]): targets.
            proposals (Tensor[N, 4]): boxes the deltas are measured from (anchors, proposals).

        Returns:
            Tensor[N, 4]
        """
        return encode_boxes(reference_boxes, proposals, self.weights)

    def encode(self, reference_boxes: Sequence[Tensor], proposals: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Per-image :meth:`encode_single`: lists of ``Tensor[N_i, 4]`` in, a tuple of ``Tensor[N_i, 4]`` out."""
        reference_boxes = _check_box_lists(reference_boxes, "reference_boxes")
        proposals = _check_box_lists(proposals, "proposals")
        if len(reference_boxes) != len(proposals):
            raise ValueError(f"reference_boxes and proposals must hold one tensor per image, "
                             f"got {len(reference_boxes)} and {len(proposals)}")
        boxes_per_image = [len(b) for b in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes, dim=0), torch.cat(proposals, dim=0))
        return targets.split(boxes_per_image, 0)

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas ``Tensor[N, 4K]`` to reference boxes ``Tensor[N, 4]``; returns ``Tensor[N, 4K]``."""
        return decode_boxes(rel_codes, boxes, self.weights, self.bbox_xform_clip)

    def decode(self, rel_codes: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        """Decode for several images at once, as torchvision does.

        Args:
            rel_codes (Tensor[sum N_i, 4K] or anything that reshapes to it): deltas for all images.
            boxes (list of Tensor[N_i, 4]): reference boxes per image.

        Returns:
            Tensor[sum N_i, K, 4] (or the ``decode_single`` result unreshaped when there are no boxes).
        """
        boxes = _check_box_lists(boxes, "boxes")
        if not isinstance(rel_codes, Tensor):
            raise TypeError(f"rel_codes must be a Tensor, got {type(rel_codes).__name__}")
        box_sum = sum(b.shape[0] for b in boxes)
        concat_boxes = torch.cat(boxes, dim=0)
        if box_sum > 0:
            if rel_codes.numel() % (box_sum * 4) != 0:
                raise ValueError(f"rel_codes has {rel_codes.numel()} numbers, not a multiple of 4 x {box_sum} boxes")
            rel_codes = rel_codes.reshape(box_sum, -1)
        pred_boxes = self.decode_single(rel_codes, concat_boxes)
        if box_sum > 0:
            pred_boxes = pred_boxes.reshape(box_sum, -1, 4)
        return pred_boxes



def _check_box_lists(tensors: Sequence[Tensor], name: str) -> list[Tensor]:
    """A non-empty list of ``Tensor[N_i, 4]`` (one per image), each checked with ``check_boxes``."""
    items = check_list(tensors, name, minimum_length=1,
                       what="a list or tuple of Tensor[N_i, 4] (one per image)")
    return [check_boxes(t, f"{name}[{i}]") for i, t in enumerate(items)]

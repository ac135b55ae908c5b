"""Box operations shared by the RPN, the box head and the model: areas, IoU, clipping, NMS.

The counterpart of ``torchvision/ops/boxes.py`` (same names, same arguments, same numbers), written
in the open in ``notebooks/05_rpn.ipynb`` (IoU) and ``notebooks/05b_rpn_losses_proposals.ipynb`` (NMS)
and checked in ``tests/test_boxes.py`` against
``torchvision.ops``:

==============================================  ==========================================================
here                                            torchvision
==============================================  ==========================================================
:func:`box_area`, :func:`box_iou`               ``ops.box_area``, ``ops.box_iou``
:func:`clip_boxes_to_image`                     ``ops.clip_boxes_to_image``
:func:`remove_small_boxes`                      ``ops.remove_small_boxes``
:func:`nms`, :func:`batched_nms`                ``ops.nms`` (its CPU kernel), ``ops.batched_nms``
==============================================  ==========================================================

None of these functions calls the torchvision function it rebuilds (the tests do, to compare).

Boxes are ``(x1, y1, x2, y2)`` in image pixels, x to the right, y **downwards**, width ``x2 - x1``
(no ``+ 1``); an image of size ``(H, W)`` spans ``[0, W] x [0, H]``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from helpers.checks import check_boxes, check_number, check_tensor, kernel_dtype, upcast

__all__ = ["box_area", "check_iou_args", "box_iou", "clip_boxes_to_image", "remove_small_boxes", "NMS_DTYPES", "nms_dtypes",
           "nms", "nms_loop", "batched_nms"]

# (*) rows of a 2-D tensor are picked with index_select, not boxes[idx] (the same rows): advanced indexing
# of a 2-D tensor starts torch's intra-op thread pool, which on a busy 2-core machine waits for a core
# (about 24 ms against 0.01 ms for 840 boxes; benchmarks/PROFILE.md). helpers.rpn and helpers.box_head
# do the same in their per-image loops.
NMS_BLOCK = 256
"""Boxes :func:`nms` walks per block: one IoU matrix within the block, one against the later boxes."""


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``(x2 - x1) * (y2 - y1)``.

    Args:
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)``.

    Returns:
        Tensor[N]: in the dtype of ``upcast(boxes)`` (:func:`helpers.checks.upcast`, as torchvision):
        float16 / bfloat16 boxes give float32 areas, int8 / uint8 / int16 boxes int32 areas, so that
        a 300 x 300 float16 box has area 90000, not ``inf``.
    """
    boxes = upcast(check_boxes(boxes, "boxes", floating=False))
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def check_iou_args(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """The argument checks of :func:`box_iou`: ``boxes1`` and ``boxes2`` are ``Tensor[N, 4]`` and
    ``Tensor[M, 4]`` of real numbers (``boxes1`` checked first); ``TypeError`` / ``ValueError`` otherwise.

    Returns both upcast as torchvision upcasts them (:func:`helpers.checks.upcast`: float16 / bfloat16
    -> float32, small integers -> int32), so that no area or intersection overflows. torchvision
    subtracts float16 corners before upcasting the intersection's sides; upcasting first, as here,
    is exact where that rounds (the two differ by at most float16's rounding of a side)."""
    for b, name in ((boxes1, "boxes1"), (boxes2, "boxes2")):
        check_boxes(b, name, floating=False)
        if b.dtype == torch.bool or b.is_complex():
            raise TypeError(f"{name} must hold real numbers (floating point or integer), got {b.dtype}")
    return upcast(boxes1), upcast(boxes2)


# @export notebooks/05_rpn.ipynb: box_iou (edit the notebook; tools/nb.py export writes this)
def box_iou(boxes1, boxes2):
    """Intersection over union of every pair, inter / (area1 + area2 - inter): boxes1[N, 4], boxes2[M, 4]
    -> [N, M]. torchvision's arithmetic in its order (equal to the last bit), one coordinate at a time."""
    boxes1, boxes2 = check_iou_args(boxes1, boxes2)                                 # checked; half -> float32
    x1, y1, x2, y2 = boxes1.unbind(dim=1)                                              # [N] each
    u1, v1, u2, v2 = boxes2.unbind(dim=1)                                              # [M] each
    w = torch.minimum(x2[:, None], u2[None, :]) - torch.maximum(x1[:, None], u1[None, :])   # [N, M]: overlap in x
    h = torch.minimum(y2[:, None], v2[None, :]) - torch.maximum(y1[:, None], v1[None, :])   # [N, M]: overlap in y
    inter = w.clamp(min=0) * h.clamp(min=0)                                            # [N, M]
    return inter / (box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter)
# @end export box_iou


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp x to ``[0, W]`` and y to ``[0, H]``.

    Args:
        boxes (Tensor[..., 4]): ``(x1, y1, x2, y2)``.
        size ((H, W)): the image size (height first).

    Returns:
        Tensor[..., 4]
    """
    if not isinstance(boxes, Tensor) or boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError("boxes must be a Tensor[..., 4]")
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size!r}")
    height, width = size
    out = boxes.clone()
    out[..., 0::2] = boxes[..., 0::2].clamp(min=0, max=width)
    out[..., 1::2] = boxes[..., 1::2].clamp(min=0, max=height)
    return out


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both ``>= min_size``.

    Args:
        boxes (Tensor[N, 4]), min_size (float).

    Returns:
        Tensor[K] int64
    """
    check_boxes(boxes, "boxes", floating=False)
    min_size = check_number(min_size, "min_size", finite=False, allow_scalar_tensor=True)
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((ws >= min_size) & (hs >= min_size))[0]


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, the algorithm of torchvision's CPU kernel.

    Sort by score, highest first, with a **stable** sort: boxes with equal scores keep their input
    order, so among ties the lower index is kept first. Walk down the list; keep a box unless an
    already *kept* box overlaps it with IoU **strictly greater** than ``iou_threshold``. The IoU is
    computed in the boxes' dtype as ``inter / (area_i + area_j - inter)`` and compared in float64
    with the threshold (the kernel compares a ``float`` with a ``double``).

    How, fast but exact: the sorted boxes are taken :data:`NMS_BLOCK` at a time. Within a block,
    the IoU matrix of its surviving boxes (:func:`box_iou`, thresholded) is computed once and the
    greedy walk runs in plain Python over bit flags: a kept box ORs its row into a ``removed``
    mask. The block's kept boxes then suppress, in one :func:`box_iou`, every later box they
    overlap. Only kept boxes against still-alive boxes are ever compared (as in the C++ kernel),
    and no step of the walk is a tensor operation.

    Args:
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)``, float32 or float64 (float16 too on CUDA); any
            floating dtype under ``torch.autocast`` (computed in float32). Others are refused, as
            torchvision refuses them (see :func:`nms_dtypes`).
        scores (Tensor[N]): same dtype as ``boxes``, no NaN.
        iou_threshold (float): boxes overlapping a kept box by more than this are dropped.

    Returns:
        Tensor[K] int64: indices of the kept boxes, by decreasing score.
    """
    return _nms(boxes, scores, iou_threshold, None)


def _nms(boxes: Tensor, scores: Tensor, iou_threshold: float, categories: Tensor | None) -> Tensor:
    """:func:`nms`; with ``categories`` (Tensor[N] integer, only from :func:`batched_nms`'s shifted boxes,
    which never overlap across categories) the CPU walk compares only boxes of one category: the same
    kept boxes in the same order, since boxes of different categories have IoU 0 and never suppress."""
    check_boxes(boxes, "boxes")
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must be a Tensor[N] with N = {boxes.shape[0]} (one per box)")
    boxes, scores = nms_dtypes(boxes, scores)
    if scores.dtype != boxes.dtype:
        raise TypeError(f"scores and boxes must have the same dtype, got {scores.dtype} and {boxes.dtype}")
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores must not contain NaN")
    threshold = check_number(iou_threshold, "iou_threshold", finite=False, allow_scalar_tensor=True)
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, stable=True, descending=True).indices            # [N]
    b = boxes.index_select(0, order)                                            # [N, 4], by score (*)
    above = _largest_below_or_at(threshold, b.dtype)                            # iou > above <=> iou > threshold
    if b.device.type == "cpu" and b.dtype in (torch.float32, torch.float64):
        # The same blocked walk in numpy: identical IEEE arithmetic (see _iou_above_numpy), but no
        # torch dispatch and no intra-op threads. Measured (benchmarks/bench_nms.py, 600-2000 boxes):
        # about 2x faster than the torch version on one thread, and 10-50x on two busy cores,
        # where every multithreaded torch op of the torch version waits for the other core.
        xyxy = b.numpy()
        if categories is None or xyxy.shape[0] <= NMS_BLOCK:
            kept = _nms_sorted_numpy(xyxy, above.item(), NMS_BLOCK)
        else:  # one walk per category, on the positions (in score order) of its boxes (fewer IoUs)
            sorted_categories = categories.index_select(0, order).cpu().numpy()
            parts = []
            for category in np.unique(sorted_categories):
                members = np.flatnonzero(sorted_categories == category)
                parts.append(members[_nms_sorted_numpy(xyxy[members], above.item(), NMS_BLOCK)])
            kept = np.sort(np.concatenate(parts))
        return order[torch.from_numpy(kept).to(order.device)]
    n = b.shape[0]
    alive = torch.ones(n, dtype=torch.bool, device=b.device)                    # not suppressed yet
    keep = []
    for start in range(0, n, NMS_BLOCK):
        stop = min(start + NMS_BLOCK, n)
        block = torch.arange(start, stop, device=b.device)
        if start > 0:
            block = block[alive[start:stop]]                                    # [C] survivors so far
        if block.numel() == 0:
            continue
        over = box_iou(b[block], b[block]) > above                              # [C, C]
        kept = _greedy_walk(over.cpu().numpy())
        kept_idx = block[torch.from_numpy(kept).to(block.device)]               # [K_b]
        keep.append(kept_idx)
        if stop < n:                                                            # suppress the later boxes
            rest = torch.arange(stop, n, device=b.device)[alive[stop:]]         # [L] later survivors
            hit = (box_iou(b[kept_idx], b[rest]) > above).any(dim=0)              # [L]
            alive[rest[hit]] = False
    return order[torch.cat(keep)]


NMS_DTYPES = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float32, torch.float64, torch.float16)}
"""The dtypes torchvision's NMS kernels accept on each device (its CPU kernel refuses float16)."""


def nms_dtypes(boxes: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """``boxes`` and ``scores`` in the dtype torchvision's ``nms`` computes in: their own where its
    kernel takes it (:data:`NMS_DTYPES`), float32 under ``torch.autocast`` (its autocast wrapper casts
    every floating dtype but float64 to float32), else a ``TypeError`` naming the argument."""
    b = kernel_dtype(boxes, "boxes", "nms", NMS_DTYPES, ("cpu", "cuda"))
    s = kernel_dtype(scores, "scores", "nms", NMS_DTYPES, ("cpu", "cuda"))
    return boxes.to(b), scores.to(s)


def _greedy_walk(over: np.ndarray) -> np.ndarray:
    """The greedy walk inside one block: ``over[r, c]`` (bool [C, C]) says box ``r`` suppresses ``c``
    (boxes by decreasing score). Keep row ``r`` unless a kept row before it flags it; returns the kept
    rows (int64). Plain Python over bit flags: a kept row ORs its packed row into ``removed``."""
    rows = np.packbits(over, axis=1, bitorder="little")                         # row r: bit c = over[r, c]
    removed, kept = 0, []
    for r, flags in enumerate(rows):
        if not (removed >> r) & 1:
            kept.append(r)
            removed |= int.from_bytes(flags.tobytes(), "little")
    return np.asarray(kept, dtype=np.int64)


def _iou_above_numpy(xyxy: np.ndarray, area: np.ndarray, i: np.ndarray, j: np.ndarray, above: float) -> np.ndarray:
    """``box_iou(xyxy[i], xyxy[j]) > above`` as a bool [len(i), len(j)] numpy array, with box_iou's
    float operations in box_iou's order (in the array's dtype, float32 or float64), hence the same bits."""
    x1, y1, x2, y2 = xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3]
    # the same operations as inter / (area_i + area_j - inter), written in place into three buffers
    # (no temporary per step: on [C, L] blocks, allocating is what costs)
    w = np.minimum(x2[i, None], x2[None, j])
    w -= np.maximum(x1[i, None], x1[None, j])
    h = np.minimum(y2[i, None], y2[None, j])
    h -= np.maximum(y1[i, None], y1[None, j])
    inter = np.maximum(w, 0, out=w)
    inter *= np.maximum(h, 0, out=h)
    union = np.add(area[i, None], area[None, j], out=h)
    union -= inter
    with np.errstate(divide="ignore", invalid="ignore"):                        # 0 / 0 = NaN: not above
        return np.divide(inter, union, out=union) > xyxy.dtype.type(above)


def _nms_sorted_numpy(xyxy: np.ndarray, above: float, block: int) -> np.ndarray:
    """:func:`nms`'s blocked greedy walk on boxes already sorted by decreasing score (numpy [N, 4],
    float32 or float64); ``iou > above`` suppresses. Returns the kept positions (int64, increasing)."""
    n = xyxy.shape[0]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    alive = np.ones(n, dtype=bool)                                              # not suppressed yet
    keep = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        cand = np.flatnonzero(alive[start:stop]) + start                        # [C] survivors so far
        if cand.size == 0:
            continue
        kept = cand[_greedy_walk(_iou_above_numpy(xyxy, area, cand, cand, above))]
        keep.append(kept)
        if stop < n:                                                            # suppress the later boxes
            rest = np.flatnonzero(alive[stop:]) + stop                          # [L] later survivors
            alive[rest[_iou_above_numpy(xyxy, area, kept, rest, above).any(axis=0)]] = False
    return np.concatenate(keep)


# @export notebooks/05b_rpn_losses_proposals.ipynb: nms_loop (edit the notebook; tools/nb.py export writes this)
def nms_loop(boxes, scores, iou_threshold):
    """Greedy NMS as a plain loop (the reference for the fast, blocked helpers.boxes.nms): by score, highest
    first (stable sort: among equal scores the lower index first), keep a box unless a kept box overlaps it
    with IoU > iou_threshold, compared in float64 as torchvision's CPU kernel does. -> int64 indices."""
    order = torch.sort(scores, descending=True, stable=True).indices
    suppressed = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= box_iou(boxes[i:i + 1], boxes)[0].double() > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)
# @end export nms_loop


def _largest_below_or_at(threshold: float, dtype: torch.dtype) -> Tensor:
    """The largest ``dtype`` number ``t <= threshold``: for ``x`` of that dtype, ``x > t`` exactly when
    ``x > threshold`` in float64 (torchvision's kernel compares a ``float`` IoU with a ``double``)."""
    t = torch.tensor(threshold, dtype=torch.float64).to(dtype)
    if float(t) > threshold:
        t = torch.nextafter(t, torch.tensor(-float("inf"), dtype=dtype))
    return t


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs`` (for the RPN: within each FPN level), never across.

    Two equivalent strategies, chosen exactly as torchvision chooses them on the CPU:

    - up to 4000 numbers in ``boxes``: shift the boxes of category ``c`` by ``c * (max coordinate + 1)``
      so that different categories cannot overlap, and run one :func:`nms`;
    - above that: run :func:`nms` per category, then sort the kept ones by score with ``torch.sort``
      (not stable: torchvision calls it that way, and so do we, so ties come out the same).

    Args:
        boxes (Tensor[N, 4]), scores (Tensor[N]), idxs (Tensor[N] integer): category per box.
            Dtypes as :func:`nms`; float16 (CUDA, or under autocast) is computed in float32.
        iou_threshold (float).

    Returns:
        Tensor[K] int64: kept indices by decreasing score.
    """
    check_boxes(boxes, "boxes")
    if not isinstance(idxs, Tensor) or idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs must be a Tensor[N] with N = {boxes.shape[0]} (one category per box)")
    check_tensor(idxs, "idxs", floating=False)
    if not isinstance(scores, Tensor):
        raise ValueError(f"scores must be a Tensor[N] with N = {boxes.shape[0]} (one per box)")
    # the dtype rule of nms, applied before the coordinate trick, and float16 (CUDA) shifted in float32:
    # torchvision shifts float16 boxes in float16, where c * (max + 1) loses the boxes' digits or overflows
    boxes, scores = nms_dtypes(boxes, scores)
    boxes, scores = upcast(boxes), upcast(scores)
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if boxes.numel() <= (4000 if boxes.device.type == "cpu" else 100_000):
        offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))   # [N]
        # torchvision's one NMS over the shifted boxes; its walk compares only boxes of one category
        # (shifted boxes of two categories never overlap), with the same bits and the same result
        return _nms(boxes + offsets[:, None], scores, iou_threshold, idxs)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]
        keep_mask[members[nms(boxes.index_select(0, members), scores[members], iou_threshold)]] = True  # (*)
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True)[1]]

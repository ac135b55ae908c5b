"""COCO evaluation of a detection / instance-segmentation model with pycocotools' ``COCOeval``.

The recipe is torchvision's detection reference (``references/detection/coco_eval.py``) made small:

1. run the model in eval mode over a data set (:func:`predict`);
2. turn its outputs into COCO *results* (:func:`to_coco_results`): boxes ``(x1, y1, x2, y2)`` become
   ``[x, y, w, h]``; each pasted mask probability map (``Tensor[1, H, W]`` in ``[0, 1]``) is
   thresholded **at 0.5** (a pixel is in when its probability is ``> 0.5``, as torchvision's
   reference does) and run-length encoded (:func:`helpers.masks.encode_rle`);
3. score them against the ground truth with ``COCOeval`` for ``"segm"`` and ``"bbox"``
   (:func:`coco_evaluate`).

The numbers are COCO's twelve: ``AP`` (mean over IoU thresholds .50:.05:.95), ``AP50``, ``AP75``,
``APs``/``APm``/``APl`` (objects smaller than 32², up to 96², larger), and the recalls ``AR1``,
``AR10``, ``AR100`` (at most 1, 10, 100 detections per image), ``ARs``/``ARm``/``ARl``. COCOeval
reports ``-1`` for an area range that holds no ground-truth object (the shapes have no large ones).

Written for notebook 09; used by ``helpers.train``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from helpers.checks import check_int, check_number
from helpers.masks import decode_rle, encode_rle

__all__ = ["METRIC_NAMES", "IOU_TYPES", "predict", "to_coco_results", "coco_evaluate", "evaluate", "stream_results",
           "coco_evaluate_per_class", "evaluate_streaming", "format_per_class_table",
           "format_metrics_table", "iou_matrix", "average_precision", "match_detections"]

METRIC_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                                 "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
"""The names of ``COCOeval.stats[0..11]``, in that order."""

IOU_TYPES: tuple[str, ...] = ("segm", "bbox")
"""The COCOeval IoU types this module evaluates."""


def _check_run_args(model: Any, dataset: Any, batch_size: Any) -> int:
    """The checks :func:`predict` and :func:`stream_results` share; returns ``batch_size`` as an int."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a sized sequence of (image, target) pairs, got {type(dataset).__name__}")
    return check_int(batch_size, "batch_size", minimum=1)


@torch.no_grad()
def predict(model: nn.Module, dataset: Sequence[tuple[Tensor, Mapping[str, Any]]], batch_size: int = 16,
            device: str | torch.device = "cpu", progress: bool = False) -> list[dict[str, Tensor]]:
    """Run a torchvision detection model in eval mode over ``dataset``; outputs on the CPU.

    Args:
        model: a torchvision ``MaskRCNN`` (or any model with the same eval-mode call and outputs).
        dataset: a sized sequence of ``(image Tensor[3, H, W], target)`` pairs; targets are ignored.
        batch_size: images per forward pass.
        device: where to run.
        progress: show a tqdm progress bar.

    Returns:
        One dict per image, in data set order: ``boxes`` ``Tensor[D, 4]`` ``(x1, y1, x2, y2)``,
        ``labels`` ``Tensor[D]``, ``scores`` ``Tensor[D]`` and, for Mask R-CNN, ``masks``
        ``Tensor[D, 1, H, W]`` (pasted probabilities in ``[0, 1]``).
    """
    batch_size = _check_run_args(model, dataset, batch_size)
    was_training = model.training
    model.eval()
    outputs: list[dict[str, Tensor]] = []
    starts = range(0, len(dataset), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch")
    try:
        for start in starts:
            images = [dataset[i][0].to(device) for i in range(start, min(start + batch_size, len(dataset)))]
            for out in model(images):
                outputs.append({k: v.detach().cpu() for k, v in out.items()})
    finally:
        model.train(was_training)
    return outputs


def to_coco_results(outputs: Sequence[Mapping[str, Tensor]], image_ids: Sequence[int],
                    label_to_category: Mapping[int, int] | None = None,
                    mask_threshold: float = 0.5) -> dict[str, list[dict[str, Any]]]:
    """Turn model outputs into COCO result lists, one per IoU type.

    Args:
        outputs: per image, ``boxes`` ``Tensor[D, 4]`` ``(x1, y1, x2, y2)``, ``labels`` ``Tensor[D]``,
            ``scores`` ``Tensor[D]``, optionally ``masks`` ``Tensor[D, 1, H, W]`` probabilities.
        image_ids: the COCO image id of each output (same length).
        label_to_category: model label -> COCO ``category_id`` (``None``: the label is the id).
        mask_threshold: a mask pixel is in when its probability is ``> mask_threshold``.

    Returns:
        ``{"bbox": [...], "segm": [...]}``: COCO result dicts (``image_id``, ``category_id``,
        ``score``, and ``bbox`` ``[x, y, w, h]`` or ``segmentation`` as RLE). ``"segm"`` is empty when
        the outputs hold no masks. Kept apart so that ``loadRes`` takes each detection's area from
        its own mask (segm) or box (bbox).
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"outputs and image_ids must have the same length, got {len(outputs)} and {len(image_ids)}")
    if not 0.0 <= float(mask_threshold) < 1.0:
        raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold}")
    results: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
    for i, (out, image_id) in enumerate(zip(outputs, image_ids)):
        if not isinstance(out, Mapping) or not {"boxes", "labels", "scores"} <= set(out):
            raise TypeError(f"outputs[{i}] must be a dict with 'boxes', 'labels' and 'scores'")
        boxes = out["boxes"].detach().cpu().to(torch.float64)
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"outputs[{i}]['boxes'] must be Tensor[D, 4], got shape {tuple(boxes.shape)}")
        labels = out["labels"].tolist()
        scores = out["scores"].tolist()
        categories = [int(label_to_category[l]) if label_to_category is not None else int(l) for l in labels]
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, cat, score in zip(xywh, categories, scores):
            results["bbox"].append({"image_id": int(image_id), "category_id": cat, "bbox": box, "score": float(score)})
        if "masks" in out:
            masks = out["masks"].detach().cpu()
            if masks.dim() != 4 or masks.shape[1] != 1 or masks.shape[0] != len(labels):
                raise ValueError(f"outputs[{i}]['masks'] must be Tensor[D, 1, H, W] with D = {len(labels)}, "
                                 f"got shape {tuple(masks.shape)}")
            binary = (masks[:, 0] > mask_threshold).numpy()  # [D, H, W] bool
            for mask, cat, score in zip(binary, categories, scores):
                results["segm"].append({"image_id": int(image_id), "category_id": cat,
                                        "segmentation": encode_rle(mask), "score": float(score)})
    return results


def coco_evaluate(coco_gt: Any, results: Mapping[str, list[dict[str, Any]]],
                  iou_types: Iterable[str] = IOU_TYPES) -> dict[str, dict[str, float]]:
    """Score COCO results with ``COCOeval`` (pycocotools' printed summary is swallowed).

    Args:
        coco_gt: the ground truth: a COCO instances dict, or a ``pycocotools.coco.COCO``.
        results: ``{"segm": [...], "bbox": [...]}`` from :func:`to_coco_results`.
        iou_types: which of ``"segm"``, ``"bbox"`` to evaluate.

    Returns:
        ``{iou_type: {name: value}}`` with the twelve :data:`METRIC_NAMES` (floats; ``-1.0`` where
        COCOeval has no ground truth in that area range). No detections at all gives zeros.
    """
    return coco_evaluate_per_class(coco_gt, results, iou_types)[0]


def coco_evaluate_per_class(coco_gt: Any, results: Mapping[str, list[dict[str, Any]]],
                            iou_types: Iterable[str] = IOU_TYPES
                            ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """:func:`coco_evaluate`, plus each category's AP (IoU .50:.95, all areas, 100 detections).

    A category's AP is the mean of ``COCOeval.eval["precision"][:, :, k, 0, -1]`` over the entries
    that are not ``-1`` (COCO's own AP is the mean of the same array over all categories); a category
    without ground truth gets ``-1``.

    Returns:
        ``(metrics, per_class)``: ``metrics`` as :func:`coco_evaluate` returns it, ``per_class`` as
        ``{iou_type: {category name: AP}}`` in the order of increasing category id.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if isinstance(coco_gt, Mapping):
        missing = [k for k in ("images", "annotations", "categories") if k not in coco_gt]
        if missing:
            raise ValueError(f"coco_gt must hold 'images', 'annotations' and 'categories'; missing {missing}")
        api = COCO()
        api.dataset = dict(coco_gt)
        with contextlib.redirect_stdout(io.StringIO()):
            api.createIndex()
        coco_gt = api
    elif not isinstance(coco_gt, COCO):
        raise TypeError(f"coco_gt must be a COCO dict or a pycocotools COCO, got {type(coco_gt).__name__}")
    category_ids = sorted(coco_gt.getCatIds())
    names = {c: str(coco_gt.cats[c].get("name", c)) for c in category_ids}
    metrics: dict[str, dict[str, float]] = {}
    per_class: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise ValueError(f"iou_types must be drawn from {IOU_TYPES}, got {iou_type!r}")
        dets = [dict(d) for d in results.get(iou_type, [])]  # copies: loadRes adds keys to the dicts it gets
        if not dets:  # loadRes cannot take an empty list; no detections scores zero
            metrics[iou_type] = {name: 0.0 for name in METRIC_NAMES}
            has_gt = {int(a["category_id"]) for a in coco_gt.dataset["annotations"]}
            per_class[iou_type] = {names[c]: (0.0 if c in has_gt else -1.0) for c in category_ids}
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(dets)
            evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        metrics[iou_type] = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats)}
        precision = evaluator.eval["precision"]  # [T, R, K, A, M]: IoUs, recalls, categories, areas, max dets
        row = {}
        for k, c in enumerate(evaluator.params.catIds):
            p = precision[:, :, k, 0, -1]
            row[names[c]] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
        per_class[iou_type] = row
    return metrics, per_class


@torch.no_grad()
def stream_results(model: nn.Module, dataset: Sequence[tuple[Tensor, Mapping[str, Any]]],
                   label_to_category: Mapping[int, int] | None = None, batch_size: int = 1,
                   device: str | torch.device = "cpu", progress: bool = False,
                   mask_threshold: float = 0.5) -> dict[str, list[dict[str, Any]]]:
    """:func:`predict` then :func:`to_coco_results`, one batch at a time: only COCO results are kept.

    Each batch's pasted float masks (``D x H x W x 4`` bytes an image) are thresholded and RLE-encoded
    as soon as the model returns them and then dropped, so memory holds one batch of masks whatever
    the number of images (:func:`predict` keeps every image's masks).

    Args:
        model: the detection model (eval mode for the run, then restored).
        dataset: sized sequence of ``(image, target)``; ``target["image_id"]`` names the COCO image.
        label_to_category: model label -> COCO ``category_id`` (``None``: identity).
        batch_size: images per forward pass (their masks are held together: 1 for photos).
        device: where to run.
        progress: a tqdm progress bar.
        mask_threshold: a pixel is in the mask when its probability is ``> mask_threshold``.

    Returns:
        ``{"bbox": [...], "segm": [...]}`` as :func:`to_coco_results` returns.
    """
    batch_size = _check_run_args(model, dataset, batch_size)
    was_training = model.training
    model.eval()
    results: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dataset), desc="evaluate", unit="image")
    try:
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            outputs = model([image.to(device) for image, _ in items])
            for k, (_, target) in enumerate(items):
                out = {key: v.detach().cpu() for key, v in outputs[k].items()}
                outputs[k] = None  # this image's masks are freed once encoded
                one = to_coco_results([out], [int(target["image_id"])], label_to_category, mask_threshold)
                results["bbox"].extend(one["bbox"])
                results["segm"].extend(one["segm"])
                del out
            del items, outputs
            if bar is not None:
                bar.update(min(batch_size, len(dataset) - start))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    return results


def evaluate_streaming(model: nn.Module, dataset: Sequence[tuple[Tensor, Mapping[str, Any]]], coco_gt: Any,
                       label_to_category: Mapping[int, int] | None = None, batch_size: int = 1,
                       device: str | torch.device = "cpu", progress: bool = False
                       ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, list]]:
    """:func:`stream_results` then :func:`coco_evaluate_per_class`.

    Returns:
        ``(metrics, per_class, results)``.
    """
    results = stream_results(model, dataset, label_to_category, batch_size, device, progress)
    metrics, per_class = coco_evaluate_per_class(coco_gt, results)
    return metrics, per_class, results


def format_per_class_table(per_class: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """A plain-text table of per-class AP: one row per class, one column per IoU type (``-1``: ``n/a``)."""
    if not isinstance(per_class, Mapping) or not per_class:
        raise ValueError("per_class must be a non-empty {iou_type: {class: AP}} mapping")
    types = list(per_class)
    classes = list(dict.fromkeys(c for row in per_class.values() for c in row))
    width = max([5, *(len(c) for c in classes)])
    lines = [f"{'class':<{width}} " + " ".join(f"{t + ' AP':>8}" for t in types)]
    for c in classes:
        cells = []
        for t in types:
            v = per_class[t].get(c)
            cells.append(f"{'n/a':>8}" if v is None or v < 0 else f"{v:>8.{digits}f}")
        lines.append(f"{c:<{width}} " + " ".join(cells))
    return "\n".join(lines)


def evaluate(model: nn.Module, dataset: Sequence[tuple[Tensor, Mapping[str, Any]]], coco_gt: Any = None,
             label_to_category: Mapping[int, int] | None = None, batch_size: int = 16,
             device: str | torch.device = "cpu", progress: bool = False,
             outputs: Sequence[Mapping[str, Tensor]] | None = None) -> dict[str, dict[str, float]]:
    """Predict on ``dataset`` and score with COCOeval for ``segm`` and ``bbox``.

    Args:
        model: the detection model (put in eval mode for the run, then restored).
        dataset: sized sequence of ``(image, target)``; ``target["image_id"]`` must match ``coco_gt``.
        coco_gt: the COCO ground truth (dict or ``COCO``); ``None``: built with
            ``helpers.shapes.to_coco(dataset)`` (for shapes-style targets).
        label_to_category: model label -> COCO ``category_id`` (``None``: identity).
        batch_size, device, progress: passed to :func:`predict`.
        outputs: precomputed :func:`predict` outputs (skips the model run).

    Returns:
        ``{"segm": {...}, "bbox": {...}}`` as :func:`coco_evaluate` returns.
    """
    if coco_gt is None:
        from helpers.shapes import to_coco

        coco_gt = to_coco(dataset)
    if outputs is None:
        outputs = predict(model, dataset, batch_size=batch_size, device=device, progress=progress)
    image_ids = [int(dataset[i][1]["image_id"]) for i in range(len(dataset))]
    results = to_coco_results(outputs, image_ids, label_to_category)
    return coco_evaluate(coco_gt, results)


def format_metrics_table(metrics: Mapping[str, Mapping[str, float]], digits: int = 3) -> str:
    """A plain-text table: one row per IoU type, one column per COCO metric (``-1`` shown as ``n/a``).

    Args:
        metrics: ``{iou_type: {name: value}}`` as :func:`coco_evaluate` returns.
        digits: decimals shown.

    Returns:
        The table as a string (print it).
    """
    if not isinstance(metrics, Mapping) or not metrics:
        raise ValueError("metrics must be a non-empty {iou_type: {name: value}} mapping")
    names = [n for n in METRIC_NAMES if any(n in row for row in metrics.values())]
    width = max(digits + 3, 5)
    lines = ["type  " + " ".join(f"{n:>{width}}" for n in names)]
    for iou_type, row in metrics.items():
        cells = []
        for n in names:
            v = row.get(n)
            cells.append(f"{'n/a':>{width}}" if v is None or v < 0 else f"{v:>{width}.{digits}f}")
        lines.append(f"{iou_type:<5} " + " ".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# COCO's AP at one IoU threshold, rebuilt in NumPy (notebook 09 writes it in the open)
# ----------------------------------------------------------------------------------------------
def iou_matrix(dets: Sequence[Mapping[str, Any]], gts: Sequence[Mapping[str, Any]], iou_type: str) -> np.ndarray:
    """IoU of every detection with every ground-truth object of one image, in float64.

    Args:
        dets, gts: COCO result / annotation dicts; ``bbox`` ``[x, y, w, h]`` (area ``w * h``, no +1)
            for ``"bbox"``, RLE ``segmentation`` (pixel counts) for ``"segm"``.
        iou_type: ``"bbox"`` or ``"segm"``.

    Returns:
        ``float64[len(dets), len(gts)]``.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    out = np.zeros((len(dets), len(gts)))
    if not len(dets) or not len(gts):
        return out
    if iou_type == "bbox":
        d = np.array([x["bbox"] for x in dets], dtype=np.float64)  # [D, 4] x, y, w, h
        g = np.array([x["bbox"] for x in gts], dtype=np.float64)  # [G, 4]
        iw = np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
        ih = np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)  # [D, G]
        union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None, :] - inter
        return inter / union
    dm = np.stack([decode_rle(x["segmentation"]) for x in dets]).reshape(len(dets), -1).astype(np.float64)  # [D, HW]
    gm = np.stack([decode_rle(x["segmentation"]) for x in gts]).reshape(len(gts), -1).astype(np.float64)  # [G, HW]
    inter = dm @ gm.T  # [D, G] pixel counts
    union = dm.sum(1)[:, None] + gm.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def average_precision(coco_gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_type: str = "segm",
                      iou_threshold: float = 0.5, max_dets: int = 100) -> dict[str, Any]:
    """COCO's average precision at one IoU threshold, written out in NumPy (all areas, no crowds).

    The same recipe as ``COCOeval.evaluate`` + ``accumulate`` for one threshold:

    1. per image and category, detections sorted by score (stable), the best ``max_dets`` kept;
       each one in turn takes the still-unmatched ground-truth object of highest IoU, if that IoU is
       ``>= iou_threshold`` (a true positive); otherwise it is a false positive;
    2. per category, all images' detections sorted by score (stable, images in id order); cumulative
       true / false positives give recall ``TP / n_gt`` and precision ``TP / (TP + FP)``;
    3. precision is made non-increasing from the right (the "interpolated" precision), read at the
       101 recalls 0, 0.01, ..., 1 (the first point whose recall reaches each; 0 beyond the last);
       their mean is the category's AP; AP is the mean over categories that have ground truth.

    Args:
        coco_gt: a COCO instances dict (``images``, ``annotations``, ``categories``) without crowds.
        results: COCO results for ``iou_type`` (from :func:`to_coco_results`).
        iou_type: ``"segm"`` or ``"bbox"``.
        iou_threshold: in ``[0, 1]``.
        max_dets: detections kept per image and category.

    Returns:
        ``{"AP": float, "per_category": {category_id: AP}, "tp": {category_id: int}, "n_gt": {...}}``.
    """
    iou_threshold = check_number(iou_threshold, "iou_threshold", 0.0, 1.0, interval=True)
    if any(a.get("iscrowd", 0) for a in coco_gt["annotations"]):
        raise ValueError("average_precision does not handle crowd annotations (iscrowd = 1); use coco_evaluate")
    image_ids = sorted(int(im["id"]) for im in coco_gt["images"])
    recall_points = np.linspace(0.0, 1.0, 101)
    per_category, tps, n_gts = {}, {}, {}
    for category in sorted(int(c["id"]) for c in coco_gt["categories"]):
        scores, matched, n_gt = [], [], 0
        for image_id in image_ids:
            gts = [a for a in coco_gt["annotations"] if int(a["image_id"]) == image_id and int(a["category_id"]) == category]
            dets = [d for d in results if int(d["image_id"]) == image_id and int(d["category_id"]) == category]
            order = np.argsort([-d["score"] for d in dets], kind="mergesort")[:max_dets]
            dets = [dets[i] for i in order]
            ious = iou_matrix(dets, gts, iou_type)  # [D, G]
            taken = np.zeros(len(gts), dtype=bool)
            for k, det in enumerate(dets):
                candidates = np.where(~taken & (ious[k] >= iou_threshold), ious[k], -1.0)
                best = int(np.argmax(candidates)) if len(gts) else -1
                hit = best >= 0 and candidates[best] >= 0
                if hit:
                    taken[best] = True
                scores.append(det["score"])
                matched.append(hit)
            n_gt += len(gts)
        if n_gt == 0:
            continue
        if not scores:  # objects but no detections: precision is 0 at every recall
            per_category[category], tps[category], n_gts[category] = 0.0, 0, n_gt
            continue
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
        tp = np.cumsum(np.asarray(matched, dtype=np.float64)[order])
        fp = np.cumsum(1.0 - np.asarray(matched, dtype=np.float64)[order])
        recall = tp / n_gt
        precision = tp / (tp + fp + np.spacing(1))
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # non-increasing from the right
        idx = np.searchsorted(recall, recall_points, side="left")
        sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
        per_category[category] = float(sampled.mean())
        tps[category], n_gts[category] = int(tp[-1]), n_gt
    ap = float(np.mean(list(per_category.values()))) if per_category else -1.0
    return {"AP": ap, "per_category": per_category, "tp": tps, "n_gt": n_gts}


# ----------------------------------------------------------------------------------------------
# one image's errors: hits, misses, false positives, class confusions (notebook 09's failure cases)
# ----------------------------------------------------------------------------------------------
def match_detections(prediction: Mapping[str, Tensor], target: Mapping[str, Any], score_thresh: float = 0.5,
                     iou_threshold: float = 0.5, mask_threshold: float = 0.5) -> dict[str, Any]:
    """Sort one image's detections into hits, class confusions, false positives, and its objects into misses.

    Class-agnostic greedy matching on *mask* IoU, as COCOeval does within a class: detections with
    ``score >= score_thresh``, highest score first, each take the still-unmatched ground-truth object
    of highest IoU if that IoU is ``>= iou_threshold``. A match with the right class is a hit, with
    another class a confusion.

    Args:
        prediction: ``boxes``, ``labels`` ``Tensor[D]``, ``scores`` ``Tensor[D]``, ``masks``
            ``Tensor[D, 1, H, W]`` probabilities (one eval-mode output of Mask R-CNN).
        target: ``labels`` ``Tensor[G]`` and ``masks`` ``Tensor[G, H, W]`` (0/1).
        score_thresh: detections below it are ignored.
        iou_threshold: the smallest mask IoU that counts as finding an object.
        mask_threshold: a predicted pixel is in the mask when its probability is ``> mask_threshold``.

    Returns:
        ``{"kept": LongTensor[D'] (indices of the detections considered), "ious": float64[D', G],
        "hits": [(d, g, iou)], "confusions": [(d, g, iou)], "false_positives": [d], "missed": [g]}``
        with ``d`` indexing the full prediction and ``g`` the target's objects.
    """
    score_thresh = check_number(score_thresh, "score_thresh", 0.0, 1.0, interval=True)
    iou_threshold = check_number(iou_threshold, "iou_threshold", 0.0, 1.0, interval=True)
    mask_threshold = check_number(mask_threshold, "mask_threshold", 0.0, 1.0, interval=True)
    if not isinstance(prediction, Mapping) or not {"labels", "scores", "masks"} <= set(prediction):
        raise TypeError("prediction must be a dict with 'labels', 'scores' and 'masks' (Mask R-CNN's output)")
    if not isinstance(target, Mapping) or not {"labels", "masks"} <= set(target):
        raise TypeError("target must be a dict with 'labels' and 'masks'")
    gt_masks = target["masks"].bool()  # [G, H, W]
    pred_masks = prediction["masks"]
    if pred_masks.dim() != 4 or pred_masks.shape[1] != 1 or pred_masks.shape[-2:] != gt_masks.shape[-2:]:
        raise ValueError(f"prediction['masks'] must be Tensor[D, 1, {gt_masks.shape[-2]}, {gt_masks.shape[-1]}], "
                         f"got shape {tuple(pred_masks.shape)}")
    scores = prediction["scores"]
    kept = torch.where(scores >= score_thresh)[0]
    kept = kept[torch.argsort(-scores[kept], stable=True)]  # highest score first
    binary = (pred_masks[kept, 0] > mask_threshold).flatten(1).double()  # [D', HW]
    gt = gt_masks.flatten(1).double()  # [G, HW]
    inter = binary @ gt.T  # [D', G]
    union = binary.sum(1)[:, None] + gt.sum(1)[None, :] - inter
    ious = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter)).numpy()
    taken = np.zeros(len(gt), dtype=bool)
    hits, confusions, false_positives = [], [], []
    for row, d in enumerate(kept.tolist()):
        candidates = np.where(~taken & (ious[row] >= iou_threshold), ious[row], -1.0)
        g = int(np.argmax(candidates)) if len(gt) else -1
        if g < 0 or candidates[g] < 0:
            false_positives.append(d)
            continue
        taken[g] = True
        same = int(prediction["labels"][d]) == int(target["labels"][g])
        (hits if same else confusions).append((d, g, float(ious[row, g])))
    missed = [int(g) for g in np.flatnonzero(~taken)]
    return {"kept": kept, "ious": ious, "hits": hits, "confusions": confusions,
            "false_positives": false_positives, "missed": missed}

"""Small mask utilities shared by the data, the evaluation and the ablation: RLE and mask IoU.

COCO stores a mask as a compressed run-length encoding (RLE): :func:`encode_rle` and
:func:`decode_rle` wrap ``pycocotools.mask`` so that the dict is JSON-serialisable (``counts`` a
``str``) and the decoded mask a NumPy ``bool`` array. :func:`mask_iou` compares predicted mask
probabilities with their true masks pixel by pixel.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from helpers.checks import check_number, check_tensor

__all__ = ["encode_rle", "decode_rle", "mask_iou"]


def encode_rle(mask: np.ndarray | Tensor) -> dict[str, Any]:
    """COCO's compressed RLE of one binary mask, ready for JSON.

    Args:
        mask: ``[H, W]`` array or tensor; non-zero pixels are in the mask.

    Returns:
        ``{"size": [H, W], "counts": str}`` (pycocotools' ``encode`` with ``counts`` decoded from
        bytes to ASCII, so the dict can be written with ``json.dump``).
    """
    from pycocotools import mask as mask_utils

    if isinstance(mask, Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a [H, W] array, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")  # bytes -> str, so the dict is JSON-serialisable
    return rle


def decode_rle(segmentation: Mapping[str, Any]) -> np.ndarray:
    """The ``bool[H, W]`` mask of a COCO RLE dict (``counts`` as ``str`` or ``bytes``)."""
    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools 2.0.x's decode trips numpy 2's __array__ deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return np.asarray(mask_utils.decode(dict(segmentation)), dtype=bool)


def mask_iou(pred: Tensor, truth: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of each predicted mask (probabilities ``> threshold``) with its own true mask, in float64.

    Args:
        pred: ``Tensor[K, 1, H, W]`` or ``[K, H, W]`` probabilities.
        truth: ``Tensor[K, H, W]`` binary masks, row ``k`` the truth for ``pred[k]``.
        threshold: binarisation threshold (0.5, as COCO evaluation uses).

    Returns:
        ``Tensor[K]`` float64 IoUs (0 where both masks are empty).
    """
    check_tensor(pred, "pred")
    check_tensor(truth, "truth", 3, shape="[K, H, W]")
    threshold = check_number(threshold, "threshold", 0.0, 1.0)
    p = pred[:, 0] if pred.dim() == 4 else pred
    if p.shape != truth.shape:
        raise ValueError(f"pred and truth must have matching [K, H, W] shapes, got {tuple(p.shape)} and "
                         f"{tuple(truth.shape)}")
    a, b = p > threshold, truth.bool()
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))

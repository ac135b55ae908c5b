"""helpers.masks: RLE round trip (against pycocotools' own area) and paired mask IoU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from helpers.masks import decode_rle, encode_rle, mask_iou


def test_rle_round_trip_and_json():
    rng = np.random.default_rng(0)
    mask = rng.random((17, 23)) > 0.6
    rle = encode_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == [17, 23]
    json.dumps(rle)
    assert np.array_equal(decode_rle(rle), mask)
    assert int(mask_utils.area({**rle, "counts": rle["counts"].encode()})) == int(mask.sum())
    assert encode_rle(torch.as_tensor(mask)) == rle
    with pytest.raises(ValueError, match=r"mask must be a \[H, W\]"):
        encode_rle(mask[None])


def test_mask_iou():
    truth = torch.zeros(3, 4, 4)
    truth[0, :2] = 1                     # 8 pixels
    truth[1, :, :1] = 1                  # 4 pixels
    pred = torch.zeros(3, 1, 4, 4)
    pred[0, 0, :1] = 0.9                 # 4 of the 8: IoU 0.5
    pred[1, 0, :, :1] = 0.5              # not > 0.5: empty, IoU 0
    iou = mask_iou(pred, truth)          # row 2: both empty, IoU 0
    assert iou.dtype == torch.float64 and iou.tolist() == [0.5, 0.0, 0.0]
    assert mask_iou(pred[:, 0], truth, threshold=0.4).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="matching"):
        mask_iou(pred[:2], truth)
    with pytest.raises(ValueError, match="threshold must be <= 1.0"):
        mask_iou(pred, truth, threshold=2.0)

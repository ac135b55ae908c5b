"""helpers.boxes against torchvision.ops: areas, IoU, clipping, small boxes, NMS, batched NMS."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.ops as ops
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import boxes as B


def integer_boxes(draw_rng: np.random.Generator, n: int, extent: int = 40, max_wh: int = 20) -> torch.Tensor:
    """Boxes on an integer grid: many exact ties in IoU."""
    xy = draw_rng.integers(0, extent, size=(n, 2))
    wh = draw_rng.integers(1, max_wh, size=(n, 2))
    return torch.as_tensor(np.concatenate([xy, xy + wh], axis=1), dtype=torch.float32)


def random_boxes(g: torch.Generator, n: int, extent: float = 120.0, max_wh: float = 60.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * max_wh + 0.5
    return torch.cat([xy, xy + wh], dim=1)


# -- areas and IoU ----------------------------------------------------------------------------------

@settings(deadline=None, max_examples=50)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 15), m=st.integers(0, 15))
def test_box_iou_hypothesis(seed, n, m):
    rng = np.random.default_rng(seed)
    a, b = integer_boxes(rng, n), integer_boxes(rng, m)
    assert torch.equal(B.box_iou(a, b), ops.box_iou(a, b))
    g = torch.Generator().manual_seed(seed)
    a, b = random_boxes(g, n), random_boxes(g, m)
    assert torch.equal(B.box_iou(a, b), ops.box_iou(a, b))
    assert torch.equal(B.box_area(a), ops.box_area(a))


def test_box_iou_float64_reference():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0], [10.0, 10.0, 11.0, 11.0]], dtype=torch.float64)
    iou = B.box_iou(boxes, boxes)
    assert iou[0, 1].item() == pytest.approx(4 / 28)
    assert iou[0, 2].item() == 0.0
    assert torch.equal(torch.diagonal(iou), torch.ones(3, dtype=torch.float64))


# -- clip, small boxes, NMS ---------------------------------------------------------------------------

def test_clip_and_remove_small_equal_to_torchvision():
    g = torch.Generator().manual_seed(0)
    boxes = torch.randn(200, 4, generator=g) * 80 + 40
    for size in [(100, 60), (64, 64)]:
        assert torch.equal(B.clip_boxes_to_image(boxes, size), ops.clip_boxes_to_image(boxes, size))
        assert torch.equal(B.clip_boxes_to_image(boxes.view(2, 100, 4), size),
                           ops.clip_boxes_to_image(boxes.view(2, 100, 4), size))
    for min_size in (1e-3, 5.0, 30.0):
        assert torch.equal(B.remove_small_boxes(boxes, min_size), ops.remove_small_boxes(boxes, min_size))


def test_nms_ties_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.5])
    # ties at 0.9: index 1 before index 2 (stable sort); 2 overlaps 1 by 0.818 -> dropped; so is 0; 3 stays
    assert B.nms(boxes, scores, 0.5).tolist() == ops.nms(boxes, scores, 0.5).tolist() == [1, 3]
    # two identical boxes with identical scores: the lower index survives
    same = torch.tensor([[0.0, 0.0, 4.0, 4.0]] * 3)
    assert B.nms(same, torch.ones(3), 0.5).tolist() == ops.nms(same, torch.ones(3), 0.5).tolist() == [0]


def test_nms_threshold_compared_in_float64():
    # IoU exactly representable: 50 / 150 = 1/3 in float32 is 0.3333333432674408 (> 1/3 in float64)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    scores = torch.tensor([1.0, 0.5])
    iou32 = B.box_iou(boxes[:1], boxes[1:]).item()
    for thr in (iou32, math.nextafter(iou32, 0.0), 1 / 3, math.nextafter(iou32, 1.0)):
        assert B.nms(boxes, scores, thr).tolist() == ops.nms(boxes, scores, thr).tolist(), thr
    assert B.nms(boxes, scores, 1 / 3).tolist() == [0]      # float32 IoU > 1/3 in float64: suppressed
    assert B.nms(boxes, scores, iou32).tolist() == [0, 1]   # not strictly greater: kept


@settings(deadline=None, max_examples=150)
@given(seed=st.integers(0, 100_000), n=st.integers(0, 60),
       threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0, 1 / 3, 0.25]),
       tie_scores=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_nms_hypothesis(seed, n, threshold, tie_scores, dtype):
    rng = np.random.default_rng(seed)
    boxes = integer_boxes(rng, n, 20, 10).to(dtype)  # small grid: many exact IoU ties
    if tie_scores:
        scores = torch.as_tensor(rng.choice([0.2, 0.5, 0.9], size=n), dtype=dtype)
    else:
        scores = torch.as_tensor(rng.random(n), dtype=dtype)
    assert torch.equal(B.nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))


@settings(deadline=None, max_examples=60)
@given(seed=st.integers(0, 100_000), n=st.integers(0, 60), block=st.integers(1, 9),
       threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, 1 / 3]), tie_scores=st.booleans())
def test_nms_small_blocks_hypothesis(seed, n, block, threshold, tie_scores):
    # tiny blocks: many blocks, so suppression across blocks and empty blocks are exercised
    rng = np.random.default_rng(seed)
    boxes = integer_boxes(rng, n, 20, 10)
    scores = torch.as_tensor(rng.choice([0.2, 0.5, 0.9], size=n) if tie_scores else rng.random(n), dtype=torch.float32)
    saved, B.NMS_BLOCK = B.NMS_BLOCK, block
    try:
        assert torch.equal(B.nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))
    finally:
        B.NMS_BLOCK = saved


@settings(deadline=None, max_examples=80)
@given(seed=st.integers(0, 100_000), n=st.integers(0, 300), block=st.sampled_from([3, 16, 256]),
       threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0, 1 / 3]), tie_scores=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_nms_equals_nms_loop(seed, n, block, threshold, tie_scores, dtype):
    """The fast blocked nms against notebook 05b's plain greedy loop (its reference, exported as nms_loop):
    integer boxes with exact IoU ties and identical boxes, scores with ties, IoU exactly at 1/3."""
    rng = np.random.default_rng(seed)
    boxes = integer_boxes(rng, n, 20, 10).to(dtype)
    scores = torch.as_tensor(rng.choice([0.2, 0.5, 0.9], size=n) if tie_scores else rng.random(n), dtype=dtype)
    saved, B.NMS_BLOCK = B.NMS_BLOCK, block
    try:
        assert torch.equal(B.nms(boxes, scores, threshold), B.nms_loop(boxes, scores, threshold))
    finally:
        B.NMS_BLOCK = saved


def test_nms_loop_by_hand():
    """The toy case of notebook 05b: ties in score go to the lower index; IoU 1/3 in float32 is above 1/3."""
    boxes = torch.tensor([[10.0, 10, 50, 50], [12, 12, 52, 52], [10, 10, 50, 50], [60, 10, 100, 50],
                          [30, 10, 70, 50], [40, 60, 80, 100]])
    scores = torch.tensor([0.6, 0.9, 0.9, 0.8, 0.7, 0.3])
    assert B.nms_loop(boxes, scores, 0.5).tolist() == [1, 3, 4, 5]
    assert B.nms_loop(boxes, scores, 0.3).tolist() == [1, 3, 5]
    assert B.nms_loop(boxes[[0, 4]], torch.tensor([1.0, 0.5]), 1 / 3).tolist() == [0]
    assert B.nms_loop(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize("n", [255, 256, 257, 700, 2000])
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_several_blocks_equal_to_torchvision(n, threshold):
    rng = np.random.default_rng(n)
    for boxes, scores in ((integer_boxes(rng, n, 200, 40), torch.as_tensor(rng.choice([0.2, 0.5, 0.9], size=n))),
                          (random_boxes(torch.Generator().manual_seed(n), n, 400.0, 80.0), torch.as_tensor(rng.random(n)))):
        for dtype in (torch.float32, torch.float64):
            b, s = boxes.to(dtype), scores.to(dtype)
            assert torch.equal(B.nms(b, s, threshold), ops.nms(b, s, threshold))


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 100_000), n=st.sampled_from([0, 5, 40, 999, 1001, 1500]), categories=st.integers(1, 5),
       tie_scores=st.booleans())
def test_batched_nms_hypothesis(seed, n, categories, tie_scores):
    # n <= 1000 boxes: torchvision shifts the categories apart; above: one NMS per category
    rng = np.random.default_rng(seed)
    boxes = integer_boxes(rng, n, 60, 25)
    scores = torch.as_tensor(rng.choice([0.2, 0.5, 0.9], size=n) if tie_scores else rng.random(n), dtype=torch.float32)
    idxs = torch.as_tensor(rng.integers(0, categories, size=n))
    assert torch.equal(B.batched_nms(boxes, scores, idxs, 0.5), ops.batched_nms(boxes, scores, idxs, 0.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_nms_one_walk_per_category_equal_to_torchvision(seed):
    # up to 1000 float boxes (the RPN's case: 840 boxes over 4 levels): torchvision runs one NMS over
    # shifted boxes; ours walks each category's shifted boxes alone, which must give the same indices
    gen = torch.Generator().manual_seed(seed)
    boxes = random_boxes(gen, 900, 128.0, 60.0)
    scores = torch.rand(900, generator=gen)
    idxs = torch.randint(0, 5, (900,), generator=gen)
    for threshold in (0.3, 0.5, 0.7):
        assert torch.equal(B.batched_nms(boxes, scores, idxs, threshold), ops.batched_nms(boxes, scores, idxs, threshold))


def test_errors():
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        B.nms(torch.zeros(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="scores must be a Tensor"):
        B.nms(boxes, torch.zeros(2), 0.5)
    with pytest.raises(TypeError, match="same dtype"):
        B.nms(boxes, torch.zeros(1, dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match="must not contain NaN"):
        B.nms(boxes, torch.tensor([float("nan")]), 0.5)
    with pytest.raises(TypeError, match="iou_threshold must be a number"):
        B.nms(boxes, torch.zeros(1), None)
    with pytest.raises(TypeError, match="boxes must be a floating-point"):
        B.nms(boxes.long(), torch.zeros(1, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="idxs must be an integer tensor"):
        B.batched_nms(boxes, torch.zeros(1), torch.zeros(1), 0.5)
    with pytest.raises(ValueError, match="idxs must be a Tensor"):
        B.batched_nms(boxes, torch.zeros(1), torch.zeros(2, dtype=torch.int64), 0.5)
    with pytest.raises(ValueError, match="size must be"):
        B.clip_boxes_to_image(boxes, (1, 2, 3))
    with pytest.raises(ValueError, match="boxes must be a Tensor"):
        B.clip_boxes_to_image(torch.zeros(3), (4, 4))

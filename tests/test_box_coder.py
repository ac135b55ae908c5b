"""helpers.box_coder against torchvision's BoxCoder (bit for bit) and a float64 recomputation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TVBoxCoder

from helpers.box_coder import DEFAULT_BBOX_XFORM_CLIP, BoxCoder, decode_boxes, encode_boxes

WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (0.3, 1.7, 2.9, 0.11)]


def random_boxes(n: int, seed: int, dtype: torch.dtype = torch.float32, max_xy: float = 200.0,
                 max_wh: float = 80.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_xy - 20
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * max_wh + 0.05
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def test_hand_example():
    # The example worked by hand in notebook 05.
    anchor = torch.tensor([[-12.0, -6.0, 12.0, 6.0]]) + torch.tensor([[20.0, 20.0, 20.0, 20.0]])  # centre (20,20), 24x12
    gt = torch.tensor([[10.0, 16.0, 40.0, 28.0]])                                                # centre (25,22), 30x12
    deltas = encode_boxes(gt, anchor)
    expected = torch.tensor([[5 / 24, 2 / 12, math.log(30 / 24), 0.0]])
    torch.testing.assert_close(deltas, expected)
    torch.testing.assert_close(decode_boxes(deltas, anchor), gt)


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_torchvision(weights, dtype, seed):
    anchors, gts = random_boxes(500, seed, dtype), random_boxes(500, seed + 100, dtype)
    ours, theirs = BoxCoder(weights), TVBoxCoder(weights)
    assert torch.equal(ours.encode_single(gts, anchors), theirs.encode_single(gts, anchors))
    codes = torch.randn(500, 4 * 3, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3
    assert torch.equal(ours.decode_single(codes, anchors), theirs.decode_single(codes, anchors))
    # the per-image list versions
    split = [anchors[:123], anchors[123:]]
    assert torch.equal(ours.decode(codes, split), theirs.decode(codes, split))
    enc_ours = ours.encode([gts[:7], gts[7:]], [anchors[:7], anchors[7:]])
    enc_theirs = theirs.encode([gts[:7], gts[7:]], [anchors[:7], anchors[7:]])
    assert len(enc_ours) == len(enc_theirs) == 2
    for a, b in zip(enc_ours, enc_theirs):
        assert torch.equal(a, b)


def test_float64_formula():
    """Recompute the encoding in float64 with plain Python maths (an independent reference)."""
    anchors, gts = random_boxes(50, 3, torch.float64), random_boxes(50, 4, torch.float64)
    wx, wy, ww, wh = 10.0, 10.0, 5.0, 5.0
    got = encode_boxes(gts, anchors, (wx, wy, ww, wh))
    for i in range(50):
        ax1, ay1, ax2, ay2 = anchors[i].tolist()
        gx1, gy1, gx2, gy2 = gts[i].tolist()
        aw, ah, gw, gh = ax2 - ax1, ay2 - ay1, gx2 - gx1, gy2 - gy1
        want = [wx * ((gx1 + gw / 2) - (ax1 + aw / 2)) / aw, wy * ((gy1 + gh / 2) - (ay1 + ah / 2)) / ah,
                ww * math.log(gw / aw), wh * math.log(gh / ah)]
        assert got[i].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_clip_and_default():
    assert DEFAULT_BBOX_XFORM_CLIP == pytest.approx(math.log(1000 / 16))
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    huge = torch.tensor([[0.0, 0.0, 50.0, 50.0]])  # exp(50) would overflow float32
    box = decode_boxes(huge, anchor)
    assert torch.isfinite(box).all()
    # width is clamped to exp(log(1000/16)) * 10 = 625
    assert float(box[0, 2] - box[0, 0]) == pytest.approx(625.0, rel=1e-5)
    assert torch.equal(box, TVBoxCoder((1.0, 1.0, 1.0, 1.0)).decode_single(huge, anchor))


def test_degenerate_reference_box_like_torchvision():
    # torchvision's RPN encodes zero boxes for an image without objects: -inf deltas, unused by the loss.
    anchors = random_boxes(3, 0)
    zeros = torch.zeros(3, 4)
    ours = encode_boxes(zeros, anchors)
    theirs = TVBoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(zeros, anchors)
    assert torch.equal(ours, theirs)
    assert torch.isinf(ours[:, 2:]).all()


def test_empty():
    empty = torch.zeros(0, 4)
    assert encode_boxes(empty, empty).shape == (0, 4)
    assert decode_boxes(torch.zeros(0, 8), empty).shape == (0, 8)
    coder = BoxCoder()
    assert torch.equal(coder.decode(torch.zeros(0, 4), [empty]), TVBoxCoder((1.0,) * 4).decode(torch.zeros(0, 4), [empty]))


@settings(deadline=None, max_examples=60)
@given(
    n=st.integers(1, 20),
    seed=st.integers(0, 10_000),
    weights=st.tuples(*[st.floats(0.1, 20.0)] * 4),
    scale=st.floats(0.5, 1000.0),
)
def test_round_trip_and_torchvision_hypothesis(n, seed, weights, scale):
    anchors = random_boxes(n, seed, torch.float64, max_xy=scale, max_wh=scale)
    gts = random_boxes(n, seed + 1, torch.float64, max_xy=scale, max_wh=scale)
    deltas = encode_boxes(gts, anchors, weights)
    assert torch.equal(deltas, TVBoxCoder(weights).encode_single(gts, anchors))
    back = decode_boxes(deltas, anchors, weights, bbox_xform_clip=math.inf)
    torch.testing.assert_close(back, gts, rtol=1e-9, atol=1e-9 * scale)
    codes = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    assert torch.equal(decode_boxes(codes, anchors, weights), TVBoxCoder(weights).decode_single(codes, anchors))


# -- errors -------------------------------------------------------------------------------------

def test_errors_encode():
    good = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    with pytest.raises(TypeError, match="reference_boxes must be a Tensor"):
        encode_boxes([[0, 0, 4, 4]], good)
    with pytest.raises(ValueError, match=r"proposals must have shape \[N, 4\]"):
        encode_boxes(good, torch.zeros(1, 5))
    with pytest.raises(TypeError, match="proposals must be a floating-point tensor"):
        encode_boxes(good, torch.tensor([[0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="same number of rows"):
        encode_boxes(good, torch.zeros(2, 4))
    # mixed dtypes are promoted, as torchvision promotes them (autocast: bfloat16 proposals, float32 targets)
    tv = TVBoxCoder((1.0, 1.0, 1.0, 1.0))
    for ref, prop in ((good, good.double() + 0.5), (good + 0.3, good.bfloat16()), (good.bfloat16() + 1, good)):
        ours, theirs = encode_boxes(ref, prop), tv.encode_single(ref, prop)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    with pytest.raises(ValueError, match=r"proposals must have x2 > x1 and y2 > y1.*row 0"):
        encode_boxes(good, torch.tensor([[0.0, 0.0, 0.0, 4.0]]))


def test_errors_weights_and_clip():
    with pytest.raises(ValueError, match="weights must hold 4 numbers"):
        BoxCoder((1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="weights must be a sequence"):
        BoxCoder(1.0)
    with pytest.raises(TypeError, match="weights must hold plain numbers"):
        BoxCoder((1.0, 1.0, "a", 1.0))
    with pytest.raises(ValueError, match="finite positive"):
        BoxCoder((1.0, 0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="weights must hold 4 numbers"):
        encode_boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.ones(3))
    with pytest.raises(TypeError, match="bbox_xform_clip must be a number"):
        BoxCoder(bbox_xform_clip="big")
    with pytest.raises(ValueError, match="bbox_xform_clip must not be NaN"):
        decode_boxes(torch.zeros(1, 4), torch.ones(1, 4), bbox_xform_clip=math.nan)


def test_errors_decode():
    box = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    with pytest.raises(TypeError, match="rel_codes must be a Tensor"):
        decode_boxes([[0.0] * 4], box)
    with pytest.raises(ValueError, match=r"rel_codes must have shape \[N, 4K\]"):
        decode_boxes(torch.zeros(1, 6), box)
    with pytest.raises(TypeError, match="rel_codes must be a floating-point tensor"):
        decode_boxes(torch.zeros(1, 4, dtype=torch.int64), box)
    with pytest.raises(ValueError, match="same number of rows"):
        decode_boxes(torch.zeros(2, 4), box)
    coder = BoxCoder()
    with pytest.raises(TypeError, match="boxes must be a list or tuple"):
        coder.decode(torch.zeros(1, 4), box)
    with pytest.raises(ValueError, match="boxes must hold at least 1 item"):
        coder.decode(torch.zeros(1, 4), [])
    with pytest.raises(ValueError, match="not a multiple of 4"):
        coder.decode(torch.zeros(1, 6), [box])
    with pytest.raises(ValueError, match=r"boxes\[0\] must have shape"):
        coder.decode(torch.zeros(1, 4), [torch.zeros(4)])
    with pytest.raises(ValueError, match="one tensor per image"):
        coder.encode([box], [box, box])

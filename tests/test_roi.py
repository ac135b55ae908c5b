"""Tests of helpers.roi against independent references.

References: ``torchvision.ops.roi_align`` / ``roi_pool`` (forward and input gradient),
``torch.nn.functional.grid_sample`` (bilinear interpolation inside the map), the teaching versions
that notebooks 02, 02b and 03 write in the open and export into ``helpers.roi`` (``roi_align_loop``,
``roi_align_padded``, ``roi_pool_loop``: plain float64 loops and padded grids), and
``torch.autograd.gradcheck``. Hypothesis draws random RoIs. Run: ``.venv/bin/pytest tests/test_roi.py -q``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import roi as R
from helpers.roi import (
    bilinear,
    bilinear_interpolate,
    bilinear_tv,
    bilinear_weights,
    c_round,
    convert_boxes_to_roi_format,
    roi_align,
    roi_align_loop,
    roi_align_max,
    roi_align_padded,
    roi_pool,
    roi_pool_bins,
    roi_pool_loop,
    roi_sample_points,
)

Tensor = torch.Tensor
HYP = settings(deadline=None, derandomize=True, max_examples=50)
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}

# ------------------------------------------------------------------------------------------------
# fixtures and independent references
# ------------------------------------------------------------------------------------------------


def random_rois(gen: torch.Generator, n_images: int, height: int, width: int, scale: float, k: int = 24) -> Tensor:
    """Tensor[k, 5] in image coordinates: boxes inside, partly outside, wholly outside, tiny (< 1 px
    on the feature map), degenerate (x1 == x2 and/or y1 == y2)."""
    img_w, img_h = width / scale, height / scale
    xy = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([img_w, img_h]) * 1.4 - torch.tensor(
        [img_w, img_h]
    ) * 0.2
    wh = torch.rand(k, 2, generator=gen, dtype=torch.float64) * torch.tensor([img_w, img_h]) * 0.6
    q = k // 6
    wh[:q] *= (0.7 / scale) / wh[:q].max()  # tiny: at most 0.7 px on the feature map
    wh[q : 2 * q, 0] = 0  # degenerate x1 == x2
    wh[2 * q : 2 * q + q // 2, 1] = 0  # degenerate y1 == y2 (some with both)
    wh[2 * q + q // 2 : 3 * q] = 0
    xy[3 * q : 4 * q] = torch.tensor([-3.0 * img_w, 2.0 * img_h])  # wholly outside (left / below)
    xy[3 * q : 3 * q + 1] = torch.tensor([img_w + 5 / scale, -img_h])  # right / above
    batch = torch.randint(0, n_images, (k, 1), generator=gen).double()
    return torch.cat([batch, xy, xy + wh], dim=1)


def as_list(rois: Tensor, n: int) -> list[Tensor]:
    return [rois[rois[:, 0] == i, 1:] for i in range(n)]


def grad_of(fn, x: Tensor, *args, seed: int = 0) -> tuple[Tensor, Tensor]:
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, *args)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (gx,) = torch.autograd.grad(out, x, g, allow_unused=True)
    return out.detach(), (torch.zeros_like(x) if gx is None else gx)


# ------------------------------------------------------------------------------------------------
# notebook 01's worked example
# ------------------------------------------------------------------------------------------------

FEATURE_4x4 = torch.arange(1.0, 17.0).reshape(4, 4)
ROI = (1.2, 0.8, 2.8, 2.2)


def grid_sample_at(feature: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """grid_sample with align_corners=True: normalised -1 / +1 are the centres of the corner pixels."""
    h, w = feature.shape[-2:]
    grid = torch.stack([2 * xs / (w - 1) - 1, 2 * ys / (h - 1) - 1], dim=-1).reshape(1, 1, -1, 2)
    out = F.grid_sample(feature.reshape(1, -1, h, w), grid.to(feature.dtype), mode="bilinear", align_corners=True)
    return out.reshape(*feature.shape[:-2], -1)


def test_worked_example_single_point():
    v = bilinear_interpolate(FEATURE_4x4, 1.6, 1.15)
    assert v.item() == pytest.approx(7.2, abs=1e-6)
    bw = bilinear_weights(4, 4, 1.6, 1.15)
    assert bw.positions.tolist() == [[1, 1], [2, 1], [1, 2], [2, 2]]  # (x, y): values 6, 7, 10, 11
    assert [FEATURE_4x4[y, x].item() for x, y in bw.positions.tolist()] == [6, 7, 10, 11]
    assert bw.lx.item() == pytest.approx(0.6, abs=1e-6) and bw.ly.item() == pytest.approx(0.15, abs=1e-6)
    assert bw.weights.tolist() == pytest.approx([0.4 * 0.85, 0.6 * 0.85, 0.4 * 0.15, 0.6 * 0.15], abs=1e-6)
    assert grid_sample_at(FEATURE_4x4, torch.tensor([1.6]), torch.tensor([1.15])).item() == pytest.approx(7.2, abs=1e-5)
    # float64 recomputation of the weighted sum
    assert 6 * 0.4 * 0.85 + 7 * 0.6 * 0.85 + 10 * 0.4 * 0.15 + 11 * 0.6 * 0.15 == pytest.approx(7.2, abs=1e-12)


def test_worked_example_four_bins():
    expected = torch.tensor([[7.2, 8.0], [10.0, 10.8]])
    rois = torch.tensor([[0.0, *ROI]])
    x = FEATURE_4x4[None, None]
    ours = roi_align(x, rois, 2, 1.0, 1, False)[0, 0]
    ref = tv.roi_align(x, rois, 2, 1.0, 1, False)[0, 0]
    loop = roi_align_loop(x, rois, 2, 1.0, 1, False)[0, 0]
    pts = roi_sample_points(ROI, 2, sampling_ratio=1).points[0, :, :, 0, 0]  # [2, 2, (x, y)] bin centres
    gs = grid_sample_at(FEATURE_4x4, pts[..., 0].float().reshape(-1), pts[..., 1].float().reshape(-1)).reshape(2, 2)
    for got in (ours, ref, loop, gs):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    centres = torch.tensor([[[1.6, 1.15], [2.4, 1.15]], [[1.6, 1.85], [2.4, 1.85]]], dtype=torch.float64)
    torch.testing.assert_close(pts, centres, atol=1e-12, rtol=0)
    s = roi_sample_points(ROI, 2, sampling_ratio=1)
    assert s.bin_w.item() == pytest.approx(0.8) and s.bin_h.item() == pytest.approx(0.7)
    assert s.bin_edges_x[0].tolist() == pytest.approx([1.2, 2.0, 2.8])
    assert s.bin_edges_y[0].tolist() == pytest.approx([0.8, 1.5, 2.2])


# ------------------------------------------------------------------------------------------------
# bilinear interpolation
# ------------------------------------------------------------------------------------------------


def test_bilinear_matches_grid_sample_inside():
    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(3, 7, 9, generator=gen, dtype=torch.float64)
    xs = torch.rand(200, generator=gen, dtype=torch.float64) * 8
    ys = torch.rand(200, generator=gen, dtype=torch.float64) * 6
    torch.testing.assert_close(bilinear_interpolate(feat, xs, ys), grid_sample_at(feat, xs, ys), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        bilinear_interpolate(feat[0], xs, ys), grid_sample_at(feat[0], xs, ys), atol=1e-12, rtol=0
    )


def tiny_aligned_rois(xs: Tensor, ys: Tensor) -> Tensor:
    """Aligned 1x1-output RoIs of size 0.5 whose single sample (sampling_ratio=1) sits near (x, y)."""
    x1, y1 = xs + 0.25, ys + 0.25
    return torch.stack([torch.zeros_like(xs), x1, y1, x1 + 0.5, y1 + 0.5], dim=1)


@HYP
@given(
    pts=st.lists(st.tuples(st.floats(-2.5, 9.5), st.floats(-2.5, 7.5)), min_size=1, max_size=30),
    h=st.integers(1, 6),
    w=st.integers(1, 8),
)
def test_bilinear_edge_rules_match_torchvision(pts, h, w):
    """Anywhere, also outside the map: one-sample RoIs make torchvision evaluate exactly one point."""
    gen = torch.Generator().manual_seed(h * 10 + w)
    feat = torch.randn(1, 2, h, w, generator=gen, dtype=torch.float64)
    p = torch.tensor(pts, dtype=torch.float64)
    rois = tiny_aligned_rois(p[:, 0], p[:, 1])
    ref = tv.roi_align(feat, rois, 1, 1.0, 1, True)[:, :, 0, 0]  # [S, C]
    s = roi_sample_points(rois, 1, 1.0, 1, True).points[:, 0, 0, 0, 0]  # the very points torchvision used
    got = bilinear_interpolate(feat[0], s[:, 0], s[:, 1]).T
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


def test_bilinear_edge_rules_explicit():
    f = FEATURE_4x4
    # outside [-1, W] x [-1, H] gives 0
    for x, y in [(-1.01, 1.0), (1.0, -1.01), (4.01, 1.0), (1.0, 4.01), (float("nan"), 1.0)]:
        assert bilinear_interpolate(f, x, y).item() == 0
        bw = bilinear_weights(4, 4, x, y)
        assert not bw.inside.item() and bw.weights.abs().sum().item() == 0
    # y in [-1, 0] clamps to row 0; y in [H-1, H] pins to row H-1
    assert bilinear_interpolate(f, 1.0, -0.7).item() == f[0, 1].item()
    assert bilinear_interpolate(f, 1.0, -1.0).item() == f[0, 1].item()
    assert bilinear_interpolate(f, 1.0, 3.6).item() == f[3, 1].item()
    assert bilinear_interpolate(f, 1.0, 4.0).item() == f[3, 1].item()
    assert bilinear_interpolate(f, 3.5, 0.5).item() == pytest.approx((f[0, 3] + f[1, 3]).item() / 2)
    bw = bilinear_weights(4, 4, 3.5, 3.2)
    assert bw.positions.tolist() == [[3, 3]] * 4 and bw.weights.tolist() == [1.0, 0.0, 0.0, 0.0]
    # inside points: weights sum to 1
    g = torch.Generator().manual_seed(3)
    xs, ys = torch.rand(50, generator=g) * 5 - 1, torch.rand(50, generator=g) * 5 - 1
    torch.testing.assert_close(bilinear_weights(4, 4, xs, ys).weights.sum(-1), torch.ones(50))


def test_bilinear_gradient_and_shapes():
    f = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    xs = torch.tensor([[0.3, 4.9], [2.5, -0.5]], dtype=torch.float64)
    ys = torch.tensor([[1.1, 3.3], [4.0, 0.2]], dtype=torch.float64)
    assert bilinear_interpolate(f, xs, ys).shape == (2, 2, 2)
    assert bilinear_interpolate(f[0], 1.0, 2.0).shape == ()
    assert torch.autograd.gradcheck(lambda t: bilinear_interpolate(t, xs, ys), (f,))


# ------------------------------------------------------------------------------------------------
# RoIAlign against torchvision
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "csr"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_torchvision(aligned, sampling_ratio, dtype, backend, monkeypatch):
    """Small problems take the embedding_bag gather ("auto"); "csr" forces the sparse-matmul one."""
    if backend == "csr":
        monkeypatch.setattr(R, "CSR_MIN_WORK", 0)
    gen = torch.Generator().manual_seed(sampling_ratio + 10 * aligned)
    n, c, h, w = 3, 4, 13, 17
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    for scale, out_size in [(1.0, 3), (0.25, (2, 5)), (1 / 3, (4, 1))]:
        rois = random_rois(gen, n, h, w, scale).to(dtype)
        ref, ref_g = grad_of(tv.roi_align, x, rois, out_size, scale, sampling_ratio, aligned)
        got, got_g = grad_of(roi_align, x, rois, out_size, scale, sampling_ratio, aligned)
        torch.testing.assert_close(got, ref, atol=TOL[dtype], rtol=0)
        torch.testing.assert_close(got_g, ref_g, atol=TOL[dtype], rtol=0)
        got_list = roi_align(x, as_list(rois, n), out_size, scale, sampling_ratio, aligned)
        ref_list = tv.roi_align(x, as_list(rois, n), out_size, scale, sampling_ratio, aligned)
        torch.testing.assert_close(got_list, ref_list, atol=TOL[dtype], rtol=0)
        assert got.dtype == dtype and got.shape == ref.shape


@pytest.mark.parametrize("sampling_ratio", [0, -1])
def test_roi_align_empty_aligned_box_has_a_zero_gradient(sampling_ratio):
    # aligned=True with an adaptive grid: a zero-size box has no samples; torchvision still returns a
    # graph (a zero gradient), and so must we (found by the hypothesis test below in CI)
    x = torch.randn(2, 3, 11, 14, dtype=torch.float64)
    rois = torch.tensor([[0, 0.0, 0.0, 0.0, 0.0], [1, 3.0, 2.0, 3.0, 2.0]], dtype=torch.float64)
    args = ((1, 1), 1.0, sampling_ratio, True)
    ref, ref_g = grad_of(tv.roi_align, x, rois, *args)
    got, got_g = grad_of(roi_align, x, rois, *args)
    torch.testing.assert_close(got, ref, atol=0, rtol=0)
    torch.testing.assert_close(got_g, ref_g, atol=0, rtol=0)
    assert roi_align(x.requires_grad_(True), rois, *args).requires_grad


@HYP
@given(
    boxes=st.lists(
        st.tuples(st.integers(0, 1), st.floats(-12, 40), st.floats(-12, 30), st.floats(0, 30), st.floats(0, 25)),
        min_size=1,
        max_size=6,
    ),
    out_h=st.integers(1, 4),
    out_w=st.integers(1, 4),
    scale=st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 0.7]),
    sampling_ratio=st.integers(-1, 3),
    aligned=st.booleans(),
)
def test_roi_align_random_rois_hypothesis(boxes, out_h, out_w, scale, sampling_ratio, aligned):
    gen = torch.Generator().manual_seed(len(boxes))
    x = torch.randn(2, 3, 11, 14, generator=gen, dtype=torch.float64)
    rois = torch.tensor([[b, x1, y1, x1 + bw, y1 + bh] for b, x1, y1, bw, bh in boxes], dtype=torch.float64)
    args = ((out_h, out_w), scale, sampling_ratio, aligned)
    ref, ref_g = grad_of(tv.roi_align, x, rois, *args)
    got, got_g = grad_of(roi_align, x, rois, *args)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
    torch.testing.assert_close(got_g, ref_g, atol=1e-10, rtol=0)
    loop = roi_align_loop(x, rois, (out_h, out_w), scale, sampling_ratio, aligned)  # notebook 02's loops
    torch.testing.assert_close(got, loop, atol=1e-10, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roi_align_gradcheck(seed, monkeypatch):
    fast = seed == 2
    if fast:  # the sparse-matmul gather and its custom backward; its thread start-ups are slow, so
        monkeypatch.setattr(R, "CSR_MIN_WORK", 0)  # gradcheck's fast mode (random projections)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = random_rois(gen, 2, 6, 7, 1.0, k=6)
    for aligned, sr in [(False, -1), (True, 2), (False, 1)]:
        assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 3), 1.0, sr, aligned), (x,), fast_mode=fast)


def test_roi_align_loop_equals_vectorised():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 9, 10, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 9, 10, 0.5, k=6)
    for aligned, sr in [(False, -1), (True, 0), (False, 2), (True, 3)]:
        loop, loop_g = grad_of(roi_align_loop, x, rois, (2, 3), 0.5, sr, aligned)
        vec, vec_g = grad_of(roi_align, x, rois, (2, 3), 0.5, sr, aligned)
        torch.testing.assert_close(loop, vec, atol=1e-12, rtol=0)
        torch.testing.assert_close(loop_g, vec_g, atol=1e-12, rtol=0)
    # float32
    x32, r32 = x.float(), rois.float()
    torch.testing.assert_close(roi_align_loop(x32, r32, 2, 0.5, 2), tv.roi_align(x32, r32, 2, 0.5, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", range(3))
def test_padded_grid_version_is_the_reference_of_the_fast_one(seed):
    """Notebook 02b's padded-grid vectorisation (exported into helpers.roi) against the fast roi_align
    and roi_align_max, values and input gradients, adaptive and fixed grids."""
    gen = torch.Generator().manual_seed(40 + seed)
    x = torch.randn(2, 3, 9, 10, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 9, 10, 0.5, k=12)
    for aligned, sr in [(False, -1), (True, 0), (False, 2), (True, 3)]:
        for reduce, fast in (("avg", roi_align), ("max", roi_align_max)):
            ref, ref_g = grad_of(lambda t, *a: roi_align_padded(t, *a, reduce=reduce), x, rois, (2, 3), 0.5, sr, aligned)
            got, got_g = grad_of(fast, x, rois, (2, 3), 0.5, sr, aligned)
            torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
            if reduce == "avg":  # max: ties may route the gradient to a different (equal) sample
                torch.testing.assert_close(got_g, ref_g, atol=1e-12, rtol=0)


def test_teaching_versions_of_bilinear_and_roi_pool():
    """The notebooks' bilinear (01), bilinear_tv (02), c_round and roi_pool_loop (03), exported into
    helpers.roi, against the fast versions and torchvision."""
    gen = torch.Generator().manual_seed(8)
    f = torch.randn(3, 5, 6, generator=gen, dtype=torch.float64)
    for x, y in torch.rand(50, 2, generator=gen, dtype=torch.float64).mul(torch.tensor([7.0, 6.0])).sub(1.2).tolist():
        torch.testing.assert_close(bilinear_tv(f, x, y), bilinear_interpolate(f, x, y), atol=1e-12, rtol=0)
        if 0 <= x <= 5 and 0 <= y <= 4:
            assert math.isclose(bilinear(f[0], x, y), bilinear_interpolate(f[0], x, y).item(), abs_tol=1e-12)
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -1.7, 3.0])
    assert c_round(halves).tolist() == [1, 2, 3, -1, -3, 0, -2, 3]
    x = torch.randn(2, 3, 9, 10, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 9, 10, 0.5, k=12)
    for out in (1, (2, 3), 4):
        torch.testing.assert_close(roi_pool_loop(x, rois, out, 0.5), tv.roi_pool(x, rois, out, 0.5), atol=0, rtol=0)
        torch.testing.assert_close(roi_pool(x, rois, out, 0.5), roi_pool_loop(x, rois, out, 0.5), atol=0, rtol=0)


def test_chunked_paths(monkeypatch):
    """Big problems are processed in chunks (RoIs for RoIAlign, channels for RoIPool): same result."""
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 12, 12, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 12, 12, 1.0, k=12)
    monkeypatch.setattr(R, "CHUNK_ELEMENTS", 300)
    for fn, ref_fn in [(roi_align, tv.roi_align), (roi_pool, None)]:
        args = (2, 1.0, -1, False) if ref_fn else (2, 1.0)
        got, got_g = grad_of(fn, x, rois, *args)
        ref, ref_g = grad_of(ref_fn or tv.roi_pool, x, rois, *args)
        torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
        torch.testing.assert_close(got_g, ref_g, atol=1e-12, rtol=0)


def test_embedding_bag_backend_equals_csr():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 5, 10, 11, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 10, 11, 0.5).double()
    for mode in ("avg", "max"):
        a, a_g = grad_of(lambda t: R.roi_align_kernel(t, rois, 3, 3, 0.5, -1, True, mode, "embedding_bag"), x)
        b, b_g = grad_of(lambda t: R.roi_align_kernel(t, rois, 3, 3, 0.5, -1, True, mode, "csr"), x)
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        torch.testing.assert_close(a_g, b_g, atol=1e-12, rtol=0)


def test_roi_align_dtype_casts_and_empty():
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    rois64 = random_rois(gen, 2, 8, 8, 1.0, k=6)
    # boxes of another dtype are cast to input's dtype (torchvision would raise)
    torch.testing.assert_close(roi_align(x, rois64, 2), tv.roi_align(x, rois64.float(), 2), atol=1e-5, rtol=0)
    int_rois = torch.tensor([[0, 1, 1, 5, 6], [1, 0, 2, 7, 7]])
    torch.testing.assert_close(roi_align(x, int_rois, 3), tv.roi_align(x, int_rois.float(), 3), atol=1e-5, rtol=0)
    # half precision: computed in float32, cast back
    assert roi_align(x.half(), int_rois, 3).dtype == torch.float16
    torch.testing.assert_close(roi_align(x.half(), int_rois, 3).float(), roi_align(x.half().float(), int_rois, 3),
                               atol=1e-2, rtol=0)
    # no boxes: Tensor[0, C, PH, PW], both formats, and backward still works
    xg = x.clone().requires_grad_(True)
    for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)]):
        for fn in (roi_align, roi_align_max, roi_pool):
            out = fn(xg, boxes, (2, 3))
            assert out.shape == (0, 3, 2, 3)
            out.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() == 0


# ------------------------------------------------------------------------------------------------
# RoIAlign (max), sample points
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 1, 2, 3])
def test_roi_align_max_against_float64_loop(aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(9 + sampling_ratio)
    x = torch.randn(2, 3, 9, 11, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 9, 11, 0.5, k=12)
    got = roi_align_max(x, rois, (3, 2), 0.5, sampling_ratio, aligned)
    naive = roi_align_padded(x, rois, (3, 2), 0.5, sampling_ratio, aligned, reduce="max").numpy()  # notebook 02b's
    np.testing.assert_allclose(got.numpy(), naive, atol=1e-12, rtol=0)
    # float32 too, and it is not the average
    got32 = roi_align_max(x.float(), rois.float(), (3, 2), 0.5, sampling_ratio, aligned)
    np.testing.assert_allclose(got32.numpy(), naive, atol=1e-5, rtol=0)
    avg = roi_align(x, rois, (3, 2), 0.5, sampling_ratio, aligned)
    assert (got >= avg - 1e-12).all()
    if sampling_ratio != 1:
        assert (got - avg).abs().max() > 1e-3


def test_roi_align_max_gradcheck():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.7, 4.9, 5.2], [0, 2.0, 1.0, 3.5, 5.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align_max(t, rois, 2, 1.0, 2, False), (x,))


@pytest.mark.parametrize("sampling_ratio", [-1, 2])
def test_sample_points_are_where_roi_align_samples(sampling_ratio):
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(2, 3, 10, 12, generator=gen, dtype=torch.float64)
    rois = random_rois(gen, 2, 10, 12, 0.5, k=12)
    s = roi_sample_points(rois, (2, 3), 0.5, sampling_ratio, False)
    k = rois.shape[0]
    assert s.points.shape[:3] == (k, 2, 3) and s.points.shape[-1] == 2
    assert s.bin_edges_x.shape == (k, 4) and s.bin_edges_y.shape == (k, 3)
    ref = tv.roi_align(x, rois, (2, 3), 0.5, sampling_ratio, False)
    for i in range(k):
        gh, gw = int(s.grid_h[i]), int(s.grid_w[i])
        pts = s.points[i, :, :, :gh, :gw]  # [2, 3, gh, gw, 2]
        assert not torch.isnan(pts).any()
        assert torch.isnan(s.points[i, :, :, gh:]).all() and torch.isnan(s.points[i, :, :, :, gw:]).all()
        vals = bilinear_interpolate(x[int(rois[i, 0])], pts[..., 0], pts[..., 1])  # [C, 2, 3, gh, gw]
        mean = vals.sum((-1, -2)) / max(gh * gw, 1)
        torch.testing.assert_close(mean, ref[i], atol=1e-12, rtol=0)
        # every sample lies inside its bin
        ex, ey = s.bin_edges_x[i], s.bin_edges_y[i]
        assert (pts[..., 0] >= ex[:-1, None, None] - 1e-12).all() and (pts[..., 0] <= ex[1:, None, None] + 1e-12).all()
        ey_lo, ey_hi = ey[:-1, None, None, None], ey[1:, None, None, None]
        assert (pts[..., 1] >= ey_lo - 1e-12).all() and (pts[..., 1] <= ey_hi + 1e-12).all()
    if sampling_ratio == -1:
        assert len(set(s.grid_h.tolist())) > 1  # the adaptive grids really differ between RoIs


# ------------------------------------------------------------------------------------------------
# RoIPool
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 3, 0.0625])
def test_roi_pool_matches_torchvision(scale, dtype):
    gen = torch.Generator().manual_seed(int(scale * 100))
    n, c, h, w = 3, 4, 12, 15
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    x_ties = torch.randint(0, 3, (n, c, h, w), generator=gen).to(dtype)  # many ties: first max wins
    for feat in (x, x_ties):
        for out_size in (3, (2, 5), (7, 4)):
            rois = random_rois(gen, n, h, w, scale).to(dtype)
            ref, ref_g = grad_of(tv.roi_pool, feat, rois, out_size, scale)
            got, got_g = grad_of(roi_pool, feat, rois, out_size, scale)
            torch.testing.assert_close(got, ref, atol=0, rtol=0)
            torch.testing.assert_close(got_g, ref_g, atol=TOL[dtype], rtol=0)
            torch.testing.assert_close(
                roi_pool(feat, as_list(rois, n), out_size, scale), tv.roi_pool(feat, as_list(rois, n), out_size, scale)
            )


@HYP
@given(
    boxes=st.lists(
        st.tuples(st.floats(-6, 20), st.floats(-6, 16), st.floats(0, 18), st.floats(0, 14)), min_size=1, max_size=5
    ),
    halves=st.booleans(),
    out_h=st.integers(1, 5),
    out_w=st.integers(1, 5),
    scale=st.sampled_from([1.0, 0.5, 0.25]),
)
def test_roi_pool_random_hypothesis(boxes, halves, out_h, out_w, scale):
    gen = torch.Generator().manual_seed(len(boxes))
    x = torch.randn(1, 2, 9, 12, generator=gen)
    b = torch.tensor(boxes)
    if halves:  # corners on exact halves: C round sends 2.5 -> 3 and -0.5 -> -1 (torch.round: 2, -0)
        b = torch.floor(b) + 0.5
    rois = torch.cat([torch.zeros(len(boxes), 1), b[:, :2], b[:, :2] + b[:, 2:]], dim=1) / scale
    ref, ref_g = grad_of(tv.roi_pool, x, rois, (out_h, out_w), scale)
    got, got_g = grad_of(roi_pool, x, rois, (out_h, out_w), scale)
    torch.testing.assert_close(got, ref, atol=0, rtol=0)
    torch.testing.assert_close(got_g, ref_g, atol=1e-6, rtol=0)


def test_roi_pool_bins_against_torchvision():
    """Read torchvision's bins back: on an increasing map the bin max is its bottom-right pixel,
    on a decreasing one its top-left pixel."""
    h, w = 9, 11
    ramp = (torch.arange(h * w, dtype=torch.float64) + 1).reshape(1, 1, h, w)
    gen = torch.Generator().manual_seed(13)
    for _ in range(40):
        box = (torch.rand(4, generator=gen, dtype=torch.float64) * torch.tensor([14.0, 12, 10, 9]) - 2).tolist()
        box = [box[0], box[1], box[0] + abs(box[2]), box[1] + abs(box[3])]
        out_size = (int(torch.randint(1, 5, (1,), generator=gen)), int(torch.randint(1, 5, (1,), generator=gen)))
        bins = roi_pool_bins(box, out_size, 1.0, h, w, dtype=torch.float64)
        rois = torch.tensor([[0.0, *box]], dtype=torch.float64)
        hi = tv.roi_pool(ramp, rois, out_size, 1.0)[0, 0]
        lo = -tv.roi_pool(-ramp, rois, out_size, 1.0)[0, 0]
        b = bins.bins  # [PH, PW, (hstart, hend, wstart, wend)]
        empty = bins.empty
        expect_hi = (b[..., 1] - 1) * w + (b[..., 3] - 1) + 1
        expect_lo = b[..., 0] * w + b[..., 2] + 1
        assert torch.equal(hi[empty], torch.zeros_like(hi[empty]))
        assert torch.equal(hi[~empty], expect_hi[~empty].double())
        assert torch.equal(lo[~empty], expect_lo[~empty].double())


def test_roi_pool_bins_worked_example_and_rounding():
    b = roi_pool_bins(ROI, 2, 1.0, 4, 4)
    assert (b.x1, b.y1, b.x2, b.y2) == (1, 1, 3, 2)
    assert (b.roi_width, b.roi_height) == (3, 2) and b.bin_w == 1.5 and b.bin_h == 1.0
    assert b.bins.tolist() == [[[1, 2, 1, 3], [1, 2, 2, 4]], [[2, 3, 1, 3], [2, 3, 2, 4]]]  # columns overlap at 2
    r = roi_pool_bins((0.5, -0.5, 2.5, 1.5), (1, 1))  # halves go away from zero, like C round
    assert (r.x1, r.y1, r.x2, r.y2) == (1, -1, 3, 2)
    assert roi_pool_bins((-9.0, -9.0, -8.0, -8.0), 2, 1.0, 4, 4).empty.all()
    x = FEATURE_4x4[None, None]
    rois = torch.tensor([[0.0, *ROI]])
    torch.testing.assert_close(roi_pool(x, rois, 2), tv.roi_pool(x, rois, 2))
    assert roi_pool(x, rois, 2)[0, 0].tolist() == [[7.0, 8.0], [11.0, 12.0]]


def test_roi_pool_special_values():
    """NaN never wins, values <= -FLT_MAX never win (a bin of them outputs -FLT_MAX), empty -> 0."""
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    x[0, 0, 1, 1] = float("nan")
    x[0, 1, :3, :3] = -1e300
    x[0, 1, 0, 0] = float("-inf")
    rois = torch.tensor([[0, 0, 0, 5, 5], [0, 0, 0, 2, 2], [0, 20, 20, 30, 30]], dtype=torch.float64)
    ref, ref_g = grad_of(tv.roi_pool, x, rois, 3, 1.0)
    got, got_g = grad_of(roi_pool, x, rois, 3, 1.0)
    torch.testing.assert_close(got, ref, equal_nan=True, atol=0, rtol=0)
    torch.testing.assert_close(got_g, ref_g, atol=0, rtol=0)
    assert got[2].abs().sum() == 0
    # every bin of every box empty
    outside = torch.tensor([[0, 20, 20, 30, 30], [0, -30, -9, -20, -2]], dtype=torch.float64)
    got, got_g = grad_of(roi_pool, x, outside, 2, 1.0)
    assert got.abs().sum() == 0 and got_g.abs().sum() == 0
    torch.testing.assert_close(got, tv.roi_pool(x, outside, 2, 1.0))


# ------------------------------------------------------------------------------------------------
# input validation
# ------------------------------------------------------------------------------------------------

X = torch.zeros(2, 3, 8, 8)
GOOD = torch.tensor([[0, 1.0, 1, 4, 4]])

ERRORS = [
    # (exception, match, input, boxes, kwargs)
    (TypeError, "input must be a torch.Tensor", np.zeros((2, 3, 8, 8)), GOOD, {}),
    (ValueError, "input must be a 4-D tensor", torch.zeros(3, 8, 8), GOOD, {}),
    (TypeError, "input must be a floating-point tensor", torch.zeros(2, 3, 8, 8, dtype=torch.long), GOOD, {}),
    (ValueError, "H >= 1 and W >= 1", torch.zeros(2, 3, 0, 8), GOOD, {}),
    (TypeError, r"boxes must be a Tensor\[K, 5\]", X, "boxes", {}),
    (ValueError, r"boxes must have shape \[K, 5\]", X, torch.zeros(3, 4), {}),
    (ValueError, r"boxes must have shape \[K, 5\]", X, torch.zeros(5), {}),
    (ValueError, r"boxes\[1\] must have shape \[L, 4\]", X, [torch.zeros(1, 4), torch.zeros(1, 5)], {}),
    (TypeError, r"boxes\[0\] must be a torch.Tensor", X, [[0, 0, 1, 1], torch.zeros(1, 4)], {}),
    (ValueError, r"one Tensor\[L, 4\] per image.*N=2.*3 entries", X, [torch.zeros(1, 4)] * 3, {}),
    (ValueError, r"integer batch index in \[0, 2\)", X, torch.tensor([[0.5, 1, 1, 4, 4]]), {}),
    (ValueError, r"integer batch index in \[0, 2\)", X, torch.tensor([[2.0, 1, 1, 4, 4]]), {}),
    (ValueError, r"integer batch index in \[0, 2\)", X, torch.tensor([[-1.0, 1, 1, 4, 4]]), {}),
    (ValueError, "x2 >= x1 and y2 >= y1; box 0", X, torch.tensor([[0, 4.0, 1, 1, 4]]), {}),
    (ValueError, "x2 >= x1 and y2 >= y1; box 1", X, torch.tensor([[0, 1.0, 1, 4, 4], [0, 1.0, 4, 4, 3.9]]), {}),
    (ValueError, "x2 >= x1 and y2 >= y1", X, [torch.tensor([[4.0, 1, 1, 4]]), torch.zeros(0, 4)], {}),
    (ValueError, "must be finite", X, torch.tensor([[0, 1.0, float("nan"), 4, 4]]), {}),
    (ValueError, "must be finite", X, torch.tensor([[0, 1.0, 1, float("inf"), 4]]), {}),
    (ValueError, "must be finite", X, torch.tensor([[0, 1.0, 1, 1e300, 4]], dtype=torch.float64), {}),
    (TypeError, "boxes must hold real numbers", X, torch.ones(1, 5, dtype=torch.bool), {}),
    (ValueError, "boxes must be on the same device", X, torch.zeros(1, 5, device="meta"), {}),
    (ValueError, r"output_size must be positive", X, GOOD, {"output_size": 0}),
    (ValueError, r"output_size must be positive", X, GOOD, {"output_size": (2, -1)}),
    (TypeError, r"output_size must be an int or a pair of ints", X, GOOD, {"output_size": 2.0}),
    (TypeError, r"output_size must be an int or a pair of ints", X, GOOD, {"output_size": (2,)}),
    (TypeError, r"output_size must be an int or a pair of ints", X, GOOD, {"output_size": True}),
    (ValueError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": 0.0}),
    (ValueError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": -0.5}),
    (ValueError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": float("nan")}),
    (ValueError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": float("inf")}),
    (TypeError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": "1/16"}),
    (TypeError, "spatial_scale must be a positive finite", X, GOOD, {"spatial_scale": True}),
    (TypeError, r"sampling_ratio must be an integer.*<= 0 for adaptive", X, GOOD, {"sampling_ratio": 2.0}),
    (TypeError, r"sampling_ratio must be an integer", X, GOOD, {"sampling_ratio": True}),
    (TypeError, r"sampling_ratio must be an integer", X, GOOD, {"sampling_ratio": None}),
    (TypeError, r"aligned must be a bool", X, GOOD, {"aligned": 1}),
]


ERROR_CASES = [
    pytest.param(fn, *case, id=f"{fn.__name__}-{i}")
    for fn in (roi_align, roi_align_max, roi_pool)  # the teaching versions (loops) check nothing
    for i, case in enumerate(ERRORS)
    if not (fn is roi_pool and ("sampling_ratio" in case[4] or "aligned" in case[4]))  # roi_pool has neither
]


@pytest.mark.parametrize("fn, exc, match, inp, boxes, kwargs", ERROR_CASES)
def test_errors(fn, exc, match, inp, boxes, kwargs):
    kwargs = dict(kwargs)
    output_size = kwargs.pop("output_size", 2)
    with pytest.raises(exc, match=match):
        fn(inp, boxes, output_size, **kwargs)


def test_errors_of_the_small_helpers():
    with pytest.raises(TypeError, match="feature must be a torch.Tensor"):
        bilinear_interpolate([[1.0]], 0.0, 0.0)
    with pytest.raises(ValueError, match=r"feature must be 2-D \[H, W\] or 3-D"):
        bilinear_interpolate(torch.zeros(4), 0.0, 0.0)
    with pytest.raises(TypeError, match="feature must be a floating-point"):
        bilinear_interpolate(torch.zeros(4, 4, dtype=torch.long), 0.0, 0.0)
    with pytest.raises(TypeError, match="sample coordinates must be numbers or tensors"):
        bilinear_interpolate(torch.zeros(4, 4), "1", 0.0)
    with pytest.raises(RuntimeError):  # shapes that do not broadcast: torch's own message
        bilinear_interpolate(torch.zeros(4, 4), torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="height and width must be integers >= 1"):
        bilinear_weights(0, 4, 1.0, 1.0)
    with pytest.raises(TypeError, match="box must be one box"):
        roi_pool_bins((1, 2, 3), 2)
    with pytest.raises(ValueError, match="box must be one box"):
        roi_pool_bins(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="x2 >= x1"):
        roi_pool_bins((3.0, 0.0, 1.0, 2.0), 2)
    with pytest.raises(ValueError, match="height must be None or an integer >= 1"):
        roi_pool_bins((0.0, 0.0, 1.0, 2.0), 2, 1.0, 0, 4)
    with pytest.raises(ValueError, match="output_size must be positive"):
        roi_pool_bins((0.0, 0.0, 1.0, 2.0), 0)
    with pytest.raises(ValueError, match=r"Tensor\[K, 4\], Tensor\[K, 5\]"):
        roi_sample_points(torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match="must be finite"):
        roi_sample_points((0.0, float("nan"), 1.0, 1.0), 2)
    with pytest.raises(TypeError, match=r"boxes must be a list of Tensor\[L, 4\]"):
        convert_boxes_to_roi_format(torch.zeros(2, 4))


def test_convert_boxes_to_roi_format_and_drawing_inputs():
    rois = convert_boxes_to_roi_format([torch.tensor([[1.0, 2, 3, 4]]), torch.zeros(0, 4), torch.ones(2, 4)])
    assert rois.tolist() == [[0, 1, 2, 3, 4], [2, 1, 1, 1, 1], [2, 1, 1, 1, 1]]
    from torchvision.ops._utils import convert_boxes_to_roi_format as tv_convert

    parts = [torch.rand(3, 4), torch.rand(2, 4)]
    assert torch.equal(convert_boxes_to_roi_format(parts), tv_convert(parts))
    a = roi_sample_points(ROI, (2, 2), 1.0, 2).points
    b = roi_sample_points(torch.tensor([ROI]), (2, 2), 1.0, 2).points
    c = roi_sample_points(torch.tensor([[0.0, *ROI]]), (2, 2), 1.0, 2).points
    torch.testing.assert_close(a.float(), b)
    torch.testing.assert_close(b, c)
    assert a.shape == (1, 2, 2, 2, 2, 2)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(R, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 9 and result.failed == 0

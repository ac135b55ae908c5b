"""Every op of the series against torchvision's over dtypes x problem sizes x ``torch.autocast``.

The cases are those of ``benchmarks/dtype_table.py`` (which prints them as a table): the same inputs
go to ours and to torchvision's op; both must raise, or both return the same dtype and values within
the dtype's tolerance (float16 / bfloat16 RoIAlign and IoU against torchvision in float64, whose
answer ours matches and torchvision's own half-precision kernel does not), and NMS the same indices.
CUDA cases run only where a GPU is present.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
import torchvision.ops as ops

from helpers import boxes as B
from helpers.checks import kernel_dtype, upcast
from helpers.fpn import map_levels
from helpers.project import ROOT
from helpers.roi import roi_align, roi_pool

_spec = importlib.util.spec_from_file_location("dtype_table", ROOT / "benchmarks" / "dtype_table.py")
dtype_table = importlib.util.module_from_spec(_spec)
sys.modules["dtype_table"] = dtype_table                  # dataclasses look their module up there
_spec.loader.exec_module(dtype_table)

CASES = dtype_table.cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{c.path}-{c.column}".replace(" ", "_") for c in CASES])
def test_same_as_torchvision(case):
    torch.set_num_threads(1)
    r = dtype_table.compare(case)
    assert r.ok, (f"{case.op} ({case.path}, {case.column}): torchvision {r.tv.dtype or r.tv.error}, "
                  f"ours {r.ours.dtype or r.ours.error}, diff {r.diff}, same indices {r.same_indices}")


def test_the_table_covers_every_path_and_setting():
    """The cases reach each op's size-dependent paths and every dtype x autocast column (a case list
    that lost its large problems would pass the test above without testing them)."""
    import helpers.roi
    seen = {(c.op, c.path) for c in CASES}
    for op in ("roi_align", "roi_pool"):
        assert {(op, p) for p in ("small", "large", "chunked")} <= seen
    assert {("nms", "small"), ("nms", "large"), ("batched_nms", "small"), ("batched_nms", "large"),
            ("batched_nms", "80 classes")} <= seen
    columns = {c.column for c in CASES}
    assert columns == {n if a is None else f"AC{a}:{n}" for n, a in dtype_table.SETTINGS}
    # the "large" problems are large enough for the CSR path and several NMS blocks
    assert 300 * 7 * 7 * 16 * 64 >= helpers.roi.CSR_MIN_WORK
    assert 1500 > 2 * B.NMS_BLOCK and 1500 * 4 > 4000 and 60 * 4 <= 4000


# -- the rules, on their own -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype, expected", [
    (torch.float16, torch.float32), (torch.bfloat16, torch.float32), (torch.float32, torch.float32),
    (torch.float64, torch.float64), (torch.uint8, torch.int32), (torch.int8, torch.int32),
    (torch.int16, torch.int32), (torch.int32, torch.int32), (torch.int64, torch.int64)])
def test_upcast_is_torchvisions(dtype, expected):
    boxes = torch.tensor([[0, 0, 3, 4]], dtype=dtype)
    assert upcast(boxes).dtype == expected == ops.box_area(boxes).dtype
    assert B.box_area(boxes).dtype == expected


def test_half_areas_do_not_overflow():
    """A 300 x 300 box: 90000 > 65504, the largest float16. Upcast first, as torchvision does."""
    boxes = torch.tensor([[0.0, 0.0, 300.0, 300.0], [100.0, 100.0, 400.0, 400.0]], dtype=torch.float16)
    assert B.box_area(boxes).tolist() == [90000.0, 90000.0]
    iou = B.box_iou(boxes, boxes)
    assert torch.isfinite(iou).all() and math.isclose(float(iou[0, 1]), 200 * 200 / (2 * 90000 - 200 * 200), rel_tol=1e-6)
    # the FPN level of a 300-px float16 box: level 4, as torchvision's LevelMapper (an inf area would say 5)
    assert map_levels(boxes, 2, 5).tolist() == [4, 4]


def test_integer_boxes_iou():
    a = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15]], dtype=torch.int32)
    assert torch.equal(B.box_iou(a, a), ops.box_iou(a, a))
    # uint8: torchvision subtracts before upcasting and wraps round (3 - 5 = 254); upcast first is exact
    u = torch.tensor([[0, 0, 3, 3], [5, 5, 9, 9]], dtype=torch.uint8)
    assert B.box_iou(u, u)[0, 1] == 0 and B.box_iou(u, u)[0, 0] == 1


@pytest.mark.parametrize("fn, name, dtype", [
    (lambda b, s: B.nms(b, s, 0.5), "boxes", torch.float16),
    (lambda b, s: B.nms(b, s, 0.5), "boxes", torch.bfloat16),
    (lambda b, s: B.batched_nms(b, s, torch.zeros(len(b), dtype=torch.int64), 0.5), "boxes", torch.bfloat16),
])
def test_refusals_name_the_argument_and_the_way_out(fn, name, dtype):
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.5, 0.5, 4.5, 4.5]], dtype=dtype)   # IoU 0.62
    with pytest.raises(TypeError, match=rf"{name} must be float32, float64 on cpu .*torch.autocast"):
        fn(boxes, torch.tensor([0.9, 0.8], dtype=dtype))
    with torch.autocast("cpu"):                                  # torchvision's way: computed in float32
        assert fn(boxes, torch.tensor([0.9, 0.8], dtype=dtype)).tolist() == [0]


def test_roi_bfloat16_refused_outside_autocast():
    x = torch.randn(1, 2, 8, 8, dtype=torch.bfloat16)
    rois = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]], dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"input must be float32, float64, float16 on cpu .*torch.autocast"):
        roi_align(x, rois, 2)
    with pytest.raises(TypeError, match=r"input must be float32, float64, float16 on cpu .*cast it"):
        roi_pool(x, rois, 2)
    with torch.autocast("cpu"):
        out = roi_align(x, rois, 2)
        with pytest.raises(TypeError, match="input must be"):    # torchvision's roi_pool: no CPU autocast
            roi_pool(x, rois, 2)
    ref = ops.roi_align(x.double(), rois.double(), 2).to(torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref)


def test_half_roi_align_gradient_flows():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float16, requires_grad=True)
    rois = torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]], dtype=torch.float16)
    roi_align(x, rois, 2, sampling_ratio=2).sum().backward()
    assert x.grad.dtype == torch.float16 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_kernel_dtype_rule():
    native = {"cpu": (torch.float32,)}
    assert kernel_dtype(torch.zeros(1), "t", "op", native, ("cpu",)) == torch.float32
    with pytest.raises(TypeError, match=r"t must be float32 on cpu \(torchvision's op refuses torch.float64"):
        kernel_dtype(torch.zeros(1, dtype=torch.float64), "t", "op", native, ("cpu",))
    with torch.autocast("cpu"):
        assert kernel_dtype(torch.zeros(1, dtype=torch.float16), "t", "op", native, ("cpu",)) == torch.float32
        assert kernel_dtype(torch.zeros(1, dtype=torch.float64), "t", "op", native, ("cpu",)) == torch.float64
        with pytest.raises(TypeError, match="cast it"):          # no autocast wrapper on this device
            kernel_dtype(torch.zeros(1, dtype=torch.float16), "t", "op", native, ("cuda",))


# -- CUDA (skipped without a GPU) ------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA_SETTINGS = [(torch.float32, None), (torch.float64, None), (torch.float16, None), (torch.bfloat16, None),
                 (torch.float32, torch.float16), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16)]


def _outcome(fn, autocast):
    ctx = torch.autocast("cuda", dtype=autocast) if autocast else torch.autocast("cuda", enabled=False)
    try:
        with ctx:
            return fn()
    except (RuntimeError, TypeError, NotImplementedError) as e:
        return e


@cuda
@pytest.mark.parametrize("dtype, autocast", CUDA_SETTINGS, ids=[f"{d}-ac{a}" for d, a in CUDA_SETTINGS])
@pytest.mark.parametrize("op", ["roi_align", "roi_pool", "nms", "batched_nms", "box_iou"])
def test_cuda_same_as_torchvision(op, dtype, autocast):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 32, 32, generator=g).to("cuda", dtype)
    b = dtype_table.random_boxes(200, g, 128, 64)
    rois = torch.cat([torch.randint(0, 2, (200, 1), generator=g).float(), b], 1).to("cuda", dtype)
    scores = (torch.randperm(200, generator=g).float() / 200).to("cuda", dtype)
    idxs = torch.randint(0, 5, (200,), generator=g).cuda()
    bd = b.to("cuda", dtype)
    pairs = {
        "roi_align": (lambda: roi_align(x, rois, 7, 0.25, 2), lambda: ops.roi_align(x, rois, 7, 0.25, 2)),
        "roi_pool": (lambda: roi_pool(x, rois, 7, 0.25), lambda: ops.roi_pool(x, rois, 7, 0.25)),
        "nms": (lambda: B.nms(bd, scores, 0.5), lambda: ops.nms(bd, scores, 0.5)),
        "batched_nms": (lambda: B.batched_nms(bd, scores, idxs, 0.5), lambda: ops.batched_nms(bd, scores, idxs, 0.5)),
        "box_iou": (lambda: B.box_iou(bd, bd), lambda: ops.box_iou(bd, bd)),
    }
    ours, theirs = (_outcome(f, autocast) for f in pairs[op])
    assert isinstance(ours, Exception) == isinstance(theirs, Exception), (ours, theirs)
    if isinstance(theirs, Exception):
        return
    assert ours.dtype == theirs.dtype
    if op in ("nms", "batched_nms"):
        # float16 IoUs near the threshold may round differently (the CUDA kernel computes in float16)
        agree = len(set(ours.tolist()) ^ set(theirs.tolist()))
        assert agree == 0 if dtype in (torch.float32, torch.float64) else agree <= 2
    else:
        tol = dtype_table.TOLERANCE[ours.dtype] if dtype in (torch.float32, torch.float64) else 0.1
        assert float((ours.double() - theirs.double()).abs().max()) <= tol


# -- the whole model under autocast ----------------------------------------------------------------

def test_series_model_under_autocast_as_torchvisions():
    """The series' Mask R-CNN (its own RoIAlign, NMS, box coder, heads) trains and detects under CPU
    autocast (bfloat16) as torchvision's assembly with the same weights does: same loss names, losses
    close (bfloat16 convolutions, so to a few per cent), detections of the same dtypes."""
    from helpers.model import build_model
    from helpers.shapes import ShapesDataset

    small = dict(widths=[8, 16, 32, 64], stem_channels=8, fpn_channels=16, representation_size=32,
                 mask_layers=[16, 16], mask_dim_reduced=16)
    torch.manual_seed(0)
    reference = build_model(small)
    series = build_model(reference.shapes_config, impl="series")
    series.load_state_dict(reference.state_dict(), strict=True)
    ds = ShapesDataset(2, seed=5)
    images, targets = [], []
    for i in range(2):
        image, target = ds[i]
        images.append(image)
        targets.append({k: target[k] for k in ("boxes", "labels", "masks")})
    losses, detections = [], []
    for model in (reference, series):
        model.train()
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(images, targets)
            sum(out.values()).backward()
            losses.append({k: float(v.detach()) for k, v in out.items()})
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            detections.append(model(images))
    expected, actual = losses
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert math.isfinite(actual[name]) and math.isclose(actual[name], value, rel_tol=0.05, abs_tol=2e-3), \
            (name, actual[name], value, expected, actual)
    for e, a in zip(*detections):
        assert {k: v.dtype for k, v in a.items()} == {k: v.dtype for k, v in e.items()}
        assert all(torch.isfinite(v.float()).all() for v in a.values())


@pytest.mark.parametrize("k", [4, 300])
def test_roi_align_backward_called_under_autocast(k):
    """torchvision's RoIAlign takes a backward() called inside the autocast block; so does ours (its
    sparse products would otherwise be autocast to bfloat16, which MKL's CSR product refuses)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 40, 40, generator=g)
    rois = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), dtype_table.random_boxes(k, g, 160, 80)], 1)
    grads = []
    for fn in (roi_align, ops.roi_align):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fn(xi, rois, 7, 0.25, 2).square().sum().backward()
        grads.append(xi.grad)
    assert grads[0].dtype == grads[1].dtype == torch.float32
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)

"""helpers.fpn against torchvision's poolers (LevelMapper, _infer_scale, MultiScaleRoIAlign) and the real
ResNet-50-FPN backbone; helpers.viz's level pictures; helpers.widgets.FPNLevelPanel. Notebook 04."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import roi_align as tv_roi_align
from torchvision.ops import roi_pool as tv_roi_pool
from torchvision.ops.poolers import LevelMapper, _infer_scale, _setup_scales

from helpers.fpn import (FPN_STRIDES, box_sides, feature_size, infer_scale, infer_scales, map_levels,
                         multiscale_roi_align, raw_levels)
from helpers.viz import cell_border_segments, draw_level_curve, level_boundaries
from helpers.widgets import FPNLevelPanel


def random_boxes(n: int, seed: int, low: float = 1.0, high: float = 2000.0, dtype=torch.float32) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, size=(n, 2))
    wh = np.exp(rng.uniform(math.log(low), math.log(high), size=(n, 2)))
    return torch.tensor(np.concatenate([xy, xy + wh], axis=1), dtype=dtype)


# -- the level rule -------------------------------------------------------------------------------
@settings(deadline=None, max_examples=60)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 300), k_min=st.integers(1, 4), span=st.integers(0, 4),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_map_levels_equals_level_mapper(seed, n, k_min, span, dtype):
    boxes = random_boxes(n, seed, dtype=dtype)
    k_max = k_min + span
    expected = LevelMapper(k_min, k_max)([boxes]) + k_min
    assert torch.equal(map_levels(boxes, k_min, k_max), expected)
    assert map_levels(boxes, k_min, k_max).dtype == torch.int64


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([160, 224, 300]), level=st.integers(2, 6))
def test_map_levels_other_constants_equal_level_mapper(seed, scale, level):
    boxes = [random_boxes(40, seed), random_boxes(17, seed + 1)]           # a list, one per image
    expected = LevelMapper(2, 6, canonical_scale=scale, canonical_level=level)(boxes) + 2
    assert torch.equal(map_levels(boxes, 2, 6, canonical_scale=scale, canonical_level=level), expected)


def test_map_levels_float64_recomputation():
    boxes = random_boxes(3000, 7, dtype=torch.float64)
    w, h = (boxes[:, 2] - boxes[:, 0]).tolist(), (boxes[:, 3] - boxes[:, 1]).tolist()
    expected = [min(max(math.floor(4 + math.log2(math.sqrt(a * b) / 224) + 1e-6), 2), 5) for a, b in zip(w, h)]
    assert map_levels(boxes).tolist() == expected


def test_boundaries_and_clamping():
    sides = [1, 56, 111.99, 112, 223.99, 224, 447.99, 448, 895.9, 896, 5000]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides], dtype=torch.float64)
    assert map_levels(boxes).tolist() == [2, 2, 2, 3, 3, 4, 4, 5, 5, 5, 5]
    assert torch.floor(raw_levels(boxes)).tolist() == [-4, 2, 2, 3, 3, 4, 4, 5, 5, 6, 8]
    assert map_levels(boxes, 2, 6).tolist()[-2:] == [6, 6]
    zero = torch.tensor([[5.0, 5.0, 5.0, 9.0]])                            # zero area -> -inf -> k_min
    assert map_levels(zero).tolist() == [2] and torch.equal(map_levels(zero), LevelMapper(2, 5)([zero]) + 2)


def test_eps_rescues_a_float32_boundary_box():
    centre = torch.tensor([968.2, 400.0])
    box = torch.cat([centre - 56, centre + 56])[None]                      # a 112 x 112 box in float32
    assert float(box[0, 2] - box[0, 0]) < 112
    assert int(torch.floor(raw_levels(box, eps=0.0))) == 2
    assert int(map_levels(box)) == 3 == int(LevelMapper(2, 5)([box])) + 2


def test_box_sides():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 9.0], [1.0, 1.0, 1.0, 5.0]])
    assert box_sides(boxes).tolist() == [6.0, 0.0]


# -- shapes, strides and scales -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return resnet_fpn_backbone(backbone_name="resnet50", weights=None).eval()


@pytest.mark.parametrize("size", [(32, 32), (65, 47), (100, 129), (131, 97)])
def test_feature_size_predicts_the_real_backbone(backbone, size):
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, *size))
    for name, f in features.items():
        s = FPN_STRIDES[name]
        assert tuple(f.shape[-2:]) == (feature_size(size[0], s), feature_size(size[1], s)), name
        assert feature_size(size[0], s) == math.ceil(size[0] / s)


def test_backbone_is_the_one_inside_maskrcnn(backbone):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    ours = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == theirs
    skip = ("running_mean", "running_var", "num_batches_tracked")
    weights = sum(v.numel() for k, v in backbone.state_dict().items() if not k.endswith(skip))
    assert weights == sum(p.numel() for p in model.backbone.parameters()) == 26_852_416
    # the transform of notebook 04: 480 x 640 -> resized (800, 1066), padded to (800, 1088)
    images, _ = model.eval().transform([torch.rand(3, 480, 640)])
    assert images.image_sizes == [(800, 1066)] and tuple(images.tensors.shape) == (1, 3, 800, 1088)


def test_fpn_wiring_written_out(backbone):
    import torch.nn.functional as F

    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        c = backbone.body(x)
        fpn = backbone.fpn
        last = fpn.inner_blocks[3](c["3"])
        p = [fpn.layer_blocks[3](last)]
        for i in (2, 1, 0):
            lateral = fpn.inner_blocks[i](c[str(i)])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            p.insert(0, fpn.layer_blocks[i](last))
        p.append(F.max_pool2d(p[-1], kernel_size=1, stride=2))
        out = backbone(x)
    assert list(out) == ["0", "1", "2", "3", "pool"]
    for ours, theirs in zip(p, out.values()):
        assert torch.equal(ours, theirs)


def test_receptive_fields_and_cell_centres(backbone):
    """An impulse at pixel 230 lights exactly the cells j with |s j - 230| <= (r - 1) / 2 (notebook 04)."""
    fields = {"0": (4, 35), "1": (8, 91), "2": (16, 267), "3": (32, 427)}   # stride, receptive field
    impulse = torch.zeros(1, 3, 448, 448)
    impulse[0, :, 230, 230] = 1.0
    with torch.no_grad():
        c = backbone.body(impulse)
    for name, (s, r) in fields.items():
        lit = c[name][0].abs().sum(0) > 0
        rows = torch.where(lit.any(1))[0].tolist()
        cols = torch.where(lit.any(0))[0].tolist()
        expected = [j for j in range(lit.shape[0]) if abs(s * j - 230) <= (r - 1) / 2]
        assert rows == expected and cols == expected, name


def test_pool_is_p5_subsampled(backbone):
    with torch.no_grad():
        features = backbone(torch.rand(1, 3, 96, 160))
    assert torch.equal(features["pool"], features["3"][:, :, ::2, ::2])


@settings(deadline=None, max_examples=80)
@given(h=st.integers(1, 1400), w=st.integers(1, 1400), stride=st.sampled_from([1, 2, 4, 8, 16, 32, 64]),
       pad_h=st.integers(0, 31), pad_w=st.integers(0, 31))
def test_infer_scale_equals_torchvision(h, w, stride, pad_h, pad_w):
    feature_shape = (1, 8, math.ceil((h + pad_h) / stride), math.ceil((w + pad_w) / stride))
    assert infer_scale(feature_shape, (h, w)) == _infer_scale(torch.empty(feature_shape), [h, w])


def test_infer_scales_equals_setup_scales():
    features = [torch.empty(2, 4, 800 // s, 1088 // s) for s in (4, 8, 16, 32)]
    shapes = [(800, 1066), (760, 1088)]
    scales, k_min, k_max = infer_scales(features, shapes)
    tv_scales, mapper = _setup_scales(features, shapes, 224, 4)
    assert scales == tv_scales == [0.25, 0.125, 0.0625, 0.03125]
    assert (k_min, k_max) == (mapper.k_min, mapper.k_max) == (2, 5)


# -- multi-scale RoIAlign -----------------------------------------------------------------------------
def pyramid(n: int, c: int, height: int, width: int, seed: int, names=("0", "1", "2", "3", "pool")):
    g = torch.Generator().manual_seed(seed)
    strides = [FPN_STRIDES[k] for k in names]
    return OrderedDict((k, torch.randn(n, c, feature_size(height, s), feature_size(width, s), generator=g))
                       for k, s in zip(names, strides))


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**31 - 1), counts=st.lists(st.integers(0, 12), min_size=1, max_size=3),
       output_size=st.sampled_from([7, (7, 7), (5, 3), 14]), sampling_ratio=st.sampled_from([2, 0, -1, 1]))
def test_multiscale_roi_align_equals_torchvision(seed, counts, output_size, sampling_ratio):
    features = pyramid(len(counts), 3, 512, 704, seed)
    boxes = []
    for i, k in enumerate(counts):
        b = random_boxes(k, seed + i, low=2.0, high=700.0)
        boxes.append(b.clamp(max=700.0))
    shapes = [(512, 690)] * len(counts)
    ours = multiscale_roi_align(features, boxes, shapes, output_size, sampling_ratio)
    pooler = MultiScaleRoIAlign(["0", "1", "2", "3"], output_size, sampling_ratio)
    theirs = pooler(features, boxes, shapes)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_multiscale_rows_come_from_their_level():
    features = pyramid(1, 4, 800, 1088, 3)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [100.0, 100.0, 300.0, 300.0],
                          [200.0, 50.0, 500.0, 350.0], [0.0, 0.0, 1000.0, 790.0]])
    out = multiscale_roi_align(features, [boxes], [(800, 1088)], 7, 2)
    for i, k in enumerate(map_levels(boxes).tolist()):
        one = tv_roi_align(features[str(k - 2)], [boxes[i:i + 1]], 7, spatial_scale=2.0 ** -k, sampling_ratio=2)
        torch.testing.assert_close(out[i:i + 1], one, rtol=1e-5, atol=1e-5)
    assert map_levels(boxes).tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("seed", [0, 1])
def test_multiscale_op_pool_is_torchvision_roi_pool_on_each_level(seed):
    """op="pool": the same level rule, each row torchvision's roi_pool on its box's level, exactly."""
    features = pyramid(2, 3, 512, 704, seed)
    g = torch.Generator().manual_seed(seed)
    boxes = []
    for k in (9, 6):                                           # sides 8 .. 500 pixels: levels P2 .. P5
        xy, wh = torch.rand(k, 2, generator=g) * 180, torch.exp(torch.rand(k, 2, generator=g) * 4.1) * 8
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    shapes = [(512, 690)] * 2
    out = multiscale_roi_align(features, boxes, shapes, (7, 5), sampling_ratio=2, op="pool")
    assert out.shape == (15, 3, 7, 5)
    levels = map_levels(torch.cat(boxes))
    assert len(set(levels.tolist())) >= 3                                 # the boxes span several levels
    rows = [(i, b) for i, bs in enumerate(boxes) for b in bs]
    for r, ((i, b), k) in enumerate(zip(rows, levels.tolist())):
        one = tv_roi_pool(features[str(k - 2)][i:i + 1], [b[None]], (7, 5), spatial_scale=2.0 ** -k)
        assert torch.equal(out[r:r + 1], one)
    single = multiscale_roi_align(features, boxes, shapes, 7, featmap_names=["1"], op="pool")   # one map
    assert torch.equal(single, tv_roi_pool(features["1"], boxes, 7, spatial_scale=1 / 8))


def test_multiscale_single_map_and_subsets():
    features = pyramid(1, 2, 256, 256, 5)
    boxes = [random_boxes(20, 9, low=4.0, high=250.0).clamp(max=255.0)]
    shapes = [(256, 256)]
    for names in (["1"], ["0", "1"], ["2", "3"], ["1", "2", "3"]):
        ours = multiscale_roi_align(features, boxes, shapes, 5, 2, featmap_names=names)
        theirs = MultiScaleRoIAlign(names, 5, 2)(features, boxes, shapes)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_multiscale_is_differentiable():
    features = pyramid(1, 2, 128, 128, 1, names=("0", "1"))
    for f in features.values():
        f.requires_grad_(True)
    boxes = [torch.tensor([[4.0, 4.0, 60.0, 60.0], [0.0, 0.0, 127.0, 127.0]])]   # P2 and P3
    out = multiscale_roi_align(features, boxes, [(128, 128)], 3, 2, featmap_names=["0", "1"])
    out.sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features.values())


# -- errors ---------------------------------------------------------------------------------------------
def test_map_levels_errors():
    good = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(TypeError, match="boxes must be a Tensor"):
        map_levels("boxes")
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        map_levels(torch.zeros(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        map_levels(torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="x2 >= x1"):
        map_levels(torch.tensor([[10.0, 0.0, 5.0, 5.0]]))
    with pytest.raises(ValueError, match="finite"):
        map_levels(torch.tensor([[0.0, 0.0, float("nan"), 5.0]]))
    with pytest.raises(ValueError, match="k_min must be <= k_max"):
        map_levels(good, 5, 2)
    with pytest.raises(TypeError, match="k_min must be an int"):
        map_levels(good, 2.0, 5)
    with pytest.raises(ValueError, match="canonical_scale must be > 0"):
        map_levels(good, canonical_scale=0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        map_levels(good, eps=-1e-6)
    with pytest.raises(ValueError, match="at least one"):
        map_levels([])
    with pytest.raises(TypeError, match="same dtype"):
        map_levels([good, good.double()])


def test_shape_helper_errors():
    with pytest.raises(ValueError, match="power of two"):
        feature_size(100, 12)
    with pytest.raises(ValueError, match="size must be >= 1"):
        feature_size(0, 4)
    with pytest.raises(TypeError, match="feature_shape"):
        infer_scale((5,), (10, 10))
    with pytest.raises(TypeError, match="image_shape must be a"):
        infer_scale((1, 1, 5, 5), 10)
    with pytest.raises(ValueError, match="image_shape height must be >= 1"):
        infer_scale((1, 1, 5, 5), (0, 10))
    with pytest.raises(ValueError, match="image_shapes must be a non-empty list"):
        infer_scales([torch.empty(1, 1, 4, 4)], [])


def test_multiscale_errors():
    features = pyramid(1, 2, 64, 64, 0)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0]])]
    shapes = [(64, 64)]
    with pytest.raises(TypeError, match="features must be a mapping"):
        multiscale_roi_align(list(features.values()), boxes, shapes)
    with pytest.raises(ValueError, match=r"featmap_names \['9'\] not in features"):
        multiscale_roi_align(features, boxes, shapes, featmap_names=["0", "9"])
    with pytest.raises(TypeError, match="featmap_names must be a non-empty list"):
        multiscale_roi_align(features, boxes, shapes, featmap_names="0")
    with pytest.raises(TypeError, match="boxes must be a list"):
        multiscale_roi_align(features, boxes[0], shapes)
    with pytest.raises(ValueError, match="one Tensor"):
        multiscale_roi_align(features, boxes * 2, shapes)
    with pytest.raises(TypeError, match="dtype of the features"):
        multiscale_roi_align(features, [boxes[0].double()], shapes)
    with pytest.raises(ValueError, match="consecutive pyramid levels"):
        multiscale_roi_align(features, boxes, shapes, featmap_names=["0", "2"])
    with pytest.raises(ValueError, match="output_size height must be >= 1"):
        multiscale_roi_align(features, boxes, shapes, output_size=(0, 7))
    with pytest.raises(TypeError, match="output_size must be an int"):
        multiscale_roi_align(features, boxes, shapes, output_size="7")
    with pytest.raises(TypeError, match="sampling_ratio must be an int"):
        multiscale_roi_align(features, boxes, shapes, sampling_ratio=2.5)
    with pytest.raises(ValueError, match="image_shapes must be a non-empty list"):
        multiscale_roi_align(features, boxes, [])
    with pytest.raises(ValueError, match="op must be 'align' .* or 'pool'"):
        multiscale_roi_align(features, boxes, shapes, op="max")
    bad = OrderedDict(features)
    bad["1"] = bad["1"][:, :1]
    with pytest.raises(ValueError, match="share N and C"):
        multiscale_roi_align(bad, boxes, shapes)
    bad["1"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"features\['1'\] must be a Tensor\[N, C, H, W\]"):
        multiscale_roi_align(bad, boxes, shapes)


# -- the pictures ------------------------------------------------------------------------------------
def test_level_boundaries_and_cell_borders():
    assert level_boundaries().tolist() == [112.0, 224.0, 448.0]
    assert level_boundaries(2, 6, 160, 4).tolist() == [80.0, 160.0, 320.0, 640.0]
    segments = cell_border_segments(8, (0.0, 20.0), (-5.0, 10.0))
    xs = [s[0][0] for s in segments if s[0][0] == s[1][0]]
    ys = [s[0][1] for s in segments if s[0][1] == s[1][1]]
    assert xs == [4.0, 12.0, 20.0] and ys == [-4.0, 4.0]
    with pytest.raises(ValueError, match="stride must be > 0"):
        cell_border_segments(0, (0, 1), (0, 1))


def test_draw_level_curve_draws_the_given_numbers():
    import matplotlib.pyplot as plt

    sides = 2.0 ** np.linspace(3, 11, 101)
    boxes = torch.tensor(np.stack([0 * sides, 0 * sides, sides, sides], 1))
    artists = draw_level_curve(sides, map_levels(boxes), torch.floor(raw_levels(boxes)))
    x, y = artists.level.get_data()
    assert np.array_equal(x, sides) and np.array_equal(y, map_levels(boxes).numpy())
    assert [line.get_xdata()[0] for line in artists.boundaries] == [112.0, 224.0, 448.0]
    plt.close(artists.ax.figure)
    with pytest.raises(ValueError, match="one length"):
        draw_level_curve(sides, sides[:3], sides)


# -- the panel ----------------------------------------------------------------------------------------
def test_fpn_level_panel_random_moves():
    panel = FPNLevelPanel(dpi=30)
    rng = np.random.default_rng(0)
    cx, cy = panel.centre
    for _ in range(200):
        w, h = int(rng.integers(1, 1100)), int(rng.integers(1, 1100))      # beyond the sliders: clipped
        state = panel.set(w=w, h=h)
        assert panel.error is None and panel.message is None
        w, h = panel.sliders["w"].value, panel.sliders["h"].value
        assert 1 <= w <= 1024 and 1 <= h <= 1024
        box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
        level = int(LevelMapper(2, 5)([box])) + 2
        assert state["level"] == level and state["stride"] == 2 ** level
        # float64 reference (integer w, h never land within float32 rounding of a boundary)
        assert state["k unclamped"] == math.floor(4 + math.log2(math.sqrt(w * h) / 224) + 1e-6)
        assert state["feature map"] == str(level - 2) and state["spatial_scale"] == 2.0 ** -level
        for k, ax, rect, lines in zip(panel.LEVELS, panel.level_axes, panel.rects, panel.grids):
            assert rect.get_xy() == (cx - w / 2, cy - h / 2)
            assert (rect.get_width(), rect.get_height()) == (w, h)
            widths = {s.get_linewidth() for s in ax.spines.values()}
            assert widths == ({3.0} if k == level else {0.8})
            vertical = sorted(seg[0][0] for seg in lines.get_segments() if seg[0][0] == seg[1][0])
            assert np.allclose(np.diff(vertical), 2 ** k)                     # borders one stride apart
            assert all(abs((v / 2 ** k + 0.5) - round(v / 2 ** k + 0.5)) < 1e-9 for v in vertical)
        mx, my = panel.curve.marker.get_data()
        assert list(my) == [level] and abs(mx[0] - math.sqrt(w * h)) < 1e-9

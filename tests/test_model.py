"""Tests for helpers.model: the shapes Mask R-CNN builder, its RoI pooler and its checkpoints."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection import MaskRCNN
from torchvision.ops import MultiScaleRoIAlign, roi_align, roi_pool

from helpers.model import (MultiScaleRoIPooler, ShapesBackbone, ShapesModelConfig, build_model, count_parameters,
                           load_checkpoint, pooler_scales, save_checkpoint)
from helpers.project import SHAPES_CHECKPOINT

SMALL = dict(widths=[8, 16, 32, 64], stem_channels=8, fpn_channels=16, representation_size=32,
             mask_layers=[16, 16], mask_dim_reduced=16)


def _targets(n_images: int = 2, size: int = 128):
    from helpers.shapes import ShapesDataset

    ds = ShapesDataset(n_images, seed=3, size=size)
    images, targets = zip(*[ds[i] for i in range(n_images)])
    return list(images), list(targets)


# -- the model ------------------------------------------------------------------------------------
def test_default_model_is_the_series_own():
    from helpers.maskrcnn import SeriesMaskRCNN

    assert isinstance(build_model(), SeriesMaskRCNN) and isinstance(build_model(impl="series"), SeriesMaskRCNN)


def test_reference_model_is_small_and_a_torchvision_maskrcnn():
    model = build_model(impl="torchvision")
    assert isinstance(model, MaskRCNN)
    n = count_parameters(model)
    assert 2_500_000 <= n <= 4_500_000, n  # about 3 M: trainable on a CPU, <= 20 MB as float32
    assert n * 4 < 20 * 2**20
    assert model.transform.min_size == (128,) and model.transform.max_size == 128
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    assert model.rpn._pre_nms_top_n["training"] == 600 and model.rpn._post_nms_top_n["testing"] == 150
    assert isinstance(model.roi_heads.box_roi_pool, MultiScaleRoIPooler)
    assert isinstance(model.roi_heads.mask_roi_pool, MultiScaleRoIPooler)
    assert model.roi_heads.box_roi_pool.output_size == (7, 7)
    assert model.roi_heads.mask_roi_pool.output_size == (14, 14)


@pytest.mark.parametrize("impl", ["series", "torchvision"])
def test_training_forward_gives_five_finite_losses_and_eval_gives_detections(impl):
    torch.manual_seed(0)
    model = build_model(**SMALL, impl=impl)
    images, targets = _targets()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    # an untrained classifier over 4 classes starts near log(4)
    assert abs(losses["loss_classifier"].item() - math.log(4)) < 0.7
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o in out:
        d = len(o["boxes"])
        assert o["boxes"].shape == (d, 4) and o["masks"].shape == (d, 1, 128, 128)
        assert o["labels"].shape == (d,) and o["scores"].shape == (d,)


@pytest.mark.parametrize("stride", [None, 4, 8, 16, 32])
def test_backbone_strides_and_channels(stride):
    cfg = ShapesModelConfig(**SMALL, feature_stride=stride, anchor_sizes=[12, 24, 48, 96])
    backbone = ShapesBackbone(cfg).eval()
    feats = backbone(torch.rand(2, 3, 128, 128))
    assert list(feats) == [str(i) for i in range(len(cfg.level_strides))]
    for feat, s in zip(feats.values(), cfg.level_strides):
        assert feat.shape == (2, 16, 128 // s, 128 // s)
    assert cfg.level_strides == ([4, 8, 16, 32] if stride is None else [stride])


def test_feature_stride_changes_the_stride_not_the_backbone_depth():
    counts = {s: count_parameters(ShapesBackbone(ShapesModelConfig(feature_stride=s)).stages) for s in (8, 16, 32)}
    assert len(set(counts.values())) == 1, counts
    # dilated stages: same weights, bigger maps
    cfg = ShapesModelConfig(feature_stride=8)
    torch.manual_seed(0)
    out = ShapesBackbone(cfg).eval().stage_outputs(torch.rand(1, 3, 64, 64))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(16, 16), (8, 8), (8, 8), (8, 8)]


@pytest.mark.parametrize("impl", ["series", "torchvision"])
@pytest.mark.parametrize("pool", ["align", "pool"])
@pytest.mark.parametrize("stride", [None, 16])
def test_every_variant_trains_one_step(pool, stride, impl):
    torch.manual_seed(0)
    model = build_model(**SMALL, pool=pool, feature_stride=stride, impl=impl)
    assert model.shapes_config.pool == pool
    if impl == "torchvision":
        assert model.roi_heads.box_roi_pool.op_name == pool and model.roi_heads.mask_roi_pool.op_name == pool
    images, targets = _targets(1)
    losses = model(images, targets)
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# -- the pooler -----------------------------------------------------------------------------------
def _features(seed: int, sizes=(32, 16, 8, 4), channels: int = 3):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((str(i), torch.randn(2, channels, s, s, generator=g)) for i, s in enumerate(sizes))


def _boxes(seed: int, n: int = 20, size: float = 128.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size * 0.8
    wh = torch.rand(n, 2, generator=g) * size * 0.6 + 1.0
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 10_000), canonical=st.sampled_from([56, 112, 224]))
def test_align_pooler_equals_torchvision_multiscale_roi_align(seed, canonical):
    feats = _features(seed)
    boxes = [_boxes(seed), _boxes(seed + 1, 7)]
    names = list(feats)
    ours = MultiScaleRoIPooler(names, 7, 2, op="align", canonical_scale=canonical)
    theirs = MultiScaleRoIAlign(names, 7, 2, canonical_scale=canonical)
    torch.testing.assert_close(ours(feats, boxes, [(128, 128)] * 2), theirs(feats, boxes, [(128, 128)] * 2),
                               rtol=0, atol=0)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 10_000))
def test_pool_pooler_equals_roi_pool_on_the_fpn_level_of_each_box(seed):
    feats = _features(seed)
    boxes = [_boxes(seed), _boxes(seed + 1, 5)]
    ours = MultiScaleRoIPooler(list(feats), 7, 2, op="pool", canonical_scale=56)(feats, boxes, [(128, 128)] * 2)
    # reference: FPN's level rule recomputed in float64, then torchvision's roi_pool box by box
    expected = []
    for image_index, bs in enumerate(boxes):
        for box in bs.double():
            area = (box[2] - box[0]) * (box[3] - box[1])
            k = math.floor(4 + math.log2(math.sqrt(area) / 56) + 1e-6)
            level = min(max(k, 2), 5) - 2
            roi = torch.cat([torch.tensor([float(image_index)]), box.float()])[None]
            expected.append(roi_pool(feats[str(level)], roi, (7, 7), 1 / 4 / 2**level))
    torch.testing.assert_close(ours, torch.cat(expected), rtol=0, atol=0)


@settings(deadline=None, max_examples=40)
@given(image_h=st.integers(33, 400), image_w=st.integers(33, 400), padded=st.integers(0, 31),
       first_stride=st.sampled_from([1, 2, 4, 8]), levels=st.integers(1, 4),
       canonical=st.sampled_from([56, 224]), level0=st.integers(2, 5))
def test_pooler_scales_equal_torchvision_setup_scales(image_h, image_w, padded, first_stride, levels, canonical,
                                                      level0):
    """The series' scales and level rule are torchvision's (its private helper, used here as the reference)."""
    from torchvision.ops.poolers import _setup_scales

    h = image_h + padded  # the batch is padded past the tallest image, as GeneralizedRCNNTransform does
    feats = [torch.zeros(1, 1, max(1, -(-h // (first_stride * 2**i))), 8) for i in range(levels)]
    shapes = [(image_h, image_w), (max(1, image_h - 7), image_w)]
    ours, our_mapper = pooler_scales(feats, shapes, canonical, level0)
    theirs, their_mapper = _setup_scales(feats, shapes, canonical, level0)
    assert ours == theirs
    assert all(math.log2(s).is_integer() and s == 2 ** round(math.log2(f.shape[-2] / image_h))
               for s, f in zip(ours, feats))
    assert (our_mapper.k_min, our_mapper.k_max) == (their_mapper.k_min, their_mapper.k_max)
    boxes = [_boxes(image_h, 30, float(image_h))]
    assert torch.equal(our_mapper(boxes), their_mapper(boxes))


def test_pooler_with_a_callable_op_and_one_level():
    feats = _features(0, sizes=(16,))
    boxes = [_boxes(0, 6), _boxes(1, 4)]
    calls = []

    def my_align(x, rois, output_size, spatial_scale, sampling_ratio):
        calls.append(spatial_scale)
        return roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned=False)

    ours = MultiScaleRoIPooler(["0"], (5, 3), 2, op=my_align)(feats, boxes, [(128, 128)] * 2)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    torch.testing.assert_close(ours, roi_align(feats["0"], rois, (5, 3), 1 / 8, 2), rtol=0, atol=0)
    assert calls == [1 / 8]


def test_pooler_levels_need_a_forward_first():
    pooler = MultiScaleRoIPooler(["0", "1"], 7, 2)
    with pytest.raises(RuntimeError, match="call forward"):
        pooler.levels([_boxes(0)])
    feats = _features(0, sizes=(32, 16))
    pooler(feats, [_boxes(0)], [(128, 128)])
    assert pooler.levels([torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 127.0, 127.0]])]).tolist() == [0, 1]  # floor(4 + log2(127 / 224)) = 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(featmap_names="0", output_size=7, sampling_ratio=2), TypeError, "featmap_names"),
    (dict(featmap_names=[], output_size=7, sampling_ratio=2), TypeError, "featmap_names"),
    (dict(featmap_names=["0"], output_size=0, sampling_ratio=2), ValueError, "output_size"),
    (dict(featmap_names=["0"], output_size=(7,), sampling_ratio=2), ValueError, "output_size"),
    (dict(featmap_names=["0"], output_size=7, sampling_ratio=2.5), TypeError, "sampling_ratio"),
    (dict(featmap_names=["0"], output_size=7, sampling_ratio=2, op="max"), ValueError, "op must be one of"),
    (dict(featmap_names=["0"], output_size=7, sampling_ratio=2, op=3), TypeError, "op must be one of"),
])
def test_pooler_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiScaleRoIPooler(**kwargs)


def test_pooler_missing_feature_map():
    pooler = MultiScaleRoIPooler(["0", "p6"], 7, 2)
    with pytest.raises(ValueError, match=r"feature map\(s\) \['p6'\] are missing"):
        pooler(_features(0, sizes=(32,)), [_boxes(0)], [(128, 128)])


# -- configuration checks -----------------------------------------------------------------------
@pytest.mark.parametrize("overrides, error, match", [
    (dict(pool="max"), ValueError, "pool must be one of"),
    (dict(feature_stride=12), ValueError, "feature_stride must be None"),
    (dict(feature_stride=64), ValueError, "feature_stride must be None"),
    (dict(feature_stride=8.0), TypeError, "feature_stride must be an int"),
    (dict(anchor_sizes=[16, 32]), ValueError, "one size per level"),
    (dict(anchor_sizes=[16, -32, 64, 128]), ValueError, "anchor_sizes must be positive"),
    (dict(widths=[]), ValueError, "widths must hold at least 1"),
    (dict(widths=[8, 16, 32, 64, 128, 256, 512], anchor_sizes=[1] * 7), ValueError, "widths must hold 1 to 6"),
    (dict(widths="32,64"), TypeError, "widths must be a list"),
    (dict(num_classes=1), ValueError, "num_classes counts the background"),
    (dict(num_classes=True), TypeError, "num_classes must be an int"),
    (dict(image_size=16), ValueError, "image_size must be >= 32"),
    (dict(image_std=[0.2, 0.0, 0.2]), ValueError, "image_std must be positive"),
    (dict(image_mean=[0.5, 0.5]), ValueError, "image_mean must hold exactly 3"),
    (dict(aspect_ratios=[0.0]), ValueError, "aspect_ratios must be positive"),
    (dict(mask_layers=[]), ValueError, "mask_layers must hold at least 1"),
    (dict(box_nms_thresh=1.5), ValueError, "box_nms_thresh must be <= 1"),
    (dict(box_score_thresh="0.5"), TypeError, "box_score_thresh must be a number"),
    (dict(sampling_ratio=-1), ValueError, "sampling_ratio must be >= 0"),
    (dict(box_batch_size_per_image=0), ValueError, "box_batch_size_per_image must be >= 1"),
])
def test_config_errors(overrides, error, match):
    with pytest.raises(error, match=match):
        build_model(**overrides)


def test_config_round_trip_and_unknown_fields():
    cfg = ShapesModelConfig(pool="pool", feature_stride=16)
    assert ShapesModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['depth'\]"):
        ShapesModelConfig.from_dict({"depth": 3})
    with pytest.raises(TypeError, match="values must be a mapping"):
        ShapesModelConfig.from_dict([("pool", "pool")])
    with pytest.raises(TypeError, match="config must be a ShapesModelConfig"):
        build_model("fpn")
    with pytest.raises(TypeError, match="config must be a ShapesModelConfig"):
        ShapesBackbone({"pool": "align"})
    with pytest.raises(ValueError, match=r"x must be Tensor\[N, 3, H, W\]"):
        ShapesBackbone(cfg)(torch.rand(3, 64, 64))


# -- checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = build_model(**SMALL, pool="pool")
    images, targets = _targets(1)
    model(images, targets)  # one training forward moves the BatchNorm running statistics
    model.eval()
    path = save_checkpoint(model, tmp_path / "sub" / "m.pt", extra={"note": "test", "classes": ["a", "b"]})
    raw = torch.load(path, weights_only=True)  # plain types only, or this raises
    assert raw["config"]["pool"] == "pool" and raw["extra"]["note"] == "test"
    loaded, checkpoint = load_checkpoint(path)
    assert not loaded.training
    with torch.no_grad():
        a, b = model(images), loaded(images)
    for x, y in zip(a, b):
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)


def test_half_precision_checkpoint_round_trip(tmp_path):
    """dtype=torch.float16 stores the float tensors in half precision; they load back into float32 exactly."""
    torch.manual_seed(0)
    model = build_model(**SMALL, feature_stride=16, pool="pool")
    path = save_checkpoint(model, tmp_path / "m.pt", extra={"note": "x"}, dtype=torch.float16)
    raw = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in raw["state_dict"].values() if v.is_floating_point())
    assert raw["state_dict"]["backbone.stem.1.num_batches_tracked"].dtype == torch.int64
    full = torch.load(save_checkpoint(model, tmp_path / "f.pt"), weights_only=True)
    assert all(v.dtype == torch.float32 for v in full["state_dict"].values() if v.is_floating_point())
    loaded, ck = load_checkpoint(path)
    assert ck["extra"] == {"note": "x"} and not loaded.training
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype and torch.equal(w, v.half().float() if v.is_floating_point() else v)
    with pytest.raises(ValueError, match="dtype must be one of"):
        save_checkpoint(model, tmp_path / "b.pt", dtype=torch.bfloat16)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a helpers.model checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(TypeError, match="must come from helpers.model.build_model"):
        save_checkpoint(torch.nn.Linear(1, 1), tmp_path / "x.pt")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        count_parameters("model")


def test_shipped_checkpoint_is_small_and_loads_with_weights_only():
    path = SHAPES_CHECKPOINT
    assert path.is_file(), f"{path} is missing: run `python -m helpers.train`"
    assert path.stat().st_size <= 20 * 2**20
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "config", "extra"}
    model, _ = load_checkpoint(path)
    assert count_parameters(model) == sum(v.numel() for k, v in raw["state_dict"].items()
                                          if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert raw["extra"]["classes"] == ["background", "circle", "square", "triangle"]


# -- claims of notebooks 08 and 09 about the model --------------------------------------------------
def test_backbone_is_nine_times_cheaper_than_resnet18_fpn():
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    def gflops(module):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module.eval()(torch.zeros(1, 3, 128, 128))
        return counter.get_total_flops() / 1e9

    ours, theirs = build_model().backbone, resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    assert count_parameters(theirs) > 6 * count_parameters(ours)
    assert gflops(theirs) > 9 * gflops(ours)


def test_stage_by_stage_equals_the_whole_model_and_torchvision_agrees():
    """Notebook 08's claims, on one validation image and a batch of four: the series' model called stage by
    stage (its own submodules and methods) gives exactly its one-call output, and torchvision's assembly
    with the same weights gives the same detections and losses within float32 tolerances."""
    from helpers.mask_head import maskrcnn_inference, paste_masks_in_image
    from helpers.maskrcnn import SeriesMaskRCNN
    from helpers.rpn import concat_box_prediction_layers, filter_proposals
    from helpers.shapes import ShapesDataset

    model, _ = load_checkpoint(SHAPES_CHECKPOINT)
    assert isinstance(model, SeriesMaskRCNN)
    val = ShapesDataset(8, seed=1_000_000)
    image = val[5][0]
    with torch.no_grad():
        reference = model([image])[0]
        images, _ = model.transform([image])
        features = model.backbone(images.tensors)
        feats = list(features.values())
        objectness, deltas = model.rpn.head(feats)
        anchors = model.rpn.anchor_generator(images, feats)
        obj, dl = concat_box_prediction_layers(objectness, deltas)
        proposals = model.rpn.box_coder.decode(dl, anchors).view(1, -1, 4)
        per_level = [o[0].numel() for o in objectness]
        boxes, _ = filter_proposals(proposals, obj, images.image_sizes, per_level, model.rpn.pre_nms_top_n(),
                                    model.rpn.post_nms_top_n(), model.rpn.nms_thresh)
        assert torch.equal(boxes[0], model.rpn(images, features)[0][0])
        rh = model.roi_heads
        logits, regression = rh.box_predictor(rh.box_head(model.pool(features, boxes, images.image_sizes, 7)))
        det, scores, labels = model.detect(logits, regression, boxes, images.image_sizes)
        mask_logits = rh.mask_predictor(rh.mask_head(model.pool(features, det, images.image_sizes, 14)))
        probs = maskrcnn_inference(mask_logits, labels)[0]
        pasted = paste_masks_in_image(probs, det[0], (128, 128))
    assert len(det[0]) > 0
    for ours, key in ((det[0], "boxes"), (scores[0], "scores"), (labels[0], "labels"), (pasted, "masks")):
        torch.testing.assert_close(ours, reference[key], rtol=0, atol=0)

    torchvision_model, _ = load_checkpoint(SHAPES_CHECKPOINT, impl="torchvision")
    assert isinstance(torchvision_model, MaskRCNN)
    batch = [val[i][0] for i in range(4)]
    with torch.no_grad():
        a, b = torchvision_model(batch), model(batch)
    for x, y in zip(a, b):
        assert torch.equal(x["labels"], y["labels"])
        torch.testing.assert_close(x["boxes"], y["boxes"], rtol=0, atol=1e-3)
        torch.testing.assert_close(x["scores"], y["scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(x["masks"], y["masks"], rtol=0, atol=1e-4)

    def losses(m):
        m.train()
        for layer in m.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.eval()
        imgs, tgts = zip(*[val[i] for i in range(4)])
        torch.manual_seed(0)
        with torch.no_grad():
            return m(list(imgs), list(tgts))

    reference_losses, series_losses = losses(torchvision_model), losses(model)
    for name in reference_losses:
        torch.testing.assert_close(series_losses[name], reference_losses[name], rtol=1e-5, atol=1e-7)

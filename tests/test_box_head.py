"""helpers.box_head against torchvision's TwoMLPHead, FastRCNNPredictor, fastrcnn_loss and RoIHeads. Notebook 06."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor as TorchvisionPredictor
from torchvision.models.detection.faster_rcnn import TwoMLPHead as TorchvisionTwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.roi_heads import fastrcnn_loss as torchvision_fastrcnn_loss

from helpers.box_head import (BOX_HEAD_DEFAULTS, FastRCNNPredictor, TwoMLPHead, assign_targets_to_proposals,
                              cross_entropy, fastrcnn_loss, postprocess_detections, select_training_samples,
                              smooth_l1)


def roi_heads(fg=0.5, bg=0.5, batch=512, fraction=0.25, score=0.05, nms=0.5, detections=100) -> RoIHeads:
    return RoIHeads(None, None, None, fg, bg, batch, fraction, None, score, nms, detections)


def boxes(n: int, rng: np.random.Generator, size: float = 128.0, low: float = 2.0, high: float = 60.0) -> torch.Tensor:
    xy = rng.uniform(0, size * 0.8, size=(n, 2))
    wh = rng.uniform(low, high, size=(n, 2))
    return torch.tensor(np.concatenate([xy, xy + wh], axis=1), dtype=torch.float32)


def near(gt: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    """Proposals jittered around ground-truth boxes, so that some are positive."""
    if len(gt) == 0:
        return boxes(n, rng)
    idx = rng.integers(0, len(gt), size=n)
    size = (gt[idx, 2:] - gt[idx, :2]).repeat(1, 2)
    out = gt[idx] + torch.tensor(rng.normal(0, 0.15, size=(n, 4)), dtype=torch.float32) * size
    out[:, 2:] = torch.maximum(out[:, 2:], out[:, :2] + 1.0)
    return out


def test_defaults_are_torchvision_defaults():
    import inspect

    from torchvision.models.detection.faster_rcnn import FasterRCNN

    params = inspect.signature(FasterRCNN.__init__).parameters
    for name in ("score_thresh", "nms_thresh", "detections_per_img", "fg_iou_thresh", "bg_iou_thresh",
                 "batch_size_per_image", "positive_fraction"):
        assert BOX_HEAD_DEFAULTS[name] == params[f"box_{name}"].default, name
    assert BOX_HEAD_DEFAULTS["bbox_reg_weights"] == roi_heads().box_coder.weights


# -- the modules -----------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), k=st.integers(0, 9), channels=st.sampled_from([1, 4, 16]),
       side=st.sampled_from([1, 3, 7]), rep=st.sampled_from([8, 32]), num_classes=st.integers(2, 12))
def test_modules_equal_torchvision(seed, k, channels, side, rep, num_classes):
    torch.manual_seed(seed)
    tv_head = TorchvisionTwoMLPHead(channels * side * side, rep)
    tv_predictor = TorchvisionPredictor(rep, num_classes)
    head, predictor = TwoMLPHead.from_torchvision(tv_head), FastRCNNPredictor.from_torchvision(tv_predictor)
    x = torch.randn(k, channels, side, side)
    with torch.no_grad():
        theirs = tv_predictor(tv_head(x))
        ours = predictor(head(x))
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].shape == (k, num_classes) and ours[1].shape == (k, 4 * num_classes)
    for a, b in ((head, tv_head), (predictor, tv_predictor)):
        assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
        assert list(a.state_dict()) == list(b.state_dict())


def test_state_dicts_load_both_ways_and_default_sizes():
    head, predictor = TwoMLPHead(256 * 7 * 7, 1024), FastRCNNPredictor(1024, 91)
    assert sum(p.numel() for p in head.parameters()) == 12544 * 1024 + 1024 + 1024 * 1024 + 1024
    assert sum(p.numel() for p in predictor.parameters()) == 91 * 1025 + 364 * 1025
    tv_head, tv_predictor = TorchvisionTwoMLPHead(256 * 7 * 7, 1024), TorchvisionPredictor(1024, 91)
    tv_head.load_state_dict(head.state_dict())
    tv_predictor.load_state_dict(predictor.state_dict())
    x = torch.randn(3, 256, 7, 7)
    with torch.no_grad():
        assert torch.equal(tv_head(x), head(x))
        y = head(x)
        assert torch.equal(tv_predictor(y)[1], predictor(y)[1])
        assert torch.equal(predictor(y[:, :, None, None])[0], predictor(y)[0])     # [K, C, 1, 1] accepted


def test_module_errors():
    head, predictor = TwoMLPHead(12, 8), FastRCNNPredictor(8, 3)
    with pytest.raises(ValueError, match="in_channels = 12"):
        head(torch.randn(2, 3, 2, 3))
    with pytest.raises(TypeError, match="x must be a Tensor"):
        head([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\[K, C, 1, 1\]"):
        predictor(torch.randn(2, 8, 2, 2))
    with pytest.raises(ValueError, match="in_channels = 8"):
        predictor(torch.randn(2, 7))
    with pytest.raises(TypeError, match="x must be a Tensor"):
        predictor(torch.randn(2, 8, 1))
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        FastRCNNPredictor(8, 1)
    with pytest.raises(TypeError, match="in_channels must be an int"):
        TwoMLPHead(12.0, 8)
    with pytest.raises(ValueError, match="representation_size must be >= 1"):
        TwoMLPHead(12, 0)
    with pytest.raises(TypeError, match="torchvision's TwoMLPHead"):
        TwoMLPHead.from_torchvision(head)
    with pytest.raises(TypeError, match="torchvision's FastRCNNPredictor"):
        FastRCNNPredictor.from_torchvision(torch.nn.Linear(2, 2))


# -- matching and sampling ---------------------------------------------------------------------------------
@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), gts=st.lists(st.integers(0, 5), min_size=1, max_size=3),
       thresholds=st.sampled_from([(0.5, 0.5), (0.6, 0.4), (0.7, 0.3), (0.5, 0.0)]))
def test_assign_targets_equals_torchvision(seed, gts, thresholds):
    rng = np.random.default_rng(seed)
    gt_boxes = [boxes(g, rng) for g in gts]
    gt_labels = [torch.tensor(rng.integers(1, 5, size=g), dtype=torch.int64) for g in gts]
    proposals = [torch.cat([near(g, 10, rng), boxes(5, rng)]) for g in gt_boxes]
    ours = assign_targets_to_proposals(proposals, gt_boxes, gt_labels, *thresholds)
    theirs = roi_heads(*thresholds).assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            assert torch.equal(x, y)


def test_assign_targets_by_hand():
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 20.0, 100.0, 60.0]])
    props = torch.tensor([[12.0, 10.0, 52.0, 50.0], [30.0, 10.0, 70.0, 50.0], [60.0, 30.0, 100.0, 70.0]])
    matched, labels = assign_targets_to_proposals([props], [gt], [torch.tensor([1, 2])])
    assert matched[0].tolist() == [0, 0, 1] and labels[0].tolist() == [1, 0, 2]
    # a proposal with IoU exactly 0.5 is foreground (>= 0.5): 40 x 40 box against a 40 x 20 half of it
    half = torch.tensor([[10.0, 10.0, 50.0, 30.0]])
    assert assign_targets_to_proposals([half], [gt[:1]], [torch.tensor([3])])[1][0].tolist() == [3]


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), gts=st.lists(st.integers(0, 4), min_size=1, max_size=3),
       batch=st.sampled_from([1, 4, 8, 32, 512]), fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]))
def test_select_training_samples_equals_torchvision(seed, gts, batch, fraction):
    rng = np.random.default_rng(seed)
    targets = [{"boxes": boxes(g, rng), "labels": torch.tensor(rng.integers(1, 4, size=g), dtype=torch.int64)}
               for g in gts]
    proposals = [torch.cat([near(t["boxes"], 12, rng), boxes(8, rng)]) for t in targets]
    torch.manual_seed(seed)
    ours = select_training_samples(proposals, targets, batch_size_per_image=batch, positive_fraction=fraction)
    torch.manual_seed(seed)
    theirs = roi_heads(batch=batch, fraction=fraction).select_training_samples([p.clone() for p in proposals], targets)
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            assert torch.equal(x, y) or torch.allclose(x, y, equal_nan=True)   # no-object images: -inf deltas
    for labels in ours[2]:
        assert len(labels) <= batch and int((labels > 0).sum()) <= int(batch * fraction)


def test_selection_errors():
    p = [torch.zeros(2, 4)]
    t = [{"boxes": torch.zeros(1, 4), "labels": torch.ones(1, dtype=torch.int64)}]
    with pytest.raises(ValueError, match="one entry per image"):
        select_training_samples(p * 2, t)
    with pytest.raises(ValueError, match=r"'boxes' and 'labels'"):
        select_training_samples(p, [{"boxes": torch.zeros(1, 4)}])
    with pytest.raises(TypeError, match="floating-point"):
        select_training_samples(p, [{"boxes": torch.zeros(1, 4, dtype=torch.int64), "labels": t[0]["labels"]}])
    with pytest.raises(ValueError, match="positive_fraction must be in"):
        select_training_samples(p, t, positive_fraction=1.5)
    with pytest.raises(ValueError, match="batch_size_per_image must be >= 1"):
        select_training_samples(p, t, batch_size_per_image=0)
    with pytest.raises(ValueError, match="bbox_reg_weights must hold 4 numbers"):
        select_training_samples(p, t, bbox_reg_weights=(1.0, 1.0))
    with pytest.raises(TypeError, match="list with one entry per image"):
        assign_targets_to_proposals(torch.zeros(2, 4), [torch.zeros(1, 4)], [torch.ones(1, dtype=torch.int64)])
    with pytest.raises(ValueError, match="one label per box"):
        assign_targets_to_proposals(p, [torch.zeros(2, 4)], [torch.ones(1, dtype=torch.int64)])
    with pytest.raises(TypeError, match="must have dtype torch.int64"):
        assign_targets_to_proposals(p, [torch.zeros(1, 4)], [torch.ones(1, dtype=torch.int32)])
    with pytest.raises(ValueError, match=r"bg_iou_thresh \(0.6\) must be <= fg_iou_thresh"):
        assign_targets_to_proposals(p, [torch.zeros(1, 4)], [torch.ones(1, dtype=torch.int64)], 0.5, 0.6)
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        assign_targets_to_proposals([torch.zeros(2, 5)], [torch.zeros(1, 4)], [torch.ones(1, dtype=torch.int64)])


# -- the losses -------------------------------------------------------------------------------------------
def test_fastrcnn_loss_by_hand():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [0.2, 0.1, 1.5]])
    labels = torch.tensor([0, 1, 2])
    regression = torch.full((3, 12), 9.0)
    regression[1, 4:8] = torch.tensor([0.10, -0.05, 0.30, 0.0])
    regression[2, 8:12] = 0.0
    targets = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.15, -0.05, 0.10, 0.50], [-0.10, 0.05, 0.0, -0.30]])
    ce = np.mean([np.log(np.exp(r).sum()) - r[y] for r, y in zip(logits.double().numpy(), labels.numpy())])
    b = 1 / 9
    box = (0.5 * 0.05**2 / b + (0.2 - b / 2) + (0.5 - b / 2) + 0.5 * 0.1**2 / b + 0.5 * 0.05**2 / b + (0.3 - b / 2)) / 3
    cls_loss, box_loss = fastrcnn_loss(logits, regression, [labels], [targets])
    assert abs(float(cls_loss) - ce) < 1e-6 and abs(float(box_loss) - box) < 1e-6
    assert abs(box - 0.300278) < 1e-6
    tv = torchvision_fastrcnn_loss(logits, regression, [labels], [targets])
    torch.testing.assert_close(cls_loss, tv[0])
    torch.testing.assert_close(box_loss, tv[1])


@settings(deadline=None, max_examples=60)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40), num_classes=st.integers(2, 8),
       images=st.integers(1, 3), scale=st.sampled_from([0.01, 0.1, 1.0, 10.0]))
def test_fastrcnn_loss_equals_torchvision(seed, n, num_classes, images, scale):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, num_classes, generator=g) * 3
    regression = torch.randn(n, 4 * num_classes, generator=g) * scale
    labels = torch.randint(0, num_classes, (n,), generator=g)
    targets = torch.randn(n, 4, generator=g) * scale
    cuts = sorted(torch.randint(0, n + 1, (images - 1,), generator=g).tolist())
    split = lambda t: list(torch.tensor_split(t, cuts))
    ours = fastrcnn_loss(logits, regression, split(labels), split(targets))
    theirs = torchvision_fastrcnn_loss(logits, regression, split(labels), split(targets))
    torch.testing.assert_close(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])
    torch.testing.assert_close(cross_entropy(logits, labels), F.cross_entropy(logits, labels))
    torch.testing.assert_close(smooth_l1(regression, 0.3).sum(), F.smooth_l1_loss(regression, torch.zeros_like(regression),
                                                                                 beta=0.3, reduction="sum"))


def test_box_loss_gradient_reaches_only_the_true_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 3, 1, 0, 2])
    regression = torch.randn(5, 16, generator=g).requires_grad_(True)
    fastrcnn_loss(torch.randn(5, 4, generator=g), regression, labels, torch.randn(5, 4, generator=g))[1].backward()
    reached = (regression.grad != 0).reshape(5, 4, 4).any(dim=2)
    expected = torch.zeros(5, 4, dtype=torch.bool)
    for i, c in enumerate(labels.tolist()):
        expected[i, c] = c > 0
    assert torch.equal(reached, expected)
    assert not bool(reached[:, 0].any())                                          # background deltas: never


def test_loss_errors():
    logits, regression = torch.zeros(3, 3), torch.zeros(3, 12)
    labels, targets = torch.tensor([0, 1, 2]), torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"box_regression must have shape \[N, 4 \* num_classes\]"):
        fastrcnn_loss(logits, torch.zeros(3, 8), labels, targets)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        fastrcnn_loss(logits, regression, torch.tensor([0, 1, 3]), targets)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        fastrcnn_loss(logits, regression, torch.tensor([0, -1, 2]), targets)
    with pytest.raises(TypeError, match="labels must have dtype torch.int64"):
        fastrcnn_loss(logits, regression, labels.int(), targets)
    with pytest.raises(ValueError, match="one row per RoI"):
        fastrcnn_loss(logits, regression, labels[:2], targets)
    with pytest.raises(ValueError, match="at least one sampled RoI"):
        fastrcnn_loss(torch.zeros(0, 3), torch.zeros(0, 12), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4))
    with pytest.raises(TypeError, match="class_logits must be a Tensor"):
        fastrcnn_loss([[0.0]], regression, labels, targets)
    with pytest.raises(ValueError, match="class_logits must be a Tensor"):
        fastrcnn_loss(torch.zeros(3), regression, labels, targets)
    with pytest.raises(TypeError, match="floating-point"):
        fastrcnn_loss(torch.zeros(3, 3, dtype=torch.int64), regression, labels, targets)
    with pytest.raises(ValueError, match="beta must be > 0"):
        smooth_l1(torch.zeros(2), beta=0.0)


# -- post-processing -----------------------------------------------------------------------------------------
@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), counts=st.lists(st.integers(0, 30), min_size=1, max_size=3),
       num_classes=st.integers(2, 6), logit_scale=st.sampled_from([0.5, 3.0, 10.0]),
       delta_scale=st.sampled_from([0.0, 0.5, 3.0, 20.0]), options=st.sampled_from(
           [(0.05, 0.5, 100), (0.0, 0.3, 5), (0.2, 0.7, 1000), (0.05, 0.5, 0)]))
def test_postprocess_equals_torchvision(seed, counts, num_classes, logit_scale, delta_scale, options):
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    proposals = [boxes(k, rng, size=100.0) for k in counts]
    n = sum(counts)
    logits = torch.randn(n, num_classes, generator=g) * logit_scale
    regression = torch.randn(n, 4 * num_classes, generator=g) * delta_scale            # 20: dw, dh get clamped
    shapes = [(int(rng.integers(60, 120)), int(rng.integers(60, 120))) for _ in counts]
    score, nms, detections = options
    ours = postprocess_detections(logits, regression, proposals, shapes, score, nms, detections)
    theirs = roi_heads(score=score, nms=nms, detections=detections).postprocess_detections(logits, regression,
                                                                                             proposals, shapes)
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    for b, (h, w) in zip(ours[0], shapes):
        assert len(b) <= detections
        assert bool((b[:, 0::2] <= w).all() and (b[:, 1::2] <= h).all() and (b >= 0).all())


def test_postprocess_by_hand():
    proposals = torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 52.0, 52.0], [60.0, 60.0, 90.0, 95.0]])
    logits = torch.tensor([[0.0, 3.0, 1.0], [0.0, 2.5, 1.0], [1.0, -2.0, 2.5]])
    deltas = torch.zeros(3, 12)
    deltas[0, 4:8] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    deltas[2, 8:12] = torch.tensor([0.0, 0.0, 5 * math.log(2.0), 0.0])
    b, s, l = (t[0] for t in postprocess_detections(logits, deltas, [proposals], [(100, 100)]))
    assert l.tolist() == [1, 2, 2]
    torch.testing.assert_close(b, torch.tensor([[14.0, 10.0, 54.0, 50.0], [45.0, 60.0, 100.0, 95.0],
                                                [12.0, 12.0, 52.0, 52.0]]))
    p = F.softmax(logits.double(), dim=1)
    torch.testing.assert_close(s.double(), torch.stack([p[0, 1], p[2, 2], p[1, 2]]), rtol=1e-6, atol=1e-7)


def test_postprocess_errors():
    logits, regression, props = torch.zeros(2, 3), torch.zeros(2, 12), [torch.zeros(2, 4)]
    with pytest.raises(ValueError, match="holds? 2 boxes|proposals hold 3 boxes"):
        postprocess_detections(logits, regression, [torch.zeros(3, 4)], [(10, 10)])
    with pytest.raises(ValueError, match=r"box_regression must have shape"):
        postprocess_detections(logits, torch.zeros(2, 8), props, [(10, 10)])
    with pytest.raises(ValueError, match="one \\(H, W\\) per image"):
        postprocess_detections(logits, regression, props, [(10, 10), (10, 10)])
    with pytest.raises(TypeError, match=r"image_shapes\[0\] must be a \(height, width\) pair"):
        postprocess_detections(logits, regression, props, [10])
    with pytest.raises(ValueError, match="score_thresh must be in"):
        postprocess_detections(logits, regression, props, [(10, 10)], score_thresh=-0.1)
    with pytest.raises(ValueError, match="nms_thresh must be in"):
        postprocess_detections(logits, regression, props, [(10, 10)], nms_thresh=2.0)
    with pytest.raises(ValueError, match="detections_per_img must be >= 0"):
        postprocess_detections(logits, regression, props, [(10, 10)], detections_per_img=-1)
    with pytest.raises(ValueError, match="at least 2 columns"):
        postprocess_detections(torch.zeros(2, 1), torch.zeros(2, 4), props, [(10, 10)])
    with pytest.raises(TypeError, match="list with one entry per image"):
        postprocess_detections(logits, regression, torch.zeros(2, 4), [(10, 10)])

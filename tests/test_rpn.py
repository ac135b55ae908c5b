"""helpers.rpn against torchvision: anchors, IoU, matching, sampling, losses, NMS, proposals, the RPN."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as ops
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork as TVRegionProposalNetwork
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.rpn import concat_box_prediction_layers as tv_concat

from helpers import rpn as R
from helpers.boxes import box_iou
from test_boxes import integer_boxes

STRIDES = (4, 8, 16, 32, 64)


def image_and_features(size: int = 128, n: int = 2, channels: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = ImageList(torch.rand(n, 3, size, size, generator=g), [(size, size)] + [(size - 8, size - 28)] * (n - 1))
    features = {str(i): torch.rand(n, channels, size // s, size // s, generator=g) for i, s in enumerate(STRIDES)}
    return images, features


def make_rpns(channels: int = 8, pre=(300, 100), post=(200, 50), nms_thresh: float = 0.7, seed: int = 0,
              batch: int = 256, fraction: float = 0.5):
    torch.manual_seed(seed)
    head = RPNHead(channels, 3)
    with torch.no_grad():  # torchvision initialises biases to 0: perturb them so nothing is degenerate
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    kwargs = dict(fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=batch, positive_fraction=fraction,
                  pre_nms_top_n=dict(training=pre[0], testing=pre[1]),
                  post_nms_top_n=dict(training=post[0], testing=post[1]), nms_thresh=nms_thresh)
    theirs = TVRegionProposalNetwork(TVAnchorGenerator(R.MASK_RCNN_ANCHOR_SIZES, R.MASK_RCNN_ASPECT_RATIOS), head, **kwargs)
    ours = R.RegionProposalNetwork(R.AnchorGenerator(R.MASK_RCNN_ANCHOR_SIZES, R.MASK_RCNN_ASPECT_RATIOS), head, **kwargs)
    return ours, theirs


TARGETS = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 50.0], [70.0, 70.0, 120.0, 110.0]])},
           {"boxes": torch.tensor([[5.0, 5.0, 40.0, 90.0]])}]


# -- anchors ---------------------------------------------------------------------------------------

def test_cell_anchors_mask_rcnn_defaults():
    tv = TVAnchorGenerator(R.MASK_RCNN_ANCHOR_SIZES, R.MASK_RCNN_ASPECT_RATIOS)
    for sizes, ratios, theirs in zip(R.MASK_RCNN_ANCHOR_SIZES, R.MASK_RCNN_ASPECT_RATIOS, tv.cell_anchors):
        assert torch.equal(R.cell_anchors(sizes, ratios), theirs)
    # the rounding, worked by hand: size 32, ratio 0.5 -> w = 32 * sqrt(2) = 45.25, h = 22.63
    assert R.cell_anchors((32,), (0.5,)).tolist() == [[-23.0, -11.0, 23.0, 11.0]]


@settings(deadline=None, max_examples=60)
@given(sizes=st.lists(st.integers(1, 600), min_size=1, max_size=4),
       ratios=st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 0.333]), min_size=1, max_size=4))
def test_cell_anchors_hypothesis(sizes, ratios):
    theirs = TVAnchorGenerator((tuple(sizes),), (tuple(ratios),)).cell_anchors[0]
    assert torch.equal(R.cell_anchors(tuple(sizes), tuple(ratios)), theirs)


def test_cell_anchors_round_half_to_even():
    # size 33, ratio 1: corners +-16.5, which torch.round takes to the even 16
    assert R.cell_anchors((33,), (1.0,)).tolist() == [[-16.0, -16.0, 16.0, 16.0]]


@pytest.mark.parametrize("size,n", [(128, 1), (128, 2), (256, 1), (96, 3)])
def test_anchor_generator_equal_to_torchvision(size, n):
    images, features = image_and_features(size, n)
    feats = list(features.values())
    ours = R.AnchorGenerator()(images, feats)
    theirs = TVAnchorGenerator(R.MASK_RCNN_ANCHOR_SIZES, R.MASK_RCNN_ASPECT_RATIOS)(images, feats)
    assert len(ours) == len(theirs) == n
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    A = 3
    assert ours[0].shape[0] == sum((size // s) ** 2 * A for s in STRIDES)


def test_anchor_generator_several_sizes_and_odd_grid():
    sizes, ratios = ((16, 24), (40,)), ((0.5, 1.0), (1.0, 2.0, 3.0))
    images = ImageList(torch.zeros(1, 3, 100, 60), [(100, 60)])
    feats = [torch.zeros(1, 4, 25, 15), torch.zeros(1, 4, 13, 8)]  # 100 // 13 = 7: torchvision's integer stride
    ours = R.AnchorGenerator(sizes, ratios)
    theirs = TVAnchorGenerator(sizes, ratios)
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location() == [4, 3]
    assert torch.equal(ours(images, feats)[0], theirs(images, feats)[0])


def test_grid_anchors_order():
    base = R.cell_anchors((8,), (1.0,))
    (anchors,) = R.grid_anchors([(2, 3)], [(10, 10)], [base])
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).tolist()
    assert centres == [[0, 0], [10, 0], [20, 0], [0, 10], [10, 10], [20, 10]]  # row y, then column x


# -- IoU and matching -------------------------------------------------------------------------------

@settings(deadline=None, max_examples=80)
@given(seed=st.integers(0, 10_000), m=st.integers(1, 6), n=st.integers(1, 40), low_quality=st.booleans(),
       thresholds=st.sampled_from([(0.7, 0.3), (0.5, 0.5), (0.5, 0.4), (0.3, 0.1)]))
def test_match_anchors_hypothesis(seed, m, n, low_quality, thresholds):
    rng = np.random.default_rng(seed)
    iou = box_iou(integer_boxes(rng, m, 30, 15), integer_boxes(rng, n, 30, 15))  # integer grid: many ties
    high, low = thresholds
    theirs = det_utils.Matcher(high, low, allow_low_quality_matches=low_quality)(iou.clone())
    assert torch.equal(R.match_anchors(iou.clone(), high, low, low_quality), theirs)


def test_match_anchors_low_quality_by_hand():
    # gt 0's best IoU is 0.4, reached by anchors 0 and 1 (a tie): both are claimed. Anchor 1 then takes
    # *its own* best box, gt 1 (IoU 0.5), not gt 0 that claimed it: torchvision's rule, kept here.
    iou = torch.tensor([[0.4, 0.4, 0.1, 0.0],
                        [0.0, 0.5, 0.2, 0.8]])
    assert R.match_anchors(iou, 0.7, 0.3, allow_low_quality_matches=False).tolist() == [-2, -2, -1, 1]
    assert R.match_anchors(iou, 0.7, 0.3, allow_low_quality_matches=True).tolist() == [0, 1, -1, 1]
    assert det_utils.Matcher(0.7, 0.3, True)(iou.clone()).tolist() == [0, 1, -1, 1]


def test_assign_targets_equal_to_torchvision():
    images, features = image_and_features()
    anchors = R.AnchorGenerator()(images, list(features.values()))
    _, theirs = make_rpns()
    targets = [TARGETS[0], {"boxes": torch.zeros(0, 4)}]  # the second image has no object
    labels, matched = R.assign_targets_to_anchors(anchors, targets)
    tv_labels, tv_matched = theirs.assign_targets_to_anchors(anchors, targets)
    for a, b in zip(labels + matched, tv_labels + tv_matched):
        assert torch.equal(a, b)
    assert set(labels[0].unique().tolist()) == {-1.0, 0.0, 1.0}
    assert labels[1].eq(0).all()
    # plain tensors work as targets too
    labels2, _ = R.assign_targets_to_anchors(anchors[:1], [TARGETS[0]["boxes"]])
    assert torch.equal(labels2[0], labels[0])


# -- sampling and losses ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch,fraction", [(256, 0.5), (16, 0.25), (4000, 0.5), (10, 1.0), (0, 0.5)])
def test_sample_balanced_equal_to_torchvision(batch, fraction):
    g = torch.Generator().manual_seed(batch)
    labels = [torch.randint(-1, 2, (500,), generator=g).float(), torch.randint(-1, 2, (300,), generator=g).float()]
    labels[1][labels[1] == 1] = 0  # image 2: no positive at all
    torch.manual_seed(7)
    pos, neg = R.sample_balanced(labels, batch, fraction)
    torch.manual_seed(7)
    tv_pos, tv_neg = det_utils.BalancedPositiveNegativeSampler(batch, fraction)(labels)
    for a, b in zip(pos + neg, tv_pos + tv_neg):
        assert torch.equal(a, b)
    for p, q, lab in zip(pos, neg, labels):
        assert int(p.sum()) <= int(batch * fraction) and int(p.sum() + q.sum()) <= batch
        assert lab[p.bool()].eq(1).all() and lab[q.bool()].eq(0).all()


def test_concat_box_prediction_layers_equal_to_torchvision():
    g = torch.Generator().manual_seed(0)
    cls = [torch.randn(2, 3, h, h, generator=g) for h in (8, 4, 2)]
    reg = [torch.randn(2, 12, h, h, generator=g) for h in (8, 4, 2)]
    a, b = R.concat_box_prediction_layers(cls, reg)
    c, d = tv_concat(cls, reg)
    assert torch.equal(a, c) and torch.equal(b, d)
    # the anchor of level 0, image 0, row 1, column 2, anchor 1 is row (1 * 8 + 2) * 3 + 1
    assert a[(1 * 8 + 2) * 3 + 1, 0] == cls[0][0, 1, 1, 2]
    assert torch.equal(b[(1 * 8 + 2) * 3 + 1], reg[0][0, 4:8, 1, 2])


def test_bce_and_smooth_l1_against_torch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g, dtype=torch.float64) * 6
    y = (torch.rand(1000, generator=g) > 0.5).double()
    torch.testing.assert_close(R.binary_cross_entropy_with_logits(x, y),
                               F.binary_cross_entropy_with_logits(x, y), rtol=1e-12, atol=0)
    x32, y32 = x.float(), y.float()
    torch.testing.assert_close(R.binary_cross_entropy_with_logits(x32, y32),
                               F.binary_cross_entropy_with_logits(x32, y32), rtol=1e-6, atol=0)
    d, t = torch.randn(300, 4, generator=g), torch.randn(300, 4, generator=g) * 0.1
    for beta in (1 / 9, 1.0, 0.5):
        assert torch.equal(R.smooth_l1_loss(d, t, beta), F.smooth_l1_loss(d, t, beta=beta, reduction="sum"))
    # by hand: |0.05| < 1/9 -> 0.5 * 0.05**2 * 9 ; |1| -> 1 - 1/18
    assert R.smooth_l1_loss(torch.tensor([0.05, 1.0]), torch.zeros(2)).item() == pytest.approx(
        0.5 * 0.05 ** 2 * 9 + 1 - 1 / 18)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rpn_loss_equal_to_torchvision_compute_loss(seed):
    images, features = image_and_features(seed=seed)
    ours, theirs = make_rpns(seed=seed)
    feats = list(features.values())
    anchors = R.AnchorGenerator()(images, feats)
    obj, deltas = R.concat_box_prediction_layers(*theirs.head(feats))
    labels, matched = R.assign_targets_to_anchors(anchors, TARGETS)
    targets = ours.box_coder.encode(matched, anchors)
    torch.manual_seed(seed)
    tv_obj, tv_box = theirs.compute_loss(obj, deltas, labels, list(targets))
    torch.manual_seed(seed)
    pos, neg = R.sample_balanced(labels, 256, 0.5)
    my_obj, my_box = R.rpn_loss(obj, deltas, labels, targets, pos, neg)
    torch.testing.assert_close(my_obj, tv_obj, rtol=1e-6, atol=0)
    torch.testing.assert_close(my_box, tv_box, rtol=1e-6, atol=0)
    # gradients flow the same way
    g1 = torch.autograd.grad(my_obj + my_box, list(theirs.head.parameters()), retain_graph=True)
    g2 = torch.autograd.grad(tv_obj + tv_box, list(theirs.head.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


# -- proposals and the whole RPN ---------------------------------------------------------------------

@pytest.mark.parametrize("pre,post,thresh", [(1000, 1000, 0.7), (50, 20, 0.5), (300, 100, 0.3)])
def test_filter_proposals_equal_to_torchvision(pre, post, thresh):
    images, features = image_and_features()
    ours, theirs = make_rpns(pre=(pre, pre), post=(post, post), nms_thresh=thresh)
    theirs.eval()
    feats = list(features.values())
    obj_levels, reg_levels = theirs.head(feats)
    anchors = R.AnchorGenerator()(images, feats)
    per_level = [o[0].numel() for o in obj_levels]
    obj, deltas = R.concat_box_prediction_layers(obj_levels, reg_levels)
    proposals = ours.box_coder.decode(deltas.detach(), anchors).view(2, -1, 4)
    mine = R.filter_proposals(proposals, obj, images.image_sizes, per_level, pre, post, thresh)
    tv = theirs.filter_proposals(proposals, obj, images.image_sizes, per_level)
    for a, b in zip(mine[0] + mine[1], tv[0] + tv[1]):
        assert torch.equal(a, b)
    assert all(len(b) <= post for b in mine[0])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_region_proposal_network_equal_to_torchvision(training, seed):
    images, features = image_and_features(seed=seed)
    ours, theirs = make_rpns(seed=seed)
    ours.train(training)
    theirs.train(training)
    torch.manual_seed(seed)
    boxes_tv, losses_tv = theirs(images, features, TARGETS)
    torch.manual_seed(seed)
    boxes, losses = ours(images, features, TARGETS)
    for a, b in zip(boxes, boxes_tv):
        assert torch.equal(a, b)
    assert losses.keys() == losses_tv.keys() == ({"loss_objectness", "loss_rpn_box_reg"} if training else set())
    for key in losses:
        torch.testing.assert_close(losses[key], losses_tv[key], rtol=1e-6, atol=0)


# -- errors ------------------------------------------------------------------------------------------

def test_errors_anchors():
    with pytest.raises(TypeError, match="sizes must be a non-empty tuple"):
        R.cell_anchors(32, (1.0,))
    with pytest.raises(ValueError, match="aspect_ratios must hold finite positive"):
        R.cell_anchors((32,), (0.0,))
    with pytest.raises(TypeError, match="sizes must hold positive numbers"):
        R.cell_anchors(("32",), (1.0,))
    with pytest.raises(ValueError, match="one entry per level"):
        R.AnchorGenerator(((32,), (64,)), ((1.0,),))
    with pytest.raises(ValueError, match="one entry per level"):
        R.grid_anchors([(2, 2)], [(4, 4), (8, 8)], [R.cell_anchors((8,), (1.0,))])
    with pytest.raises(ValueError, match=r"must be pairs \(y, x\)"):
        R.grid_anchors([(2, 2, 2)], [(4, 4)], [R.cell_anchors((8,), (1.0,))])
    gen = R.AnchorGenerator(((32,),), ((1.0,),))
    images = ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)])
    with pytest.raises(TypeError, match="image_list must be an ImageList"):
        gen(torch.zeros(1, 3, 32, 32), [torch.zeros(1, 1, 8, 8)])
    with pytest.raises(ValueError, match="has 1 levels of anchors, got 2 feature maps"):
        gen(images, [torch.zeros(1, 1, 8, 8)] * 2)
    with pytest.raises(ValueError, match="no larger than the image"):
        gen(images, [torch.zeros(1, 1, 64, 64)])
    with pytest.raises(TypeError, match="feature_maps must be a list"):
        gen(images, torch.zeros(1, 1, 8, 8))


def test_errors_matching_and_sampling():
    with pytest.raises(ValueError, match="No ground-truth boxes"):
        R.match_anchors(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="No proposal boxes"):
        R.match_anchors(torch.zeros(2, 0))
    with pytest.raises(ValueError, match=r"low_threshold \(0.8\) must be <= high_threshold"):
        R.match_anchors(torch.zeros(1, 1), 0.7, 0.8)
    with pytest.raises(TypeError, match="match_quality_matrix must be a Tensor"):
        R.match_anchors(torch.zeros(3))
    with pytest.raises(TypeError, match="high_threshold must be a number"):
        R.match_anchors(torch.zeros(1, 1), "0.7")
    with pytest.raises(ValueError, match="one entry per image"):
        R.assign_targets_to_anchors([torch.zeros(2, 4)], [])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\] must have shape"):
        R.assign_targets_to_anchors([torch.zeros(2, 4)], [{"boxes": torch.zeros(3)}])
    with pytest.raises(TypeError, match="labels must be a list"):
        R.sample_balanced(torch.zeros(5))
    with pytest.raises(ValueError, match="positive_fraction must be <= 1.0"):
        R.sample_balanced([torch.zeros(5)], 256, 1.5)
    with pytest.raises(TypeError, match="batch_size_per_image must be an int"):
        R.sample_balanced([torch.zeros(5)], 25.6)
    with pytest.raises(ValueError, match="beta must be > 0.0"):
        R.smooth_l1_loss(torch.zeros(1), torch.zeros(1), 0.0)
    with pytest.raises(ValueError, match="must cover the same anchors"):
        R.rpn_loss(torch.zeros(5, 1), torch.zeros(5, 4), [torch.zeros(4)], [torch.zeros(4, 4)],
                   [torch.zeros(4, dtype=torch.uint8)], [torch.zeros(4, dtype=torch.uint8)])
    with pytest.raises(ValueError, match="level 0: box_cls must be"):
        R.concat_box_prediction_layers([torch.zeros(1, 3, 4, 4)], [torch.zeros(1, 10, 4, 4)])


def test_errors_proposals():
    with pytest.raises(ValueError, match="proposals must be a Tensor"):
        R.filter_proposals(torch.zeros(10, 4), torch.zeros(10), [(8, 8)], [10])
    with pytest.raises(ValueError, match="must sum to the number of anchors"):
        R.filter_proposals(torch.zeros(1, 10, 4), torch.zeros(10), [(8, 8)], [4, 5])
    with pytest.raises(ValueError, match="one logit per proposal"):
        R.filter_proposals(torch.zeros(1, 10, 4), torch.zeros(9), [(8, 8)], [10])
    with pytest.raises(ValueError, match="pre_nms_top_n must be >= 1"):
        R.filter_proposals(torch.zeros(1, 10, 4), torch.zeros(10), [(8, 8)], [10], pre_nms_top_n=0)
    with pytest.raises(ValueError, match="bg_iou_thresh"):
        R.RegionProposalNetwork(R.AnchorGenerator(), torch.nn.Identity(), fg_iou_thresh=0.3, bg_iou_thresh=0.7)
    with pytest.raises(ValueError, match="'training' and 'testing'"):
        R.RegionProposalNetwork(R.AnchorGenerator(), torch.nn.Identity(), pre_nms_top_n={"train": 5})
    ours, _ = make_rpns()
    images, features = image_and_features()
    with pytest.raises(ValueError, match="targets should not be None"):
        ours.train()(images, features)


# -- drawing helpers (helpers.viz) and the anchor-matching panel (helpers.widgets) ---------------------

def test_box_outlines_and_draw_boxes():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.viz import box_outlines, draw_boxes, draw_image

    outline = box_outlines(torch.tensor([[1.0, 2.0, 5.0, 4.0]]))
    assert outline.tolist() == [[[0.5, 1.5], [4.5, 1.5], [4.5, 3.5], [0.5, 3.5], [0.5, 1.5]]]
    assert box_outlines([], shift=0.0).shape == (0, 5, 2)
    fig, ax = plt.subplots()
    lines = draw_boxes(torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]]), ax, shift=0.0)
    assert len(lines.get_segments()) == 2 and lines.get_segments()[1].tolist()[2] == [3.0, 4.0]
    artist = draw_image(torch.zeros(3, 4, 6), ax)
    assert artist.get_extent() == [-0.5, 5.5, 3.5, -0.5]
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        box_outlines(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="image must be"):
        draw_image(torch.zeros(4, 4), ax)
    with pytest.raises(ValueError, match="dim must be in"):
        draw_image(torch.zeros(3, 4, 4), ax, dim=2.0)
    plt.close(fig)


def _panel_inputs():
    from helpers.shapes import ShapesDataset

    image, target = ShapesDataset(1, seed=0, size=128)[0]
    images = ImageList(image[None], [(128, 128)])
    anchors = R.AnchorGenerator()(images, [torch.zeros(1, 1, 128 // s, 128 // s) for s in STRIDES])[0]
    return image, target["boxes"], anchors


def test_anchor_match_panel_random_moves():
    from helpers.widgets import AnchorMatchPanel

    image, gt, anchors = _panel_inputs()
    panel = AnchorMatchPanel(image, gt, anchors, dpi=20)   # a small PNG: 200 redraws stay quick
    iou = ops.box_iou(gt, anchors)
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(200):
        move = {}
        if rng.random() < 0.7:
            move["fg"] = float(rng.choice(np.arange(0.05, 1.0001, 0.05)))
        if rng.random() < 0.7:
            move["bg"] = float(rng.choice(np.arange(0.0, 0.9501, 0.05)))
        if rng.random() < 0.3:
            move["low_quality"] = bool(rng.random() < 0.5)
        state = panel.set(**move)
        assert panel.error is None, panel.error
        values = panel.values()
        if values["bg"] > values["fg"]:
            refused += 1
            assert state == {} and "must not exceed" in panel.message
            assert panel.positive_lines.get_segments() == [] and "no labelling" in panel.title_text.get_text()
            continue
        assert panel.message is None
        expected = det_utils.Matcher(values["fg"], values["bg"], values["low_quality"])(iou.clone())
        positives, ignored = expected >= 0, expected == -2
        assert state["positives"] == int(positives.sum()) == len(panel.positive_lines.get_segments())
        assert state["ignored"] == int(ignored.sum()) == len(panel.ignored_lines.get_segments())
        assert state["negatives"] == int((expected == -1).sum())
        assert state["objects without a positive"] == len(gt) - len(set(expected[positives].tolist()))
        # the drawn outlines are the positive anchors, shifted onto the pixel-centre image
        drawn = np.array([seg[[0, 2]].reshape(-1) for seg in panel.positive_lines.get_segments()]).reshape(-1, 4)
        np.testing.assert_allclose(drawn, anchors[positives].numpy() - 0.5)
    assert 0 < refused < 200


def test_anchor_match_panel_errors():
    from helpers.widgets import AnchorMatchPanel

    image, gt, anchors = _panel_inputs()
    with pytest.raises(TypeError, match=r"image must be a Tensor\[3, H, W\]"):
        AnchorMatchPanel(image[0], gt, anchors)
    with pytest.raises(ValueError, match="gt_boxes must be a non-empty"):
        AnchorMatchPanel(image, torch.zeros(0, 4), anchors)
    with pytest.raises(ValueError, match="anchors must be a non-empty"):
        AnchorMatchPanel(image, gt, anchors[:, :3])


def test_anchor_match_panel_defaults_are_notebook_05s():
    from helpers.widgets import AnchorMatchPanel

    image, gt, anchors = _panel_inputs()
    default = AnchorMatchPanel(dpi=20)
    explicit = AnchorMatchPanel(image, gt, anchors, dpi=20)
    assert torch.equal(default.anchors, anchors) and torch.equal(default.gt_boxes, gt)
    assert default.state == explicit.state and default.error is None
    assert default.state["positives"] == 42 and default.state["low-quality positives"] == 32
    with pytest.raises(ValueError, match="give both image and gt_boxes"):
        AnchorMatchPanel(image)

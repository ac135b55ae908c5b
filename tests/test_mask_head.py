"""Tests of helpers.mask_head against torchvision's mask branch and float64 recomputations.

References: torchvision.models.detection.mask_rcnn.MaskRCNNHeads / MaskRCNNPredictor, and
torchvision.models.detection.roi_heads.project_masks_on_boxes / maskrcnn_loss /
maskrcnn_inference / expand_boxes / expand_masks / paste_masks_in_image; a naive float64 loop for
the pasting and the loss; and the loss dictionary of a whole maskrcnn_resnet50_fpn training step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from helpers.mask_head import (
    MaskHead,
    expand_boxes,
    expand_masks,
    maskrcnn_inference,
    maskrcnn_loss,
    paste_mask_in_image,
    paste_masks_in_image,
    project_masks_on_boxes,
)

SETTINGS = settings(deadline=None, max_examples=25, derandomize=True)


# -- helpers of the tests ------------------------------------------------------------------------

def random_boxes(gen: torch.Generator, n: int, h: int, w: int, min_size: float = 0.5,
                 margin: float = 0.2) -> torch.Tensor:
    """``n`` float boxes inside (or a little past the edges of) an ``h x w`` image."""
    x1 = torch.rand(n, generator=gen) * w * (1 + 2 * margin) - w * margin
    y1 = torch.rand(n, generator=gen) * h * (1 + 2 * margin) - h * margin
    bw = torch.rand(n, generator=gen) * w * 0.8 + min_size
    bh = torch.rand(n, generator=gen) * h * 0.8 + min_size
    return torch.stack([x1, y1, x1 + bw, y1 + bh], dim=1)


def overlapping_boxes(gen: torch.Generator, n: int, h: int, w: int) -> torch.Tensor:
    """Boxes that overlap the image by at least one pixel (torchvision's paste needs it)."""
    boxes = random_boxes(gen, n, h, w)
    boxes[:, 0] = boxes[:, 0].clamp(max=w - 1.5)
    boxes[:, 1] = boxes[:, 1].clamp(max=h - 1.5)
    boxes[:, 2] = torch.maximum(boxes[:, 2], boxes[:, 0] + 0.5).clamp(min=1.5)
    boxes[:, 3] = torch.maximum(boxes[:, 3], boxes[:, 1] + 0.5).clamp(min=1.5)
    return boxes


def random_batch(seed: int, num_images: int, max_pos: int, K: int, M: int, h: int, w: int,
                 dtype: torch.dtype = torch.float32):
    """mask_logits, proposals, gt_masks, gt_labels, mask_matched_idxs for ``num_images`` images."""
    gen = torch.Generator().manual_seed(seed)
    proposals, gt_masks, gt_labels, idxs = [], [], [], []
    for _ in range(num_images):
        g = int(torch.randint(1, 4, (1,), generator=gen))
        p = int(torch.randint(0, max_pos + 1, (1,), generator=gen))
        gt_masks.append((torch.rand(g, h, w, generator=gen) > 0.5).to(torch.uint8))
        gt_labels.append(torch.randint(1, K, (g,), generator=gen))
        proposals.append(random_boxes(gen, p, h, w).to(dtype))
        idxs.append(torch.randint(0, g, (p,), generator=gen))
    total = sum(p.shape[0] for p in proposals)
    logits = (torch.randn(total, K, M, M, generator=gen) * 3).to(dtype)
    return logits, proposals, gt_masks, gt_labels, idxs


# -- 1. the head -----------------------------------------------------------------------------------

@settings(deadline=None, max_examples=15, derandomize=True)
@given(seed=st.integers(0, 2**31 - 1), num_classes=st.integers(1, 6), rois=st.integers(0, 3),
       in_channels=st.integers(1, 8), layers=st.lists(st.integers(1, 8), min_size=1, max_size=4),
       dim_reduced=st.integers(1, 8), side=st.integers(1, 14))
def test_head_equals_torchvision(seed, num_classes, rois, in_channels, layers, dim_reduced, side):
    torch.manual_seed(seed)
    tv_head = MaskRCNNHeads(in_channels, layers, 1)
    tv_pred = MaskRCNNPredictor(layers[-1], dim_reduced, num_classes)
    ours = MaskHead.from_torchvision(tv_head, tv_pred)
    x = torch.randn(rois, in_channels, side, side)
    expected = tv_pred(tv_head(x))
    got = ours(x)
    assert got.shape == (rois, num_classes, 2 * side, 2 * side)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_tv = sum(p.numel() for p in tv_head.parameters()) + sum(p.numel() for p in tv_pred.parameters())
    assert n_ours == n_tv


def test_head_full_size_equals_torchvision_and_counts_parameters():
    torch.manual_seed(0)
    tv_head = MaskRCNNHeads(256, (256, 256, 256, 256), 1)
    tv_pred = MaskRCNNPredictor(256, 256, 4)
    ours = MaskHead.from_torchvision(tv_head, tv_pred)
    x = torch.randn(2, 256, 14, 14)
    torch.testing.assert_close(ours(x), tv_pred(tv_head(x)), rtol=0, atol=0)
    # 4 x (256*256*9 + 256) + (256*256*4 + 256) + (256*4 + 4), by hand
    expected = 4 * (256 * 256 * 9 + 256) + (256 * 256 * 4 + 256) + (256 * 4 + 4)
    assert expected == 2_623_748
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert sum(p.numel() for p in MaskHead(4).parameters()) == expected
    # the same state-dict shapes as a freshly built head of our own
    fresh = MaskHead(4)
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


def test_head_of_a_whole_model_equals_torchvision(small_maskrcnn):
    model = small_maskrcnn
    ours = MaskHead.from_torchvision(model.roi_heads.mask_head, model.roi_heads.mask_predictor)
    x = torch.randn(1, 256, 14, 14)
    expected = model.roi_heads.mask_predictor(model.roi_heads.mask_head(x))
    torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)


def test_head_layer_outputs_shapes_and_last_equals_forward():
    torch.manual_seed(1)
    head = MaskHead(5)
    x = torch.randn(1, 256, 14, 14)
    with torch.no_grad():
        outputs = head.layer_outputs(x)
        direct = head(x)
    names = [name for name, _ in outputs]
    assert names == ["input", "mask_fcn1", "relu1", "mask_fcn2", "relu2", "mask_fcn3", "relu3",
                     "mask_fcn4", "relu4", "conv5_mask", "relu5", "mask_fcn_logits"]
    shapes = [tuple(t.shape) for _, t in outputs]
    assert shapes[:9] == [(1, 256, 14, 14)] * 9
    assert shapes[9:11] == [(1, 256, 28, 28)] * 2
    assert shapes[11] == (1, 5, 28, 28)
    torch.testing.assert_close(outputs[-1][1], direct, rtol=0, atol=0)
    for name, t in outputs:  # every ReLU's output is non-negative
        if name.startswith("relu"):
            assert float(t.min()) >= 0


def test_head_initialisation_follows_torchvision():
    torch.manual_seed(2)
    head = MaskHead(4).requires_grad_(False)
    for i in range(1, 5):
        conv = getattr(head.layers, f"mask_fcn{i}")
        assert float(conv.bias.abs().max()) == 0.0
        # Kaiming normal, fan_out = 256 * 3 * 3: std = sqrt(2 / fan_out)
        std = math.sqrt(2.0 / (256 * 9))
        assert abs(float(conv.weight.std()) / std - 1) < 0.02
    deconv = head.layers.conv5_mask  # ConvTranspose2d weight [in, out, 2, 2]: torch's fan_out is in * 4
    assert abs(float(deconv.weight.std()) / math.sqrt(2.0 / (256 * 4)) - 1) < 0.02


def test_head_errors():
    head = MaskHead(3, in_channels=8, layers=(4,), dim_reduced=4)
    with pytest.raises(TypeError, match="x must be a Tensor"):
        head([[1.0]])
    with pytest.raises(ValueError, match=r"x must be a Tensor\[R, C, H, W\]"):
        head(torch.zeros(8, 14, 14))
    with pytest.raises(ValueError, match="x must have 8 channels"):
        head(torch.zeros(1, 7, 14, 14))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        head(torch.zeros(1, 8, 14, 14, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        MaskHead(0)
    with pytest.raises(TypeError, match="num_classes must be an int"):
        MaskHead(True)
    with pytest.raises(TypeError, match="layers must be a non-empty sequence"):
        MaskHead(3, layers=())
    with pytest.raises(ValueError, match="layers"):
        MaskHead(3, layers=(4, 0))
    with pytest.raises(ValueError, match="dim_reduced must be >= 1"):
        MaskHead(3, dim_reduced=0)


def test_from_torchvision_errors():
    pred = MaskRCNNPredictor(4, 4, 3)
    with pytest.raises(TypeError, match="mask_head must be torchvision's MaskRCNNHeads"):
        MaskHead.from_torchvision(nn.Conv2d(4, 4, 3), pred)
    with pytest.raises(TypeError, match="mask_predictor must be torchvision's MaskRCNNPredictor"):
        MaskHead.from_torchvision(MaskRCNNHeads(4, [4], 1), nn.Conv2d(4, 4, 1))
    with pytest.raises(ValueError, match=r"mask_head\[0\] must start with a 3x3 Conv2d"):
        MaskHead.from_torchvision(MaskRCNNHeads(4, [4], 2), pred)  # dilation 2
    with pytest.raises(ValueError, match="no normalisation layer"):
        MaskHead.from_torchvision(MaskRCNNHeads(4, [4], 1, norm_layer=nn.BatchNorm2d), pred)
    with pytest.raises(ValueError, match="mask_head must hold at least one"):
        MaskHead.from_torchvision(nn.Sequential(), pred)
    with pytest.raises(ValueError, match="children conv5_mask, relu, mask_fcn_logits"):
        MaskHead.from_torchvision(MaskRCNNHeads(4, [4], 1), nn.Sequential(nn.Conv2d(4, 4, 1)))
    with pytest.raises(ValueError, match="mask_predictor.conv5_mask expects 4 channels"):
        MaskHead.from_torchvision(MaskRCNNHeads(4, [6], 1), pred)


# -- 2. targets ------------------------------------------------------------------------------------

@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), g=st.integers(1, 4), p=st.integers(0, 6), h=st.integers(2, 40),
       w=st.integers(2, 40), M=st.integers(1, 28))
def test_project_masks_on_boxes_equals_torchvision(seed, g, p, h, w, M):
    gen = torch.Generator().manual_seed(seed)
    masks = (torch.rand(g, h, w, generator=gen) > 0.4).to(torch.uint8)
    boxes = random_boxes(gen, p, h, w)
    idxs = torch.randint(0, g, (p,), generator=gen)
    got = project_masks_on_boxes(masks, boxes, idxs, M)
    expected = tv_roi_heads.project_masks_on_boxes(masks, boxes, idxs, M)
    assert got.shape == (p, M, M)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert float(got.min(), ) >= 0 if p else True
    if p:
        assert float(got.max()) <= 1 + 1e-6


def test_project_masks_on_boxes_of_a_full_box_is_one():
    # a proposal well inside a full mask reads 1 everywhere; one inside an empty mask reads 0
    masks = torch.stack([torch.ones(20, 20), torch.zeros(20, 20)]).to(torch.uint8)
    boxes = torch.tensor([[3.0, 4.0, 15.0, 12.5], [3.0, 4.0, 15.0, 12.5]])
    out = project_masks_on_boxes(masks, boxes, torch.tensor([0, 1]), 7)
    torch.testing.assert_close(out[0], torch.ones(7, 7), rtol=0, atol=1e-6)  # sums of weights: 1 +- 1 ulp
    torch.testing.assert_close(out[1], torch.zeros(7, 7), rtol=0, atol=0)


def test_project_masks_on_boxes_errors():
    masks = torch.zeros(2, 10, 10, dtype=torch.uint8)
    boxes = torch.tensor([[1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"gt_masks must be a Tensor\[G, H, W\]"):
        project_masks_on_boxes(masks[0], boxes, torch.tensor([0]), 28)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        project_masks_on_boxes(masks, boxes[:, :3], torch.tensor([0]), 28)
    with pytest.raises(TypeError, match="boxes must be a floating-point"):
        project_masks_on_boxes(masks, boxes.long(), torch.tensor([0]), 28)
    with pytest.raises(ValueError, match="boxes must have x2 >= x1"):
        project_masks_on_boxes(masks, torch.tensor([[5.0, 1.0, 1.0, 5.0]]), torch.tensor([0]), 28)
    with pytest.raises(ValueError, match="matched_idxs must lie in"):
        project_masks_on_boxes(masks, boxes, torch.tensor([2]), 28)
    with pytest.raises(ValueError, match="matched_idxs must hold one index per box"):
        project_masks_on_boxes(masks, boxes, torch.tensor([0, 1]), 28)
    with pytest.raises(TypeError, match="matched_idxs must be an integer tensor"):
        project_masks_on_boxes(masks, boxes, torch.tensor([0.0]), 28)
    with pytest.raises(ValueError, match="M must be >= 1"):
        project_masks_on_boxes(masks, boxes, torch.tensor([0]), 0)


# -- 3. the loss -----------------------------------------------------------------------------------

def loss_float64(mask_logits, proposals, gt_masks, gt_labels, idxs) -> float:
    """The loss written out: -[t log s + (1 - t) log(1 - s)], gt channel only, mean, in float64."""
    total, count = 0.0, 0
    row = 0
    M = mask_logits.shape[-1]
    for boxes, masks, labels, match in zip(proposals, gt_masks, gt_labels, idxs):
        targets = tv_roi_heads.project_masks_on_boxes(masks, boxes.float(), match, M).double()
        for r in range(boxes.shape[0]):
            z = mask_logits[row + r, int(labels[match[r]])].double()
            s = torch.sigmoid(z)
            t = targets[r]
            total += float(-(t * torch.log(s) + (1 - t) * torch.log1p(-s)).sum())
            count += M * M
        row += boxes.shape[0]
    return total / count


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), num_images=st.integers(1, 3), max_pos=st.integers(1, 4),
       K=st.integers(2, 5), M=st.integers(2, 28), h=st.integers(4, 32), w=st.integers(4, 32))
def test_maskrcnn_loss_equals_torchvision(seed, num_images, max_pos, K, M, h, w):
    logits, proposals, gt_masks, gt_labels, idxs = random_batch(seed, num_images, max_pos, K, M, h, w)
    ours_in = logits.clone().requires_grad_(True)
    tv_in = logits.clone().requires_grad_(True)
    got = maskrcnn_loss(ours_in, proposals, gt_masks, gt_labels, idxs)
    expected = tv_roi_heads.maskrcnn_loss(tv_in, proposals, gt_masks, gt_labels, idxs)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    got.backward()
    expected.backward()
    torch.testing.assert_close(ours_in.grad, tv_in.grad, rtol=1e-5, atol=1e-9)
    if logits.shape[0]:
        assert math.isclose(float(got.detach()), loss_float64(logits, proposals, gt_masks, gt_labels, idxs),
                            rel_tol=1e-5, abs_tol=1e-7)
        # only the ground-truth class's channel gets a gradient
        labels = torch.cat([lab[i] for lab, i in zip(gt_labels, idxs)])
        keep = torch.zeros(logits.shape[:2], dtype=torch.bool)
        keep[torch.arange(len(labels)), labels] = True
        assert float(ours_in.grad[~keep].abs().max() if (~keep).any() else 0.0) == 0.0


def test_maskrcnn_loss_is_a_mean_not_a_sum():
    logits, proposals, gt_masks, gt_labels, idxs = random_batch(3, 2, 3, 3, 28, 20, 20)
    loss = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, idxs)
    summed = loss_float64(logits, proposals, gt_masks, gt_labels, idxs) * logits.shape[0] * 28 * 28
    assert logits.shape[0] > 0
    assert math.isclose(float(loss) * logits.shape[0] * 28 * 28, summed, rel_tol=1e-5)


@pytest.mark.parametrize("num_images", [1, 3])
def test_maskrcnn_loss_without_positives_is_a_zero_that_keeps_the_graph(num_images):
    logits = torch.randn(0, 4, 28, 28, requires_grad=True)
    proposals = [torch.zeros(0, 4) for _ in range(num_images)]
    gt_masks = [torch.zeros(2, 16, 16, dtype=torch.uint8) for _ in range(num_images)]
    gt_labels = [torch.tensor([1, 2]) for _ in range(num_images)]
    idxs = [torch.zeros(0, dtype=torch.int64) for _ in range(num_images)]
    got = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, idxs)
    expected = tv_roi_heads.maskrcnn_loss(logits, proposals, gt_masks, gt_labels, idxs)
    assert float(got.detach()) == float(expected.detach()) == 0.0
    assert got.requires_grad and got.shape == ()
    got.backward()
    assert logits.grad is not None and logits.grad.shape == logits.shape


def test_maskrcnn_loss_float64():
    logits, proposals, gt_masks, gt_labels, idxs = random_batch(7, 2, 3, 4, 14, 24, 24, dtype=torch.float64)
    got = maskrcnn_loss(logits, proposals, gt_masks, gt_labels, idxs)
    assert got.dtype == torch.float64
    assert math.isclose(float(got.detach()), loss_float64(logits, proposals, gt_masks, gt_labels, idxs), rel_tol=1e-6)


def test_maskrcnn_loss_errors():
    logits, proposals, gt_masks, gt_labels, idxs = random_batch(0, 2, 2, 3, 8, 10, 10)
    while logits.shape[0] == 0:  # pragma: no cover - seed 0 has positives; keep the test honest anyway
        logits, proposals, gt_masks, gt_labels, idxs = random_batch(1, 2, 2, 3, 8, 10, 10)
    with pytest.raises(TypeError, match="mask_logits must be a Tensor"):
        maskrcnn_loss(logits.numpy(), proposals, gt_masks, gt_labels, idxs)
    with pytest.raises(ValueError, match=r"mask_logits must be a Tensor\[P, K, M, M\]"):
        maskrcnn_loss(logits[:, 0], proposals, gt_masks, gt_labels, idxs)
    with pytest.raises(ValueError, match="mask_logits must hold square"):
        maskrcnn_loss(logits[..., :-1], proposals, gt_masks, gt_labels, idxs)
    with pytest.raises(TypeError, match="mask_logits must be a floating-point"):
        maskrcnn_loss(logits.long(), proposals, gt_masks, gt_labels, idxs)
    with pytest.raises(TypeError, match="proposals must be a list of Tensors"):
        maskrcnn_loss(logits, torch.cat(proposals), gt_masks, gt_labels, idxs)
    with pytest.raises(ValueError, match="one entry per image"):
        maskrcnn_loss(logits, proposals, gt_masks[:1], gt_labels, idxs)
    with pytest.raises(ValueError, match="mask_logits must hold one row per positive proposal"):
        maskrcnn_loss(torch.cat([logits, logits[:1]]), proposals, gt_masks, gt_labels, idxs)
    i = next(k for k, b in enumerate(proposals) if b.shape[0])  # an image with positives
    bad_labels = [lab.clone() for lab in gt_labels]
    bad_labels[i][:] = 3
    with pytest.raises(ValueError, match=rf"gt_labels\[{i}\] must lie in \[0, 3\)"):
        maskrcnn_loss(logits, proposals, gt_masks, bad_labels, idxs)
    with pytest.raises(TypeError, match=r"gt_labels\[0\] must be an integer tensor"):
        maskrcnn_loss(logits, proposals, gt_masks, [lab.float() for lab in gt_labels], idxs)
    bad_idxs = [ix.clone() for ix in idxs]
    bad_idxs[i][0] = gt_masks[i].shape[0]
    with pytest.raises(ValueError, match=rf"mask_matched_idxs\[{i}\] must lie in"):
        maskrcnn_loss(logits, proposals, gt_masks, gt_labels, bad_idxs)
    with pytest.raises(ValueError, match=rf"mask_matched_idxs\[{i}\] must hold one index per proposal"):
        maskrcnn_loss(logits, proposals, gt_masks, gt_labels,
                      [ix[:-1] if k == i else ix for k, ix in enumerate(idxs)])
    with pytest.raises(ValueError, match=r"gt_masks\[0\] and gt_labels\[0\] must describe the same objects"):
        maskrcnn_loss(logits, proposals, [m[:0] for m in gt_masks], gt_labels, idxs)


# -- 4. inference ----------------------------------------------------------------------------------

@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), counts=st.lists(st.integers(0, 4), min_size=1, max_size=3),
       K=st.integers(1, 5), M=st.integers(1, 28))
def test_maskrcnn_inference_equals_torchvision(seed, counts, K, M):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(counts), K, M, M, generator=gen)
    labels = [torch.randint(0, K, (c,), generator=gen) for c in counts]
    got = maskrcnn_inference(x, labels)
    expected = tv_roi_heads.maskrcnn_inference(x, labels)
    assert len(got) == len(expected) == len(counts)
    for g, e, c in zip(got, expected, counts):
        assert g.shape == (c, 1, M, M)
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_maskrcnn_inference_errors():
    x = torch.randn(3, 4, 28, 28)
    with pytest.raises(ValueError, match="labels must hold one class per row of x"):
        maskrcnn_inference(x, [torch.tensor([1, 2])])
    with pytest.raises(ValueError, match=r"labels\[0\] must lie in \[0, 4\)"):
        maskrcnn_inference(x, [torch.tensor([1, 2, 4])])
    with pytest.raises(TypeError, match="labels must be a list of Tensors"):
        maskrcnn_inference(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"x must be a Tensor\[D, K, M, M\]"):
        maskrcnn_inference(x[0], [torch.tensor([1, 2, 3])])


# -- 5. pasting --------------------------------------------------------------------------------------

def paste_float64(masks: torch.Tensor, boxes: torch.Tensor, h: int, w: int, padding: int) -> np.ndarray:
    """torchvision's pasting written as a naive loop in float64, without F.interpolate.

    Pad by ``padding`` zeros; scale the box by (M+2p)/M about its centre; truncate toward zero; the
    integer box covers pixels x1..x2 inclusive (width x2 - x1 + 1); image pixel x reads the padded
    mask at s = (x - x1 + 0.5) * S / width - 0.5 (align_corners=False), s < 0 clamped to 0, and
    interpolates between floor(s) and min(floor(s) + 1, S - 1).
    """
    n, _, M, _ = masks.shape
    S = M + 2 * padding
    out = np.zeros((n, h, w))
    for k in range(n):
        padded = np.zeros((S, S))
        padded[padding:padding + M, padding:padding + M] = masks[k, 0].double().numpy()
        # expanded box in float32 as torchvision computes it, then truncated
        b = boxes[k].float()
        scale = float(S) / M
        cx, cy = (b[2] + b[0]) * 0.5, (b[3] + b[1]) * 0.5
        hw, hh = (b[2] - b[0]) * 0.5 * scale, (b[3] - b[1]) * 0.5 * scale
        x1, y1, x2, y2 = (int(v) for v in torch.stack([cx - hw, cy - hh, cx + hw, cy + hh]).tolist())
        bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)

        def source(i: int, size: int, out_size: int) -> tuple[int, int, float]:
            s = max((i + 0.5) * size / out_size - 0.5, 0.0)
            i0 = min(int(math.floor(s)), size - 1)
            i1 = min(i0 + 1, size - 1)
            return i0, i1, s - i0

        for y in range(max(y1, 0), min(y1 + bh, h)):
            r0, r1, ly = source(y - y1, S, bh)
            for x in range(max(x1, 0), min(x1 + bw, w)):
                c0, c1, lx = source(x - x1, S, bw)
                out[k, y, x] = ((1 - ly) * ((1 - lx) * padded[r0, c0] + lx * padded[r0, c1])
                                + ly * ((1 - lx) * padded[r1, c0] + lx * padded[r1, c1]))
    return out


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(0, 5), M=st.integers(1, 28), padding=st.integers(0, 3),
       h=st.integers(1, 48), w=st.integers(1, 48))
def test_paste_masks_in_image_equals_torchvision_and_float64_loop(seed, n, M, padding, h, w):
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(n, 1, M, M, generator=gen)
    boxes = overlapping_boxes(gen, n, h, w)
    got = paste_masks_in_image(masks, boxes, (h, w), padding=padding)
    expected = tv_roi_heads.paste_masks_in_image(masks, boxes, (h, w), padding=padding)
    assert got.shape == (n, 1, h, w)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    np.testing.assert_allclose(got[:, 0].double().numpy(), paste_float64(masks, boxes, h, w, padding),
                               rtol=1e-5, atol=1e-6)


def test_paste_the_padding_fades_the_border_to_zero():
    # a mask of all ones in the box (10, 10, 50, 40). Without padding: a hard step, 1 on the integer
    # box's pixels 10..50 and 0 elsewhere. With padding: the box grows by 30/28 to pixels 8..51 and
    # the values fall from 1 to 0 across its border (one in-between value on each side here).
    masks = torch.ones(1, 1, 28, 28)
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0]])
    padded = paste_masks_in_image(masks, boxes, (64, 64), padding=1)[0, 0]
    plain = paste_masks_in_image(masks, boxes, (64, 64), padding=0)[0, 0]
    row_plain, row_padded = plain[25], padded[25]
    assert torch.all((row_plain[10:51] - 1).abs() < 1e-6) and float(row_plain[:10].abs().max()) == 0
    assert float(row_plain[51:].abs().max()) == 0
    between = ((row_padded > 0.01) & (row_padded < 0.99)).nonzero().flatten().tolist()
    assert between == [9, 50]
    assert float(row_padded[:9].abs().max()) == 0 and float(row_padded[51:].abs().max()) == 0
    assert torch.all((row_padded[10:50] - 1).abs() < 1e-6)


def test_paste_box_outside_the_image_gives_an_empty_mask():
    # torchvision raises here (negative slice ends wrap around); ours returns zeros
    masks = torch.rand(2, 1, 28, 28)
    boxes = torch.tensor([[-30.0, 5.0, -10.0, 20.0], [100.0, 5.0, 140.0, 20.0]])
    out = paste_masks_in_image(masks, boxes, (32, 64))
    assert out.shape == (2, 1, 32, 64) and float(out.abs().max()) == 0.0


def test_expand_boxes_and_masks_equal_torchvision():
    gen = torch.Generator().manual_seed(5)
    boxes = random_boxes(gen, 20, 50, 60)
    torch.testing.assert_close(expand_boxes(boxes, 30 / 28), tv_roi_heads.expand_boxes(boxes, 30 / 28),
                               rtol=0, atol=0)
    masks = torch.rand(3, 1, 28, 28, generator=gen)
    padded, scale = expand_masks(masks, 1)
    tv_padded, tv_scale = tv_roi_heads.expand_masks(masks, 1)
    assert scale == tv_scale == 30 / 28
    torch.testing.assert_close(padded, tv_padded, rtol=0, atol=0)
    one = paste_mask_in_image(padded[0, 0], torch.tensor([3, 4, 20, 30]), 40, 40)
    torch.testing.assert_close(one, tv_roi_heads.paste_mask_in_image(padded[0, 0], torch.tensor([3, 4, 20, 30]),
                                                                      40, 40), rtol=0, atol=0)


def test_paste_errors():
    masks = torch.rand(2, 1, 28, 28)
    boxes = torch.tensor([[1.0, 1.0, 10.0, 10.0], [2.0, 2.0, 8.0, 9.0]])
    with pytest.raises(ValueError, match=r"masks must have shape \[N, 1, M, M\]"):
        paste_masks_in_image(masks[:, :, :, :27], boxes, (32, 32))
    with pytest.raises(ValueError, match=r"masks must be a Tensor\[N, 1, M, M\]"):
        paste_masks_in_image(masks[:, 0], boxes, (32, 32))
    with pytest.raises(TypeError, match="masks must be a floating-point"):
        paste_masks_in_image(masks.to(torch.uint8), boxes, (32, 32))
    with pytest.raises(ValueError, match="boxes must hold 2 boxes"):
        paste_masks_in_image(masks, boxes[:1], (32, 32))
    with pytest.raises(ValueError, match="boxes must hold finite numbers"):
        paste_masks_in_image(masks, boxes * float("nan"), (32, 32))
    with pytest.raises(ValueError, match="img_shape must be a pair of positive ints"):
        paste_masks_in_image(masks, boxes, (32,))
    with pytest.raises(ValueError, match="img_shape must be a pair of positive ints"):
        paste_masks_in_image(masks, boxes, (32.0, 32))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        paste_masks_in_image(masks, boxes, (32, 32), padding=-1)
    with pytest.raises(TypeError, match="padding must be an int"):
        paste_masks_in_image(masks, boxes, (32, 32), padding=1.0)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        expand_boxes(boxes, 0.0)


# -- 6. the whole RoI-head loss of a real training step, recomputed from captured tensors --------------

@pytest.fixture(scope="module")
def small_maskrcnn():
    torch.manual_seed(0)
    return maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=4, min_size=96, max_size=96,
        rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=60,
        rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=60, box_batch_size_per_image=32)


def capture_training_step(model, images, targets, seed):
    """Run one training forward with hooks; replay the sampler; return (loss dict, record, samples)."""
    record = {}
    rh = model.roi_heads
    hooks = [
        rh.register_forward_pre_hook(lambda m, args: record.update(inputs=args, rng=torch.get_rng_state())),
        rh.box_roi_pool.register_forward_hook(lambda m, args, out: record.update(box_proposals=args[1])),
        rh.box_predictor.register_forward_hook(lambda m, args, out: record.update(box_out=out)),
        rh.mask_roi_pool.register_forward_hook(lambda m, args, out: record.update(mask_proposals=args[1])),
        rh.mask_predictor.register_forward_hook(lambda m, args, out: record.update(mask_logits=out)),
    ]
    model.train()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            losses = model(images, targets)
    finally:
        for hook in hooks:
            hook.remove()
    _, proposals, _, targets_in = record["inputs"]
    state = torch.get_rng_state()
    torch.set_rng_state(record["rng"])
    samples = rh.select_training_samples(list(proposals), targets_in)
    torch.set_rng_state(state)
    return losses, record, samples


def shapes_batch(seed: int, indices, size: int = 96, min_shapes: int = 1):
    from helpers.shapes import ShapesDataset, collate_fn

    dataset = ShapesDataset(max(indices) + 1, seed=seed, size=size, min_shapes=min_shapes, max_shapes=3)
    images, targets = collate_fn([dataset[i] for i in indices])
    return list(images), [dict(t) for t in targets]


def empty_target(size: int = 96):
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, size, size, dtype=torch.uint8)}


@pytest.mark.parametrize("case", ["objects", "one image without objects", "no objects at all"])
def test_roi_head_losses_of_a_training_step_equal_torchvision(small_maskrcnn, case):
    model = small_maskrcnn
    images, targets = shapes_batch(seed=3, indices=[0, 1])
    if case == "one image without objects":
        targets[1] = empty_target()
    elif case == "no objects at all":
        targets = [empty_target(), empty_target()]
    losses, record, (sampled, matched_idxs, labels, regression_targets) = capture_training_step(
        model, images, targets, seed=1)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.equal(a, b) for a, b in zip(sampled, record["box_proposals"]))  # the replay is faithful
    class_logits, box_regression = record["box_out"]
    K = class_logits.shape[1]
    # L_cls and L_box written out (notebook 06's definitions)
    all_labels, all_targets = torch.cat(labels), torch.cat(regression_targets)
    l_cls = F.cross_entropy(class_logits, all_labels)
    pos = torch.where(all_labels > 0)[0]
    l_box = F.smooth_l1_loss(box_regression.reshape(-1, K, 4)[pos, all_labels[pos]], all_targets[pos],
                             beta=1 / 9, reduction="sum") / all_labels.numel()
    torch.testing.assert_close(l_cls, losses["loss_classifier"])
    torch.testing.assert_close(l_box, losses["loss_box_reg"])
    try:  # the box head's helper, when that module exists
        from helpers.box_head import fastrcnn_loss
    except ImportError:  # pragma: no cover - written by another notebook of the series
        fastrcnn_loss = None
    if fastrcnn_loss is not None:
        ours_cls, ours_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        torch.testing.assert_close(ours_cls, losses["loss_classifier"])
        torch.testing.assert_close(ours_box, losses["loss_box_reg"])
    # L_mask with helpers.mask_head
    positives = [torch.where(lab > 0)[0] for lab in labels]
    mask_proposals = [p[i] for p, i in zip(sampled, positives)]
    assert all(torch.equal(a, b) for a, b in zip(mask_proposals, record["mask_proposals"]))
    _, _, _, targets_in = record["inputs"]
    l_mask = maskrcnn_loss(record["mask_logits"], mask_proposals, [t["masks"] for t in targets_in],
                           [t["labels"] for t in targets_in], [m[i] for m, i in zip(matched_idxs, positives)])
    torch.testing.assert_close(l_mask, losses["loss_mask"])
    n_pos = sum(len(i) for i in positives)
    if case == "no objects at all":
        assert n_pos == 0 and float(l_mask) == 0.0
    else:
        assert n_pos > 0 and float(l_mask) > 0


def test_model_output_masks_equal_pasted_inference(small_maskrcnn):
    model = small_maskrcnn
    images, _ = shapes_batch(seed=4, indices=[0, 1])
    seen = {}
    hook = model.roi_heads.mask_predictor.register_forward_hook(lambda m, a, out: seen.update(mask_logits=out))
    model.eval()
    try:
        with torch.no_grad():
            detections = model(images)
    finally:
        hook.remove()
    probs = maskrcnn_inference(seen["mask_logits"], [d["labels"] for d in detections])
    assert sum(len(d["boxes"]) for d in detections) > 0
    for d, p, img in zip(detections, probs, images):
        torch.testing.assert_close(paste_masks_in_image(p, d["boxes"], tuple(img.shape[-2:])), d["masks"],
                                   rtol=0, atol=0)


# -- 7. the drawing helpers of notebook 07 (helpers.viz) -----------------------------------------------

def test_draw_mask_targets_draws_the_boxes_and_targets():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.viz import draw_mask_targets

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 50, generator=gen)
    mask = torch.zeros(40, 50)
    mask[10:20, 12:30] = 1
    boxes = torch.tensor([[12.0, 10.0, 30.0, 20.0], [8.0, 6.0, 34.0, 24.0]])
    targets = project_masks_on_boxes(mask[None], boxes, torch.tensor([0, 0]), 14)
    out = draw_mask_targets(image, mask, boxes, targets)
    assert [r.get_xy() for r in out["boxes"]] == [(12.0, 10.0), (8.0, 6.0)]
    assert [(r.get_width(), r.get_height()) for r in out["boxes"]] == [(18.0, 10.0), (26.0, 18.0)]
    for shown, t in zip(out["targets"], targets):
        np.testing.assert_allclose(np.asarray(shown.get_array()), t.numpy(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="targets must be"):
        draw_mask_targets(image, mask, boxes, targets[:1])
    plt.close("all")


def test_draw_paste_steps_and_profiles_follow_the_data():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.viz import draw_class_competition, draw_paste_profiles, draw_paste_steps

    gen = torch.Generator().manual_seed(1)
    prob = torch.rand(1, 1, 28, 28, generator=gen)
    box = torch.tensor([[5.3, 7.1, 40.2, 30.9]])
    padded, scale = expand_masks(prob, 1)
    expanded = expand_boxes(box, scale)
    int_box = expanded.to(torch.int64)
    pasted = paste_masks_in_image(prob, box, (48, 64))
    out = draw_paste_steps(prob[0, 0], padded[0, 0], box[0], expanded[0], int_box[0], pasted[0, 0],
                           torch.rand(3, 48, 64, generator=gen))
    np.testing.assert_allclose(np.asarray(out["pasted"].get_array()), pasted[0, 0].numpy())
    assert out["boxes"][0].get_xy() == pytest.approx((5.3, 7.1))
    x1, y1, x2, y2 = int_box[0].tolist()
    assert out["boxes"][2].get_xy() == (x1 - 0.5, y1 - 0.5)
    assert out["boxes"][2].get_width() == x2 - x1 + 1
    lines = draw_paste_profiles({"a": pasted[0, 0, 20, 0:30]}, start=0, box=box[0])
    np.testing.assert_allclose(lines["a"].get_ydata(), pasted[0, 0, 20, 0:30].numpy())
    np.testing.assert_array_equal(lines["a"].get_xdata(), np.arange(30))
    images = draw_class_competition({"a": torch.ones(4, 4)}, {"sigmoid": {"a": torch.full((4, 4), 0.25)}})
    np.testing.assert_allclose(np.asarray(images[("sigmoid", "a")].get_array()), 0.25)
    with pytest.raises(ValueError, match="axes must hold 4 axes"):
        draw_paste_steps(prob[0, 0], padded[0, 0], box[0], expanded[0], int_box[0], pasted[0, 0],
                         torch.rand(3, 48, 64), axes=[plt.gca()])
    plt.close("all")

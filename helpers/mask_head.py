"""The mask branch of Mask R-CNN: the head, its targets, its loss, and pasting masks into the image.

Written in the open in ``notebooks/07_mask_head.ipynb`` and checked there (and in
``tests/test_mask_head.py``) to give the numbers of torchvision's mask branch
(``torchvision.models.detection.mask_rcnn.MaskRCNNHeads`` and ``MaskRCNNPredictor``, and
``maskrcnn_loss``, ``maskrcnn_inference`` and ``paste_masks_in_image`` of
``torchvision.models.detection.roi_heads``). Names and signatures mirror torchvision's.

The pieces, in the order a training step and an inference step meet them:

1. :class:`MaskHead`: ``Tensor[R, 256, 14, 14]`` RoIAlign features -> four 3x3 convolutions
   (padding 1) with ReLU -> one 2x2 transposed convolution, stride 2 (14 -> 28), with ReLU ->
   a 1x1 convolution to ``K`` mask logits ``Tensor[R, K, 28, 28]``, one mask per class.
2. :func:`project_masks_on_boxes`: each ground-truth mask cropped to its proposal and resampled
   to ``M x M`` by RoIAlign (``spatial_scale=1``, legacy ``aligned=False``): the training target.
   It is *soft*: border cells hold fractions between 0 and 1.
3. :func:`maskrcnn_loss`: binary cross-entropy between the sigmoid of the **ground-truth class's
   channel only** and the target, *averaged* over every pixel of every positive RoI.
4. :func:`maskrcnn_inference`: the sigmoid of the **predicted class's** channel.
5. :func:`paste_masks_in_image`: each ``M x M`` probability map padded by one cell of zeros, its box
   scaled by ``(M + 2) / M`` about its centre and truncated to integers, the padded map resized
   bilinearly (``align_corners=False``) to the box's size + 1 and pasted; threshold it at 0.5
   for a binary mask.

Conventions: boxes are ``(x1, y1, x2, y2)`` in pixels of the image, ``x`` to the right, ``y``
**downwards**; RoIAlign reads pixel ``(x, y)``'s value at the integer point ``(x, y)`` (its centre).
Labels are ints with 0 the background; mask channel ``k`` belongs to class ``k``.
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.checks import check_boxes, check_indices, check_int, check_list, check_tensor
from helpers.roi import roi_align

__all__ = [
    "MaskHead",
    "check_project_args",
    "project_masks_on_boxes",
    "maskrcnn_loss",
    "maskrcnn_inference",
    "expand_boxes",
    "expand_masks",
    "paste_mask_in_image",
    "paste_masks_in_image",
]


# -- 1. the head -----------------------------------------------------------------------------------

class MaskHead(nn.Module):
    """The mask head of Mask R-CNN (the FPN version): a small fully convolutional network per RoI.

    ``Tensor[R, C, 14, 14]`` RoIAlign features go through ``len(layers)`` 3x3 convolutions
    (padding 1, each followed by ReLU), a 2x2 transposed convolution with stride 2 that doubles
    the side (14 -> 28) followed by ReLU, and a 1x1 convolution to one mask logit per class:
    ``Tensor[R, K, 28, 28]``. The layer names are Detectron's, as in torchvision
    (``mask_fcn1..4``, ``conv5_mask``, ``mask_fcn_logits``), so state dicts line up.

    torchvision splits the same network in two modules, ``MaskRCNNHeads`` (the 3x3 convolutions)
    and ``MaskRCNNPredictor`` (the transposed convolution and the logits);
    :meth:`from_torchvision` copies their weights.

    Args:
        num_classes: ``K``, the number of classes *including* the background (channel 0 is
            computed but never read: the loss and inference take the channel of a real class).
        in_channels: channels of the RoI features (256 for an FPN backbone).
        layers: output channels of each 3x3 convolution (torchvision: ``(256, 256, 256, 256)``).
        dim_reduced: output channels of the transposed convolution (torchvision: 256).

    Initialisation mirrors torchvision: every weight Kaiming-normal (``mode="fan_out"``, ReLU);
    the biases of the 3x3 convolutions zero, the other biases PyTorch's default.
    """

    def __init__(self, num_classes: int, in_channels: int = 256,
                 layers: Sequence[int] = (256, 256, 256, 256), dim_reduced: int = 256) -> None:
        super().__init__()
        num_classes = check_int(num_classes, "num_classes", minimum=1)
        in_channels = check_int(in_channels, "in_channels", minimum=1)
        dim_reduced = check_int(dim_reduced, "dim_reduced", minimum=1)
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) == 0:
            raise TypeError(f"layers must be a non-empty sequence of ints (channels per 3x3 conv), got {layers!r}")
        layers = [check_int(c, "layers[i]", minimum=1) for c in layers]
        self.num_classes, self.in_channels = num_classes, in_channels
        # built and initialised in torchvision's order (its MaskRCNNHeads, then its MaskRCNNPredictor), so
        # that after the same torch.manual_seed both draw the same random weights
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        previous = in_channels
        for i, channels in enumerate(layers, start=1):
            blocks[f"mask_fcn{i}"] = nn.Conv2d(previous, channels, kernel_size=3, stride=1, padding=1)
            blocks[f"relu{i}"] = nn.ReLU()
            previous = channels
        for module in blocks.values():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        blocks["conv5_mask"] = nn.ConvTranspose2d(previous, dim_reduced, kernel_size=2, stride=2, padding=0)
        blocks["relu5"] = nn.ReLU()
        blocks["mask_fcn_logits"] = nn.Conv2d(dim_reduced, num_classes, kernel_size=1, stride=1, padding=0)
        for name in ("conv5_mask", "mask_fcn_logits"):  # weights only; the biases keep PyTorch's default
            nn.init.kaiming_normal_(blocks[name].weight, mode="fan_out", nonlinearity="relu")
        self.layers = nn.Sequential(blocks)

    def _check_input(self, x: Any) -> Tensor:
        x = check_tensor(x, "x", 4, shape="[R, C, H, W]", floating=True)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (in_channels), got shape {tuple(x.shape)}")
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Mask logits for every RoI and every class.

        Args:
            x (Tensor[R, C, H, W]): RoIAlign features, ``C = in_channels`` (``H = W = 14`` in Mask R-CNN).

        Returns:
            Tensor[R, K, 2H, 2W]: mask logits (apply a sigmoid for probabilities).
        """
        return self.layers(self._check_input(x))

    def layer_outputs(self, x: Tensor) -> list[tuple[str, Tensor]]:
        """Run the head one layer at a time and keep every intermediate result.

        Args:
            x (Tensor[R, C, H, W]): RoIAlign features.

        Returns:
            ``[(layer name, Tensor after that layer), ...]``, starting with ``("input", x)``; the
            last entry equals :meth:`forward`'s result.
        """
        out = [("input", self._check_input(x))]
        for name, module in self.layers.named_children():
            x = module(x)
            out.append((name, x))
        return out

    @classmethod
    def from_torchvision(cls, mask_head: nn.Module, mask_predictor: nn.Module) -> "MaskHead":
        """A :class:`MaskHead` holding copies of the weights of torchvision's two mask modules.

        Args:
            mask_head: a ``torchvision.models.detection.mask_rcnn.MaskRCNNHeads`` without
                normalisation layers and with dilation 1 (``maskrcnn_resnet50_fpn``'s
                ``model.roi_heads.mask_head``).
            mask_predictor: a ``MaskRCNNPredictor`` (``model.roi_heads.mask_predictor``).

        Returns:
            A new :class:`MaskHead`; its output equals ``mask_predictor(mask_head(x))``.
        """
        if not isinstance(mask_head, nn.Sequential):
            raise TypeError(f"mask_head must be torchvision's MaskRCNNHeads (an nn.Sequential), "
                            f"got {type(mask_head).__name__}")
        if not isinstance(mask_predictor, nn.Sequential):
            raise TypeError(f"mask_predictor must be torchvision's MaskRCNNPredictor (an nn.Sequential), "
                            f"got {type(mask_predictor).__name__}")
        convs = []
        for i, block in enumerate(mask_head):
            modules = list(block) if isinstance(block, nn.Sequential) else [block]
            conv = modules[0] if modules else None
            if len(modules) != 2 or not isinstance(modules[1], nn.ReLU):
                raise ValueError(f"mask_head[{i}] must be Conv2d + ReLU with no normalisation layer "
                                 f"(the maskrcnn_resnet50_fpn head; the _v2 head has BatchNorm), got {block}")
            if (not isinstance(conv, nn.Conv2d) or conv.kernel_size != (3, 3) or conv.stride != (1, 1)
                    or conv.padding != (1, 1) or conv.dilation != (1, 1) or conv.bias is None):
                raise ValueError(f"mask_head[{i}] must start with a 3x3 Conv2d with bias, stride 1, padding 1 "
                                 f"and dilation 1 (MaskRCNNHeads(in_channels, layers, dilation=1)), got {conv}")
            convs.append(conv)
        if not convs:
            raise ValueError("mask_head must hold at least one 3x3 convolution block")
        names = [name for name, _ in mask_predictor.named_children()]
        if names != ["conv5_mask", "relu", "mask_fcn_logits"]:
            raise ValueError(f"mask_predictor must be torchvision's MaskRCNNPredictor with children "
                             f"conv5_mask, relu, mask_fcn_logits; got {names}")
        deconv, logits = mask_predictor.conv5_mask, mask_predictor.mask_fcn_logits
        if not isinstance(deconv, nn.ConvTranspose2d) or not isinstance(logits, nn.Conv2d):
            raise ValueError("mask_predictor.conv5_mask must be a ConvTranspose2d and "
                             "mask_predictor.mask_fcn_logits a Conv2d")
        if deconv.in_channels != convs[-1].out_channels:
            raise ValueError(f"mask_predictor.conv5_mask expects {deconv.in_channels} channels but the last "
                             f"conv of mask_head gives {convs[-1].out_channels}")
        head = cls(num_classes=logits.out_channels, in_channels=convs[0].in_channels,
                   layers=[c.out_channels for c in convs], dim_reduced=deconv.out_channels)
        head = head.to(device=convs[0].weight.device, dtype=convs[0].weight.dtype)
        with torch.no_grad():
            for i, conv in enumerate(convs, start=1):
                getattr(head.layers, f"mask_fcn{i}").weight.copy_(conv.weight)
                getattr(head.layers, f"mask_fcn{i}").bias.copy_(conv.bias)
            head.layers.conv5_mask.weight.copy_(deconv.weight)
            head.layers.conv5_mask.bias.copy_(deconv.bias)
            head.layers.mask_fcn_logits.weight.copy_(logits.weight)
            head.layers.mask_fcn_logits.bias.copy_(logits.bias)
        return head


# -- 2. targets ------------------------------------------------------------------------------------

def check_project_args(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, M: int
                       ) -> tuple[Tensor, Tensor, Tensor, int]:
    """The argument checks of :func:`project_masks_on_boxes`, in one call.

    Checks, in this order: ``gt_masks`` is a ``Tensor[G, H, W]``; ``boxes`` a floating-point
    ``Tensor[P, 4]`` of finite boxes with ``x2 >= x1``, ``y2 >= y1``; ``matched_idxs`` an integer
    ``Tensor[P]`` (one per box) of indices in ``[0, G)``; ``M`` an int ``>= 1``. Raises
    ``TypeError`` / ``ValueError`` naming the argument.

    Returns:
        ``(gt_masks, boxes, matched_idxs, M)``, as :func:`helpers.checks.check_indices` and
        :func:`helpers.checks.check_int` return them.
    """
    gt_masks = check_tensor(gt_masks, "gt_masks", 3, shape="[G, H, W]")
    boxes = check_boxes(boxes, "boxes", finite=True, ordered=True)
    matched_idxs = check_indices(matched_idxs, "matched_idxs", len(gt_masks), length=len(boxes), per="box",
                                 of="gt_masks")
    M = check_int(M, "M", minimum=1)
    return gt_masks, boxes, matched_idxs, M


# @export notebooks/07_mask_head.ipynb: project_masks_on_boxes (edit the notebook; tools/nb.py export writes this)
def project_masks_on_boxes(gt_masks, boxes, matched_idxs, M):
    """The mask targets: each proposal's matched ground-truth mask, cropped to the proposal and resampled to
    M x M by RoIAlign (spatial_scale 1, adaptive sampling, legacy aligned=False), torchvision's recipe.
    gt_masks[G, H, W], boxes[P, 4], matched_idxs[P] in [0, G) -> soft targets [P, M, M] in boxes.dtype."""
    gt_masks, boxes, matched_idxs, M = check_project_args(gt_masks, boxes, matched_idxs, M)
    rois = torch.cat([matched_idxs[:, None].to(boxes), boxes], dim=1)  # [P, 5]: (mask index, x1, y1, x2, y2)
    masks = gt_masks[:, None].to(boxes)                                 # [G, 1, H, W]: a batch of G images
    return roi_align(masks, rois, (M, M), spatial_scale=1.0, sampling_ratio=-1, aligned=False)[:, 0]  # [P, M, M]
# @end export project_masks_on_boxes


# -- 3. the loss -----------------------------------------------------------------------------------

def maskrcnn_loss(mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor],
                  gt_labels: list[Tensor], mask_matched_idxs: list[Tensor]) -> Tensor:
    """The mask loss: per-pixel binary cross-entropy on the ground-truth class's channel, averaged.

    For positive proposal ``r`` matched to ground truth ``g`` of class ``k``, only channel ``k`` of
    ``mask_logits[r]`` enters the loss; the other ``K - 1`` channels get no gradient. The mean is
    over all ``P * M * M`` pixels (not a sum, whatever some notes say). With no positive
    proposal at all the loss is ``mask_logits.sum() * 0`` (a zero that keeps the graph), as in
    torchvision. The targets come from :func:`project_masks_on_boxes`, in one call for the whole
    batch when its images share a size (fewer, larger operations than one call per image).

    Args:
        mask_logits (Tensor[P, K, M, M]): the head's logits for the ``P`` positive proposals of the
            whole batch, image after image.
        proposals (list[Tensor[P_i, 4]]): the positive proposals of each image, ``sum P_i = P``.
        gt_masks (list[Tensor[G_i, H, W]]): each image's ground-truth masks.
        gt_labels (list[Tensor[G_i]]): each image's ground-truth classes, in ``[1, K)``.
        mask_matched_idxs (list[Tensor[P_i]]): the ground truth each proposal is matched to.

    Returns:
        Tensor[]: the scalar loss.
    """
    mask_logits = check_tensor(mask_logits, "mask_logits", 4, shape="[P, K, M, M]", floating=True)
    if mask_logits.shape[-1] != mask_logits.shape[-2]:
        raise ValueError(f"mask_logits must hold square M x M masks, got shape {tuple(mask_logits.shape)}")
    lists = {name: check_list(value, name, Tensor, what="a list of Tensors (one per image)") for name, value in
             [("proposals", proposals), ("gt_masks", gt_masks), ("gt_labels", gt_labels),
              ("mask_matched_idxs", mask_matched_idxs)]}
    lengths = {name: len(value) for name, value in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"proposals, gt_masks, gt_labels and mask_matched_idxs must have one entry per image; "
                         f"got lengths {lengths}")
    num_pos = sum(int(p.shape[0]) if p.dim() >= 1 else 0 for p in lists["proposals"])
    if num_pos != mask_logits.shape[0]:
        raise ValueError(f"mask_logits must hold one row per positive proposal: {num_pos} proposals in all, "
                         f"mask_logits has {mask_logits.shape[0]}")
    M, K = mask_logits.shape[-1], mask_logits.shape[1]
    labels, targets = [], []
    for i, (masks, boxes, labels_i, idxs) in enumerate(zip(lists["gt_masks"], lists["proposals"],
                                                          lists["gt_labels"], lists["mask_matched_idxs"])):
        check_boxes(boxes, f"proposals[{i}]", finite=True, ordered=True)
        check_tensor(labels_i, f"gt_labels[{i}]", 1, shape="[G]", floating=False)
        check_tensor(masks, f"gt_masks[{i}]", 3, shape="[G, H, W]")
        if masks.shape[0] != labels_i.shape[0]:
            raise ValueError(f"gt_masks[{i}] and gt_labels[{i}] must describe the same objects: "
                             f"{masks.shape[0]} masks, {labels_i.shape[0]} labels")
        check_tensor(idxs, f"mask_matched_idxs[{i}]", 1, shape="[P_i]", floating=False)
        if idxs.shape[0] != boxes.shape[0]:
            raise ValueError(f"mask_matched_idxs[{i}] must hold one index per proposal: "
                             f"{boxes.shape[0]} proposals, {idxs.shape[0]} indices")
        if boxes.shape[0] == 0:
            continue
        if int(idxs.min()) < 0 or int(idxs.max()) >= masks.shape[0]:
            raise ValueError(f"mask_matched_idxs[{i}] must lie in [0, {masks.shape[0]}), got values from "
                             f"{int(idxs.min())} to {int(idxs.max())}")
        labels_pos = labels_i[idxs]  # [P_i]: the class of each proposal's ground truth
        if int(labels_pos.min()) < 0 or int(labels_pos.max()) >= K:
            raise ValueError(f"gt_labels[{i}] must lie in [0, {K}) (mask_logits has {K} channels), "
                             f"got {labels_pos.tolist()}")
        labels.append(labels_pos)
        targets.append((masks, boxes, idxs))
    if not targets:  # no positive proposal: BCE's mean of nothing would be nan
        return mask_logits.sum() * 0
    labels_all = torch.cat(labels)  # [P]
    if len({tuple(masks.shape[1:]) for masks, _, _ in targets}) == 1:
        # images of one size: one RoIAlign over all their masks (the indices shifted to the stacked masks)
        offsets = torch.tensor([0] + [len(masks) for masks, _, _ in targets[:-1]]).cumsum(0).tolist()
        targets_all = project_masks_on_boxes(torch.cat([masks for masks, _, _ in targets]),
                                             torch.cat([boxes for _, boxes, _ in targets]),
                                             torch.cat([idxs + o for (_, _, idxs), o in zip(targets, offsets)]), M)
    else:
        targets_all = torch.cat([project_masks_on_boxes(masks, boxes, idxs, M) for masks, boxes, idxs in targets])
    targets_all = targets_all.to(mask_logits)  # [P, M, M]
    rows = torch.arange(labels_all.shape[0], device=labels_all.device)
    logits = mask_logits[rows, labels_all]  # [P, M, M]: the ground-truth class's channel only
    return F.binary_cross_entropy_with_logits(logits, targets_all)  # mean over P * M * M pixels


# -- 4. inference ----------------------------------------------------------------------------------

def maskrcnn_inference(x: Tensor, labels: list[Tensor]) -> list[Tensor]:
    """Mask probabilities: the sigmoid of the channel of each detection's predicted class.

    Args:
        x (Tensor[D, K, M, M]): mask logits for the ``D`` detections of the batch.
        labels (list[Tensor[D_i]]): each image's predicted classes, ``sum D_i = D``.

    Returns:
        list[Tensor[D_i, 1, M, M]]: probabilities in ``[0, 1]``, one tensor per image.
    """
    x = check_tensor(x, "x", 4, shape="[D, K, M, M]", floating=True)
    labels = check_list(labels, "labels", Tensor, what="a list of Tensors (one per image)")
    for i, labels_i in enumerate(labels):
        check_tensor(labels_i, f"labels[{i}]", 1, shape="[D_i]", floating=False)
        if labels_i.numel() and (int(labels_i.min()) < 0 or int(labels_i.max()) >= x.shape[1]):
            raise ValueError(f"labels[{i}] must lie in [0, {x.shape[1]}) (x has {x.shape[1]} channels)")
    counts = [int(labels_i.shape[0]) for labels_i in labels]
    if sum(counts) != x.shape[0]:
        raise ValueError(f"labels must hold one class per row of x: {sum(counts)} labels, {x.shape[0]} rows")
    prob = x.sigmoid()  # [D, K, M, M]
    flat = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64, device=x.device)
    prob = prob[torch.arange(x.shape[0], device=x.device), flat][:, None]  # [D, 1, M, M]
    return list(prob.split(counts, dim=0))


# -- 5. back into the image ------------------------------------------------------------------------

def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    """Scale boxes about their centres by ``scale`` (same float arithmetic as torchvision's).

    Args:
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)``.
        scale: the factor (``(M + 2 * padding) / M`` when pasting).

    Returns:
        Tensor[N, 4]: the scaled boxes, same dtype.
    """
    boxes = check_boxes(boxes, "boxes", finite=True, ordered=True)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    w_half = w_half * scale
    h_half = h_half * scale
    return torch.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)


def expand_masks(mask: Tensor, padding: int) -> tuple[Tensor, float]:
    """Pad ``M x M`` masks with ``padding`` cells of zeros on every side.

    Args:
        mask (Tensor[N, 1, M, M]): mask probabilities.
        padding: cells added on each side.

    Returns:
        ``(Tensor[N, 1, M + 2p, M + 2p], scale)`` with ``scale = (M + 2p) / M``: the factor by which
        the box must grow so that each cell keeps its size in the image.
    """
    mask = check_tensor(mask, "mask", 4, shape="[N, 1, M, M]")
    padding = check_int(padding, "padding", minimum=0)
    M = mask.shape[-1]
    scale = float(M + 2 * padding) / M
    return F.pad(mask, (padding,) * 4), scale


def paste_mask_in_image(mask: Tensor, box: Tensor, im_h: int, im_w: int) -> Tensor:
    """Resize one (padded) mask to its integer box and paste it into an empty image.

    The box covers pixels ``x1 .. x2`` and ``y1 .. y2`` *inclusive*, so the mask is resized to
    ``(y2 - y1 + 1, x2 - x1 + 1)`` (at least 1 x 1) by bilinear interpolation with
    ``align_corners=False``, then the part inside the image is copied in.

    Args:
        mask (Tensor[S, S]): one mask (already padded by :func:`expand_masks`).
        box (Tensor[4]): integer ``(x1, y1, x2, y2)`` (already expanded and truncated).
        im_h, im_w: the image size.

    Returns:
        Tensor[im_h, im_w]: zero outside the box.
    """
    x1, y1, x2, y2 = (int(v) for v in box.tolist())
    w = max(x2 - x1 + 1, 1)
    h = max(y2 - y1 + 1, 1)
    resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]  # [h, w]
    im_mask = torch.zeros((im_h, im_w), dtype=mask.dtype, device=mask.device)
    x_0, x_1 = max(x1, 0), min(x2 + 1, im_w)  # the part of the box inside the image
    y_0, y_1 = max(y1, 0), min(y2 + 1, im_h)
    if x_1 > x_0 and y_1 > y_0:
        im_mask[y_0:y_1, x_0:x_1] = resized[y_0 - y1:y_1 - y1, x_0 - x1:x_1 - x1]
    return im_mask


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape: tuple[int, int], padding: int = 1) -> Tensor:
    """Paste ``M x M`` mask probabilities into the image, box by box (torchvision's recipe).

    1. pad each mask by ``padding`` cells of zeros: ``(M + 2p) x (M + 2p)``;
    2. scale each box by ``(M + 2p) / M`` about its centre, so the padding lands just outside the
       box and each cell keeps its size; convert to int64 (truncation toward zero, not floor);
    3. resize the padded mask bilinearly (``align_corners=False``) to the integer box's size + 1
       (its ends are inclusive) and copy the part inside the image.

    Without the padding, bilinear interpolation would *clamp* at the mask's border and the object
    would end in a hard step at the box edge; with it, the probability fades to 0 across the box edge.

    Args:
        masks (Tensor[N, 1, M, M]): mask probabilities (``maskrcnn_inference``'s output, concatenated).
        boxes (Tensor[N, 4]): ``(x1, y1, x2, y2)`` in image pixels, floating point.
        img_shape: ``(H, W)`` of the image.
        padding: cells of zeros around each mask (torchvision: 1).

    Returns:
        Tensor[N, 1, H, W]: the pasted probabilities; threshold at 0.5 for binary masks.
    """
    masks = check_tensor(masks, "masks", 4, shape="[N, 1, M, M]", floating=True)
    if masks.shape[1] != 1 or masks.shape[2] != masks.shape[3] or masks.shape[3] == 0:
        raise ValueError(f"masks must have shape [N, 1, M, M] (one square mask per box), got {tuple(masks.shape)}")
    boxes = check_boxes(boxes, "boxes", n=masks.shape[0], finite=True, ordered=True)
    if (isinstance(img_shape, (str, bytes)) or not isinstance(img_shape, Sequence) or len(img_shape) != 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in img_shape)):
        raise ValueError(f"img_shape must be a pair of positive ints (H, W), got {img_shape!r}")
    padding = check_int(padding, "padding", minimum=0)
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    padded, scale = expand_masks(masks, padding)  # [N, 1, M + 2p, M + 2p]
    int_boxes = expand_boxes(boxes, scale).to(dtype=torch.int64)  # [N, 4], truncated toward zero
    pasted = [paste_mask_in_image(m[0], b, im_h, im_w) for m, b in zip(padded, int_boxes)]
    if not pasted:
        return masks.new_empty((0, 1, im_h, im_w))
    return torch.stack(pasted, dim=0)[:, None]  # [N, 1, H, W]

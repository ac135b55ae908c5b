"""Mask R-CNN made only of the series' own pieces: :class:`SeriesMaskRCNN`.

:func:`helpers.model.build_model` assembles torchvision's ``MaskRCNN`` around a small backbone. This
module assembles the *same network* from the functions the notebooks rebuild, one stage each:

============================  ============================================  ==========================
step of ``forward``           series code                                   notebook
============================  ============================================  ==========================
normalise, resize, pad        :class:`ImageTransform`                        08 whole model
backbone and FPN              :class:`helpers.model.ShapesBackbone` with     04 backbone and FPN
                              :class:`FeaturePyramid`
RPN                           :class:`RPNHead`,                              05, 05b RPN
                              :class:`helpers.rpn.RegionProposalNetwork`
multi-scale RoIAlign          :func:`helpers.fpn.multiscale_roi_align`       04 (02, 03 for the ops)
                              (RoIPool: the same with ``op="pool"``)
box head                      :mod:`helpers.box_head`                        06 box head
mask head                     :mod:`helpers.mask_head`                       07 mask head
============================  ============================================  ==========================

Nothing from ``torchvision.models.detection`` and none of torchvision's detection ops (``roi_align``,
``roi_pool``, ``nms``, ``box_iou``, ``MultiScaleRoIAlign``, ``FeaturePyramidNetwork``) runs in
training or inference; only ``torch.nn`` layers and tensor operations.

Checkpoint-compatible: every submodule carries torchvision's name (``backbone.fpn.inner_blocks.0.0``,
``rpn.head.conv.0.0``, ``roi_heads.box_head.fc6``, ``roi_heads.mask_head.0.0``,
``roi_heads.mask_predictor.conv5_mask`` ...), so ``SeriesMaskRCNN(config).load_state_dict(
build_model(config).state_dict())`` works with ``strict=True``, and so does the shipped checkpoint.
Constructed after the same ``torch.manual_seed``, both start from the same random weights.

Same calling convention as torchvision: ``model(images, targets)`` in training mode returns the five
losses (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``,
``loss_mask``); ``model(images)`` in eval mode returns one ``{boxes, labels, scores, masks}`` dict
per image. ``tests/test_maskrcnn.py`` checks both against torchvision's assembly with the same weights
and the same seed: the random draws (the transform's size choice, the RPN's and the box head's
sampling) are made in torchvision's order, so the sampled anchors and RoIs are the same.

Conventions: images ``Tensor[3, H, W]`` float in ``[0, 1]``; boxes ``(x1, y1, x2, y2)`` in pixels,
``y`` downwards; labels ``1 .. num_classes - 1`` (0 is the background).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from helpers.box_head import FastRCNNPredictor, TwoMLPHead, fastrcnn_loss, postprocess_detections, \
    select_training_samples
from helpers.checks import check_boxes, check_list, check_tensor
from helpers.fpn import fpn_top_down, multiscale_roi_align
from helpers.mask_head import MaskHead, maskrcnn_inference, maskrcnn_loss, paste_masks_in_image
from helpers.model import ShapesBackbone, ShapesModelConfig
from helpers.rpn import AnchorGenerator, RegionProposalNetwork

__all__ = ["ImageBatch", "ImageTransform", "resize_boxes", "FeaturePyramid", "RPNHead", "RoIHeads",
           "SeriesMaskRCNN", "LOSS_NAMES"]

LOSS_NAMES: tuple[str, ...] = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
"""The five loss terms, in the order the stages compute them (torchvision's keys)."""


# ----------------------------------------------------------------------------------------------
# 08: the image transform (torchvision's GeneralizedRCNNTransform, for one min_size = max_size)
# ----------------------------------------------------------------------------------------------
@dataclass
class ImageBatch:
    """The padded batch and each image's size before padding (torchvision's ``ImageList``).

    Attributes:
        tensors: ``Tensor[N, 3, H_pad, W_pad]``, every side a multiple of ``size_divisible``.
        image_sizes: ``(H, W)`` of each resized image, before padding.
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


def resize_boxes(boxes: Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> Tensor:
    """Scale ``(x1, y1, x2, y2)`` boxes from an image of ``original_size`` to one of ``new_size`` ``(H, W)``.

    The ratios are computed in float32 as ``new / original``, as torchvision's ``resize_boxes``.
    """
    ratio_h, ratio_w = (torch.tensor(n, dtype=torch.float32, device=boxes.device)
                        / torch.tensor(o, dtype=torch.float32, device=boxes.device)
                        for n, o in zip(new_size, original_size))
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_w, y1 * ratio_h, x2 * ratio_w, y2 * ratio_h), dim=1)


class ImageTransform(nn.Module):
    """Normalise each image, resize it, and pad the batch: torchvision's ``GeneralizedRCNNTransform``.

    Per image, in torchvision's order: ``(image - mean) / std``; then resize by the factor
    ``min(min_size / shorter side, max_size / longer side)`` (bilinear, ``align_corners=False``,
    ``recompute_scale_factor=True``; the masks of the targets nearest-neighbour and back to uint8;
    the boxes by the same ratios). Then every image is copied into the top-left corner of a zero
    batch whose sides are the largest sides rounded up to a multiple of ``size_divisible``.

    One detail matters for equality with torchvision: in training mode torchvision picks the
    ``min_size`` of each image at random from its list of sizes, drawing one number from torch's
    global generator per image. With a single size the draw decides nothing, but it moves the
    generator, and the RPN's and the box head's sampling draw from the same generator later; so we
    draw it too (:meth:`_training_draw`) to keep seeded runs identical.

    Args:
        min_size, max_size: the resize rule's two sizes (the shapes model uses 128 for both).
        image_mean, image_std: three numbers each.
        size_divisible: padded sides are multiples of this (32: the coarsest FPN stride).
    """

    def __init__(self, min_size: int, max_size: int, image_mean: Sequence[float], image_std: Sequence[float],
                 size_divisible: int = 32) -> None:
        super().__init__()
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.image_mean, self.image_std = [float(v) for v in image_mean], [float(v) for v in image_std]
        self.size_divisible = int(size_divisible)

    def normalize(self, image: Tensor) -> Tensor:
        """``(image - mean) / std`` per channel, in the image's dtype."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def _training_draw(self) -> None:
        """torchvision's ``torch_choice`` over a list of one size: one uniform number drawn, then ignored."""
        torch.empty(1).uniform_(0.0, 1.0)

    def resize(self, image: Tensor, target: dict[str, Tensor] | None) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Resize one image (and its target's masks and boxes) by torchvision's rule."""
        h, w = image.shape[-2:]
        if self.training:
            self._training_draw()
        shape = torch.tensor(image.shape[-2:])
        scale = torch.min(float(self.min_size) / torch.min(shape).to(torch.float32),
                          float(self.max_size) / torch.max(shape).to(torch.float32)).item()
        image = F.interpolate(image[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                              align_corners=False)[0]
        if target is None:
            return image, None
        target = dict(target)  # the caller's dict is left alone
        if "masks" in target:
            target["masks"] = F.interpolate(target["masks"][:, None].float(), scale_factor=scale,
                                            recompute_scale_factor=True)[:, 0].byte()
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        return image, target

    def batch_images(self, images: list[Tensor]) -> Tensor:
        """Copy the images into one zero-padded ``Tensor[N, C, H_pad, W_pad]``."""
        stride = float(self.size_divisible)
        height = int(math.ceil(max(img.shape[1] for img in images) / stride) * stride)
        width = int(math.ceil(max(img.shape[2] for img in images) / stride) * stride)
        batch = images[0].new_full((len(images), images[0].shape[0], height, width), 0)
        for slot, img in zip(batch, images):
            slot[:, :img.shape[1], :img.shape[2]].copy_(img)
        return batch

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[ImageBatch, list[dict[str, Tensor]] | None]:
        resized, new_targets = [], []
        for i, image in enumerate(images):
            image, target = self.resize(self.normalize(image), None if targets is None else targets[i])
            resized.append(image)
            new_targets.append(target)
        sizes = [(int(img.shape[1]), int(img.shape[2])) for img in resized]
        return ImageBatch(self.batch_images(resized), sizes), (None if targets is None else new_targets)

    def postprocess(self, detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]],
                    original_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Boxes back to each input image's size; the 28 x 28 masks pasted into it (07)."""
        for det, size, original in zip(detections, image_sizes, original_sizes):
            det["boxes"] = resize_boxes(det["boxes"], size, original)
            det["masks"] = paste_masks_in_image(det["masks"], det["boxes"], original)
        return detections

    def extra_repr(self) -> str:
        return (f"min_size={self.min_size}, max_size={self.max_size}, mean={self.image_mean}, "
                f"std={self.image_std}, size_divisible={self.size_divisible}")


# ----------------------------------------------------------------------------------------------
# 04: the feature pyramid
# ----------------------------------------------------------------------------------------------
class FeaturePyramid(nn.Module):
    """The FPN's top-down pathway (Lin et al. 2017), with torchvision's layer names and initialisation.

    Each stage output ``C_i`` gets a 1x1 *lateral* convolution to ``out_channels``
    (``inner_blocks[i]``). From the coarsest level down, the running map is upsampled 2x (nearest
    neighbour, to the lateral's size) and added to the next lateral; every level's sum then goes
    through a 3x3 convolution (``layer_blocks[i]``) that smooths the upsampling's blockiness.
    No extra pooled level (torchvision's ``extra_blocks=None``).

    Args:
        in_channels_list: channels of ``C_2, C_3, ...``, finest first.
        out_channels: channels of every output level.

    Shapes:
        ``forward(OrderedDict name -> Tensor[N, in_i, H_i, W_i]) -> OrderedDict name -> Tensor[N,
        out_channels, H_i, W_i]``, same names and order.
    """

    def __init__(self, in_channels_list: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList()
        self.layer_blocks = nn.ModuleList()
        for in_channels in in_channels_list:  # one Sequential each, so that the keys read "inner_blocks.0.0.weight"
            self.inner_blocks.append(nn.Sequential(nn.Conv2d(in_channels, out_channels, 1)))
            self.layer_blocks.append(nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        for m in self.modules():  # torchvision's initialisation, in its order
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Mapping[str, Tensor]) -> "OrderedDict[str, Tensor]":
        # notebook 04 writes the top-down pass in the open (helpers.fpn.fpn_top_down)
        return OrderedDict(zip(x.keys(), fpn_top_down(self.inner_blocks, self.layer_blocks, list(x.values()))))


# ----------------------------------------------------------------------------------------------
# 05, 05b: the RPN head (the rest of the RPN is helpers.rpn.RegionProposalNetwork)
# ----------------------------------------------------------------------------------------------
def _conv_relu(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 convolution (padding 1) and a ReLU, as torchvision's ``Conv2dNormActivation`` without norm."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True))


class RPNHead(nn.Module):
    """One 3x3 convolution + ReLU shared by all levels, then per anchor one objectness logit
    (``cls_logits``) and four box deltas (``bbox_pred``), both 1x1 convolutions.

    Args:
        in_channels: channels of the feature maps.
        num_anchors: anchors per location ``A``.

    Shapes:
        ``forward(list of Tensor[N, C, H_l, W_l]) -> (list of Tensor[N, A, H_l, W_l],
        list of Tensor[N, 4A, H_l, W_l])``.
    """

    def __init__(self, in_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv_relu(in_channels, in_channels))
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in self.modules():  # torchvision's initialisation
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        hidden = [self.conv(feature) for feature in x]
        return [self.cls_logits(t) for t in hidden], [self.bbox_pred(t) for t in hidden]


class RoIHeads(nn.Module):
    """The weights of the box and mask branches under torchvision's names (``roi_heads.box_head.fc6``...).

    It only holds them; :class:`SeriesMaskRCNN` runs the steps, so that its ``forward`` reads top to bottom.
    """

    def __init__(self, config: ShapesModelConfig) -> None:
        super().__init__()
        c = config.fpn_channels
        self.box_head = TwoMLPHead(c * 7 * 7, config.representation_size)                       # 06
        self.box_predictor = FastRCNNPredictor(config.representation_size, config.num_classes)  # 06
        # 07: the mask head is helpers.mask_head.MaskHead; its layers are held here in torchvision's two modules
        # (mask_head.0.0 = mask_fcn1 ..., mask_predictor.conv5_mask, .mask_fcn_logits), as torchvision splits them
        head = MaskHead(config.num_classes, c, config.mask_layers, config.mask_dim_reduced).layers
        self.mask_head = nn.Sequential(*(nn.Sequential(head.get_submodule(f"mask_fcn{i}"), head.get_submodule(f"relu{i}"))
                                         for i in range(1, len(config.mask_layers) + 1)))
        self.mask_predictor = nn.Sequential(OrderedDict(
            conv5_mask=head.conv5_mask, relu=head.relu5, mask_fcn_logits=head.mask_fcn_logits))


# ----------------------------------------------------------------------------------------------
# the whole model
# ----------------------------------------------------------------------------------------------
class SeriesMaskRCNN(nn.Module):
    """Mask R-CNN for the shapes task, assembled from the series' own modules (see the module docstring).

    Args:
        config: a :class:`helpers.model.ShapesModelConfig` (the same one :func:`helpers.model.build_model`
            reads); ``config.pool`` chooses RoIAlign or RoIPool for both branches.

    Call:
        training mode: ``model(images, targets) -> {loss_objectness, loss_rpn_box_reg, loss_classifier,
        loss_box_reg, loss_mask}``; eval mode: ``model(images) -> [{boxes Tensor[D, 4], labels
        Tensor[D], scores Tensor[D], masks Tensor[D, 1, H, W]}, ...]``. ``images`` is a list of
        ``Tensor[3, H, W]`` float in ``[0, 1]``; each target holds ``boxes`` ``Tensor[M, 4]`` (float,
        inside the image, positive sides), ``labels`` ``Tensor[M]`` int64 in ``1 .. num_classes - 1``,
        ``masks`` ``Tensor[M, H, W]`` (uint8 or float 0/1). ``M = 0`` (an image of background) is fine.

    Attributes:
        shapes_config: the config (as on :func:`helpers.model.build_model`'s models).
        global_batch_losses: ``False`` (the default): each loss is the mean over this call's batch.
            ``True`` when each process of ``DistributedDataParallel`` runs this model on its share of a
            global batch (``helpers.train`` sets it under ``torchrun``): the losses are normalised by the
            global batch's counts (:meth:`share_of_global_batch`), so that DDP's gradients and the
            logged losses are those of one process with the whole batch. Needs an initialised
            ``torch.distributed`` process group.
    """

    def __init__(self, config: ShapesModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ShapesModelConfig):
            raise TypeError(f"config must be a ShapesModelConfig, got {type(config).__name__}")
        self.shapes_config = config
        self.transform = ImageTransform(config.image_size, config.image_size, config.image_mean, config.image_std)
        self.backbone = ShapesBackbone(config, pyramid=FeaturePyramid)
        self.featmap_names = [str(i) for i in range(len(config.level_strides))]
        if config.feature_stride is None:
            sizes: tuple[tuple[int, ...], ...] = tuple((int(s),) for s in config.anchor_sizes)
        else:
            sizes = (tuple(int(s) for s in config.anchor_sizes),)
        ratios = (tuple(float(r) for r in config.aspect_ratios),) * len(sizes)
        anchors = AnchorGenerator(sizes, ratios)
        # the RoI heads are built before the RPN head, as torchvision builds them, so that one seed gives
        # both models the same initial weights; they are registered after it, so the state dicts line up
        roi_heads = RoIHeads(config)
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(config.fpn_channels, anchors.num_anchors_per_location()[0]),
            batch_size_per_image=config.rpn_batch_size_per_image,
            pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test})
        self.roi_heads = roi_heads
        self.global_batch_losses = False  # set by helpers.train under DistributedDataParallel

    # -- the steps, top to bottom ----------------------------------------------------------------
    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        original_sizes = self.check_inputs(images, targets)
        # 08 whole model: normalise, resize, pad the images into one batch
        batch, targets = self.transform(images, targets)
        # 04 backbone and FPN: feature maps "0".."3" at strides 4..32
        features = self.backbone(batch.tensors)
        # 05, 05b RPN: anchors, objectness and deltas, proposals (+ its two losses when training)
        proposals, rpn_losses = self.rpn(batch, features, targets)
        if self.training:
            assert targets is not None  # check_inputs made sure
            # 06 box head: sample RoIs among the proposals (+ the ground truth), give them targets
            rois, matched_idxs, labels, regression_targets = self.sample_rois(proposals, targets)
            # 04 multi-scale RoIAlign (7 x 7), 06 box head: class logits and per-class deltas
            class_logits, box_regression = self.box_branch(features, rois, batch.image_sizes)
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            # 07 mask head: the positive RoIs only, 14 x 14 features, loss on the true class's channel
            positives, positive_idxs = self.positive_rois(rois, labels, matched_idxs)
            mask_logits = self.mask_branch(features, positives, batch.image_sizes)
            loss_mask = maskrcnn_loss(mask_logits, positives, [t["masks"] for t in targets],
                                      [t["labels"] for t in targets], positive_idxs)
            losses = {**rpn_losses, "loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg,
                      "loss_mask": loss_mask}
            if self.global_batch_losses:  # several processes (DDP, notebook 09): normalised by the global counts
                losses = self.share_of_global_batch(losses, labels, positives)
            return losses
        # 06 box head: score and refine every proposal, then per-class NMS
        class_logits, box_regression = self.box_branch(features, proposals, batch.image_sizes)
        boxes, scores, labels = self.detect(class_logits, box_regression, proposals, batch.image_sizes)
        # 07 mask head: a 28 x 28 mask of the predicted class for every detection
        masks = maskrcnn_inference(self.mask_branch(features, boxes, batch.image_sizes), labels)
        detections = [{"boxes": b, "labels": lab, "scores": s, "masks": m}
                      for b, lab, s, m in zip(boxes, labels, scores, masks)]
        # 07/08: boxes back to the input size, masks pasted into the image
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    # -- the small methods forward calls -----------------------------------------------------------
    def pool(self, features: Mapping[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]],
             output_size: int) -> Tensor:
        """04: each box pooled from its pyramid level, by RoIAlign or (``config.pool = "pool"``) RoIPool."""
        config = self.shapes_config
        return multiscale_roi_align(features, boxes, image_sizes, output_size, config.sampling_ratio,
                                    featmap_names=self.featmap_names, canonical_scale=config.canonical_scale,
                                    op=config.pool)

    def sample_rois(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
                    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """06: proposals + ground truth, matched at IoU 0.5, ``box_batch_size_per_image`` sampled (25 % positive)."""
        return select_training_samples(proposals, targets,
                                       batch_size_per_image=self.shapes_config.box_batch_size_per_image)

    def box_branch(self, features: Mapping[str, Tensor], rois: list[Tensor], image_sizes: list[tuple[int, int]]
                   ) -> tuple[Tensor, Tensor]:
        """04 + 06: 7 x 7 pooled features -> two FC layers -> ``(class logits [R, K], deltas [R, 4K])``."""
        heads = self.roi_heads
        return heads.box_predictor(heads.box_head(self.pool(features, rois, image_sizes, 7)))

    def detect(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
               image_sizes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """06: softmax, decode, clip, score threshold, per-class NMS, best ``box_detections_per_img``."""
        config = self.shapes_config
        return postprocess_detections(class_logits, box_regression, proposals, image_sizes, config.box_score_thresh,
                                      config.box_nms_thresh, config.box_detections_per_img)

    @staticmethod
    def positive_rois(rois: list[Tensor], labels: list[Tensor], matched_idxs: list[Tensor]
                      ) -> tuple[list[Tensor], list[Tensor]]:
        """07: the sampled RoIs with an object (label > 0) and the ground truth each is matched to."""
        keep = [torch.where(lab > 0)[0] for lab in labels]
        # r.index_select(0, k) is r[k]; see the (*) note in helpers.boxes for why not r[k]
        return [r.index_select(0, k) for r, k in zip(rois, keep)], [m[k] for m, k in zip(matched_idxs, keep)]

    def mask_branch(self, features: Mapping[str, Tensor], boxes: list[Tensor], image_sizes: list[tuple[int, int]]
                    ) -> Tensor:
        """04 + 07: 14 x 14 pooled features -> four 3x3 convs -> 2x up -> mask logits ``[R, K, 28, 28]``."""
        heads = self.roi_heads
        return heads.mask_predictor(heads.mask_head(self.pool(features, boxes, image_sizes, 14)))

    def share_of_global_batch(self, losses: dict[str, Tensor], labels: list[Tensor], positives: list[Tensor]
                              ) -> dict[str, Tensor]:
        """Under DistributedDataParallel: each loss from this process's mean to its share of the global batch's.

        Each loss is a mean: a sum over this process's ``n`` items divided by ``n``; the items are the
        anchors the RPN sampled (``loss_objectness``, ``loss_rpn_box_reg``), the RoIs sampled for the box
        head (``loss_classifier``, ``loss_box_reg``) and the positive RoIs (``loss_mask``, whose mean is
        over their ``n * 28 * 28`` pixels). One process with the whole batch divides the sum over all
        the processes' items by their global count ``N``, while DDP *averages* the processes' gradients
        (it divides their sum by the number of processes ``W``). So each process returns

            ``mean * n / N * W``  (= its sum / ``N`` * ``W``),

        and DDP's average of these, and of their gradients, is the single process's. The three counts
        are summed over the processes with one ``all_reduce`` per step (no gradient); ``N = 0`` (no
        positive RoI anywhere) leaves the zero mask loss at zero.

        Args:
            losses: the five losses, each a mean over this process's items.
            labels: the sampled RoIs' labels, one ``Tensor[R_i]`` per image (the box head's items).
            positives: the positive RoIs, one ``Tensor[P_i, 4]`` per image (the mask head's items).

        Returns:
            The five losses, rescaled; their mean over the processes is the global batch's loss.
        """
        import torch.distributed as dist

        world = dist.get_world_size()
        device = losses["loss_mask"].device
        anchors = self.rpn.num_sampled_anchors.to(device, torch.float64)  # the RPN counted them (a Tensor[])
        rois, positive = (torch.tensor(float(sum(len(t) for t in per_image)), dtype=torch.float64, device=device)
                          for per_image in (labels, positives))
        local = torch.stack([anchors, rois, positive])  # [3]: this process's counts n
        items = {"loss_objectness": 0, "loss_rpn_box_reg": 0, "loss_classifier": 1, "loss_box_reg": 1, "loss_mask": 2}
        total = local.clone()
        dist.all_reduce(total)  # [3]: the global counts N
        scale = (local * world / total.clamp(min=1)).to(torch.float32)  # n / N * W for each kind of item
        return {name: loss * scale[items[name]] for name, loss in losses.items()}

    # -- argument checks ---------------------------------------------------------------------------
    def check_inputs(self, images: Any, targets: Any) -> list[tuple[int, int]]:
        """Raise ``TypeError``/``ValueError`` naming the bad argument; return each image's ``(H, W)``."""
        images = check_list(images, "images", Tensor, minimum_length=1, what="a list of Tensor[3, H, W] images")
        sizes = []
        for i, image in enumerate(images):
            check_tensor(image, f"images[{i}]", 3, shape="[3, H, W]", floating=True)
            if image.shape[0] != 3 or image.shape[1] == 0 or image.shape[2] == 0:
                raise ValueError(f"images[{i}] must be a non-empty Tensor[3, H, W], got shape {tuple(image.shape)}")
            sizes.append((int(image.shape[1]), int(image.shape[2])))
        if targets is None:
            if self.training:
                raise ValueError("targets must be given in training mode (one dict per image); "
                                 "call model.eval() to detect")
            return sizes
        targets = check_list(targets, "targets", Mapping, what="a list with one dict per image")
        if len(targets) != len(images):
            raise ValueError(f"targets must hold one dict per image: {len(images)} images, {len(targets)} targets")
        num_classes = self.shapes_config.num_classes
        for i, (target, (h, w)) in enumerate(zip(targets, sizes)):
            missing = [key for key in ("boxes", "labels", "masks") if key not in target]
            if missing:
                raise ValueError(f"targets[{i}] must have 'boxes', 'labels' and 'masks'; {missing} missing")
            boxes = check_boxes(target["boxes"], f"targets[{i}]['boxes']", finite=True, positive_size=True)
            if boxes.numel() and bool(((boxes[:, :2] < 0) | (boxes[:, 2] > w)[:, None] | (boxes[:, 3] > h)[:, None]).any()):
                raise ValueError(f"targets[{i}]['boxes'] must lie inside the {h} x {w} image "
                                 f"(0 <= x1 < x2 <= {w}, 0 <= y1 < y2 <= {h})")
            labels = check_tensor(target["labels"], f"targets[{i}]['labels']", 1, shape="[M]", dtype=torch.int64)
            if labels.shape[0] != boxes.shape[0]:
                raise ValueError(f"targets[{i}]['labels'] must hold one label per box: {boxes.shape[0]} boxes, "
                                 f"{labels.shape[0]} labels")
            if labels.numel() and (int(labels.min()) < 1 or int(labels.max()) >= num_classes):
                raise ValueError(f"targets[{i}]['labels'] must lie in 1 .. {num_classes - 1} (0 is the background), "
                                 f"got {labels.tolist()}")
            masks = check_tensor(target["masks"], f"targets[{i}]['masks']", 3, shape="[M, H, W]")
            if tuple(masks.shape) != (boxes.shape[0], h, w):
                raise ValueError(f"targets[{i}]['masks'] must have shape [M, H, W] = {[boxes.shape[0], h, w]} "
                                 f"(one mask per box, the image's size), got {list(masks.shape)}")
        return sizes

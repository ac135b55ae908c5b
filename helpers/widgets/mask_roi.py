"""Notebook 07's panel: one proposal slid over a validation image; its mask target and the trained head's mask."""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.patches import Rectangle

from helpers import roi
from helpers.boxes import box_iou
from helpers.mask_head import paste_masks_in_image, project_masks_on_boxes
from helpers.viz import COLORS, MASK_COLORS, draw_image, move_rectangle
from helpers.widgets.panel import BlitPanel, PanelMessage, coordinate_slider, one_thread
from helpers.widgets.trained import ImageFeatures, image_features, mask_logits, shipped_model, validation_set

HIT, MISSED, EXTRA = (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.12, 0.47, 0.71)
"""Colours of the pasted mask's pixels: hit (predicted and true), missed (true only), extra (predicted only)."""


class MaskRoIPanel(BlitPanel):
    """Notebook 07: slide one proposal over an image; see its mask target and the trained model's mask.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the proposal, in image pixels, pixel-edge convention as the
    detector's boxes) and ``aligned`` (how the *target* is cropped). The proposal is matched, as in
    training, to the ground-truth object it overlaps most (box IoU); that object's mask gives the target
    and its class picks the predicted channel.

    Drawn, left to right: the image with the true mask outlined (black), the proposal (red) and the
    region RoIAlign samples for the target (orange, dashed: half a pixel right and down of the box when
    ``aligned`` is off); the 28 x 28 target (RoIAlign of the 0/1 mask, adaptive sampling,
    :func:`helpers.mask_head.project_masks_on_boxes` when ``aligned`` is off); the model's 28 x 28
    probability for the matched class (the mask head run on this one box: multi-scale RoIAlign 14 x 14
    of the features, computed once per image, then the head); the prediction pasted back into the image
    (:func:`helpers.mask_head.paste_masks_in_image`, threshold 0.5) as hit / missed / extra pixels.
    Both 28 x 28 maps share one grey scale, 0 (white) to 1 (black), shown by the colour bar.

    An empty or inverted box (``x2 <= x1`` or ``y2 <= y1``) shows a message: the detector never makes one
    (its proposals are decoded, clipped and stripped of boxes under 0.001 pixel).

    Args:
        model: the trained model in eval mode (``helpers.model.load_checkpoint(SHAPES_CHECKPOINT)[0]``,
            torchvision's assembly or the series' own); ``None``: the shipped one.
        image: ``Tensor[3, H, W]`` in [0, 1]; ``target``: its ground truth (``boxes``, ``labels``, ``masks``).
            Both ``None``: validation image 46 (``ShapesDataset(200, seed=1_000_000)[46]``).
        box: the starting proposal ``(x1, y1, x2, y2)``; ``None``: the first object's own box.
        aligned: starting value of the toggle.
        class_names: names of the labels (``helpers.shapes.CLASSES``).
        step: step of the coordinate sliders.
        dpi: PNG resolution.

    Attributes:
        features: :class:`helpers.widgets.trained.ImageFeatures` of the image (computed once).
        matched: index of the object the proposal is matched to; ``box_iou``: its box IoU.
        target: ``Tensor[28, 28]`` the mask target; ``probability``: ``Tensor[28, 28]`` the prediction.
        pasted: ``Tensor[H, W]`` the pasted probability; ``mask_iou``: IoU of ``pasted > 0.5`` with the true mask.
    """

    title = "mask target and prediction"
    M = 28

    def __init__(self, model: Any = None, image: torch.Tensor | None = None, target: dict[str, Any] | None = None,
                 box: tuple[float, float, float, float] | None = None, aligned: bool = False,
                 class_names: tuple[str, ...] = ("background", "circle", "square", "triangle"),
                 step: float = 0.5, dpi: int = 80) -> None:
        if (image is None) != (target is None):
            raise ValueError("give both image and target, or neither (validation image 46, as in notebook 08)")
        if image is None:
            image, target = validation_set()[46]
        model = shipped_model() if model is None else model
        if not isinstance(target, dict) or not {"boxes", "labels", "masks"} <= set(target):
            raise TypeError("target must be a dict with 'boxes', 'labels' and 'masks' (a ShapesDataset item's target)")
        if len(target["boxes"]) == 0:
            raise ValueError("target must hold at least one object (the proposal is matched to one)")
        self.model = model
        self.picture = image
        self.gt_boxes = target["boxes"].float()
        self.gt_labels = target["labels"]
        self.gt_masks = target["masks"].float()                                  # [G, H, W] 0/1
        self.class_names = tuple(class_names)
        self.features: ImageFeatures = image_features(model, image)               # once: backbone, FPN
        if self.features.image_sizes[0] != self.features.original_size:
            raise ValueError(f"the panel needs images the model does not resize: image {self.features.original_size},"
                             f" model input {self.features.image_sizes[0]}")
        h, w = self.features.original_size
        x1, y1, x2, y2 = (float(v) for v in (self.gt_boxes[0].tolist() if box is None else box))
        sliders: dict[str, widgets.Widget] = {
            "x1": coordinate_slider("x1", x1, 0.0, float(w), step),
            "y1": coordinate_slider("y1", y1, 0.0, float(h), step),
            "x2": coordinate_slider("x2", x2, 0.0, float(w), step),
            "y2": coordinate_slider("y2", y2, 0.0, float(h), step),
            "aligned": widgets.Checkbox(value=bool(aligned), description="aligned (target)", indent=False),
        }
        super().__init__(sliders, figsize=(8.3, 2.6), dpi=dpi)

    def build(self) -> None:
        h, w = self.features.original_size
        self.ax_img, self.ax_target, self.ax_pred, self.ax_paste = self.fig.subplots(
            1, 4, gridspec_kw={"width_ratios": [1.25, 1, 1, 1.25]})
        draw_image(self.picture, self.ax_img, dim=0.2)
        for g in range(len(self.gt_masks)):
            self.ax_img.contour(np.arange(w), np.arange(h), self.gt_masks[g].numpy(), levels=[0.5],
                                colors=[COLORS["truth"]], linewidths=1.0)
        self.box_patch = Rectangle((0, 0), 1, 1, fill=False, linewidth=1.8, edgecolor=MASK_COLORS[0], zorder=4)
        self.sampled_patch = Rectangle((0, 0), 1, 1, fill=False, linewidth=1.2, linestyle="--",
                                       edgecolor=COLORS["aligned"], zorder=5)
        self.ax_img.add_patch(self.box_patch)
        self.ax_img.add_patch(self.sampled_patch)
        zeros = np.zeros((self.M, self.M))
        self.target_image = self.ax_target.imshow(zeros, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        self.pred_image = self.ax_pred.imshow(zeros, cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        for ax in (self.ax_target, self.ax_pred):
            ax.set_xticks([])
            ax.set_yticks([])
        draw_image(self.picture, self.ax_paste, dim=0.6)
        self.paste_image = self.ax_paste.imshow(np.zeros((h, w, 4)), extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                                                interpolation="nearest", zorder=3)
        self.paste_box = Rectangle((0, 0), 1, 1, fill=False, linewidth=1.0, edgecolor=MASK_COLORS[0], zorder=4)
        self.ax_paste.add_patch(self.paste_box)
        for ax in (self.ax_img, self.ax_paste):
            ax.set_xticks([])
            ax.set_yticks([])
        self.ax_img.set_title("true masks (black), proposal (red),\nregion the target samples (orange)", fontsize=8)
        self.ax_target.set_title("28x28 mask target\n(RoIAlign of the true mask)", fontsize=8)
        self.ax_pred.set_title("28x28 prediction (sigmoid\nof the matched class)", fontsize=8)
        self.ax_paste.set_title("pasted, > 0.5: hit (green),\nmissed (red), extra (blue)", fontsize=8)
        self.fig.subplots_adjust(left=0.01, right=0.99, top=0.82, bottom=0.1, wspace=0.12)
        bar = self.fig.colorbar(self.pred_image, ax=[self.ax_target, self.ax_pred], fraction=0.04, pad=0.02,
                                location="right", aspect=25)
        bar.ax.tick_params(labelsize=8)
        self.notes = []
        for ax in (self.ax_img, self.ax_target, self.ax_pred, self.ax_paste):
            note = ax.text(0.5, -0.03, "", transform=ax.transAxes, ha="center", va="top", fontsize=8)
            self.notes.append(note)

    def dynamic(self) -> list[Artist]:
        # the axes' frames are drawn again above the pictures that cover them (as a full draw does)
        frames = [spine for ax in (self.ax_img, self.ax_target, self.ax_pred, self.ax_paste)
                  for spine in ax.spines.values()]
        return [self.target_image, self.pred_image, self.paste_image, *frames, self.box_patch, self.sampled_patch,
                self.paste_box, *self.notes]

    def _show(self, visible: bool) -> None:
        for artist in (self.target_image, self.pred_image, self.paste_image, self.box_patch, self.sampled_patch,
                       self.paste_box, *self.notes):                 # the frames stay
            artist.set_visible(visible)

    def mask_target(self, box: torch.Tensor, matched: int, aligned: bool) -> torch.Tensor:
        """The ``M x M`` target of ``box`` (``Tensor[4]``) from object ``matched``'s mask: torchvision's
        recipe (:func:`helpers.mask_head.project_masks_on_boxes`) when not ``aligned``; the same RoIAlign
        (spatial scale 1, adaptive sampling) with the half-pixel shift when ``aligned``."""
        if not aligned:
            return project_masks_on_boxes(self.gt_masks, box[None], torch.tensor([matched]), self.M)[0]
        return roi.roi_align(self.gt_masks[matched][None, None], [box[None]], self.M, 1.0, 0, True)[0, 0]

    def update(self, x1: float, y1: float, x2: float, y2: float, aligned: bool) -> dict[str, Any]:
        x1, y1, x2, y2, aligned = float(x1), float(y1), float(x2), float(y2), bool(aligned)
        if x2 <= x1 or y2 <= y1:
            self._show(False)
            what = " and ".join(t for t, bad in ((f"x2 = {x2:g} <= x1 = {x1:g}", x2 <= x1),
                                                 (f"y2 = {y2:g} <= y1 = {y1:g}", y2 <= y1)) if bad)
            raise PanelMessage(f"Empty or inverted proposal: {what}. The detector never proposes one (its boxes "
                               "are decoded, clipped and boxes under 0.001 pixel are removed); move the sliders "
                               "so that x1 < x2 and y1 < y2.")
        self._show(True)
        h, w = self.features.original_size
        box = torch.tensor([x1, y1, x2, y2])
        with one_thread():
            ious = box_iou(box[None], self.gt_boxes)[0]                           # [G]
            matched = int(ious.argmax())
            label = int(self.gt_labels[matched])
            self.target = self.mask_target(box, matched, aligned)
            logits = mask_logits(self.model, self.features, box[None])           # [1, K, 28, 28]
            self.probability = logits[0, label].sigmoid()
            self.pasted = paste_masks_in_image(self.probability[None, None], box[None], (h, w))[0, 0]
        self.matched, self.box_iou = matched, float(ious[matched])
        predicted, truth = self.pasted > 0.5, self.gt_masks[matched] > 0.5
        hit, missed, extra = predicted & truth, truth & ~predicted, predicted & ~truth
        union = int((predicted | truth).sum())
        self.mask_iou = int(hit.sum()) / union if union else 0.0
        target_truth = self.target > 0.5
        overlay = np.zeros((h, w, 4))
        for mask, colour in ((hit, HIT), (missed, MISSED), (extra, EXTRA)):
            overlay[mask.numpy()] = (*colour, 0.85)
        # draw: boxes in the detector's pixel-edge convention (pixel i spans [i, i + 1], drawn centred on i)
        move_rectangle(self.box_patch, (x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5))
        shift = -0.5 if aligned else 0.0          # RoIAlign reads pixel i at coordinate i (+ 0.5 with aligned)
        move_rectangle(self.sampled_patch, (x1 + shift, y1 + shift, x2 + shift, y2 + shift))
        move_rectangle(self.paste_box, (x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5))
        self.target_image.set_data(self.target.numpy())
        self.pred_image.set_data(self.probability.numpy())
        self.paste_image.set_data(overlay)
        name = self.class_names[label] if label < len(self.class_names) else str(label)
        note_img, note_target, note_pred, note_paste = self.notes
        note_img.set_text(f"matched: {name} {matched}, box IoU {self.box_iou:.2f}")
        note_target.set_text(f"aligned={aligned}: {int(target_truth.sum())} cells > 0.5")
        note_pred.set_text(f"{int((self.probability > 0.5).sum())} cells > 0.5")
        note_paste.set_text(f"mask IoU {self.mask_iou:.3f}")
        return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "aligned": aligned,
                "matched object": f"{matched} ({name})", "box IoU": round(self.box_iou, 4),
                "target sum": round(float(self.target.sum()), 3),
                "target cells > 0.5": int(target_truth.sum()),
                "predicted cells > 0.5": int((self.probability > 0.5).sum()),
                "pasted pixels > 0.5": int(predicted.sum()), "true pixels": int(truth.sum()),
                "hit": int(hit.sum()), "missed": int(missed.sum()), "extra": int(extra.sum()),
                "mask IoU": round(self.mask_iou, 4)}

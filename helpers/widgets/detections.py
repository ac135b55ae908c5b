"""Notebook 06's panel: the trained box head's scores, a score threshold and per-class NMS, live."""

from __future__ import annotations

from typing import Any, Sequence

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.artist import Artist

from helpers.box_coder import BoxCoder
from helpers.boxes import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from helpers.viz import CLASS_COLORS, COLORS, box_outlines, draw_boxes, draw_image, text_color_on
from helpers.widgets.panel import BlitPanel, one_thread
from helpers.widgets.trained import box_head_outputs, image_features, shipped_model, validation_set


class DetectionPanel(BlitPanel):
    """Notebook 06: from the box head's scores to detections, on validation images of the trained model.

    For every offered image, the model's backbone, RPN and box head run once, in the constructor; the
    panel then does the post-processing of :func:`helpers.box_head.postprocess_detections` by hand:
    softmax, decode every class's deltas, clip, drop the background column, drop boxes under 0.01
    pixel (all computed once), and on every move: keep scores ``> score threshold``, per-class NMS
    (:func:`helpers.boxes.batched_nms`, IoU ``> NMS IoU`` suppresses) and the best ``max_detections``.

    Drawn: the image, its ground truth (black, dashed), the surviving detections in their class's
    colour with class and score (best first; a label that would cover one already written moves down a
    line, at most twice, or is left out, and the heading says so), and the candidates above the score threshold that NMS (or the
    ``max_detections`` cut) removed, faint. NMS never compares boxes of different classes, so one
    object can survive twice, under two classes: the readout counts such pairs (``cross-class pairs``,
    survivors of different classes with box IoU > 0.5).

    Sliders: ``image`` (a dropdown over ``indices``), ``score_thresh`` and ``nms_thresh``.

    Args:
        model: the trained model in eval mode (torchvision's assembly or the series' own); ``None``: the shipped one.
        dataset: a sequence of ``(image, target)`` pairs (``helpers.shapes.ShapesDataset``); ``None``: the
            validation images, ``ShapesDataset(200, seed=1_000_000)``.
        indices: the items of ``dataset`` offered by the dropdown (the first is shown first).
        class_names: names of the labels.
        score_thresh, nms_thresh: starting values; ``None``: the model's (``box_score_thresh``, ``box_nms_thresh``
            of its ``shapes_config``: 0.05 and 0.5 for the shipped model; torchvision's defaults otherwise).
        max_detections: detections kept per image; ``None``: the model's ``box_detections_per_img`` (30).
        dpi: PNG resolution.

    Attributes:
        candidates: ``{index: (boxes Tensor[N, 4], scores Tensor[N], labels Tensor[N])}``, cached.
        kept, suppressed: ``Tensor[D]`` / ``Tensor[S]`` indices into the current image's candidates.
        boxes, scores, labels: the detections drawn (by decreasing score).
    """

    title = "box head: scores to detections"

    def __init__(self, model: Any = None, dataset: Sequence[Any] | None = None, indices: Sequence[int] = (46, 0, 1, 2),
                 class_names: Sequence[str] = ("background", "circle", "square", "triangle"),
                 score_thresh: float | None = None, nms_thresh: float | None = None, max_detections: int | None = None,
                 dpi: int = 80) -> None:
        model = shipped_model() if model is None else model
        dataset = validation_set() if dataset is None else dataset
        config = getattr(model, "shapes_config", None)    # helpers.model's models carry their ShapesModelConfig
        if score_thresh is None:
            score_thresh = config.box_score_thresh if config is not None else 0.05
        if nms_thresh is None:
            nms_thresh = config.box_nms_thresh if config is not None else 0.5
        if max_detections is None:
            max_detections = config.box_detections_per_img if config is not None else 100
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("indices must name at least one item of dataset")
        for i in indices:
            if not 0 <= i < len(dataset):
                raise ValueError(f"indices must lie in [0, {len(dataset)}) (the dataset's items), got {i}")
        if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
            raise ValueError(f"max_detections must be an int >= 1, got {max_detections!r}")
        self.model, self.dataset, self.class_names = model, dataset, tuple(class_names)
        self.max_detections = max_detections
        self.candidates: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.items: dict[int, Any] = {}
        self.index = indices[0]
        sliders: dict[str, widgets.Widget] = {
            "image": widgets.Dropdown(options=[(f"validation image {i}", i) for i in indices], value=indices[0],
                                      description="image"),
            "score_thresh": widgets.FloatSlider(value=score_thresh, min=0.0, max=0.95, step=0.05,
                                                description="score >", readout_format=".2f",
                                                style={"description_width": "initial"}),
            "nms_thresh": widgets.FloatSlider(value=nms_thresh, min=0.05, max=1.0, step=0.05,
                                              description="NMS IoU >", readout_format=".2f",
                                              style={"description_width": "initial"}),
        }
        for index in indices:          # every image's candidates now, so that choosing one later is instant
            self.load(index)
        super().__init__(sliders, figsize=(4.4, 4.6), dpi=dpi)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The candidates of item ``index`` (computed on first use): every (proposal, class) pair with its
        decoded, clipped box and softmax score, background dropped, boxes under 0.01 pixel dropped."""
        if index not in self.candidates:
            image, target = self.dataset[index]
            feats = image_features(self.model, image)
            class_logits, box_regression = box_head_outputs(self.model, feats)            # [P, K], [P, 4K]
            n, k = class_logits.shape
            boxes = BoxCoder((10.0, 10.0, 5.0, 5.0)).decode(box_regression, [feats.proposals]).reshape(n, k, 4)
            boxes = clip_boxes_to_image(boxes, feats.image_sizes[0])                        # [P, K, 4]
            scores = F.softmax(class_logits, -1)                                            # [P, K]
            labels = torch.arange(k).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = remove_small_boxes(boxes, min_size=1e-2)
            self.candidates[index] = (boxes[keep], scores[keep], labels[keep])
            self.items[index] = (image, target)
        return self.candidates[index]

    def build(self) -> None:
        self.ax = self.fig.add_axes((0.01, 0.01, 0.98, 0.9))
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        self.picture = None
        self.gt_lines = draw_boxes([], self.ax, color=COLORS["truth"], linewidth=1.0, linestyle="--", zorder=3)
        self.faint_lines = draw_boxes([], self.ax, color="#555555", linewidth=0.8, alpha=0.35, zorder=2)
        self.class_lines = {c: draw_boxes([], self.ax, color=CLASS_COLORS[c % len(CLASS_COLORS)], linewidth=2.0,
                                          zorder=4) for c in range(1, len(self.class_names))}
        self.labels_text = [self.ax.text(0, 0, "", color="white", fontsize=8, va="top", zorder=6, clip_on=True,
                                         bbox={"facecolor": "k", "edgecolor": "none", "pad": 1.0}, visible=False)
                            for _ in range(self.max_detections)]
        self.heading = self.ax.text(0.5, 1.01, "", transform=self.ax.transAxes, ha="center", va="bottom",
                                    fontsize=9)

    def background_key(self) -> Any:
        return self.index

    def dynamic(self) -> list[Artist]:
        # in the order of a full draw (zorder): the faint boxes, the axes' frame, the ground truth
        # (drawn again above the faint boxes), the survivors, their labels
        return [self.faint_lines, *self.ax.spines.values(), self.gt_lines, *self.class_lines.values(),
                *self.labels_text, self.heading]

    def update(self, image: int, score_thresh: float, nms_thresh: float) -> dict[str, Any]:
        index, score_thresh, nms_thresh = int(image), float(score_thresh), float(nms_thresh)
        boxes, scores, labels = self.load(index)
        if index != self.index or self.picture is None:
            picture, target = self.items[index]
            if self.picture is not None:
                self.picture.remove()
            self.picture = draw_image(picture, self.ax, dim=0.3)
            self.picture.set_zorder(0)
            self.gt_lines.set_segments(list(box_outlines(target["boxes"])))
            self.index = index
        with one_thread():
            above = torch.where(scores > score_thresh)[0]
            keep = batched_nms(boxes[above], scores[above], labels[above], nms_thresh)[:self.max_detections]
            kept = above[keep]
            gone = torch.ones(len(above), dtype=torch.bool)
            gone[keep] = False
            self.kept, self.suppressed = kept, above[gone]
            self.boxes, self.scores, self.labels = boxes[kept], scores[kept], labels[kept]
            overlap = box_iou(self.boxes, self.boxes) if len(kept) else torch.zeros(0, 0)
        cross = [(i, j) for i in range(len(kept)) for j in range(i + 1, len(kept))
                 if self.labels[i] != self.labels[j] and float(overlap[i, j]) > 0.5]
        self.faint_lines.set_segments(list(box_outlines(boxes[self.suppressed])))
        for c, lines in self.class_lines.items():
            lines.set_segments(list(box_outlines(self.boxes[self.labels == c])))
        # labels go best-first, each just above its box (inside it when the box touches the top edge);
        # one that would cover a label already written moves down a line, up to twice, else is left out
        placed: list[tuple[float, float]] = []
        shown = 0
        for t in range(len(kept)):
            x, top = float(self.boxes[t, 0]) - 0.5, float(self.boxes[t, 1]) - 0.5
            y = top - 6.5 if top >= 7.0 else top + 0.5
            for _ in range(3):
                if not any(abs(x - px) < 17 and abs(y - py) < 6 for px, py in placed):
                    break
                y += 6.0
            else:
                continue
            placed.append((x, y))
            text, c = self.labels_text[shown], int(self.labels[t])
            text.set_position((x, y))
            text.set_text(f"{self.class_names[c][:3]} {float(self.scores[t]):.2f}")
            patch = CLASS_COLORS[c % len(CLASS_COLORS)]
            text.get_bbox_patch().set_facecolor(patch)
            text.set_color(text_color_on(patch))  # black on orange, white on blue
            text.set_visible(True)
            shown += 1
        for text in self.labels_text[shown:]:
            text.set_visible(False)
        self.labelled = shown
        self.heading.set_text(f"score > {score_thresh:.2f}, NMS IoU > {nms_thresh:.2f}: {len(kept)} kept, "
                              f"{len(self.suppressed)} removed"
                              + (f"\n(labels on {shown}: the others would cover them)" if shown < len(kept) else ""))
        numbers: dict[str, Any] = {
            "image": index, "candidates": int(len(scores)), "above score": int(len(above)),
            "kept": int(len(kept)), "removed by NMS or the cap": int(len(self.suppressed)),
        }
        for c in range(1, len(self.class_names)):
            numbers[f"kept {self.class_names[c]}"] = int((self.labels == c).sum())
        numbers["cross-class pairs"] = "; ".join(
            f"{self.class_names[int(self.labels[i])]} {float(self.scores[i]):.2f} / "
            f"{self.class_names[int(self.labels[j])]} {float(self.scores[j]):.2f} (IoU {float(overlap[i, j]):.2f})"
            for i, j in cross) or "none"
        for t in range(min(len(kept), 10)):
            b = [round(float(v), 1) for v in self.boxes[t]]
            numbers[f"#{t}"] = f"{self.class_names[int(self.labels[t])]} {float(self.scores[t]):.3f} {b}"
        return numbers

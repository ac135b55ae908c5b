"""Notebook 05's panel: the RPN's IoU thresholds, and which anchors become positives or are ignored."""

from __future__ import annotations

import ipywidgets as widgets

from helpers.widgets.panel import BlitPanel, PanelMessage, heading_text


# -- notebook 05: which anchors the IoU thresholds make object, ignored or background -------------
class AnchorMatchPanel(BlitPanel):
    """Move the RPN's two IoU thresholds and see which anchors become positives and which are ignored.

    Left: the image, its ground-truth boxes (black), the positive anchors (green: matched to a box,
    label 1) and the ignored ones (orange: best IoU in ``[bg, fg)``, label -1). Negatives (label 0)
    are too many to draw; the readout counts them. The matching is :func:`helpers.rpn.match_anchors`
    on the IoU matrix computed once in the constructor.

    Sliders: ``fg`` (foreground threshold), ``bg`` (background threshold), ``low_quality`` (torchvision's
    ``allow_low_quality_matches``: every box also claims its best anchors). ``bg > fg`` is refused
    with a message.

    A slider move redraws only the anchors, the ground truth above them and the heading (the dimmed
    image and the legend are drawn once: :class:`helpers.widgets.panel.BlitPanel`).

    Readout (:attr:`state`): ``positives``, ``ignored``, ``negatives``, ``low-quality positives``
    (positives whose best IoU is below ``fg``), ``objects without a positive``.

    Args:
        image: ``Tensor[3, H, W]`` in ``[0, 1]``; ``None`` (with ``gt_boxes=None``): notebook 05's
            image, item 0 of ``helpers.shapes.ShapesDataset(1, seed=0, size=128)``.
        gt_boxes: ``Tensor[M, 4]``, M >= 1, pixel-edge ``(x1, y1, x2, y2)``; ``None`` with ``image=None``.
        anchors: ``Tensor[A, 4]``, the anchors of the image (all levels); ``None``: torchvision's
            Mask R-CNN anchors (:class:`helpers.rpn.AnchorGenerator` defaults) on strides 4 to 64.
        fg, bg: initial thresholds (torchvision: 0.7 and 0.3).
        dpi: PNG resolution.
    """

    title = "anchor matching"

    def __init__(self, image=None, gt_boxes=None, anchors=None, fg: float = 0.7, bg: float = 0.3,
                 dpi: int = 72) -> None:
        import torch

        from helpers.boxes import box_iou
        from helpers.rpn import AnchorGenerator

        if (image is None) != (gt_boxes is None):
            raise ValueError("give both image and gt_boxes, or neither (for notebook 05's example image)")
        if image is None:
            from helpers.shapes import ShapesDataset

            image, target = ShapesDataset(1, seed=0, size=128)[0]
            gt_boxes = target["boxes"]
        if anchors is None and isinstance(image, torch.Tensor) and image.dim() == 3:
            from types import SimpleNamespace

            h, w = image.shape[1:]
            maps = [torch.zeros(1, 1, max(h // s, 1), max(w // s, 1)) for s in (4, 8, 16, 32, 64)]
            anchors = AnchorGenerator()(SimpleNamespace(tensors=image[None], image_sizes=[(h, w)]), maps)[0]
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise TypeError("image must be a Tensor[3, H, W]")
        for name, boxes in (("gt_boxes", gt_boxes), ("anchors", anchors)):
            if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] == 0:
                raise ValueError(f"{name} must be a non-empty Tensor[N, 4]")
        self.picture, self.gt_boxes, self.anchors = image, gt_boxes.float(), anchors.float()  # self.image is the PNG widget
        self.iou = box_iou(self.gt_boxes, self.anchors)                        # [M, A]
        self.best_iou = self.iou.max(dim=0).values                              # [A]
        sliders = {
            "fg": widgets.FloatSlider(value=fg, min=0.05, max=1.0, step=0.05, description="fg IoU >=",
                                      continuous_update=False, readout_format=".2f"),
            "bg": widgets.FloatSlider(value=bg, min=0.0, max=0.95, step=0.05, description="bg IoU <",
                                      continuous_update=False, readout_format=".2f"),
            "low_quality": widgets.Dropdown(options=[("on", True), ("off", False)], value=True,
                                            description="low-quality"),
        }
        super().__init__(sliders, figsize=(5.2, 4.6), dpi=dpi)

    def build(self) -> None:
        from matplotlib.lines import Line2D

        from helpers.viz import RPN_COLORS, draw_boxes, draw_image

        self.ax = self.fig.add_axes((0.02, 0.02, 0.62, 0.9))
        draw_image(self.picture, self.ax, dim=0.35)
        self.ignored_lines = draw_boxes([], self.ax, color=RPN_COLORS["ignored"], linewidth=0.6, alpha=0.5)
        self.positive_lines = draw_boxes([], self.ax, color=RPN_COLORS["positive"], linewidth=1.2)
        self.gt_lines = draw_boxes(self.gt_boxes, self.ax, color=RPN_COLORS["gt"], linewidth=2.0, zorder=3)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        handles = [Line2D([], [], color=RPN_COLORS[k], label=t) for k, t in
                   (("gt", "ground truth"), ("positive", "positive anchor"), ("ignored", "ignored anchor"))]
        self.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.65, 0.92), fontsize=8, frameon=False)
        self.title_text = heading_text(self.ax, fontsize=9)     # redrawn alone on every move (ax.title cannot be)

    def dynamic(self):
        # the anchors change; the axes' frame and the ground truth are drawn again above them (their
        # zorder), then the heading
        return [self.ignored_lines, self.positive_lines, *self.ax.spines.values(), self.gt_lines, self.title_text]

    def update(self, fg: float, bg: float, low_quality: bool) -> dict:
        from helpers.rpn import match_anchors
        from helpers.viz import box_outlines

        if bg > fg:
            self.positive_lines.set_segments([])
            self.ignored_lines.set_segments([])
            self.title_text.set_text(f"bg {bg:.2f} > fg {fg:.2f}: no labelling")
            raise PanelMessage(f"the background threshold ({bg:.2f}) must not exceed the foreground one ({fg:.2f})")
        matches = match_anchors(self.iou.clone(), fg, bg, bool(low_quality))   # [A]
        positive, ignored = matches >= 0, matches == -2
        self.positive_lines.set_segments(list(box_outlines(self.anchors[positive])))
        self.ignored_lines.set_segments(list(box_outlines(self.anchors[ignored])))
        claimed = set(matches[positive].tolist())
        self.title_text.set_text(f"fg >= {fg:.2f}, bg < {bg:.2f}, low-quality matches {'on' if low_quality else 'off'}")
        return {
            "positives": int(positive.sum()),
            "ignored": int(ignored.sum()),
            "negatives": int((matches == -1).sum()),
            "low-quality positives": int((positive & (self.best_iou < fg)).sum()),
            "objects without a positive": int(len(self.gt_boxes) - len(claimed)),
        }


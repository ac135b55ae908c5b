"""Notebook 05's panels: the RPN's IoU thresholds (:class:`AnchorMatchPanel`), and a ground-truth box moved
by hand (:class:`GroundTruthBoxPanel`): which anchors become positives or are ignored, and which of the
trained model's proposals the box head would take as positives."""

from __future__ import annotations

import ipywidgets as widgets

from helpers.widgets.panel import BlitPanel, PanelMessage, heading_text, one_thread


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
        from helpers.boxes import box_iou

        image, gt_boxes, anchors = _anchor_inputs(image, gt_boxes, anchors)
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
        with one_thread():                     # tiny tensors: a second thread costs more than it saves
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



# -- notebook 05: move a ground-truth box, see the anchors (and the trained model's proposals) it claims --
class GroundTruthBoxPanel(BlitPanel):
    """Move one ground-truth box and see which anchors become positive, ignored or negative for the RPN,
    and which of the trained model's proposals would be positives for the box head.

    Left: the image, the other ground-truth boxes (black, thin), the moved box (black, thick), the
    positive anchors (green: matched to some box, label 1), the ignored ones (orange: best IoU in
    ``[0.3, 0.7)``) and, dashed red, the trained model's proposals that the box head's matcher would give
    to the moved box (IoU >= 0.5 with it, and higher than with any other box). Negatives are too many to
    draw; the readout counts them.

    Per move only one row of the IoU matrix is recomputed (the moved box against the fixed anchors,
    :func:`helpers.boxes.box_iou`), then :func:`helpers.rpn.match_anchors` labels every anchor as
    torchvision's RPN does (fg 0.7, bg 0.3, low-quality matches on). The proposals are the shipped model's
    (:func:`helpers.widgets.trained.image_features`: eval mode, after NMS, ``rpn_post_nms_top_n_test``),
    computed once in the constructor: they depend on the image, not on the ground truth. Their labels use
    the box head's rule, :func:`helpers.rpn.match_anchors` with fg = bg = 0.5 and no low-quality matches
    (torchvision's ``RoIHeads.proposal_matcher``); in training torchvision also appends the ground-truth
    boxes to the proposals, which the panel leaves out.

    An empty or inverted box (``x2 <= x1`` or ``y2 <= y1``) is shown as a message, never raised.

    Readout (:attr:`state`): ``box``, ``best anchor IoU``, ``positive anchors (this box)``, ``positive
    anchors (all boxes)``, ``ignored anchors``, ``negative anchors``, ``best proposal IoU`` and
    ``box-head positives (this box)``.

    Args:
        image: ``Tensor[3, H, W]`` in ``[0, 1]``; ``None`` (with ``gt_boxes=None``): notebook 05's image,
            item 0 of ``helpers.shapes.ShapesDataset(1, seed=0, size=128)``.
        gt_boxes: ``Tensor[M, 4]``, pixel-edge ``(x1, y1, x2, y2)``; ``None`` with ``image=None``.
        anchors: ``Tensor[A, 4]``; ``None``: as :class:`AnchorMatchPanel`.
        box: the index of the box the sliders move (its corners, rounded to whole pixels, are the start).
        proposals: ``Tensor[P, 4]`` in the image's pixels, ``None`` (no proposals drawn or counted) or
            ``"trained"`` (default): the shipped model's (:func:`helpers.widgets.trained.shipped_model`).
        dpi: PNG resolution.
    """

    title = "a ground-truth box and its anchors"
    RPN_FG, RPN_BG = 0.7, 0.3
    HEAD_FG = 0.5

    def __init__(self, image=None, gt_boxes=None, anchors=None, box: int = 0, proposals="trained",
                 dpi: int = 72) -> None:
        import torch

        from helpers.boxes import box_iou

        image, gt_boxes, anchors = _anchor_inputs(image, gt_boxes, anchors)     # checked as AnchorMatchPanel's
        if isinstance(box, bool) or not isinstance(box, int) or not 0 <= box < len(gt_boxes):
            raise ValueError(f"box must be an int in [0, {len(gt_boxes) - 1}] (an index of gt_boxes), got {box!r}")
        if isinstance(proposals, str):
            if proposals != "trained":
                raise ValueError(f"proposals must be a Tensor[P, 4], None or 'trained', got {proposals!r}")
            proposals = trained_proposals(image)
        elif proposals is not None and (not isinstance(proposals, torch.Tensor) or proposals.dim() != 2
                                        or proposals.shape[1] != 4):
            raise ValueError("proposals must be a Tensor[P, 4], None or 'trained'")
        self.picture, self.gt_boxes, self.anchors, self.box_index = image, gt_boxes.float(), anchors.float(), box
        self.proposals = None if proposals is None else proposals.float()
        self.anchor_iou = box_iou(self.gt_boxes, self.anchors)              # [M, A]: rows of the fixed boxes
        self.proposal_iou = None if self.proposals is None else box_iou(self.gt_boxes, self.proposals)  # [M, P]
        h, w = image.shape[1:]
        start = [int(round(float(v))) for v in self.gt_boxes[box]]
        sliders = {}
        for name, value, top in zip(("x1", "y1", "x2", "y2"), start, (w, h, w, h)):
            sliders[name] = widgets.IntSlider(value=min(max(value, 0), int(top)), min=0, max=int(top), step=1,
                                              description=name, continuous_update=False)
        super().__init__(sliders, figsize=(6.4, 4.6), dpi=dpi)

    def build(self) -> None:
        from matplotlib.lines import Line2D

        from helpers.viz import RPN_COLORS, draw_boxes, draw_image

        others = [b for i, b in enumerate(self.gt_boxes.tolist()) if i != self.box_index]
        self.ax = self.fig.add_axes((0.02, 0.02, 0.58, 0.88))
        draw_image(self.picture, self.ax, dim=0.35)
        self.other_lines = draw_boxes(others, self.ax, color=RPN_COLORS["gt"], linewidth=1.0, zorder=3)
        self.ignored_lines = draw_boxes([], self.ax, color=RPN_COLORS["ignored"], linewidth=0.6, alpha=0.5)
        self.positive_lines = draw_boxes([], self.ax, color=RPN_COLORS["positive"], linewidth=1.2)
        self.proposal_lines = draw_boxes([], self.ax, color=RPN_COLORS["proposal"], linewidth=1.2,
                                         linestyle="--", zorder=2.5)
        self.gt_lines = draw_boxes([], self.ax, color=RPN_COLORS["gt"], linewidth=2.5, zorder=3)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        handles = [Line2D([], [], color=RPN_COLORS["gt"], linewidth=2.5, label="the moved box"),
                   Line2D([], [], color=RPN_COLORS["gt"], linewidth=1.0, label="other boxes"),
                   Line2D([], [], color=RPN_COLORS["positive"], label="positive anchor"),
                   Line2D([], [], color=RPN_COLORS["ignored"], label="ignored anchor")]
        if self.proposals is not None:
            handles.append(Line2D([], [], color=RPN_COLORS["proposal"], linestyle="--",
                                  label="proposal, box-head\npositive of the moved box"))
        self.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.61, 0.9), fontsize=8, frameon=False)
        self.title_text = heading_text(self.ax, fontsize=9)

    def dynamic(self):
        # the anchors and proposals change; the frame and the ground truth are drawn again above them
        return [self.ignored_lines, self.positive_lines, self.proposal_lines, *self.ax.spines.values(),
                self.other_lines, self.gt_lines, self.title_text]

    def update(self, x1: int, y1: int, x2: int, y2: int) -> dict:
        with one_thread():                     # tiny tensors: a second thread costs more than it saves
            return self._update(x1, y1, x2, y2)

    def _update(self, x1: int, y1: int, x2: int, y2: int) -> dict:
        import torch

        from helpers.boxes import box_iou
        from helpers.rpn import match_anchors
        from helpers.viz import box_outlines

        g = self.box_index
        moved = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)
        self.gt_lines.set_segments(list(box_outlines(moved)))
        if x2 <= x1 or y2 <= y1:
            for lines in (self.positive_lines, self.ignored_lines, self.proposal_lines):
                lines.set_segments([])
            self.title_text.set_text(f"({x1}, {y1}, {x2}, {y2}): an empty box")
            raise PanelMessage(f"the box ({x1}, {y1}, {x2}, {y2}) is empty or inverted (x2 must exceed x1, y2 must "
                               "exceed y1): it overlaps nothing, so no anchor can be matched to it")
        iou = self.anchor_iou.clone()
        iou[g] = box_iou(moved, self.anchors)[0]                               # [M, A]: one row recomputed
        matches = match_anchors(iou, self.RPN_FG, self.RPN_BG, True)            # [A]
        positive, ignored = matches >= 0, matches == -2
        self.positive_lines.set_segments(list(box_outlines(self.anchors[positive])))
        self.ignored_lines.set_segments(list(box_outlines(self.anchors[ignored])))
        state = {
            "box": f"({x1}, {y1}, {x2}, {y2})",
            "best anchor IoU": round(float(iou[g].max()), 4),
            "positive anchors (this box)": int((matches == g).sum()),
            "positive anchors (all boxes)": int(positive.sum()),
            "ignored anchors": int(ignored.sum()),
            "negative anchors": int((matches == -1).sum()),
        }
        if self.proposals is not None:
            p_iou = self.proposal_iou.clone()
            p_iou[g] = box_iou(moved, self.proposals)[0]                          # [M, P]
            head = match_anchors(p_iou, self.HEAD_FG, self.HEAD_FG, False)      # [P]
            mine = head == g
            self.proposal_lines.set_segments(list(box_outlines(self.proposals[mine])))
            state["best proposal IoU"] = round(float(p_iou[g].max()), 4) if len(self.proposals) else 0.0
            state["box-head positives (this box)"] = int(mine.sum())
        self.title_text.set_text(f"box ({x1}, {y1}, {x2}, {y2}): {state['positive anchors (this box)']} positive "
                                 "anchors" + ("" if self.proposals is None else
                                              f", {state['box-head positives (this box)']} proposals"))
        return state


def _anchor_inputs(image, gt_boxes, anchors):
    """``(image, gt_boxes, anchors)`` of an anchor panel, defaults filled in and checked (see
    :class:`AnchorMatchPanel`'s arguments)."""
    import torch

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
    return image, gt_boxes, anchors


def trained_proposals(image):
    """The shipped trained model's proposals for ``image`` (``Tensor[3, H, W]``), after NMS, in the image's
    own pixels: ``Tensor[P, 4]`` (the RPN works on the transformed image; its boxes are scaled back)."""
    import torch

    from helpers.widgets.trained import image_features, shipped_model

    found = image_features(shipped_model(), image)
    (th, tw), (h, w) = found.image_sizes[0], found.original_size
    return found.proposals * torch.tensor([w / tw, h / th, w / tw, h / th])

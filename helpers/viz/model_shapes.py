"""The tensor shapes of the whole model, measured on one forward pass and drawn once (notebook 08;
notebooks 04-07 link to it).

:func:`measure_model_shapes` runs a torchvision ``MaskRCNN`` (the series' shapes model, or any other)
on one image in eval mode with forward hooks on its modules and records the shape of what each
stage hands to the next: the image, the normalised batch, every pyramid level, the proposals, the
7x7 and 14x14 RoIAlign outputs, the box head's features, class scores and box deltas, the
detections, the mask head's features and 28x28 logits, and the masks pasted into the image.
Nothing is typed in by hand: :func:`draw_model_shapes` writes exactly the measured shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text
from torch import Tensor, nn

from helpers.viz.palettes import PIPELINE_COLORS


@dataclass(frozen=True)
class ShapeStep:
    """One stage of the forward pass and the shape of what it hands on.

    Attributes:
        key: a short identifier (``"image"``, ``"P2"``, ``"box_roi"``, ``"mask_logits"``...).
        label: what the tensor is, in words, for the figure.
        shape: the measured shape, outermost dimension first.
        branch: ``"trunk"`` (one image: image, pyramid, proposals), ``"box"`` or ``"mask"``.
    """

    key: str
    label: str
    shape: tuple[int, ...]
    branch: str

    @property
    def shape_text(self) -> str:
        """The shape as the figure writes it: ``"[1000, 64, 7, 7]"``."""
        return "[" + ", ".join(str(d) for d in self.shape) + "]"


@dataclass
class ModelShapes:
    """What :func:`measure_model_shapes` measured: the steps in the order the data flows."""

    steps: list[ShapeStep] = field(default_factory=list)

    def __getitem__(self, key: str) -> ShapeStep:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(f"no step {key!r}; the steps are {[s.key for s in self.steps]}")

    def keys(self) -> list[str]:
        """The steps' keys, in the order the data flows."""
        return [s.key for s in self.steps]


def measure_model_shapes(model: nn.Module, image: Tensor) -> ModelShapes:
    """Run ``model`` (a Mask R-CNN) on one ``image`` and record every stage's output shape.

    Args:
        model: the series' :class:`helpers.maskrcnn.SeriesMaskRCNN` or torchvision's ``MaskRCNN`` (it is put
            in eval mode and left there).
        image: ``Tensor[3, H, W]``, values in [0, 1].

    Returns:
        :class:`ModelShapes`, read by forward hooks on ``model.transform``, ``model.backbone``,
        ``model.rpn`` and the modules of ``model.roi_heads`` (the pooled RoIs as the inputs of its two heads) during one ``model([image])`` call, plus
        the shape of the returned ``masks``.

    Raises:
        TypeError: ``model`` lacks the modules of a torchvision ``MaskRCNN`` (``transform``,
            ``backbone``, ``rpn``, ``roi_heads`` with a mask branch), or ``image`` is not a tensor.
        ValueError: ``image`` is not ``[3, H, W]``.
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"image must be a Tensor[3, H, W], got {type(image).__name__}")
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a Tensor[3, H, W], got shape {tuple(image.shape)}")
    heads = getattr(model, "roi_heads", None)
    needed = ("box_head", "box_predictor", "mask_head", "mask_predictor")
    if not all(hasattr(model, m) for m in ("transform", "backbone", "rpn")) or heads is None \
            or not all(getattr(heads, m, None) is not None for m in needed):
        raise TypeError("model must be a Mask R-CNN (transform, backbone, rpn, and roi_heads with "
                        f"{', '.join(needed)}), got {type(model).__name__}")
    seen: dict[str, Any] = {}

    def keep(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            seen.setdefault(name, output)
        return hook

    handles = [model.transform.register_forward_hook(keep("transform")),
               model.backbone.register_forward_hook(keep("backbone")),
               model.rpn.register_forward_hook(keep("rpn"))]
    handles += [getattr(heads, m).register_forward_hook(keep(m)) for m in needed]

    def keep_input(name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            seen.setdefault(name, args[0])
        return hook

    # the pooled RoIs are what the two heads receive (the same in torchvision's assembly and the series' model)
    handles += [heads.box_head.register_forward_pre_hook(keep_input("box_roi_pool")),
                heads.mask_head.register_forward_pre_hook(keep_input("mask_roi_pool"))]
    model.eval()
    try:
        with torch.no_grad():
            detections = model([image])[0]
    finally:
        for h in handles:
            h.remove()

    batch = seen["transform"][0].tensors
    levels = seen["backbone"]
    proposals = seen["rpn"][0][0]
    class_logits, box_deltas = seen["box_predictor"]
    fcs = sum(isinstance(m, nn.Linear) for m in heads.box_head.modules())
    convs = sum(isinstance(m, nn.Conv2d) for m in heads.mask_head.modules())
    steps = [ShapeStep("image", "image", tuple(image.shape), "trunk"),
             ShapeStep("batch", "normalised batch", tuple(batch.shape), "trunk")]
    for k, (name, level) in enumerate(levels.items()):
        stride = batch.shape[-1] // level.shape[-1]
        label = f"P{k + 2}" if name.isdigit() else name
        steps.append(ShapeStep(label, f"{label}, stride {stride}", tuple(level.shape), "trunk"))
    steps += [
        ShapeStep("proposals", "proposals (RPN, after NMS)", tuple(proposals.shape), "trunk"),
        ShapeStep("box_roi", "RoIAlign 7 x 7", tuple(seen["box_roi_pool"].shape), "box"),
        ShapeStep("box_features", f"box head: {fcs} fully connected layers", tuple(seen["box_head"].shape), "box"),
        ShapeStep("class_logits", "class scores", tuple(class_logits.shape), "box"),
        ShapeStep("box_deltas", "box deltas, 4 per class", tuple(box_deltas.shape), "box"),
        ShapeStep("detections", "detections (score, NMS)", tuple(detections["boxes"].shape), "box"),
        ShapeStep("mask_roi", "RoIAlign 14 x 14", tuple(seen["mask_roi_pool"].shape), "mask"),
        ShapeStep("mask_features", f"mask head: {convs} convolutions", tuple(seen["mask_head"].shape), "mask"),
        ShapeStep("mask_logits", "deconv, 1 x 1 conv: a mask per class", tuple(seen["mask_predictor"].shape), "mask"),
        ShapeStep("masks", "masks pasted into the image", tuple(detections["masks"].shape), "mask"),
    ]
    return ModelShapes(steps)


@dataclass
class ModelShapesArtists:
    """What :func:`draw_model_shapes` drew: the shape text of each step by key, every text, the boxes."""

    ax: Axes
    shape_texts: dict[str, Text]
    texts: list[Text]
    boxes: dict[str, Any]


def draw_model_shapes(shapes: ModelShapes, ax: Axes | None = None) -> ModelShapesArtists:
    """Draw the tensor shapes of the whole model as a flow: trunk on top, then the box branch on the
    left and the mask branch on the right (at test time the mask branch runs on the detections).

    Args:
        shapes: from :func:`measure_model_shapes`.
        ax: where to draw; ``None`` makes a new 9 x 6.6 inch figure.

    Returns:
        :class:`ModelShapesArtists`; ``shape_texts[key].get_text()`` is the shape drawn for each step.
    """
    if not isinstance(shapes, ModelShapes) or not shapes.steps:
        raise TypeError("shapes must be the ModelShapes that measure_model_shapes returns")
    trunk = [s for s in shapes.steps if s.branch == "trunk"]
    levels = [s for s in trunk if s.key not in ("image", "batch", "proposals")]
    pair = ("class_logits", "box_deltas")  # the box predictor's two outputs, side by side
    box_rows: list[list[ShapeStep]] = []
    for step in (s for s in shapes.steps if s.branch == "box"):
        if step.key == pair[1] and box_rows and box_rows[-1][0].key == pair[0]:
            box_rows[-1].append(step)
        else:
            box_rows.append([step])
    mask_rows = [[s] for s in shapes.steps if s.branch == "mask"]
    width, row_h, h = 8.8, 0.8, 0.5  # 8.8 in: the stored PNG <= 1000 px wide at 110 dpi
    n_rows = 3 + max(len(box_rows), len(mask_rows))
    height = n_rows * row_h + 0.2
    if ax is None:
        fig, ax = plt.subplots(figsize=(width, height))
        fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=1.0)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_axis_off()
    texts: list[Text] = []
    shape_texts: dict[str, Text] = {}
    boxes: dict[str, Any] = {}
    pads = 0.06
    note = dict(fontsize=8, style="italic", color=PIPELINE_COLORS["arrow"])

    def box(step: ShapeStep, x: float, y: float, w: float, face: str) -> None:
        patch = FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad={pads},rounding_size=0.08", facecolor=face,
                               edgecolor=PIPELINE_COLORS["edge"], linewidth=0.9)
        ax.add_patch(patch)
        boxes[step.key] = patch
        texts.append(ax.text(x + w / 2, y + h * 0.72, step.label, ha="center", va="center", fontsize=8.5))
        shape = ax.text(x + w / 2, y + h * 0.26, step.shape_text, ha="center", va="center", fontsize=9,
                        family="monospace", fontweight="bold", color=PIPELINE_COLORS["note"])
        texts.append(shape)
        shape_texts[step.key] = shape

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, linewidth=1.0,
                                     color=PIPELINE_COLORS["arrow"], shrinkA=0, shrinkB=0))

    top = height - 0.15 - h
    # row 1: image -> normalised batch
    box(shapes["image"], 1.3, top, 2.6, PIPELINE_COLORS["data"])
    box(shapes["batch"], 5.1, top, 2.6, PIPELINE_COLORS["stage"])
    arrow((3.9 + pads, top + h / 2), (5.1 - pads, top + h / 2))
    texts.append(ax.text(4.5, top + h / 2 + 0.08, "transform", ha="center", va="bottom", **note))
    # row 2: the pyramid levels side by side
    y2 = top - row_h
    lw = (width - 0.3 - 0.15 * (len(levels) - 1)) / max(len(levels), 1)
    for k, step in enumerate(levels):
        box(step, 0.15 + k * (lw + 0.15), y2, lw, PIPELINE_COLORS["stage"])
    arrow((6.4, top - pads), (6.4, y2 + h + pads))
    texts.append(ax.text(6.5, top - pads - 0.02, "backbone + FPN", ha="left", va="top", **note))
    # row 3: proposals
    y3 = y2 - row_h
    box(shapes["proposals"], 3.2, y3, 2.6, PIPELINE_COLORS["data"])
    arrow((4.5, y2 - pads), (4.5, y3 + h + pads))
    texts.append(ax.text(4.6, y2 - pads - 0.02, "RPN", ha="left", va="top", **note))
    # the two branches, one row per step (the box predictor's two outputs share a row)
    col_w, gap = 3.6, 0.2
    for rows, x0, colour in ((box_rows, 0.4, PIPELINE_COLORS["stage"]), (mask_rows, 5.0, PIPELINE_COLORS["base"])):
        for k, row in enumerate(rows):
            y = y3 - (k + 1) * row_h
            w = (col_w - gap * (len(row) - 1)) / len(row)
            for j, step in enumerate(row):
                face = PIPELINE_COLORS["data"] if step.key in ("detections", "masks") else colour
                box(step, x0 + j * (w + gap), y, w, face)
            if k:
                for j in range(max(len(row), len(rows[k - 1]))):
                    xs = x0 + col_w / 2 if max(len(row), len(rows[k - 1])) == 1 else \
                        x0 + j * ((col_w - gap) / 2 + gap) + (col_w - gap) / 4
                    arrow((xs, y + row_h - pads), (xs, y + h + pads))
    arrow((3.2 - pads, y3 + h / 2), (0.4 + col_w / 2, y3 - row_h + h + pads))
    # the mask branch pools the *detections* (at test time), on the same pyramid
    det = boxes["detections"]
    first_mask = boxes[mask_rows[0][0].key]
    arrow((0.4 + col_w + pads, det.get_y() + h / 2), (5.0 - pads, first_mask.get_y() + h / 2))
    texts.append(ax.text(4.68, (det.get_y() + first_mask.get_y() + h) / 2, "detected\nboxes", ha="right",
                         va="center", **note))
    return ModelShapesArtists(ax=ax, shape_texts=shape_texts, texts=texts, boxes=boxes)

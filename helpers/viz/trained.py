"""Pictures of the *trained* shapes model, stage by stage (the closing sections of notebooks 05-07),
in the spirit of matterport's ``inspect_model`` notebook:

- notebook 05b: proposals before and after NMS (:func:`draw_proposal_panels`), and proposal recall
  against the IoU threshold (:func:`draw_recall_curves`);
- notebook 06: the box head's refined boxes against their proposals and the ground truth
  (:func:`draw_box_refinement`), and the class probabilities of those proposals (:func:`draw_class_scores`);
- notebook 07: predicted 28 x 28 masks beside their targets (:func:`draw_mask_pairs`), and pasted
  masks scored pixel by pixel as hit / missed / extra (:func:`mask_errors`, :func:`draw_mask_errors`).

Boxes are torchvision's detection boxes ``(x1, y1, x2, y2)`` in the pixel-edge convention (the
image spans ``[0, W] x [0, H]``) and are drawn shifted by -0.5, as :func:`helpers.viz.draw_detections`
draws them. Every class keeps its colour of :data:`helpers.viz.palettes.CLASS_COLORS`, for truth and
prediction alike; mask errors take :data:`helpers.viz.palettes.MASK_ERROR_COLORS`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyArrowPatch, Patch, Rectangle

from helpers.viz.core import ArrayLike, as_numpy, as_rgb, axes_or_new, image_extent, set_pixel_limits
from helpers.viz.detection import draw_boxes, draw_image, place_box_labels
from helpers.viz.palettes import CLASS_COLORS, COLORS, MASK_ERROR_COLORS, RPN_COLORS, class_color

__all__ = ["draw_proposal_panels", "draw_recall_curves", "draw_box_refinement", "draw_class_scores",
           "draw_mask_pairs", "mask_errors", "draw_mask_errors", "MISS", "HIT", "EXTRA"]

HIT, MISS, EXTRA = 1, 2, 3
"""The codes of :func:`mask_errors` (0: a pixel neither mask claims)."""


def _boxes(values: ArrayLike, name: str) -> np.ndarray:
    array = as_numpy(values, name)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {tuple(array.shape)}")
    return array


def _axes_list(axes: Any, n: int, what: str) -> list[Axes]:
    out = list(np.atleast_1d(np.asarray(axes, dtype=object)).ravel())
    if len(out) != n:
        raise ValueError(f"axes must hold {n} axes ({what}), got {len(out)}")
    return out


def _class_color(label: int) -> str:
    return class_color(label, CLASS_COLORS)


# -- notebook 05b ------------------------------------------------------------------------------
def draw_proposal_panels(image: ArrayLike, gt_boxes: ArrayLike, stages: Mapping[str, ArrayLike],
                         axes: Any = None, *, linewidth: float = 0.7) -> dict[str, Any]:
    """One panel per stage of the RPN's output: the image (dimmed), its true boxes (black, thick)
    and that stage's proposals (red, thin), the count in the title.

    Args:
        image: ``Tensor[3, H, W]`` in ``[0, 1]``.
        gt_boxes: ``Tensor[G, 4]`` the true boxes.
        stages: ``title -> Tensor[N, 4]`` proposals, e.g. ``{"before NMS": ..., "after NMS": ...}``;
            the title is followed by ``": N proposals"``.
        axes: one axes per stage; ``None`` makes a figure with one row.
        linewidth: the proposals' lines; their opacity is ``clip(60 / N, 0.15, 0.8)``, so that a few
            hundred boxes read as a density and a few dozen as boxes.

    Returns:
        ``{title: LineCollection}`` of the proposals, plus ``"gt"``: the list of true-box collections.
    """
    if not isinstance(stages, Mapping) or not stages:
        raise ValueError("stages must be a non-empty mapping of title -> proposals [N, 4]")
    gt = _boxes(gt_boxes, "gt_boxes")
    if axes is None:
        _, axes = plt.subplots(1, len(stages), figsize=(4.0 * len(stages), 4.3))
    axes = _axes_list(axes, len(stages), "one per stage")
    out: dict[str, Any] = {"gt": []}
    for ax, (title, boxes) in zip(axes, stages.items()):
        b = _boxes(boxes, f"stages[{title!r}]")
        draw_image(image, ax=ax, dim=0.45)
        alpha = float(np.clip(60 / max(len(b), 1), 0.15, 0.8))
        out[title] = draw_boxes(b, ax=ax, color=RPN_COLORS["proposal"], linewidth=linewidth, alpha=alpha,
                                label="proposals")
        out["gt"].append(draw_boxes(gt, ax=ax, color=RPN_COLORS["gt"], linewidth=2.0, label="ground truth",
                                    zorder=3))
        ax.set_title(f"{title}: {len(b)} proposals", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=8, framealpha=0.9)
    return out


def draw_recall_curves(thresholds: ArrayLike, recalls: Mapping[str, ArrayLike], ax: Axes | None = None, *,
                       marks: Sequence[float] = (0.5, 0.7), title: str | None = None) -> dict[str, Any]:
    """Proposal recall (the fraction of true boxes some proposal overlaps by IoU >= t) against t.

    Args:
        thresholds: ``[T]`` IoU thresholds, increasing, in ``[0, 1]``.
        recalls: ``curve name -> [T]`` recall at each threshold (values in ``[0, 1]``), one line each,
            in fixed colours: the first red (as proposals are drawn in notebooks 05 and 05b), then blue, then grey.
        marks: thresholds marked by a dotted line, at which each curve's value is written in the
            legend (each must be one of ``thresholds``).
        title: axes title.

    Returns:
        ``{"lines": {name: Line2D}, "labels": {name: legend text}}``; the legend entry of each curve
        reads ``"name; 0.97 at 0.5; 0.81 at 0.7"``.
    """
    t = as_numpy(thresholds, "thresholds").reshape(-1)
    if t.size == 0 or np.any(np.diff(t) <= 0) or t.min() < 0 or t.max() > 1:
        raise ValueError("thresholds must be increasing values in [0, 1]")
    if not isinstance(recalls, Mapping) or not recalls:
        raise ValueError("recalls must be a non-empty mapping of name -> recall per threshold")
    for m in marks:
        if not np.any(np.isclose(t, m)):
            raise ValueError(f"marks must be among thresholds; {m} is not")
    colors = (RPN_COLORS["proposal"], RPN_COLORS["anchor"], RPN_COLORS["negative"])
    ax = axes_or_new(ax, figsize=(4.6, 3.4))
    lines, labels = {}, {}
    for k, (name, values) in enumerate(recalls.items()):
        r = as_numpy(values, f"recalls[{name!r}]").reshape(-1)
        if r.shape != t.shape or r.min() < 0 or r.max() > 1:
            raise ValueError(f"recalls[{name!r}] must hold {t.size} values in [0, 1]")
        at = [float(r[int(np.argmin(np.abs(t - m)))]) for m in marks]
        # the marked values go in the legend entry (never on the plot, where curves meet)
        labels[name] = name + "".join(f"; {v:.2f} at {m:g}" for v, m in zip(at, marks))
        (lines[name],) = ax.plot(t, r, "-o", color=colors[k % len(colors)], markersize=3, label=labels[name])
    for m in marks:
        ax.axvline(m, color=COLORS["grid"], linewidth=0.8, linestyle=":", zorder=0)
    ax.set_xlim(t.min() - 0.02, t.max() + 0.02)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("IoU threshold t")
    ax.set_ylabel("recall: true boxes with a\nproposal of IoU ≥ t")
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return {"lines": lines, "labels": labels}


# -- notebook 06 -------------------------------------------------------------------------------
def draw_box_refinement(image: ArrayLike, proposals: ArrayLike, refined: ArrayLike, gt_boxes: ArrayLike,
                        labels: Sequence[int] | ArrayLike, names: Sequence[str], ax: Axes | None = None, *,
                        ious: tuple[ArrayLike, ArrayLike] | None = None, title: str | None = None) -> dict[str, Any]:
    """Proposals (dashed) and the box head's refinement of each (solid) in its class's colour, arrows
    from the proposal's corners to the refined box's, and the true boxes in black.

    Args:
        image: ``Tensor[3, H, W]`` in ``[0, 1]``.
        proposals, refined: ``Tensor[P, 4]`` each, row ``i`` of ``refined`` being proposal ``i`` refined.
        gt_boxes: ``Tensor[G, 4]``.
        labels: ``[P]`` the class each pair is drawn in (its colour in :data:`CLASS_COLORS`).
        names: class names (for the labels).
        ious: optional ``([P], [P])``: IoU with the matched true box before and after; written
            beside each pair as ``name  0.62 → 0.91``.
        title: axes title.

    Returns:
        ``{"proposals": [Rectangle], "refined": [Rectangle], "arrows": [FancyArrowPatch], "texts": [Text]}``.
    """
    p, r = _boxes(proposals, "proposals"), _boxes(refined, "refined")
    if p.shape != r.shape:
        raise ValueError(f"refined must have one box per proposal: {len(r)} for {len(p)}")
    label_list = [int(v) for v in as_numpy(labels, "labels").reshape(-1)]
    if len(label_list) != len(p):
        raise ValueError(f"labels must have one entry per proposal: {len(label_list)} for {len(p)}")
    if ious is not None:
        before, after = (as_numpy(v, "ious").reshape(-1) for v in ious)
        if len(before) != len(p) or len(after) != len(p):
            raise ValueError("ious must be two sequences with one IoU per proposal")
    ax = axes_or_new(ax, figsize=(4.6, 4.6))
    draw_image(image, ax=ax, dim=0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    draw_boxes(_boxes(gt_boxes, "gt_boxes"), ax=ax, color=COLORS["truth"], linewidth=1.2, zorder=2)
    out: dict[str, list[Any]] = {"proposals": [], "refined": [], "arrows": [], "texts": []}
    label_texts: list[str] = []
    label_colors: list[str] = []
    for i, (pb, rb, label) in enumerate(zip(p, r, label_list)):
        color = _class_color(label)
        for box, style, key in ((pb, "--", "proposals"), (rb, "-", "refined")):
            rect = Rectangle((box[0] - 0.5, box[1] - 0.5), box[2] - box[0], box[3] - box[1], fill=False,
                             edgecolor=color, linestyle=style, linewidth=1.6, zorder=3)
            ax.add_patch(rect)
            out[key].append(rect)
        for a, b in (((pb[0], pb[1]), (rb[0], rb[1])), ((pb[2], pb[3]), (rb[2], rb[3]))):
            arrow = FancyArrowPatch((a[0] - 0.5, a[1] - 0.5), (b[0] - 0.5, b[1] - 0.5), arrowstyle="-|>",
                                    mutation_scale=9, color=color, linewidth=1.2, zorder=4, shrinkA=0, shrinkB=0)
            ax.add_patch(arrow)
            out["arrows"].append(arrow)
        text = names[label] if 0 <= label < len(names) else str(label)
        if ious is not None:
            text += f" {before[i]:.2f}→{after[i]:.2f}"
        label_texts.append(text)
        label_colors.append(color)
    if title:  # before the labels: they are placed on the axes as laid out with it
        ax.set_title(title, fontsize=10)
    # each pair's label on the box that holds both, where it covers no other label (place_box_labels)
    around = np.concatenate([np.minimum(p[:, :2], r[:, :2]), np.maximum(p[:, 2:], r[:, 2:])], axis=1).reshape(-1, 4)
    out["texts"] = place_box_labels(ax, around, label_texts, label_colors)
    handles = [Rectangle((0, 0), 1, 1, fill=False, linestyle="--", edgecolor="#555555", label="proposal"),
               Rectangle((0, 0), 1, 1, fill=False, linestyle="-", edgecolor="#555555", label="refined"),
               Rectangle((0, 0), 1, 1, fill=False, edgecolor=COLORS["truth"], label="ground truth")]
    ax.legend(handles=handles, loc="best", fontsize=8, framealpha=0.9)
    return out


def draw_class_scores(probabilities: ArrayLike, names: Sequence[str], row_labels: Sequence[str],
                      ax: Axes | None = None, *, row_colors: Sequence[str] | None = None,
                      title: str | None = None) -> dict[str, Any]:
    """A table of class probabilities (rows: RoIs, columns: classes) as a heat map with its values
    written in every cell, and a colour bar.

    Args:
        probabilities: ``[R, C]`` softmax probabilities (each row sums to 1).
        names: the ``C`` class names (column headings).
        row_labels: the ``R`` row headings.
        row_colors: optional colour of each row heading (e.g. the row's class colour).
        title: axes title.

    Returns:
        ``{"image": AxesImage, "texts": [[Text] * C] * R, "colorbar": Colorbar}``.
    """
    prob = as_numpy(probabilities, "probabilities")
    if prob.ndim != 2 or prob.shape[1] != len(names) or prob.shape[0] != len(row_labels):
        raise ValueError(f"probabilities must be [len(row_labels), len(names)] = [{len(row_labels)}, {len(names)}], "
                         f"got {tuple(prob.shape)}")
    if prob.size and (prob.min() < 0 or prob.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    ax = axes_or_new(ax, figsize=(4.6, 0.45 * len(row_labels) + 1.2))
    image = ax.imshow(prob, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    texts = [[ax.text(j, i, f"{prob[i, j]:.2f}", ha="center", va="center", fontsize=8,
                      color="white" if prob[i, j] > 0.5 else "black") for j in range(prob.shape[1])]
             for i in range(prob.shape[0])]
    ax.set_xticks(range(len(names)), list(names), fontsize=8)
    ax.set_yticks(range(len(row_labels)), list(row_labels), fontsize=8)
    if row_colors is not None:
        for tick, color in zip(ax.get_yticklabels(), row_colors):
            tick.set_color(color)
    ax.tick_params(length=0)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    colorbar.set_label("softmax probability", fontsize=8)
    colorbar.ax.tick_params(labelsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return {"image": image, "texts": texts, "colorbar": colorbar}


# -- notebook 07 -------------------------------------------------------------------------------
def mask_errors(predicted: ArrayLike, truth: ArrayLike) -> np.ndarray:
    """Pixel by pixel, what a predicted binary mask gets right and wrong.

    Args:
        predicted, truth: ``[H, W]`` binary masks (bool, or numbers where nonzero means "in the mask").

    Returns:
        ``int64 [H, W]``: :data:`HIT` (1) in both, :data:`MISS` (2) only in ``truth``, :data:`EXTRA` (3)
        only in ``predicted``, 0 in neither. IoU = hits / (hits + misses + extras).
    """
    p, t = as_numpy(predicted, "predicted"), as_numpy(truth, "truth")
    if p.ndim != 2 or p.shape != t.shape:
        raise ValueError(f"predicted and truth must be [H, W] masks of one shape, got {tuple(p.shape)} "
                         f"and {tuple(t.shape)}")
    p, t = p != 0, t != 0
    codes = np.zeros(p.shape, dtype=np.int64)
    codes[p & t] = HIT
    codes[t & ~p] = MISS
    codes[p & ~t] = EXTRA
    return codes


def _error_rgba(codes: np.ndarray) -> np.ndarray:
    layer = np.zeros((*codes.shape, 4))
    for code, key in ((HIT, "hit"), (MISS, "missed"), (EXTRA, "extra")):
        layer[codes == code] = (*to_rgb(MASK_ERROR_COLORS[key]), 1.0)
    return layer


def _mask_pairs(predicted: ArrayLike, other: ArrayLike, labels: Sequence[int] | ArrayLike, other_name: str,
                shape: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``predicted`` and ``other`` as equal-shape 3-D arrays and ``labels`` as one int per mask (checked)."""
    pred, other_array = as_numpy(predicted, "predicted"), as_numpy(other, other_name)
    if pred.ndim != 3 or pred.shape != other_array.shape:
        raise ValueError(f"predicted and {other_name} must both be {shape}, got {tuple(pred.shape)} and "
                         f"{tuple(other_array.shape)}")
    label_list = [int(v) for v in as_numpy(labels, "labels").reshape(-1)]
    if len(label_list) != pred.shape[0] or pred.shape[0] == 0:
        raise ValueError(f"labels must have one entry per mask ({pred.shape[0]}), got {len(label_list)}")
    return pred, other_array, label_list


def draw_mask_pairs(predicted: ArrayLike, targets: ArrayLike, labels: Sequence[int] | ArrayLike,
                    names: Sequence[str], axes: Any = None, *, threshold: float = 0.5) -> dict[str, Any]:
    """Predicted ``M x M`` mask probabilities (top row) above their ``M x M`` targets (bottom row),
    one column per proposal, framed in its class's colour; each column titled with the IoU of the
    two masks thresholded at ``threshold`` (on the ``M x M`` grid).

    Args:
        predicted: ``[P, M, M]`` probabilities (the sigmoid of the class's channel).
        targets: ``[P, M, M]`` soft targets in ``[0, 1]``.
        labels: ``[P]`` classes.
        names: class names.
        axes: ``[2, P]`` axes; ``None`` makes a figure.
        threshold: where both are cut for the IoU in the titles.

    Returns:
        ``{"predicted": [AxesImage], "targets": [AxesImage], "ious": ndarray[P], "colorbar": Colorbar}``.
    """
    pred, targ, label_list = _mask_pairs(predicted, targets, labels, "targets", "[P, M, M]")
    n = pred.shape[0]
    if axes is None:
        fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 0.9, 4.3), squeeze=False)
    grid = np.asarray(axes, dtype=object).reshape(2, -1)
    if grid.shape[1] != n:
        raise ValueError(f"axes must be [2, {n}], got {grid.shape}")
    m = pred.shape[-1]
    out: dict[str, Any] = {"predicted": [], "targets": []}
    ious = []
    for k in range(n):
        p, t = pred[k] > threshold, targ[k] >= threshold
        union = (p | t).sum()
        ious.append(float((p & t).sum() / union) if union else 1.0)
        color = _class_color(label_list[k])
        for row, (array, key) in enumerate(((pred[k], "predicted"), (targ[k], "targets"))):
            ax = grid[row, k]
            out[key].append(ax.imshow(array, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                      extent=image_extent(m, m)))
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(2.5)
            ax.set_xticks([])
            ax.set_yticks([])
        name = names[label_list[k]] if 0 <= label_list[k] < len(names) else str(label_list[k])
        grid[0, k].set_title(f"{k}: {name}\nIoU {ious[-1]:.2f}", fontsize=8, color="black")
    grid[0, 0].set_ylabel(f"predicted\n{m}×{m}", fontsize=8)
    grid[1, 0].set_ylabel(f"target\n{m}×{m}", fontsize=8)
    out["ious"] = np.array(ious)
    out["colorbar"] = grid[0, 0].figure.colorbar(out["predicted"][0], ax=list(grid.ravel()), fraction=0.03, pad=0.02)
    out["colorbar"].set_label("probability / target", fontsize=8)
    out["colorbar"].ax.tick_params(labelsize=8)
    return out


def draw_mask_errors(image: ArrayLike, predicted: ArrayLike, truth: ArrayLike, labels: Sequence[int] | ArrayLike,
                     names: Sequence[str], axes: Any = None, *, margin: int = 4,
                     ious: ArrayLike | None = None) -> dict[str, Any]:
    """Each object's predicted mask against its true mask, pixel by pixel: hit, missed and extra
    pixels in :data:`MASK_ERROR_COLORS` over the dimmed image, one panel per object zoomed to the
    two masks (plus ``margin`` pixels), titled with the class (in its colour) and the IoU.

    Args:
        image: ``Tensor[3, H, W]`` in ``[0, 1]``.
        predicted, truth: ``[N, H, W]`` binary masks, row ``i`` of each for object ``i``.
        labels: ``[N]`` classes (of the true objects).
        names: class names.
        axes: ``N`` axes; ``None`` makes a figure with one row.
        margin: pixels around the union of the two masks shown in each panel.
        ious: optional ``[N]`` IoUs to write in the titles; by default each is computed from the codes.

    Returns:
        ``{"codes": [int64 [H, W]] * N, "counts": [{"hit", "missed", "extra"}] * N, "ious": ndarray[N],
        "overlays": [AxesImage] * N}``.
    """
    pred, true, label_list = _mask_pairs(predicted, truth, labels, "truth", "[N, H, W]")
    n = pred.shape[0]
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.9))
    axes = _axes_list(axes, n, "one per object")
    h, w = pred.shape[1:]
    out: dict[str, Any] = {"codes": [], "counts": [], "overlays": []}
    computed = []
    for k, ax in enumerate(axes):
        codes = mask_errors(pred[k], true[k])
        counts = {key: int((codes == code).sum()) for key, code in (("hit", HIT), ("missed", MISS), ("extra", EXTRA))}
        total = counts["hit"] + counts["missed"] + counts["extra"]
        computed.append(counts["hit"] / total if total else 1.0)
        draw_image(image, ax=ax, dim=0.7)
        out["overlays"].append(ax.imshow(_error_rgba(codes), extent=image_extent(h, w), interpolation="nearest"))
        ys, xs = np.nonzero(codes)
        if len(xs):
            ax.set_xlim(max(xs.min() - margin, 0) - 0.5, min(xs.max() + margin, w - 1) + 0.5)
            ax.set_ylim(min(ys.max() + margin, h - 1) + 0.5, max(ys.min() - margin, 0) - 0.5)
        else:
            set_pixel_limits(ax, h, w)
        ax.set_xticks([])
        ax.set_yticks([])
        out["codes"].append(codes)
        out["counts"].append(counts)
    shown = np.array(computed) if ious is None else as_numpy(ious, "ious").reshape(-1)
    if len(shown) != n:
        raise ValueError(f"ious must hold one IoU per object ({n}), got {len(shown)}")
    for k, ax in enumerate(axes):
        name = names[label_list[k]] if 0 <= label_list[k] < len(names) else str(label_list[k])
        c = out["counts"][k]
        ax.set_title(f"{name}: IoU {shown[k]:.3f}\n{c['missed']} missed, {c['extra']} extra", fontsize=8,
                     color=_class_color(label_list[k]) if label_list[k] else "black")
    handles = [Patch(facecolor=MASK_ERROR_COLORS[key], label=key) for key in ("hit", "missed", "extra")]
    axes[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False,
                    borderaxespad=0.0)
    out["ious"] = np.array(computed)
    return out

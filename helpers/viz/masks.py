"""Notebook 07's pictures: mask targets of proposals, per-class probability maps learned with two
losses, and the steps of pasting an ``M x M`` mask back into the image.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from helpers.viz.core import ArrayLike, as_box, as_map, as_numpy, axes_or_new, box_rectangle, image_extent, show_image
from helpers.viz.detection import place_box_labels
from helpers.viz.palettes import COLORS, COMPARISON_COLORS, MASK_COLORS


def draw_mask_targets(image: ArrayLike, gt_mask: ArrayLike, boxes: ArrayLike, targets: ArrayLike,
                      axes: Sequence[Axes] | None = None, *, title: str | None = None) -> dict[str, Any]:
    """An image with its ground-truth mask and P proposals, and beside it each proposal's M x M target.

    Args:
        image: ``Tensor[3, H, W]`` in [0, 1].
        gt_mask: ``Tensor[H, W]`` the ground-truth mask the proposals are matched to (outlined in black).
        boxes: ``Tensor[P, 4]`` proposals ``(x1, y1, x2, y2)``, drawn in :data:`MASK_COLORS` order.
        targets: ``Tensor[P, M, M]`` the targets (values in [0, 1], drawn in grey levels).
        axes: ``P + 1`` axes (image first); ``None`` makes a figure with one row.

    Returns:
        ``{"boxes": [Rectangle] * P, "targets": [AxesImage] * P, "outline": QuadContourSet,
        "numbers": [Text] * P}`` (the proposals' numbers, placed by
        :func:`helpers.viz.detection.place_box_labels`).
    """
    box_array = as_numpy(boxes, "boxes").reshape(-1, 4)
    target_array = as_numpy(targets, "targets")
    if target_array.ndim != 3 or target_array.shape[0] != box_array.shape[0]:
        raise ValueError(f"targets must be [P, M, M] with one target per box ({box_array.shape[0]} boxes), "
                         f"got shape {tuple(target_array.shape)}")
    p = box_array.shape[0]
    if axes is None:
        _, axes = plt.subplots(1, p + 1, figsize=(8.8, 18.0 / (p + 2) + 1.0),  # <= 1000 px wide at 110 dpi
                               gridspec_kw={"width_ratios": [2.0] + [1] * p}, layout="constrained")
    axes = list(np.atleast_1d(axes))
    if len(axes) != p + 1:
        raise ValueError(f"axes must hold {p + 1} axes (the image, then one per proposal), got {len(axes)}")
    show_image(axes[0], image)
    mask = as_map(gt_mask)
    outline = axes[0].contour(np.arange(mask.shape[1]), np.arange(mask.shape[0]), mask, levels=[0.5],
                              colors=[COLORS["truth"]], linewidths=1.2)
    rects, shown = [], []
    for k in range(p):
        color = MASK_COLORS[k % len(MASK_COLORS)]
        rects.append(box_rectangle(axes[0], box_array[k], color))
        m = target_array.shape[-1]
        ax = axes[k + 1]
        shown.append(ax.imshow(target_array[k], cmap="Greys_r", vmin=0, vmax=1, interpolation="nearest",
                               extent=image_extent(target_array.shape[1], m)))
        for spine in ax.spines.values():
            spine.set_edgecolor(color)
            spine.set_linewidth(2.5)
        soft = int(((target_array[k] > 0) & (target_array[k] < 1)).sum())
        ax.set_title(f"target {k}: {m}x{m}\n{soft} soft cells", fontsize=8)  # framed in the box's colour
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    axes[0].set_title(title or "proposals and the true mask (black)", fontsize=9)
    # each proposal's number on a patch of its colour, where it covers no other number
    numbers = place_box_labels(axes[0], box_array, [str(k) for k in range(p)],
                               [MASK_COLORS[k % len(MASK_COLORS)] for k in range(p)], shift=0.0)
    return {"boxes": rects, "targets": shown, "outline": outline, "numbers": numbers}


def draw_class_competition(truths: Mapping[str, ArrayLike], probabilities: Mapping[str, Mapping[str, ArrayLike]],
                           axes: Any = None, *, threshold: float = 0.5) -> dict[str, Any]:
    """Probability maps per class learned with two losses (rows), with the true masks outlined.

    Args:
        truths: ``class name -> Tensor[M, M]`` true masks (outlined in black).
        probabilities: ``loss name -> {class name -> Tensor[M, M]}`` probability maps in [0, 1].
        axes: ``[rows, classes]`` axes; ``None`` makes a figure.
        threshold: the level drawn as a white contour (the mask the threshold would keep).

    Returns:
        ``{(loss, class): AxesImage}``.
    """
    names, rows = list(truths), list(probabilities)
    if axes is None:
        _, axes = plt.subplots(len(rows), len(names), figsize=(2.7 * len(names) + 0.8, 2.5 * len(rows)),
                               squeeze=False)
    axes = np.asarray(axes).reshape(len(rows), len(names))
    out: dict[Any, Any] = {}
    for r, loss in enumerate(rows):
        for c, name in enumerate(names):
            ax = axes[r, c]
            prob = as_map(probabilities[loss][name])
            truth = as_map(truths[name])
            h, w = prob.shape
            out[(loss, name)] = ax.imshow(prob, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                          extent=image_extent(h, w))
            ax.contour(np.arange(w), np.arange(h), truth, levels=[0.5], colors=[COLORS["truth"]], linewidths=1.2)
            if (prob > threshold).any() and (prob <= threshold).any():
                ax.contour(np.arange(w), np.arange(h), prob, levels=[threshold], colors=["white"],
                           linewidths=1.0, linestyles="--")
            ax.set_xticks([])
            ax.set_yticks([])
            kept = int((prob > threshold).sum())
            ax.set_title(f"{loss}: p({name})\n{kept} px > {threshold:g}, max {prob.max():.2f}", fontsize=8)
    return out


def draw_paste_steps(mask: ArrayLike, padded: ArrayLike, box: ArrayLike, expanded_box: ArrayLike,
                     int_box: ArrayLike, pasted: ArrayLike, image: ArrayLike, axes: Sequence[Axes] | None = None,
                     *, gt_mask: ArrayLike | None = None, threshold: float = 0.5, margin: int = 4) -> dict[str, Any]:
    """The four steps of pasting one M x M mask into the image, side by side.

    1. the ``M x M`` probabilities; 2. padded by one cell of zeros (the original cells framed);
    3. resized to the integer box and pasted: the detection box (red, dashed), the box scaled by
    ``(M + 2) / M`` (orange) and the pixels of its integer version (grey: pixels ``x1 .. x2``
    inclusive, so from ``x1 - 0.5`` to ``x2 + 0.5``), zoomed to the box; 4. the mask thresholded
    at ``threshold`` over the image, the true mask outlined in black.

    Args:
        mask: ``Tensor[M, M]``; padded: ``Tensor[M + 2p, M + 2p]``.
        box, expanded_box: ``(x1, y1, x2, y2)`` floats; int_box: the truncated expanded box.
        pasted: ``Tensor[H, W]`` pasted probabilities; image: ``Tensor[3, H, W]``.
        gt_mask: optional ``Tensor[H, W]`` true mask to outline in step 4.

    Returns:
        ``{"mask", "padded", "pasted", "overlay": AxesImage, "boxes": [Rectangle] * 3}``.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 4, figsize=(8.5, 2.9), layout="constrained")  # <= 1000 px wide at 110 dpi
        fig.get_layout_engine().set(wspace=0.08)  # room between the panels and their titles
    axes = list(np.atleast_1d(axes))
    if len(axes) != 4:
        raise ValueError(f"axes must hold 4 axes, got {len(axes)}")
    m_arr, p_arr, pasted_arr = as_map(mask), as_map(padded), as_map(pasted)
    m, s = m_arr.shape[0], p_arr.shape[0]
    pad = (s - m) // 2
    out: dict[str, Any] = {}
    out["mask"] = axes[0].imshow(m_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                 extent=image_extent(m, m))
    axes[0].set_title(f"1. the {m}x{m} mask\n(sigmoid)", fontsize=9)
    out["padded"] = axes[1].imshow(p_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                   extent=image_extent(s, s))
    axes[1].add_patch(Rectangle((pad - 0.5, pad - 0.5), m, m, fill=False, edgecolor="white", linestyle="--",
                                linewidth=1.2))
    axes[1].set_title(f"2. padded by {pad}:\n{s}x{s}", fontsize=9)
    h, w = pasted_arr.shape
    out["pasted"] = axes[2].imshow(pasted_arr, cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
                                   extent=image_extent(h, w))
    ix1, iy1, ix2, iy2 = as_box(int_box)
    rects = [box_rectangle(axes[2], box, COLORS["roi"], "--", label="detection box"),
             box_rectangle(axes[2], expanded_box, COLORS["aligned"], label=f"box x {s}/{m}"),
             box_rectangle(axes[2], (ix1 - 0.5, iy1 - 0.5, ix2 + 0.5, iy2 + 0.5), COLORS["grid"], ":",
                   label="integer box's pixels")]
    axes[2].set_xlim(ix1 - margin - 0.5, ix2 + margin + 0.5)
    axes[2].set_ylim(iy2 + margin + 0.5, iy1 - margin - 0.5)
    axes[2].legend(loc="lower center", fontsize=8, bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
    axes[2].set_title(f"3. resized to {int(ix2 - ix1 + 1)}x{int(iy2 - iy1 + 1)} px,\npasted", fontsize=9)
    out["overlay"] = show_image(axes[3], image)
    tint = np.zeros((h, w, 4))
    tint[..., 0], tint[..., 3] = 1.0, 0.45 * (pasted_arr > threshold)
    axes[3].imshow(tint, extent=image_extent(h, w), interpolation="nearest")
    if gt_mask is not None:
        gt = as_map(gt_mask)
        axes[3].contour(np.arange(w), np.arange(h), gt, levels=[0.5], colors=[COLORS["truth"]], linewidths=1.0)
    axes[3].set_title(f"4. > {threshold:g} over the image\n(truth: black)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    out["boxes"] = rects
    return out


def draw_paste_profiles(profiles: Mapping[str, ArrayLike], ax: Axes | None = None, *,
                        truth: ArrayLike | None = None, box: ArrayLike | None = None, start: int = 0,
                        threshold: float = 0.5) -> dict[str, Line2D]:
    """One image row of pasted mask probabilities, one curve per pasting variant (e.g. padding 0 / 1).

    Args:
        profiles: ``label -> Tensor[L]`` the values of pixels ``start .. start + L - 1`` of one row.
        truth: optional ``Tensor[L]`` the true mask on the same pixels (drawn as grey bars).
        box: optional ``(x1, y1, x2, y2)``; its ``x1`` and ``x2`` are drawn as dashed vertical lines.
        start: the x of the first value.
        threshold: drawn as a dotted horizontal line.

    Returns:
        ``label -> Line2D`` (``get_xdata()`` are pixel x, ``get_ydata()`` the values).
    """
    ax = axes_or_new(ax, figsize=(7.0, 2.8))
    lines: dict[str, Line2D] = {}
    if truth is not None:
        t = as_numpy(truth, "truth").reshape(-1)
        ax.bar(start + np.arange(t.size), t, width=1.0, color=COLORS["grid"], alpha=0.35, label="true mask")
    palette = COMPARISON_COLORS
    for k, (label, values) in enumerate(profiles.items()):
        v = as_numpy(values, label).reshape(-1)
        lines[label] = ax.plot(start + np.arange(v.size), v, "o-", markersize=3.5, linewidth=1.4,
                               color=palette[k % len(palette)], label=label)[0]
    if box is not None:
        x1, _, x2, _ = as_box(box)
        for x in (x1, x2):
            ax.axvline(x, color=COLORS["roi"], linestyle="--", linewidth=1.2)
        ax.text(x1, 1.08, "box x1", color=COLORS["roi"], fontsize=8, ha="center")
        ax.text(x2, 1.08, "box x2", color=COLORS["roi"], fontsize=8, ha="center")
    ax.axhline(threshold, color=COLORS["text"], linestyle=":", linewidth=1.0)
    ax.set_ylim(-0.05, 1.18)
    ax.set_xlabel("x (pixel centre)")
    ax.set_ylabel("pasted probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return lines



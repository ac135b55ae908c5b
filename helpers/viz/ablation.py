"""Notebook 10's picture: the RoIAlign-versus-RoIPool ablation as grouped bars with error bars."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from matplotlib.axes import Axes

from helpers.viz.core import axes_or_new
from helpers.viz.palettes import COLORS


def draw_ablation_bars(rows: Sequence[Mapping[str, Any]], kind: str = "mask",
                       metrics: Sequence[str] = ("AP", "AP50", "AP75"), ax: Axes | None = None, *,
                       scale: float = 100.0) -> dict[tuple[int, str, str], Any]:
    """Grouped bars of the ablation: for each stride and metric, RoIAlign next to RoIPool, ± std error bars.

    Args:
        rows: :func:`helpers.ablation.summarise`'s rows (``feature_stride``, ``op``, and
            ``"<kind>_<metric>": (mean, std)``).
        kind: ``"mask"`` or ``"box"``.
        metrics: which metrics, one group of bars each per stride.
        scale: multiply values (100: AP in percent, as the paper prints it).

    Returns:
        ``(stride, op, metric) -> the Rectangle of that bar`` (its height is the scaled mean).
    """
    if kind not in ("mask", "box"):
        raise ValueError(f"kind must be 'mask' or 'box', got {kind!r}")
    if not rows:
        raise ValueError("rows must hold at least one summary row")
    ax = axes_or_new(ax, figsize=(7.0, 3.2))
    strides = sorted({int(r["feature_stride"]) for r in rows})
    ops = [op for op in ("align", "pool") if any(r["op"] == op for r in rows)]
    color = {"align": COLORS["roialign"], "pool": COLORS["roipool"]}
    label = {"align": "RoIAlign", "pool": "RoIPool"}
    width = 1.0 / len(ops)  # bars a group wide, groups 1.15 apart: neighbouring 8 pt values stay apart
    bars: dict[tuple[int, str, str], Any] = {}
    ticks, tick_labels = [], []
    for g, (stride, metric) in enumerate((s, m) for s in strides for m in metrics):
        x0 = 1.15 * g + (g // len(metrics)) * 0.6  # a gap between strides
        for j, op in enumerate(ops):
            row = next((r for r in rows if int(r["feature_stride"]) == stride and r["op"] == op), None)
            if row is None:
                continue
            mean, std = row[f"{kind}_{metric}"]
            bar = ax.bar(x0 + (j - (len(ops) - 1) / 2) * width, mean * scale, width, yerr=std * scale, capsize=3,
                         color=color[op], label=label[op] if g == 0 else None)[0]
            ax.text(bar.get_x() + width / 2, mean * scale + std * scale + 1, f"{mean * scale:.1f}", ha="center",
                    va="bottom", fontsize=8)
            bars[(stride, op, metric)] = bar
        ticks.append(x0)
        tick_labels.append(f"{metric}\nstride {stride}")
    ax.set_xticks(ticks)
    ax.set_xticklabels(tick_labels, fontsize=8)
    ax.set_ylabel(f"{kind} {'AP (%)' if scale == 100 else 'AP'}")
    ax.set_ylim(0, 1.08 * scale)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return bars

"""Notebook 04's pictures: which feature-pyramid level a box is pooled from, and the cells of each level.

The numbers come from the caller (``helpers.fpn.map_levels`` and ``raw_levels``) or from the small
pure functions here (:func:`level_boundaries`, :func:`cell_border_segments`), so a notebook can
assert on exactly what is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from helpers.viz.core import ArrayLike, as_numpy, axes_or_new
from helpers.viz.palettes import COLORS, LEVEL_COLORS


def level_boundaries(k_min: int = 2, k_max: int = 5, canonical_scale: float = 224,
                     canonical_level: int = 4) -> np.ndarray:
    """The box sides ``sqrt(wh)`` at which the FPN level steps up: ``224 * 2 ** (k - 4)`` for ``k_min < k <= k_max``.

    With the defaults: ``[112, 224, 448]`` (P2 below 112, P3 from 112, P4 from 224, P5 from 448).

    Returns:
        ``float64[k_max - k_min]``
    """
    ks = np.arange(k_min + 1, k_max + 1, dtype=np.float64)
    return canonical_scale * 2.0 ** (ks - canonical_level)


def cell_border_segments(stride: float, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """The borders of the cells of a feature map of ``stride`` inside a window, in image pixels.

    Cell ``j`` of a map with stride ``s`` is centred on image pixel ``s * j`` (what RoIAlign's
    ``spatial_scale = 1 / s`` assumes), so its borders are at ``s * (j - 0.5)`` and ``s * (j + 0.5)``.

    Args:
        stride: the map's stride in pixels.
        x_range, y_range: ``(low, high)`` of the window, image pixels.

    Returns:
        ``float64[n, 2, 2]``: vertical borders first (left to right), then horizontal ones (top to
        bottom), each ``[[x_a, y_a], [x_b, y_b]]`` spanning the window.
    """
    if not stride > 0:
        raise ValueError(f"stride must be > 0, got {stride}")
    (x0, x1), (y0, y1) = x_range, y_range

    def borders(low: float, high: float) -> np.ndarray:
        first = np.ceil(low / stride + 0.5)
        last = np.floor(high / stride + 0.5)
        return stride * (np.arange(first, last + 1) - 0.5)

    vertical = [[[x, y0], [x, y1]] for x in borders(x0, x1)]
    horizontal = [[[x0, y], [x1, y]] for y in borders(y0, y1)]
    return np.array(vertical + horizontal, dtype=np.float64).reshape(-1, 2, 2)


@dataclass
class LevelCurveArtists:
    """What :func:`draw_level_curve` drew."""

    ax: Axes
    level: Line2D
    """The clamped level against the box side (a step curve)."""
    unclamped: Line2D
    """``floor(4 + log2(side / 224) + eps)`` before clamping (dashed)."""
    boundaries: list[Line2D]
    """One vertical line per boundary of :func:`level_boundaries`."""
    marker: Line2D
    """A single point that panels move to the current box."""


def draw_level_curve(sides: ArrayLike, levels: ArrayLike, unclamped: ArrayLike, ax: Axes | None = None, *,
                     k_min: int = 2, k_max: int = 5, canonical_scale: float = 224, canonical_level: int = 4,
                     title: str | None = "which level a box is pooled from") -> LevelCurveArtists:
    """Plot the FPN level against the box side ``sqrt(wh)`` on a log axis.

    The numbers come from the caller (``helpers.fpn.map_levels`` and ``raw_levels``), so a notebook
    can assert on exactly what is drawn.

    Args:
        sides: ``[S]`` box sides ``sqrt(wh)`` in pixels, increasing.
        levels: ``[S]`` the clamped levels of those boxes.
        unclamped: ``[S]`` the levels before clamping (``floor`` of ``raw_levels``).
        ax: where to draw; ``None`` makes a new figure.
        k_min, k_max, canonical_scale, canonical_level: the rule's constants (for the guides).
        title: axes title.

    Returns:
        :class:`LevelCurveArtists`.
    """
    s, k, u = as_numpy(sides, "sides"), as_numpy(levels, "levels"), as_numpy(unclamped, "unclamped")
    if not (s.shape == k.shape == u.shape) or s.ndim != 1:
        raise ValueError(f"sides, levels and unclamped must be 1-D of one length, got {s.shape}, {k.shape}, {u.shape}")
    ax = axes_or_new(ax, figsize=(6.0, 3.2))
    for level in range(k_min, k_max + 1):
        ax.axhspan(level - 0.5, level + 0.5, color=LEVEL_COLORS.get(level, "#cccccc"), alpha=0.08, linewidth=0)
    (unclamped_line,) = ax.plot(s, u, linestyle="--", color=COLORS["grid"], drawstyle="steps-post",
                                label="floor(4 + log2(side/224)) before clamping")
    (level_line,) = ax.plot(s, k, color=COLORS["truth"], drawstyle="steps-post", linewidth=2,
                            label=f"level used (clamped to {k_min}..{k_max})")
    lines = []
    for b in level_boundaries(k_min, k_max, canonical_scale, canonical_level):
        lines.append(ax.axvline(b, color=COLORS["roi"], linewidth=0.8, linestyle=":"))
        ax.text(b, k_max + 0.62, f"{b:g}", color=COLORS["roi"], ha="center", va="bottom", fontsize=8)
    (marker,) = ax.plot([], [], marker="o", markersize=9, color=COLORS["roi"], linestyle="none", zorder=5)
    ax.set_xscale("log", base=2)
    ticks = [2.0 ** e for e in range(int(np.ceil(np.log2(s.min()))), int(np.floor(np.log2(s.max()))) + 1)] if s.size else []
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("box side sqrt(w h), pixels (log scale)")
    ax.set_ylabel("FPN level k")
    ax.set_yticks(range(int(np.floor(u.min())) if u.size else k_min, k_max + 2))
    ax.set_ylim((np.floor(u.min()) if u.size else k_min) - 0.5, k_max + 1.5)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    if title:
        ax.set_title(title, pad=14)
    return LevelCurveArtists(ax=ax, level=level_line, unclamped=unclamped_line, boundaries=lines, marker=marker)



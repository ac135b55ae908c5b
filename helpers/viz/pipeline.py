"""The map of the series (notebook 00): Mask R-CNN's stages as boxes and arrows, each box naming the
notebook that rebuilds it. Which notebook sits where comes from :data:`helpers.series.SERIES`.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Any, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.text import Text

from helpers.series import SERIES, Notebook, number_key
from helpers.viz.palettes import PIPELINE_COLORS

PIPELINE_NOTEBOOKS: tuple[tuple[str, str], ...] = tuple((nb.number, nb.short_title) for nb in SERIES if nb.stage)
"""The notebooks the map shows (those of :data:`helpers.series.SERIES` with a ``stage``: 01-11, 05b
included), as ``(number, short title)``; the default of :func:`draw_pipeline`."""


@dataclass
class PipelineArtists:
    """What :func:`draw_pipeline` drew: boxes by key, arrows as ``(from, to)`` keys, all texts."""

    ax: Axes
    boxes: dict[str, Any]
    arrows: list[tuple[str, str]]
    texts: list[Text]

    def notebooks_named(self) -> list[str]:
        """The notebook numbers written in the figure ("notebook NN", or "notebooks NN, NNb" for a stage
        taught in two notebooks), read back from its texts, in the series' order."""
        found = set()
        for text in self.texts:
            for listed in re.findall(r"notebooks? (\d\d[a-z]?(?:, \d\d[a-z]?)*)\b", text.get_text()):
                found.update(listed.split(", "))
        return sorted(found, key=number_key)


def draw_pipeline(ax: Axes | None = None, *, notebooks: Sequence[tuple[str, str]] = PIPELINE_NOTEBOOKS,
                  series: Sequence[Notebook] = SERIES) -> PipelineArtists:
    """Draw the map of the series: Mask R-CNN's stages as boxes and arrows, each naming its notebook.

    The top row is the path of one image: image -> backbone + FPN -> RPN -> RoIAlign; below
    RoIAlign, the box head (class + box) and the mask head (the RPN's box names both of its notebooks, 05
and 05b), and below them their outputs, detections
    and masks. RoIAlign's two foundations (01, 03) sit to the left of the heads, arrows up to it; the
    notebooks that use the whole model (08-11) sit in a band underneath. 8.8 inches wide: at the
    series' 110 dpi the stored picture is at most 1000 px wide, shown at its own size (8 pt text). The dashed
    arrow from the box head to the mask head is the inference path: at test time the mask head
    runs on the *detected* boxes, after the box head and NMS (He et al., 2017, section 3.1).

    Args:
        ax: where to draw; ``None`` makes a new 8.8 x 6.16 inch figure (drawn in 9 x 6.3 data units).
        notebooks: ``(number, title)`` of the notebooks to show (defaults to :data:`PIPELINE_NOTEBOOKS`);
            it must name every notebook of ``series`` that has a stage.
        series: the manifest that says where each notebook sits (its ``stage``).

    Returns:
        :class:`PipelineArtists`; :meth:`PipelineArtists.notebooks_named` reads the notebook
        numbers back from the drawn texts, so a notebook can assert that all of them are there.
    """
    titles = dict(notebooks)
    staged = [entry for entry in series if entry.stage]
    missing = [entry.number for entry in staged if entry.number not in titles]
    if missing:
        raise ValueError(f"notebooks must name every notebook with a stage in the series "
                         f"({staged[0].number}-{staged[-1].number}); missing {', '.join(missing)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.8, 6.16))  # with the 0.1 in margins of bbox_inches="tight": 990 px
        fig.subplots_adjust(left=0.0, right=1.0, bottom=0.0, top=1.0)
    ax.set_xlim(0, 9.0)
    ax.set_ylim(0, 6.3)
    ax.set_axis_off()

    stage_colour, base_colour = PIPELINE_COLORS["stage"], PIPELINE_COLORS["base"]
    whole_colour, data_colour = PIPELINE_COLORS["whole"], PIPELINE_COLORS["data"]
    boxes: dict[str, Any] = {}
    texts: list[Text] = []
    centres: dict[str, tuple[float, float, float, float]] = {}

    def box(key: str, x: float, y: float, w: float, h: float, text: str, face: str, bold_first: bool = True,
            fontsize: float = 8.5) -> None:
        patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", facecolor=face,
                               edgecolor=PIPELINE_COLORS["edge"], linewidth=1.0)
        ax.add_patch(patch)
        first, _, rest = text.partition("\n")
        if rest:
            texts.append(ax.text(x + w / 2, y + h * 0.64, first, ha="center", va="center", fontsize=fontsize + 0.5,
                                 fontweight="bold" if bold_first else "normal"))
            texts.append(ax.text(x + w / 2, y + h * 0.3, rest, ha="center", va="center", fontsize=fontsize - 0.5,
                                 color=PIPELINE_COLORS["note"]))
        else:
            texts.append(ax.text(x + w / 2, y + h / 2, first, ha="center", va="center", fontsize=fontsize))
        boxes[key] = patch
        centres[key] = (x, y, w, h)

    arrows: list[tuple[str, str]] = []

    def arrow(a: str, b: str, start: tuple[float, float], end: tuple[float, float], label: str = "",
              dashed: bool = False, rad: float = 0.0, label_xy: tuple[float, float] | None = None) -> None:
        patch = FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, linewidth=1.2,
                                color=PIPELINE_COLORS["arrow"], linestyle="--" if dashed else "-",
                                connectionstyle=f"arc3,rad={rad}")
        ax.add_patch(patch)
        arrows.append((a, b))
        if label:
            lx, ly = label_xy or ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.14)
            texts.append(ax.text(lx, ly, label, ha="center", va="bottom", fontsize=8, color=PIPELINE_COLORS["arrow"],
                                 style="italic"))

    def right(k: str) -> tuple[float, float]:
        x, y, w, h = centres[k]
        return x + w, y + h / 2

    def left(k: str) -> tuple[float, float]:
        x, y, w, h = centres[k]
        return x, y + h / 2

    def nb(stage: str) -> str:
        """The text "notebook NN" naming the notebook of ``stage`` in the series ("notebooks NN, NNb"
        when the stage is taught in two)."""
        numbers = [entry.number for entry in staged if entry.stage == stage]
        return ("notebook " if len(numbers) == 1 else "notebooks ") + ", ".join(numbers)

    row, hh = 4.55, 0.9
    box("image", 0.05, row, 0.9, hh, "image\n3 x H x W", data_colour)
    box("backbone", 1.35, row, 1.55, hh, f"backbone + FPN\n{nb('backbone')}", stage_colour)
    box("rpn", 3.45, row, 1.2, hh, f"RPN\n{nb('rpn')}", stage_colour)   # wide enough for "notebooks 05, 05b"
    box("roialign", 5.4, row, 1.3, hh, f"RoIAlign\n{nb('roialign')}", stage_colour)
    heads, outputs, hw = row - 1.7, row - 3.05, 1.8       # the heads under RoIAlign, their outputs under them
    box("boxhead", 5.0, heads, hw, hh, f"box head\nclass + box, {nb('boxhead')}", stage_colour)
    box("maskhead", 7.15, heads, hw, hh, f"mask head\n{nb('maskhead')}", stage_colour)
    box("detections", 5.0, outputs, hw, hh, "detections\nclass, score, box", data_colour)
    box("masks", 7.15, outputs, hw, hh, "masks\n28 x 28, pasted into the box", data_colour)

    arrow("image", "backbone", right("image"), left("backbone"))
    arrow("backbone", "rpn", right("backbone"), left("rpn"), "feature\nmaps")   # two lines: fits the gap at 8 pt
    arrow("rpn", "roialign", right("rpn"), left("roialign"), "proposals")
    bx, by, bw, bh = centres["backbone"]
    rx, ry, rw, rh = centres["roialign"]
    arrow("backbone", "roialign", (bx + bw * 0.6, by + bh), (rx + rw * 0.4, ry + rh), "the same feature maps",
          rad=-0.3, label_xy=(4.05, row + hh + 0.5))
    arrow("roialign", "boxhead", (5.9 + 0.3, ry), (5.9 + 0.3, heads + hh), "7 x 7", label_xy=(6.55, heads + hh + 0.3))
    arrow("roialign", "maskhead", right("roialign"), (7.15 + hw / 2, heads + hh), "14 x 14",
          label_xy=(8.45, heads + hh + 0.3))
    arrow("boxhead", "detections", (5.0 + hw / 2, heads), (5.0 + hw / 2, outputs + hh))
    arrow("maskhead", "masks", (7.15 + hw / 2, heads), (7.15 + hw / 2, outputs + hh))
    arrow("boxhead", "maskhead", right("boxhead"), left("maskhead"), dashed=True)
    texts.append(ax.text(7.075, (heads + outputs + hh) / 2, "at test time:\nthe detected boxes",
                         fontsize=8, va="center", ha="center", color=PIPELINE_COLORS["arrow"], style="italic"))

    # RoIAlign's foundations, left of the heads
    box("bilinear", 0.6, heads, 1.85, 0.8, f"bilinear interpolation\n{nb('bilinear')}", base_colour)
    box("roipool", 2.75, heads, 1.85, 0.8, f"RoIPool vs RoIAlign\n{nb('roipool')}", base_colour)
    for key in ("bilinear", "roipool"):
        x, y, w, h = centres[key]
        arrow(key, "roialign", (x + w / 2, y + h), (rx + rw * (0.1 if key == "bilinear" else 0.35), ry), dashed=True)

    # the notebooks that use the whole model, in a band underneath
    texts.append(ax.text(0.1, 1.3, "the whole model", fontsize=9, fontweight="bold", ha="left", va="center"))
    band = [entry.number for entry in staged if entry.stage == "whole model"]
    gap, x0 = 0.2, 0.05
    width = min(3.2, (9.0 - 2 * x0 - gap * (len(band) - 1)) / max(len(band), 1))  # four: 2.07 each
    for k, number in enumerate(band):
        box(f"nb{number}", x0 + k * (width + gap), 0.1, width, 0.95,
            f"notebook {number}\n{textwrap.fill(titles[number], int(34 * width / 3.2))}", whole_colour)
    return PipelineArtists(ax=ax, boxes=boxes, arrows=arrows, texts=texts)



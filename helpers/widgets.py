"""Slider panels for the notebooks, built only from core ipywidgets.

Every panel is a :class:`Panel`: a row of sliders, a picture and a readout of the numbers the
picture shows. The picture is a matplotlib :class:`~matplotlib.figure.Figure` drawn with the Agg
backend and sent to a ``widgets.Image`` as PNG bytes. That one design choice buys a lot:

- it works with ipywidgets 8 (JupyterLab) and with the 7.7 line that Colab ships, without ipympl;
- nothing is printed into an ``Output`` widget, so nbval sees the same outputs every run;
- the artists are created once in :meth:`Panel.build` and only *moved* in :meth:`Panel.update`
  (``set_data``, ``set_xy``, ``set_text``...), so a slider move costs one redraw, not a new plot;
- a browser test can read the image bytes back and compare them with :meth:`Panel.png`.

A slider move never raises: :meth:`Panel.refresh` catches every exception. An expected problem
(an RoI made empty by the sliders) is raised by the subclass as :class:`PanelMessage` and shown
in the readout; anything else is shown too and kept in :attr:`Panel.error` so tests can fail on it.

Writing a panel::

    class MyPanel(Panel):
        def build(self):                       # create artists once
            self.ax = self.fig.add_subplot()
            (self.line,) = self.ax.plot([], [])

        def update(self, a, b):                # one keyword per slider
            self.line.set_data([0, 1], [a, b])
            return {"a": a, "b": b}            # the numbers the picture shows

    panel = MyPanel({"a": widgets.FloatSlider(...), "b": widgets.FloatSlider(...)})
    panel           # in a notebook: the live panel
    panel.set(a=2)  # from code: move sliders, redraw once, return the readout numbers
"""

from __future__ import annotations

import html
import io
import traceback
from typing import Any, Mapping

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["Panel", "PanelMessage", "format_readout"]


class PanelMessage(ValueError):
    """Raised by :meth:`Panel.update` for a state that cannot be drawn (shown, never a traceback)."""


def format_readout(numbers: Mapping[str, Any], digits: int = 4) -> str:
    """Format the readout numbers as a small HTML table (floats rounded to ``digits``)."""
    rows = []
    for key, value in numbers.items():
        if isinstance(value, float):
            text = f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{round(value, digits):g}"
        else:
            text = str(value)
        rows.append(f"<tr><td style='padding-right:1em'>{html.escape(str(key))}</td>"
                    f"<td class='panel-value' data-key='{html.escape(str(key))}'>{html.escape(text)}</td></tr>")
    return "<table class='panel-readout'>" + "".join(rows) + "</table>"


class Panel:
    """Sliders + a figure rendered to PNG + a readout of the numbers behind the figure.

    Args:
        sliders: name -> core ipywidgets control (``FloatSlider``, ``IntSlider``, ``Dropdown``...).
            Each name is passed as a keyword to :meth:`update`.
        figsize: matplotlib figure size in inches.
        dpi: resolution of the PNG sent to the browser (lower is faster).
        image_height: fixed CSS height of the picture, so the page does not jump on redraw.

    Attributes:
        fig: the matplotlib figure (Agg canvas); display it for a static copy.
        state: the numbers returned by the last successful :meth:`update`.
        error: ``None``, or the text of the last *unexpected* exception raised by :meth:`update`.
        message: ``None``, or the text of the last :class:`PanelMessage`.
        widget: the ``ipywidgets.VBox`` holding everything.
    """

    title: str = "panel"

    def __init__(self, sliders: Mapping[str, widgets.Widget], figsize: tuple[float, float] = (6.0, 4.0),
                 dpi: int = 80, image_height: str | None = None) -> None:
        self.sliders: dict[str, widgets.Widget] = dict(sliders)
        self.fig = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.dpi = dpi
        height = image_height or f"{int(figsize[1] * dpi)}px"
        self.image = widgets.Image(format="png", layout=widgets.Layout(height=height, width="auto"))
        self.readout = widgets.HTML(layout=widgets.Layout(min_width="14em"))
        self.notice = widgets.HTML()
        self.state: dict[str, Any] = {}
        self.error: str | None = None
        self.message: str | None = None
        self._holding = False
        controls = widgets.VBox(list(self.sliders.values()))
        # "row wrap": on a narrow page the readout goes under the picture instead of off-screen.
        picture_and_numbers = widgets.HBox([self.image, self.readout], layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([controls, self.notice, picture_and_numbers])
        self.build()
        for control in self.sliders.values():
            control.observe(self._on_change, names="value")
        self.refresh()

    # -- to be written by subclasses -------------------------------------------------------------
    def build(self) -> None:
        """Create the axes and artists once."""
        raise NotImplementedError

    def update(self, **values: Any) -> dict[str, Any]:
        """Move the artists to match ``values``; return the numbers the figure shows."""
        raise NotImplementedError

    # -- machinery -----------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """The current value of every slider."""
        return {name: control.value for name, control in self.sliders.items()}

    def _on_change(self, change: Any) -> None:
        if not self._holding:
            self.refresh()

    def set(self, **values: Any) -> dict[str, Any]:
        """Move several sliders at once (as a user would), redraw once, return :attr:`state`.

        Values are clipped by the sliders themselves, exactly as a drag would be.
        """
        unknown = set(values) - set(self.sliders)
        if unknown:
            raise TypeError(f"unknown slider(s) {sorted(unknown)}; this panel has {sorted(self.sliders)}")
        self._holding = True
        try:
            for name, value in values.items():
                self.sliders[name].value = value
        finally:
            self._holding = False
        self.refresh()
        return self.state

    def refresh(self) -> None:
        """Recompute, move the artists, re-render the PNG. Never raises."""
        self.message = None
        try:
            self.state = self.update(**self.values())
            self.error = None
            self.notice.value = ""
            self.readout.value = format_readout(self.state)
        except PanelMessage as exc:
            self.message = str(exc)
            self.state = {}
            self.notice.value = f"<b style='color:#b35900'>{html.escape(str(exc))}</b>"
            self.readout.value = ""
        except Exception as exc:  # a bug: show it, keep it for the tests, never crash the widget
            self.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.state = {}
            self.notice.value = f"<b style='color:#c00'>internal error: {html.escape(self.error)}</b>"
            self.readout.value = ""
        self.image.value = self.png()

    def png(self) -> bytes:
        """The figure as PNG bytes, exactly as sent to the browser."""
        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()

    # -- display -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self.values().items())
        return f"{type(self).__name__}({values})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # The live widget for a browser; a short, stable text for everything else (nbval, GitHub).
        if hasattr(self.widget, "_repr_mimebundle_"):  # ipywidgets 8
            bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        else:  # ipywidgets 7.x (Colab) displays widgets through this same mime type
            bundle = {"application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}}
        bundle["text/plain"] = repr(self) + "  (a live panel: run the notebook to drag the sliders)"
        return bundle


# -- notebook 04: which FPN level a box is pooled from ----------------------------------------------
class FPNLevelPanel(Panel):
    """Box width and height -> the FPN level its RoIAlign reads, drawn over the cells of every level.

    Left: the same box (centred on pixel ``centre`` of the resized image) over the cell borders of
    P2 .. P5 (strides 4 .. 32); the level the rule picks is framed in its colour. Right: the level
    against ``sqrt(wh)`` (:func:`helpers.viz.draw_level_curve`) with the box marked.

    Readout (:attr:`state`): ``w``, ``h``, ``sqrt(wh)``, ``k unclamped`` (``floor(4 + log2(sqrt(wh)/224)
    + 1e-6)``), ``level`` (clamped to 2..5), ``feature map`` (``'0'..'3'``), ``stride``,
    ``spatial_scale`` and ``cells w x h`` (the box's size in cells of its level).

    Args:
        width, height: initial box size in pixels.
        max_side: the sliders' maximum.
        centre: ``(x, y)`` of the box centre in image pixels (default: the middle of an 800 x 1088 image).
        dpi: PNG resolution.
    """

    title = "FPN level of a box"
    LEVELS: tuple[int, ...] = (2, 3, 4, 5)

    def __init__(self, width: int = 160, height: int = 96, max_side: int = 1024,
                 centre: tuple[float, float] = (544.0, 400.0), dpi: int = 72) -> None:
        self.centre = (float(centre[0]), float(centre[1]))
        sliders = {
            "w": widgets.IntSlider(value=width, min=4, max=max_side, step=1, description="w (px)",
                                   continuous_update=False),
            "h": widgets.IntSlider(value=height, min=4, max=max_side, step=1, description="h (px)",
                                   continuous_update=False),
        }
        super().__init__(sliders, figsize=(12.0, 3.6), dpi=dpi)

    def build(self) -> None:
        import numpy as np
        import torch
        from matplotlib.collections import LineCollection
        from matplotlib.patches import Rectangle

        from helpers.fpn import map_levels, raw_levels
        from helpers.viz import COLORS, LEVEL_COLORS, draw_level_curve

        grid = self.fig.add_gridspec(1, 6, width_ratios=[1, 1, 1, 1, 0.3, 2.2], left=0.01, right=0.99,
                                     bottom=0.16, top=0.8, wspace=0.08)
        self.level_axes, self.grids, self.rects = [], [], []
        for i, k in enumerate(self.LEVELS):
            ax = self.fig.add_subplot(grid[0, i])
            lines = LineCollection([], colors=COLORS["grid"], linewidths=0.6)
            ax.add_collection(lines)
            rect = Rectangle((0, 0), 1, 1, fill=False, edgecolor=COLORS["roi"], linewidth=2, zorder=3)
            ax.add_patch(rect)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            self.level_axes.append(ax)
            self.grids.append(lines)
            self.rects.append(rect)
        self.curve_ax = self.fig.add_subplot(grid[0, 5])
        sides = 2.0 ** np.linspace(3, 11, 801)                              # 8 .. 2048 px
        boxes = torch.tensor(np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], 1),
                             dtype=torch.float64)
        self.curve = draw_level_curve(sides, map_levels(boxes), torch.floor(raw_levels(boxes)), ax=self.curve_ax,
                                      title=None)
        self.curve_ax.get_legend().remove()                                # the notebook's figure has it
        self.curve_ax.tick_params(labelsize=8)
        self._level_colors = LEVEL_COLORS

    def update(self, w: int, h: int) -> dict[str, Any]:
        import math

        import torch

        from helpers.fpn import FPN_NAMES, map_levels, raw_levels
        from helpers.viz import cell_border_segments

        cx, cy = self.centre
        box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], dtype=torch.float32)
        level = int(map_levels(box)[0])
        unclamped = int(torch.floor(raw_levels(box))[0])
        side = math.sqrt(w * h)
        half = max(0.65 * max(w, h), 24.0)
        x_range, y_range = (cx - half, cx + half), (cy - half, cy + half)
        for k, ax, lines, rect in zip(self.LEVELS, self.level_axes, self.grids, self.rects):
            stride = 2 ** k
            lines.set_segments(list(cell_border_segments(stride, x_range, y_range)))
            rect.set_xy((cx - w / 2, cy - h / 2))
            rect.set_width(w)
            rect.set_height(h)
            ax.set_xlim(*x_range)
            ax.set_ylim(y_range[1], y_range[0])                               # y grows downwards
            chosen = k == level
            for spine in ax.spines.values():
                spine.set_edgecolor(self._level_colors[k] if chosen else "#bbbbbb")
                spine.set_linewidth(3.0 if chosen else 0.8)
            ax.set_title(f"P{k} · '{FPN_NAMES[k - 2]}' · stride {stride}\n{w / stride:.3g} x {h / stride:.3g} cells",
                         fontsize=9, color=self._level_colors[k] if chosen else "#555555",
                         fontweight="bold" if chosen else "normal")
        self.curve.marker.set_data([side], [level])
        stride = 2 ** level
        return {
            "w": w,
            "h": h,
            "sqrt(wh)": round(side, 3),
            "k unclamped": unclamped,
            "level": level,
            "feature map": FPN_NAMES[level - 2],
            "stride": stride,
            "spatial_scale": 1.0 / stride,
            "cells w x h": f"{w / stride:.3g} x {h / stride:.3g}",
        }


# -- notebook 05: which anchors the IoU thresholds make object, ignored or background -------------
class AnchorMatchPanel(Panel):
    """Move the RPN's two IoU thresholds and see which anchors become positives and which are ignored.

    Left: the image, its ground-truth boxes (black), the positive anchors (green: matched to a box,
    label 1) and the ignored ones (orange: best IoU in ``[bg, fg)``, label -1). Negatives (label 0)
    are too many to draw; the readout counts them. The matching is :func:`helpers.rpn.match_anchors`
    on the IoU matrix computed once in the constructor.

    Sliders: ``fg`` (foreground threshold), ``bg`` (background threshold), ``low_quality`` (torchvision's
    ``allow_low_quality_matches``: every box also claims its best anchors). ``bg > fg`` is refused
    with a message.

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

        from helpers.rpn import AnchorGenerator, box_iou

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
        draw_boxes(self.gt_boxes, self.ax, color=RPN_COLORS["gt"], linewidth=2.0, zorder=3)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        handles = [Line2D([], [], color=RPN_COLORS[k], label=t) for k, t in
                   (("gt", "ground truth"), ("positive", "positive anchor"), ("ignored", "ignored anchor"))]
        self.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.65, 0.92), fontsize=8, frameon=False)
        self.title_text = self.ax.set_title("", fontsize=9)

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


# ================================================================================================
# Panels of notebooks 01-03 (bilinear interpolation, RoIAlign, RoIPool versus RoIAlign)
# ================================================================================================
from contextlib import contextmanager  # noqa: E402
from typing import Iterator, Sequence  # noqa: E402

import numpy as _np  # noqa: E402
import torch as _torch  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.patches import Rectangle as _Rectangle  # noqa: E402
from PIL import Image as _PILImage  # noqa: E402

from helpers import roi as _roi  # noqa: E402
from helpers import viz as _viz  # noqa: E402

__all__ += ["BlitPanel", "BilinearPanel", "RoIAlignPanel", "RoIPoolVsAlignPanel"]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run tiny tensor ops on one thread: on a busy machine, waking a second thread for a
    16-element op can cost 10-20 ms (measured with ``torch.repeat_interleave``), one thread microseconds."""
    before = _torch.get_num_threads()
    if before != 1:
        _torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            _torch.set_num_threads(before)


class BlitPanel(Panel):
    """A :class:`Panel` whose PNG redraws only the artists that move.

    Matplotlib spends most of a redraw on what never changes (tick labels, the value written in
    every pixel of a feature map). A subclass lists its moving artists in :meth:`dynamic` (whole
    axes are allowed); :meth:`png` renders everything else once into a cached background, then, on
    every slider move, restores that background, draws the moving artists on top and encodes the
    PNG. The figure itself is an ordinary one: displaying ``panel.fig`` draws everything.

    When something static changes (axis limits...), return a different :meth:`background_key`.
    """

    _background: Any = None
    _background_id: Any = None

    def dynamic(self) -> Sequence[Artist]:
        """The artists (or axes) that slider moves change, drawn in this order over the background."""
        raise NotImplementedError

    def background_key(self) -> Any:
        """Anything that changes when the static part of the picture changes."""
        return None

    def png(self) -> bytes:
        """The figure as PNG bytes, exactly as sent to the browser (background + moving artists)."""
        canvas = self.fig.canvas
        moving = list(self.dynamic())
        key = (self.background_key(), self.fig.bbox.bounds)
        if self._background is None or key != self._background_id:
            shown = [a.get_visible() for a in moving]
            for artist in moving:
                artist.set_visible(False)
            try:
                canvas.draw()
                self._background = canvas.copy_from_bbox(self.fig.bbox)
                self._background_id = key
            finally:
                for artist, visible in zip(moving, shown):
                    artist.set_visible(visible)
        else:
            canvas.restore_region(self._background)
        for artist in moving:
            if artist.get_visible():
                self.fig.draw_artist(artist)
        width, height = canvas.get_width_height()
        image = _PILImage.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


def _feature_map(feature: Any, default: Any) -> Any:
    """A float64 ``Tensor[H, W]`` from ``feature`` (``None``: ``default``); ``[1, 1, H, W]`` is accepted."""
    f = default if feature is None else feature
    if not isinstance(f, _torch.Tensor):
        raise TypeError(f"feature must be a torch.Tensor[H, W], got {type(f).__name__}")
    while f.dim() > 2 and f.shape[0] == 1:
        f = f[0]
    if f.dim() != 2 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"feature must be a single map Tensor[H, W], got shape {tuple(feature.shape)}")
    if not f.is_floating_point():
        raise TypeError(f"feature must be a floating-point tensor, got dtype {f.dtype}")
    return f.detach().to(_torch.float64)


def _rows(values: Any, digits: int = 3) -> dict[str, str]:
    """``{"row 0": "7.2  8", ...}`` for a ``Tensor[PH, PW]`` (rounded for reading)."""
    return {f"row {i}": "  ".join(f"{round(float(v), digits):g}" for v in row) for i, row in enumerate(values)}


def _box_message(x1: float, y1: float, x2: float, y2: float) -> str | None:
    """Why a slider box cannot be pooled (empty or inverted), or ``None`` when it can."""
    problems = []
    if x2 <= x1:
        problems.append(f"x2 = {x2:g} is not right of x1 = {x1:g}")
    if y2 <= y1:
        problems.append(f"y2 = {y2:g} is not below y1 = {y1:g}")
    if not problems:
        return None
    return ("Empty or inverted RoI: " + " and ".join(problems)
            + ". Move the sliders so that x1 < x2 and y1 < y2.")


def _coordinate_slider(name: str, value: float, low: float, high: float, step: float) -> widgets.FloatSlider:
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=name,
                               readout_format=".2f", continuous_update=True,
                               style={"description_width": "initial"})


def _heading(ax: Any, fontsize: float = 11) -> Any:
    """A title-like text above ``ax`` that a :class:`BlitPanel` can redraw alone (``ax.title``
    cannot: matplotlib re-places it only during a full draw)."""
    return ax.text(0.5, 1.02, "", transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)


class BilinearPanel(BlitPanel):
    """Notebook 01: move a sample point over a feature map; see its four neighbours and weights.

    Sliders ``x`` and ``y`` move the point (pixel centres at integers, y down) over ``[-1, W]`` and
    ``[-1, H]``, the region where torchvision's bilinear rules still read the map (further out a
    sample is 0; within one pixel of the border the border value is repeated). The picture shows the
    point and its neighbours A (top-left), B (top-right), C (bottom-left), D (bottom-right), marker
    size and spoke width growing with the weight. The numbers come from
    :func:`helpers.roi.bilinear_weights` and :func:`helpers.roi.bilinear_interpolate`.

    Args:
        feature: ``Tensor[H, W]``; default the 4x4 map 1..16 of the worked example.
        x, y: the starting point; default the worked example's first bin centre (1.6, 1.15).
        step: slider step.

    Attributes:
        weights: :class:`helpers.roi.BilinearWeights` of the current point (float64).
        value: the interpolated value (float).
    """

    title = "bilinear interpolation"

    def __init__(self, feature: Any = None, x: float = 1.6, y: float = 1.15, step: float = 0.05) -> None:
        self.feature = _feature_map(feature, _torch.arange(1.0, 17.0).reshape(4, 4))
        h, w = self.feature.shape
        super().__init__({"x": _coordinate_slider("x", x, -1.0, float(w), step),
                          "y": _coordinate_slider("y", y, -1.0, float(h), step)},
                         figsize=(4.6, 4.4))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax = self.fig.add_subplot()
        self.grid = _viz.draw_feature_grid(self.feature, ax=self.ax)
        bw = _roi.bilinear_weights(h, w, 0.0, 0.0, dtype=_torch.float64)
        self.neighbours = _viz.draw_neighbours(0.0, 0.0, bw.positions, bw.weights, ax=self.ax)
        # beyond this dotted frame torchvision's rules give 0; inside it the border is repeated
        self.ax.add_patch(_Rectangle((-1, -1), w + 1, h + 1, fill=False, linestyle=":",
                                     edgecolor=_viz.COLORS["grid"]))
        self.ax.set_xlim(-1.3, w + 0.3)
        self.ax.set_ylim(h + 0.3, -1.3)
        self.heading = _heading(self.ax)
        self.fig.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.12)

    def dynamic(self) -> list[Artist]:
        n = self.neighbours
        return [n.spokes, n.markers, n.point, *n.labels, self.heading]

    def update(self, x: float, y: float) -> dict[str, Any]:
        h, w = self.feature.shape
        x, y = float(x), float(y)
        with _one_thread():
            self.weights = _roi.bilinear_weights(h, w, x, y, dtype=_torch.float64)
            self.value = float(_roi.bilinear_interpolate(self.feature, x, y))
        positions = self.weights.positions
        self.neighbours.set(x, y, positions, self.weights.weights)
        self.heading.set_text(f"value at ({x:.2f}, {y:.2f}) = {self.value:.4g}")
        numbers: dict[str, Any] = {"x": x, "y": y,
                                   "x_low": int(self.weights.x_low), "y_low": int(self.weights.y_low),
                                   "dx": float(self.weights.lx), "dy": float(self.weights.ly)}
        names = ["A top-left", "B top-right", "C bottom-left", "D bottom-right"]
        for name, (px, py), wt in zip(names, positions.tolist(), self.weights.weights.tolist()):
            numbers[f"{name} value"] = float(self.feature[py, px])
            numbers[f"{name} weight"] = float(wt)
        numbers["interpolated"] = self.value
        return numbers


class RoIAlignPanel(BlitPanel):
    """Notebook 02: drag an RoI over a feature map; see RoIAlign's bins, sample points and output.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the box, in feature-map pixels: ``spatial_scale = 1``),
    ``output size`` (``PH = PW``), ``sampling ratio`` (samples per bin side; 0 = adaptive, which
    torchvision also writes as -1) and ``aligned``. An empty or inverted box shows a message.

    Drawn: the box as given (dotted), the region RoIAlign actually samples (solid: shifted by -0.5
    when aligned, at least 1x1 when not) with its bins (dashed), the sample points (hollow where
    they fall outside ``[-1, W] x [-1, H]`` and count as 0), and on the right the pooled output.
    The numbers come from :func:`helpers.roi.roi_sample_points` and :func:`helpers.roi.roi_align`.

    Args:
        feature: ``Tensor[H, W]``; default a seeded 6x6 map of integers 0..9.
        box: the starting ``(x1, y1, x2, y2)``.
        output_size, sampling_ratio, aligned: starting values (``sampling_ratio <= 0``: adaptive).
        max_output_size, max_sampling_ratio: slider ranges.
        step: step of the coordinate sliders.

    Attributes:
        sampling: :class:`helpers.roi.RoIAlignSampling` of the current box.
        sampled_box: ``(x1, y1, x2, y2)`` of the region actually sampled (the solid rectangle).
        pooled: ``Tensor[PH, PW]`` (float64), the output drawn on the right.
    """

    title = "RoIAlign"

    def __init__(self, feature: Any = None, box: tuple[float, float, float, float] = (1.2, 0.8, 3.6, 3.4),
                 output_size: int = 2, sampling_ratio: int = 2, aligned: bool = False,
                 max_output_size: int = 4, max_sampling_ratio: int = 4, step: float = 0.05) -> None:
        default = _torch.randint(0, 10, (6, 6), generator=_torch.Generator().manual_seed(0)).double()
        self.feature = _feature_map(feature, default)
        h, w = self.feature.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        style = {"description_width": "initial"}
        sliders: dict[str, widgets.Widget] = {
            "x1": _coordinate_slider("x1", x1, -1.5, w + 0.5, step),
            "y1": _coordinate_slider("y1", y1, -1.5, h + 0.5, step),
            "x2": _coordinate_slider("x2", x2, -1.5, w + 0.5, step),
            "y2": _coordinate_slider("y2", y2, -1.5, h + 0.5, step),
            "output_size": widgets.IntSlider(value=output_size, min=1, max=max_output_size,
                                             description="output size", style=style),
            "sampling_ratio": widgets.IntSlider(value=max(int(sampling_ratio), 0), min=0, max=max_sampling_ratio,
                                                description="sampling ratio", style=style),
            "aligned": widgets.Checkbox(value=bool(aligned), description="aligned", indent=False),
        }
        super().__init__(sliders, figsize=(8.0, 4.0))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax, self.ax_out = self.fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
        self.grid = _viz.draw_feature_grid(self.feature, ax=self.ax)
        self.given = _Rectangle((0, 0), 1, 1, fill=False, linestyle=":", linewidth=1.5,
                                edgecolor=_viz.COLORS["roi"], zorder=4)
        self.ax.add_patch(self.given)
        self.roi_artists = _viz.draw_roi_bins((0, 0, 1, 1), 1, ax=self.ax)
        self.points = _viz.draw_sample_points(_np.zeros((1, 2)), ax=self.ax, size=18)
        self.ax.set_xlim(-1.7, w + 0.7)
        self.ax.set_ylim(h + 0.7, -1.7)
        self.heading = _heading(self.ax, fontsize=10)
        self.output = _viz.draw_pooled_output(_torch.zeros(1, 1), ax=self.ax_out, title="RoIAlign output (average)")
        self.fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.12, wspace=0.25)

    def dynamic(self) -> list[Artist]:
        r = self.roi_artists
        return [self.given, r.rect, r.lines, self.points, self.heading, *self.output.artists()]

    def _show(self, visible: bool) -> None:
        for artist in self.dynamic():
            artist.set_visible(visible)
        self.heading.set_visible(True)

    def update(self, x1: float, y1: float, x2: float, y2: float, output_size: int, sampling_ratio: int,
               aligned: bool) -> dict[str, Any]:
        problem = _box_message(x1, y1, x2, y2)
        if problem:
            self._show(False)
            self.heading.set_text("no RoI: x1 < x2 and y1 < y2 needed")
            raise PanelMessage(problem)
        self._show(True)
        x1, y1, x2, y2 = float(x1), float(y1), float(x2), float(y2)
        p, sr, al = int(output_size), int(sampling_ratio), bool(aligned)
        box = _torch.tensor([x1, y1, x2, y2], dtype=_torch.float64)
        with _one_thread():
            s = _roi.roi_sample_points(box, p, 1.0, sr, al)
            self.pooled = _roi.roi_align(self.feature[None, None], [box[None]], p, 1.0, sr, al)[0, 0]
        self.sampling = s
        h, w = self.feature.shape
        # the region actually sampled: from (start_x, start_y), PW bins of bin_w by PH bins of bin_h
        sx, sy = float(s.start_x[0]), float(s.start_y[0])
        self.sampled_box = (sx, sy, sx + float(s.bin_w[0]) * p, sy + float(s.bin_h[0]) * p)
        self.given.set_xy((x1, y1))
        self.given.set_width(x2 - x1)
        self.given.set_height(y2 - y1)
        self.roi_artists.set_box(self.sampled_box, p)
        pts = s.points[0].reshape(-1, 2)
        pts = pts[~_torch.isnan(pts[:, 0])].numpy()
        inside = (pts[:, 0] >= -1) & (pts[:, 0] <= w) & (pts[:, 1] >= -1) & (pts[:, 1] <= h)
        blue, white = _np.array([0.12, 0.47, 0.71, 1.0]), _np.array([1.0, 1.0, 1.0, 1.0])
        self.points.set_offsets(pts)
        self.points.set_facecolors(_np.where(inside[:, None], blue, white))
        self.points.set_edgecolors(_np.where(inside[:, None], white, blue))
        self.output.set_values(self.pooled)
        gh, gw = int(s.grid_h[0]), int(s.grid_w[0])
        mode = "adaptive" if sr <= 0 else "fixed"
        self.heading.set_text(f"{p}x{p} bins, {gh}x{gw} samples per bin ({mode})")
        numbers: dict[str, Any] = {"x1": x1, "y1": y1, "x2": x2, "y2": y2,
                                   "bin width": float(s.bin_w[0]), "bin height": float(s.bin_h[0]),
                                   "samples per bin": gh * gw, "samples outside (read as 0)": int((~inside).sum())}
        numbers.update(_rows(self.pooled))
        return numbers


class RoIPoolVsAlignPanel(BlitPanel):
    """Notebook 03: slide an RoI by sub-pixel steps; RoIPool's quantised bins against RoIAlign's.

    Sliders: ``x1``, ``y1``, ``x2``, ``y2`` (the box) and ``shift``, a horizontal shift added to
    ``x1`` and ``x2`` (0 to ``max_shift`` pixels). Left: RoIPool's bins (whole pixels from the
    rounded corners, shaded; overlaps darker) and the box (dotted). Middle: RoIAlign's exact bins and
    sample points (legacy ``aligned=False``, as in the paper). Right: output bin (0, 0) of both ops
    against the shift, the current shift marked: RoIPool moves in steps, RoIAlign smoothly.
    Numbers from :func:`helpers.roi.roi_pool_bins`, :func:`helpers.roi.roi_pool`,
    :func:`helpers.roi.roi_align`.

    Args:
        feature: ``Tensor[H, W]``; default an 8x8 map whose every pixel holds its own ``x``
            (so an output says *where* the op looked). The curve's y axis is fixed to the map's range.
        box: starting ``(x1, y1, x2, y2)`` before the shift.
        output_size: ``PH = PW`` of both ops.
        sampling_ratio: RoIAlign's samples per bin side.
        max_shift, shift_step: the shift slider's range and step (also the curve's resolution).
        step: step of the coordinate sliders.

    Attributes:
        shifts: ``Tensor[S]`` the shifts of the curve; ``pool_curve``, ``align_curve``: ``Tensor[S]``.
        pool_bins: :class:`helpers.roi.RoIPoolBins` of the shifted box.
        pooled, aligned_out: ``Tensor[PH, PW]`` outputs of RoIPool and RoIAlign for the shifted box.
    """

    title = "RoIPool vs RoIAlign"

    def __init__(self, feature: Any = None, box: tuple[float, float, float, float] = (1.2, 0.8, 4.6, 4.4),
                 output_size: int = 2, sampling_ratio: int = 2, max_shift: float = 2.0,
                 shift_step: float = 0.05, step: float = 0.05) -> None:
        self.feature = _feature_map(feature, _torch.arange(8.0).repeat(8, 1))
        self.output_size = int(output_size)
        self.sampling_ratio = int(sampling_ratio)
        n = int(round(max_shift / shift_step))
        self.shifts = _torch.arange(n + 1, dtype=_torch.float64) * shift_step
        h, w = self.feature.shape
        x1, y1, x2, y2 = (float(v) for v in box)
        sliders: dict[str, widgets.Widget] = {
            "x1": _coordinate_slider("x1", x1, -1.0, float(w), step),
            "y1": _coordinate_slider("y1", y1, -1.0, float(h), step),
            "x2": _coordinate_slider("x2", x2, -1.0, float(w), step),
            "y2": _coordinate_slider("y2", y2, -1.0, float(h), step),
            "shift": _coordinate_slider("shift", 0.0, 0.0, float(self.shifts[-1]), shift_step),
        }
        super().__init__(sliders, figsize=(11.0, 4.2))

    def build(self) -> None:
        h, w = self.feature.shape
        self.ax_pool, self.ax_align, self.ax_curve = self.fig.subplots(
            1, 3, gridspec_kw={"width_ratios": [1, 1, 1.25]})
        p = self.output_size
        for ax, title in ((self.ax_pool, "RoIPool: rounded, whole pixels"),
                          (self.ax_align, "RoIAlign: exact bins, samples")):
            _viz.draw_feature_grid(self.feature, ax=ax, fontsize=7)
            ax.set_title(title, fontsize=10)
            ax.set_xlim(-1.5, w + 0.5)
            ax.set_ylim(h + 0.5, -1.5)
        self.pool_polys = _viz.draw_roipool_bins(_torch.zeros(p, p, 4), ax=self.ax_pool, alpha=0.25)
        self.pool_box = _Rectangle((0, 0), 1, 1, fill=False, linestyle=":", linewidth=1.5,
                                   edgecolor=_viz.COLORS["roi"], zorder=4)
        self.ax_pool.add_patch(self.pool_box)
        self.align_artists = _viz.draw_roi_bins((0, 0, 1, 1), p, ax=self.ax_align)
        self.align_points = _viz.draw_sample_points(_np.zeros((1, 2)), ax=self.ax_align, size=12)
        zeros = _torch.zeros_like(self.shifts)
        self.curves = _viz.draw_shift_curves(self.shifts, zeros, zeros, ax=self.ax_curve,
                                             ylabel="output bin (0, 0)", xlabel="shift (pixels)")
        # outputs are averages or maxima of map values, or 0: this range always holds them
        low, high = min(float(self.feature.min()), 0.0), max(float(self.feature.max()), 0.0)
        pad = 0.05 * (high - low) + 0.05
        self.ax_curve.set_ylim(low - pad, high + pad)
        self.ax_curve.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=1, fontsize=8, frameon=False)
        self.cursor = self.ax_curve.axvline(0.0, color=_viz.COLORS["grid"], linestyle="--", linewidth=1)
        (self.pool_dot,) = self.ax_curve.plot([0], [0], "o", color=_viz.COLORS["roipool"], zorder=5)
        (self.align_dot,) = self.ax_curve.plot([0], [0], "o", color=_viz.COLORS["roialign"], zorder=5)
        self.fig.subplots_adjust(left=0.04, right=0.98, top=0.84, bottom=0.13, wspace=0.3)

    def dynamic(self) -> list[Artist]:
        a = self.align_artists
        return [self.pool_polys, self.pool_box, a.rect, a.lines, self.align_points, self.cursor,
                self.curves["RoIPool"], self.curves["RoIAlign"], self.pool_dot, self.align_dot]

    def curve(self, x1: float, y1: float, x2: float, y2: float) -> tuple[Any, Any]:
        """Bin (0, 0) of RoIPool and RoIAlign for the box shifted right by each of :attr:`shifts`.

        Returns:
            ``(Tensor[S], Tensor[S])`` (float64).
        """
        boxes = _torch.tensor([[x1, y1, x2, y2]], dtype=_torch.float64).repeat(len(self.shifts), 1)
        boxes[:, 0] += self.shifts
        boxes[:, 2] += self.shifts
        f = self.feature[None, None]
        with _one_thread():
            pool = _roi.roi_pool(f, [boxes], self.output_size, 1.0)[:, 0, 0, 0]
            align = _roi.roi_align(f, [boxes], self.output_size, 1.0, self.sampling_ratio, False)[:, 0, 0, 0]
        return pool, align

    def update(self, x1: float, y1: float, x2: float, y2: float, shift: float) -> dict[str, Any]:
        problem = _box_message(x1, y1, x2, y2)
        if problem:
            for artist in self.dynamic():
                artist.set_visible(False)
            raise PanelMessage(problem)
        for artist in self.dynamic():
            artist.set_visible(True)
        h, w = self.feature.shape
        p = self.output_size
        x1, y1, x2, y2, shift = float(x1), float(y1), float(x2), float(y2), float(shift)
        box = _torch.tensor([x1 + shift, y1, x2 + shift, y2], dtype=_torch.float64)
        f = self.feature[None, None]
        with _one_thread():
            self.pool_bins = _roi.roi_pool_bins(box, p, 1.0, h, w, dtype=_torch.float64)
            self.pooled = _roi.roi_pool(f, [box[None]], p, 1.0)[0, 0]
            self.aligned_out = _roi.roi_align(f, [box[None]], p, 1.0, self.sampling_ratio, False)[0, 0]
            s = _roi.roi_sample_points(box, p, 1.0, self.sampling_ratio, False)
        self.sampling = s
        self.pool_polys.set_verts(list(_viz.cell_rectangles(self.pool_bins.bins)))
        bx1, by1, bx2, by2 = (float(v) for v in box)
        self.pool_box.set_xy((bx1, by1))
        self.pool_box.set_width(bx2 - bx1)
        self.pool_box.set_height(by2 - by1)
        sx, sy = float(s.start_x[0]), float(s.start_y[0])
        self.align_artists.set_box((sx, sy, sx + float(s.bin_w[0]) * p, sy + float(s.bin_h[0]) * p), p)
        pts = s.points[0].reshape(-1, 2)
        self.align_points.set_offsets(pts[~_torch.isnan(pts[:, 0])].numpy())
        self.pool_curve, self.align_curve = self.curve(x1, y1, x2, y2)
        self.curves["RoIPool"].set_ydata(self.pool_curve.numpy())
        self.curves["RoIAlign"].set_ydata(self.align_curve.numpy())
        self.cursor.set_xdata([shift, shift])
        self.pool_dot.set_data([shift], [float(self.pooled[0, 0])])
        self.align_dot.set_data([shift], [float(self.aligned_out[0, 0])])
        b = self.pool_bins
        numbers: dict[str, Any] = {"shift": shift, "x1 + shift": bx1, "x2 + shift": bx2,
                                   "RoIPool corners": f"({b.x1}, {b.y1}, {b.x2}, {b.y2})",
                                   "RoIPool bin (0, 0)": float(self.pooled[0, 0]),
                                   "RoIAlign bin (0, 0)": float(self.aligned_out[0, 0])}
        numbers.update({f"RoIPool {k}": v for k, v in _rows(self.pooled).items()})
        numbers.update({f"RoIAlign {k}": v for k, v in _rows(self.aligned_out).items()})
        return numbers

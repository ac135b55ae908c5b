"""The base of every slider panel, :class:`Panel`, its faster :class:`BlitPanel`, and their plumbing.

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

The panels of notebooks 01-03 are :class:`BlitPanel` subclasses and share the small helpers at the
end of this module (:func:`one_thread`, :func:`as_feature_map`, :func:`coordinate_slider`...).
"""

from __future__ import annotations

import html
import io
import math
import traceback
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends import backend_agg
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image as PILImage

from helpers import roi
from helpers.roi import RoIAlignSampling


class GlyphCacheRenderer(RendererAgg):
    """matplotlib's Agg renderer, keeping the glyph bitmaps FreeType renders for text.

    matplotlib 3.11 draws text glyph by glyph from Python (``RendererAgg._draw_text_glyphs_and_boxes``:
    FreeType renders each glyph at its sub-pixel position, then Agg blends the bitmap). In a panel that is
    most of a slider move: the same few headings and numbers are drawn again on every move. FreeType
    applies the position after hinting, so a glyph's bitmap depends only on the fraction of its position
    (in 1/64 pixel) and moves by whole pixels with the rest; this renderer keeps each bitmap under
    (font, size, glyph, flags, mode, transform, fraction) and blends the kept one: the pixels are the
    ones matplotlib draws (``tests/test_viz_widgets.py`` compares every panel's PNG with a full redraw by
    matplotlib's own renderer). The layout of each string (its glyphs and their offsets, from
    ``FT2Font._layout``) is kept too.

    With a matplotlib without that Python glyph loop (3.10 and earlier render a whole string in C++,
    as Colab's does) the renderer is matplotlib's own: nothing is cached.

    Kept after measuring it on and off, alternating, on 2 busy cores (load 4-6; issue 14): without it the
    kernel's CPU time per move (p95) rose from 62 to 86 ms for the FPN panel and from 58-81 to 103-109 ms for
    the detection panel, and the browser p95 (key press -> picture) of the FPN and ground-truth box panels
    from 237 / 246 ms to 252 / 277 ms (``benchmarks/bench_sliders.py --no-glyph-cache`` measures the kernel).
    """

    MAX_GLYPHS = 20_000
    """The cache is emptied when it holds this many bitmaps (a few MB)."""

    _glyphs: dict = {}
    # shared by every panel: the same fonts, sizes and glyphs recur across panels

    if hasattr(RendererAgg, "_draw_text_glyphs_and_boxes") and hasattr(backend_agg, "get_hinting_flag"):
        _layouts: dict = {}
        _matrices: dict = {}

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            # matplotlib's, with the layout of a string (glyphs and their offsets) kept as well
            if ismath:
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            flags = backend_agg.get_hinting_flag()
            features = mtext.get_fontfeatures() if mtext is not None else None
            language = mtext.get_language() if mtext is not None else None
            key = (s, prop.copy(), self.dpi, flags, tuple(features) if isinstance(features, list) else features,
                   tuple(language) if isinstance(language, list) else language)
            layouts = GlyphCacheRenderer._layouts
            items = layouts.get(key)
            if items is None:
                if len(layouts) > self.MAX_GLYPHS:
                    layouts.clear()
                font = self._prepare_font(prop)
                items = layouts[key] = [(item.ft_object, item.glyph_index, item.x, item.y) for item in
                                        font._layout(s, flags=flags, features=features, language=language)]
            size = prop.get_size_in_points()
            self._draw_text_glyphs_and_boxes(gc, x, y, angle, ((f, size, g, 0, 1, gx, gy) for f, g, gx, gy in items),
                                             [])

        def _draw_text_glyphs_and_boxes(self, gc, x, y, angle, glyphs, boxes):
            from matplotlib.ft2font import RenderMode

            cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
            load_flags = backend_agg.get_hinting_flag()
            antialiased = gc.get_antialiased()
            mode = RenderMode.NORMAL if antialiased else RenderMode.MONO
            cache, matrices = GlyphCacheRenderer._glyphs, GlyphCacheRenderer._matrices
            if len(cache) > self.MAX_GLYPHS:
                cache.clear()
            height = self.height
            for font, size, glyph_index, slant, extend, dx, dy in glyphs:  # dy is upwards
                shape = (angle, slant, extend)
                matrix = matrices.get(shape)
                if matrix is None:
                    m = (0x10000 * np.array([[cos, -sin], [sin, cos]]) @ [[extend, extend * slant], [0, 1]]
                         ).round().astype(int)
                    matrix = matrices[shape] = (m, tuple(m.ravel().tolist()))
                tx = round(0x40 * (x + dx * cos - dy * sin))
                ty = round(0x40 * (height - y + dx * sin + dy * cos))             # FreeType's y is upwards
                key = (font.fname, size, self.dpi, glyph_index, load_flags, mode, matrix[1], tx & 63, ty & 63)
                kept = cache.get(key)
                if kept is None:
                    font.set_size(size, self.dpi)
                    font._set_transform(matrix[0], [tx & 63, ty & 63])
                    bitmap = font._render_glyph(glyph_index, load_flags, mode)
                    buffer = np.array(bitmap.buffer, copy=True)
                    if not antialiased:
                        buffer *= 0xff
                    kept = cache[key] = (buffer, bitmap.left, bitmap.top)
                buffer, left, top = kept
                # the bitmap of the fraction, moved by the whole pixels; draw_text_image's y is downwards
                left, top = left + (tx >> 6), top + (ty >> 6)
                self._renderer.draw_text_image(buffer, left, int(height) - top + buffer.shape[0], 0, gc)
            if boxes:                                   # mathtext's rules: as matplotlib draws them
                super()._draw_text_glyphs_and_boxes(gc, x, y, angle, (), boxes)


class PanelCanvas(FigureCanvasAgg):
    """The Agg canvas of a panel's figure: matplotlib's, drawing text with :class:`GlyphCacheRenderer`."""

    def get_renderer(self):
        w, h = self.get_width_height(physical=True)
        key = w, h, self.figure.dpi
        if self._lastKey != key:
            self.renderer = GlyphCacheRenderer(w, h, self.figure.dpi)
            self._lastKey = key
        return self.renderer


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
        PanelCanvas(self.fig)
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

    def snapshot(self, dpi: int = 120) -> "PanelSnapshot":
        """A static picture of the panel as it stands, at ``dpi`` (default 120: readable on GitHub, where
        the live widget does not run). Displayed, it is a PNG; its text is a short, stable description."""
        if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 110:
            raise ValueError(f"dpi must be an int >= 110 (the series' figure standard), got {dpi!r}")
        buffer = io.BytesIO()
        self.fig.savefig(buffer, format="png", dpi=dpi)
        width, height = self.fig.get_size_inches()
        return PanelSnapshot(buffer.getvalue(), f"{type(self).__name__} at {self.values()}",
                             (round(width * dpi), round(height * dpi)), dpi)

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


class PanelSnapshot:
    """A PNG of a panel at one moment (:meth:`Panel.snapshot`), shown as an image by Jupyter.

    Attributes:
        png: the PNG bytes; description: what it shows; size: ``(width, height)`` in pixels; dpi: its resolution.
    """

    def __init__(self, png: bytes, description: str, size: tuple[int, int], dpi: int) -> None:
        self.png, self.description, self.size, self.dpi = png, description, size, dpi

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return f"snapshot of {self.description} ({self.size[0]}x{self.size[1]} px, {self.dpi} dpi)"


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
        image = PILImage.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        # RGB: the figure is opaque; a quarter fewer bytes to filter and deflate (~10 % faster, smaller PNG)
        image.convert("RGB").save(buffer, format="png", compress_level=1)
        return buffer.getvalue()


# -- helpers shared by the panels of notebooks 01-03 ---------------------------------------------
@contextmanager
def one_thread() -> Iterator[None]:
    """Run tiny tensor ops on one thread: on a busy machine, waking a second thread for a
    16-element op can cost 10-20 ms (measured with ``torch.repeat_interleave``), one thread microseconds."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def as_feature_map(feature: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    """A float64 ``Tensor[H, W]`` from ``feature`` (``None``: ``default``); ``[1, 1, H, W]`` is accepted.

    Raises:
        TypeError: ``feature`` is not a floating-point tensor.
        ValueError: ``feature`` is not a single non-empty map.
    """
    f = default if feature is None else feature
    if not isinstance(f, torch.Tensor):
        raise TypeError(f"feature must be a torch.Tensor[H, W], got {type(f).__name__}")
    while f.dim() > 2 and f.shape[0] == 1:
        f = f[0]
    if f.dim() != 2 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"feature must be a single map Tensor[H, W], got shape {tuple(feature.shape)}")
    if not f.is_floating_point():
        raise TypeError(f"feature must be a floating-point tensor, got dtype {f.dtype}")
    return f.detach().to(torch.float64)


def readout_rows(values: torch.Tensor, digits: int = 3) -> dict[str, str]:
    """``{"row 0": "7.2  8", ...}`` for a ``Tensor[PH, PW]`` (rounded for reading)."""
    return {f"row {i}": "  ".join(f"{round(float(v), digits):g}" for v in row) for i, row in enumerate(values)}


def box_problem(x1: float, y1: float, x2: float, y2: float) -> str | None:
    """Why a slider box is empty or inverted, or ``None`` when ``x1 < x2`` and ``y1 < y2``."""
    problems = []
    if x2 <= x1:
        problems.append(f"x2 = {x2:g} is not right of x1 = {x1:g}")
    if y2 <= y1:
        problems.append(f"y2 = {y2:g} is not below y1 = {y1:g}")
    if not problems:
        return None
    return "Empty or inverted RoI: " + " and ".join(problems)


def torchvision_box_note(x1: float, y1: float, x2: float, y2: float, aligned: bool, sampling_ratio: int,
                         output_size: int) -> str | None:
    """What ``torchvision.ops.roi_align`` does with an empty or inverted box (``spatial_scale = 1``), in
    words, or ``None`` for an ordinary box. torchvision does not refuse such a box:

    - ``aligned=False``: the width ``x2 - x1`` and height ``y2 - y1`` are raised to at least 1, so the box
      becomes 1 pixel wide (high) from ``x1`` (``y1``);
    - ``aligned=True``: they are kept as they are (zero or negative): bins of zero width, or bins running
      right to left; with adaptive sampling the grid is ``ceil(size / output_size) <= 0`` samples, so
      none is taken and the output is 0.
    """
    problem = box_problem(x1, y1, x2, y2)
    if problem is None:
        return None
    sides = [(n, a, b) for n, a, b in (("width", x1, x2), ("height", y1, y2)) if b <= a]
    if not aligned:
        grown = " and ".join(f"{n} {b - a:g} -> 1" for n, a, b in sides)
        return f"{problem}. torchvision (aligned=False) raises it to at least 1 x 1 ({grown}) and pools that."
    kept = " and ".join(f"{n} {b - a:g}" for n, a, b in sides)
    if sampling_ratio <= 0:
        return (f"{problem}. torchvision (aligned=True) keeps {kept}; the adaptive grid (ceil(size / "
                f"{output_size}) samples per side) takes no sample, so every output is 0.")
    return (f"{problem}. torchvision (aligned=True) keeps {kept}: the bins run backwards or have zero size, "
            f"and their {sampling_ratio} x {sampling_ratio} samples are still averaged.")


def torchvision_sampling(box: torch.Tensor, output_size: int, sampling_ratio: int, aligned: bool
                         ) -> tuple[tuple[float, float, float, float], torch.Tensor]:
    """The region ``torchvision.ops.roi_align`` samples for ``box`` (``Tensor[4]``, ``spatial_scale = 1``),
    as ``(x1, y1, x2, y2)`` (``x2 < x1`` when the bins run backwards), and its sample points ``Tensor[N, 2]``
    (``(x, y)``; none when an adaptive grid is empty), for *any* box, empty and inverted ones included.

    The points come from :func:`helpers.roi.roi_sample_points` on an ordinary box with the same samples:
    with ``aligned=False`` the box ``(x1, y1, max(x1, x2), max(y1, y2))`` (torchvision grows both to a
    width of 1); with ``aligned=True`` and a fixed grid the mirrored box (the same sample positions,
    bins in the opposite order); with ``aligned=True`` and an adaptive grid, an inverted side has none.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    p = int(output_size)
    if aligned:
        region = (x1 - 0.5, y1 - 0.5, x2 - 0.5, y2 - 0.5)
        if sampling_ratio <= 0 and (x2 < x1 or y2 < y1):
            return region, torch.zeros(0, 2, dtype=box.dtype)
        ordinary = torch.tensor([min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)], dtype=box.dtype)
    else:
        region = (x1, y1, x1 + max(x2 - x1, 1.0), y1 + max(y2 - y1, 1.0))
        ordinary = torch.tensor([x1, y1, max(x1, x2), max(y1, y2)], dtype=box.dtype)
    return region, sample_points(roi.roi_sample_points(ordinary, p, 1.0, sampling_ratio, aligned))


def coordinate_slider(name: str, value: float, low: float, high: float, step: float) -> widgets.FloatSlider:
    """A slider for one coordinate ``name`` of a point or a box, from ``low`` to ``high`` in ``step``s,
    redrawing while it is dragged (``continuous_update=True``)."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=name,
                               readout_format=".2f", continuous_update=True,
                               style={"description_width": "initial"})


def heading_text(ax: Axes, fontsize: float = 11) -> Text:
    """A title-like text above ``ax`` that a :class:`BlitPanel` can redraw alone (``ax.title``
    cannot: matplotlib re-places it only during a full draw)."""
    return ax.text(0.5, 1.02, "", transform=ax.transAxes, ha="center", va="bottom", fontsize=fontsize)



def sampled_box(sampling: RoIAlignSampling, output_size: int) -> tuple[float, float, float, float]:
    """The region RoIAlign actually samples for the first RoI of ``sampling``, as ``(x1, y1, x2, y2)``:
    from ``(start_x, start_y)``, ``output_size`` bins of ``bin_w`` by ``bin_h`` (shifted by -0.5 when
    ``aligned``, at least 1 x 1 when not)."""
    sx, sy = float(sampling.start_x[0]), float(sampling.start_y[0])
    return (sx, sy, sx + float(sampling.bin_w[0]) * output_size, sy + float(sampling.bin_h[0]) * output_size)


def sample_points(sampling: RoIAlignSampling) -> torch.Tensor:
    """The sample points ``(x, y)`` of the first RoI of ``sampling`` as ``Tensor[N, 2]``, padding
    (``NaN``, in bins with fewer samples) left out."""
    points = sampling.points[0].reshape(-1, 2)
    return points[~torch.isnan(points[:, 0])]

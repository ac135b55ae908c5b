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
        self.widget = widgets.VBox([controls, self.notice, widgets.HBox([self.image, self.readout])])
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

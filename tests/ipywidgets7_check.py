"""Drive every slider panel of :mod:`helpers.widgets` under whichever ipywidgets is importable.

Run by ``tests/test_ipywidgets7.py`` in a subprocess, once with ipywidgets 7.7 first on
``PYTHONPATH`` (the line Colab ships) and once with the environment's ipywidgets 8::

    python tests/ipywidgets7_check.py --expect 7.7 --moves 50 --seed 0

For each panel it moves sliders the way a frontend does: a comm message
``{"method": "update", "state": {"value": v}}`` handed to the slider's ``_handle_msg``, which is
the code path a drag in Colab or JupyterLab takes inside the kernel (ipywidgets' own
``set_state``, echo and trait notification, then the panel's ``observe`` callback). After every
move it checks that the panel raised nothing (``panel.error is None``), that the values it drew
are the sliders' values, that the picture sent to the frontend is the PNG of the figure and the
readout the table of ``panel.state``. At the end a *fresh* panel set straight to the final values
must draw the same picture and numbers (the state follows the values, not the path taken).

It prints one JSON object (a report per panel) as its last line; the test reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # `helpers` without installing (after PYTHONPATH, so ipywidgets 7 wins)


REQUIRED_PANELS = ("BilinearPanel", "RoIAlignPanel", "RoIPoolVsAlignPanel", "AnchorMatchPanel", "GroundTruthBoxPanel",
                   "DetectionPanel", "MaskRoIPanel")
"""The panels of notebooks 01-03 and 05-07; every other panel in helpers.widgets is checked as well."""


def panel_factories() -> dict[str, Callable[[], Any]]:
    """name -> a function building that panel with its default arguments (as the notebooks do).

    Every :class:`helpers.widgets.Panel` subclass exported by the package :mod:`helpers.widgets` is
    included, in the order of its ``__init__``, so a panel added for a later notebook is checked
    without editing this.
    """
    from helpers import widgets as hw

    # concrete panels only: a base such as BlitPanel writes neither build() nor update()
    found = [c for c in _subclasses(hw.Panel) if vars(hw).get(c.__name__) is c and not c.__name__.startswith("_")
             and c.update is not hw.Panel.update and c.build is not hw.Panel.build]
    order = {name: k for k, name in enumerate(vars(hw))}
    factories = {c.__name__: c for c in sorted(found, key=lambda c: order.get(c.__name__, 1 << 30))}
    missing = [name for name in REQUIRED_PANELS if name not in factories]
    if missing:
        raise SystemExit(f"helpers.widgets lacks {missing}")
    return factories


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def random_value(control: Any, rng: random.Random, home: Any = None) -> Any:
    """A value a user could pick with this control (on its step grid for sliders).

    Mostly (85 %) somewhere within a quarter of the track around ``home`` (the panel's starting
    value), so that most moves keep a valid state (an RoI stays an RoI); otherwise anywhere.
    """
    import ipywidgets as widgets

    if isinstance(control, (widgets.FloatSlider, widgets.IntSlider)):
        lo, hi, step = control.min, control.max, control.step or 1
        n = int(math.floor((hi - lo) / step + 1e-9))
        if home is not None and rng.random() < 0.85:
            centre, reach = round((home - lo) / step), max(1, n // 4)
            k = centre + rng.randint(-reach, reach)
        else:
            k = rng.randint(0, n)
        value = lo + min(max(k, 0), n) * step
        return int(value) if isinstance(control, widgets.IntSlider) else round(value, 10)
    if isinstance(control, widgets.Dropdown):
        options = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return rng.choice(options)
    if isinstance(control, widgets.Checkbox):
        return rng.random() < 0.5
    raise TypeError(f"no rule for moving a {type(control).__name__}")


def frontend_update(widget: Any, state: dict) -> None:
    """Deliver ``state`` to ``widget`` as a frontend's comm message would arrive in the kernel."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


def _json_value(control: Any, value: Any) -> Any:
    """The value as the frontend sends it (a Dropdown sends its index, sliders their number)."""
    import ipywidgets as widgets

    if isinstance(control, widgets.Dropdown):
        labels = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return {"index": labels.index(value)}
    return {"value": value}


def check_panel(name: str, factory: Callable[[], Any], moves: int, seed: int) -> dict[str, Any]:
    from helpers.widgets import format_readout

    rng = random.Random(seed)
    panel = factory()
    problems: list[str] = []
    if panel.error is not None:
        problems.append(f"initial state: {panel.error}")
    bundle = panel._repr_mimebundle_()
    view = bundle.get("application/vnd.jupyter.widget-view+json", {})
    if view.get("model_id") != panel.widget.model_id:
        problems.append(f"mime bundle shows model {view.get('model_id')}, panel widget is {panel.widget.model_id}")
    if "live panel" not in bundle.get("text/plain", ""):
        problems.append(f"text/plain is {bundle.get('text/plain')!r}")
    pictures, messages = set(), 0
    home = panel.values()
    for k in range(moves):
        slider_name = rng.choice(sorted(panel.sliders))
        control = panel.sliders[slider_name]
        value = random_value(control, rng, home[slider_name])
        frontend_update(control, _json_value(control, value))
        where = f"move {k} ({slider_name}={value!r})"
        if panel.error is not None:
            problems.append(f"{where}: panel.error = {panel.error}")
            continue
        if control.value != value:
            problems.append(f"{where}: slider holds {control.value!r}")
        if panel.message is not None:
            messages += 1
            if panel.readout.value != "" or panel.state != {}:
                problems.append(f"{where}: a message ({panel.message}) but a stale readout")
        else:
            for key, drawn in panel.state.items():
                if key in panel.sliders and not _same(drawn, panel.sliders[key].value):
                    problems.append(f"{where}: state[{key!r}] = {drawn!r}, slider = {panel.sliders[key].value!r}")
            if panel.readout.value != format_readout(panel.state):
                problems.append(f"{where}: the readout is not the table of panel.state")
        if panel.image.value[:8] != b"\x89PNG\r\n\x1a\n" or panel.image.value != panel.png():
            problems.append(f"{where}: the image sent to the frontend is not the PNG of the figure")
        pictures.add(hashlib.sha256(panel.image.value).hexdigest())
    # the state follows the values, not the path: a fresh panel set to the final values agrees
    fresh = factory()
    fresh.set(**panel.values())
    if (fresh.state, fresh.message, fresh.png()) != (panel.state, panel.message, panel.png()):
        problems.append(f"a fresh panel set to {panel.values()} draws something else than the moved one")
    if len(pictures) < min(moves, 5):
        problems.append(f"only {len(pictures)} different pictures in {moves} moves")
    return {"panel": name, "moves": moves, "messages": messages, "distinct_pictures": len(pictures),
            "final_values": panel.values(), "problems": problems}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=0, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    return a == b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expect", required=True, help="ipywidgets version prefix that must be imported (7.7, 8.1)")
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import ipywidgets

    report: dict[str, Any] = {"ipywidgets": ipywidgets.__version__, "ipywidgets_file": ipywidgets.__file__,
                              "panels": []}
    if not ipywidgets.__version__.startswith(args.expect):
        report["problems"] = [f"imported ipywidgets {ipywidgets.__version__}, expected {args.expect}"]
    else:
        report["problems"] = []
        for k, (name, factory) in enumerate(panel_factories().items()):
            report["panels"].append(check_panel(name, factory, args.moves, args.seed + k))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The slider panels under ipywidgets 7.7 (the line Colab ships) as well as 8 (this environment).

How the second ipywidgets is obtained, honestly: ipywidgets 7.7.5 and the packages it needs that
8.x replaced (``widgetsnbextension`` 3.6, ``jupyterlab_widgets`` 1.1, ``ipython_genutils``) are
installed once with ``pip install --target <prefix>/ipywidgets7 --no-deps`` (``<prefix>`` is
``sys.prefix``, so ``.venv/ipywidgets7`` for the README's set-up; the PyPI mirror must be
reachable the first time). Processes that should see 7.7 get that folder first on
``PYTHONPATH``; everything else (ipykernel 7.4, comm, traitlets, matplotlib, torch, helpers) is
the environment's own. ipywidgets 7.7.5 creates its comms through the ``comm`` package when it
is importable, which is how ipykernel 7 expects it, so no shim is involved. What differs from
Colab is what surrounds ipywidgets (Colab runs an older ipykernel and its own widget frontend);
the panels only touch ipywidgets' public API and its comm protocol, which is the part under test.

Two tests per ipywidgets version:

- ``test_panels_under_ipywidgets``: ``tests/ipywidgets7_check.py`` in a subprocess builds each
  panel and delivers 200 seeded slider moves as frontend comm messages; after every move the panel
  raised nothing, drew the sliders' values, sent the PNG of its figure and the table of its state.
- ``test_slider_moves_through_a_real_kernel``: a real ipykernel is started (7.7 on its path or
  not), the panels are displayed in it, and this test plays the frontend: it reads the
  ``comm_open`` messages, sends ``comm_msg`` updates to the controls exactly as JupyterLab or
  Colab would (every control once, then four more, each to a new value), and checks the updates
  the kernel sends back (the Image model's new PNG bytes, the readout's HTML) against what the
  kernel-side panel holds. No stderr may appear.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ipywidgets7_check import REQUIRED_PANELS
from helpers.project import ROOT

TESTS = Path(__file__).resolve().parent
CHECK = TESTS / "ipywidgets7_check.py"
IPYWIDGETS7 = ["ipywidgets==7.7.5", "widgetsnbextension==3.6.10", "jupyterlab_widgets==1.1.11",
               "ipython_genutils==0.2.0"]
TARGET = Path(sys.prefix) / "ipywidgets7"


def install_ipywidgets7() -> Path:
    """Install ipywidgets 7.7 beside the environment (once); return the folder to put on PYTHONPATH."""
    site = TARGET / "site"
    stamp = TARGET / "installed.txt"
    if stamp.exists() and stamp.read_text() == "\n".join(IPYWIDGETS7) and site.is_dir():
        return site
    shutil.rmtree(TARGET, ignore_errors=True)
    tmp = TARGET.with_name(TARGET.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--target", str(tmp / "site"), *IPYWIDGETS7]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"could not install ipywidgets 7.7 for this test ({' '.join(cmd)}):\n"
                    f"{result.stdout}{result.stderr}", pytrace=False)
    (tmp / "installed.txt").write_text("\n".join(IPYWIDGETS7))
    tmp.rename(TARGET)
    return site


@pytest.fixture(scope="session", params=["7.7", "8.1"], ids=["ipywidgets7.7", "ipywidgets8.1"])
def widgets_env(request: pytest.FixtureRequest) -> tuple[str, dict[str, str]]:
    """(expected version prefix, environment variables for a process that should import it)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONNOUSERSITE"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    if request.param == "7.7":
        env["PYTHONPATH"] = str(install_ipywidgets7())
    return request.param, env


@pytest.mark.timeout(900)
def test_panels_under_ipywidgets(widgets_env: tuple[str, dict[str, str]]) -> None:
    version, env = widgets_env
    result = subprocess.run([sys.executable, str(CHECK), "--expect", version, "--moves", "200", "--seed", "0"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=880)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ipywidgets"].startswith(version), report
    assert report["problems"] == []
    names = [p["panel"] for p in report["panels"]]
    assert set(REQUIRED_PANELS) <= set(names), names
    for panel in report["panels"]:
        assert panel["problems"] == [], (panel["panel"], panel["problems"])
        assert panel["moves"] == 200
    warnings = [line for line in result.stderr.splitlines() if "Warning" in line]
    assert warnings == [], f"warnings while driving the panels: {warnings[:5]}"


# ---------------------------------------------------------------------------------------------
# a real kernel, and this test as its frontend
# ---------------------------------------------------------------------------------------------
class Frontend:
    """The frontend side of the widget protocol, on a jupyter_client connection."""

    def __init__(self, kc: Any) -> None:
        self.kc = kc
        self.models: dict[str, dict] = {}           # comm id -> synced state (buffers resolved)
        self.updates: list[tuple[str, dict]] = []   # (comm id, state) of every kernel -> frontend update
        self.stderr: list[str] = []
        self.displayed: list[str] = []              # model ids of displayed widgets, in order
        self.stdout = ""

    def _absorb(self, msg: dict) -> None:
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
            state = dict(content["data"]["state"])
            _put_buffers(state, content["data"].get("buffer_paths", []), msg.get("buffers", []))
            self.models[content["comm_id"]] = state
        elif kind == "comm_msg" and content["data"].get("method") in ("update", "echo_update"):
            state = dict(content["data"]["state"])
            _put_buffers(state, content["data"].get("buffer_paths", []), msg.get("buffers", []))
            self.models.setdefault(content["comm_id"], {}).update(state)
            if content["data"]["method"] == "update":
                self.updates.append((content["comm_id"], state))
        elif kind in ("display_data", "execute_result"):
            view = content["data"].get("application/vnd.jupyter.widget-view+json")
            if view:
                self.displayed.append(view["model_id"])
        elif kind == "stream" and content["name"] == "stderr":
            self.stderr.append(content["text"])
        elif kind == "stream":
            self.stdout += content["text"]
        elif kind == "error":
            self.stderr.append(f"{content['ename']}: {content['evalue']}")

    def wait_idle(self, msg_id: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                self._absorb(msg)  # e.g. updates triggered by an earlier message
                continue
            self._absorb(msg)
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return
        raise AssertionError(f"the kernel did not become idle within {timeout} s")

    def execute(self, code: str) -> str:
        self.stdout = ""
        self.wait_idle(self.kc.execute(code))
        return self.stdout

    def send_update(self, comm_id: str, state: dict) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {
            "method": "update", "state": state, "buffer_paths": []}})
        self.kc.shell_channel.send(msg)
        self.wait_idle(msg["header"]["msg_id"])

    def children(self, model_id: str) -> list[str]:
        refs = []
        for value in self.models[model_id].values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item.startswith("IPY_MODEL_"):
                    refs.append(item[len("IPY_MODEL_"):])
        return refs

    def descendants(self, model_id: str) -> list[str]:
        out, todo = [], [model_id]
        while todo:
            mid = todo.pop(0)
            out.append(mid)
            todo.extend(c for c in self.children(mid) if c not in out and c in self.models)
        return out


def _put_buffers(state: dict, paths: list, buffers: list) -> None:
    for path, buf in zip(paths, buffers):
        obj = state
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = bytes(buf)


def _pick(model: dict, rng: random.Random) -> dict:
    """A frontend update moving this control somewhere a user could put it."""
    name = model["_model_name"]
    if name in ("FloatSliderModel", "IntSliderModel"):
        lo, hi, step = model["min"], model["max"], model["step"] or 1
        value = lo + rng.randint(0, int((hi - lo) / step + 1e-9)) * step
        return {"value": int(value) if name == "IntSliderModel" else round(value, 10)}
    if name == "DropdownModel":
        return {"index": rng.randrange(len(model["_options_labels"]))}
    if name == "CheckboxModel":
        return {"value": not model["value"]}
    raise AssertionError(f"the test cannot move a {name}")


@pytest.mark.timeout(300)
def test_slider_moves_through_a_real_kernel(widgets_env: tuple[str, dict[str, str]]) -> None:
    from jupyter_client.manager import start_new_kernel

    version, env = widgets_env
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT), startup_timeout=120)
    try:
        fe = Frontend(kc)
        out = fe.execute(f"""
import sys, hashlib, json
sys.path.insert(0, {str(TESTS)!r})
import ipywidgets
from ipywidgets7_check import panel_factories
from helpers.widgets import format_readout
print(ipywidgets.__version__)
panels = {{name: make() for name, make in panel_factories().items()}}
print(json.dumps(list(panels)))
for p in panels.values():
    display(p)
""")
        lines = out.strip().splitlines()
        assert lines[0].startswith(version), f"the kernel imported ipywidgets {lines[0]}"
        assert fe.stderr == [], fe.stderr
        names = json.loads(lines[-1])
        assert set(REQUIRED_PANELS) <= set(names), names
        assert len(fe.displayed) == len(names), fe.displayed
        rng = random.Random(7)
        for name, box in zip(names, fe.displayed):
            part = fe.descendants(box)
            kinds = {mid: fe.models[mid]["_model_name"] for mid in part}
            sliders = [m for m in part if kinds[m] in ("FloatSliderModel", "IntSliderModel", "DropdownModel",
                                                       "CheckboxModel")]
            images = [m for m in part if kinds[m] == "ImageModel"]
            readouts = [m for m in part if kinds[m] == "HTMLModel" and "panel-readout" in fe.models[m]["value"]]
            assert sliders and len(images) == 1 and len(readouts) == 1, (name, sorted(set(kinds.values())))
            image, readout = images[0], readouts[0]
            assert fe.models[image]["value"][:4] == b"\x89PNG", f"{name}: the first picture is not a PNG"
            pictures = {hashlib.sha256(fe.models[image]["value"]).hexdigest()}
            # every control once, in order, then four more chosen at random; always to a new value
            for move, slider in enumerate(sliders + [rng.choice(sliders) for _ in range(4)]):
                before = len(fe.updates)
                current = {k: fe.models[slider].get(k) for k in ("value", "index")}
                update = _pick(fe.models[slider], rng)
                while all(current.get(k) == v for k, v in update.items()):
                    update = _pick(fe.models[slider], rng)
                fe.send_update(slider, update)
                where = f"{name} move {move}: {fe.models[slider]['description']} <- {update}"
                assert fe.stderr == [], (where, fe.stderr)
                # what the kernel holds now, asked the way a user would (a cell)
                facts = json.loads(fe.execute(f"""
p = panels[{name!r}]
print(json.dumps(dict(values=p.values(), error=p.error, message=p.message,
                      sha=hashlib.sha256(p.image.value).hexdigest(), png_ok=p.image.value == p.png(),
                      readout=p.readout.value, table=format_readout(p.state) if p.state else "")))
""").strip().splitlines()[-1])
                assert facts["error"] is None, (where, facts["error"])
                assert facts["png_ok"], f"{where}: the Image widget does not hold the figure's PNG"
                sent = fe.models[image]["value"]
                assert hashlib.sha256(sent).hexdigest() == facts["sha"], \
                    f"{where}: the frontend's picture differs from the kernel's"
                assert fe.models[readout]["value"] == facts["readout"] == facts["table"], where
                new = [s for cid, s in fe.updates[before:] if cid == image]
                if hashlib.sha256(sent).hexdigest() not in pictures:
                    assert new, f"{where}: the picture changed without an update message"
                pictures.add(hashlib.sha256(sent).hexdigest())
            assert len(pictures) >= 2, f"{name}: the picture never changed"
        assert fe.stderr == [], fe.stderr
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

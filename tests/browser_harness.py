"""Drive a real JupyterLab in headless Chromium, as a student would (used by tests/test_browser.py).

Three pieces:

- :class:`JupyterLab` starts ``python -m jupyter lab`` on 127.0.0.1 (a free port, a random token,
  no browser of its own) over a temporary *copy* of the notebooks, with its own settings folder
  (notebook ``windowingMode`` = ``none`` so every cell stays in the page), its own Jupyter
  config/data/runtime folders and no news or update checks.
- :func:`launch_chromium` starts Debian's ``/usr/bin/chromium`` through Playwright with a fresh
  profile, or fails with a message saying why and how to install or skip.
- :class:`LabNotebook` opens one notebook in the page, clears and runs every cell, waits for the
  kernel, finds a slider panel (a :class:`helpers.widgets.Panel` on screen) by its slider names,
  moves its sliders with the keyboard or by typing into the readout, reads back what the page
  shows (slider readouts, the readout table, the PNG bytes of the picture) and asks the kernel,
  through the page's own kernel connection, what state the panel is in.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
# A common laptop screen (1366 x 768) less the browser's own bars; JupyterLab's file browser stays open.
VIEWPORT = {"width": 1366, "height": 680}
HOW_TO = ("Install Debian's Chromium with `apt-get install -y chromium` (it provides /usr/bin/chromium), "
          "or skip the browser tests with `-m \"not browser\"`.")

# JupyterLab settings for the test server: every cell attached to the page, nothing fetched from the internet.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
}

# JavaScript run in the page. `nbPanel(name)` is the NotebookPanel whose file is `name`.
_JS_PRELUDE = """
const nbPanel = (name) => {
  if (!window.jupyterapp) return null;
  for (const w of window.jupyterapp.shell.widgets('main')) {
    if (w.context && w.content && w.context.path.split('/').pop() === name) return w;
  }
  return null;
};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server over a temporary copy of ``notebooks_dir`` (the originals are never touched).

    Args:
        notebooks_dir: the folder whose ``*.ipynb`` files (and anything else in it) are copied.
        workdir: an empty temporary folder; holds the copy, settings, Jupyter folders and the log.
        extra_dirs: sibling folders to copy beside the notebooks (e.g. ``data/``), so relative
            paths such as ``../data`` resolve as in the repository.
    """

    def __init__(self, notebooks_dir: Path, workdir: Path, extra_dirs: tuple[Path, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.root = self.workdir / "repo" / "notebooks"
        shutil.copytree(notebooks_dir, self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for extra in extra_dirs:
            if Path(extra).is_dir():
                shutil.copytree(extra, self.workdir / "repo" / Path(extra).name)
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.log_path = self.workdir / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        # `reset` drops any saved workspace, so only this notebook opens
        return f"{self.base_url}/lab/tree/{name}?reset&token={self.token}"

    def start(self, timeout: float = 90.0) -> None:
        settings = self.workdir / "lab-settings"
        for rel, content in LAB_SETTINGS.items():
            path = settings / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
        env = dict(os.environ)
        for var, sub in [("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                         ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython")]:
            (self.workdir / sub).mkdir(exist_ok=True)
            env[var] = str(self.workdir / sub)
        env["JUPYTER_PLATFORM_DIRS"] = "1"
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
        env.pop("MPLBACKEND", None)  # the notebooks use the inline backend, as a student's kernel does
        cmd = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.workdir / 'lab-workspaces'}",
            "--LabApp.news_url=", "--ServerApp.allow_remote_access=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.log.close()
            return
        # on SIGTERM the server shuts its kernels down before it exits; the process group catches
        # anything left (the server was started in its own session)
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()


def launch_chromium(playwright: Any, user_data_dir: Path) -> Any:
    """Start headless Debian Chromium with a fresh profile; fail (never skip) with the reason."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing, so the browser tests cannot run. {HOW_TO}", pytrace=False)
    try:
        return playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT, device_scale_factor=1)
    except Exception as exc:  # noqa: BLE001 - any launch failure is reported the same way
        pytest.fail(f"{CHROMIUM} could not start: {exc}\n{HOW_TO}", pytrace=False)


@dataclass
class PanelView:
    """What the page shows for one panel."""

    sliders: dict[str, str]          # slider name -> text of its readout
    readout: dict[str, str]          # td.panel-value data-key -> text
    notice: str                      # the panel's message line ('' when fine)
    png: bytes                       # the picture's bytes as the page holds them
    src: str = ""                    # the <img> src (a blob: URL with ipywidgets 8)
    clipped: list[str] = field(default_factory=list)  # parts outside the notebook's visible width

    @property
    def png_sha(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


@dataclass
class KernelPanel:
    """What the kernel says about the same panel."""

    cls: str
    values: dict[str, Any]
    state: dict[str, Any]
    readout_html: str
    table: str                       # format_readout(state), computed in the kernel
    error: str | None
    message: str | None
    png_sha: str                     # of the Image widget's bytes (what the kernel sent the page)
    redraw_matches: bool             # redrawing the current values gives exactly those bytes
    formats: dict[str, Any]          # slider readout formats ('.2f'...)
    descriptions: dict[str, str]     # slider -> its description (the label on the page)
    steps: dict[str, list]           # slider -> [min, max, step]
    extra: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)   # dropdown -> the label of its value (others None)


class LabNotebook:
    """One notebook open in JupyterLab in a Playwright page."""

    def __init__(self, page: Any, lab: JupyterLab, name: str, artifacts: Path) -> None:
        self.page, self.lab, self.name = page, lab, name
        self.artifacts = Path(artifacts)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    # -- JavaScript ----------------------------------------------------------------------------
    def js(self, body: str, arg: Any = None) -> Any:
        """Evaluate ``body`` (a JS function of ``arg``, with ``nbPanel`` in scope) in the page."""
        return self.page.evaluate(f"async (arg) => {{ {_JS_PRELUDE}\n return await ({body})(arg); }}", arg)

    def wait_js(self, body: str, arg: Any = None, timeout: float = 60.0, what: str = "") -> Any:
        """Poll ``body`` (a JS function of ``arg`` returning truthy when done)."""
        expr = f"(arg) => {{ {_JS_PRELUDE}\n return ({body})(arg); }}"
        try:
            return self.page.wait_for_function(expr, arg=arg, timeout=timeout * 1000, polling=200).json_value()
        except Exception as exc:  # playwright TimeoutError: say what we were waiting for
            self.screenshot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}", full=True)
            raise AssertionError(f"{self.name}: timed out after {timeout:.0f} s waiting for {what}; "
                                 f"page console tail: {self.console[-8:]}") from exc

    # -- opening and running ---------------------------------------------------------------------
    def open(self, timeout: float = 90.0) -> None:
        self.page.goto(self.lab.notebook_url(self.name), wait_until="domcontentloaded")
        opened = self.wait_js("""(name) => {
            const w = nbPanel(name);
            if (!w || !w.context.isReady || !w.sessionContext.isReady) return false;
            // the settings override must hold, or cells far from the viewport may be missing
            if (w.content.notebookConfig.windowingMode !== 'none') return 'windowing ' + w.content.notebookConfig.windowingMode;
            const k = w.sessionContext.session && w.sessionContext.session.kernel;
            return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
        }""", self.name, timeout, "the notebook to open with an idle kernel")
        if isinstance(opened, str):
            raise AssertionError(f"{self.name}: JupyterLab ignored the test's settings ({opened}, wanted none)")
        self.js("(name) => { window.jupyterapp.shell.activateById(nbPanel(name).id); }", self.name)

    def run_all(self, timeout: float = 100.0) -> float:
        """Clear every output, run all cells, wait until every code cell has run and the kernel is idle."""
        t0 = time.monotonic()
        self.js("""async (name) => {
            const app = window.jupyterapp; app.shell.activateById(nbPanel(name).id);
            await app.commands.execute('notebook:clear-all-cell-outputs');
            app.commands.execute('notebook:run-all-cells');   // resolves only when all have run
        }""", self.name)
        outcome = self.wait_js("""(name) => {
            const w = nbPanel(name);
            const cells = w.content.widgets.filter(c => c.model.type === 'code');
            const k = w.sessionContext.session.kernel;
            // run-all stops at an error: report it instead of waiting for cells that will never run
            if (cells.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))) return 'error';
            const done = cells.every(c => c.model.executionCount !== null && !c.promptNode.textContent.includes('*'));
            return done && k.status === 'idle' ? 'done' : false;
        }""", self.name, timeout, "all cells to run and the kernel to be idle")
        if outcome == "error":
            self.screenshot("error", full=True)
            raise AssertionError(f"{self.name}: a cell raised while running all cells: {self.error_outputs()}")
        return time.monotonic() - t0

    def wait_idle(self, timeout: float = 30.0) -> None:
        # a kernel that has just been asked something may still report idle for a moment: wait two
        # consecutive idle readings 300 ms apart
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            status = self.js("(name) => nbPanel(name).sessionContext.session.kernel.status", self.name)
            if status == "idle":
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.3:
                    return
            else:
                idle_since = None
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: kernel not idle after {timeout} s")

    def kernel_exec(self, code: str, timeout: float = 30.0) -> str:
        """Run ``code`` in the notebook's kernel through the page's own kernel connection.

        Nothing is added to the notebook; returns stdout. A Python error fails the test.
        """
        result = self.js("""async ({name, code}) => {
            const k = nbPanel(name).sessionContext.session.kernel;
            const future = k.requestExecute({code, silent: false, store_history: false});
            let out = '', err = null;
            future.onIOPub = (msg) => {
                const t = msg.header.msg_type;
                if (t === 'stream' && msg.content.name === 'stdout') out += msg.content.text;
                if (t === 'stream' && msg.content.name === 'stderr') err = (err || '') + msg.content.text;
                if (t === 'error') err = msg.content.ename + ': ' + msg.content.evalue;
            };
            await future.done;
            return {out, err};
        }""", {"name": self.name, "code": code})
        if result["err"]:
            raise AssertionError(f"{self.name}: kernel code failed: {result['err']}\n--- code ---\n{code}")
        return result["out"]

    # -- problems in the page --------------------------------------------------------------------
    def error_outputs(self) -> list[str]:
        """Text of every stderr or error output in the notebook (should be empty)."""
        return self.js("""(name) => Array.from(nbPanel(name).node.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"],' +
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]'))
            .map(e => e.textContent.slice(0, 500))""", self.name)

    # -- panels ----------------------------------------------------------------------------------
    def find_panel(self, slider_names: list[str]) -> Any:
        """The on-screen panel whose sliders are described by ``slider_names`` (innermost match).

        A panel is the widget box holding those sliders, an image and the readout table.
        """
        page = self.page
        loc = page.locator(f"#{self.js('(name) => nbPanel(name).id', self.name)} .widget-vbox")
        for name in slider_names:
            loc = loc.filter(has=page.locator(".widget-slider .widget-label", has_text=re.compile(
                rf"^\s*{re.escape(name)}\s*$")))
        loc = loc.filter(has=page.locator("img")).filter(has=page.locator("table.panel-readout"))
        count = loc.count()
        if count == 0:
            raise AssertionError(f"{self.name}: no panel with sliders {slider_names} on the page")
        # nested boxes match too; the innermost comes last. Mark it, so that the locator keeps
        # pointing at it when its readout empties (an empty RoI shows a message instead)
        mark = f"panel-{len(slider_names)}-{abs(hash(tuple(slider_names))) % 10**8}"
        loc.nth(count - 1).evaluate("(el, mark) => el.setAttribute('data-browser-test', mark)", mark)
        panel = page.locator(f"[data-browser-test='{mark}']")
        panel.scroll_into_view_if_needed()
        return panel

    def slider(self, panel: Any, name: str) -> Any:
        return panel.locator(".widget-slider").filter(
            has=self.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))).first

    def control(self, panel: Any, name: str) -> Any:
        """A checkbox or dropdown of the panel, by its description."""
        return panel.locator(".widget-checkbox, .widget-dropdown").filter(has=self.page.locator(
            "label", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))).first

    def control_text(self, panel: Any, name: str) -> str:
        """What a checkbox ("True"/"False") or a dropdown (the selected option's text) shows."""
        return self.control(panel, name).evaluate("""(el) => {
            const box = el.querySelector('input[type=checkbox]');
            if (box) return box.checked ? 'True' : 'False';
            const sel = el.querySelector('select');
            return sel.options[sel.selectedIndex].text;
        }""").replace("\xa0", " ")   # ipywidgets 8 writes an option's spaces as no-break spaces

    def view(self, panel: Any, slider_names: list[str], controls: tuple[str, ...] = ()) -> PanelView:
        # d3-format (the readout formatter) writes a Unicode minus sign
        sliders = {n: self.slider(panel, n).locator(".widget-readout").inner_text().strip().replace("\u2212", "-")
                   for n in slider_names}
        sliders.update({n: self.control_text(panel, n) for n in controls})
        readout = {td.get_attribute("data-key"): " ".join(td.inner_text().split())
                   for td in panel.locator("td.panel-value").all()}
        data = panel.locator("img").first.evaluate("""async (img) => {
            const r = await fetch(img.src); const b = new Uint8Array(await r.arrayBuffer());
            let s = ''; for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
            return {src: img.src, b64: btoa(s)};
        }""")
        notice_loc = panel.locator(".widget-html").first
        notice = notice_loc.inner_text().strip() if notice_loc.count() else ""
        # what a student cannot see without scrolling sideways: parts of the panel that stick out
        # of the notebook's visible width (the window is VIEWPORT wide, the file browser open)
        clipped = panel.evaluate("""(el) => {
            const area = el.closest('.jp-Notebook').getBoundingClientRect();
            const out = [];
            const parts = [['picture', el.querySelector('img')],
                           ...Array.from(el.querySelectorAll('td.panel-value')).map(td => [td.dataset.key, td])];
            for (const [name, node] of parts) {
                const r = node.getBoundingClientRect();
                if (r.width > 0 && (r.left < area.left - 1 || r.right > area.right + 1)) out.push(name);
            }
            return out;
        }""")
        return PanelView(sliders=sliders, readout=readout, notice=notice,
                         png=base64.b64decode(data["b64"]), src=data["src"], clipped=clipped)

    def panel_model_id(self, panel: Any) -> str:
        """The ipywidgets model id of the panel's box, read from the cell output that displays it."""
        return panel.evaluate("""(el) => {
            const nbId = el.closest('.jp-NotebookPanel').id;
            const w = Array.from(window.jupyterapp.shell.widgets('main')).find(x => x.id === nbId);
            const cell = w.content.widgets.find(c => c.node.contains(el));
            const outs = cell.model.outputs;
            for (let i = 0; i < outs.length; i++) {
                const d = outs.get(i).data['application/vnd.jupyter.widget-view+json'];
                if (d) return d.model_id;
            }
            return null;
        }""")

    def kernel_panel(self, model_id: str, extra: str = "{}") -> KernelPanel:
        """Ask the kernel for the :class:`helpers.widgets.Panel` whose widget has ``model_id``.

        ``extra`` is a Python expression in ``p`` (the panel) giving more JSON-able facts to return.
        """
        code = f"""
def _browser_test_probe():
    import gc, hashlib, json
    from helpers.widgets import Panel, PanelMessage, format_readout
    def match(o):
        return isinstance(o, Panel) and o.widget.model_id == {model_id!r}
    found = [o for o in get_ipython().user_ns.values() if match(o)]   # the notebook's variables
    if not found:
        import warnings
        with warnings.catch_warnings():   # isinstance() on some lazy torch objects warns
            warnings.simplefilter("ignore")
            found = [o for o in gc.get_objects() if match(o)]
    found = list({{id(o): o for o in found}}.values())   # the same panel may sit in Out[n], _, __ too
    if len(found) != 1:
        raise LookupError(f"{{len(found)}} panels with model id {model_id}")
    p = found[0]
    sent = p.image.value
    # the picture must be the figure of the current slider values: redraw them and compare bytes
    try:
        p.update(**p.values())
    except PanelMessage:
        pass
    out = dict(cls=type(p).__name__, values=p.values(), state=p.state, readout_html=p.readout.value,
               table=format_readout(p.state) if p.state else "",
               error=p.error, message=p.message, png_sha=hashlib.sha256(sent).hexdigest(),
               redraw_matches=p.png() == sent,
               formats={{n: getattr(c, "readout_format", None) for n, c in p.sliders.items()}},
               descriptions={{n: c.description for n, c in p.sliders.items()}},
               steps={{n: [getattr(c, "min", None), getattr(c, "max", None), getattr(c, "step", None)]
                       for n, c in p.sliders.items()}},
               labels={{n: getattr(c, "label", None) for n, c in p.sliders.items()}},
               extra=({extra}))
    print(json.dumps(out, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
_browser_test_probe()
del _browser_test_probe
"""
        return KernelPanel(**json.loads(self.kernel_exec(code)))

    # -- moving sliders --------------------------------------------------------------------------
    def press(self, panel: Any, name: str, key: str) -> None:
        handle = self.slider(panel, name).locator(".noUi-handle").first
        handle.focus()
        self.page.keyboard.press(key)

    def type_value(self, panel: Any, name: str, text: str) -> None:
        readout = self.slider(panel, name).locator(".widget-readout").first
        readout.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def toggle(self, panel: Any, name: str) -> None:
        """Flip a checkbox with the keyboard (focus it, press Space), as a keyboard user does."""
        box = self.control(panel, name).locator("input[type=checkbox]").first
        box.focus()
        self.page.keyboard.press("Space")

    def choose(self, panel: Any, name: str, label: str) -> None:
        """Pick the option ``label`` of a dropdown (a "type" for dropdowns: what a click on it does)."""
        select = self.control(panel, name).locator("select").first
        texts = [t.replace("\xa0", " ") for t in select.evaluate("(s) => Array.from(s.options).map(o => o.text)")]
        select.select_option(index=texts.index(label))

    def dropdown_key(self, panel: Any, name: str, key: str) -> None:
        """Move a dropdown with the keyboard (focus it, press ``key``: ArrowDown is the next option)."""
        self.control(panel, name).locator("select").first.focus()
        self.page.keyboard.press(key)

    def latency(self, panel: Any, name: str, moves: int = 50, keys: tuple[str, str] = ("ArrowRight", "ArrowLeft"),
                timeout: float = 30.0) -> list[float]:
        """Milliseconds from a key press on slider ``name``'s handle to the new picture displayed, ``moves`` times.

        The clock is the page's own (``performance.now()``): it starts in a capturing ``keydown`` listener
        on the document (before the slider sees the key) and stops in the first animation frame after the
        ``<img>``'s new ``src`` has been decoded (``img.decode()``), i.e. when the browser paints it. The
        keys alternate (``ArrowRight``, ``ArrowLeft``...) so the value stays in range; each move waits for
        its picture, then 150 ms for the kernel to settle, before the next key.
        """
        img = panel.locator("img").first
        img.evaluate("""(img) => {
            const lat = window.__panelLatency = {t0: null, samples: []};
            if (!window.__panelLatencyKey) {
                window.__panelLatencyKey = true;
                document.addEventListener('keydown', () => { window.__panelLatency.t0 = performance.now(); }, true);
            }
            if (img.__latencyObserver) img.__latencyObserver.disconnect();
            img.__latencyObserver = new MutationObserver(() => {
                const t0 = window.__panelLatency.t0;
                if (t0 === null) return;
                window.__panelLatency.t0 = null;
                img.decode().catch(() => null).then(() => requestAnimationFrame(() => {
                    window.__panelLatency.samples.push(performance.now() - t0);
                }));
            });
            img.__latencyObserver.observe(img, {attributes: true, attributeFilter: ['src']});
        }""")
        handle = self.slider(panel, name).locator(".noUi-handle").first
        handle.focus()
        for k in range(moves):
            self.page.keyboard.press(keys[k % 2])
            self.wait_js("(n) => window.__panelLatency.samples.length >= n", k + 1, timeout,
                         f"the picture after latency move {k + 1} on {name}")
            time.sleep(0.15)
        samples = self.js("() => window.__panelLatency.samples")
        img.evaluate("(img) => img.__latencyObserver.disconnect()")
        return [float(v) for v in samples]

    def wait_new_image(self, panel: Any, old_src: str, timeout: float = 30.0) -> None:
        img = panel.locator("img").first
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if img.get_attribute("src") != old_src:
                return
            time.sleep(0.1)
        self.screenshot("timeout-image", full=True)
        raise AssertionError(f"{self.name}: the panel's picture did not change within {timeout} s")

    # -- artefacts -------------------------------------------------------------------------------
    def screenshot(self, label: str, panel: Any = None, full: bool = False) -> Path:
        self.step += 1
        path = self.artifacts / f"{self.step:02d}-{label}.png"
        try:
            if panel is not None and not full:
                panel.screenshot(path=str(path))
            else:
                self.page.screenshot(path=str(path))
        except Exception:  # noqa: BLE001 - a failed screenshot must not hide the real failure
            pass
        return path

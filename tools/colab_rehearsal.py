"""Rehearse Colab: run every notebook top to bottom as a Colab user would, and report each one.

    python tools/colab_rehearsal.py                       # every notebook, the pinned torch, ipywidgets 7.7
    python tools/colab_rehearsal.py --only 01 05 05b      # just these notebooks (numbers of helpers/series.py)
    python tools/colab_rehearsal.py --torch 2.9.1 --torchvision 0.24.1   # an older pair (downloads ~1 GB once)
    python tools/colab_rehearsal.py --json report.json    # also write the report as JSON

What "as a Colab user would" means here, and what it does not:

- **The notebooks as GitHub serves them**: the repository's committed ``HEAD`` is cloned into a
  temporary folder (uncommitted changes are not rehearsed); the notebooks are read from that clone.
- **The set-up cell does its real work**: the kernel starts in an empty folder (Colab's ``/content``)
  with a stand-in ``google.colab`` module imported at start-up, so ``"google.colab" in sys.modules``
  holds; the set-up cell clones the repository (``MASKRCNN_SBS_REPO_URL`` points it at the clone
  above, ``MASKRCNN_SBS_CLONE_DIR`` at a folder in the temporary one), puts it on ``sys.path``,
  changes into its ``notebooks/`` and calls ``google.colab.output.enable_custom_widget_manager()``
  (the stand-in records the call). The stored cell is never changed for this.
- **A fresh environment**: a new virtual environment (no ``pip``) whose only site folder lists, in
  this order, ipywidgets 7.7.5 with the ``widgetsnbextension``/``jupyterlab_widgets`` it needs (the
  line Colab ships, installed once with ``pip install --target``), an older torch/torchvision when
  asked, the stand-in ``google.colab``, then this environment's installed packages. The series'
  ``helpers`` is *not* importable until the set-up cell clones the repository (this environment's
  editable install of it is a ``.pth`` hook that the fresh one does not run). Torch is not
  reinstalled for the pinned rehearsal.
- Not rehearsed: Colab's own ipykernel, its widget frontend, its Python version and its GPU.

Each notebook runs in its own kernel; a notebook is ``ok`` when every cell finished without an error,
the set-up cell called ``enable_custom_widget_manager`` and the kernel imported the ``helpers`` of the
clone and the requested ipywidgets/torch/torchvision. Output on stderr (warnings) is reported, and
makes a notebook fail only with ``--strict``. The exit status is 1 when any notebook failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from pathlib import Path
from typing import Any, Sequence

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's `helpers`, installed or not
from helpers.project import ROOT  # noqa: E402
from helpers.series import SERIES  # noqa: E402

ENV_REPO, ENV_DIR = "MASKRCNN_SBS_REPO_URL", "MASKRCNN_SBS_CLONE_DIR"  # read by the set-up cell (tools/nb.py)
ENV_LOG = "MASKRCNN_SBS_COLAB_LOG"  # where the stand-in google.colab records its calls
IPYWIDGETS7 = ["ipywidgets==7.7.5", "widgetsnbextension==3.6.10", "jupyterlab_widgets==1.1.11",
               "ipython_genutils==0.2.0"]
CACHE = Path(sys.prefix) / "colab-rehearsal"  # overlays installed once, beside this environment
PROBE_TAG = "colab-rehearsal-probe"

STAND_IN = '''"""A stand-in for Colab's ``google.colab`` (tools/colab_rehearsal.py): only what the set-up cell calls."""
'''
STAND_IN_OUTPUT = '''"""Stand-in for ``google.colab.output``: records each call in the file named by $MASKRCNN_SBS_COLAB_LOG."""
import json
import os


def enable_custom_widget_manager():
    log = os.environ.get("MASKRCNN_SBS_COLAB_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"call": "enable_custom_widget_manager", "cwd": os.getcwd()}) + "\\n")
'''

PROBE = '''import json as _j, sys as _s
_mods = {n: getattr(_s.modules.get(n), "__version__", None) for n in ("torch", "torchvision", "ipywidgets")}
_h = _s.modules.get("helpers")
print("REHEARSAL-PROBE " + _j.dumps({"versions": _mods, "helpers": getattr(_h, "__file__", None),
                                      "python": _s.executable, "colab": "google.colab" in _s.modules}))'''


def install_overlay(name: str, requirements: Sequence[str], cache: Path = CACHE) -> Path:
    """``pip install --no-deps --target`` the ``requirements`` once into ``cache/name``; return the folder."""
    target = cache / name
    stamp = target / "installed.txt"
    if stamp.is_file() and stamp.read_text() == "\n".join(requirements):
        return target / "site"
    tmp = cache / f"{name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--target", str(tmp / "site"), *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"could not install {' '.join(requirements)} ({' '.join(cmd)}):\n"
                           f"{result.stdout}{result.stderr}")
    (tmp / "installed.txt").write_text("\n".join(requirements))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target / "site"


def torch_requirements(torch: str, torchvision: str, cache: Path = CACHE) -> list[str]:
    """``torch==<torch>``, ``torchvision==<torchvision>`` and the Linux-only runtime wheels that torch
    wheel requires (its CUDA libraries, ``nvidia-*``, and ``triton``, pinned by the wheel itself: torch
    does not import without them). The pure-Python dependencies (numpy, sympy...) stay this environment's.
    Downloads the torch wheel (about 1 GB) into ``cache/wheels`` to read its requirements."""
    import zipfile

    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"torch-{torch}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "-d", str(wheels), f"torch=={torch}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(f"torch-{torch}-*.whl"))
        if result.returncode != 0 or not found:
            raise RuntimeError(f"could not download torch {torch} ({' '.join(cmd)}):\n{result.stdout}{result.stderr}")
    with zipfile.ZipFile(found[0]) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        lines = whl.read(meta).decode().splitlines()
    runtime = []
    for line in lines:
        if not line.startswith("Requires-Dist:") or "extra ==" in line:
            continue
        req, _, marker = line[len("Requires-Dist:"):].partition(";")
        req = req.strip().replace(" ", "")
        name = re.split(r"[=<>!~(]", req, maxsplit=1)[0]
        if (name.startswith("nvidia-") or name == "triton") and "==" in req:
            runtime.append(req)
    return [f"torch=={torch}", f"torchvision=={torchvision}", *runtime]


def fresh_env(where: Path, overlays: Sequence[Path]) -> Path:
    """A new virtual environment in ``where`` whose site folder lists ``overlays`` first, then this
    environment's site-packages (as plain paths: their ``.pth`` hooks, the editable ``helpers`` among
    them, do not run). Returns its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(where)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = [str(p) for p in overlays] + ours
    (Path(purelib) / "colab_rehearsal.pth").write_text("\n".join(lines) + "\n")
    return python


def write_stand_in(folder: Path) -> Path:
    """The stand-in ``google.colab`` package (``google`` stays a namespace package) in ``folder``."""
    pkg = folder / "google" / "colab"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(STAND_IN)
    (pkg / "output.py").write_text(STAND_IN_OUTPUT)
    return folder


def execute_notebook(path: Path, python: Path, cwd: Path, env: dict[str, str], timeout: int = 1800,
                     save_to: Path | None = None) -> dict[str, Any]:
    """Run the notebook at ``path`` top to bottom in a kernel of ``python`` started in ``cwd`` with
    ``env``; return ``{"status": "ok"|"failed", "error", "stderr", "probe", "seconds"}``. A probe cell
    appended at the end reports what the kernel imported (it is not saved)."""
    runner = textwrap.dedent('''
        import json, sys, nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
        src, cwd, timeout, save = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
        nb = nbformat.read(src, as_version=4)
        probe = nbformat.v4.new_code_cell(sys.stdin.read())
        nb.cells.append(probe)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=False,
                                record_timing=False, resources={"metadata": {"path": cwd}})
        error = None
        try:
            client.execute()
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1][:500]
            for k, cell in enumerate(nb.cells):
                if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                    error = f"cell {k} (id {cell.get('id')}): " + error
                    break
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        stderr = [f"cell {k}: " + o["text"][:300] for k, c in enumerate(nb.cells[:-1])
                  for o in c.get("outputs", []) if o.get("name") == "stderr"]
        out = "".join(o.get("text", "") for o in probe.get("outputs", []) if o.get("name") == "stdout")
        info = None
        for line in out.splitlines():
            if line.startswith("REHEARSAL-PROBE "):
                info = json.loads(line[len("REHEARSAL-PROBE "):])
        nb.cells.pop()
        if save:
            nbformat.write(nb, save)
        print(json.dumps({"error": error, "stderr": stderr, "probe": info}))
    ''')
    start = time.perf_counter()
    result = subprocess.run([str(python), "-c", runner, str(path), str(cwd), str(timeout), str(save_to or "")],
                            input=PROBE, capture_output=True, text=True, env=env, cwd=cwd)
    seconds = time.perf_counter() - start
    lines = result.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        report = {"error": f"the runner exited {result.returncode}: {result.stderr.strip()[-800:]}",
                  "stderr": [], "probe": None}
    report["status"] = "ok" if report["error"] is None else "failed"
    report["seconds"] = round(seconds, 1)
    return report


def rehearse(only: Sequence[str] = (), torch: str | None = None, torchvision: str | None = None,
             workdir: Path | None = None, strict: bool = False, repo: Path = ROOT,
             progress: bool = True) -> dict[str, Any]:
    """Clone ``repo``'s HEAD, build the fresh environment and run the notebooks (``only``: numbers such as
    ``"01"`` or ``"05b"``; empty: all). Returns the report: environment and one entry per notebook."""
    if (torch is None) != (torchvision is None):
        raise ValueError("torch and torchvision must be given together (e.g. --torch 2.9.1 --torchvision 0.24.1)")
    numbers = {e.number for e in SERIES}
    unknown = sorted(set(only) - numbers)
    if unknown:
        raise ValueError(f"only: no notebook numbered {unknown}; the series has {sorted(numbers)}")
    entries = [e for e in SERIES if not only or e.number in only]
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="colab-rehearsal-")) if own_tmp else workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        origin = work / "github"
        shutil.rmtree(origin, ignore_errors=True)
        subprocess.run(["git", "clone", "--quiet", str(repo), str(origin)], check=True)
        commit = subprocess.run(["git", "-C", str(origin), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        overlays = [install_overlay("ipywidgets7", IPYWIDGETS7)]
        if torch is not None:
            overlays.insert(0, install_overlay(f"torch-{torch}-tv-{torchvision}", torch_requirements(torch, torchvision)))
        overlays.append(write_stand_in(work / "colab-stand-in"))
        python = fresh_env(work / "env", overlays)
        ipython_dir = work / "ipython"
        startup = ipython_dir / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-google-colab.py").write_text("import google.colab  # Colab's kernel has it imported\n")
        executed = work / "executed"
        executed.mkdir(exist_ok=True)
        results = []
        for entry in entries:
            content = work / f"content-{entry.number}"  # Colab's /content: a fresh one per notebook
            shutil.rmtree(content, ignore_errors=True)
            content.mkdir()
            clone = content / "maskrcnn-step-by-step"
            log = work / f"colab-calls-{entry.number}.jsonl"
            log.unlink(missing_ok=True)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MPLBACKEND", "JUPYTER_PATH")}
            env.update({ENV_REPO: f"file://{origin}", ENV_DIR: str(clone), ENV_LOG: str(log),
                        "IPYTHONDIR": str(ipython_dir), "PYTHONNOUSERSITE": "1",
                        "JUPYTER_DATA_DIR": str(work / "jupyter-data"),
                        "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
            report = execute_notebook(origin / "notebooks" / entry.file, python, content, env,
                                      save_to=executed / entry.file)
            problems = []
            calls = [json.loads(l) for l in log.read_text().splitlines()] if log.is_file() else []
            if not any(c["call"] == "enable_custom_widget_manager" for c in calls):
                problems.append("the set-up cell did not call google.colab.output.enable_custom_widget_manager()")
            probe = report.get("probe") or {}
            if report["status"] == "ok":
                helpers_file = probe.get("helpers")
                if helpers_file is not None and not str(helpers_file).startswith(str(clone)):
                    problems.append(f"helpers came from {helpers_file}, not the set-up cell's clone {clone}")
                want = {"ipywidgets": "7.7.5", "torch": torch, "torchvision": torchvision}
                for name, version in want.items():
                    got = (probe.get("versions") or {}).get(name)
                    if version and got is not None and not got.startswith(version):
                        problems.append(f"the kernel imported {name} {got}, not {version}")
            if strict and report["stderr"]:
                problems.append(f"{len(report['stderr'])} stderr outputs (--strict)")
            if problems:
                report["status"] = "failed"
                report["error"] = "; ".join(filter(None, [report["error"], *problems]))
            report["notebook"] = entry.file
            results.append(report)
            if progress:
                print(f"{entry.number:<3} {report['status']:6s} {report['seconds']:6.1f} s  {entry.file}"
                      + (f"\n     {report['error']}" if report["error"] else "")
                      + "".join(f"\n     stderr: {s.strip()[:200]}" for s in report["stderr"]), flush=True)
        versions = {}
        for r in results:
            for k, v in ((r.get("probe") or {}).get("versions") or {}).items():
                if v:
                    versions[k] = v
        return {"commit": commit, "versions": versions, "notebooks": results,
                "ok": all(r["status"] == "ok" for r in results) and bool(results),
                "seconds": round(sum(r["seconds"] for r in results), 1)}
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=[], help="notebook numbers (default: every notebook)")
    parser.add_argument("--torch", help="an older torch to rehearse with, e.g. 2.9.1 (with --torchvision)")
    parser.add_argument("--torchvision", help="the torchvision of that torch, e.g. 0.24.1")
    parser.add_argument("--workdir", type=Path, help="keep the clone, environment and executed notebooks here")
    parser.add_argument("--strict", action="store_true", help="a notebook writing to stderr fails too")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    try:
        report = rehearse(args.only, args.torch, args.torchvision, args.workdir, args.strict)
    except (ValueError, RuntimeError) as exc:
        print(f"colab rehearsal: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    ok = sum(r["status"] == "ok" for r in report["notebooks"])
    print(f"colab rehearsal of {report['commit']} with {report['versions']}: {ok}/{len(report['notebooks'])} "
          f"notebooks ok in {report['seconds']:.0f} s")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

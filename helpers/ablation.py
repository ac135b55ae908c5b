"""RoIAlign against RoIPool, in miniature: the Mask R-CNN paper's Table 2c/2d on the shapes task.

The paper (He et al., 2017, Table 2c, ResNet-50-C4, stride 16) reports mask AP 26.9 with RoIPool
and 30.3 with RoIAlign; on a single stride-32 map (Table 2d, C5) 23.6 against 30.9, the gap
largest at AP75. This module reruns that experiment small enough for a laptop CPU: the same model,
data, schedule and seeds, once with RoIAlign and once with RoIPool (both the box and the mask
branch), on one feature map at a fine and at a coarse stride, for several seeds. The model is the
series' own Mask R-CNN (:class:`helpers.maskrcnn.SeriesMaskRCNN`, ``impl="series"``): its
``config.pool`` chooses the series' :func:`helpers.roi.roi_align` or :func:`helpers.roi.roi_pool`. Every run trains from scratch with :func:`helpers.train.train` and is
scored with COCOeval (``segm`` and ``bbox``) on the same held-out validation images.

Run the grid with::

    python -m helpers.ablation                       # writes runs/ablation-<UTC time>/
    python -m helpers.ablation --name mine           # runs/mine/ablation_results.json, runs/mine/ablation/*.pt
    python -m helpers.ablation --name mine --strides 4,8,16 --resume   # add stride 8, keep the finished runs

(the defaults below; ``--jobs 2`` runs two trainings side by side, one CPU thread each). Like
``python -m helpers.train``, a run writes into its own folder ``runs/<name>/`` (``--runs-dir``,
``--name``), refuses to replace an existing results file or checkpoint unless ``--overwrite`` (or,
for the results of the same settings, ``--resume``), and writes into ``data/`` only when a path names
it. The shipped results (``data/ablation_results.json``, :data:`helpers.project.ABLATION_RESULTS`, and
the four seed-0 float16 checkpoints in ``data/ablation/``, :data:`helpers.project.ABLATION_CHECKPOINTS`)
are regenerated with :data:`SHIPPED_COMMAND`::

    python -m helpers.ablation --out data/ablation_results.json --checkpoints data/ablation --overwrite

Sizes are chosen for a 2-core machine shared with other work (see :data:`ABLATION_MODEL`): a
3-stage backbone of about 1 M parameters, 128 x 128 images, lighter heads and fewer sampled RoIs
than :class:`helpers.model.ShapesModelConfig`'s defaults, 400 steps of 4 images. The strides map to
the paper's set-ups by object size: a shape's box is about 35 pixels on a side on average, so at
stride 4 it spans about 9 feature cells and at stride 16 about 2, as a 64-pixel COCO object does on
the paper's stride-32 C5 map.

Written for notebook 10.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import json
import math
import multiprocessing
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from helpers.checks import check_boxes, check_choice, check_hw, check_int, check_list
from helpers.model import POOL_OPS, load_checkpoint, save_checkpoint
from helpers.project import ABLATION_CHECKPOINTS, ABLATION_RESULTS, ROOT
from helpers.roi import c_round
from helpers.train import LOSS_NAMES, TrainConfig, machine_info, repo_relative, train

__all__ = [
    "ABLATION_MODEL",
    "ABLATION_TRAIN",
    "DEFAULT_OPS",
    "DEFAULT_STRIDES",
    "DEFAULT_SEEDS",
    "DEFAULT_RUNS_DIR",
    "SHIPPED_COMMAND",
    "default_run_name",
    "check_outputs_free",
    "METRICS",
    "run_one",
    "run_ablation",
    "summarise",
    "format_summary",
    "checkpoint_path",
    "load_half_checkpoint",
    "roipool_cells",
    "roipool_extent",
    "coordinate_map",
    "masks_for_boxes",
    "main",
]

ABLATION_MODEL: dict[str, Any] = {
    "widths": [32, 64, 128],
    "anchor_sizes": [12, 24, 48],
    "rpn_pre_nms_top_n_train": 300,
    "rpn_post_nms_top_n_train": 100,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 64,
    "representation_size": 128,
    "mask_layers": [32, 32],
    "mask_dim_reduced": 32,
}
"""``ShapesModelConfig`` fields every ablation run shares (``pool`` and ``feature_stride`` vary).

Three backbone stages (strides 4, 8, 16): with one feature map at stride ``s``, the stages past
``s`` keep their parameters but dilate instead of downsampling, so every setting has the same
988,893 parameters and only the pooling op and the stride change."""

ABLATION_TRAIN: dict[str, Any] = {
    "steps": 400,
    "batch_size": 4,
    "lr": 2e-3,
    "warmup_steps": 50,
    "val_images": 100,
    "eval_subset": 8,
    "threads": 1,
}
"""``TrainConfig`` fields every ablation run shares (``seed`` varies)."""

DEFAULT_OPS: tuple[str, ...] = ("align", "pool")
DEFAULT_STRIDES: tuple[int, ...] = (4, 16)
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
DEFAULT_RUNS_DIR = "runs"
"""The folder of the runs (from the repository root): each run writes into ``runs/<name>/``."""
DEFAULT_COMMAND = "python -m helpers.ablation"
SHIPPED_COMMAND = (f"{DEFAULT_COMMAND} --out {ABLATION_RESULTS.relative_to(ROOT).as_posix()} "
                   f"--checkpoints {ABLATION_CHECKPOINTS.relative_to(ROOT).as_posix()} --overwrite")
"""The command that regenerates the shipped ``data/ablation_results.json`` and ``data/ablation/*.pt``."""

METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm")
"""The COCO metrics stored per run and IoU type (the shapes have no large objects)."""


# ----------------------------------------------------------------------------------------------
# checks and paths
# ----------------------------------------------------------------------------------------------
def _unique(values: Any, name: str, check: Callable[[Any, str], Any]) -> list[Any]:
    """A non-empty list, each item checked with ``check(item, "name[i]")``, repeats dropped."""
    items = check_list(values, name, minimum_length=1)
    return list(dict.fromkeys(check(v, f"{name}[{i}]") for i, v in enumerate(items)))


def _check_op(op: Any, name: str = "op") -> str:
    return check_choice(op, name, POOL_OPS)


def _check_stride(stride: Any, name: str = "stride") -> int:
    return check_int(stride, name, minimum=1)


def _check_seed(seed: Any, name: str = "seed") -> int:
    return check_int(seed, name, minimum=0)


def checkpoint_path(folder: str | Path, op: str, stride: int, seed: int) -> Path:
    """``folder/<op>_stride<stride>_seed<seed>.pt``, a relative ``folder`` taken from the repository
    root (the seed-0 models are shipped in ``data/ablation/``, :data:`helpers.project.ABLATION_CHECKPOINTS`)."""
    return ROOT / folder / f"{op}_stride{stride}_seed{seed}.pt"


def default_run_name() -> str:
    """``ablation-<UTC time>``: ``ablation-20260130-142501``, the run folder's name when none is given."""
    return f"ablation-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def check_outputs_free(out: Path, checkpoints: Sequence[Path], overwrite: bool = False,
                       resumable: bool = False) -> None:
    """Raise ``FileExistsError`` naming every file a grid would replace, unless ``overwrite``: the results
    JSON ``out`` (allowed when ``resumable``: ``--resume`` with results of the same settings) and the
    ``checkpoints`` it would write (allowed when resuming, being that grid's own). Nothing is written
    before this check."""
    if overwrite:
        return
    taken = [] if resumable else [p for p in (out, *checkpoints) if p.exists()]
    if taken:
        raise FileExistsError(f"refusing to overwrite {', '.join(repo_relative(p) for p in taken)}: pass --overwrite "
                              "to replace, --name for a new run folder, or --resume to continue the same grid")


def load_half_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load an ablation model: :func:`helpers.model.load_checkpoint` of a float16 checkpoint.

    The ablation saves its models with ``save_checkpoint(..., dtype=torch.float16)`` (about 2 MB for
    1 M parameters); this reads one into a float32 model (eval mode, CPU) that holds the float16
    values exactly, and says how to regenerate a missing one.

    Returns:
        ``(model, checkpoint)``: the series' :class:`~helpers.maskrcnn.SeriesMaskRCNN` and the loaded dict.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no ablation checkpoint at {path}; regenerate with `{DEFAULT_COMMAND}`")
    return load_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------
def run_one(op: str, stride: int, seed: int, train_overrides: Mapping[str, Any] | None = None,
            model_overrides: Mapping[str, Any] | None = None, checkpoint: str | Path | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Train one ablation model from scratch and score it on the validation images.

    Args:
        op: ``"align"`` or ``"pool"`` (for both the box and the mask branch).
        stride: the single feature map's stride (4, 8 or 16 with the ablation's 3-stage backbone).
        seed: seeds the weights' initialisation, the training images and their order.
        train_overrides: ``TrainConfig`` fields on top of :data:`ABLATION_TRAIN`.
        model_overrides: ``ShapesModelConfig`` fields on top of :data:`ABLATION_MODEL`.
        checkpoint: where to save the trained weights in float16 (``None``: not saved).
        progress: tqdm bars for the training steps and the evaluation.

    Returns:
        One run's record: ``op``, ``feature_stride``, ``seed``, ``impl`` (``"series"``: the model trained),
        ``steps``, ``wall_s`` (the whole run),
        ``train_wall_s``, ``train_cpu_s``, ``eval_wall_s``, ``loadavg`` (start, end), ``mask`` and
        ``box`` (:data:`METRICS` on the validation set), ``final_losses`` (mean of the last 50 steps
        of each loss term), ``loss_curve`` (every 10th step's ``loss_mask`` and ``loss_box_reg``)
        and, when saved, ``checkpoint`` (path relative to the repository) with
        ``checkpoint_subset_mask_AP``: the float16 model's mask AP on the first ``eval_subset``
        validation images, which notebook 10 recomputes.
    """
    _check_op(op)
    _check_stride(stride)
    _check_seed(seed)
    start = time.perf_counter()
    tcfg = {**ABLATION_TRAIN, **dict(train_overrides or {})}
    mcfg = {**ABLATION_MODEL, **dict(model_overrides or {}), "pool": op, "feature_stride": stride}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(**{**tcfg, "seed": seed, "progress": progress,
                             "checkpoint": str(Path(tmp) / "model.pt"), "log": str(Path(tmp) / "log.json"),
                             "runs_dir": tmp, "name": "run", "save_every": 0})
        log = train(cfg, mcfg, command=f"{DEFAULT_COMMAND} (op={op}, stride={stride}, seed={seed})", impl="series")
        record = _record(op, stride, seed, log)
        if checkpoint is not None:
            record.update(_keep_half(Path(tmp) / "model.pt", checkpoint, cfg, mcfg.get("image_size", 128),
                                     {"op": op, "feature_stride": stride, "seed": seed, "command": DEFAULT_COMMAND}))
    record["wall_s"] = round(time.perf_counter() - start, 2)
    return record


def _record(op: str, stride: int, seed: int, log: Mapping[str, Any]) -> dict[str, Any]:
    """A run's record from its training log (see :func:`run_one`)."""
    rows = log["steps"]
    tail = rows[-min(50, len(rows)):]
    return {
        "op": op, "feature_stride": stride, "seed": seed, "impl": log["impl"], "steps": log["steps_done"],
        "train_wall_s": log["train_wall_s"], "train_cpu_s": log["train_cpu_s"],
        "eval_wall_s": log["eval_wall_s"], "loadavg": [log["loadavg_start"], log["loadavg_end"]],
        "parameters": log["parameters"],
        **{kind: {name: round(float(log["metrics"][iou][name]), 4) for name in METRICS}
           for kind, iou in (("mask", "segm"), ("box", "bbox"))},
        "final_losses": {name: round(float(np.mean([r[name] for r in tail])), 4) for name in LOSS_NAMES},
        "loss_curve": {"step": [r["step"] for r in rows[::10]], "loss_mask": [r["loss_mask"] for r in rows[::10]],
                       "loss_box_reg": [r["loss_box_reg"] for r in rows[::10]]},
    }


def _keep_half(trained: Path, checkpoint: str | Path, cfg: TrainConfig, image_size: int,
               extra: Mapping[str, Any]) -> dict[str, Any]:
    """Save the trained model in float16 at ``checkpoint``; its path and its mask AP on the subset."""
    from helpers.evaluate import evaluate
    from helpers.shapes import ShapesDataset

    model, _ = load_checkpoint(trained)
    path = save_checkpoint(model, checkpoint, extra=extra, dtype=torch.float16)
    half, _ = load_half_checkpoint(path)
    subset = ShapesDataset(cfg.eval_subset, seed=cfg.val_seed, size=image_size)
    ap = evaluate(half, subset)["segm"]["AP"]
    return {"checkpoint": repo_relative(path), "checkpoint_subset_mask_AP": round(ap, 4)}


def _run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point (a top-level function so that a process pool can pickle it)."""
    torch.set_num_threads(int(spec["train_overrides"].get("threads", ABLATION_TRAIN["threads"])))
    import warnings

    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    return run_one(spec["op"], spec["stride"], spec["seed"], spec["train_overrides"], spec["model_overrides"],
                   spec["checkpoint"], spec["progress"])


def _key(run: Mapping[str, Any]) -> tuple[int, str, int]:
    return (int(run["feature_stride"]), str(run["op"]), int(run["seed"]))


# ----------------------------------------------------------------------------------------------
# the whole grid
# ----------------------------------------------------------------------------------------------
def run_ablation(ops: Sequence[str] = DEFAULT_OPS, strides: Sequence[int] = DEFAULT_STRIDES,
                 seeds: Sequence[int] = DEFAULT_SEEDS, *, out: str | Path,
                 checkpoints: str | Path | None = None, checkpoint_seed: int | None = 0,
                 train_overrides: Mapping[str, Any] | None = None,
                 model_overrides: Mapping[str, Any] | None = None, jobs: int = 1, resume: bool = False,
                 overwrite: bool = False, progress: bool = True, command: str | None = None) -> dict[str, Any]:
    """Train every (op, stride, seed) combination and write the results JSON after each run.

    Args:
        ops: pooling ops, drawn from ``("align", "pool")``.
        strides: feature strides (4, 8, 16 for the ablation's backbone).
        seeds: training seeds; each (op, stride) pair trains once per seed.
        out: the JSON file (relative paths: from the repository root).
        checkpoints: folder for the float16 checkpoints (``None``: keep none).
        checkpoint_seed: the seed whose models are kept (one per op and stride).
        train_overrides, model_overrides: fields on top of :data:`ABLATION_TRAIN` / :data:`ABLATION_MODEL`.
        jobs: trainings run side by side in separate processes (one thread each by default).
        resume: keep runs already in ``out`` that were made with the same settings, train the rest.
        overwrite: allow replacing an existing ``out`` or checkpoint (otherwise ``FileExistsError``,
            before anything is trained; see :func:`check_outputs_free`).
        progress: tqdm bars (one over the runs; with ``jobs == 1`` also each run's steps).
        command: the command line recorded in the JSON.

    Returns:
        The results dict written to ``out``: ``command``, ``settings`` (ops, strides, seeds, the
        train and model configs), ``machine``, ``runs`` (one :func:`run_one` record each, sorted by
        stride, op, seed), ``total_wall_s`` (this call's wall time, plus that of resumed runs'
        session when resuming) and ``complete``.
    """
    ops = _unique(ops, "ops", _check_op)
    strides = _unique(strides, "strides", _check_stride)
    seeds = _unique(seeds, "seeds", _check_seed)
    jobs = check_int(jobs, "jobs", minimum=1)
    train_overrides, model_overrides = dict(train_overrides or {}), dict(model_overrides or {})
    settings = _settings(ops, strides, seeds, train_overrides, model_overrides)
    out_path = ROOT / out
    done, previous_wall = _finished_runs(out_path, settings) if resume else ({}, 0.0)
    # seed-major order: an interrupted grid still holds whole seeds of every setting
    wanted = [(s, op, seed) for seed in seeds for s in strides for op in ops]
    keep = None if checkpoints is None else (checkpoints, checkpoint_seed)
    specs = [_spec(key, train_overrides, model_overrides, keep, progress and jobs == 1)
             for key in wanted if key not in done]
    check_outputs_free(out_path, [Path(spec["checkpoint"]) for spec in specs if spec["checkpoint"]], overwrite,
                       resumable=resume and out_path.is_file() and _same_settings(out_path, settings))
    start = time.perf_counter()

    def write(complete: bool) -> dict[str, Any]:
        result = {"command": command or DEFAULT_COMMAND, "settings": settings, "machine": machine_info(),
                  "jobs": jobs, "total_wall_s": round(previous_wall + time.perf_counter() - start, 1),
                  "complete": complete and all(k in done for k in wanted), "runs": [done[k] for k in sorted(done)]}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out_path)
        return result

    bar = _runs_bar(len(wanted), len(wanted) - len(specs)) if progress else None
    try:
        for record in _run_all(specs, jobs):
            done[_key(record)] = record
            write(False)
            _show_run(bar, record)
    finally:
        if bar is not None:
            bar.close()
    return write(True)


def _spec(key: tuple[int, str, int], train_overrides: dict[str, Any], model_overrides: dict[str, Any],
          keep: tuple[str | Path, int | None] | None, progress: bool) -> dict[str, Any]:
    """The arguments of one :func:`run_one` call (a dict, so that a process pool can pickle it);
    ``keep = (folder, seed)``: save the models of that seed in that folder."""
    stride, op, seed = key
    checkpoint = str(checkpoint_path(keep[0], op, stride, seed)) if keep is not None and seed == keep[1] else None
    return {"op": op, "stride": stride, "seed": seed, "train_overrides": train_overrides,
            "model_overrides": model_overrides, "checkpoint": checkpoint, "progress": progress}


def _settings(ops: list[str], strides: list[int], seeds: list[int], train_overrides: dict[str, Any],
              model_overrides: dict[str, Any]) -> dict[str, Any]:
    """The grid's settings as the results JSON records them; builds every config once, so that a
    typo fails before any training starts."""
    from helpers.model import ShapesModelConfig

    tcfg = TrainConfig(**{**ABLATION_TRAIN, **train_overrides, "progress": False})
    for stride in strides:
        ShapesModelConfig.from_dict({**ShapesModelConfig().to_dict(), **ABLATION_MODEL, **model_overrides,
                                     "feature_stride": stride})
    return {"ops": ops, "strides": strides, "seeds": seeds,
            "train": {k: v for k, v in asdict(tcfg).items() if k not in ("progress", "checkpoint", "log")},
            "model": {**ABLATION_MODEL, **model_overrides}}


def _finished_runs(out_path: Path, settings: Mapping[str, Any]) -> tuple[dict[tuple[int, str, int], Any], float]:
    """The runs already in ``out_path`` made with the same train and model settings, and their wall time."""
    if not out_path.is_file() or not _same_settings(out_path, settings):
        return {}, 0.0
    old = json.loads(out_path.read_text())
    return {_key(r): r for r in old.get("runs", [])}, float(old.get("total_wall_s", 0.0))


def _same_settings(out_path: Path, settings: Mapping[str, Any]) -> bool:
    """Whether the results in ``out_path`` were made with the same train and model settings."""
    old = json.loads(out_path.read_text())
    return all(old.get("settings", {}).get(k) == settings[k] for k in ("train", "model"))


def _run_all(specs: list[dict[str, Any]], jobs: int) -> Iterator[dict[str, Any]]:
    """Each spec's :func:`run_one` record as it finishes: one after the other, or ``jobs`` processes."""
    if jobs == 1:
        for spec in specs:
            yield _run_spec(spec)
        return
    with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = [pool.submit(_run_spec, spec) for spec in specs]
        for fut in futures.as_completed(pending):
            yield fut.result()


def _runs_bar(total: int, initial: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="ablation runs", unit="run", file=sys.stderr)


def _show_run(bar: Any, record: Mapping[str, Any]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(f"{record['op']} s{record['feature_stride']} seed {record['seed']}: "
                            f"mask AP {record['mask']['AP']:.3f}")


# ----------------------------------------------------------------------------------------------
# summaries
# ----------------------------------------------------------------------------------------------
def summarise(results: Mapping[str, Any], kinds: Sequence[str] = ("mask", "box"),
              metrics: Sequence[str] = ("AP", "AP50", "AP75")) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of each (stride, op) setting.

    Args:
        results: the dict :func:`run_ablation` writes (``runs`` is what is read).
        kinds: ``"mask"`` and/or ``"box"``.
        metrics: names from :data:`METRICS`.

    Returns:
        One row per (stride, op), sorted by stride then op: ``feature_stride``, ``op``, ``n`` (seeds),
        ``seeds``, and for each kind and metric ``"<kind>_<metric>"`` = ``(mean, std)`` with the
        sample standard deviation (``ddof=1``; ``0.0`` for a single seed).
    """
    if not isinstance(results, Mapping) or not isinstance(results.get("runs"), list):
        raise TypeError("results must be the ablation results dict (with a 'runs' list)")
    for kind in kinds:
        check_choice(kind, "kinds", ("mask", "box"))
    for name in metrics:
        check_choice(name, "metrics", METRICS)
    groups: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    for run in results["runs"]:
        groups.setdefault((int(run["feature_stride"]), str(run["op"])), []).append(run)
    rows = []
    for (stride, op), runs in sorted(groups.items()):
        row: dict[str, Any] = {"feature_stride": stride, "op": op, "n": len(runs),
                               "seeds": sorted(int(r["seed"]) for r in runs)}
        for kind in kinds:
            for name in metrics:
                values = [float(r[kind][name]) for r in runs]
                std = statistics_std(values)
                row[f"{kind}_{name}"] = (sum(values) / len(values), std)
        rows.append(row)
    return rows


def statistics_std(values: Sequence[float]) -> float:
    """Sample standard deviation (``n - 1`` in the denominator); ``0.0`` for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_summary(rows: Sequence[Mapping[str, Any]], scale: float = 100.0, digits: int = 1) -> str:
    """A plain-text table of :func:`summarise`'s rows: ``mean ± std`` per column (AP in percent).

    Args:
        rows: :func:`summarise`'s output.
        scale: multiply every value by this (100: percent, as the paper prints AP).
        digits: decimals shown.

    Returns:
        The table as a string.
    """
    if not rows:
        raise ValueError("rows must hold at least one summary row")
    columns = [k for k in rows[0] if k not in ("feature_stride", "op", "n", "seeds")]
    width = max(len(c) for c in columns) + 1
    lines = ["stride  op     seeds " + "".join(f"{c:>{max(width, 11)}}" for c in columns)]
    for row in rows:
        cells = "".join(f"{f'{row[c][0] * scale:.{digits}f} ± {row[c][1] * scale:.{digits}f}':>{max(width, 11)}}"
                        for c in columns)
        lines.append(f"{row['feature_stride']:>6}  {row['op']:<6} {row['n']:>5} {cells}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# what each op reads from a coarse map: RoIPool's quantised cells against RoIAlign's sample points
# ----------------------------------------------------------------------------------------------
def roipool_cells(boxes: Tensor, stride: int, map_size: tuple[int, int]) -> Tensor:
    """The feature cells RoIPool reads for each box (torchvision's CPU kernel's rule, in float64).

    Corners are scaled by ``1 / stride`` and rounded half away from zero (C's ``round``); the end is
    *inclusive* (``width = x2 - x1 + 1``, at least 1), then clipped to the map. A box whose rounded
    top-left corner lands on or past the map's last row or column reads no cell at all in torchvision
    (every bin is empty and RoIPool returns zeros); here it is clamped to the last cell.

    Args:
        boxes: ``Tensor[K, 4]`` ``(x1, y1, x2, y2)`` in image pixels.
        stride: the feature map's stride (``spatial_scale = 1 / stride``).
        map_size: ``(H, W)`` of the feature map.

    Returns:
        ``Tensor[K, 4]`` int64 ``(j0, i0, j1, i1)``: the first and last cell column and row read.
    """
    b = check_boxes(boxes, "boxes", floating=False).to(torch.float64)
    stride = check_int(stride, "stride", minimum=1)
    h, w = check_hw(map_size, "map_size")
    scaled = b / stride  # [K, 4]
    start = c_round(scaled)  # C round: half away from zero (notebook 03)
    j0, i0, j1, i1 = start.unbind(dim=1)
    j1 = torch.maximum(j1, j0)  # width at least one cell
    i1 = torch.maximum(i1, i0)
    cells = torch.stack([j0.clamp(0, w - 1), i0.clamp(0, h - 1), j1.clamp(0, w - 1), i1.clamp(0, h - 1)], dim=1)
    return cells.to(torch.int64)


def roipool_extent(boxes: Tensor, stride: int, map_size: tuple[int, int]) -> Tensor:
    """The image region RoIPool's cells cover: cell ``j`` spans image ``[j * stride, (j + 1) * stride)``.

    Args:
        boxes, stride, map_size: as :func:`roipool_cells`.

    Returns:
        ``Tensor[K, 4]`` float64 ``(x1, y1, x2, y2)`` of the covered cells, in image pixels; compare it
        with ``boxes`` to see the quantisation error.
    """
    cells = roipool_cells(boxes, stride, map_size).to(torch.float64)
    return torch.stack([cells[:, 0] * stride, cells[:, 1] * stride,
                        (cells[:, 2] + 1) * stride, (cells[:, 3] + 1) * stride], dim=1)


def coordinate_map(stride: int, map_size: tuple[int, int]) -> Tensor:
    """A feature map whose channels hold each cell's image position: ``Tensor[1, 5, H, W]``.

    Channels: ``x = j * stride``, ``y = i * stride``, their negatives (so that RoIPool's *max* over a
    bin also yields the *minimum* position), and ones (RoIPool gives 0 for a bin that falls off the
    map, so this channel tells the empty bins apart). Pooled with ``spatial_scale = 1 / stride``, RoIAlign
    returns the exact image coordinates of its sample points (bilinear interpolation of a linear
    function is exact) and RoIPool returns the last and first cell each bin reads.
    """
    h, w = map_size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.stack([xs * stride, ys * stride, -xs * stride, -ys * stride, torch.ones_like(xs)])[None].float()


# ----------------------------------------------------------------------------------------------
# the mask branch alone: masks predicted for given boxes (the true ones), to isolate the op's effect
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def masks_for_boxes(model: torch.nn.Module, images: Sequence[Tensor], boxes: Sequence[Tensor],
                    labels: Sequence[Tensor]) -> list[Tensor]:
    """Run only the mask branch of a trained series' Mask R-CNN on given boxes and paste the masks.

    The same steps its eval mode runs on its detections (transform, backbone,
    :meth:`~helpers.maskrcnn.SeriesMaskRCNN.mask_branch`: pooling, mask head and predictor; the
    sigmoid of each box's own class channel, pasting), but on
    boxes you choose: given the *true* boxes, two models differ only in how well their mask branch
    (and the features its pooler reads) outline the object, not in what their box branch found.

    Args:
        model: a :class:`helpers.maskrcnn.SeriesMaskRCNN` (put in eval mode).
        images: list of ``Tensor[3, H_i, W_i]`` float in ``[0, 1]`` (run as one batch).
        boxes: list of ``Tensor[K_i, 4]`` ``(x1, y1, x2, y2)`` in each image's pixels.
        labels: list of ``Tensor[K_i]``: the class of each box (which mask channel to read).

    Returns:
        List of ``Tensor[K_i, 1, H_i, W_i]`` mask probabilities, like the ``masks`` of an eval output
        (fed the model's own detections, it reproduces them exactly).
    """
    from helpers.mask_head import paste_masks_in_image
    from helpers.maskrcnn import SeriesMaskRCNN

    if not isinstance(model, SeriesMaskRCNN):
        raise TypeError(f"model must be a helpers.maskrcnn.SeriesMaskRCNN (build_model(impl='series')), "
                        f"got {type(model).__name__}")
    if isinstance(images, Tensor) or not isinstance(images, (list, tuple)) or not (
            len(images) == len(boxes) == len(labels)):
        raise TypeError("images, boxes and labels must be lists of the same length (one entry per image)")
    for i, (image, b, l) in enumerate(zip(images, boxes, labels)):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}] must be Tensor[3, H, W], got {getattr(image, 'shape', type(image))}")
        check_boxes(b, f"boxes[{i}]", floating=False)
        if not isinstance(l, Tensor) or l.shape != (len(b),):
            raise ValueError(f"labels[{i}] must be Tensor[K] with K = {len(b)} (one per box)")
    model.eval()
    batch, _ = model.transform(list(images))
    features = model.backbone(batch.tensors)
    scaled = []
    for image, b, (rh, rw) in zip(images, boxes, batch.image_sizes):
        h, w = image.shape[1:]
        scaled.append(b.to(torch.float32) * torch.tensor([rw / w, rh / h, rw / w, rh / h]))
    logits = model.mask_branch(features, scaled, batch.image_sizes)  # [sum K, classes, 28, 28]
    all_labels = torch.cat([l.long() for l in labels])
    probs = logits[torch.arange(len(all_labels)), all_labels].sigmoid()[:, None]  # [sum K, 1, 28, 28]
    out, start = [], 0
    for image, b in zip(images, boxes):
        out.append(paste_masks_in_image(probs[start:start + len(b)], b.to(torch.float32), tuple(image.shape[1:])))
        start += len(b)
    return out


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _list(kind: type):
    def parse(text: str) -> list[Any]:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None

    return parse


_TRAIN_OPTIONS: tuple[str, ...] = ("steps", "batch_size", "val_images", "eval_subset", "warmup_steps")
"""The :data:`ABLATION_TRAIN` fields the command line can change."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.ablation`` argument parser (relative paths: from the repository root)."""
    p = argparse.ArgumentParser(prog=DEFAULT_COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=_list(str), default=list(DEFAULT_OPS), help="default align,pool")
    p.add_argument("--strides", type=_list(int), default=list(DEFAULT_STRIDES), help="default 4,16")
    p.add_argument("--seeds", type=_list(int), default=list(DEFAULT_SEEDS), help="default 0,1,2")
    help_of = {f.name: f.metadata["help"] for f in fields(TrainConfig)}
    for name in _TRAIN_OPTIONS:  # the TrainConfig options, with the ablation's defaults
        p.add_argument("--" + name.replace("_", "-"), type=int, default=ABLATION_TRAIN[name],
                       help=f"{help_of[name]} (default %(default)s)")
    p.add_argument("--jobs", type=int, default=2, help="trainings side by side (default %(default)s)")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="folder of the runs (default %(default)s)")
    p.add_argument("--name", default=None,
                   help="run name: the outputs go to RUNS_DIR/NAME/ (default: ablation-<UTC time>)")
    p.add_argument("--out", default=None, help="results JSON (default RUNS_DIR/NAME/ablation_results.json; the shipped "
                                              "results are regenerated with --out data/ablation_results.json)")
    p.add_argument("--checkpoints", default=None,
                   help="folder for the seed-0 float16 checkpoints (default RUNS_DIR/NAME/ablation; 'none' keeps "
                        "none; the shipped ones: --checkpoints data/ablation)")
    p.add_argument("--resume", action="store_true", help="keep finished runs of the same settings in --out")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing results file or checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m helpers.ablation``; prints the summary table, returns the results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    a = parser.parse_args(argv)
    train_overrides = {name: getattr(a, name) for name in _TRAIN_OPTIONS}
    folder = Path(a.runs_dir) / (a.name or default_run_name())
    out = a.out or folder / "ablation_results.json"
    checkpoints = a.checkpoints or folder / "ablation"
    try:
        results = run_ablation(a.ops, a.strides, a.seeds, out=out,
                               checkpoints=None if str(checkpoints).lower() == "none" else checkpoints,
                               train_overrides=train_overrides, jobs=a.jobs, resume=a.resume,
                               overwrite=a.overwrite, progress=not a.no_progress,
                               command=" ".join([DEFAULT_COMMAND, *(shlex.quote(x) for x in argv)]))
    except (TypeError, ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(format_summary(summarise(results)))
    print(f"{len(results['runs'])} runs in {results['total_wall_s'] / 60:.1f} min wall; "
          f"results: {repo_relative(ROOT / out)}")
    return results


if __name__ == "__main__":
    main()

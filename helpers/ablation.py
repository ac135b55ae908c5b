"""RoIAlign against RoIPool, in miniature: the Mask R-CNN paper's Table 2c/2d on the shapes task.

The paper (He et al., 2017, Table 2c, ResNet-50-C4, stride 16) reports mask AP 26.9 with RoIPool
and 30.3 with RoIAlign; on a single stride-32 map (Table 2d, C5) 23.6 against 30.9, the gap
largest at AP75. This module reruns that experiment small enough for a laptop CPU: the same model,
data, schedule and seeds, once with RoIAlign and once with RoIPool (both the box and the mask
branch, :class:`helpers.model.MultiScaleRoIPooler`), on one feature map at a fine and at a coarse
stride, for several seeds. Every run trains from scratch with :func:`helpers.train.train` and is
scored with COCOeval (``segm`` and ``bbox``) on the same held-out validation images.

Regenerate the shipped results (``data/ablation_results.json`` and the four seed-0 checkpoints
in ``data/ablation/``) with::

    python -m helpers.ablation

(the defaults below; ``--jobs 2`` runs two trainings side by side, one CPU thread each).

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
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ABLATION_MODEL",
    "ABLATION_TRAIN",
    "DEFAULT_OPS",
    "DEFAULT_STRIDES",
    "DEFAULT_SEEDS",
    "DEFAULT_OUT",
    "DEFAULT_CHECKPOINTS",
    "METRICS",
    "run_one",
    "run_ablation",
    "summarise",
    "format_summary",
    "checkpoint_path",
    "save_half_checkpoint",
    "load_half_checkpoint",
    "roipool_cells",
    "roipool_extent",
    "coordinate_map",
    "masks_for_boxes",
    "mask_iou",
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
DEFAULT_OUT = "data/ablation_results.json"
DEFAULT_CHECKPOINTS = "data/ablation"
DEFAULT_COMMAND = "python -m helpers.ablation"

METRICS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm")
"""The COCO metrics stored per run and IoU type (the shapes have no large objects)."""

_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
def _check_ops(ops: Any) -> list[str]:
    from helpers.model import POOL_OPS

    if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
        raise TypeError(f"ops must be a non-empty list drawn from {POOL_OPS}, got {ops!r}")
    bad = [op for op in ops if op not in POOL_OPS]
    if bad:
        raise ValueError(f"ops must be drawn from {POOL_OPS}, got {bad}")
    return list(dict.fromkeys(ops))


def _check_ints(name: str, values: Any, allowed: Sequence[int] | None = None) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise TypeError(f"{name} must be a non-empty list of ints, got {values!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise TypeError(f"{name} must hold ints only, got {values!r}")
    if allowed is not None and any(v not in allowed for v in values):
        raise ValueError(f"{name} must be drawn from {list(allowed)}, got {list(values)}")
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be >= 0, got {list(values)}")
    return list(dict.fromkeys(values))


def _resolve(path: str | Path) -> Path:
    """Relative paths are relative to the repository root (the results live in its ``data/``)."""
    path = Path(path)
    return path if path.is_absolute() else _ROOT / path


def checkpoint_path(folder: str | Path, op: str, stride: int, seed: int) -> Path:
    """``folder/<op>_stride<stride>_seed<seed>.pt`` (the seed-0 models shipped in ``data/ablation/``)."""
    return _resolve(folder) / f"{op}_stride{stride}_seed{seed}.pt"


# ----------------------------------------------------------------------------------------------
# small checkpoints: float16 weights (half the bytes), loaded back into float32
# ----------------------------------------------------------------------------------------------
def save_half_checkpoint(model: torch.nn.Module, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Save a :func:`helpers.model.build_model` model with its float tensors rounded to float16.

    Args:
        model: a model carrying ``shapes_config`` (from :func:`helpers.model.build_model`).
        path: the file to write; its folder is created.
        extra: plain-typed information to store beside the weights.

    Returns:
        The path written. ``{"state_dict", "config", "extra"}``, loadable with
        ``torch.load(weights_only=True)``; about 2 MB for the ablation's 1 M parameters.
    """
    config = getattr(model, "shapes_config", None)
    if config is None:
        raise TypeError("model must come from helpers.model.build_model (it has no shapes_config)")
    state = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu().clone())
             for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "config": config.to_dict(), "extra": dict(extra or {})}, path)
    return path


def load_half_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load :func:`save_half_checkpoint`'s file into a float32 model in eval mode.

    Args:
        path: the checkpoint file.

    Returns:
        ``(model, checkpoint)``: torchvision's ``MaskRCNN`` (eval mode, CPU, float32 weights that
        hold the float16 values exactly) and the loaded dict.
    """
    from helpers.model import build_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ablation checkpoint at {path}; regenerate with `{DEFAULT_COMMAND}`")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not {"state_dict", "config"} <= set(checkpoint):
        raise ValueError(f"{path} is not an ablation checkpoint (it needs 'state_dict' and 'config' keys)")
    model = build_model(checkpoint["config"])
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in checkpoint["state_dict"].items()}
    model.load_state_dict(state)
    return model.eval(), checkpoint


# ----------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------
def _round_metrics(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {kind: {name: round(float(metrics[iou][name]), 4) for name in METRICS}
            for kind, iou in (("mask", "segm"), ("box", "bbox"))}


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
        One run's record: ``op``, ``feature_stride``, ``seed``, ``steps``, ``wall_s`` (the whole run),
        ``train_wall_s``, ``train_cpu_s``, ``eval_wall_s``, ``loadavg`` (start, end), ``mask`` and
        ``box`` (:data:`METRICS` on the validation set), ``final_losses`` (mean of the last 50 steps
        of each loss term), ``loss_curve`` (every 10th step's ``loss_mask`` and ``loss_box_reg``)
        and, when saved, ``checkpoint`` (path relative to the repository) with
        ``checkpoint_subset_mask_AP``: the float16 model's mask AP on the first ``eval_subset``
        validation images, which notebook 10 recomputes.
    """
    from helpers.train import LOSS_NAMES, TrainConfig, train

    _check_ops([op])
    _check_ints("stride", [stride])
    _check_ints("seed", [seed])
    start = time.perf_counter()
    tcfg = {**ABLATION_TRAIN, **dict(train_overrides or {})}
    mcfg = {**ABLATION_MODEL, **dict(model_overrides or {}), "pool": op, "feature_stride": stride}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(**{**tcfg, "seed": seed, "progress": progress,
                             "checkpoint": str(Path(tmp) / "model.pt"), "log": str(Path(tmp) / "log.json")})
        log = train(cfg, mcfg, command=f"{DEFAULT_COMMAND} (op={op}, stride={stride}, seed={seed})")
        record: dict[str, Any] = {
            "op": op, "feature_stride": stride, "seed": seed, "steps": log["steps_done"],
            "train_wall_s": log["train_wall_s"], "train_cpu_s": log["train_cpu_s"],
            "eval_wall_s": log["eval_wall_s"], "loadavg": [log["loadavg_start"], log["loadavg_end"]],
            "parameters": log["parameters"],
            **_round_metrics(log["metrics"]),
        }
        rows = log["steps"]
        tail = rows[-min(50, len(rows)):]
        record["final_losses"] = {name: round(float(np.mean([r[name] for r in tail])), 4) for name in LOSS_NAMES}
        record["loss_curve"] = {"step": [r["step"] for r in rows[::10]],
                                "loss_mask": [r["loss_mask"] for r in rows[::10]],
                                "loss_box_reg": [r["loss_box_reg"] for r in rows[::10]]}
        if checkpoint is not None:
            from helpers.evaluate import evaluate
            from helpers.model import load_checkpoint
            from helpers.shapes import ShapesDataset

            model, _ = load_checkpoint(Path(tmp) / "model.pt")
            path = save_half_checkpoint(model, checkpoint, extra={"op": op, "feature_stride": stride, "seed": seed,
                                                                  "command": DEFAULT_COMMAND})
            half, _ = load_half_checkpoint(path)
            subset = ShapesDataset(cfg.eval_subset, seed=cfg.val_seed, size=mcfg.get("image_size", 128))
            record["checkpoint"] = str(path.relative_to(_ROOT)) if path.is_relative_to(_ROOT) else str(path)
            record["checkpoint_subset_mask_AP"] = round(evaluate(half, subset)["segm"]["AP"], 4)
    record["wall_s"] = round(time.perf_counter() - start, 2)
    return record


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
                 seeds: Sequence[int] = DEFAULT_SEEDS, out: str | Path = DEFAULT_OUT,
                 checkpoints: str | Path | None = DEFAULT_CHECKPOINTS, checkpoint_seed: int | None = 0,
                 train_overrides: Mapping[str, Any] | None = None,
                 model_overrides: Mapping[str, Any] | None = None, jobs: int = 1, resume: bool = False,
                 progress: bool = True, command: str | None = None) -> dict[str, Any]:
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
        progress: tqdm bars (one over the runs; with ``jobs == 1`` also each run's steps).
        command: the command line recorded in the JSON.

    Returns:
        The results dict written to ``out``: ``command``, ``settings`` (ops, strides, seeds, the
        train and model configs), ``machine``, ``runs`` (one :func:`run_one` record each, sorted by
        stride, op, seed), ``total_wall_s`` (this call's wall time, plus that of resumed runs'
        session when resuming) and ``complete``.
    """
    from helpers.train import TrainConfig, _machine

    ops = _check_ops(ops)
    strides = _check_ints("strides", strides)
    seeds = _check_ints("seeds", seeds)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    train_overrides = dict(train_overrides or {})
    model_overrides = dict(model_overrides or {})
    # validate the configs once, here, so that a typo fails before any training starts
    from helpers.model import ShapesModelConfig

    tcfg = TrainConfig(**{**ABLATION_TRAIN, **train_overrides, "progress": False})
    for stride in strides:
        ShapesModelConfig.from_dict({**ShapesModelConfig().to_dict(), **ABLATION_MODEL, **model_overrides,
                                     "feature_stride": stride})
    settings = {"ops": ops, "strides": strides, "seeds": seeds,
                "train": {k: v for k, v in asdict(tcfg).items() if k not in ("progress", "checkpoint", "log")},
                "model": {**ABLATION_MODEL, **model_overrides}}
    out_path = _resolve(out)
    done: dict[tuple[int, str, int], dict[str, Any]] = {}
    previous_wall = 0.0
    if resume and out_path.is_file():
        old = json.loads(out_path.read_text())
        if old.get("settings", {}).get("train") == settings["train"] and \
                old.get("settings", {}).get("model") == settings["model"]:
            done = {_key(r): r for r in old.get("runs", [])}
            previous_wall = float(old.get("total_wall_s", 0.0))
    # seed-major order: an interrupted grid still holds whole seeds of every setting
    wanted = [(s, op, seed) for seed in seeds for s in strides for op in ops]
    todo = [k for k in wanted if k not in done]
    start = time.perf_counter()

    def write(complete: bool) -> dict[str, Any]:
        runs = [done[k] for k in sorted(done)]
        result = {"command": command or DEFAULT_COMMAND, "settings": settings, "machine": _machine(),
                  "jobs": jobs, "total_wall_s": round(previous_wall + time.perf_counter() - start, 1),
                  "complete": complete and all(k in done for k in wanted), "runs": runs}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        tmp.replace(out_path)
        return result

    specs = []
    for stride, op, seed in todo:
        ckpt = None
        if checkpoints is not None and seed == checkpoint_seed:
            ckpt = str(checkpoint_path(checkpoints, op, stride, seed))
        specs.append({"op": op, "stride": stride, "seed": seed, "train_overrides": train_overrides,
                      "model_overrides": model_overrides, "checkpoint": ckpt,
                      "progress": progress and jobs == 1})
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(wanted), initial=len(wanted) - len(todo), desc="ablation runs", unit="run",
                   file=sys.stderr)
    try:
        def finished(record: dict) -> None:
            done[_key(record)] = record
            write(False)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{record['op']} s{record['feature_stride']} seed {record['seed']}: "
                                    f"mask AP {record['mask']['AP']:.3f}")

        if jobs == 1:
            for spec in specs:
                finished(_run_spec(spec))
        else:
            ctx = multiprocessing.get_context("spawn")
            with futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                pending = [pool.submit(_run_spec, spec) for spec in specs]
                for fut in futures.as_completed(pending):
                    finished(fut.result())
    finally:
        if bar is not None:
            bar.close()
    return write(True)


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
        if kind not in ("mask", "box"):
            raise ValueError(f"kinds must be drawn from ('mask', 'box'), got {kind!r}")
    for name in metrics:
        if name not in METRICS:
            raise ValueError(f"metrics must be drawn from {METRICS}, got {name!r}")
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
def _check_boxes(boxes: Any) -> Tensor:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be Tensor[K, 4] (x1, y1, x2, y2), got {getattr(boxes, 'shape', type(boxes))}")
    return boxes.to(torch.float64)


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
    b = _check_boxes(boxes)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    h, w = map_size
    scaled = b / stride  # [K, 4]
    start = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)  # C round: half away from zero
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
    """Run only the mask branch of a trained ``MaskRCNN`` on given boxes and paste the masks.

    The same steps torchvision's eval mode runs on its detections (transform, backbone, the mask
    pooler, mask head and predictor, the sigmoid of each box's own class channel, pasting), but on
    boxes you choose: given the *true* boxes, two models differ only in how well their mask branch
    (and the features its pooler reads) outline the object, not in what their box branch found.

    Args:
        model: torchvision ``MaskRCNN`` (put in eval mode).
        images: list of ``Tensor[3, H_i, W_i]`` float in ``[0, 1]`` (run as one batch).
        boxes: list of ``Tensor[K_i, 4]`` ``(x1, y1, x2, y2)`` in each image's pixels.
        labels: list of ``Tensor[K_i]``: the class of each box (which mask channel to read).

    Returns:
        List of ``Tensor[K_i, 1, H_i, W_i]`` mask probabilities, like the ``masks`` of an eval output
        (fed the model's own detections, it reproduces them exactly).
    """
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    if isinstance(images, Tensor) or not isinstance(images, (list, tuple)) or not (
            len(images) == len(boxes) == len(labels)):
        raise TypeError("images, boxes and labels must be lists of the same length (one entry per image)")
    for i, (image, b, l) in enumerate(zip(images, boxes, labels)):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"images[{i}] must be Tensor[3, H, W], got {getattr(image, 'shape', type(image))}")
        _check_boxes(b)
        if not isinstance(l, Tensor) or l.shape != (len(b),):
            raise ValueError(f"labels[{i}] must be Tensor[K] with K = {len(b)} (one per box)")
    model.eval()
    batch, _ = model.transform(list(images))
    features = model.backbone(batch.tensors)
    scaled = []
    for image, b, (rh, rw) in zip(images, boxes, batch.image_sizes):
        h, w = image.shape[1:]
        scaled.append(b.to(torch.float32) * torch.tensor([rw / w, rh / h, rw / w, rh / h]))
    pooled = model.roi_heads.mask_roi_pool(features, scaled, batch.image_sizes)  # [sum K, C, 14, 14]
    logits = model.roi_heads.mask_predictor(model.roi_heads.mask_head(pooled))  # [sum K, classes, 28, 28]
    all_labels = torch.cat([l.long() for l in labels])
    probs = logits[torch.arange(len(all_labels)), all_labels].sigmoid()[:, None]  # [sum K, 1, 28, 28]
    out, start = [], 0
    for image, b in zip(images, boxes):
        out.append(paste_masks_in_image(probs[start:start + len(b)], b.to(torch.float32), tuple(image.shape[1:])))
        start += len(b)
    return out


def mask_iou(pred: Tensor, truth: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of each predicted mask (probabilities ``> threshold``) with its own true mask, in float64.

    Args:
        pred: ``Tensor[K, 1, H, W]`` or ``[K, H, W]`` probabilities.
        truth: ``Tensor[K, H, W]`` binary masks, row ``k`` the truth for ``pred[k]``.
        threshold: binarisation threshold (0.5, as COCO evaluation uses).

    Returns:
        ``Tensor[K]`` float64 IoUs (0 where both masks are empty).
    """
    p = pred[:, 0] if pred.dim() == 4 else pred
    if p.shape != truth.shape:
        raise ValueError(f"pred and truth must have matching [K, H, W] shapes, got {tuple(p.shape)} and "
                         f"{tuple(truth.shape)}")
    a, b = p > threshold, truth.bool()
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))


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


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.ablation`` argument parser."""
    p = argparse.ArgumentParser(prog=DEFAULT_COMMAND, description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", type=_list(str), default=list(DEFAULT_OPS), help="default align,pool")
    p.add_argument("--strides", type=_list(int), default=list(DEFAULT_STRIDES), help="default 4,16")
    p.add_argument("--seeds", type=_list(int), default=list(DEFAULT_SEEDS), help="default 0,1,2")
    p.add_argument("--steps", type=int, default=ABLATION_TRAIN["steps"], help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=ABLATION_TRAIN["batch_size"], help="default %(default)s")
    p.add_argument("--val-images", type=int, default=ABLATION_TRAIN["val_images"], help="default %(default)s")
    p.add_argument("--eval-subset", type=int, default=ABLATION_TRAIN["eval_subset"], help="default %(default)s")
    p.add_argument("--warmup-steps", type=int, default=ABLATION_TRAIN["warmup_steps"], help="default %(default)s")
    p.add_argument("--jobs", type=int, default=2, help="trainings side by side (default %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, help="results JSON (default %(default)s)")
    p.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS,
                   help="folder for the seed-0 float16 checkpoints (default %(default)s; 'none' keeps none)")
    p.add_argument("--resume", action="store_true", help="keep finished runs of the same settings in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m helpers.ablation``; prints the summary table, returns the results."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    a = parser.parse_args(argv)
    train_overrides = {"steps": a.steps, "batch_size": a.batch_size, "val_images": a.val_images,
                       "eval_subset": a.eval_subset, "warmup_steps": a.warmup_steps}
    try:
        results = run_ablation(a.ops, a.strides, a.seeds, out=a.out,
                               checkpoints=None if a.checkpoints.lower() == "none" else a.checkpoints,
                               train_overrides=train_overrides, jobs=a.jobs, resume=a.resume,
                               progress=not a.no_progress,
                               command=" ".join([DEFAULT_COMMAND, *(shlex.quote(x) for x in argv)]))
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    print(format_summary(summarise(results)))
    print(f"{len(results['runs'])} runs in {results['total_wall_s'] / 60:.1f} min wall; results: {a.out}")
    return results


if __name__ == "__main__":
    main()

"""Train the shapes Mask R-CNN from scratch, save a checkpoint and a JSON log, score it with COCOeval.

Usage (the command that produced the shipped ``data/shapes_maskrcnn.pt``)::

    python -m helpers.train

is the same as ``python -m helpers.train --steps 1000 --batch-size 8 --seed 0 --threads 2``. Useful options::

    python -m helpers.train --steps 200 --checkpoint /tmp/m.pt --log /tmp/m.json   # a short try
    python -m helpers.train --pool pool --feature-stride 16 --seed 1                # an ablation run
    python -m helpers.train --coco-images my/images --coco-json my/instances.json   # your own data
    python -m helpers.train --benchmark 20     # time 20 steps here; projects the default run's time
    python -m helpers.train --help

What it does, in order:

1. seeds ``torch``, ``numpy`` and ``random``; uses ``--threads`` CPU threads (2) and the GPU when
   one is present (``--device cpu`` forces the CPU);
2. builds :func:`helpers.model.build_model` (random weights: nothing is downloaded);
3. trains for ``--steps`` steps of ``--batch-size`` images with AdamW, a linear warm-up and a cosine
   decay, showing a tqdm progress bar. Shapes training images are ``ShapesDataset(steps *
   batch_size, seed=--seed)``: every step sees new images. The validation images are
   ``ShapesDataset(--val-images, seed=--val-seed)``; item ``i`` of a data set with seed ``s`` is
   drawn from ``numpy.random.default_rng([s, i])``, so different seeds never share an image;
4. saves the checkpoint (``{"state_dict", "config", "extra"}``, plain types, loads with
   ``torch.load(weights_only=True)``);
5. evaluates on the validation set with COCOeval (``segm`` and ``bbox``) and writes the log: the
   command, both configs, every step's five loss terms, learning rate and elapsed time, the wall
   and CPU time, threads, machine, load average, and the metrics.

Written for notebook 09; notebook 10's ablation calls :func:`train` directly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import shlex
import sys
import time

if __name__ == "__main__" and "torch" not in sys.modules:
    # OpenMP threads that wait for work spin by default. On a CPU shared with other jobs a spinning
    # thread burns the time slice its partner needs: measured on a 2-core machine under a load of 9,
    # one training step took 13 s with spinning threads and 1.2 s with sleeping ones. Set here, before
    # torch (and its OpenMP runtime) loads, and only for `python -m helpers.train`.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from helpers.evaluate import evaluate, format_metrics_table
from helpers.model import ShapesModelConfig, build_model, count_parameters, save_checkpoint

__all__ = ["TrainConfig", "train", "benchmark", "main", "parse_args", "LOSS_NAMES", "DEFAULT_COMMAND"]

LOSS_NAMES: tuple[str, ...] = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
"""torchvision's five Mask R-CNN loss terms, in the order the stages run."""

DEFAULT_COMMAND = "python -m helpers.train"
"""The command that produced the shipped checkpoint and log (all defaults)."""

_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainConfig:
    """Everything about a training run except the model (see :class:`helpers.model.ShapesModelConfig`).

    Attributes:
        steps: optimiser steps.
        batch_size: images per step.
        lr: AdamW's peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: linear warm-up from ``lr / 100``; then a cosine decay to 0 at ``steps``.
        grad_clip: clip the gradient's global norm to this (0: no clipping).
        seed: seeds torch / numpy / random and the shapes training data (``ShapesDataset(seed=seed)``).
        val_seed: seed of the shapes validation set; must differ from ``seed``.
        val_images: validation images (shapes), evaluated after training.
        eval_subset: also evaluate the first ``eval_subset`` validation images alone and log it
            (a quick reproducibility check for tests); 0 to skip.
        train_images: ``None``: ``steps * batch_size`` fresh shapes images (each seen once); an int:
            that many images, cycled in a fresh seeded order every epoch.
        threads: ``torch.set_num_threads`` (CPU).
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        checkpoint, log: output files (relative paths are relative to the repository root).
        coco_images, coco_json: train on a COCO-format folder instead of the shapes.
        coco_val_images, coco_val_json: its validation folder; without them a seeded
            ``val_fraction`` of the training images is held out.
        val_fraction: the held-out fraction when no COCO validation set is given.
        progress: show tqdm progress bars.
        time_limit: stop training after this many seconds of wall time (``None``: never). The log
            records whether it fired; the shipped run does not use it.
        eval_every: every this many steps, evaluate the first ``eval_subset`` validation images and
            log mask and box AP (``0``: never; the shipped run does not, to spend its time training).
            The time it takes is logged as ``periodic_eval_s`` and left out of ``train_wall_s``.
    """

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 10.0
    seed: int = 0
    val_seed: int = 1_000_000
    val_images: int = 200
    eval_subset: int = 25
    train_images: int | None = None
    threads: int = 2
    device: str = "auto"
    checkpoint: str = "data/shapes_maskrcnn.pt"
    log: str = "data/shapes_train_log.json"
    coco_images: str | None = None
    coco_json: str | None = None
    coco_val_images: str | None = None
    coco_val_json: str | None = None
    val_fraction: float = 0.2
    progress: bool = True
    time_limit: float | None = None
    eval_every: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads"):
            _check_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "seed", "val_seed", "val_images", "eval_subset", "eval_every"):
            _check_int(name, getattr(self, name), 0)
        if self.train_images is not None:
            _check_int("train_images", self.train_images, 1)
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.coco_images is None and self.seed == self.val_seed:
            raise ValueError(f"val_seed must differ from seed ({self.seed}): the validation images must be "
                             "images no training step saw")
        if (self.coco_images is None) != (self.coco_json is None):
            raise ValueError("coco_images and coco_json go together: give both (a COCO-format folder) or neither")
        if (self.coco_val_images is None) != (self.coco_val_json is None):
            raise ValueError("coco_val_images and coco_val_json go together: give both or neither")
        if self.coco_val_images is not None and self.coco_images is None:
            raise ValueError("coco_val_images/coco_val_json need coco_images/coco_json (the training folder)")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {self.time_limit!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _resolve(path: str | Path, default: str | None = None) -> Path:
    """An absolute path: the default output files live in the repository's ``data/`` wherever the
    command runs; any other relative path is relative to the current folder, as on any command line."""
    path = Path(path)
    if path.is_absolute():
        return path
    return _ROOT / path if default is not None and str(path) == default else Path.cwd() / path


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 0
    import torchvision

    return {"platform": platform.platform(), "cpu": cpu, "cores_available": cores,
            "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _datasets(cfg: TrainConfig, image_size: int) -> tuple[Any, Any, dict[str, Any], dict[int, int] | None, tuple[str, ...]]:
    """(train set, val set, val COCO ground truth, label -> category map, class names)."""
    if cfg.coco_images is None:
        from helpers.shapes import CLASSES, ShapesDataset, to_coco

        n_train = cfg.train_images if cfg.train_images is not None else cfg.steps * cfg.batch_size
        train_set = ShapesDataset(n_train, seed=cfg.seed, size=image_size)
        val_set = ShapesDataset(cfg.val_images, seed=cfg.val_seed, size=image_size)
        return train_set, val_set, to_coco(val_set), None, tuple(CLASSES)
    from helpers.coco_data import CocoInstanceDataset

    full = CocoInstanceDataset(_resolve(cfg.coco_images), _resolve(cfg.coco_json))
    if cfg.coco_val_images is not None:
        train_set = full
        val_set = CocoInstanceDataset(_resolve(cfg.coco_val_images), _resolve(cfg.coco_val_json))
        if [c["id"] for c in val_set.categories] != [c["id"] for c in full.categories]:
            raise ValueError("the COCO validation JSON must list the same category ids as the training JSON")
    else:
        if len(full) < 2:
            raise ValueError(f"{cfg.coco_json} holds {len(full)} image(s): need at least 2 to hold one out for "
                             "validation (or pass --coco-val-images/--coco-val-json)")
        order = np.random.default_rng([cfg.seed, 7]).permutation(len(full.image_ids))
        n_val = min(len(full) - 1, max(1, round(cfg.val_fraction * len(full))))
        val_ids = sorted(full.image_ids[i] for i in order[:n_val])
        train_ids = sorted(full.image_ids[i] for i in order[n_val:])
        train_set, val_set = full.subset(train_ids), full.subset(val_ids)
    return train_set, val_set, val_set.coco_subset(), dict(val_set.label_to_category), tuple(full.classes)


def _to_device(target: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in target.items()}


def train(train_config: TrainConfig | None = None, model_config: ShapesModelConfig | Mapping[str, Any] | None = None,
          command: str | None = None, write: bool = True) -> dict[str, Any]:
    """Train from scratch, save the checkpoint, evaluate, write the log; return the log dict.

    Args:
        train_config: a :class:`TrainConfig` (``None``: the defaults, i.e. the shipped run).
        model_config: a :class:`~helpers.model.ShapesModelConfig` or a dict of its fields (``None``:
            defaults). ``num_classes`` is set from the data (4 for the shapes).
        command: the command line to record in the log (``None``: rebuilt from the configs).
        write: save the checkpoint and the log files (``False``: only return the log).

    Returns:
        The log: ``command``, ``train_config``, ``model_config``, ``parameters``, ``steps`` (one dict per
        step: ``step``, the five :data:`LOSS_NAMES`, ``loss``, ``lr``, ``time`` seconds since the start),
        ``train_wall_s``, ``train_cpu_s``, ``eval_wall_s``, ``total_wall_s``, ``threads``, ``device``,
        ``machine``, ``loadavg_start``/``loadavg_end``, ``stopped_early``, ``metrics`` (``segm``/``bbox``
        on the whole validation set) and ``metrics_subset`` (on its first ``eval_subset`` images).
    """
    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig or None, got {type(cfg).__name__}")
    if model_config is None:
        mcfg = ShapesModelConfig()
    elif isinstance(model_config, ShapesModelConfig):
        mcfg = ShapesModelConfig.from_dict(model_config.to_dict())
    elif isinstance(model_config, Mapping):
        mcfg = ShapesModelConfig.from_dict(model_config)
    else:
        raise TypeError(f"model_config must be a ShapesModelConfig, a dict or None, got {type(model_config).__name__}")

    wall_start, cpu_start = time.perf_counter(), _cpu_seconds()
    loadavg_start = _loadavg()
    torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    _seed_everything(cfg.seed)

    train_set, val_set, val_coco, label_to_category, classes = _datasets(cfg, mcfg.image_size)
    mcfg.num_classes = len(classes)
    mcfg.validate()
    model = build_model(mcfg).to(device)
    model.train()

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no weight decay on BatchNorm and biases
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def lr_factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return 0.01 + 0.99 * step / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    order_rng = np.random.default_rng([cfg.seed, 1])
    one_pass = cfg.coco_images is None and cfg.train_images is None
    order: list[int] = []

    def next_indices() -> list[int]:
        if one_pass:  # fresh images: step s uses images s * B ... s * B + B - 1
            start = step * cfg.batch_size
            return list(range(start, start + cfg.batch_size))
        out = []
        while len(out) < cfg.batch_size:
            if not order:
                order.extend(order_rng.permutation(len(train_set)).tolist())
            out.append(order.pop(0))
        return out

    rows: list[dict[str, float]] = []
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc="train", unit="step", mininterval=1.0, file=sys.stderr)
    stopped_early = False
    smoothed = None
    periodic: list[dict[str, float]] = []
    paused = 0.0
    n_sub = min(cfg.eval_subset, len(val_set))
    sub = [val_set[i] for i in range(n_sub)]
    sub_ids = {int(t["image_id"]) for _, t in sub}
    sub_coco = {"images": [im for im in val_coco["images"] if int(im["id"]) in sub_ids],
                "annotations": [a for a in val_coco["annotations"] if int(a["image_id"]) in sub_ids],
                "categories": val_coco["categories"]}
    train_wall_start, train_cpu_start = time.perf_counter(), _cpu_seconds()
    paused_cpu = 0.0
    for step in range(cfg.steps):
        batch = [train_set[i] for i in next_indices()]
        images = [image.to(device) for image, _ in batch]
        targets = [_to_device(target, device) for _, target in batch]
        losses = model(images, targets)
        loss = sum(losses[name] for name in LOSS_NAMES)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} at step {step}: lower --lr "
                                     f"(now {cfg.lr}) or raise --warmup-steps")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        lr_now = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        loss_value = loss.item()
        row = {"step": step, "loss": round(loss_value, 5), "lr": float(f"{lr_now:.6g}"),
               "time": round(time.perf_counter() - train_wall_start - paused, 3),
               "cpu": round(_cpu_seconds() - train_cpu_start - paused_cpu, 3)}
        row.update({name: round(losses[name].item(), 5) for name in LOSS_NAMES})
        rows.append(row)
        smoothed = loss_value if smoothed is None else 0.95 * smoothed + 0.05 * loss_value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{smoothed:.3f}", mask=f"{row['loss_mask']:.3f}", refresh=False)
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps and n_sub > 0:
            t0, c0 = time.perf_counter(), _cpu_seconds()
            m = evaluate(model, sub, sub_coco, label_to_category, device=device)
            model.train()
            periodic.append({"step": step + 1, "segm_AP": round(m["segm"]["AP"], 4),
                             "bbox_AP": round(m["bbox"]["AP"], 4), "segm_AP50": round(m["segm"]["AP50"], 4)})
            paused += time.perf_counter() - t0
            paused_cpu += _cpu_seconds() - c0
            if bar is not None:
                bar.write(f"step {step + 1}: mask AP {m['segm']['AP']:.3f} (first {n_sub} validation images)")
        if cfg.time_limit is not None and time.perf_counter() - wall_start > cfg.time_limit:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    train_wall = time.perf_counter() - train_wall_start - paused
    train_cpu = _cpu_seconds() - train_cpu_start - paused_cpu

    model.eval()
    extra = {"classes": list(classes), "label_to_category": {str(k): v for k, v in (label_to_category or {}).items()},
             "steps_done": len(rows), "seed": cfg.seed,
             "command": command or DEFAULT_COMMAND}
    if write:
        save_checkpoint(model, _resolve(cfg.checkpoint, TrainConfig.checkpoint), extra=extra)

    eval_start = time.perf_counter()
    from helpers.evaluate import predict

    outputs = predict(model, val_set, batch_size=16, device=device, progress=cfg.progress)
    metrics = evaluate(model, val_set, val_coco, label_to_category, outputs=outputs)
    metrics_subset = None
    if n_sub > 0:
        metrics_subset = evaluate(model, sub, sub_coco, label_to_category, outputs=outputs[:n_sub])
    eval_wall = time.perf_counter() - eval_start

    log: dict[str, Any] = {
        "command": command or DEFAULT_COMMAND,
        "train_config": asdict(cfg),
        "model_config": mcfg.to_dict(),
        "classes": list(classes),
        "parameters": count_parameters(model),
        "parameters_backbone": count_parameters(model.backbone),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "machine": _machine(),
        "loadavg_start": loadavg_start,
        "loadavg_end": _loadavg(),
        "steps_done": len(rows),
        "stopped_early": stopped_early,
        "train_wall_s": round(train_wall, 2),
        "train_cpu_s": round(train_cpu, 2),
        "eval_wall_s": round(eval_wall, 2),
        "total_wall_s": round(time.perf_counter() - wall_start, 2),
        "total_cpu_s": round(_cpu_seconds() - cpu_start, 2),
        "val_images": len(val_set),
        "eval_subset": n_sub,
        "metrics": metrics,
        "metrics_subset": metrics_subset,
        "periodic_eval": periodic,
        "periodic_eval_s": round(paused, 2),
        "steps": rows,
    }
    if write:
        path = _resolve(cfg.log, TrainConfig.log)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(log, indent=1) + "\n")
    return log


# ----------------------------------------------------------------------------------------------
# how long would the shipped run take here? (time a few steps instead of training for ten minutes)
# ----------------------------------------------------------------------------------------------
def benchmark(steps: int = 20, threads: int = 2, checkpoint: str | Path | None = "data/shapes_maskrcnn.pt",
              batch_size: int = 8, warmup: int = 3) -> list[dict[str, Any]]:
    """Time training steps of the default model, with fresh weights and with the trained checkpoint.

    A trained model's steps cost more than a fresh one's (its RPN proposes real objects, so more RoIs
    are positives and go through the mask branch), so the two bracket a whole run. The weights are
    updated with a tiny learning rate, as in training but without changing them much.

    Args:
        steps: timed steps per weight set (after ``warmup`` untimed ones).
        threads: ``torch.set_num_threads``.
        checkpoint: the trained weights (``None``, or a missing file: only fresh weights are timed).
        batch_size: images per step.
        warmup: untimed steps first (allocations, caches).

    Returns:
        One dict per weight set: ``weights``, ``wall_per_step``, ``cpu_per_step`` (seconds, CPU summed
        over threads), ``threads``, ``loadavg`` (before, after), and ``projected_run_s``: the default
        schedule's step count times ``wall_per_step``.
    """
    _check_int("steps", steps, 1)
    _check_int("threads", threads, 1)
    from helpers.model import load_checkpoint
    from helpers.shapes import ShapesDataset

    torch.set_num_threads(threads)
    data = ShapesDataset((steps + warmup) * batch_size, seed=12345)
    candidates: list[tuple[str, Any]] = [("fresh", None)]
    if checkpoint is not None and _resolve(checkpoint, TrainConfig.checkpoint).is_file():
        candidates.append(("trained", _resolve(checkpoint, TrainConfig.checkpoint)))
    rows = []
    for name, path in candidates:
        torch.manual_seed(0)
        model = build_model() if path is None else load_checkpoint(path)[0]
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        before = _loadavg()
        wall = cpu = 0.0
        for step in range(steps + warmup):
            batch = [data[i] for i in range(step * batch_size, (step + 1) * batch_size)]
            t0, c0 = time.perf_counter(), _cpu_seconds()
            losses = model([b[0] for b in batch], [b[1] for b in batch])
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()
            if step >= warmup:
                wall += time.perf_counter() - t0
                cpu += _cpu_seconds() - c0
        rows.append({"weights": name, "wall_per_step": round(wall / steps, 4), "cpu_per_step": round(cpu / steps, 4),
                     "threads": torch.get_num_threads(), "loadavg": [before, _loadavg()],
                     "projected_run_s": round(TrainConfig().steps * wall / steps, 1)})
    return rows


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints like 32,64,128,256, got {text!r}") from None


def _stride(text: str) -> int | None:
    if text.lower() in ("none", "fpn"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int stride (4, 8, 16, 32) or 'fpn', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.train`` argument parser."""
    d = TrainConfig()
    m = ShapesModelConfig()
    p = argparse.ArgumentParser(prog="python -m helpers.train",
                                description="Train the shapes Mask R-CNN from scratch and evaluate it with COCOeval.")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (default %(default)s)")
    g.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    g.add_argument("--grad-clip", type=float, default=d.grad_clip)
    g.add_argument("--seed", type=int, default=d.seed, help="seeds everything, and the training shapes")
    g.add_argument("--train-images", type=int, default=None,
                   help="a finite shapes training set, cycled (default: fresh images every step)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default %(default)s)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    g.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    g.add_argument("--benchmark", type=int, default=0, metavar="STEPS",
                   help="do not train: time STEPS training steps with fresh and with the shipped weights, "
                        "and project the default run's training time")
    g = p.add_argument_group("evaluation")
    g.add_argument("--val-seed", type=int, default=d.val_seed, help="seed of the shapes validation set")
    g.add_argument("--val-images", type=int, default=d.val_images)
    g.add_argument("--eval-subset", type=int, default=d.eval_subset,
                   help="also log metrics on the first N validation images (default %(default)s)")
    g.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="evaluate the first --eval-subset validation images every N steps (default: never)")
    g = p.add_argument_group("outputs")
    g.add_argument("--checkpoint", default=d.checkpoint, help="default %(default)s")
    g.add_argument("--log", default=d.log, help="default %(default)s")
    g = p.add_argument_group("your own data (COCO format: an images folder + an instances JSON)")
    g.add_argument("--coco-images", default=None, help="folder of the training images")
    g.add_argument("--coco-json", default=None, help="COCO instances JSON of the training images")
    g.add_argument("--coco-val-images", default=None, help="folder of the validation images")
    g.add_argument("--coco-val-json", default=None, help="COCO instances JSON of the validation images")
    g.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="held-out fraction when no validation JSON is given (default %(default)s)")
    g = p.add_argument_group("model")
    g.add_argument("--pool", choices=("align", "pool"), default=m.pool, help="RoIAlign or RoIPool (box and mask)")
    g.add_argument("--feature-stride", type=_stride, default=None,
                   help="'fpn' (default: a pyramid, strides 4-32) or one stride: 4, 8, 16, 32")
    g.add_argument("--widths", type=_int_list, default=None, help="backbone stage channels, e.g. 32,64,128,256")
    g.add_argument("--anchor-sizes", type=_int_list, default=None, help="anchor sizes in pixels, e.g. 12,24,48,96")
    g.add_argument("--image-size", type=int, default=m.image_size, help="resize images to this side")
    g.add_argument("--model-json", default=None, help="more ShapesModelConfig fields as a JSON object")
    return p


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, ShapesModelConfig]:
    """Parse a command line into ``(TrainConfig, ShapesModelConfig)`` (errors exit with a message)."""
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        cfg = TrainConfig(steps=a.steps, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay,
                          warmup_steps=a.warmup_steps, grad_clip=a.grad_clip, seed=a.seed, val_seed=a.val_seed,
                          val_images=a.val_images, eval_subset=a.eval_subset, train_images=a.train_images,
                          threads=a.threads, device=a.device, checkpoint=a.checkpoint, log=a.log,
                          coco_images=a.coco_images, coco_json=a.coco_json, coco_val_images=a.coco_val_images,
                          coco_val_json=a.coco_val_json, val_fraction=a.val_fraction,
                          progress=not a.no_progress, time_limit=a.time_limit, eval_every=a.eval_every)
        overrides: dict[str, Any] = {"pool": a.pool, "feature_stride": a.feature_stride, "image_size": a.image_size}
        if a.widths is not None:
            overrides["widths"] = a.widths
        if a.anchor_sizes is not None:
            overrides["anchor_sizes"] = a.anchor_sizes
        elif a.feature_stride is None and a.widths is not None and len(a.widths) != len(ShapesModelConfig().widths):
            overrides["anchor_sizes"] = [12 * 2 ** i for i in range(len(a.widths))]
        if a.model_json:
            try:
                extra = json.loads(a.model_json)
            except json.JSONDecodeError as exc:
                raise ValueError(f"--model-json is not valid JSON: {exc}") from None
            if not isinstance(extra, dict):
                raise ValueError("--model-json must be a JSON object of ShapesModelConfig fields")
            overrides.update(extra)
        mcfg = ShapesModelConfig.from_dict({**ShapesModelConfig().to_dict(), **overrides})
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    return cfg, mcfg


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m helpers.train``; returns the log."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if build_parser().parse_args(argv).benchmark:
        a = build_parser().parse_args(argv)
        rows = benchmark(a.benchmark, threads=a.threads, checkpoint=a.checkpoint, batch_size=a.batch_size)
        print(f"{'weights':<8} {'wall s/step':>11} {'CPU s/step':>10} {'threads':>7} "
              f"{'projected ' + str(TrainConfig().steps) + '-step run':>24}  load average before -> after")
        for r in rows:
            print(f"{r['weights']:<8} {r['wall_per_step']:>11.3f} {r['cpu_per_step']:>10.3f} {r['threads']:>7} "
                  f"{r['projected_run_s'] / 60:>20.1f} min  {r['loadavg'][0]} -> {r['loadavg'][1]}")
        return {"benchmark": rows}
    cfg, mcfg = parse_args(argv)
    command = " ".join([DEFAULT_COMMAND, *(shlex.quote(a) for a in argv)])
    log = train(cfg, mcfg, command=command)
    print(f"trained {log['steps_done']} steps in {log['train_wall_s']:.0f} s wall "
          f"({log['train_cpu_s']:.0f} s CPU, {log['threads']} threads, load {log['loadavg_start']} -> "
          f"{log['loadavg_end']}); evaluated {log['val_images']} validation images in {log['eval_wall_s']:.1f} s")
    print(format_metrics_table(log["metrics"]))
    print(f"checkpoint: {cfg.checkpoint}\nlog: {cfg.log}")
    return log


if __name__ == "__main__":
    main()

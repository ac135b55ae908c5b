"""Train the shapes Mask R-CNN from scratch, save a checkpoint and a JSON log, score it with COCOeval.

Usage (the command that produced the shipped ``data/shapes_maskrcnn.pt``,
:data:`helpers.project.SHAPES_CHECKPOINT`)::

    python -m helpers.train

is the same as ``python -m helpers.train --steps 1000 --batch-size 8 --seed 0 --threads 2``. Useful options::

    python -m helpers.train --steps 200 --checkpoint /tmp/m.pt --log /tmp/m.json   # a short try
    python -m helpers.train --pool pool --feature-stride 16 --seed 1                # an ablation run
    python -m helpers.train --impl series --checkpoint /tmp/s.pt --log /tmp/s.json  # the series' own model
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

The pieces, for reuse: :func:`build_data` (step 3's data), :func:`fit` (the training loop alone: a
model, data and a config in, the trained model and its per-step log out), :func:`evaluate_run`
(step 5's metrics); :func:`train` composes them with the seeding, the checkpoint and the log.
Every option of the command line is a :class:`TrainConfig` field, declared once with its help.

Written for notebook 09; notebook 10's ablation calls :func:`train` directly.
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from helpers.checks import check_bool, check_choice, check_int, check_number
from helpers.evaluate import evaluate, format_metrics_table, predict
from helpers.model import IMPLEMENTATIONS, ShapesModelConfig, build_model, count_parameters, save_checkpoint
from helpers.project import ROOT, SHAPES_CHECKPOINT, SHAPES_TRAIN_LOG

__all__ = ["TrainConfig", "TrainData", "train", "fit", "build_data", "build_optimizer", "lr_factor", "batch_indices",
           "train_step", "evaluate_run", "seed_everything", "benchmark", "main", "build_parser", "parse_args",
           "machine_info", "output_path", "repo_relative", "LOSS_NAMES", "DEFAULT_COMMAND"]

LOSS_NAMES: tuple[str, ...] = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
"""torchvision's five Mask R-CNN loss terms, in the order the stages run."""

DEFAULT_COMMAND = "python -m helpers.train"
"""The command that produced the shipped checkpoint and log (all defaults)."""


# ----------------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------------
def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository root when it lies inside it (``"data/shapes_maskrcnn.pt"``),
    else ``path`` as given: how logs and ``--help`` spell a file."""
    path = Path(path)
    return path.relative_to(ROOT).as_posix() if path.is_absolute() and path.is_relative_to(ROOT) else str(path)


def output_path(path: str | Path, default: Path) -> Path:
    """Where to write ``path``: the default output file (``default``, spelled as :func:`repo_relative`
    spells it) lives in the repository's ``data/`` wherever the command runs; any other relative
    path is relative to the current folder, as on any command line."""
    path = Path(path)
    if path.is_absolute():
        return path
    return default if path.as_posix() == repo_relative(default) else Path.cwd() / path


# ----------------------------------------------------------------------------------------------
# configuration: each field declared once, with its help, its group on the command line and its bounds
# ----------------------------------------------------------------------------------------------
def _option(default: Any, help: str, group: str = "training", **bounds: Any) -> Any:
    """A :class:`TrainConfig` field. ``bounds``: ``minimum``, ``maximum``, ``above`` (``> minimum``),
    ``below`` (``< maximum``) or ``choices``; :meth:`TrainConfig.validate` and the parser read them."""
    return field(default=default, metadata={"help": help, "group": group, **bounds})


@dataclass
class TrainConfig:
    """Everything about a training run except the model (see :class:`helpers.model.ShapesModelConfig`).

    Each field is also a command-line option (``batch_size`` is ``--batch-size``; the one bool,
    ``progress``, is ``--no-progress``), documented by its ``help`` below and in ``--help``.
    """

    steps: int = _option(1000, "optimiser steps", minimum=1)
    batch_size: int = _option(8, "images per step", minimum=1)
    lr: float = _option(2e-3, "AdamW's peak learning rate", minimum=0.0, above=True)
    weight_decay: float = _option(1e-4, "AdamW's decoupled weight decay (none on biases and BatchNorm)", minimum=0.0)
    warmup_steps: int = _option(100, "linear warm-up from lr / 100 over this many steps; then a cosine decay to 0 "
                                     "at the last step", minimum=0)
    grad_clip: float = _option(10.0, "clip the gradient's global norm to this (0: no clipping)", minimum=0.0)
    seed: int = _option(0, "seeds torch, numpy and random, and the shapes training images "
                           "(ShapesDataset(seed=seed))", minimum=0)
    val_seed: int = _option(1_000_000, "seed of the shapes validation images; must differ from the seed",
                            "evaluation", minimum=0)
    val_images: int = _option(200, "shapes validation images, evaluated after training", "evaluation", minimum=0)
    eval_subset: int = _option(25, "also evaluate the first N validation images alone and log it (a quick "
                                   "reproducibility check for tests; 0: skip)", "evaluation", minimum=0)
    train_images: int | None = _option(None, "a finite shapes training set of N images, cycled in a fresh seeded "
                                             "order every epoch (default: steps * batch_size fresh images, each "
                                             "seen once)", minimum=1)
    threads: int = _option(2, "torch CPU threads (torch.set_num_threads)", minimum=1)
    device: str = _option("auto", "auto: CUDA when available, else the CPU", choices=("auto", "cpu", "cuda"))
    checkpoint: str = _option(repo_relative(SHAPES_CHECKPOINT), "checkpoint file (the default is the repository's, "
                              "wherever the command runs; other relative paths: from the current folder)", "outputs")
    log: str = _option(repo_relative(SHAPES_TRAIN_LOG), "JSON log file (paths as for the checkpoint)", "outputs")
    coco_images: str | None = _option(None, "folder of the training images: train on it instead of the shapes", "coco")
    coco_json: str | None = _option(None, "COCO instances JSON of the training images", "coco")
    coco_val_images: str | None = _option(None, "folder of the validation images", "coco")
    coco_val_json: str | None = _option(None, "COCO instances JSON of the validation images", "coco")
    val_fraction: float = _option(0.2, "held-out fraction of the training images when no validation JSON is given",
                                  "coco", minimum=0.0, above=True, maximum=1.0, below=True)
    progress: bool = _option(True, "tqdm progress bars (--no-progress: none)")
    time_limit: float | None = _option(None, "stop training after this many seconds of wall time (default: never; "
                                             "the log records whether it fired)", minimum=0.0, above=True)
    eval_every: int = _option(0, "every N steps, evaluate the first eval_subset validation images and log mask and "
                                 "box AP (0: never); that time is left out of train_wall_s", "evaluation", minimum=0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``TypeError``/``ValueError`` naming the first bad field: each against its own bounds,
        then the rules that tie fields together."""
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        if self.coco_images is None and self.seed == self.val_seed:
            raise ValueError(f"val_seed must differ from seed ({self.seed}): the validation images must be "
                             "images no training step saw")
        if (self.coco_images is None) != (self.coco_json is None):
            raise ValueError("coco_images and coco_json go together: give both (a COCO-format folder) or neither")
        if (self.coco_val_images is None) != (self.coco_val_json is None):
            raise ValueError("coco_val_images and coco_val_json go together: give both or neither")
        if self.coco_val_images is not None and self.coco_images is None:
            raise ValueError("coco_val_images/coco_val_json need coco_images/coco_json (the training folder)")


def _field_type(f: Field) -> tuple[type, bool]:
    """``(int, True)`` for a field annotated ``int | None``: its type and whether ``None`` is allowed."""
    names = [n.strip() for n in str(f.type).split("|")]
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    return kinds[next(n for n in names if n != "None")], "None" in names


def _check_field(f: Field, value: Any) -> None:
    kind, optional = _field_type(f)
    meta = f.metadata
    if value is None and optional:
        return
    if kind is int:
        check_int(value, f.name, meta.get("minimum"), meta.get("maximum"))
    elif kind is float:
        value = check_number(value, f.name, meta.get("minimum"), meta.get("maximum"), minimum_open=meta.get("above", False))
        if meta.get("below") and value >= meta["maximum"]:
            raise ValueError(f"{f.name} must be < {meta['maximum']}, got {value}")
    elif kind is bool:
        check_bool(value, f.name)
    elif "choices" in meta:
        check_choice(value, f.name, meta["choices"])
    elif not isinstance(value, str):
        raise TypeError(f"{f.name} must be a str, got {type(value).__name__} {value!r}")


# the Attributes section of TrainConfig's docstring, written from the fields' help (not under python -OO)
if TrainConfig.__doc__:
    TrainConfig.__doc__ += "\n    Attributes:\n" + "".join(
        f"        {f.name}: {f.metadata['help']}.\n" for f in fields(TrainConfig))


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """What :func:`fit` and :func:`evaluate_run` read, built by :func:`build_data`.

    Attributes:
        train: the training set (a sized sequence of ``(image Tensor[3, H, W], target)``).
        val: the validation set.
        val_coco: the COCO ground truth of ``val``.
        label_to_category: model label -> COCO ``category_id`` (``None``: the identity, for the shapes).
        classes: class names, the background first.
        subset: the first ``eval_subset`` items of ``val`` (a list).
        subset_coco: the COCO ground truth of ``subset``.
    """

    train: Sequence[Any]
    val: Sequence[Any]
    val_coco: dict[str, Any]
    label_to_category: dict[int, int] | None
    classes: tuple[str, ...]
    subset: list[Any] = field(default_factory=list)
    subset_coco: dict[str, Any] | None = None


def build_data(config: TrainConfig, image_size: int = 128) -> TrainData:
    """The training and validation sets of ``config``: the shapes, or a COCO-format folder.

    Shapes: ``ShapesDataset(steps * batch_size, seed)`` (or ``train_images`` of them) and
    ``ShapesDataset(val_images, val_seed)``, ``image_size`` pixels square. COCO: the folder, with its
    own validation folder or a seeded ``val_fraction`` of it held out.
    """
    data = _shapes_data(config, image_size) if config.coco_images is None else _coco_data(config)
    data.subset = [data.val[i] for i in range(min(config.eval_subset, len(data.val)))]
    ids = {int(t["image_id"]) for _, t in data.subset}
    coco = data.val_coco
    data.subset_coco = {"images": [im for im in coco["images"] if int(im["id"]) in ids],
                        "annotations": [a for a in coco["annotations"] if int(a["image_id"]) in ids],
                        "categories": coco["categories"]}
    return data


def _shapes_data(config: TrainConfig, image_size: int) -> TrainData:
    from helpers.shapes import CLASSES, ShapesDataset, to_coco

    n_train = config.train_images if config.train_images is not None else config.steps * config.batch_size
    train_set = ShapesDataset(n_train, seed=config.seed, size=image_size)
    val_set = ShapesDataset(config.val_images, seed=config.val_seed, size=image_size)
    return TrainData(train_set, val_set, to_coco(val_set), None, tuple(CLASSES))


def _coco_data(config: TrainConfig) -> TrainData:
    from helpers.coco_data import CocoInstanceDataset

    full = CocoInstanceDataset(Path(config.coco_images), Path(config.coco_json))
    if config.coco_val_images is not None:
        train_set = full
        val_set = CocoInstanceDataset(Path(config.coco_val_images), Path(config.coco_val_json))
        if [c["id"] for c in val_set.categories] != [c["id"] for c in full.categories]:
            raise ValueError("the COCO validation JSON must list the same category ids as the training JSON")
    else:
        if len(full) < 2:
            raise ValueError(f"{config.coco_json} holds {len(full)} image(s): need at least 2 to hold one out for "
                             "validation (or pass --coco-val-images/--coco-val-json)")
        order = np.random.default_rng([config.seed, 7]).permutation(len(full.image_ids))
        n_val = min(len(full) - 1, max(1, round(config.val_fraction * len(full))))
        val_ids = sorted(full.image_ids[i] for i in order[:n_val])
        train_ids = sorted(full.image_ids[i] for i in order[n_val:])
        train_set, val_set = full.subset(train_ids), full.subset(val_ids)
    return TrainData(train_set, val_set, val_set.coco_subset(), dict(val_set.label_to_category), tuple(full.classes))


# ----------------------------------------------------------------------------------------------
# the training loop
# ----------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, steps: int) -> float:
    """The learning rate at ``step`` as a fraction of the peak: a linear warm-up from 0.01 over
    ``warmup_steps``, then a cosine decay that reaches 0 at ``steps``."""
    if step < warmup_steps:
        return 0.01 + 0.99 * step / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (no weight decay on biases and BatchNorm, the parameters with at most one dimension)
    and a ``LambdaLR`` scheduler following :func:`lr_factor`."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.warmup_steps, config.steps))
    return optimizer, schedule


def batch_indices(config: TrainConfig, n_train: int) -> Iterator[list[int]]:
    """The training-set indices of each step's batch, ``config.steps`` lists of ``batch_size``.

    Fresh shapes (no ``train_images``): step ``s`` reads images ``s * B ... s * B + B - 1``. A finite
    set (``train_images`` or a COCO folder): cycled, each epoch in a new order drawn from
    ``numpy.random.default_rng([seed, 1])``.
    """
    one_pass = config.coco_images is None and config.train_images is None
    rng = np.random.default_rng([config.seed, 1])
    order: list[int] = []
    for step in range(config.steps):
        if one_pass:
            yield list(range(step * config.batch_size, (step + 1) * config.batch_size))
            continue
        batch = []
        while len(batch) < config.batch_size:
            if not order:
                order.extend(rng.permutation(n_train).tolist())
            batch.append(order.pop(0))
        yield batch


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, batch: Sequence[Any],
               grad_clip: float = 0.0) -> tuple[dict[str, float], float]:
    """One optimiser step on ``batch`` (a list of ``(image, target)``): forward, the sum of the five
    :data:`LOSS_NAMES`, backward, gradient clipping (``grad_clip > 0``), AdamW, the scheduler.

    Returns:
        ``({loss name: value, "loss": total}, lr)``: the losses as floats and the learning rate used.

    Raises:
        FloatingPointError: the loss is not finite (nothing is updated).
    """
    device = next(model.parameters()).device
    images = [image.to(device) for image, _ in batch]
    targets = [{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in t.items()} for _, t in batch]
    losses = model(images, targets)
    loss = sum(losses[name] for name in LOSS_NAMES)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()}: lower --lr or raise --warmup-steps")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    schedule.step()
    return {"loss": loss.item(), **{name: losses[name].item() for name in LOSS_NAMES}}, lr


class _Clock:
    """Wall and CPU seconds since it was made, less the time spent inside :meth:`pause`."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.perf_counter(), _cpu_seconds()
        self.paused_wall = self.paused_cpu = 0.0

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        try:
            yield
        finally:
            self.paused_wall += time.perf_counter() - wall
            self.paused_cpu += _cpu_seconds() - cpu

    def elapsed(self) -> tuple[float, float]:
        return (time.perf_counter() - self.wall0 - self.paused_wall,
                _cpu_seconds() - self.cpu0 - self.paused_cpu)


def fit(model: nn.Module, data: TrainData, config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` on ``data.train`` as ``config`` says: the training loop, nothing else.

    It builds AdamW and the schedule (:func:`build_optimizer`), runs ``config.steps`` steps
    (:func:`batch_indices`, :func:`train_step`) on the model's device with the global random state
    as it finds it (:func:`train` seeds it first), shows a progress bar, evaluates ``data.subset``
    every ``eval_every`` steps and stops at ``time_limit``. It saves and writes nothing.

    Returns:
        ``(model, log)``: the same model, trained, and ``steps`` (one dict per step: ``step``, ``loss``,
        ``lr``, ``time`` and ``cpu`` seconds since the start, the five :data:`LOSS_NAMES`), ``steps_done``,
        ``stopped_early``, ``train_wall_s``, ``train_cpu_s``, ``periodic_eval`` and ``periodic_eval_s``.
    """
    optimizer, schedule = build_optimizer(model, config)
    bar = _progress_bar(config.steps) if config.progress else None
    clock, rows, periodic, stopped_early = _Clock(), [], [], False
    model.train()
    for step, indices in enumerate(batch_indices(config, len(data.train))):
        try:
            losses, lr = train_step(model, optimizer, schedule, [data.train[i] for i in indices], config.grad_clip)
        except FloatingPointError as exc:
            raise FloatingPointError(f"{exc} (step {step}, --lr {config.lr})") from None
        wall, cpu = clock.elapsed()
        rows.append({"step": step, "loss": round(losses["loss"], 5), "lr": float(f"{lr:.6g}"),
                     "time": round(wall, 3), "cpu": round(cpu, 3),
                     **{name: round(losses[name], 5) for name in LOSS_NAMES}})
        _show_progress(bar, rows)
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps and data.subset:
            with clock.pause():
                periodic.append(_evaluate_subset(model, data, step + 1, bar))
        if config.time_limit is not None and time.perf_counter() - clock.wall0 > config.time_limit:
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    wall, cpu = clock.elapsed()
    return model, {"steps_done": len(rows), "stopped_early": stopped_early, "train_wall_s": round(wall, 2),
                   "train_cpu_s": round(cpu, 2), "periodic_eval": periodic,
                   "periodic_eval_s": round(clock.paused_wall, 2), "steps": rows}


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train", unit="step", mininterval=1.0, file=sys.stderr)


def _show_progress(bar: Any, rows: list[dict[str, float]]) -> None:
    """Advance the bar; its postfix is the mean loss of the last 20 steps and the last mask loss."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean([r['loss'] for r in rows[-20:]]):.3f}", mask=f"{rows[-1]['loss_mask']:.3f}",
                        refresh=False)


def _evaluate_subset(model: nn.Module, data: TrainData, steps_done: int, bar: Any) -> dict[str, float]:
    device = next(model.parameters()).device
    m = evaluate(model, data.subset, data.subset_coco, data.label_to_category, device=device)
    model.train()
    if bar is not None:
        bar.write(f"step {steps_done}: mask AP {m['segm']['AP']:.3f} (first {len(data.subset)} validation images)")
    return {"step": steps_done, "segm_AP": round(m["segm"]["AP"], 4), "bbox_AP": round(m["bbox"]["AP"], 4),
            "segm_AP50": round(m["segm"]["AP50"], 4)}


def evaluate_run(model: nn.Module, data: TrainData, progress: bool = False) -> dict[str, Any]:
    """COCOeval (``segm`` and ``bbox``) of ``model`` on ``data.val`` and on ``data.subset``.

    Returns:
        ``metrics``, ``metrics_subset`` (``None`` without a subset) and ``eval_wall_s``.
    """
    start = time.perf_counter()
    device = next(model.parameters()).device
    outputs = predict(model, data.val, batch_size=16, device=device, progress=progress)
    metrics = evaluate(model, data.val, data.val_coco, data.label_to_category, outputs=outputs)
    subset = None
    if data.subset:
        subset = evaluate(model, data.subset, data.subset_coco, data.label_to_category,
                          outputs=outputs[:len(data.subset)])
    return {"metrics": metrics, "metrics_subset": subset, "eval_wall_s": round(time.perf_counter() - start, 2)}


# ----------------------------------------------------------------------------------------------
# the whole run: seed, data, model, fit, save, evaluate, log
# ----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy``'s global generator and ``torch`` (what :func:`train` does first)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(config: TrainConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    return torch.device("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")


def _model_config(model_config: ShapesModelConfig | Mapping[str, Any] | None) -> ShapesModelConfig:
    """A fresh copy (``train`` sets its ``num_classes``)."""
    if model_config is None:
        return ShapesModelConfig()
    if isinstance(model_config, ShapesModelConfig):
        return ShapesModelConfig.from_dict(model_config.to_dict())
    if isinstance(model_config, Mapping):
        return ShapesModelConfig.from_dict(model_config)
    raise TypeError(f"model_config must be a ShapesModelConfig, a dict or None, got {type(model_config).__name__}")


def train(train_config: TrainConfig | None = None, model_config: ShapesModelConfig | Mapping[str, Any] | None = None,
          command: str | None = None, write: bool = True, impl: str = "torchvision") -> dict[str, Any]:
    """Train from scratch, save the checkpoint, evaluate, write the log; return the log dict.

    Seeds ``torch``/``numpy``/``random``, sets the threads and the device, then :func:`build_data`,
    :func:`helpers.model.build_model`, :func:`fit`, :func:`helpers.model.save_checkpoint`,
    :func:`evaluate_run`.

    Args:
        train_config: a :class:`TrainConfig` (``None``: the defaults, i.e. the shipped run).
        model_config: a :class:`~helpers.model.ShapesModelConfig` or a dict of its fields (``None``:
            defaults). ``num_classes`` is set from the data (4 for the shapes).
        command: the command line to record in the log (``None``: :data:`DEFAULT_COMMAND`).
        write: save the checkpoint and the log files (``False``: only return the log).
        impl: which Mask R-CNN to train, as in :func:`helpers.model.build_model`: ``"torchvision"``
            (the assembly the shipped checkpoint was trained with) or ``"series"`` (the series' own
            model, :mod:`helpers.maskrcnn`). Both save the same checkpoint layout.

    Returns:
        The log: ``command``, ``impl``, ``train_config``, ``model_config``, ``parameters``, what :func:`fit` logs
        (``steps``, ``train_wall_s``, ``stopped_early``...), ``eval_wall_s``, ``total_wall_s``, ``threads``,
        ``device``, ``machine``, ``loadavg_start``/``loadavg_end``, ``metrics`` (``segm``/``bbox`` on the
        whole validation set) and ``metrics_subset`` (on its first ``eval_subset`` images).
    """
    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig or None, got {type(cfg).__name__}")
    mcfg = _model_config(model_config)
    check_choice(impl, "impl", IMPLEMENTATIONS)
    command = command or DEFAULT_COMMAND
    clock, loadavg_start = _Clock(), _loadavg()
    torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    seed_everything(cfg.seed)
    data = build_data(cfg, mcfg.image_size)
    mcfg.num_classes = len(data.classes)
    mcfg.validate()
    model, fitted = fit(build_model(mcfg, impl=impl).to(device), data, cfg)
    model.eval()
    if write:
        extra = {"classes": list(data.classes), "steps_done": fitted["steps_done"], "seed": cfg.seed, "impl": impl,
                 "label_to_category": {str(k): v for k, v in (data.label_to_category or {}).items()},
                 "command": command}
        save_checkpoint(model, output_path(cfg.checkpoint, SHAPES_CHECKPOINT), extra=extra)
    scores = evaluate_run(model, data, cfg.progress)
    log = {"impl": impl, **_run_log(cfg, mcfg, command, model, data, fitted, scores, loadavg_start=loadavg_start,
                                     clock=clock)}
    if write:
        path = output_path(cfg.log, SHAPES_TRAIN_LOG)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(log, indent=1) + "\n")
    return log


def _run_log(cfg: TrainConfig, mcfg: ShapesModelConfig, command: str, model: nn.Module, data: TrainData,
             fitted: Mapping[str, Any], scores: Mapping[str, Any], *, loadavg_start: list[float] | None,
             clock: _Clock) -> dict[str, Any]:
    """:func:`train`'s log, its fields in the order the shipped log has them."""
    total_wall, total_cpu = clock.elapsed()
    return {
        "command": command, "train_config": asdict(cfg), "model_config": mcfg.to_dict(),
        "classes": list(data.classes), "parameters": count_parameters(model),
        "parameters_backbone": count_parameters(model.backbone),
        "device": str(next(model.parameters()).device), "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "machine": machine_info(),
        "loadavg_start": loadavg_start, "loadavg_end": _loadavg(),
        "steps_done": fitted["steps_done"], "stopped_early": fitted["stopped_early"],
        "train_wall_s": fitted["train_wall_s"], "train_cpu_s": fitted["train_cpu_s"],
        "eval_wall_s": scores["eval_wall_s"], "total_wall_s": round(total_wall, 2),
        "total_cpu_s": round(total_cpu, 2),
        "val_images": len(data.val), "eval_subset": len(data.subset),
        "metrics": scores["metrics"], "metrics_subset": scores["metrics_subset"],
        "periodic_eval": fitted["periodic_eval"], "periodic_eval_s": fitted["periodic_eval_s"],
        "steps": fitted["steps"],
    }


# ----------------------------------------------------------------------------------------------
# the machine a run used
# ----------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """What a log records about the machine: ``platform``, ``cpu`` (its model name), ``cores_available``
    (to this process), ``python``, ``torch``, ``torchvision`` and ``cuda`` (the GPU's name or ``None``)."""
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


# ----------------------------------------------------------------------------------------------
# how long would the shipped run take here? (time a few steps instead of training for ten minutes)
# ----------------------------------------------------------------------------------------------
def benchmark(steps: int = 20, threads: int = 2, checkpoint: str | Path | None = SHAPES_CHECKPOINT,
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
    check_int(steps, "steps", minimum=1)
    check_int(threads, "threads", minimum=1)
    from helpers.model import load_checkpoint
    from helpers.shapes import ShapesDataset

    torch.set_num_threads(threads)
    data = ShapesDataset((steps + warmup) * batch_size, seed=12345)
    candidates: list[tuple[str, Path | None]] = [("fresh", None)]
    if checkpoint is not None and output_path(checkpoint, SHAPES_CHECKPOINT).is_file():
        candidates.append(("trained", output_path(checkpoint, SHAPES_CHECKPOINT)))
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
# command line: one option per TrainConfig field, plus the model's main knobs
# ----------------------------------------------------------------------------------------------
_GROUPS = {"training": "training", "evaluation": "evaluation", "outputs": "outputs",
           "coco": "your own data (COCO format: an images folder + an instances JSON)"}


def _add_field_option(group: argparse._ArgumentGroup, f: Field) -> None:
    """``--name-with-dashes`` for field ``name_with_dashes``, its type, default, choices and help."""
    kind, _ = _field_type(f)
    flag = "--" + f.name.replace("_", "-")
    if kind is bool:  # the only bool, progress, defaults to True: the option turns it off
        group.add_argument(f"--no-{flag[2:]}", dest=f.name, action="store_false", help=f.metadata["help"])
        return
    shown = "" if f.default is None else " (default %(default)s)"
    group.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                       help=f.metadata["help"] + shown)


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
    """The ``python -m helpers.train`` argument parser: every :class:`TrainConfig` field, ``--benchmark``,
    and the model options."""
    p = argparse.ArgumentParser(prog=DEFAULT_COMMAND,
                                description="Train the shapes Mask R-CNN from scratch and evaluate it with COCOeval.")
    groups = {key: p.add_argument_group(title) for key, title in _GROUPS.items()}
    for f in fields(TrainConfig):
        _add_field_option(groups[f.metadata["group"]], f)
    groups["training"].add_argument(
        "--benchmark", type=int, default=0, metavar="STEPS",
        help="do not train: time STEPS training steps with fresh and with the shipped weights, "
             "and project the default run's training time")
    m = ShapesModelConfig()
    g = p.add_argument_group("model")
    g.add_argument("--impl", choices=IMPLEMENTATIONS, default="series",
                   help="torchvision: torchvision's MaskRCNN around the series' backbone (the shipped checkpoint's); "
                        "series: the series' own Mask R-CNN (helpers.maskrcnn), same checkpoint layout")
    g.add_argument("--pool", choices=("align", "pool"), default=m.pool, help="RoIAlign or RoIPool (box and mask)")
    g.add_argument("--feature-stride", type=_stride, default=None,
                   help="'fpn' (default: a pyramid, strides 4-32) or one stride: 4, 8, 16, 32")
    g.add_argument("--widths", type=_int_list, default=None, help="backbone stage channels, e.g. 32,64,128,256")
    g.add_argument("--anchor-sizes", type=_int_list, default=None, help="anchor sizes in pixels, e.g. 12,24,48,96")
    g.add_argument("--image-size", type=int, default=m.image_size, help="resize images to this side")
    g.add_argument("--model-json", default=None, help="more ShapesModelConfig fields as a JSON object")
    return p


def _model_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The ShapesModelConfig fields the model options set (a deeper or shallower pyramid gets one
    anchor size per level, doubling from 12, unless ``--anchor-sizes`` says otherwise)."""
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
    return overrides


def _configs(parser: argparse.ArgumentParser, a: argparse.Namespace) -> tuple[TrainConfig, ShapesModelConfig]:
    try:
        cfg = TrainConfig(**{f.name: getattr(a, f.name) for f in fields(TrainConfig)})
        mcfg = ShapesModelConfig.from_dict({**ShapesModelConfig().to_dict(), **_model_overrides(a)})
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    return cfg, mcfg


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, ShapesModelConfig]:
    """Parse a command line into ``(TrainConfig, ShapesModelConfig)`` (errors exit with a message)."""
    parser = build_parser()
    return _configs(parser, parser.parse_args(argv))


def _print_benchmark(rows: list[dict[str, Any]]) -> None:
    print(f"{'weights':<8} {'wall s/step':>11} {'CPU s/step':>10} {'threads':>7} "
          f"{'projected ' + str(TrainConfig().steps) + '-step run':>24}  load average before -> after")
    for r in rows:
        print(f"{r['weights']:<8} {r['wall_per_step']:>11.3f} {r['cpu_per_step']:>10.3f} {r['threads']:>7} "
              f"{r['projected_run_s'] / 60:>20.1f} min  {r['loadavg'][0]} -> {r['loadavg'][1]}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m helpers.train``; returns the log (or ``{"benchmark": rows}``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.benchmark:
        rows = benchmark(a.benchmark, threads=a.threads, checkpoint=a.checkpoint, batch_size=a.batch_size)
        _print_benchmark(rows)
        return {"benchmark": rows}
    cfg, mcfg = _configs(parser, a)
    log = train(cfg, mcfg, command=" ".join([DEFAULT_COMMAND, *(shlex.quote(x) for x in argv)]), impl=a.impl)
    print(f"trained {log['steps_done']} steps in {log['train_wall_s']:.0f} s wall "
          f"({log['train_cpu_s']:.0f} s CPU, {log['threads']} threads, load {log['loadavg_start']} -> "
          f"{log['loadavg_end']}); evaluated {log['val_images']} validation images in {log['eval_wall_s']:.1f} s")
    print(format_metrics_table(log["metrics"]))
    print(f"checkpoint: {cfg.checkpoint}\nlog: {cfg.log}")
    return log


if __name__ == "__main__":
    main()

"""Train a Mask R-CNN (the shapes model, or on your own COCO-format data), save it, score it with COCOeval.

Usage (the command that produced the shipped ``data/shapes_maskrcnn.pt``,
:data:`helpers.project.SHAPES_CHECKPOINT`, :data:`SHIPPED_COMMAND`)::

    python -m helpers.train --checkpoint data/shapes_maskrcnn.pt --log data/shapes_train_log.json --overwrite

The defaults are that recipe (``--steps 1000 --batch-size 8 --seed 0 --threads 2``); without ``--checkpoint``
and ``--log`` a run writes into its own folder ``runs/<name>/`` (``--runs-dir``, ``--name``: by default the
data's name and the UTC time): ``config.json`` at the start, ``last.pt`` (the resume state) every
``--save-every`` steps, then ``model.pt``, ``evaluation.json`` and ``log.json``. It refuses to replace an
existing run folder or file unless ``--overwrite``, and writes into ``data/`` only when a path names it.
Useful options::

    python -m helpers.train --steps 200 --name short                                # a short try: runs/short/
    python -m helpers.train --resume runs/short                                     # continue an interrupted run
    python -m helpers.train --pool pool --feature-stride 16 --seed 1                # an ablation run
    python -m helpers.train --impl torchvision                                      # the reference assembly
    python -m helpers.train --coco-images my/images --coco-json my/instances.json \
        --image-size 512 --flip --workers 2                                         # your own data
    python -m helpers.train --init coco --lr 1e-4 --coco-images ... --coco-json ... # fine-tune COCO weights
    torchrun --nproc_per_node=2 -m helpers.train ...                                # DistributedDataParallel
    python -m helpers.train --benchmark 20     # time 20 steps here; projects the default run's time
    python -m helpers.train --help

What it does, in order:

1. checks that nothing would be overwritten (and, for ``--init coco``, that the weights can be had);
   seeds ``torch``, ``numpy`` and ``random``; uses ``--threads`` CPU threads (2) and the GPU when one is
   present (``--device cpu`` forces the CPU);
2. builds :func:`helpers.model.build_model` (random weights: nothing is downloaded) or, with
   ``--init coco``, :func:`build_coco_model`;
3. trains for ``--steps`` steps of ``--batch-size`` images with AdamW, a linear warm-up and a cosine
   decay, through a ``torch.utils.data.DataLoader`` (``--workers``), showing a tqdm progress bar. Shapes
   training images are ``ShapesDataset(steps * batch_size, seed=--seed)``: every step sees new images.
   The validation images are ``ShapesDataset(--val-images, seed=--val-seed)``; item ``i`` of a data set
   with seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``, so different seeds never share an
   image;
4. saves the checkpoint (``{"state_dict", "config", "extra"}``, plain types, loads with
   ``torch.load(weights_only=True)``);
5. evaluates on the validation set with COCOeval (``segm`` and ``bbox``), streaming (one batch of masks
   in memory), with each class's AP, and writes the log: the command, both configs, every step's five
   loss terms, learning rate and elapsed time, the wall and CPU time, threads, machine, load average,
   and the metrics.

Reproducibility: at the defaults the new machinery (DataLoader, flips off, anchors 12-96 at image size
128, losses read every step on the CPU) trains exactly what the plain loop trained, bit for bit (tested).
``--deterministic`` sets ``torch.use_deterministic_algorithms(True, warn_only=True)`` and cuDNN's flags
(``deterministic=True``, ``benchmark=False``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``). On the CPU, runs with the
same seed and threads repeat already (tested). On CUDA, torchvision's ``roi_align`` switches to its
pure-PyTorch path, whose backward is deterministic (torchvision 0.29, ``ops/roi_align.py``); ``roi_pool``'s
CUDA backward and torch ops listed in ``torch.use_deterministic_algorithms``'s documentation as lacking a
deterministic CUDA kernel (among them the backward of ``F.interpolate``'s up-sampling, used by the FPN's
top-down path) warn and name themselves instead of failing. Not run on a GPU here: no GPU was available.
Several processes (``torchrun``): the series' model normalises its losses by the global batch's counts, so
two CPU processes follow one process with the same global batch to float32 rounding (tested, relative
2e-7); torchvision's assembly (``--impl torchvision``) keeps each process's means (see :func:`train`).

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
from dataclasses import Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from helpers.checks import check_bool, check_choice, check_int, check_number
from helpers.evaluate import (coco_evaluate, coco_evaluate_per_class, evaluate, format_metrics_table,
                              format_per_class_table, stream_results)
from helpers.maskrcnn import SeriesMaskRCNN
from helpers.model import IMPLEMENTATIONS, ShapesModelConfig, build_model, count_parameters, save_checkpoint
from helpers.project import ROOT, SHAPES_CHECKPOINT, SHAPES_TRAIN_LOG

__all__ = ["TrainConfig", "TrainData", "train", "fit", "build_data", "build_optimizer", "lr_factor", "batch_indices",
           "train_step", "evaluate_run", "seed_everything", "benchmark", "main", "build_parser", "parse_args",
           "machine_info", "output_path", "repo_relative", "LOSS_NAMES", "DEFAULT_COMMAND", "SHIPPED_COMMAND",
           "is_shipped_command",
           "StepBatches", "flip_horizontal", "scaled_anchor_sizes", "box_size_stats", "default_run_name",
           "RunPaths", "run_paths", "check_outputs_free", "build_coco_model", "coco_weights_file", "save_coco_model",
           "load_trained", "COCO_ARCH", "AllReduceBatchNorm2d", "convert_batchnorm"]

LOSS_NAMES: tuple[str, ...] = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")
"""torchvision's five Mask R-CNN loss terms, in the order the stages run."""

DEFAULT_COMMAND = "python -m helpers.train"
"""The entry point (its defaults are the shipped recipe; outputs go to ``runs/<name>/``)."""

SHIPPED_COMMAND = (f"{DEFAULT_COMMAND} --checkpoint data/shapes_maskrcnn.pt --log data/shapes_train_log.json "
                   "--overwrite")
"""The command that regenerates the shipped checkpoint and log in ``data/`` (the default recipe, explicit paths)."""


def is_shipped_command(command: str) -> bool:
    """Whether ``command`` (a log's ``"command"``) is the shipped one: :data:`SHIPPED_COMMAND`, or the plain
    :data:`DEFAULT_COMMAND` that logs were made with before runs had their own folders, each with or without
    ``--no-progress`` (which only hides the progress bar and changes nothing the run computes).

    Compared word by word (``shlex``), so spacing does not matter; any other option, path or value makes it
    ``False``::

        >>> is_shipped_command(SHIPPED_COMMAND + " --no-progress")
        True
        >>> is_shipped_command(SHIPPED_COMMAND + " --steps 10")
        False

    Raises:
        TypeError: ``command`` is not a ``str``.
    """
    if not isinstance(command, str):
        raise TypeError(f"command must be a str (a log's 'command'), got {type(command).__name__}")
    words = [w for w in shlex.split(command) if w != "--no-progress"]
    return words in (shlex.split(SHIPPED_COMMAND), shlex.split(DEFAULT_COMMAND))


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

    Each field is also a command-line option (``batch_size`` is ``--batch-size``; a bool that defaults to
    ``False`` is a switch, ``--flip``; ``progress`` is ``--no-progress``), documented by its ``help`` below
    and in ``--help``.
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
    init: str = _option("scratch", "scratch: the series' small model from random weights (the shipped recipe); "
                                   "coco: fine-tune torchvision's maskrcnn_resnet50_fpn from its COCO weights, "
                                   "predictors replaced for your classes (torchvision's 800/1333 resize; the model "
                                   "options do not apply; try --lr 1e-4)", choices=("scratch", "coco"))
    threads: int = _option(2, "torch CPU threads (torch.set_num_threads)", minimum=1)
    device: str = _option("auto", "auto: CUDA when available, else the CPU", "device",
                          choices=("auto", "cpu", "cuda"))
    amp: bool = _option(False, "mixed precision: torch.autocast (float16 + GradScaler on CUDA, bfloat16 on the CPU); "
                               "off by default", "device")
    deterministic: bool = _option(False, "torch.use_deterministic_algorithms(True, warn_only=True) and cuDNN's "
                                         "deterministic flags; ops without a deterministic CUDA kernel warn", "device")
    log_every: int | None = _option(None, "read the losses back to the host every N steps (default: 1 on the CPU, "
                                          "where it costs nothing, 20 on CUDA); the log still has every step",
                                    "device", minimum=1)
    workers: int = _option(0, "DataLoader worker processes loading the images (0: in the main process; the "
                              "batches are the same either way)", "data", minimum=0)
    flip: bool = _option(False, "random horizontal flip of training images (boxes and masks flipped with them); "
                                "off by default, so the shapes recipe is unchanged; recommended for your own data",
                         "data")
    name: str | None = _option(None, "run name: every output goes to RUNS_DIR/NAME/ (default: the data's name and "
                                     "the UTC time, e.g. shapes-20260130-142501)", "outputs")
    runs_dir: str = _option("runs", "folder of the runs (relative paths: from the current folder)", "outputs")
    checkpoint: str | None = _option(None, "checkpoint file (default: RUNS_DIR/NAME/model.pt; the shipped model is "
                                           "regenerated with --checkpoint data/shapes_maskrcnn.pt, which means the "
                                           "repository's file wherever the command runs)", "outputs")
    log: str | None = _option(None, "JSON log file (default: RUNS_DIR/NAME/log.json; paths as for the checkpoint)",
                              "outputs")
    overwrite: bool = _option(False, "allow replacing an existing run folder, checkpoint or log", "outputs")
    resume: str | None = _option(None, "continue an interrupted run: its folder or its last.pt (the run's own "
                                       "configuration is used; gives the same result as an uninterrupted run)",
                                 "outputs")
    save_every: int = _option(100, "save the resume state (model, optimiser, scheduler, step, random states) to "
                                   "RUNS_DIR/NAME/last.pt every N steps (0: only when training ends)", "outputs",
                              minimum=0)
    eval_batch_size: int | None = _option(None, "images per evaluation forward pass; their full-size float masks are "
                                                "held together, so evaluation memory grows with it, never with the "
                                                "number of images (default: 16 for the shapes, 1 for COCO data)",
                                          "evaluation", minimum=1)
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
        if self.name is not None and (not self.name or "/" in self.name or self.name in (".", "..")):
            raise ValueError(f"name must be a folder name (no '/'), got {self.name!r}")


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


def flip_horizontal(image: Tensor, target: Mapping[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """Mirror an image left-right with its target: ``boxes`` ``x1, x2 -> W - x2, W - x1``, ``masks`` flipped."""
    width = image.shape[-1]
    out = dict(target)
    if "boxes" in out:
        boxes = out["boxes"]
        out["boxes"] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    if "masks" in out:
        out["masks"] = out["masks"].flip(-1)
    return image.flip(-1), out


class _StepItems(torch.utils.data.Dataset):
    """``dataset[(index, flip)]``: the item, mirrored when ``flip``; what the DataLoader's batches name."""

    def __init__(self, dataset: Sequence[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, bool]) -> Any:
        index, flip = key
        image, target = self.dataset[index]
        return flip_horizontal(image, target) if flip else (image, target)


class StepBatches(torch.utils.data.Sampler):
    """The DataLoader's batch sampler: step ``s``'s batch as :func:`batch_indices` gives it, each index paired
    with its flip (drawn from ``numpy.random.default_rng([seed, 3, s])`` when ``config.flip``), from step
    ``start`` on; with ``world > 1`` each rank gets its contiguous share ``rank * B / world ...`` of the batch."""

    def __init__(self, config: TrainConfig, n_train: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.config, self.n_train, self.start, self.rank, self.world = config, n_train, start, rank, world

    def __len__(self) -> int:
        return self.config.steps - self.start

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        share = self.config.batch_size // self.world
        for step, indices in enumerate(batch_indices(self.config, self.n_train)):
            if step < self.start:
                continue
            flips = (np.random.default_rng([self.config.seed, 3, step]).random(len(indices)) < 0.5
                     if self.config.flip else np.zeros(len(indices), bool))
            pairs = [(int(i), bool(f)) for i, f in zip(indices, flips)]
            yield pairs[self.rank * share:(self.rank + 1) * share]


def _as_list(batch: list[Any]) -> list[Any]:
    return batch


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, batch: Sequence[Any],
               grad_clip: float = 0.0, *, check_finite: bool = True, amp: bool = False,
               scaler: Any = None) -> tuple[Tensor, float]:
    """One optimiser step on ``batch`` (a list of ``(image, target)``): forward, the sum of the five
    :data:`LOSS_NAMES`, backward, gradient clipping (``grad_clip > 0``), AdamW, the scheduler.

    Nothing is read back to the host unless ``check_finite`` (one ``isfinite`` test before the update).

    Args:
        amp: run the forward under ``torch.autocast`` (float16 on CUDA, bfloat16 on the CPU).
        scaler: a ``torch.amp.GradScaler`` (float16 on CUDA) or ``None``.

    Returns:
        ``(losses, lr)``: ``Tensor[6]`` on the model's device (the total, then the five terms, detached)
        and the learning rate used.

    Raises:
        FloatingPointError: ``check_finite`` and the loss is not finite (nothing is updated).
    """
    device = next(model.parameters()).device
    images = [image.to(device, non_blocking=True) for image, _ in batch]
    targets = [{k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in t.items()}
               for _, t in batch]
    if amp:
        with torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16):
            losses = model(images, targets)
        losses = {k: v.float() for k, v in losses.items()}
    else:
        losses = model(images, targets)
    loss = sum(losses[name] for name in LOSS_NAMES)
    if check_finite and not torch.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss.item()}: lower --lr or raise --warmup-steps")
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
    schedule.step()
    return torch.stack([loss.detach(), *(losses[name].detach() for name in LOSS_NAMES)]), lr


class _Clock:
    """Wall and CPU seconds since it was made, less the time spent inside :meth:`pause`, plus ``offset``
    (the time of the steps an interrupted run did before it was resumed)."""

    def __init__(self, offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.wall0, self.cpu0 = time.perf_counter() - offset[0], _cpu_seconds() - offset[1]
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


def _rng_state() -> dict[str, Any]:
    """The global random states (torch, CUDA, numpy, random) as tensors and plain types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "random": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    r = state["random"]
    random.setstate((r["version"], tuple(r["internal"]), r["gauss_next"]))


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def fit(model: nn.Module, data: TrainData, config: TrainConfig, *, resume_state: Mapping[str, Any] | None = None,
        save_state: Any = None, rank: int = 0, world: int = 1) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` on ``data.train`` as ``config`` says: the training loop, nothing else.

    It builds AdamW and the schedule (:func:`build_optimizer`), runs ``config.steps`` steps
    (:class:`StepBatches` through a ``torch.utils.data.DataLoader`` with ``config.workers`` workers,
    :func:`train_step`) on the model's device with the global random state as it finds it (:func:`train`
    seeds it first), shows a progress bar, evaluates ``data.subset`` every ``eval_every`` steps and stops
    at ``time_limit``.

    Args:
        resume_state: what ``save_state`` was given (``last.pt``): the optimiser, scheduler, scaler, step,
            random states and the rows so far; training continues from there as if never interrupted.
        save_state: ``save_state(state_dict)`` is called every ``config.save_every`` steps and at the end
            (``None``: nothing is saved).
        rank, world: this process's rank and the number of processes (DistributedDataParallel): the rank
            trains on its share of each batch; the logged losses are the mean over the ranks. For the
            series' model, whose losses under DDP are each rank's share of the global batch's
            (:meth:`helpers.maskrcnn.SeriesMaskRCNN.share_of_global_batch`), that mean is the loss of the
            global batch, as one process would log it; for torchvision's assembly, the mean of the ranks'
            means.

    Returns:
        ``(model, log)``: the same model, trained, and ``steps`` (one dict per step: ``step``, ``loss``,
        ``lr``, ``time`` and ``cpu`` seconds since the start, the five :data:`LOSS_NAMES`), ``steps_done``,
        ``stopped_early``, ``train_wall_s``, ``train_cpu_s``, ``periodic_eval`` and ``periodic_eval_s``.
    """
    if config.batch_size % world:
        raise ValueError(f"batch_size ({config.batch_size}) must be a multiple of the number of processes ({world})")
    device = next(model.parameters()).device
    optimizer, schedule = build_optimizer(model, config)
    use_scaler = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    rows: list[dict[str, Any]] = []
    periodic: list[dict[str, Any]] = []
    start = 0
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        schedule.load_state_dict(resume_state["scheduler"])
        if scaler is not None and resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        rows, periodic = list(resume_state["rows"]), list(resume_state["periodic"])
        start = int(resume_state["step"])
        _set_rng_state(resume_state["rng"])
    log_every = config.log_every or (1 if device.type == "cpu" else 20)
    show = config.progress and rank == 0
    bar = _progress_bar(config.steps) if show else None
    if bar is not None and start:
        bar.update(start)
    clock = _Clock((rows[-1]["time"], rows[-1]["cpu"]) if rows else (0.0, 0.0))
    stopped_early = False
    pending: list[tuple[int, float, Tensor, float, float]] = []

    def flush() -> None:
        if not pending:
            return
        values = torch.stack([p[2] for p in pending])  # [n, 6]: one host round trip for n steps
        if world > 1:
            torch.distributed.all_reduce(values)
            values /= world
        values = values.tolist()
        for (step, lr, _, wall, cpu), v in zip(pending, values):
            if not all(math.isfinite(x) for x in v):
                raise FloatingPointError(f"the loss became {v[0]} at step {step}: lower --lr or raise "
                                         f"--warmup-steps (--lr {config.lr})")
            rows.append({"step": step, "loss": round(v[0], 5), "lr": float(f"{lr:.6g}"),
                         "time": round(wall, 3), "cpu": round(cpu, 3),
                         **{name: round(x, 5) for name, x in zip(LOSS_NAMES, v[1:])}})
            _show_progress(bar, rows)
        pending.clear()

    def snapshot(step: int) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in _unwrap(model).state_dict().items()},
                "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {}, "step": step, "rng": _rng_state(),
                "rows": list(rows), "periodic": list(periodic)}

    loader = torch.utils.data.DataLoader(
        _StepItems(data.train), batch_sampler=StepBatches(config, len(data.train), start, rank, world),
        num_workers=config.workers, collate_fn=_as_list, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(config.seed))  # its own generator: the global RNG is untouched
    model.train()
    step = start
    for step, batch in enumerate(loader, start=start):
        try:
            losses, lr = train_step(model, optimizer, schedule, batch, config.grad_clip,
                                    check_finite=log_every == 1 and world == 1, amp=config.amp, scaler=scaler)
        except FloatingPointError as exc:
            raise FloatingPointError(f"{exc} (step {step}, --lr {config.lr})") from None
        wall, cpu = clock.elapsed()
        pending.append((step, lr, losses, wall, cpu))
        if (step + 1) % log_every == 0:
            flush()
        if config.eval_every and (step + 1) % config.eval_every == 0 and step + 1 < config.steps and data.subset:
            flush()
            if rank == 0:
                with clock.pause():
                    periodic.append(_evaluate_subset(_unwrap(model), data, step + 1, bar))
        if save_state is not None and config.save_every and (step + 1) % config.save_every == 0 \
                and step + 1 < config.steps:
            flush()
            with clock.pause():
                save_state(snapshot(step + 1))
        if config.time_limit is not None:
            over = time.perf_counter() - clock.wall0 > config.time_limit
            if world > 1:  # every rank stops at the same step (rank 0's clock decides), or the collectives hang
                flag = torch.tensor([float(over)], device=device)
                torch.distributed.broadcast(flag, src=0)
                over = bool(flag.item())
            if over:
                stopped_early = True
                break
    flush()
    if bar is not None:
        bar.close()
    wall, cpu = clock.elapsed()
    if save_state is not None:
        save_state(snapshot(len(rows)))
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


def evaluate_run(model: nn.Module, data: TrainData, progress: bool = False,
                 batch_size: int | None = None) -> dict[str, Any]:
    """COCOeval (``segm`` and ``bbox``) of ``model`` on ``data.val`` and on ``data.subset``, streamed
    (:func:`helpers.evaluate.stream_results`: memory holds one batch of masks, whatever the number of images).

    Args:
        batch_size: images per forward pass (``None``: 16 for the shapes, 1 for COCO data).

    Returns:
        ``metrics``, ``per_class`` (``{iou_type: {class: AP}}``), ``metrics_subset`` (``None`` without a
        subset) and ``eval_wall_s``.
    """
    start = time.perf_counter()
    device = next(model.parameters()).device
    if batch_size is None:
        batch_size = 16 if data.label_to_category is None else 1
    results = stream_results(model, data.val, data.label_to_category, batch_size=batch_size, device=device,
                             progress=progress)
    metrics, per_class = coco_evaluate_per_class(data.val_coco, results)
    subset = None
    if data.subset:
        ids = {int(t["image_id"]) for _, t in data.subset}
        subset = coco_evaluate(data.subset_coco, {k: [r for r in v if int(r["image_id"]) in ids]
                                                  for k, v in results.items()})
    return {"metrics": metrics, "per_class": per_class, "metrics_subset": subset,
            "eval_wall_s": round(time.perf_counter() - start, 2)}


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


def scaled_anchor_sizes(image_size: int, sizes: Sequence[int] = (12, 24, 48, 96), reference: int = 128) -> list[int]:
    """Anchor sizes that follow the image size: ``sizes`` (the shapes model's, tuned for 128-pixel images)
    times ``image_size / reference``, rounded; at ``image_size = 128`` exactly ``sizes``."""
    check_int(image_size, "image_size", minimum=1)
    return [max(1, round(s * image_size / reference)) for s in sizes]


def box_size_stats(coco: Mapping[str, Any], image_size: int) -> dict[str, Any]:
    """Sizes (``sqrt(w * h)``, in pixels after the model's resize to at most ``image_size`` a side) of the
    non-crowd boxes of a COCO dict: ``count`` and the 5th, 50th and 95th percentiles, min and max."""
    sides = {int(im["id"]): max(int(im["height"]), int(im["width"])) for im in coco["images"]}
    sizes = [math.sqrt(max(a["bbox"][2], 0) * max(a["bbox"][3], 0)) * image_size / sides[int(a["image_id"])]
             for a in coco["annotations"] if not a.get("iscrowd", 0)]
    if not sizes:
        return {"count": 0}
    q = np.percentile(sizes, [5, 50, 95])
    return {"count": len(sizes), "min": round(min(sizes), 1), "p5": round(float(q[0]), 1),
            "median": round(float(q[1]), 1), "p95": round(float(q[2]), 1), "max": round(max(sizes), 1)}


def default_run_name(config: TrainConfig) -> str:
    """``<data>-<UTC time>``: ``shapes-20260130-142501``, or the COCO images folder's parent's name."""
    if config.coco_images is None:
        data = "shapes"
    else:
        folder = Path(config.coco_images).resolve()
        data = (folder.parent.name if folder.name in ("images", "train", "img", "imgs") else folder.name) or "coco"
    return f"{data}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


@dataclass
class RunPaths:
    """Where a run writes: its folder and the files in it (``checkpoint``/``log`` may be elsewhere when given)."""

    folder: Path
    checkpoint: Path
    log: Path

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def evaluation(self) -> Path:
        return self.folder / "evaluation.json"


def run_paths(config: TrainConfig) -> RunPaths:
    """The run's folder (``runs_dir/name``, ``name`` filled in by :func:`train`) and its output files."""
    folder = Path(config.runs_dir) / (config.name or default_run_name(config))
    checkpoint = output_path(config.checkpoint, SHAPES_CHECKPOINT) if config.checkpoint else folder / "model.pt"
    log = output_path(config.log, SHAPES_TRAIN_LOG) if config.log else folder / "log.json"
    return RunPaths(folder, checkpoint, log)


def check_outputs_free(paths: RunPaths, overwrite: bool) -> None:
    """Raise ``FileExistsError`` when the run would replace a file (or fill a non-empty run folder) and
    ``overwrite`` is off: nothing has been written yet when it does."""
    if overwrite:
        return
    taken = [p for p in (paths.checkpoint, paths.log) if p.exists()]
    if paths.folder.is_dir() and any(paths.folder.iterdir()):
        taken.insert(0, paths.folder)
    if taken:
        raise FileExistsError(f"refusing to overwrite {', '.join(repo_relative(p) for p in taken)}: pass --overwrite "
                              "to replace, --name for a new run folder, or --resume to continue this run")


def _load_resume(path: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    file = path / "last.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"resume: no resume state at {file} (a run folder holds last.pt once it has "
                                "trained save_every steps)")
    return file, torch.load(file, map_location="cpu", weights_only=True)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _determinism(on: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` and cuDNN's flags while ``on``, restored after."""
    if not on:
        yield
        return
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspace
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def _distributed() -> tuple[int, int, int]:
    """``(rank, world size, local rank)`` from torchrun's environment (``(0, 1, 0)`` without it)."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def train(train_config: TrainConfig | None = None, model_config: ShapesModelConfig | Mapping[str, Any] | None = None,
          command: str | None = None, write: bool = True, impl: str = "series") -> dict[str, Any]:
    """Train, save the checkpoint, evaluate, write the log; return the log dict.

    Checks first that no output would be overwritten (:func:`check_outputs_free`), then seeds
    ``torch``/``numpy``/``random``, sets the threads and the device, then :func:`build_data`,
    :func:`helpers.model.build_model`, :func:`fit`, :func:`helpers.model.save_checkpoint`,
    :func:`evaluate_run`. The run's folder (:func:`run_paths`) gets ``config.json`` at the start, ``last.pt``
    (the resume state) every ``save_every`` steps, then ``model.pt``, ``evaluation.json`` and ``log.json``
    (``checkpoint``/``log`` go where the config says when it names them). Under ``torchrun`` (``WORLD_SIZE > 1``)
    the model is wrapped in ``DistributedDataParallel`` with ``SyncBatchNorm``; rank 0 alone writes and evaluates.
    The series' model then normalises each loss by the count of the global batch (anchors, RoIs, positive
    RoIs summed over the processes: ``SeriesMaskRCNN.global_batch_losses``), so that its losses and
    gradients are those of one process with the whole batch (to float32 rounding); torchvision's assembly
    (``impl="torchvision"``) keeps each process's means, as torchvision's own reference scripts do, which
    weighs the processes equally whatever their counts (on two shapes images, the mask loss 12 % off).

    Args:
        train_config: a :class:`TrainConfig` (``None``: the defaults, i.e. the shipped run's recipe).
        model_config: a :class:`~helpers.model.ShapesModelConfig` or a dict of its fields (``None``:
            defaults). ``num_classes`` is set from the data (4 for the shapes).
        command: the command line to record in the log (``None``: :data:`DEFAULT_COMMAND`).
        write: write the run's files (``False``: only return the log).
        impl: which Mask R-CNN to train, as in :func:`helpers.model.build_model`: ``"series"`` (the
            default: the series' own model, :mod:`helpers.maskrcnn`) or ``"torchvision"`` (torchvision's
            assembly, the reference it is tested against). Both save the same checkpoint layout.

    Returns:
        The log: ``command``, ``impl``, ``train_config``, ``model_config``, ``parameters``, what :func:`fit` logs
        (``steps``, ``train_wall_s``, ``stopped_early``...), ``eval_wall_s``, ``total_wall_s``, ``threads``,
        ``device``, ``machine``, ``loadavg_start``/``loadavg_end``, ``metrics`` (``segm``/``bbox`` on the
        whole validation set), ``per_class`` and ``metrics_subset`` (on its first ``eval_subset`` images).
    """
    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig or None, got {type(cfg).__name__}")
    check_choice(impl, "impl", IMPLEMENTATIONS)
    resume_state = None
    if cfg.resume is not None:
        file, resume_state = _load_resume(cfg.resume)
        saved = dict(resume_state["train_config"])
        saved.update(resume=str(file), progress=cfg.progress, workers=cfg.workers,
                     runs_dir=str(file.parent.parent), name=file.parent.name)
        cfg = TrainConfig(**saved)
        model_config, impl, command = resume_state["model_config"], resume_state["impl"], resume_state["command"]
    mcfg = _model_config(model_config)
    command = command or DEFAULT_COMMAND
    rank, world, local_rank = _distributed()
    if write and cfg.name is None:
        cfg = replace(cfg, name=default_run_name(cfg))
    paths = run_paths(cfg)
    if write and resume_state is None and rank == 0:
        check_outputs_free(paths, cfg.overwrite)
    if cfg.init == "coco" and resume_state is None:
        coco_weights_file()  # fails now, before anything is written, when the weights cannot be had
    clock, loadavg_start = _Clock(), _loadavg()
    torch.set_num_threads(cfg.threads)
    device = _device(cfg)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        own_group = not dist.is_initialized()
        if own_group:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    seed_everything(cfg.seed)
    data = build_data(cfg, mcfg.image_size)
    mcfg.num_classes = len(data.classes)
    mcfg.validate()
    boxes = box_size_stats(data.train.coco_subset(), mcfg.image_size) if hasattr(data.train, "coco_subset") else None
    if boxes is not None and rank == 0 and cfg.progress:
        print(f"box sizes (sqrt(w*h), pixels after resizing to {mcfg.image_size}): {boxes}; "
              f"anchor sizes {list(mcfg.anchor_sizes)}", file=sys.stderr)
    if write and rank == 0:
        paths.folder.mkdir(parents=True, exist_ok=True)
        paths.config.write_text(json.dumps({"command": command, "impl": impl, "train_config": asdict(cfg),
                                            "model_config": mcfg.to_dict(), "box_sizes": boxes}, indent=1) + "\n")
    if cfg.init == "coco":
        model = build_coco_model(len(data.classes), weights=None if resume_state is not None else "DEFAULT")
    else:
        model = build_model(mcfg, impl=impl)
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
    model = model.to(device)
    trained = model
    if world > 1:
        trained = nn.parallel.DistributedDataParallel(
            convert_batchnorm(model, device.type == "cuda"), device_ids=[local_rank] if device.type == "cuda" else None)
        model = trained.module
        # the series' model normalises its losses by the global batch's counts (SeriesMaskRCNN.share_of_global_batch);
        # torchvision's assembly keeps each process's means, as torchvision's own reference scripts do
        if isinstance(model, SeriesMaskRCNN):
            model.global_batch_losses = True

    def save_state(state: dict[str, Any]) -> None:
        state.update(train_config=asdict(cfg), model_config=mcfg.to_dict(), impl=impl, command=command)
        _atomic_save(state, paths.last)

    with _determinism(cfg.deterministic):
        trained, fitted = fit(trained, data, cfg, resume_state=resume_state,
                              save_state=save_state if write and rank == 0 else None, rank=rank, world=world)
    model = _unwrap(trained)
    if world > 1:
        if isinstance(model, SeriesMaskRCNN):
            model.global_batch_losses = False
        model = _plain_batchnorm(model)
        if own_group:
            dist.barrier()
            dist.destroy_process_group()
    model.eval()
    if rank != 0:
        return {"rank": rank, "steps": fitted["steps"], "steps_done": fitted["steps_done"]}
    if write:
        extra = {"classes": list(data.classes), "steps_done": fitted["steps_done"], "seed": cfg.seed, "impl": impl,
                 "label_to_category": {str(k): v for k, v in (data.label_to_category or {}).items()},
                 "command": command}
        if cfg.init == "coco":
            save_coco_model(model, paths.checkpoint, extra=extra)
        else:
            save_checkpoint(model, paths.checkpoint, extra=extra)
    scores = evaluate_run(model, data, cfg.progress, cfg.eval_batch_size)
    log = {"impl": impl, **_run_log(cfg, mcfg, command, model, data, fitted, scores, loadavg_start=loadavg_start,
                                     clock=clock), "box_sizes": boxes, "world_size": world}
    if write:
        paths.evaluation.write_text(json.dumps({k: scores[k] for k in ("metrics", "per_class", "metrics_subset")},
                                               indent=1) + "\n")
        paths.log.parent.mkdir(parents=True, exist_ok=True)
        paths.log.write_text(json.dumps(log, indent=1) + "\n")
    return log


class AllReduceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch, summed over the processes
    with a differentiable ``all_reduce`` (``torch.distributed.nn.functional``): ``nn.SyncBatchNorm`` for the
    CPU and gloo, which ``nn.SyncBatchNorm`` does not run on (it needs a GPU). Mean and biased variance
    from the global sums ``sum x`` and ``sum x^2``; the running variance is updated with the unbiased one,
    as ``nn.BatchNorm2d`` does. In eval mode it is ``nn.BatchNorm2d``."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        n_local = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n_local])  # [2C + 1]
        stats = all_reduce(stats)
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp(min=0)
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None:
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_batchnorm(module: nn.Module, cuda: bool) -> nn.Module:
    """Every ``BatchNorm2d`` made global-batch: ``nn.SyncBatchNorm`` on CUDA, :class:`AllReduceBatchNorm2d`
    on the CPU (parameters and running statistics carried over)."""
    if cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if type(module) is nn.BatchNorm2d:
        out = AllReduceBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_batchnorm(child, cuda))
    return out


def _plain_batchnorm(module: nn.Module) -> nn.Module:
    """SyncBatchNorm / AllReduceBatchNorm2d layers back to BatchNorm2d (same parameters and statistics)."""
    out = module
    if isinstance(module, (nn.SyncBatchNorm, AllReduceBatchNorm2d)):
        out = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats).to(module.weight.device)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _plain_batchnorm(child))
    return out


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
        "metrics": scores["metrics"], "per_class": scores["per_class"], "metrics_subset": scores["metrics_subset"],
        "periodic_eval": fitted["periodic_eval"], "periodic_eval_s": fitted["periodic_eval_s"],
        "steps": fitted["steps"],
    }


# ----------------------------------------------------------------------------------------------
# fine-tuning: torchvision's COCO Mask R-CNN with new predictors for the user's classes
# ----------------------------------------------------------------------------------------------
COCO_ARCH = "maskrcnn_resnet50_fpn"
"""The architecture ``--init coco`` fine-tunes (torchvision's, with its COCO_V1 weights)."""


def build_coco_model(num_classes: int, weights: Any = "DEFAULT", weights_backbone: Any = None,
                     min_size: int = 800, max_size: int = 1333) -> nn.Module:
    """torchvision's ``maskrcnn_resnet50_fpn`` with its box and mask predictors replaced for ``num_classes``.

    The weights are loaded by torchvision's own code (``MaskRCNN_ResNet50_FPN_Weights``, from
    ``torch.hub``'s cache, downloading when it can); everything but the two predictors keeps them. The
    new predictors (``FastRCNNPredictor(1024, K)``, ``MaskRCNNPredictor(256, 256, K)``) start from
    torch's default initialisation (the global random state: seed first).

    Args:
        num_classes: classes including the background (``len(classes)``).
        weights: ``"DEFAULT"`` (COCO_V1), a ``MaskRCNN_ResNet50_FPN_Weights`` member, or ``None`` (random
            weights: tests, and rebuilding a saved fine-tuned model).
        weights_backbone: the backbone's ImageNet weights when ``weights`` is ``None`` (``None``: random).
        min_size, max_size: torchvision's resize (800 and 1333, what the COCO weights were trained with).
    """
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    check_int(num_classes, "num_classes", minimum=2)
    if weights == "DEFAULT":
        weights = MaskRCNN_ResNet50_FPN_Weights.DEFAULT
    model = maskrcnn_resnet50_fpn(weights=weights, weights_backbone=weights_backbone, min_size=min_size,
                                  max_size=max_size)
    box = model.roi_heads.box_predictor
    model.roi_heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_classes)
    mask = model.roi_heads.mask_predictor
    model.roi_heads.mask_predictor = MaskRCNNPredictor(mask.conv5_mask.in_channels,
                                                       mask.conv5_mask.out_channels, num_classes)
    model.coco_init = {"arch": COCO_ARCH, "num_classes": num_classes, "min_size": min_size, "max_size": max_size}
    return model


def coco_weights_file(timeout: float = 3.0) -> Path:
    """The COCO weights file of ``--init coco``, in ``torch.hub``'s cache (downloaded there when possible:
    :func:`helpers.pretrained.fetch_weights`).

    Raises:
        FileNotFoundError: not cached and not downloadable; the message names the exact path the file
            must be put at and the address to fetch it from.
    """
    from helpers.pretrained import cached_weights_path, coco_weights, fetch_weights

    found = fetch_weights(coco_weights(), timeout=timeout)
    path = cached_weights_path(coco_weights())
    if found.ok:
        return path
    if path.is_file():  # offline forced (MASKRCNN_SBS_OFFLINE) but the file is there: use it
        return path
    raise FileNotFoundError(
        f"--init coco needs torchvision's COCO weights, which are not in torch.hub's cache and cannot be "
        f"downloaded here ({found.detail}). Put the file {coco_weights().url} at {path} "
        "(torch.hub's cache: $TORCH_HOME/hub/checkpoints) and run again. Nothing was written.")


def save_coco_model(model: nn.Module, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Save a :func:`build_coco_model` model as ``{"state_dict", "config": {"arch", ...}, "extra"}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "config": dict(model.coco_init), "extra": dict(extra or {})}, path)
    return path


def load_trained(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a checkpoint of ``python -m helpers.train``, from scratch (:func:`helpers.model.load_checkpoint`)
    or fine-tuned from COCO (``config["arch"] == "maskrcnn_resnet50_fpn"``); the model in eval mode."""
    from helpers.model import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `python -m helpers.train`")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and isinstance(raw.get("config"), dict) and raw["config"].get("arch") == COCO_ARCH:
        c = raw["config"]
        model = build_coco_model(int(c["num_classes"]), weights=None, min_size=int(c["min_size"]),
                                 max_size=int(c["max_size"]))
        model.load_state_dict(raw["state_dict"])
        return model.to(map_location).eval(), raw
    return load_checkpoint(path, map_location)


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
_GROUPS = {"training": "training", "data": "data loading and augmentation", "device": "device",
           "evaluation": "evaluation", "outputs": "outputs (every run gets its own folder RUNS_DIR/NAME/)",
           "coco": "your own data (COCO format: an images folder + an instances JSON)"}


def _add_field_option(group: argparse._ArgumentGroup, f: Field) -> None:
    """``--name-with-dashes`` for field ``name_with_dashes``, its type, default, choices and help."""
    kind, _ = _field_type(f)
    flag = "--" + f.name.replace("_", "-")
    if kind is bool:  # progress defaults to True (--no-progress turns it off); the others to False
        if f.default:
            group.add_argument(f"--no-{flag[2:]}", dest=f.name, action="store_false", help=f.metadata["help"])
        else:
            group.add_argument(flag, dest=f.name, action="store_true", help=f.metadata["help"])
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
    g.add_argument("--anchor-sizes", type=_int_list, default=None,
                   help="anchor sizes in pixels, e.g. 12,24,48,96 (default: 12,24,48,96 times image-size / 128, "
                        "i.e. the shipped sizes at 128)")
    g.add_argument("--image-size", type=int, default=m.image_size,
                   help="resize images so that both sides are at most this (default %(default)s; your photos "
                        "probably want 512 or more)")
    g.add_argument("--model-json", default=None, help="more ShapesModelConfig fields as a JSON object")
    return p


def _model_overrides(a: argparse.Namespace) -> dict[str, Any]:
    """The ShapesModelConfig fields the model options set. Without ``--anchor-sizes``, the anchors follow the
    image size: the shapes' 12, 24, 48, 96 (one per level, doubling from 12 for a deeper or shallower
    pyramid) times ``image_size / 128`` (:func:`scaled_anchor_sizes`; exactly the shipped sizes at 128)."""
    overrides: dict[str, Any] = {"pool": a.pool, "feature_stride": a.feature_stride, "image_size": a.image_size}
    if a.widths is not None:
        overrides["widths"] = a.widths
    if a.anchor_sizes is not None:
        overrides["anchor_sizes"] = a.anchor_sizes
    else:
        base = ShapesModelConfig().anchor_sizes
        if a.feature_stride is None and a.widths is not None and len(a.widths) != len(ShapesModelConfig().widths):
            base = [12 * 2 ** i for i in range(len(a.widths))]
        if a.image_size != 128 or base != ShapesModelConfig().anchor_sizes:
            overrides["anchor_sizes"] = scaled_anchor_sizes(a.image_size, base)
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
        rows = benchmark(a.benchmark, threads=a.threads, checkpoint=a.checkpoint or SHAPES_CHECKPOINT,
                         batch_size=a.batch_size)
        _print_benchmark(rows)
        return {"benchmark": rows}
    cfg, mcfg = _configs(parser, a)
    try:
        log = train(cfg, mcfg, command=" ".join([DEFAULT_COMMAND, *(shlex.quote(x) for x in argv)]), impl=a.impl)
    except (FileExistsError, FileNotFoundError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    if "metrics" not in log:  # a rank other than 0 under torchrun
        return log
    print(f"trained {log['steps_done']} steps in {log['train_wall_s']:.0f} s wall "
          f"({log['train_cpu_s']:.0f} s CPU, {log['threads']} threads, load {log['loadavg_start']} -> "
          f"{log['loadavg_end']}); evaluated {log['val_images']} validation images in {log['eval_wall_s']:.1f} s")
    print(format_metrics_table(log["metrics"]))
    print(format_per_class_table(log["per_class"]))
    paths = run_paths(TrainConfig(**log["train_config"]))
    print(f"run folder: {paths.folder}\ncheckpoint: {paths.checkpoint}\nlog: {paths.log}")
    return log


if __name__ == "__main__":
    main()

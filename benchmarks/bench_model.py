"""The series' own Mask R-CNN (``build_model(impl="series")``) against torchvision's assembly, on the CPU.

Both models start from the same weights (the shipped checkpoint, or ``--random`` weights) and see the
same shapes batches (``--hybrid`` adds a third: torchvision's assembly with only its RoIAlign replaced by
the series' ``helpers.roi.roi_align``, the configuration the issue's estimate was made with). Each step is run
for each, alternately (torchvision, series, torchvision, ...),
so that load from other processes hits both alike; the table shows the median over ``--steps`` steps
(after ``--warmup`` untimed ones) of

- a training step: forward in training mode, ``sum(losses).backward()``, an AdamW step (the
  optimiser of ``helpers.train``), per batch of ``--batch-size`` images;
- inference: ``model(images)`` in eval mode under ``torch.no_grad()``, per image;

and the ratio of the medians, series / torchvision (below 1: the series' model is faster); the fastest
step of each is shown in parentheses, a hint of how much the machine's load moved the numbers. ``--profile`` adds a
per-stage table from ``cProfile`` of one more step of each (cumulative seconds in the functions
that implement each stage; the backward pass is one C++ call and is not split by stage).
What such a profile found, and what was changed: ``benchmarks/PROFILE.md``.

    .venv/bin/python benchmarks/bench_model.py                 # shipped weights, 2 threads, 5 steps
    .venv/bin/python benchmarks/bench_model.py --random --steps 9 --profile
    .venv/bin/python benchmarks/bench_model.py --threads 1 --cpu-time --hybrid --steps 9
    .venv/bin/python benchmarks/bench_model.py --threads 1 --cpu-time --steps 1 --stages 5   # by stage

``--cpu-time`` times with the process's CPU clock (``time.process_time``) instead of the wall clock: with
``--threads 1`` it counts the work each model does and is little moved by other jobs on the machine
(waiting for a core is not counted), which the wall clock on a busy 2-core machine is not.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import os
import platform
import pstats
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torchvision
from torch import nn
from torchvision.models.detection import roi_heads as tv_roi_heads
from torchvision.models.detection import rpn as tv_rpn

import helpers.box_head as series_box_head
import helpers.mask_head as series_mask_head
import helpers.roi as series_roi
import helpers.rpn as series_rpn
from helpers.maskrcnn import SeriesMaskRCNN
from helpers.model import MultiScaleRoIPooler, ShapesBackbone, build_model, load_checkpoint
from helpers.project import SHAPES_CHECKPOINT
from helpers.shapes import ShapesDataset
from helpers.train import TrainConfig, build_optimizer

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]

STAGES: list[tuple[str, Callable[..., Any], Callable[..., Any]]] = [
    ("backbone + FPN", ShapesBackbone.forward, ShapesBackbone.forward),
    ("RPN (all of it)", tv_rpn.RegionProposalNetwork.forward, series_rpn.RegionProposalNetwork.forward),
    ("  proposals (top-k, NMS)", tv_rpn.RegionProposalNetwork.filter_proposals, series_rpn.filter_proposals),
    ("RoI sampling", tv_roi_heads.RoIHeads.select_training_samples, series_box_head.select_training_samples),
    ("RoI pooling (box + mask)", MultiScaleRoIPooler.forward, SeriesMaskRCNN.pool),
    ("box loss", tv_roi_heads.fastrcnn_loss, series_box_head.fastrcnn_loss),
    ("detections (NMS)", tv_roi_heads.RoIHeads.postprocess_detections, series_box_head.postprocess_detections),
    ("mask loss (targets)", tv_roi_heads.maskrcnn_loss, series_mask_head.maskrcnn_loss),
    ("mask pasting", tv_roi_heads.paste_masks_in_image, series_mask_head.paste_masks_in_image),
]
"""(stage, torchvision's function, the series' function) for ``--profile``."""


def batches(count: int, batch_size: int, seed: int) -> list[Batch]:
    """``count`` shapes batches; the second image of each has no objects (as in tests/test_maskrcnn.py)."""
    ds = ShapesDataset(count * batch_size, seed=seed)
    out = []
    for b in range(count):
        images, targets = [], []
        for i in range(b * batch_size, (b + 1) * batch_size):
            image, target = ds[i]
            images.append(image)
            targets.append({k: target[k] for k in ("boxes", "labels", "masks")})
        if batch_size > 1:
            targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
                          "masks": torch.zeros(0, *images[1].shape[-2:], dtype=torch.uint8)}
        out.append((images, targets))
    return out


CLOCK: Callable[[], float] = time.perf_counter
"""The clock of :func:`train_step` and :func:`infer`: the wall clock, or ``time.process_time`` (``--cpu-time``)."""


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, seed: int) -> float:
    """One forward + backward + optimiser step; returns its seconds."""
    model.train()
    images, targets = batch
    start = CLOCK()
    torch.manual_seed(seed)
    losses = model(images, targets)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()
    return CLOCK() - start


def infer(model: nn.Module, batch: Batch) -> float:
    """``model(images)`` in eval mode; returns its seconds per image."""
    model.eval()
    start = CLOCK()
    with torch.no_grad():
        model(batch[0])
    return (CLOCK() - start) / len(batch[0])


def series_roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int],
                     spatial_scale: float, sampling_ratio: int) -> torch.Tensor:
    """The series' ``helpers.roi.roi_align`` with the pooler's op signature (``aligned=False``, as torchvision's)."""
    return series_roi.roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned=False)


def hybrid_model(reference: nn.Module) -> nn.Module:
    """A copy of torchvision's assembly whose two poolers run the series' RoIAlign; nothing else changed."""
    hybrid = copy.deepcopy(reference)
    for name in ("box_roi_pool", "mask_roi_pool"):
        old = getattr(hybrid.roi_heads, name)
        setattr(hybrid.roi_heads, name, MultiScaleRoIPooler(
            old.featmap_names, old.output_size, old.sampling_ratio, op=series_roi_align,
            canonical_scale=reference.shapes_config.canonical_scale))
    return hybrid


def profile_stages(models: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer], batch: Batch) -> None:
    """cProfile one training step and one inference call of each model; print seconds per stage."""
    cumulative: dict[str, dict[tuple[str, int, str], float]] = {}
    for name, model in models.items():
        profiler = cProfile.Profile()
        profiler.enable()
        train_step(model, optimizers[name], batch, seed=0)
        infer(model, batch)
        profiler.disable()
        cumulative[name] = {key: row[3] for key, row in pstats.Stats(profiler).stats.items()}  # type: ignore[attr-defined]

    def seconds(name: str, fn: Callable[..., Any]) -> float:
        code = fn.__code__
        return cumulative[name].get((code.co_filename, code.co_firstlineno, code.co_name), 0.0)

    print(f"\none training step + one inference call, cProfile cumulative seconds (batch of {len(batch[0])})")
    print(f"{'stage':<28} {'torchvision s':>14} {'series s':>9} {'ratio':>7}")
    for stage, tv_fn, series_fn in STAGES:
        a, b = seconds("torchvision", tv_fn), seconds("series", series_fn)
        print(f"{stage:<28} {a:>14.3f} {b:>9.3f} {b / a if a else float('nan'):>6.2f}x")
    for name in models:
        total = sum(t for (_, _, fn), t in cumulative[name].items() if "run_backward" in fn)
        print(f"{'backward (' + name + ')':<28} {total:>14.3f}")


def stage_seconds(models: dict[str, nn.Module], batch: Batch, repeats: int) -> None:
    """Time each stage of a training forward + backward of both models (no optimiser step), ``repeats`` times,
    interleaved; print the fastest of each (the least disturbed by other jobs) and the ratio."""
    images, targets = batch
    reference, series = models["torchvision"], models["series"]

    def tv_stages() -> dict[str, float]:
        t: dict[str, float] = {}
        start = CLOCK(); image_list, tg = reference.transform(images, targets); t["transform"] = CLOCK() - start
        start = CLOCK(); features = reference.backbone(image_list.tensors); t["backbone + FPN"] = CLOCK() - start
        torch.manual_seed(0)
        start = CLOCK(); proposals, rpn_losses = reference.rpn(image_list, features, tg); t["RPN"] = CLOCK() - start
        start = CLOCK()
        _, head_losses = reference.roi_heads(features, proposals, image_list.image_sizes, tg)
        t["RoI heads (box + mask, losses)"] = CLOCK() - start
        start = CLOCK(); sum([*rpn_losses.values(), *head_losses.values()]).backward(); t["backward"] = CLOCK() - start
        return t

    def series_stages() -> dict[str, float]:
        t: dict[str, float] = {}
        start = CLOCK(); batch_, tg = series.transform(images, targets); t["transform"] = CLOCK() - start
        start = CLOCK(); features = series.backbone(batch_.tensors); t["backbone + FPN"] = CLOCK() - start
        torch.manual_seed(0)
        start = CLOCK(); proposals, rpn_losses = series.rpn(batch_, features, tg); t["RPN"] = CLOCK() - start
        start = CLOCK()
        rois, matched, labels, regression_targets = series.sample_rois(proposals, tg)
        class_logits, box_regression = series.box_branch(features, rois, batch_.image_sizes)
        box_losses = series_box_head.fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        positives, positive_idxs = series.positive_rois(rois, labels, matched)
        mask_logits = series.mask_branch(features, positives, batch_.image_sizes)
        loss_mask = series_mask_head.maskrcnn_loss(mask_logits, positives, [x["masks"] for x in tg],
                                                   [x["labels"] for x in tg], positive_idxs)
        t["RoI heads (box + mask, losses)"] = CLOCK() - start
        start = CLOCK(); sum([*rpn_losses.values(), *box_losses, loss_mask]).backward(); t["backward"] = CLOCK() - start
        return t

    runs: dict[str, list[dict[str, float]]] = {"torchvision": [], "series": []}
    for rep in range(repeats + 1):  # the first round warms up
        for name, fn in (("torchvision", tv_stages), ("series", series_stages)):
            models[name].train()
            times = fn()
            models[name].zero_grad()
            if rep:
                runs[name].append(times)
    print(f"\ntraining forward + backward by stage, fastest of {repeats} (batch of {len(images)})")
    print(f"{'stage':<32} {'torchvision ms':>15} {'series ms':>10} {'ratio':>7}")
    for stage in runs["torchvision"][0]:
        a, b = (min(r[stage] for r in runs[name]) * 1e3 for name in ("torchvision", "series"))
        print(f"{stage:<32} {a:>15.1f} {b:>10.1f} {b / a:>6.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (median shown)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (helpers.train's default)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--random", action="store_true", help="random weights (seed 0) instead of the checkpoint")
    parser.add_argument("--seed", type=int, default=123, help="seed of the shapes batches")
    parser.add_argument("--profile", action="store_true", help="also print a per-stage cProfile table")
    parser.add_argument("--stages", type=int, default=0, metavar="N",
                        help="also time each stage of a training forward + backward, fastest of N")
    parser.add_argument("--hybrid", action="store_true",
                        help="add torchvision's assembly with the series' roi_align as a third model")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU clock (use with --threads 1) instead of the wall clock")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter

    if args.random:
        torch.manual_seed(0)
        reference = build_model(impl="torchvision")
        weights = "random weights (seed 0)"
    else:
        reference, _ = load_checkpoint(SHAPES_CHECKPOINT, impl="torchvision")
        weights = f"weights of {SHAPES_CHECKPOINT.name}"
    series = build_model(reference.shapes_config, impl="series")
    series.load_state_dict(reference.state_dict(), strict=True)
    models = {"torchvision": reference, "series": series}
    if args.hybrid:
        models["tv + series roi_align"] = hybrid_model(reference)
    optimizers = {name: build_optimizer(m, TrainConfig())[0] for name, m in models.items()}
    data = batches(args.warmup + args.steps + 1, args.batch_size, args.seed)

    times: dict[str, dict[str, list[float]]] = {name: {"train": [], "infer": []} for name in models}
    for step, batch in enumerate(data[:-1]):
        for name, model in models.items():  # interleaved: torchvision, series, torchvision, ...
            t_train = train_step(model, optimizers[name], batch, seed=step)
            t_infer = infer(model, batch)
            if step >= args.warmup:
                times[name]["train"].append(t_train)
                times[name]["infer"].append(t_infer)

    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.machine()}, "
          f"{args.threads} thread(s), load average {load}; {weights}; batch of {args.batch_size}; "
          f"median of {args.steps} interleaved steps after {args.warmup} warm-up; "
          f"{'CPU time of the process' if args.cpu_time else 'wall clock'}")
    others = [name for name in models if name != "torchvision"]
    print(f"{'median (fastest)':<34} {'torchvision':>18}" + "".join(f" {name:>22} {'ratio':>6}" for name in others))
    for key, label, scale in (("train", "training step (fwd+bwd+AdamW), s", 1.0),
                              ("infer", "inference per image, ms", 1e3)):
        med = {name: statistics.median(times[name][key]) * scale for name in models}
        low = {name: min(times[name][key]) * scale for name in models}
        line = f"{label:<34} {med['torchvision']:>9.3f} ({low['torchvision']:>6.3f})"
        for name in others:
            line += f" {med[name]:>13.3f} ({low[name]:>6.3f}) {med[name] / med['torchvision']:>5.2f}x"
        print(line)
    print("ratio: median / torchvision's median (below 1: faster than torchvision's assembly)")
    if args.stages:
        stage_seconds(models, data[-1], args.stages)
    if args.profile:
        profile_stages({name: models[name] for name in ("torchvision", "series")}, optimizers, data[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

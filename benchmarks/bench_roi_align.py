"""Speed of the vectorised RoIAlign in ``helpers.roi`` against torchvision's C++ CPU kernel.

Run from the repository root::

    .venv/bin/python benchmarks/bench_roi_align.py            # the tables below, median of 7 runs
    .venv/bin/python benchmarks/bench_roi_align.py --repeats 15 --threads 2

Table 1, the case of issue 3: 512 RoIs on a 1x256x50x68 feature map (stride 16, so
``spatial_scale=1/16``; boxes drawn at random, seeded, inside an 800x1088 image), 7x7 output,
``sampling_ratio=2``, float32, on the CPU. It times the forward pass alone and forward + backward
(``out.sum().backward()``), prints the median (and the best) of several runs, the ratio to
torchvision, and the largest absolute difference of the outputs and of the input gradients.
Floors: forward <= 3x torchvision's time, forward + backward <= 1.5x, differences <= 1e-4.
The row "helpers.roi (embedding_bag)" is the other gather design that was measured (see
``helpers.roi.roi_align_kernel(..., backend=...)``); the default ("auto") uses the CSR sparse matmul at this size.

Table 2: the readable loop version (``roi_align_loop``) against the vectorised one on a small
case (8 RoIs, 1x16x32x32, 7x7, ``sampling_ratio=2``), as notebook 02b shows.

torchvision's CPU kernel is single-threaded; table 1 is printed for each of ``--threads``
(default ``1,2``: one thread like torchvision, then both cores of the reference machine). The
timings are wall-clock times: on a shared machine, when other processes keep the cores busy, they
vary a lot between runs, and multithreaded ops suffer most (each parallel region waits for a core),
so run it a few times and compare the best-ofs too. The script exits non-zero if no thread
count meets the floors.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torchvision.ops as tv

from helpers.roi import check_roi_args, roi_align, roi_align_kernel, roi_align_loop

FORWARD_FLOOR = 3.0
FORWARD_BACKWARD_FLOOR = 1.5
EXACT_FLOOR = 1e-4


def make_case(seed: int = 0, k: int = 512, channels: int = 256, stride: int = 16,
              image_hw: tuple[int, int] = (800, 1088)) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature map Tensor[1, C, H/stride, W/stride] and Tensor[K, 5] boxes inside the image."""
    gen = torch.Generator().manual_seed(seed)
    img_h, img_w = image_hw
    feat = torch.randn(1, channels, img_h // stride, img_w // stride, generator=gen)
    a = torch.rand(k, 2, generator=gen) * torch.tensor([img_w, img_h])
    b = torch.rand(k, 2, generator=gen) * torch.tensor([img_w, img_h])
    boxes = torch.cat([torch.zeros(k, 1), torch.minimum(a, b), torch.maximum(a, b)], dim=1)
    return feat, boxes


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, best) wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def forward_backward(
    op: Callable, feat: torch.Tensor, boxes: torch.Tensor, args: tuple
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output and input gradient of ``op(feat, boxes, *args).sum()``."""
    x = feat.detach().clone().requires_grad_(True)
    out = op(x, boxes, *args)
    out.sum().backward()
    return out.detach(), x.grad


def table_vs_torchvision(repeats: int) -> bool:
    feat, boxes = make_case()
    args = ((7, 7), 1 / 16, 2, False)
    rois, ph, pw, scale, sr, al = check_roi_args(feat, boxes, *args)

    def ours_ebag(x, b, *a):
        return roi_align_kernel(x, rois, ph, pw, scale, sr, al, "avg", backend="embedding_bag")

    ops = [("torchvision.ops.roi_align", tv.roi_align), ("helpers.roi.roi_align", roi_align),
           ("helpers.roi (embedding_bag)", ours_ebag)]
    ref_out, ref_grad = forward_backward(tv.roi_align, feat, boxes, args)
    print(f"RoIAlign, {boxes.shape[0]} RoIs on {tuple(feat.shape)}, output 7x7, sampling_ratio=2, "
          f"spatial_scale=1/16, float32, {torch.get_num_threads()} thread(s); median (best) of {repeats} runs")
    header = (f"{'implementation':28s} {'forward ms':>18s} {'x tv':>6s} {'fwd+bwd ms':>18s} {'x tv':>6s} "
              f"{'max|dout|':>10s} {'max|dgrad|':>10s}")
    print(header)
    print("-" * len(header))
    base = None
    ok = True
    for name, op in ops:
        x_req = feat.detach().clone().requires_grad_(True)

        def fwd():
            with torch.no_grad():
                op(feat, boxes, *args)

        def fwd_bwd():
            x_req.grad = None
            op(x_req, boxes, *args).sum().backward()

        f_med, f_best = timed(fwd, repeats)
        fb_med, fb_best = timed(fwd_bwd, repeats)
        out, grad = forward_backward(op, feat, boxes, args)
        d_out = (out - ref_out).abs().max().item()
        d_grad = (grad - ref_grad).abs().max().item()
        if base is None:
            base = (f_med, fb_med)
        rf, rfb = f_med / base[0], fb_med / base[1]
        print(f"{name:28s} {f_med * 1e3:9.1f} ({f_best * 1e3:6.1f}) {rf:6.2f} "
              f"{fb_med * 1e3:9.1f} ({fb_best * 1e3:6.1f}) "
              f"{rfb:6.2f} {d_out:10.2e} {d_grad:10.2e}")
        if op is roi_align:
            ok = rf <= FORWARD_FLOOR and rfb <= FORWARD_BACKWARD_FLOOR and max(d_out, d_grad) <= EXACT_FLOOR
            verdict = (f"floors (forward <= {FORWARD_FLOOR}x, fwd+bwd <= {FORWARD_BACKWARD_FLOOR}x, "
                       f"diff <= {EXACT_FLOOR:g}): {'met' if ok else 'NOT met'} "
                       f"(medians {rf:.2f}x / {rfb:.2f}x)")
    print(verdict)
    return ok


def table_loop_vs_vectorised(repeats: int) -> None:
    feat, boxes = make_case(seed=1, k=8, channels=16, stride=1, image_hw=(32, 32))
    args = ((7, 7), 1.0, 2, False)
    print(f"Readable loop vs vectorised, 8 RoIs on {tuple(feat.shape)}, output 7x7, sampling_ratio=2, "
          f"forward, median of {max(3, repeats // 2)} runs")
    header = f"{'implementation':28s} {'forward ms':>12s} {'x vectorised':>13s}"
    print(header)
    print("-" * len(header))
    t_vec, _ = timed(lambda: roi_align(feat, boxes, *args), repeats)
    t_loop, _ = timed(lambda: roi_align_loop(feat, boxes, *args), max(3, repeats // 2), warmup=1)
    t_tv, _ = timed(lambda: tv.roi_align(feat, boxes, *args), repeats)
    for name, t in [("helpers.roi.roi_align_loop", t_loop), ("helpers.roi.roi_align", t_vec),
                    ("torchvision.ops.roi_align", t_tv)]:
        print(f"{name:28s} {t * 1e3:12.2f} {t / t_vec:13.1f}")
    diff = (roi_align_loop(feat, boxes, *args) - roi_align(feat, boxes, *args)).abs().max().item()
    print(f"max |loop - vectorised| = {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated torch thread counts to run table 1 with (torchvision's kernel uses 1)")
    args = parser.parse_args()
    met = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        met[threads] = table_vs_torchvision(args.repeats)
        print()
    table_loop_vs_vectorised(args.repeats)
    good = [t for t, ok in met.items() if ok]
    print(f"\nfloors met with {', '.join(map(str, good))} thread(s)" if good else "\nfloors NOT met")
    if not good:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""``helpers.boxes.nms`` against torchvision's C++ ``torchvision.ops.nms`` on random boxes (CPU).

For each size, the same boxes and scores go to both functions, alternately (ours, theirs, ours, ...)
so that load from other processes hits both alike; the table shows the median of ``--runs`` calls
each and checks that both keep exactly the same indices in the same order. torch runs on one
thread by default (``--threads``): torchvision's CPU kernel is single-threaded, and on a shared
machine intra-op threads mostly measure the neighbours.

    .venv/bin/python benchmarks/bench_nms.py                  # prints the table; exit status 1 if a result differs
    .venv/bin/python benchmarks/bench_nms.py --sizes 300 2000 --runs 21 --threshold 0.7
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch
import torchvision

from helpers.boxes import nms


def random_boxes(n: int, seed: int, extent: float = 800.0, max_side: float = 120.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` boxes with corners in ``[0, extent]`` and sides up to ``max_side`` pixels, and their scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * extent
    wh = torch.rand(n, 2, generator=g) * max_side + 1.0
    return torch.cat([xy, xy + wh], dim=1), torch.rand(n, generator=g)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 600, 2000, 5000])
    parser.add_argument("--runs", type=int, default=11, help="timed calls per function and size (median shown)")
    parser.add_argument("--threshold", type=float, default=0.5, help="IoU threshold")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), IoU threshold {args.threshold}, median of {args.runs} interleaved runs")
    print(f"{'boxes':>6} {'kept':>6} {'ours ms':>9} {'torchvision ms':>15} {'ratio':>7}  equal")
    all_equal = True
    for n in args.sizes:
        boxes, scores = random_boxes(n, seed=n)
        ours, theirs = nms(boxes, scores, args.threshold), torchvision.ops.nms(boxes, scores, args.threshold)
        equal = torch.equal(ours, theirs)
        all_equal &= equal
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(args.runs):
            for name, fn in (("ours", nms), ("theirs", torchvision.ops.nms)):
                start = time.perf_counter()
                fn(boxes, scores, args.threshold)
                times[name].append(time.perf_counter() - start)
        a, b = (statistics.median(times[k]) * 1e3 for k in ("ours", "theirs"))
        print(f"{n:>6} {len(theirs):>6} {a:>9.2f} {b:>15.2f} {a / b:>6.1f}x  {'yes' if equal else 'NO'}")
    return 0 if all_equal else 1


if __name__ == "__main__":
    sys.exit(main())

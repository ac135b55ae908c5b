"""Peak memory of the streaming evaluation (``helpers.evaluate.stream_results``) on N large validation images.

The shipped shapes model runs on shapes images drawn at 1024 x 768 (generated on access, so the data set holds
nothing), with its score threshold at 0 so that every image gives its 30 detections, each pasted as a
1024 x 768 float mask: 94 MB of masks an image, which evaluation used to keep for every image. Each N runs in
its own process; the table shows the process's peak resident memory (``ru_maxrss``) before and after, and what
keeping every image's masks would take.

    .venv/bin/python benchmarks/bench_eval_memory.py              # N = 20 and 200 (about 5 minutes on 1 core)
    .venv/bin/python benchmarks/bench_eval_memory.py --images 5 50
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


class LargeShapes:
    """``ShapesDataset(n, seed)`` up-sampled (nearest) to ``height x width``, one image at a time."""

    def __init__(self, n: int, seed: int = 5, height: int = 768, width: int = 1024) -> None:
        from helpers.shapes import ShapesDataset

        self.base, self.size = ShapesDataset(n, seed=seed), (height, width)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, target = self.base[i]
        return torch.nn.functional.interpolate(image[None], size=self.size, mode="nearest")[0], \
            {"image_id": target["image_id"]}


def measure(n: int) -> dict:
    """One N, in this process: peak RSS (MiB) before and after streaming N images, detections, seconds."""
    from helpers.evaluate import stream_results
    from helpers.project import SHAPES_CHECKPOINT
    from helpers.train import load_trained

    torch.set_num_threads(1)
    model, _ = load_trained(SHAPES_CHECKPOINT)
    model.roi_heads.score_thresh = 0.0
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    results = stream_results(model, LargeShapes(n), batch_size=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    d = len(results["segm"])
    return {"images": n, "detections": d, "rss_before_mib": round(before), "rss_peak_mib": round(after),
            "seconds": round(time.perf_counter() - start, 1), "keep_all_gib": round(d * 1024 * 768 * 4 / 2**30, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, nargs="+", default=[20, 200])
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one N and print JSON
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(measure(a.one)))
        return
    print(f"{'images':>6} {'detections':>10} {'RSS before':>11} {'RSS peak':>9} {'seconds':>8} {'keeping all masks':>18}")
    for n in a.images:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['images']:>6} {r['detections']:>10} {r['rss_before_mib']:>7} MiB {r['rss_peak_mib']:>5} MiB "
              f"{r['seconds']:>8} {r['keep_all_gib']:>14} GiB")


if __name__ == "__main__":
    main()

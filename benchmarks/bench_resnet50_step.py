"""One training step of torchvision's ``maskrcnn_resnet50_fpn`` (random weights) on two shapes images.

Backs notebook 09's "on two CPU cores it would not get through its first thousand images in ten minutes":
the model's transform resizes a 128 x 128 shapes image to 800 x 800, so one step costs what a COCO-sized
step costs. One warm-up step, then one timed step (wall and CPU time over all threads), with the load
average before and after: on a shared machine the wall time counts waiting, so compare the CPU time.

    .venv/bin/python benchmarks/bench_resnet50_step.py      # about 4 minutes on 2 busy cores

Measured once (2026-11-30, 2-core AMD EPYC, load average 5.4 -> 6.0): 108 s wall, 46 s CPU for the
two images, about 23 CPU seconds per image; a thousand images would need over three hours even with
both cores free.
"""

from __future__ import annotations

import time

import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from helpers.shapes import ShapesDataset


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print("load average at start:", " ".join(open("/proc/loadavg").read().split()[:3]))
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=4).train()
    data = ShapesDataset(8, seed=0)
    images = [data[i][0] for i in range(2)]
    targets = [{k: data[i][1][k] for k in ("boxes", "labels", "masks")} for i in range(2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9)

    def step() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0, time.process_time() - c0

    step()  # warm-up
    wall, cpu = step()
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters; one step of 2 images: wall {wall:.1f} s, "
          f"CPU {cpu:.1f} s ({cpu / 2:.1f} CPU s per image; 1000 images >= {1000 * cpu / 2 / 2 / 3600:.1f} h "
          "on 2 free cores)")
    print("load average at end:", " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()

"""Checkers for the exercises at the end of every notebook (00-11, 02b and 05b included).

A student writes an answer in the notebook and calls ``check("01.1", answer)``: the checker prints
that the answer is right, or what is wrong and where to look. Every expected value is *computed*
here, by an independent reference (torchvision's ops, ``grid_sample``, pycocotools, a float64
recomputation or the stored results file), never typed in. Where an answer matches a common mistake
(the 1:3 weighting instead of 3:1, ``aligned=False`` instead of ``True``, the area instead of its
square root, ...) the message names that mistake; the mistakes are computed from the same
reference with the one thing changed.

The solutions live in the notebooks, in a collapsed ``<details><summary>Solution</summary>`` block
under each exercise, where a student opens them on purpose; ``tests/test_exercises.py`` runs every
solution block through its checker.

- :func:`check`: print the verdict (what a notebook calls; ``None`` prints "not answered yet").
- :func:`grade`: the same verdict as a :class:`Verdict` object, printing nothing (what tests use).
- :func:`exercise_ids`: the ids, notebook by notebook.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import batched_nms, box_iou, roi_align, roi_pool

from helpers.project import ROOT

__all__ = ["Verdict", "Exercise", "EXERCISES", "exercise_ids", "grade", "check"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``status`` is ``"right"``, ``"wrong"`` or ``"unanswered"``."""

    exercise: str
    status: str
    message: str

    @property
    def right(self) -> bool:
        return self.status == "right"


@dataclass(frozen=True)
class Exercise:
    """One exercise: how its answer looks, where the notebook teaches it, and how to check it.

    ``reference()`` returns the expected answer (computed, never typed in); ``mistakes()`` returns
    ``(value, message)`` pairs, each the answer one common mistake produces and what to say about it.
    ``parse`` turns a student's answer into a float array (``ValueError`` when it cannot).
    """

    id: str
    kind: str                      # what the answer is, e.g. "a number", "(A, B, C, D): 4 numbers"
    where: str                     # the notebook section that teaches it
    hint: str
    reference: Callable[[], Any]
    mistakes: Callable[[], list[tuple[Any, str]]] = field(default=lambda: [])
    tolerance: float = 1e-3
    unordered: bool = False        # compare sorted (a set of indices)
    parse: Callable[[Any], np.ndarray] | None = None


# --------------------------------------------------------------------------------------------------
# answers to float arrays


def _as_array(answer: Any) -> np.ndarray:
    if isinstance(answer, torch.Tensor):
        answer = answer.detach().cpu().double().numpy()
    if isinstance(answer, (str, bytes, dict, set)):
        raise ValueError(f"a {type(answer).__name__}")
    try:
        array = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{type(answer).__name__} {answer!r}") from None
    if array.dtype == object:
        raise ValueError(f"{answer!r}")
    return array


def _level(answer: Any) -> np.ndarray:
    """An FPN level written as 3 or "P3"."""
    if isinstance(answer, str) and answer.strip().upper().startswith("P") and answer.strip()[1:].isdigit():
        return np.asarray(float(answer.strip()[1:]))
    return _as_array(answer)


def _same(a: np.ndarray, b: np.ndarray, tolerance: float, unordered: bool) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    if unordered:
        a, b = np.sort(a, axis=None), np.sort(b, axis=None)
    return bool(np.all(np.abs(a - b) <= tolerance))


def _show(value: Any) -> str:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return f"{float(array):.4g}"
    return np.array2string(array, precision=4, separator=", ", suppress_small=True, floatmode="maxprec")


# --------------------------------------------------------------------------------------------------
# 00 · instance segmentation


BOX_A, BOX_B = (20.0, 10.0, 60.0, 50.0), (40.0, 30.0, 90.0, 70.0)


def _ref_00_1() -> float:
    return float(box_iou(torch.tensor([BOX_A], dtype=torch.float64), torch.tensor([BOX_B], dtype=torch.float64)))


def _mistakes_00_1() -> list[tuple[Any, str]]:
    a, b = np.array(BOX_A), np.array(BOX_B)
    inter_wh = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    inter = inter_wh.prod()
    area_a, area_b = (a[2:] - a[:2]).prod(), (b[2:] - b[:2]).prod()
    plus1 = (inter_wh + 1).prod() / ((a[2:] - a[:2] + 1).prod() + (b[2:] - b[:2] + 1).prod() - (inter_wh + 1).prod())
    return [
        (plus1, "That is the IoU with the '+1' (inclusive) pixel convention. Here boxes are pixel edges: "
                "the width is x2 - x1, no +1."),
        (inter / min(area_a, area_b), "That is the intersection over the *smaller* box, not over the union."),
        (inter / (area_a + area_b), "You divided by the sum of the areas: the union counts the overlap once, "
                                    "so subtract it."),
        (inter, "That is the intersection in pixels; IoU divides it by the union."),
    ]


def _merge_masks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    big = np.zeros((40, 40), dtype=np.uint8)
    small = np.zeros((40, 40), dtype=np.uint8)
    big[4:18, 2:22] = 1      # 14 x 20 = 280 pixels
    small[4:14, 22:34] = 1   # 10 x 12 = 120 pixels, touching big's right side
    return big, small, big | small


def _ref_00_2() -> float:
    from pycocotools import mask as mask_utils

    big, _, merged = _merge_masks()
    rle = lambda m: mask_utils.encode(np.asfortranarray(m))  # noqa: E731
    return float(mask_utils.iou([rle(merged)], [rle(big)], [0])[0, 0])


def _mistakes_00_2() -> list[tuple[Any, str]]:
    big, small, merged = _merge_masks()
    b, s, m = int(big.sum()), int(small.sum()), int(merged.sum())
    return [
        (s / m, "That is the merged region's IoU with the *small* square; the question asks about the big one."),
        (s / b, "That is small / big, a ratio of the two objects, not an IoU (intersection / union)."),
        (1.0, "The region also covers the small square's pixels, which are not the big object's: the union is "
              "larger than the intersection."),
        (b / (b + m), "The union of the region with the big square is the region itself (it contains the square)."),
    ]


# --------------------------------------------------------------------------------------------------
# 01 · bilinear interpolation


def _feature16() -> torch.Tensor:
    return torch.arange(1.0, 17.0, dtype=torch.float64).reshape(4, 4)


def _grid_sample_points(fmap: torch.Tensor, points: list[tuple[float, float]]) -> torch.Tensor:
    """Values of fmap[H, W] at (x, y) points with align_corners=True (pixel centres at integers)."""
    H, W = fmap.shape
    grid = torch.tensor([[2 * x / (W - 1) - 1, 2 * y / (H - 1) - 1] for x, y in points], dtype=torch.float64)
    return F.grid_sample(fmap[None, None], grid[None, None], mode="bilinear", align_corners=True)[0, 0, 0]


def _ref_01_1() -> float:
    return float(_grid_sample_points(_feature16(), [(3.0, 2.25)])[0])


def _mistakes_01_1() -> list[tuple[Any, str]]:
    f = _feature16()
    nearest = float(f[round(2.25), 3])
    return [
        (0.25 * float(f[2, 3]) + 0.75 * float(f[3, 3]),
         "This is the 1:3 weighting, not 3:1: the point (y = 2.25) is much closer to row 2 (value 12), "
         "so 12 gets the large weight 0.75."),
        (nearest, "That is the nearest pixel's value (what rounding would read), not the interpolated one."),
        (float(f[3, 3]), "That is the pixel below, at (3, 3); the point is only a quarter of the way to it."),
        ((float(f[2, 3]) + float(f[3, 3])) / 2, "An equal 1:1 mix is the value at y = 2.5, not at y = 2.25."),
        (1 + 2.25 + 4 * 3.0, "You swapped x and y: x is the column (3.0), y the row (2.25)."),
    ]


POINT_01_2 = (2.3, 1.8)


def _ref_01_2() -> np.ndarray:
    """The four weights, read from grid_sample on one-hot maps (A top-left, B top-right, C bottom-left, D bottom-right)."""
    x, y = POINT_01_2
    x0, y0 = math.floor(x), math.floor(y)
    weights = []
    for xx, yy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        one_hot = torch.zeros(4, 4, dtype=torch.float64)
        one_hot[yy, xx] = 1.0
        weights.append(float(_grid_sample_points(one_hot, [POINT_01_2])[0]))
    return np.array(weights)


def _mistakes_01_2() -> list[tuple[Any, str]]:
    a, b, c, d = _ref_01_2()
    x, y = POINT_01_2
    dx, dy = x - math.floor(x), y - math.floor(y)
    swapped = [(1 - dy) * (1 - dx), dy * (1 - dx), (1 - dy) * dx, dy * dx]
    return [
        ([c, d, a, b], "Top and bottom are swapped: y grows *downwards*, so A and B are on row floor(y) = 1 "
                       "(the notes' 'bottom' labels are the maths-plot habit; see 'Where the notes mislead')."),
        (swapped, "dx and dy are swapped: dx = x - x0 = 0.3 moves weight to the right, dy = y - y0 = 0.8 downwards."),
        ([d, c, b, a], "Each weight should be (1 - distance) along each axis: you used the distances themselves, "
                       "which gives the far corner's weight to the near one."),
    ]


def _ref_01_3() -> np.ndarray:
    """grid_sample's normalised x of pixel centres 0 and W-1 (W = 4, align_corners=False), found from
    grid_sample itself: on a ramp f(x) = x it returns the x it sampled, linearly in x_norm."""
    W = 4
    ramp = torch.arange(W, dtype=torch.float64).expand(3, W)
    probes = torch.tensor([-0.5, 0.5], dtype=torch.float64)
    grid = torch.stack([probes, torch.zeros(2, dtype=torch.float64)], dim=-1)
    xs = F.grid_sample(ramp[None, None], grid[None, None], align_corners=False)[0, 0, 0]   # x at the probes
    slope = (probes[1] - probes[0]) / (xs[1] - xs[0])
    return np.array([float(probes[0] + (x - xs[0]) * slope) for x in (0.0, W - 1.0)])


def _mistakes_01_3() -> list[tuple[Any, str]]:
    W = 4
    return [
        ([2 * 0 / (W - 1) - 1, 2 * (W - 1) / (W - 1) - 1],
         "That is align_corners=True, where -1 and +1 are the corner pixels' *centres*. With False they are "
         "the outer *edges*, half a pixel further out."),
        ([2 * 0 / W - 1, 2 * (W - 1) / W - 1], "You forgot the half-pixel: x = 0 is the centre of pixel 0, half a "
                                                "pixel right of the edge at -1 (the '+ 1' in (2x + 1) / W - 1)."),
    ]


# --------------------------------------------------------------------------------------------------
# 02 · RoIAlign


BOX_02_1 = (16.0, 16.0, 48.0, 48.0)


def _roi_align_02_1(spatial_scale: float, aligned: bool) -> np.ndarray:
    feature = _feature16()[None, None]
    box = torch.tensor([[0.0, *BOX_02_1]], dtype=torch.float64)
    return roi_align(feature, box, (2, 2), spatial_scale, sampling_ratio=2, aligned=aligned)[0, 0].numpy()


def _ref_02_1() -> np.ndarray:
    return _roi_align_02_1(1 / 16, True)


def _mistakes_02_1() -> list[tuple[Any, str]]:
    return [
        (_roi_align_02_1(1 / 16, False), "You used aligned=False: that skips the half-pixel shift "
                                         "(box x spatial_scale - 0.5), so every sample sits half a cell right and down."),
        (_roi_align_02_1(1.0, True), "The box is in image pixels: multiply it by spatial_scale = 1/16 before "
                                     "sampling (the box then lies far outside the 4 x 4 map)."),
        (_ref_02_1().T, "Rows and columns are swapped: out[i, j] is bin row i (y), column j (x)."),
    ]


BOX_02_2 = (0.0, 0.0, 250.0, 250.0)


def _ref_02_2() -> int:
    """The adaptive grid: the sampling_ratio g whose output equals sampling_ratio=-1's, on a random map."""
    generator = torch.Generator().manual_seed(0)
    feature = torch.rand(1, 1, 20, 20, generator=generator, dtype=torch.float64)
    box = torch.tensor([[0.0, *BOX_02_2]], dtype=torch.float64)
    adaptive = roi_align(feature, box, (7, 7), 1 / 16, sampling_ratio=-1)
    for g in range(1, 40):
        if torch.allclose(roi_align(feature, box, (7, 7), 1 / 16, sampling_ratio=g), adaptive, rtol=0, atol=1e-12):
            return g
    raise RuntimeError("no sampling_ratio reproduces the adaptive grid")


def _mistakes_02_2() -> list[tuple[Any, str]]:
    cells = (BOX_02_2[2] - BOX_02_2[0]) / 16 / 7
    side = BOX_02_2[2] - BOX_02_2[0]
    return [
        (math.floor(cells), "ceil, not floor or round: the grid is ceil(roi size / output size), so 2.23 becomes 3."),
        (math.ceil(side / 7), "The roi size is measured on the feature map, after spatial_scale = 1/16: "
                              "250 px is 15.6 cells, not 250."),
        (math.ceil(side / 16), "Divide by the output size too: 15.6 cells are shared by 7 bins."),
        (_ref_02_2() ** 2, "That is the number of samples per bin (grid x grid); the question asks for the grid "
                           "along one side."),
    ]


# --------------------------------------------------------------------------------------------------
# 02b · RoIAlign made fast and differentiable


BOX_02B_1 = (-2.0, 0.0, 2.0, 2.0)   # on the 4 x 4 map, spatial_scale = 1: its left half lies left of the map
SIZE_02B_1, GRID_02B_1 = 2, 2        # output_size, sampling_ratio (aligned=False)


def _gradient_total_02b_1(box: tuple[float, float, float, float]) -> float:
    """feature.grad.sum() after roi_align(feature, box, 2, 1.0, 2, False).sum().backward(), by torchvision's backward."""
    feature = _feature16()[None, None].clone().requires_grad_(True)
    out = roi_align(feature, torch.tensor([[0.0, *box]], dtype=torch.float64), (SIZE_02B_1, SIZE_02B_1), 1.0,
                    sampling_ratio=GRID_02B_1, aligned=False)
    (grad,) = torch.autograd.grad(out.sum(), feature)
    return float(grad.sum())


def _ref_02b_1() -> float:
    return _gradient_total_02b_1(BOX_02B_1)


def _mistakes_02b_1() -> list[tuple[Any, str]]:
    x1, _, x2, _ = BOX_02B_1
    bin_w = (x2 - x1) / SIZE_02B_1
    columns = [x1 + j * bin_w + (ix + 0.5) * bin_w / GRID_02B_1 for j in range(SIZE_02B_1) for ix in range(GRID_02B_1)]
    # the sample columns at x >= 0 only (as if rule 2's border repeat did not exist), all rows inside
    right_of_zero = sum(x >= 0 for x in columns) / GRID_02B_1 * SIZE_02B_1
    inside = (BOX_02B_1[0] + 2.0, BOX_02B_1[1], BOX_02B_1[2] + 2.0, BOX_02B_1[3])   # the box moved onto the map
    return [
        (_gradient_total_02b_1(inside), "That is the total when every sample lies on the map (one per bin). A sample "
                                        "more than one pixel outside (x < -1) reads 0 and sends no gradient back."),
        (_ref_02b_1() * GRID_02B_1 ** 2, "That counts the samples' weights without the average: each bin *averages* "
                                         "its 2 x 2 samples, so each sample carries a quarter of the bin's gradient."),
        (right_of_zero, "The sample at x = -0.5 lies within one pixel of the map: it repeats column 0 (weight 1 "
                        "in total), it does not read 0."),
    ]


# --------------------------------------------------------------------------------------------------
# 03 · RoIPool


BOX_03_1 = (0.4, 0.6, 2.6, 1.4)


def _ref_03_1() -> float:
    box = torch.tensor([[0.0, *BOX_03_1]], dtype=torch.float64)
    return float(roi_pool(_feature16()[None, None], box, (1, 1), 1.0)[0, 0, 0, 0])


def _mistakes_03_1() -> list[tuple[Any, str]]:
    f = _feature16().numpy()
    x1, y1, x2, y2 = BOX_03_1
    floor = f[math.floor(y1):math.floor(y2) + 1, math.floor(x1):math.floor(x2) + 1].max()
    ceil = f[math.ceil(y1):math.ceil(y2) + 1, math.ceil(x1):math.ceil(x2) + 1].max()
    rows = f[round(y1):round(y2) + 1, round(x1):round(x2) + 1]
    align = float(_grid_sample_points(_feature16(), [((x1 + x2) / 2, (y1 + y2) / 2)])[0])
    out = [
        (floor, "That box was floored (or its end made exclusive): RoIPool *rounds* each corner, half away from "
                "zero, and includes the end cell (width = x2 - x1 + 1)."),
        (ceil, "That box was rounded up: RoIPool rounds each corner to the *nearest* cell (1.4 -> 1, 0.6 -> 1)."),
        (float(rows.mean()), "That is an average of the pooled cells: RoIPool takes the *maximum* over its bin."),
    ]
    if not any(abs(align - v) < 1e-9 for v, _ in out):
        out.append((align, "That is bilinear interpolation at the box centre (how RoIAlign reads the map); RoIPool "
                           "rounds the box and takes a max."))
    return out


def _pool_start_column(x1: float) -> int:
    """The first feature column RoIPool pools for a box starting at image x1 (stride 16), read from torchvision."""
    columns = -torch.arange(8, dtype=torch.float64).expand(1, 1, 4, 8).contiguous()   # f[y, x] = -x
    box = torch.tensor([[0.0, x1, 0.0, x1 + 40.0, 40.0]], dtype=torch.float64)
    return int(-roi_pool(columns, box, (1, 1), 1 / 16)[0, 0, 0, 0])


def _ref_03_2() -> np.ndarray:
    xs = np.arange(0.0, 32.0, 0.5)
    starts = [_pool_start_column(x) for x in xs]
    return np.array([x for x, prev, now in zip(xs[1:], starts, starts[1:]) if now != prev])


def _mistakes_03_2() -> list[tuple[Any, str]]:
    ref = _ref_03_2()
    return [
        (ref / 16, "Those are feature cells; give the box's x1 in image pixels (cells x 16)."),
        ([16.0], "That is where a *floor* would jump. RoIPool rounds to the nearest cell, so the start column "
                 "changes half a cell (8 px) earlier, and again at every further cell."),
        ([8.5, 24.0], "torch.round rounds 0.5 to even (0); torchvision's RoIPool uses C's round, half away "
                      "from zero, so x1 = 8 px (0.5 cells) already starts at column 1."),
    ]


# --------------------------------------------------------------------------------------------------
# 04 · FPN levels


def _tv_level(side: float) -> int:
    from torchvision.ops.poolers import LevelMapper

    mapper = LevelMapper(k_min=2, k_max=5)
    return int(mapper([torch.tensor([[0.0, 0.0, side, side]])])[0]) + 2


def _ref_04_1() -> int:
    return _tv_level(112.0)


def _mistakes_04_1() -> list[tuple[Any, str]]:
    s = 112.0
    return [
        (min(5, math.floor(4 + math.log2(s * s / 224))), "You used the area, not its square root: "
                                                         "k = floor(4 + log2(sqrt(w h) / 224))."),
        (4, "k0 = 4 is the level of a 224-px box; every halving of the side goes one level down."),
        (2, "112 px is *half* of 224, one level below P4, not two."),
    ]


def _ref_04_2() -> int:
    for side in range(1, 2000):
        if _tv_level(float(side)) == 5:
            return side
    raise RuntimeError("no box side reaches P5")


def _mistakes_04_2() -> list[tuple[Any, str]]:
    return [
        (224, "224 px is where P4 starts (k0 = 4); each level up doubles the side."),
        (round(224 * math.sqrt(2)), "That rounds log2(s / 224) instead of taking its floor: the level only "
                                    "changes when the side doubles."),
        (896, "That is where P6 would start; the levels go up at 224 (P4) and 448 (P5)."),
        (_ref_04_2() - 1, "One pixel short: at exactly 448 px, log2(448 / 224) = 1, and the floor gives 5."),
    ]


# --------------------------------------------------------------------------------------------------
# 05 · RPN


ANCHOR_05, BOX_05 = (0.0, 0.0, 32.0, 32.0), (8.0, 4.0, 40.0, 36.0)


def _ref_05_1() -> float:
    return float(box_iou(torch.tensor([ANCHOR_05], dtype=torch.float64), torch.tensor([BOX_05], dtype=torch.float64)))


def _mistakes_05_1() -> list[tuple[Any, str]]:
    a, b = np.array(ANCHOR_05), np.array(BOX_05)
    wh = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    inter, area = wh.prod(), (a[2:] - a[:2]).prod()
    plus1 = (wh + 1).prod() / (2 * (a[2:] - a[:2] + 1).prod() - (wh + 1).prod())
    return [
        (inter / area, "That is the intersection over the anchor's area, not over the union."),
        (plus1, "That is the '+1' pixel convention; torchvision's boxes are pixel edges (width = x2 - x1)."),
        (inter, "That is the intersection in pixels; divide by the union."),
    ]


RATIOS_05 = (0.25, 0.5, 1.0, 2.0, 4.0)


def _count_anchors(ratios: tuple[float, ...]) -> int:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    sizes = ((32,), (64,), (128,), (256,), (512,))
    generator = AnchorGenerator(sizes, (ratios,) * len(sizes))
    image = torch.zeros(1, 3, 128, 128)
    features = [torch.zeros(1, 1, 128 // s, 128 // s) for s in (4, 8, 16, 32, 64)]
    return int(generator(ImageList(image, [(128, 128)]), features)[0].shape[0])


def _ref_05_2() -> int:
    return _count_anchors(RATIOS_05)


def _mistakes_05_2() -> list[tuple[Any, str]]:
    return [
        (_count_anchors((0.5, 1.0, 2.0)), "That is the count with the default three ratios; the question uses five."),
        (len(RATIOS_05) * 32 * 32, "That is level '0' only; the RPN places anchors on all five maps."),
        (len(RATIOS_05) * 5, "That is the anchors of one location on every level; multiply by each map's cells."),
        (len(RATIOS_05) * 5 * 32 * 32, "Each level has its own map size (32, 16, 8, 4, 2 cells a side) "
                                       "and one anchor size: sum over the levels."),
    ]


# --------------------------------------------------------------------------------------------------
# 05b · RPN losses and proposals


DIFFS_05B = ((0.05, 0.0, 0.0, 0.0), (1.0, -0.5, 0.0, 0.0))   # prediction - target, two sampled positives
SAMPLED_05B, BETA_05B = 256, 1.0 / 9


def _box_loss_05b(beta: float = BETA_05B, divisor: float = SAMPLED_05B, reduction: str = "sum") -> float:
    diffs = torch.tensor(DIFFS_05B, dtype=torch.float64)
    loss = F.smooth_l1_loss(diffs, torch.zeros_like(diffs), beta=beta, reduction=reduction)
    return float(loss) / divisor


def _ref_05b_1() -> float:
    return _box_loss_05b()


def _mistakes_05b_1() -> list[tuple[Any, str]]:
    diffs = torch.tensor(DIFFS_05B, dtype=torch.float64)
    return [
        (_box_loss_05b(divisor=len(DIFFS_05B)), "You divided by the number of positives (2); the RPN divides the "
                                               "sum by the number of *sampled* anchors, 256."),
        (_box_loss_05b(divisor=1), "That is the sum before the division: divide it by the 256 sampled anchors."),
        (_box_loss_05b(beta=1.0), "That is smooth L1 with beta = 1 (torch's default); the RPN uses beta = 1/9."),
        (float(diffs.abs().sum()) / SAMPLED_05B, "That is plain L1: below beta = 1/9 the loss is quadratic, "
                                                 "0.5 z**2 / beta, not |z|."),
        (_box_loss_05b(reduction="mean", divisor=1), "That is the mean over the 8 numbers; the RPN sums them and "
                                                     "divides by the 256 sampled anchors."),
    ]


BOXES_05B = ((0.0, 0.0, 10.0, 10.0), (1.0, 0.0, 11.0, 10.0), (2.0, 0.0, 12.0, 10.0), (20.0, 20.0, 30.0, 30.0))
SCORES_05B, THRESH_05B = (0.9, 0.8, 0.7, 0.95), 0.7


def _ref_05b_2() -> list[int]:
    from torchvision.ops import nms

    return nms(torch.tensor(BOXES_05B), torch.tensor(SCORES_05B), THRESH_05B).tolist()


def _mistakes_05b_2() -> list[tuple[Any, str]]:
    n = len(BOXES_05B)
    boxes = torch.tensor(BOXES_05B, dtype=torch.float64)
    iou = box_iou(boxes, boxes)
    order = sorted(range(n), key=lambda i: -SCORES_05B[i])
    chained = [i for k, i in enumerate(order)                  # every box suppresses, kept or not
               if not any(iou[i, j] > THRESH_05B for j in order[:k])]
    return [
        (chained, "A box that NMS has already suppressed suppresses nothing: box 2 overlaps box 0 by only "
                  "0.67 and box 1, which overlaps it more, is gone by then."),
        (list(range(n)), "Box 1 overlaps box 0 (the higher score) by 0.82 > 0.7: NMS drops it."),
        ([i for i in range(n) if i != 3], "Box 3 overlaps nothing: NMS never drops a box without an overlap."),
    ]


# --------------------------------------------------------------------------------------------------
# 06 · box head


PROPOSAL_06, DELTAS_06 = (10.0, 20.0, 50.0, 60.0), (1.0, -0.5, 0.2, 0.1)


def _tv_roi_heads() -> torch.nn.Module:
    """torchvision's RoIHeads as ``MaskRCNN`` builds them with its defaults (box coder, sampler), on a stub
    backbone: its public way to reach them (their classes live in a private module)."""
    from torchvision.models.detection import MaskRCNN

    backbone = torch.nn.Identity()
    backbone.out_channels = 1
    with torch.random.fork_rng(devices=[]):   # building initialises weights: leave the student's generator alone
        return MaskRCNN(backbone, num_classes=2).roi_heads


def _decode(weights: tuple[float, float, float, float] | None) -> np.ndarray:
    """The box head's decoding of DELTAS_06 on PROPOSAL_06; ``None``: torchvision's default weights."""
    coder = copy.copy(_tv_roi_heads().box_coder)
    if weights is not None:
        coder.weights = weights
    out = coder.decode_single(torch.tensor([DELTAS_06], dtype=torch.float64),
                              torch.tensor([PROPOSAL_06], dtype=torch.float64))
    return out[0].numpy()


def _ref_06_1() -> np.ndarray:
    return _decode(None)   # the default weights, (10, 10, 5, 5)


def _mistakes_06_1() -> list[tuple[Any, str]]:
    x1, y1, x2, y2 = PROPOSAL_06
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    dx, dy, dw, dh = np.array(DELTAS_06) / np.array([10.0, 10.0, 5.0, 5.0])
    plus1_w, plus1_h = w + 1, h + 1
    pcx, pcy = x1 + 0.5 * plus1_w, y1 + 0.5 * plus1_h
    pw, ph = plus1_w * math.exp(dw), plus1_h * math.exp(dh)
    pcx, pcy = pcx + dx * plus1_w, pcy + dy * plus1_h
    lin_w, lin_h = w * (1 + dw), h * (1 + dh)
    return [
        (_decode((1.0, 1.0, 1.0, 1.0)), "You used the deltas as they are: the box head's BoxCoder divides them "
                                        "by its weights (10, 10, 5, 5) first."),
        ([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2 - 1, pcy + ph / 2 - 1],
         "That is the old '+1' pixel convention (width = x2 - x1 + 1); torchvision's coder uses x2 - x1."),
        ([cx + dx * w - lin_w / 2, cy + dy * h - lin_h / 2, cx + dx * w + lin_w / 2, cy + dy * h + lin_h / 2],
         "The width scales by exp(dw), not by 1 + dw."),
    ]


def _sampled(positives: int, negatives: int) -> np.ndarray:
    sampler = _tv_roi_heads().fg_bg_sampler   # MaskRCNN's defaults: 512 RoIs per image, 25 % positive
    labels = torch.cat([torch.ones(positives), torch.zeros(negatives)])
    with torch.random.fork_rng(devices=[]):   # the sampler draws from the global generator: leave the student's alone
        torch.manual_seed(0)
        pos, neg = sampler([labels])
    return np.array([int(pos[0].sum()), int(neg[0].sum())])


def _ref_06_2() -> np.ndarray:
    return _sampled(40, 1960)


def _mistakes_06_2() -> list[tuple[Any, str]]:
    return [
        ([128, 384], "128 is only the *cap* on positives (512 x 0.25); there are just 40, and the negatives fill "
                     "the rest of the 512."),
        ([40, 384], "The negatives are not capped at 384: they fill whatever the positives leave of 512."),
        ([40, 1960], "The sampler keeps 512 RoIs per image (box_batch_size_per_image), not all 2000."),
    ]


# --------------------------------------------------------------------------------------------------
# 07 · mask head


def _mask_target(sampling_ratio: int) -> float:
    mask = torch.zeros(1, 1, 64, 64, dtype=torch.float64)
    mask[..., :28] = 1.0                         # the object: columns 0..27
    box = torch.tensor([[0.0, 0.0, 0.0, 56.0, 56.0]], dtype=torch.float64)
    target = roi_align(mask, box, (28, 28), 1.0, sampling_ratio=sampling_ratio)   # torchvision's project_masks_on_boxes
    return float(target[0, 0, 10, 13])


def _ref_07_1() -> float:
    return _mask_target(-1)


def _mistakes_07_1() -> list[tuple[Any, str]]:
    return [
        (_mask_target(1), "One sample per bin (at x = 27) would give that, and so would a threshold. The target "
                          "is RoIAlign of the 0/1 mask with the adaptive grid: the box is 56 px for 28 bins, so "
                          "ceil(56 / 28) = 2 samples per bin, at x = 26.5 and 27.5, and an edge bin gets a fraction."),
        (0.0, "Column 13 covers x from 26 to 28 of the mask, where the object still is (columns < 28)."),
    ]


def _mask_loss_entries(num_classes: int = 4) -> int:
    from torchvision.models.detection.roi_heads import maskrcnn_loss

    generator = torch.Generator().manual_seed(0)
    gt_masks = [torch.zeros(2, 64, 64)]
    gt_masks[0][0, 8:30, 8:30] = 1
    gt_masks[0][1, 30:60, 20:50] = 1
    gt_labels = [torch.tensor([1, 3])]
    proposals = [torch.tensor([[6.0, 6.0, 32.0, 32.0], [18.0, 28.0, 52.0, 62.0], [10.0, 10.0, 28.0, 28.0]])]
    matched = [torch.tensor([0, 1, 0])]
    logits = torch.randn(3, num_classes, 28, 28, generator=generator, requires_grad=True)
    maskrcnn_loss(logits, proposals, gt_masks, gt_labels, matched).backward()
    return int((logits.grad != 0).sum())


def _ref_07_2() -> int:
    return _mask_loss_entries()


def _mistakes_07_2() -> list[tuple[Any, str]]:
    return [
        (3 * 4 * 28 * 28, "That counts every class's channel. The loss reads only the channel of each RoI's "
                          "ground-truth class (a sigmoid per class, no competition between classes)."),
        (3 * 3 * 28 * 28, "Only one channel per RoI enters the loss: its ground-truth class's."),
        (28 * 28, "That is one RoI; all three positive RoIs contribute."),
        (3 * 14 * 14, "The mask logits are 28 x 28 (the head upsamples its 14 x 14 RoIAlign input)."),
    ]


# --------------------------------------------------------------------------------------------------
# 08 · the whole model


BOXES_08 = ((0.0, 0.0, 10.0, 10.0), (1.0, 0.0, 11.0, 10.0), (1.0, 0.0, 11.0, 10.0), (20.0, 20.0, 30.0, 30.0))
SCORES_08, LABELS_08 = (0.9, 0.8, 0.7, 0.6), (1, 1, 2, 1)


def _nms_08(labels: tuple[int, ...]) -> np.ndarray:
    boxes = torch.tensor(BOXES_08, dtype=torch.float64)
    keep = batched_nms(boxes, torch.tensor(SCORES_08, dtype=torch.float64), torch.tensor(labels), 0.5)
    return np.sort(keep.numpy())


def _ref_08_1() -> np.ndarray:
    return _nms_08(LABELS_08)


def _mistakes_08_1() -> list[tuple[Any, str]]:
    return [
        (_nms_08((0,) * len(LABELS_08)), "That is class-agnostic NMS. The box head runs NMS per class: box 2 is "
                                         "a square, so the circle 0 cannot suppress it."),
        (list(range(len(BOXES_08))), "Boxes 0 and 1 are the same class with IoU 0.82 > 0.5: one suppresses "
                                     "the other."),
        ([1, 2, 3], "NMS keeps the *higher*-scoring box of an overlapping pair: box 0 (0.9), not box 1 (0.8)."),
    ]


def _proposals_before_nms(pre_nms_top_n: int) -> int:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

    sizes = ((32,), (64,), (128,), (256,), (512,))
    generator = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    with torch.random.fork_rng(devices=[]), torch.no_grad():   # seeded here, the student's generator untouched
        torch.manual_seed(0)
        head = RPNHead(1, 3)
        torch.nn.init.zeros_(head.bbox_pred.weight)   # deltas 0: proposals are the (clipped) anchors
        torch.nn.init.zeros_(head.bbox_pred.bias)
        # nms_thresh=1.0 suppresses nothing, so what NMS returns is exactly what entered it
        rpn = RegionProposalNetwork(generator, head, 0.7, 0.3, 256, 0.5,
                                    {"training": 2000, "testing": pre_nms_top_n}, {"training": 2000, "testing": 100000},
                                    nms_thresh=1.0).eval()
        features = {str(i): torch.rand(1, 1, 128 // s, 128 // s) for i, s in enumerate((4, 8, 16, 32, 64))}
        boxes, _ = rpn(ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)]), features)
    return int(boxes[0].shape[0])


def _ref_08_2() -> int:
    return _proposals_before_nms(1000)


def _mistakes_08_2() -> list[tuple[Any, str]]:
    anchors = 3 * sum((128 // s) ** 2 for s in (4, 8, 16, 32, 64))
    return [
        (1000, "pre_nms_top_n is applied *per level*, not once over all levels."),
        (5 * 1000, "Per level it keeps at most 1000, but the coarse levels have fewer anchors than that "
                   "(768, 192, 48 and 12): min(1000, anchors on the level)."),
        (anchors, "That is every anchor; the top-1000 cut per level comes before NMS."),
    ]


# --------------------------------------------------------------------------------------------------
# 09 · AP


HITS_09 = (True, False, True, True)   # detections from the highest score down; 4 objects exist
OBJECTS_09 = 4
SCORES_09_2 = (0.95, 0.92, 0.91, 0.6)   # the same four detections, with scores; score_thresh = 0.9


def _coco_ap50(hits: tuple[bool, ...], n_objects: int) -> float:
    """COCO AP at IoU 0.5 of ranked detections (hit or not), from pycocotools on boxes built to produce them."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_boxes = [[100.0 * i, 0.0, 40.0, 40.0] for i in range(n_objects)]   # xywh, far apart
    dataset = {"images": [{"id": 1, "width": 1000, "height": 1000}], "categories": [{"id": 1, "name": "shape"}],
               "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": b, "area": 1600.0, "iscrowd": 0}
                               for i, b in enumerate(gt_boxes)]}
    detections, found = [], 0
    for k, hit in enumerate(hits):
        box = gt_boxes[found] if hit else [500.0 + 50 * k, 500.0, 40.0, 40.0]
        found += hit
        detections.append({"image_id": 1, "category_id": 1, "bbox": box, "score": 0.9 - 0.1 * k})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[1])   # AP50


def _ref_09_1() -> float:
    return _coco_ap50(HITS_09, OBJECTS_09)


def _ref_09_2() -> float:
    return _coco_ap50(tuple(h for h, s in zip(HITS_09, SCORES_09_2) if s >= 0.9), OBJECTS_09)


def _mistakes_09_2() -> list[tuple[Any, str]]:
    kept = tuple(h for h, s in zip(HITS_09, SCORES_09_2) if s >= 0.9)
    return [
        (_ref_09_1(), "That is the AP of all four detections; the threshold removes the last one (0.6), and with "
                      "it the recall from 0.5 to 0.75."),
        (_coco_ap50(kept, int(np.sum(kept))), "Recall still divides by all 4 objects: the ones the threshold "
                                              "dropped count as missed."),
        (float(np.sum(kept)) / len(kept), "That is the precision of the kept detections; AP averages precision "
                                          "over recall 0 to 1, and past the highest recall reached it reads 0."),
    ]


def _pr(n_objects: int) -> tuple[np.ndarray, np.ndarray]:
    hits = np.array(HITS_09)
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    return tp / n_objects, tp / (tp + fp)


def _mistakes_09_1() -> list[tuple[Any, str]]:
    recall, precision = _pr(OBJECTS_09)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    area_raw = float((steps * precision).sum())
    area_env = float((steps * envelope).sum())
    eleven = float(np.mean([envelope[recall >= r].max() if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 11)]))
    recall3, precision3 = _pr(int(np.sum(HITS_09)))
    env3 = np.maximum.accumulate(precision3[::-1])[::-1]
    coco3 = float(np.mean([env3[recall3 >= r].max() if (recall3 >= r).any() else 0.0 for r in np.linspace(0, 1, 101)]))
    return [
        (area_env, "That is the exact area under the interpolated curve; COCO reads it at 101 recall points "
                   "0, 0.01, ..., 1 and averages (0.26 .. 0.75 are 50 points, not a width of 0.5)."),
        (area_raw, "That uses the raw precision; COCO first replaces each precision by the best precision at "
                   "any higher recall (the curve never rises)."),
        (eleven, "That is the old PASCAL VOC 11-point AP; COCO uses 101 points."),
        (coco3, "Recall divides by all 4 objects, found or not: the missed one keeps recall below 1."),
    ]


# --------------------------------------------------------------------------------------------------
# 10 · the ablation's results


def _ablation_runs() -> list[dict]:
    with open(ROOT / "data" / "ablation_results.json") as f:
        return json.load(f)["runs"]


def _mean(stride: int, op: str, kind: str, metric: str) -> float:
    return float(np.mean([r[kind][metric] for r in _ablation_runs() if r["feature_stride"] == stride and r["op"] == op]))


def _ref_10_1() -> float:
    return 1 - _mean(16, "pool", "mask", "AP75") / _mean(16, "align", "mask", "AP75")


def _mistakes_10_1() -> list[tuple[Any, str]]:
    align, pool = _mean(16, "align", "mask", "AP75"), _mean(16, "pool", "mask", "AP75")
    return [
        (pool / align, "That is the fraction RoIPool *keeps*; the question asks what it loses."),
        (100 * (align - pool), "That is the loss in AP points; divide it by RoIAlign's AP75 to get a fraction."),
        (1 - _mean(16, "pool", "mask", "AP50") / _mean(16, "align", "mask", "AP50"), "That is the AP50 column."),
        (1 - _mean(16, "pool", "box", "AP75") / _mean(16, "align", "box", "AP75"), "That is box AP75, not mask AP75."),
        (1 - _mean(4, "pool", "mask", "AP75") / _mean(4, "align", "mask", "AP75"), "That is stride 4; the question "
                                                                                     "is about stride 16."),
    ]


def _seed_values(stride: int, op: str) -> np.ndarray:
    return 100 * np.array([r["mask"]["AP"] for r in _ablation_runs() if r["feature_stride"] == stride and r["op"] == op])


def _ref_10_2() -> float:
    return float(np.std(_seed_values(4, "align"), ddof=1))


def _mistakes_10_2() -> list[tuple[Any, str]]:
    values = _seed_values(4, "align")
    return [
        (float(np.std(values, ddof=0)), "That is the population standard deviation (divide by n). The table "
                                        "uses the sample one, ddof=1 (divide by n - 1), as three seeds call for."),
        (float(np.var(values, ddof=1)), "That is the variance; take its square root."),
        (float(np.std(values, ddof=1) / 100), "Give it in AP points (percent), as the table does."),
    ]


# --------------------------------------------------------------------------------------------------
# 11 · the pretrained model


PHOTO_11 = (333, 1000)   # (height, width)


def _resized(min_size: int, max_size: int) -> np.ndarray:
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    transform = GeneralizedRCNNTransform(min_size, max_size, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]).eval()
    images, _ = transform([torch.zeros(3, *PHOTO_11)])
    return np.array(images.image_sizes[0], dtype=np.float64)


def _ref_11_1() -> np.ndarray:
    return _resized(800, 1333)


def _mistakes_11_1() -> list[tuple[Any, str]]:
    h, w = PHOTO_11
    scale = min(800 / min(h, w), 1333 / max(h, w))
    return [
        (_resized(800, 10**6), "The longer side may not exceed 1333: the scale is min(800 / short, 1333 / long)."),
        ([round(h * scale), round(w * scale)], "torchvision floors the scaled size (443.9 -> 443), it does not "
                                               "round it."),
        (_ref_11_1()[::-1], "Give (height, width): the photo is 333 high and 1000 wide."),
        ([800, 1333], "The aspect ratio is kept: one scale factor for both sides."),
    ]


def _ref_11_2() -> int:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return MaskRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"].count("N/A")


def _mistakes_11_2() -> list[tuple[Any, str]]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    categories = MaskRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    return [
        (_ref_11_2() + 1, "'__background__' (slot 0) is not an N/A gap: it is the background class."),
        (len(categories), "That is all the slots; count the ones named 'N/A'."),
        (len(categories) - _ref_11_2() - 1, "That is the number of real classes; the question asks for the gaps."),
    ]


# --------------------------------------------------------------------------------------------------
# the table of exercises


def _make() -> dict[str, Exercise]:
    ex = [
        Exercise("00.1", "a number (the IoU)", "section 'What semantic segmentation merges' (the box IoU of the circles)",
                 "intersection = overlap width x overlap height; union = area a + area b - intersection; width = x2 - x1.",
                 _ref_00_1, _mistakes_00_1),
        Exercise("00.2", "a number (the IoU)", "section 'What merging costs' (the merged circle region)",
                 "The region contains the whole big square, so their intersection is the big square.",
                 _ref_00_2, _mistakes_00_2),
        Exercise("01.1", "a number", "section 'Bilinear interpolation at (1.6, 1.15), by hand'",
                 "x = 3.0 is a pixel centre, so only the rows mix: 12 at y = 2 and 16 at y = 3.",
                 _ref_01_1, _mistakes_01_1),
        Exercise("01.2", "4 numbers (A, B, C, D)", "section 'Bilinear interpolation at (1.6, 1.15), by hand'",
                 "x0 = floor(x), y0 = floor(y), dx = x - x0, dy = y - y0; A = (1 - dx)(1 - dy) is the top-left "
                 "weight (y points down).",
                 _ref_01_2, _mistakes_01_2),
        Exercise("01.3", "2 numbers (x_norm of x = 0, x_norm of x = 3)", "section 'Check 1: torch.nn.functional.grid_sample'",
                 "With align_corners=False, -1 is the *left edge* of pixel 0, at x = -0.5, and +1 the right edge "
                 "of pixel W - 1, at x = W - 0.5.",
                 _ref_01_3, _mistakes_01_3),
        Exercise("02.1", "a 2 x 2 list of numbers [[out00, out01], [out10, out11]]",
                 "sections '`spatial_scale`' and '`aligned=True`: the half-pixel shift'",
                 "Scale the box by 1/16, subtract 0.5 (aligned=True), cut it into 2 x 2 bins; on a linear map the "
                 "average of a bin's samples is the value at the bin centre, 1 + x + 4y.",
                 _ref_02_1, _mistakes_02_1),
        Exercise("02.2", "an int (samples per bin along one side)", "section 'A grid of samples per bin: `sampling_ratio`'",
                 "grid = ceil(roi_height / pooled_height), with the roi measured on the feature map.",
                 _ref_02_2, _mistakes_02_2, tolerance=0),
        Exercise("02b.1", "a number (the sum of the gradient)", "section 'The gradient'",
                 "Each bin averages its 2 x 2 samples; a sample's bilinear weights sum to 1, unless it lies more "
                 "than one pixel outside the map (then it reads 0).",
                 _ref_02b_1, _mistakes_02b_1),
        Exercise("03.1", "a number", "section 'RoIPool, step by step'",
                 "Round each corner to the nearest cell (halves away from zero), include the end cell, take the max.",
                 _ref_03_1, _mistakes_03_1),
        Exercise("03.2", "a list of x1 values in image pixels", "section 'Quantisation made visible' (the staircase)",
                 "RoIPool's first column is round(x1 / 16), C's round: where does x1 / 16 cross 0.5 and 1.5?",
                 _ref_03_2, _mistakes_03_2, tolerance=0.25),
        Exercise("04.1", "an int (k, the level P_k) or a string like 'P4'", "section 'Which level does a box go to?'",
                 "k = floor(4 + log2(sqrt(w h) / 224)), clamped to 2..5.",
                 _ref_04_1, _mistakes_04_1, tolerance=0, parse=_level),
        Exercise("04.2", "an int (the side in pixels)", "section 'Which level does a box go to?'",
                 "Solve 4 + log2(s / 224) >= 5 for the smallest s.",
                 _ref_04_2, _mistakes_04_2, tolerance=0),
        Exercise("05.1", "a number (the IoU)", "section '3. Which anchors are objects? Matching by IoU'",
                 "Overlap: x from 8 to 32, y from 4 to 32.",
                 _ref_05_1, _mistakes_05_1),
        Exercise("05.2", "an int", "section '1. Anchors'",
                 "Each location of each level gets one anchor per ratio; the maps are 32, 16, 8, 4 and 2 cells a side.",
                 _ref_05_2, _mistakes_05_2, tolerance=0),
        Exercise("05b.1", "a number (the loss)", "section '1. The head and the two losses'",
                 "Smooth L1 with beta = 1/9 per number (0.5 z**2 / beta below beta, z - beta / 2 above), summed "
                 "over both positives' 4 deltas, divided by the sampled anchors.",
                 _ref_05b_1, _mistakes_05b_1, tolerance=5e-6),
        Exercise("05b.2", "a list of box indices", "section '2. From scores and deltas to proposals' (greedy NMS)",
                 "Visit the boxes by score (3, 0, 1, 2); keep one unless a box *already kept* overlaps it by more "
                 "than 0.7.",
                 _ref_05b_2, _mistakes_05b_2, tolerance=0, unordered=True),
        Exercise("06.1", "4 numbers (x1, y1, x2, y2)", "section 'From scores and deltas to detections' "
                 "(and notebook 05, section 2)",
                 "Divide the deltas by (10, 10, 5, 5); centre += d * size; size *= exp(d).",
                 _ref_06_1, _mistakes_06_1, tolerance=0.01),
        Exercise("06.2", "2 ints (positives, negatives)", "section 'Matching proposals to ground truth'",
                 "At most 512 x 0.25 positives; negatives fill the rest of the 512.",
                 _ref_06_2, _mistakes_06_2, tolerance=0),
        Exercise("07.1", "a number", "section '3. Mask targets: the true mask, cropped to the proposal'",
                 "Column 13 of the target covers mask x from 26 to 28; how many samples per bin, and where?",
                 _ref_07_1, _mistakes_07_1),
        Exercise("07.2", "an int", "section '4. The loss: binary cross-entropy on one channel, averaged'",
                 "Which channel of each RoI's [num_classes, 28, 28] logits does the loss read?",
                 _ref_07_2, _mistakes_07_2, tolerance=0),
        Exercise("08.1", "a list of box indices", "section '5. The box head: RoIs, classes and refined boxes'",
                 "NMS runs per class (batched_nms): boxes only suppress boxes of their own class.",
                 _ref_08_1, _mistakes_08_1, tolerance=0, unordered=True),
        Exercise("08.2", "an int", "section '4. The RPN: objectness, proposals before and after NMS'",
                 "The top-n cut is per level: count the anchors on each level first.",
                 _ref_08_2, _mistakes_08_2, tolerance=0),
        Exercise("09.1", "a number (AP at IoU 0.5)", "section '5. Average precision, rebuilt in NumPy'",
                 "Precision and recall after each detection; make precision non-increasing from the right; read it "
                 "at recall 0, 0.01, ..., 1; average the 101 values.",
                 _ref_09_1, _mistakes_09_1, tolerance=5e-4),
        Exercise("09.2", "a number (AP at IoU 0.5)", "section '5. Average precision, rebuilt in NumPy'",
                 "Keep the detections scoring at least 0.9, then compute AP as before: recall still divides "
                 "by all 4 objects.",
                 _ref_09_2, _mistakes_09_2, tolerance=5e-4),
        Exercise("10.1", "a number (a fraction between 0 and 1)", "section 'The results' (the summary table)",
                 "Use the means over seeds: 1 - pool / align, for mask AP75 at stride 16.",
                 _ref_10_1, _mistakes_10_1, tolerance=0.01),
        Exercise("10.2", "a number (AP points)", "section 'The results' (mean ± std in the table)",
                 "The three seeds' mask AP (in percent), and the standard deviation with ddof=1.",
                 _ref_10_2, _mistakes_10_2, tolerance=0.05),
        Exercise("11.1", "2 ints (height, width)", "section 'What the weights carry: category names and preprocessing'",
                 "scale = min(800 / short side, 1333 / long side); each side = floor(side x scale).",
                 _ref_11_1, _mistakes_11_1, tolerance=0),
        Exercise("11.2", "an int", "section 'What the weights carry: category names and preprocessing'",
                 "Slot = COCO category id; COCO's ids run to 90 with gaps.",
                 _ref_11_2, _mistakes_11_2, tolerance=0),
    ]
    return {e.id: e for e in ex}


EXERCISES: dict[str, Exercise] = _make()


def exercise_ids(notebook: str | None = None) -> list[str]:
    """The exercise ids, all or one notebook's (``notebook="01"``, or ``"05b"`` for the later part of notebook 05)."""
    if notebook is not None and (not isinstance(notebook, str) or re.fullmatch(r"\d\d[a-z]?", notebook) is None):
        raise ValueError(f"notebook must be a notebook number, two digits and an optional lowercase letter "
                         f"such as '01' or '05b', got {notebook!r}")
    return [k for k in EXERCISES if notebook is None or k.startswith(notebook + ".")]


def _exercise(exercise: Any) -> Exercise:
    if not isinstance(exercise, str) or exercise not in EXERCISES:
        raise ValueError(f"exercise must be one of {', '.join(EXERCISES)}; got {exercise!r}")
    return EXERCISES[exercise]


def grade(exercise: str, answer: Any) -> Verdict:
    """Check ``answer`` to ``exercise`` (an id such as ``"01.1"``) and say why, printing nothing.

    Raises:
        ValueError: ``exercise`` is not a known id (the message lists them).
    """
    ex = _exercise(exercise)
    name = f"Exercise {ex.id}"
    if answer is None or answer is Ellipsis:
        return Verdict(ex.id, "unanswered", f"{name}: not answered yet. Set `answer` to {ex.kind} and run the "
                                            f"cell again.\n  Hint: {ex.hint}")
    parse = ex.parse or _as_array
    try:
        given = parse(answer)
    except ValueError as error:
        return Verdict(ex.id, "wrong", f"{name}: `answer` must be {ex.kind}; got {error}.")
    expected = np.asarray(ex.reference(), dtype=np.float64)
    if given.size == expected.size:
        given = given.reshape(expected.shape)
        if _same(given, expected, ex.tolerance, ex.unordered):
            return Verdict(ex.id, "right", f"{name}: right, {_show(expected)}.")
    for value, message in ex.mistakes():   # a common mistake, recognised (it may have another length)
        value = np.asarray(value, dtype=np.float64)
        if value.size == given.size and not (value.size == expected.size and _same(
                value.reshape(expected.shape), expected, ex.tolerance, ex.unordered)) \
                and _same(given.reshape(value.shape), value, ex.tolerance, ex.unordered):
            return Verdict(ex.id, "wrong", f"{name}: not yet. {message}\n  Look again at {ex.where}.")
    if given.size != expected.size:
        return Verdict(ex.id, "wrong", f"{name}: not yet: `answer` should be {ex.kind}, {expected.size} "
                                       f"number(s); got {given.size}.\n  Look again at {ex.where}.")
    close = ex.tolerance > 0 and _same(given, expected, 20 * ex.tolerance, ex.unordered)
    lead = ("close, but not within the tolerance: keep more decimals (or check the last step)" if close
            else f"{_show(given)} is not what the reference computes")
    return Verdict(ex.id, "wrong", f"{name}: not yet: {lead}.\n  Look again at {ex.where}.\n  Hint: {ex.hint}")


def check(exercise: str, answer: Any) -> None:
    """Print whether ``answer`` to ``exercise`` is right, or what is wrong and where to look.

    ``answer=None`` prints a "not answered yet" line with the hint (no exception).

    Raises:
        ValueError: ``exercise`` is not a known id.
    """
    print(grade(exercise, answer).message)

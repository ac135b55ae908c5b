"""The seeded synthetic-shapes data set: circles, squares and triangles on varied backgrounds.

Every image holds a few flat-coloured shapes at random sizes, colours and positions, some of them
overlapping, on a plain, gradient or mildly noisy background. The targets are exactly what
torchvision's detection models expect (``boxes``, ``labels``, ``masks``, ``area``, ``iscrowd``,
``image_id``), and :func:`to_coco` writes the same ground truth in COCO format for pycocotools.

Conventions:

- Pixel ``(x, y)`` has its centre at integer coordinates, ``x`` grows to the right, ``y`` grows
  **downwards**, ``(0, 0)`` is the top-left pixel. A pixel belongs to a shape when its centre lies
  inside the shape (boundary included).
- Boxes are ``(x1, y1, x2, y2)`` in the *pixel-edge* convention of COCO and torchvision's detection
  data sets: a mask covering columns ``c0 .. c1`` gets ``x1 = c0`` and ``x2 = c1 + 1`` (so the box
  width equals the number of columns). Note that ``torchvision.ops.masks_to_boxes`` returns ``c1``,
  one less: add 1 to its ``x2, y2`` to compare.
- Later shapes are painted over earlier ones. Each mask holds only the *visible* pixels of its shape,
  so the masks of one image never overlap. A shape is only kept when enough of it stays visible
  (``min_visible_area`` pixels and ``min_visible_fraction`` of its in-image area).
- Label 0 is the background, as torchvision expects: ``CLASSES[label]`` names a label.

Determinism: the masks are rasterised with integer arithmetic only (shapes have integer centres,
integer side vectors and integer vertices; inside tests are integer dot and cross products), and
all random numbers come from ``numpy.random.Generator`` draws that are bit-exact on every machine.
Item ``i`` of ``ShapesDataset(n, seed=s)`` is drawn from ``numpy.random.default_rng([s, i])``, so
it does not depend on the order of access, and two data sets with different seeds share no stream
(``default_rng(seed + index)`` would make item 1 of seed 0 equal to item 0 of seed 1, leaking
training images into a validation set).

Written for notebook 00 and used by notebooks 08 and 09.
"""

from __future__ import annotations

import contextlib
import io
import numbers
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from helpers.checks import check_int, check_number
from helpers.masks import encode_rle

__all__ = [
    "CLASSES",
    "BACKGROUNDS",
    "make_image",
    "ShapesDataset",
    "collate_fn",
    "to_coco",
    "coco_api",
    "semantic_map",
    "instance_map",
]

CLASSES: tuple[str, ...] = ("background", "circle", "square", "triangle")
"""Class names; ``CLASSES[label]`` names a label, and label 0 is the background."""

BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise")
"""The kinds of background an image can have."""

MIN_SIZE = 32
"""The smallest image side :func:`make_image` accepts (smaller shapes stop being recognisable)."""

MAX_SHAPES = 20
"""The most shapes one image may ask for."""

_NOISE = 0.06  # half-width of the uniform per-pixel noise of a "noise" background
_MIN_CONTRAST_BG = 0.3  # a shape's colour differs from the background by this much in some channel
_MIN_CONTRAST_SHAPE = 0.2  # ... and from every earlier shape's colour by this much
_PLACEMENT_TRIES = 50  # attempts to place one shape without hiding another


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _check_options(
    size: Any,
    min_shapes: Any,
    max_shapes: Any,
    min_scale: Any,
    max_scale: Any,
    min_visible_area: Any,
    min_visible_fraction: Any,
) -> tuple[int, int, int, float, float, int, float]:
    size = check_int(size, "size", minimum=MIN_SIZE)
    min_shapes = check_int(min_shapes, "min_shapes", minimum=0, maximum=MAX_SHAPES)
    max_shapes = check_int(max_shapes, "max_shapes", minimum=0, maximum=MAX_SHAPES)
    if min_shapes > max_shapes:
        raise ValueError(f"min_shapes ({min_shapes}) must be <= max_shapes ({max_shapes})")
    min_scale = check_number(min_scale, "min_scale", 0.0, 0.5, minimum_open=True, interval=True)
    max_scale = check_number(max_scale, "max_scale", 0.0, 0.5, minimum_open=True, interval=True)
    if min_scale > max_scale:
        raise ValueError(f"min_scale ({min_scale}) must be <= max_scale ({max_scale})")
    if round(min_scale * size) < 2:
        raise ValueError(
            f"min_scale * size must be at least 2 pixels so that shapes are recognisable, "
            f"got {min_scale} * {size} = {min_scale * size:g}"
        )
    min_visible_area = check_int(min_visible_area, "min_visible_area", minimum=1)
    min_visible_fraction = check_number(min_visible_fraction, "min_visible_fraction", 0.0, 1.0, interval=True)
    return size, min_shapes, max_shapes, min_scale, max_scale, min_visible_area, min_visible_fraction


def _as_generator(rng_or_seed: Any) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, bool) or not isinstance(rng_or_seed, numbers.Integral):
        raise TypeError(
            "rng_or_seed must be a numpy.random.Generator or a non-negative int seed, "
            f"got {type(rng_or_seed).__name__} {rng_or_seed!r}"
        )
    if rng_or_seed < 0:
        raise ValueError(f"rng_or_seed must be a non-negative int seed, got {rng_or_seed}")
    return np.random.default_rng(int(rng_or_seed))


# ----------------------------------------------------------------------------------------------
# rasterisation (integer arithmetic only)
# ----------------------------------------------------------------------------------------------
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel-centre coordinates ``(xs, ys)``, each ``int64[size, size]``."""
    ys, xs = np.mgrid[0:size, 0:size]
    return xs.astype(np.int64), ys.astype(np.int64)


def _circle(xs: np.ndarray, ys: np.ndarray, cx: int, cy: int, r: int) -> np.ndarray:
    """Pixels whose centre is within distance ``r`` of ``(cx, cy)``: ``bool[H, W]``."""
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def _square(xs: np.ndarray, ys: np.ndarray, cx: int, cy: int, a: int, b: int) -> np.ndarray:
    """A square centred on ``(cx, cy)`` with side vectors ``u = (a, b)`` and ``v = (-b, a)``.

    Side length ``sqrt(a² + b²)``; ``b = 0`` gives an axis-aligned square. Worked in doubled
    coordinates so that the corner ``2c - u - v`` is an integer: a pixel ``q`` is inside when
    ``0 <= (2q - corner)·u <= 2|u|²`` and the same for ``v``. Returns ``bool[H, W]``.
    """
    n2 = a * a + b * b
    dx = 2 * xs - (2 * cx - a + b)  # corner = 2c - (u + v) = (2cx - a + b, 2cy - b - a)
    dy = 2 * ys - (2 * cy - b - a)
    du = dx * a + dy * b
    dv = -dx * b + dy * a
    return (du >= 0) & (du <= 2 * n2) & (dv >= 0) & (dv <= 2 * n2)


def _triangle(xs: np.ndarray, ys: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Pixels whose centre is inside the triangle with integer ``vertices`` (``int64[3, 2]``, x, y)."""
    (x0, y0), (x1, y1), (x2, y2) = (tuple(int(c) for c in v) for v in vertices)
    sign = 1 if (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) > 0 else -1
    inside = np.ones(xs.shape, dtype=bool)
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y1)), ((x1, y1), (x2, y2)), ((x2, y2), (x0, y0))):
        edge = (bx - ax) * (ys - ay) - (by - ay) * (xs - ax)  # cross(b - a, q - a)
        inside &= sign * edge >= 0
    return inside


def _sample_shape(
    rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, size: int, r_min: int, r_max: int
) -> tuple[int, np.ndarray]:
    """Draw one shape: its label and its full in-image mask ``bool[H, W]``."""
    label = int(rng.integers(1, len(CLASSES)))
    radius = int(rng.integers(r_min, r_max + 1))  # half the shape's extent
    lo, hi = size // 10, size - 1 - size // 10  # centres stay away from the very edge
    cx, cy = (int(v) for v in rng.integers(lo, hi + 1, size=2))
    if label == 1:  # circle
        return label, _circle(xs, ys, cx, cy, radius)
    if label == 2:  # square, side ~ 2 * radius; axis-aligned half the time
        side_lo, side_hi = 2 * radius - max(1, radius // 4), 2 * radius
        if rng.random() < 0.5:
            return label, _square(xs, ys, cx, cy, side_hi, 0)
        while True:  # integer side vector with length in [side_lo, side_hi]: exact rotation
            a, b = (int(v) for v in rng.integers(-side_hi, side_hi + 1, size=2))
            if side_lo * side_lo <= a * a + b * b <= side_hi * side_hi:
                return label, _square(xs, ys, cx, cy, a, b)
    # triangle: integer vertices within radius of the centre, not too thin
    while True:
        offsets = rng.integers(-radius, radius + 1, size=(3, 2))
        (ax, ay), (bx, by), (qx, qy) = (tuple(int(c) for c in o) for o in offsets)
        twice_area = abs((bx - ax) * (qy - ay) - (by - ay) * (qx - ax))
        sides2 = [(bx - ax) ** 2 + (by - ay) ** 2, (qx - bx) ** 2 + (qy - by) ** 2,
                  (ax - qx) ** 2 + (ay - qy) ** 2]
        # area at least ~0.75 r² and no side shorter than r: no slivers
        if 4 * twice_area >= 3 * radius * radius * 2 and min(sides2) >= radius * radius:
            vertices = offsets + np.array([cx, cy], dtype=np.int64)
            return label, _triangle(xs, ys, vertices)


def _contrast(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-channel difference between two RGB colours."""
    return float(np.max(np.abs(a - b)))


def _sample_colour(rng: np.random.Generator, avoid_bg: list[np.ndarray], avoid_shapes: list[np.ndarray]) -> np.ndarray:
    colour = rng.random(3, dtype=np.float32)
    for _ in range(100):
        if all(_contrast(colour, c) >= _MIN_CONTRAST_BG for c in avoid_bg) and all(
            _contrast(colour, c) >= _MIN_CONTRAST_SHAPE for c in avoid_shapes
        ):
            break
        colour = rng.random(3, dtype=np.float32)
    return colour


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[np.ndarray], str]:
    """Draw a background: ``float32[H, W, 3]``, its reference colours, and its kind."""
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    base = rng.random(3, dtype=np.float32)
    image = np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    colours = [base]
    if kind == "gradient":
        other = rng.random(3, dtype=np.float32)
        wx, wy = (int(v) for v in rng.integers(0, 3, size=2))  # direction: horizontal/vertical/diagonal
        if wx == 0 and wy == 0:
            wx = 1
        xs, ys = _grid(size)
        t = ((wx * xs + wy * ys).astype(np.float32) / np.float32((wx + wy) * (size - 1)))[..., None]
        image = (base * (np.float32(1) - t) + other * t).astype(np.float32)
        colours.append(other)
    elif kind == "noise":
        noise = rng.random((size, size, 3), dtype=np.float32) * np.float32(2 * _NOISE) - np.float32(_NOISE)
        image = image + noise
    return image, colours, kind


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------
def make_image(
    rng_or_seed: np.random.Generator | int,
    size: int = 128,
    min_shapes: int = 1,
    max_shapes: int = 4,
    *,
    min_scale: float = 0.08,
    max_scale: float = 0.2,
    min_visible_area: int = 16,
    min_visible_fraction: float = 0.4,
    image_id: int = 0,
) -> tuple[Tensor, dict[str, Any]]:
    """Draw one synthetic image and its instance annotations.

    The number of shapes is drawn uniformly from ``min_shapes .. max_shapes``. Each shape is placed
    so that every shape already in the image keeps at least ``min_visible_area`` visible pixels and
    ``min_visible_fraction`` of its in-image area; a shape that cannot be placed that way in 50
    attempts is left out (vanishingly rare at the default sizes; the tests check that the count
    stays within bounds over hundreds of seeds).

    Args:
        rng_or_seed: a ``numpy.random.Generator`` (advanced in place) or a non-negative int seed.
        size: image side ``H = W`` in pixels, at least 32.
        min_shapes: fewest shapes per image (0 allows empty images), at most 20.
        max_shapes: most shapes per image, ``>= min_shapes``, at most 20.
        min_scale: smallest shape half-extent (circle radius, half a square's side) as a fraction
            of ``size``, in ``(0, 0.5]``; ``min_scale * size`` must be at least 2 pixels.
        max_scale: largest half-extent as a fraction of ``size``, ``>= min_scale``.
        min_visible_area: fewest visible pixels an occluded shape must keep.
        min_visible_fraction: smallest visible fraction of its in-image area an occluded shape
            must keep, in ``[0, 1]``.
        image_id: stored in ``target["image_id"]``.

    Returns:
        ``(image, target)``: ``image`` is ``Tensor[3, H, W]`` float32 in ``[0, 1]``; ``target`` holds
        ``boxes`` (``Tensor[N, 4]`` float32, ``(x1, y1, x2, y2)`` pixel edges: tight around the
        visible mask, ``x2`` = last column + 1), ``labels`` (``Tensor[N]`` int64 in ``1..3``),
        ``masks`` (``Tensor[N, H, W]`` uint8, 0/1, visible pixels only, disjoint), ``area``
        (``Tensor[N]`` float32, mask pixel counts), ``iscrowd`` (``Tensor[N]`` int64 zeros) and
        ``image_id`` (int). Instances are in painting order: a later one may cover an earlier one.

    Raises:
        TypeError / ValueError: for arguments of the wrong type or out of range.
    """
    size, min_shapes, max_shapes, min_scale, max_scale, min_visible_area, min_visible_fraction = _check_options(
        size, min_shapes, max_shapes, min_scale, max_scale, min_visible_area, min_visible_fraction
    )
    image_id = check_int(image_id, "image_id", minimum=0)
    rng = _as_generator(rng_or_seed)

    xs, ys = _grid(size)
    r_min = max(2, int(round(min_scale * size)))
    r_max = max(r_min, int(round(max_scale * size)))

    image, bg_colours, _ = _background(rng, size)
    n_shapes = int(rng.integers(min_shapes, max_shapes + 1))

    labels: list[int] = []
    full_areas: list[int] = []
    visible: list[np.ndarray] = []
    colours: list[np.ndarray] = []
    for _ in range(n_shapes):
        for _ in range(_PLACEMENT_TRIES):
            label, mask = _sample_shape(rng, xs, ys, size, r_min, r_max)
            area = int(mask.sum())
            if area < min_visible_area:
                continue
            covered = [v & ~mask for v in visible]
            if all(
                int(c.sum()) >= max(min_visible_area, min_visible_fraction * full)
                for c, full in zip(covered, full_areas)
            ):
                visible = covered + [mask]
                labels.append(label)
                full_areas.append(area)
                colours.append(_sample_colour(rng, bg_colours, colours))
                break

    for mask, colour in zip(visible, colours):
        image[mask] = colour
    image = np.clip(image, 0.0, 1.0).astype(np.float32)

    n = len(visible)
    masks = torch.from_numpy(np.stack(visible).astype(np.uint8)) if n else torch.zeros((0, size, size), dtype=torch.uint8)
    boxes = torch.zeros((n, 4), dtype=torch.float32)
    for i, m in enumerate(visible):
        cols = np.flatnonzero(m.any(axis=0))
        rows = np.flatnonzero(m.any(axis=1))
        boxes[i] = torch.tensor([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=torch.float32)
    target: dict[str, Any] = {
        "boxes": boxes,
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks,
        "area": masks.flatten(1).sum(1).to(torch.float32),
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "image_id": image_id,
    }
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), target


class ShapesDataset(torch.utils.data.Dataset):
    """``num_images`` seeded synthetic images with torchvision-style instance targets.

    Item ``i`` is ``make_image(numpy.random.default_rng([seed, i]), ..., image_id=i)``: the same
    on every machine and in any access order. Nothing is cached; an item takes a few milliseconds at the default size.

    Args:
        num_images: number of images, ``>= 0``.
        seed: non-negative int; data sets with different seeds share no random stream.
        size, min_shapes, max_shapes, min_scale, max_scale, min_visible_area,
        min_visible_fraction: passed to :func:`make_image` (checked here, at construction).
        transforms: optional callable ``(image, target) -> (image, target)`` applied to each item.

    Returns (``__getitem__``):
        ``(image Tensor[3, H, W] float32 in [0, 1], target dict)`` as documented in :func:`make_image`.
    """

    classes: tuple[str, ...] = CLASSES

    def __init__(
        self,
        num_images: int,
        seed: int = 0,
        size: int = 128,
        min_shapes: int = 1,
        max_shapes: int = 4,
        *,
        min_scale: float = 0.08,
        max_scale: float = 0.2,
        min_visible_area: int = 16,
        min_visible_fraction: float = 0.4,
        transforms: Any = None,
    ) -> None:
        self.num_images = check_int(num_images, "num_images", minimum=0)
        self.seed = check_int(seed, "seed", minimum=0)
        (self.size, self.min_shapes, self.max_shapes, self.min_scale, self.max_scale,
         self.min_visible_area, self.min_visible_fraction) = _check_options(
            size, min_shapes, max_shapes, min_scale, max_scale, min_visible_area, min_visible_fraction
        )
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable or None, got {type(transforms).__name__}")
        self.transforms = transforms

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an int, got {type(index).__name__} {index!r}")
        index = int(index)
        if index < 0:
            index += self.num_images
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for a data set of {self.num_images} images")
        image, target = make_image(
            np.random.default_rng([self.seed, index]),
            self.size,
            self.min_shapes,
            self.max_shapes,
            min_scale=self.min_scale,
            max_scale=self.max_scale,
            min_visible_area=self.min_visible_area,
            min_visible_fraction=self.min_visible_fraction,
            image_id=index,
        )
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (f"ShapesDataset(num_images={self.num_images}, seed={self.seed}, size={self.size}, "
                f"min_shapes={self.min_shapes}, max_shapes={self.max_shapes})")


def collate_fn(batch: Sequence[tuple[Tensor, dict[str, Any]]]) -> tuple[tuple[Any, ...], ...]:
    """Collate detection samples into ``(images, targets)`` tuples (images differ in size and N).

    Args:
        batch: a list of ``(image, target)`` pairs.

    Returns:
        ``((image_0, image_1, ...), (target_0, target_1, ...))``, as torchvision's detection
        references do; pass ``list(images)``, ``list(targets)`` to a torchvision detection model.
    """
    return tuple(zip(*batch))


def to_coco(dataset: Sequence[tuple[Tensor, dict[str, Any]]]) -> dict[str, Any]:
    """The ground truth of a data set in COCO "instances" format.

    Args:
        dataset: a :class:`ShapesDataset`, or any sized sequence of ``(image Tensor[3, H, W],
            target)`` pairs whose targets hold ``masks`` (``Tensor[N, H, W]``), ``labels``,
            ``iscrowd`` and ``image_id`` as :func:`make_image` returns them.

    Returns:
        A JSON-serialisable dict with ``images`` (``id``, ``width``, ``height``, ``file_name``),
        ``annotations`` (``id`` from 1, ``image_id``, ``category_id`` = label, ``segmentation`` as
        compressed RLE with ``counts`` a str, ``area`` = mask pixel count, ``bbox`` = ``[x, y, w, h]``
        pixel edges, ``iscrowd``) and ``categories`` (ids 1..3 named after :data:`CLASSES`).
        Load it with :func:`coco_api`.
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset must be a sized sequence of (image, target) pairs, got {type(dataset).__name__}")
    images, annotations = [], []
    seen_ids: set[int] = set()
    for i in range(len(dataset)):
        image, target = dataset[i]
        if not isinstance(target, dict) or "masks" not in target or "labels" not in target:
            raise TypeError(f"dataset[{i}] must be (image, target) with target['masks'] and target['labels']")
        image_id = int(target.get("image_id", i))
        if image_id in seen_ids:
            raise ValueError(f"dataset[{i}] repeats image_id {image_id}; COCO needs unique image ids")
        seen_ids.add(image_id)
        height, width = int(image.shape[-2]), int(image.shape[-1])
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:06d}.png"})
        masks = target["masks"].numpy()
        iscrowd = target.get("iscrowd", torch.zeros(len(masks), dtype=torch.int64))
        for mask, label, crowd in zip(masks, target["labels"].tolist(), iscrowd.tolist()):
            cols = np.flatnonzero(mask.any(axis=0))
            rows = np.flatnonzero(mask.any(axis=1))
            if len(cols) == 0:
                continue  # an empty mask is not an object
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(label),
                "segmentation": encode_rle(mask),
                "area": float(mask.sum()),
                "bbox": [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])],
                "iscrowd": int(crowd),
            })
    categories = [{"id": k, "name": name, "supercategory": "shape"} for k, name in enumerate(CLASSES) if k > 0]
    return {
        "info": {"description": "Mask R-CNN, Step by Step: synthetic shapes"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def coco_api(coco: dict[str, Any] | Sequence[tuple[Tensor, dict[str, Any]]]) -> Any:
    """A ``pycocotools.coco.COCO`` object for a COCO dict (or a data set, via :func:`to_coco`).

    pycocotools prints "creating index..." while it indexes; that chatter is swallowed here.

    Args:
        coco: a dict from :func:`to_coco` (or any COCO instances dict), or a data set.

    Returns:
        ``pycocotools.coco.COCO`` with its index built, ready for ``COCOeval`` or ``loadRes``.
    """
    from pycocotools.coco import COCO

    if not isinstance(coco, dict):
        coco = to_coco(coco)
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"coco must hold 'images', 'annotations' and 'categories'; '{key}' is missing")
    api = COCO()
    api.dataset = coco
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def _check_target(target: Any, height: Any, width: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(target, dict) or "masks" not in target or "labels" not in target:
        raise TypeError("target must be a dict with 'masks' (Tensor[N, H, W]) and 'labels' (Tensor[N])")
    height = check_int(height, "H", minimum=1)
    width = check_int(width, "W", minimum=1)
    masks, labels = target["masks"], target["labels"]
    if masks.dim() != 3 or tuple(masks.shape[1:]) != (height, width):
        raise ValueError(f"target['masks'] must be Tensor[N, {height}, {width}], got shape {tuple(masks.shape)}")
    if labels.shape != (masks.shape[0],):
        raise ValueError(f"target['labels'] must be Tensor[{masks.shape[0]}], got shape {tuple(labels.shape)}")
    return masks.bool(), labels


def semantic_map(target: dict[str, Any], H: int, W: int) -> Tensor:
    """The semantic label map of a target: each pixel holds its class, 0 for background.

    Two objects of the same class get the same value: semantic segmentation cannot tell them apart.

    Args:
        target: a dict with ``masks`` (``Tensor[N, H, W]``, 0/1) and ``labels`` (``Tensor[N]``).
        H, W: the image height and width.

    Returns:
        ``Tensor[H, W]`` int64; where masks overlap, the later instance wins (painting order).
    """
    masks, labels = _check_target(target, H, W)
    out = torch.zeros((H, W), dtype=torch.int64)
    for mask, label in zip(masks, labels):
        out[mask] = int(label)
    return out


def instance_map(target: dict[str, Any], H: int, W: int) -> Tensor:
    """The instance id map of a target: pixel value ``i + 1`` for instance ``i``, 0 for background.

    Args:
        target: a dict with ``masks`` (``Tensor[N, H, W]``, 0/1) and ``labels`` (``Tensor[N]``).
        H, W: the image height and width.

    Returns:
        ``Tensor[H, W]`` int64; where masks overlap, the later instance wins (painting order).
    """
    masks, _ = _check_target(target, H, W)
    out = torch.zeros((H, W), dtype=torch.int64)
    for i, mask in enumerate(masks):
        out[mask] = i + 1
    return out

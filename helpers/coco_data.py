"""Instance-segmentation data in COCO format: a folder of images plus an ``instances`` JSON file.

This is what annotation tools export (CVAT's "COCO 1.0", labelme via ``labelme2coco``, Roboflow...),
so it is the way to train the series' Mask R-CNN on your own pictures::

    python -m helpers.train --coco-images my_data/images --coco-json my_data/annotations.json

:class:`CocoInstanceDataset` reads such a folder and returns exactly what
:class:`helpers.shapes.ShapesDataset` returns: ``(image Tensor[3, H, W] float in [0, 1], target)``
with ``boxes`` (``Tensor[N, 4]`` float, ``(x1, y1, x2, y2)`` pixel edges), ``labels`` (``Tensor[N]``
int64, ``1..K``), ``masks`` (``Tensor[N, H, W]`` uint8), ``area``, ``iscrowd`` and ``image_id`` (the
COCO image id). As in torchvision's detection reference (``coco_utils.ConvertCocoPolysToMask``),
crowd annotations (``iscrowd = 1``) and boxes without width or height are left out of the targets.

COCO category ids can be anything (1, 3, 17...); the model wants labels ``1..K``. Labels are given in
the order of increasing category id, and :attr:`CocoInstanceDataset.label_to_category` maps them back
for evaluation. Segmentations may be polygons, uncompressed RLE or compressed RLE (pycocotools
decodes all three).

:func:`export_coco` goes the other way: it writes any shapes-style data set as PNG images plus an
instances JSON, which is how the tests build a tiny COCO-format set.

Written for notebook 09 and ``helpers.train``.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["CocoInstanceDataset", "export_coco", "read_image", "write_image"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path) -> Tensor:
    """Read an image file as ``Tensor[3, H, W]`` float32 in ``[0, 1]`` (grey and RGBA become RGB).

    The EXIF orientation tag is applied (``PIL.ImageOps.exif_transpose``): a phone photo stored sideways
    with "rotate 90" in its EXIF comes out upright, as image viewers and annotation tools (CVAT, labelme)
    show it, so that the annotations drawn on it line up. Uses Pillow when installed, else matplotlib
    (PNG only, no EXIF).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an image Pillow can read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib's usual installs
        import matplotlib.image as mpimg

        array = np.asarray(mpimg.imread(path), dtype=np.float32)
        if array.max() > 1.0:
            array = array / 255.0
    else:
        from PIL import ImageOps, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                array = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.float32) / 255.0
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"image file {path} cannot be read as an image: {exc}") from None
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    array = array[..., :3]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def write_image(image: Tensor, path: str | Path) -> Path:
    """Write ``Tensor[3, H, W]`` float in ``[0, 1]`` as an 8-bit PNG (lossless, so reading it back gives
    the image rounded to multiples of 1/255)."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be Tensor[3, H, W], got {getattr(image, 'shape', type(image).__name__)}")
    path = Path(path)
    array = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        import matplotlib.image as mpimg

        mpimg.imsave(path, array)
    else:
        Image.fromarray(array).save(path)
    return path


class CocoInstanceDataset(torch.utils.data.Dataset):
    """A COCO-format instance-segmentation folder as a torchvision-style detection data set.

    Args:
        images_dir: the folder holding the image files; each image's ``file_name`` is relative to it.
        annotation_file: the COCO instances JSON (``images``, ``annotations``, ``categories``).
        transforms: optional callable ``(image, target) -> (image, target)``.
        image_ids: optional subset of COCO image ids to use (in that order); default: all images,
            sorted by id.

    Attributes:
        coco: the ``pycocotools.coco.COCO`` index of the whole file (the evaluation ground truth).
        categories: the COCO category dicts, sorted by id.
        classes: ``("background", name of label 1, ...)``, like ``helpers.shapes.CLASSES``.
        label_to_category / category_to_label: the label <-> COCO category id maps.
        image_ids: the COCO image id of each item.

    Raises:
        FileNotFoundError: the folder, the JSON or a listed image file is missing.
        ValueError: the JSON lacks ``images``/``annotations``/``categories``, has no categories, or an
            annotation names an unknown image or category.
    """

    def __init__(self, images_dir: str | Path, annotation_file: str | Path,
                 transforms: Callable[[Tensor, dict[str, Any]], tuple[Tensor, dict[str, Any]]] | None = None,
                 image_ids: Sequence[int] | None = None) -> None:
        from pycocotools.coco import COCO

        self.images_dir = Path(images_dir)
        self.annotation_file = Path(annotation_file)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"images_dir {self.images_dir} is not a folder")
        if not self.annotation_file.is_file():
            raise FileNotFoundError(f"annotation_file {self.annotation_file} does not exist")
        try:
            data = json.loads(self.annotation_file.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"annotation_file {self.annotation_file} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"annotation_file must hold a JSON object, got {type(data).__name__}")
        missing = [k for k in ("images", "annotations", "categories") if k not in data]
        if missing:
            raise ValueError(f"annotation_file must hold 'images', 'annotations' and 'categories' "
                             f"(COCO instances format); missing {missing}")
        if not data["categories"]:
            raise ValueError("annotation_file lists no categories")
        known_images = {int(im["id"]) for im in data["images"]}
        known_categories = {int(c["id"]) for c in data["categories"]}
        for ann in data["annotations"]:
            if int(ann["image_id"]) not in known_images:
                raise ValueError(f"annotation {ann.get('id')} names image_id {ann['image_id']}, "
                                 f"which is not in 'images'")
            if int(ann["category_id"]) not in known_categories:
                raise ValueError(f"annotation {ann.get('id')} names category_id {ann['category_id']}, "
                                 f"which is not in 'categories'")
        if transforms is not None and not callable(transforms):
            raise TypeError(f"transforms must be callable or None, got {type(transforms).__name__}")
        self.transforms = transforms
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()
        self.categories = sorted(data["categories"], key=lambda c: int(c["id"]))
        self.label_to_category = {i + 1: int(c["id"]) for i, c in enumerate(self.categories)}
        self.category_to_label = {v: k for k, v in self.label_to_category.items()}
        self.classes = ("background", *(str(c["name"]) for c in self.categories))
        if image_ids is None:
            self.image_ids = sorted(known_images)
        else:
            self.image_ids = [int(i) for i in image_ids]
            unknown = sorted(set(self.image_ids) - known_images)
            if unknown:
                raise ValueError(f"image_ids {unknown[:5]} are not in the annotation file")
        absent = [self.coco.imgs[i]["file_name"] for i in self.image_ids
                  if not (self.images_dir / self.coco.imgs[i]["file_name"]).is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} image file(s) listed in {self.annotation_file.name} are "
                                    f"missing from {self.images_dir}, e.g. {absent[:3]}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, image_ids: Sequence[int]) -> "CocoInstanceDataset":
        """The same folder restricted to ``image_ids`` (shares the JSON, re-reads nothing else)."""
        return CocoInstanceDataset(self.images_dir, self.annotation_file, self.transforms, image_ids)

    def coco_subset(self) -> dict[str, Any]:
        """The COCO dict restricted to this data set's images (the ground truth to evaluate against)."""
        ids = set(self.image_ids)
        data = self.coco.dataset
        return {
            "images": [im for im in data["images"] if int(im["id"]) in ids],
            "annotations": [a for a in data["annotations"] if int(a["image_id"]) in ids],
            "categories": list(data["categories"]),
        }

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} images")
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        image = read_image(self.images_dir / info["file_name"])
        height, width = int(image.shape[1]), int(image.shape[2])
        if (int(info.get("height", height)), int(info.get("width", width))) != (height, width):
            raise ValueError(f"image {info['file_name']} is {height}x{width} but the JSON says "
                             f"{info.get('height')}x{info.get('width')}")
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes, labels, masks, areas = [], [], [], []
        for ann in anns:
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(width), x + w), min(float(height), y + h)
            if x2 <= x1 or y2 <= y1:
                continue  # a box without width or height cannot be regressed
            mask = self._mask(ann, height, width)
            boxes.append([x1, y1, x2, y2])
            labels.append(self.category_to_label[int(ann["category_id"])])
            masks.append(mask.astype(np.uint8))
            areas.append(float(ann.get("area", mask.sum())))
        n = len(boxes)
        target: dict[str, Any] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(n, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(np.stack(masks)) if n else torch.zeros((0, height, width), dtype=torch.uint8),
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.zeros(n, dtype=torch.int64),
            "image_id": int(image_id),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _mask(self, ann: Mapping[str, Any], height: int, width: int) -> np.ndarray:
        """The annotation's mask ``uint8[H, W]`` (polygons and RLE decoded by pycocotools)."""
        seg = ann.get("segmentation")
        if not seg:
            return np.zeros((height, width), np.uint8)
        if isinstance(seg, Mapping):  # RLE: pycocotools would leave the pixels past short counts undefined
            where = f"annotation {ann.get('id')} (image {ann.get('image_id')})"
            size = [int(v) for v in seg.get("size", ())]
            if size != [height, width]:
                raise ValueError(f"{where}: RLE size {seg.get('size')} differs from the image's [height, width] "
                                 f"= [{height}, {width}]")
            counts = seg.get("counts")
            if isinstance(counts, (list, tuple)) and sum(int(c) for c in counts) != height * width:
                raise ValueError(f"{where}: uncompressed RLE counts sum to {sum(int(c) for c in counts)}, but "
                                 f"must sum to height * width = {height * width} (every pixel, column by column, "
                                 f"starting with a run of 0s)")
        with warnings.catch_warnings():  # pycocotools 2.0.x's decode trips numpy 2's __array__ deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            return np.ascontiguousarray(self.coco.annToMask(ann))

    def __repr__(self) -> str:
        return (f"CocoInstanceDataset({len(self)} images, {len(self.categories)} categories "
                f"{list(self.classes[1:])})")


def export_coco(dataset: Sequence[tuple[Tensor, Mapping[str, Any]]], folder: str | Path,
                json_name: str = "instances.json", classes: Sequence[str] | None = None) -> tuple[Path, Path]:
    """Write a shapes-style data set as a COCO-format folder: ``folder/images/*.png`` + ``folder/<json_name>``.

    Args:
        dataset: sized sequence of ``(image Tensor[3, H, W] in [0, 1], target)`` with ``masks``,
            ``labels``, ``iscrowd`` and a unique ``image_id`` (a :class:`helpers.shapes.ShapesDataset`).
        folder: where to write (created).
        json_name: the annotation file's name.
        classes: class names with the background first (default: ``helpers.shapes.CLASSES``).

    Returns:
        ``(images_dir, json_path)``, ready for :class:`CocoInstanceDataset`.
    """
    from helpers.shapes import CLASSES, to_coco

    folder = Path(folder)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    coco = to_coco(dataset)
    if classes is not None:
        if len(classes) < 2:
            raise ValueError("classes must name the background and at least one class")
        coco["categories"] = [{"id": k, "name": str(n), "supercategory": "object"}
                              for k, n in enumerate(classes) if k > 0]
    elif len(coco["categories"]) != len(CLASSES) - 1:  # pragma: no cover - guards a future change
        raise ValueError("helpers.shapes.to_coco returned unexpected categories")
    for i, entry in enumerate(coco["images"]):
        write_image(dataset[i][0], images_dir / entry["file_name"])
    json_path = folder / json_name
    json_path.write_text(json.dumps(coco))
    return images_dir, json_path

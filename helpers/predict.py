"""Run a trained Mask R-CNN on your own images: overlays (boxes, classes, masks) and a COCO results JSON.

Usage::

    python -m helpers.predict runs/my-run photos/ --out predictions/
    python -m helpers.predict data/shapes_maskrcnn.pt a.png b.jpg --out /tmp/pred --score-thresh 0.7

``RUN_OR_CHECKPOINT`` is a run folder of ``python -m helpers.train`` (its ``model.pt``) or a checkpoint file;
``IMAGES`` are image files or folders of them (``.png``, ``.jpg``... sorted by name; EXIF orientation applied,
as in training). ``--out`` receives, per image, ``<name>.png``: the image with each detection at or above
``--score-thresh`` drawn in its class's colour (mask tinted and outlined, box, "class score"), and, for all
images:

- ``results.json``: every detection as a COCO result (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
  ``segmentation`` as compressed RLE of the mask thresholded at 0.5, ``score``), the category ids being the
  training JSON's (the shapes' labels 1-3 otherwise);
- ``images.json``: the COCO ``images`` list (``id``, ``file_name`` as given on the command line, ``height``,
  ``width``) and ``categories``, so that ``results.json`` can be scored or loaded with pycocotools.

It refuses to write into a non-empty ``--out`` without ``--overwrite``, and stops with a clear message, before
writing anything, when a file is missing or is not an image.

Written for notebook 09.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from helpers.coco_data import read_image
from helpers.evaluate import to_coco_results

__all__ = ["load_model", "find_images", "draw_overlay", "predict_images", "build_parser", "main", "PALETTE"]

PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167))
"""Okabe-Ito's colour-blind-safe colours (black left out); class ``k`` gets ``PALETTE[(k - 1) % 7]``."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""The file endings a folder's images are picked by."""


def load_model(run_or_checkpoint: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model of a run folder (``model.pt`` in it) or of a checkpoint file, in eval mode on ``device``.

    Returns:
        ``(model, extra)``: ``extra`` holds at least ``classes`` (background first) and ``label_to_category``.

    Raises:
        FileNotFoundError: no such folder/file, or a folder without ``model.pt``.
    """
    from helpers.train import load_trained

    path = Path(run_or_checkpoint)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"run_or_checkpoint: no checkpoint at {path} (give a run folder holding model.pt, "
                                "or a .pt file written by python -m helpers.train)")
    model, checkpoint = load_trained(path, map_location=device)
    extra = dict(checkpoint.get("extra", {}))
    if "classes" not in extra:
        from helpers.shapes import CLASSES

        extra["classes"] = list(CLASSES)
    extra.setdefault("label_to_category", {})
    return model, extra


def find_images(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``paths`` (files, or folders: their image files sorted by name).

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no image file.
        ValueError: no paths, or a file is not an image Pillow can open.
    """
    from PIL import Image, UnidentifiedImageError

    if not paths:
        raise ValueError("images: give at least one image file or folder")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"images: folder {p} holds no image file ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"images: {p} does not exist")
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"images: {f} is not an image Pillow can read ({exc})") from None
    return files


def draw_overlay(image: Tensor, output: dict[str, Tensor], classes: Sequence[str], score_thresh: float = 0.5,
                 alpha: float = 0.45) -> Any:
    """The image with the detections scoring ``>= score_thresh`` drawn on it, as a ``PIL.Image``.

    Each detection in its class's :data:`PALETTE` colour: the mask (probability ``> 0.5``) tinted with
    ``alpha`` and outlined, the box, and ``"class 0.93"`` above the box (inside the image).
    """
    from PIL import Image, ImageDraw

    rgb = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.float32)  # [H, W, 3]
    keep = (output["scores"] >= score_thresh).nonzero().flatten().tolist()
    for i in keep:
        colour = np.array(PALETTE[(int(output["labels"][i]) - 1) % len(PALETTE)], np.float32)
        if "masks" in output:
            m = output["masks"][i, 0].cpu().numpy() > 0.5  # [H, W]
            rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            rgb[edge] = colour
    picture = Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for i in keep:
        colour = PALETTE[(int(output["labels"][i]) - 1) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in output["boxes"][i])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        label = int(output["labels"][i])
        name = classes[label] if 0 <= label < len(classes) else str(label)
        text = f"{name} {float(output['scores'][i]):.2f}"
        ty = y1 - 11 if y1 >= 11 else y1 + 1
        tw = draw.textlength(text)
        draw.rectangle([x1, ty, x1 + tw + 2, ty + 10], fill=colour)
        draw.text((x1 + 1, ty - 1), text, fill=(0, 0, 0))
    return picture


def predict_images(run_or_checkpoint: str | Path, images: Sequence[str | Path], out: str | Path,
                   score_thresh: float = 0.5, overwrite: bool = False, device: str = "auto",
                   progress: bool = True) -> dict[str, Any]:
    """What ``python -m helpers.predict`` does; returns ``{"images", "results", "overlays"}``.

    Raises:
        FileExistsError: ``out`` is a non-empty folder and ``overwrite`` is off (nothing is written).
        FileNotFoundError / ValueError: see :func:`load_model` and :func:`find_images`.
    """
    from helpers.checks import check_number

    score_thresh = check_number(score_thresh, "score_thresh", 0.0, 1.0, interval=True)
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out: {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"out: {out} is not empty; pass --overwrite to write into it anyway")
    files = find_images(images)
    dev = torch.device("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    if device == "cuda" and dev.type != "cuda":
        raise ValueError("device='cuda' was asked for but torch.cuda.is_available() is False")
    model, extra = load_model(run_or_checkpoint, dev)
    classes = list(extra["classes"])
    label_to_category = {int(k): int(v) for k, v in extra["label_to_category"].items()} or None
    out.mkdir(parents=True, exist_ok=True)
    entries, results, overlays, names = [], {"bbox": [], "segm": []}, [], set()
    iterator: Any = enumerate(files, start=1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(files), desc="predict", unit="image", file=sys.stderr)
    with torch.no_grad():
        for image_id, f in iterator:
            image = read_image(f)
            output = {k: v.cpu() for k, v in model([image.to(dev)])[0].items()}
            one = to_coco_results([output], [image_id], label_to_category)
            results["bbox"].extend(one["bbox"])
            results["segm"].extend(one["segm"])
            name, k = f.stem, 1
            while name in names:
                name, k = f"{f.stem}_{k}", k + 1
            names.add(name)
            overlay = out / f"{name}.png"
            draw_overlay(image, output, classes, score_thresh).save(overlay)
            overlays.append(overlay)
            entries.append({"id": image_id, "file_name": str(f), "height": int(image.shape[1]),
                            "width": int(image.shape[2])})
    merged = []
    for bbox, segm in zip(results["bbox"], results["segm"] or [None] * len(results["bbox"])):
        merged.append({**bbox, **({"segmentation": segm["segmentation"]} if segm else {})})
    categories = [{"id": (label_to_category or {}).get(k, k), "name": n} for k, n in enumerate(classes) if k > 0]
    (out / "results.json").write_text(json.dumps(merged) + "\n")
    (out / "images.json").write_text(json.dumps({"images": entries, "categories": categories}, indent=1) + "\n")
    return {"images": entries, "results": merged, "overlays": overlays}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m helpers.predict`` argument parser."""
    p = argparse.ArgumentParser(prog="python -m helpers.predict",
                                description="Run a trained model on images: overlays and a COCO results JSON.")
    p.add_argument("run_or_checkpoint", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder of python -m helpers.train (its model.pt) or a checkpoint file")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders of images")
    p.add_argument("--out", required=True, help="output folder (overlays, results.json, images.json)")
    p.add_argument("--score-thresh", type=float, default=0.5,
                   help="draw detections scoring at least this (default %(default)s; results.json keeps all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default %(default)s")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m helpers.predict``."""
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        done = predict_images(a.run_or_checkpoint, a.images, a.out, a.score_thresh, a.overwrite, a.device, a.progress)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    n = len(done["results"])
    print(f"{len(done['images'])} images, {n} detections: overlays and results.json in {a.out}")
    return done


if __name__ == "__main__":
    main()

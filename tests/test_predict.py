"""Tests for ``python -m helpers.predict``: overlays and a COCO results JSON from a run or a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.coco_data import export_coco
from helpers.evaluate import coco_evaluate, predict, to_coco_results
from helpers.model import load_checkpoint
from helpers.predict import PALETTE, draw_overlay, main, predict_images
from helpers.project import SHAPES_CHECKPOINT
from helpers.shapes import ShapesDataset, to_coco


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = ShapesDataset(3, seed=77)
    images_dir, json_path = export_coco(data, tmp_path_factory.mktemp("pred") / "set")
    return data, images_dir, json_path


def test_predict_writes_overlays_and_coco_results(folder, tmp_path, capsys):
    data, images_dir, json_path = folder
    done = main([str(SHAPES_CHECKPOINT), str(images_dir), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "predict: 100%" in err  # the tqdm bar
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    stems = sorted(p.stem for p in images_dir.iterdir())
    assert files == sorted([*(s + ".png" for s in stems), "results.json", "images.json"])
    for s in stems:
        assert Image.open(tmp_path / "out" / f"{s}.png").size == (128, 128)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    meta = json.loads((tmp_path / "out" / "images.json").read_text())
    assert [c["name"] for c in meta["categories"]] == ["circle", "square", "triangle"]
    # the JSON scores as the in-memory evaluation of the same model does (ids mapped file by file)
    model, _ = load_checkpoint(SHAPES_CHECKPOINT)
    reference = coco_evaluate(to_coco(data), to_coco_results(predict(model, data), [int(t["image_id"]) for _, t in data]))
    coco = json.loads(json_path.read_text())
    by_name = {im["file_name"]: im["id"] for im in coco["images"]}
    ids = {e["id"]: by_name[e["file_name"].split("/")[-1]] for e in meta["images"]}
    remapped = [{**r, "image_id": ids[r["image_id"]]} for r in results]
    scored = coco_evaluate(coco, {"bbox": [{k: v for k, v in r.items() if k != "segmentation"} for r in remapped],
                                  "segm": [{k: v for k, v in r.items() if k != "bbox"} for r in remapped]})
    for kind in ("segm", "bbox"):
        assert scored[kind]["AP"] == pytest.approx(reference[kind]["AP"], abs=1e-9)
    assert len(done["results"]) == len(results) > 0


def test_overlay_draws_masks_in_their_class_colour():
    image = torch.zeros(3, 40, 50)
    masks = torch.zeros(2, 1, 40, 50)
    masks[0, 0, 10:30, 5:20] = 0.9
    masks[1, 0, 5:15, 30:45] = 0.9
    out = {"boxes": torch.tensor([[5.0, 10, 20, 30], [30, 5, 45, 15]]), "labels": torch.tensor([1, 2]),
           "scores": torch.tensor([0.9, 0.3]), "masks": masks}
    pic = np.asarray(draw_overlay(image, out, ["bg", "a", "b"], score_thresh=0.5, alpha=0.5))
    assert tuple(pic[25, 15]) == tuple(round(0.5 * c) for c in PALETTE[0])  # inside mask 0: half its colour
    assert tuple(pic[10, 37]) == (0, 0, 0)  # the 0.3 detection is below the threshold: not drawn


def test_predict_errors(folder, tmp_path, capsys):
    _, images_dir, _ = folder
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_images(SHAPES_CHECKPOINT, [tmp_path / "missing.png"], tmp_path / "o1")
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg is not an image"):
        predict_images(SHAPES_CHECKPOINT, [tmp_path / "bad.jpg"], tmp_path / "o2")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        predict_images(tmp_path / "norun", [images_dir], tmp_path / "o3")
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))  # nothing written
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main([str(SHAPES_CHECKPOINT), str(images_dir), "--out", str(tmp_path / "full"), "--no-progress"])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    main([str(SHAPES_CHECKPOINT), str(images_dir), "--out", str(tmp_path / "full"), "--no-progress", "--overwrite"])
    assert (tmp_path / "full" / "results.json").is_file() and (tmp_path / "full" / "keep.txt").read_text() == "mine"

"""Tests for helpers.train (the training entry point), helpers.evaluate (COCOeval) and helpers.coco_data.

The training tests use a tiny model and a few steps: they prove that the entry point runs, the loss
falls, the files it writes load, and a COCO-format folder trains; they do not reach a useful AP
(the shipped checkpoint does, and the last tests re-evaluate it against its own log).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.coco_data import CocoInstanceDataset, export_coco, read_image, write_image
from helpers.evaluate import (METRIC_NAMES, average_precision, coco_evaluate, evaluate, format_metrics_table,
                              iou_matrix, match_detections, predict, to_coco_results)
from helpers.model import load_checkpoint
from helpers.project import ROOT, SHAPES_CHECKPOINT, SHAPES_TRAIN_LOG
from helpers.shapes import ShapesDataset, to_coco
from helpers.train import (DEFAULT_COMMAND, SHIPPED_COMMAND, LOSS_NAMES, is_shipped_command, TrainConfig, batch_indices, build_data, build_parser, fit, lr_factor, main,
                           output_path, parse_args, repo_relative, train)

TINY_MODEL = dict(widths=[8, 16, 32, 64], stem_channels=8, fpn_channels=16, representation_size=32,
                  mask_layers=[16], mask_dim_reduced=16, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100,
                  box_batch_size_per_image=32)
TINY_ARGS = ["--widths", "8,16,32,64", "--model-json", json.dumps({k: v for k, v in TINY_MODEL.items() if k != "widths"})]


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path, monkeypatch):
    """Every run folder (``runs/<name>/``, relative to the current folder) lands in the test's tmp_path."""
    monkeypatch.chdir(tmp_path)


# -- training ---------------------------------------------------------------------------------------
def test_a_few_steps_make_the_loss_fall_and_write_loadable_files(tmp_path):
    cfg = TrainConfig(steps=30, batch_size=2, lr=3e-3, warmup_steps=5, val_images=4, eval_subset=2, progress=False,
                      threads=1, checkpoint=str(tmp_path / "m.pt"), log=str(tmp_path / "log.json"))
    log = train(cfg, TINY_MODEL, command="test")
    losses = [row["loss"] for row in log["steps"]]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6]), (losses[:6], losses[-6:])
    for row in log["steps"]:  # the total is the sum of the five logged terms (each rounded to 5 decimals)
        assert abs(row["loss"] - sum(row[k] for k in LOSS_NAMES)) < 1e-4
    on_disk = json.loads((tmp_path / "log.json").read_text())
    assert on_disk["command"] == "test" and on_disk["steps_done"] == 30 and on_disk["threads"] == 1
    assert set(on_disk["metrics"]) == {"segm", "bbox"} and set(on_disk["metrics"]["segm"]) == set(METRIC_NAMES)
    for key in ("train_wall_s", "train_cpu_s", "eval_wall_s", "machine", "loadavg_start", "model_config"):
        assert key in on_disk
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["config"]["widths"] == [8, 16, 32, 64] and raw["extra"]["steps_done"] == 30
    model, _ = load_checkpoint(tmp_path / "m.pt")
    val = ShapesDataset(4, seed=cfg.val_seed)
    with torch.no_grad():
        out = model([val[0][0]])[0]
    assert out["masks"].shape[1:] == (1, 128, 128)
    # the logged metrics are what a fresh evaluation of the saved model gives
    metrics = evaluate(model, val)
    for kind in ("segm", "bbox"):
        assert metrics[kind]["AP"] == pytest.approx(log["metrics"][kind]["AP"], abs=1e-6)


def test_same_seed_same_losses():
    cfg = TrainConfig(steps=3, batch_size=2, val_images=1, eval_subset=0, progress=False, threads=1)
    a = train(cfg, TINY_MODEL, write=False)
    b = train(cfg, TINY_MODEL, write=False)
    assert [r["loss"] for r in a["steps"]] == [r["loss"] for r in b["steps"]]


def test_impl_series_trains_the_same_run_as_torchvision(tmp_path):
    """``--impl series`` trains the series' own model: same seed, same first losses as torchvision's
    assembly (relative 1e-4), the choice recorded in the log and the checkpoint, and the checkpoint
    loads into either model."""
    from helpers.maskrcnn import SeriesMaskRCNN
    from helpers.train import main

    cfg = TrainConfig(steps=2, batch_size=2, val_images=2, eval_subset=0, progress=False, threads=1)
    reference = train(cfg, TINY_MODEL, write=False, impl="torchvision")
    args = ["--steps", "2", "--batch-size", "2", "--val-images", "2", "--eval-subset", "0", "--no-progress",
            "--threads", "1", "--checkpoint", str(tmp_path / "m.pt"), "--log", str(tmp_path / "log.json"), *TINY_ARGS]
    series = main(["--impl", "series", *args])
    assert series["impl"] == "series" and reference["impl"] == "torchvision"
    for a, b in zip(reference["steps"], series["steps"]):
        for key in LOSS_NAMES:
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (key, a, b)
    assert torch.load(tmp_path / "m.pt", weights_only=True)["extra"]["impl"] == "series"
    assert json.loads((tmp_path / "log.json").read_text())["impl"] == "series"
    assert isinstance(load_checkpoint(tmp_path / "m.pt", impl="series")[0], SeriesMaskRCNN)
    load_checkpoint(tmp_path / "m.pt", impl="torchvision")  # the same file, strict, into the other model
    with pytest.raises(ValueError, match="impl"):
        train(cfg, TINY_MODEL, write=False, impl="detectron")


def test_the_command_line_trains_the_series_model_by_default():
    from helpers.train import build_parser

    assert build_parser().parse_args([]).impl == "series"
    assert build_parser().parse_args(["--impl", "torchvision"]).impl == "torchvision"


def test_fit_is_the_loop_of_train():
    """fit() on build_data()'s data and a freshly seeded model gives train()'s losses, and writes nothing."""
    from helpers.model import build_model
    from helpers.train import seed_everything

    cfg = TrainConfig(steps=3, batch_size=2, val_images=2, eval_subset=1, progress=False, threads=1)
    log = train(cfg, TINY_MODEL, write=False)
    torch.set_num_threads(1)
    seed_everything(cfg.seed)
    data = build_data(cfg)
    model, fitted = fit(build_model({**TINY_MODEL, "num_classes": len(data.classes)}), data, cfg)
    assert [r["loss"] for r in fitted["steps"]] == [r["loss"] for r in log["steps"]]
    assert fitted["steps_done"] == 3 and not fitted["stopped_early"] and model.training
    assert len(data.subset) == 1 and len(data.subset_coco["images"]) == 1


def test_schedule_and_batch_order():
    assert lr_factor(0, 10, 100) == pytest.approx(0.01) and lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
    fresh = list(batch_indices(TrainConfig(steps=3, batch_size=2), 6))
    assert fresh == [[0, 1], [2, 3], [4, 5]]
    cycled = list(batch_indices(TrainConfig(steps=3, batch_size=2, train_images=3), 3))
    flat = [i for b in cycled for i in b]
    assert sorted(flat[:3]) == sorted(flat[3:]) == [0, 1, 2]  # two whole epochs, each in its own order


def test_every_config_field_is_one_command_line_option():
    from dataclasses import fields

    help_text = build_parser().format_help()
    for f in fields(TrainConfig):
        flag = "--no-progress" if f.name == "progress" else "--" + f.name.replace("_", "-")
        assert flag in help_text, flag
        assert f.metadata["help"], f.name
    assert "(default runs)" in " ".join(help_text.split())  # the visible default
    cfg, _ = parse_args(["--steps", "7", "--lr", "0.01", "--train-images", "5", "--device", "cpu", "--no-progress",
                         "--time-limit", "2.5", "--coco-images", "a", "--coco-json", "b", "--log", "x.json"])
    assert cfg == TrainConfig(steps=7, lr=0.01, train_images=5, device="cpu", progress=False, time_limit=2.5,
                              coco_images="a", coco_json="b", log="x.json")
    assert "Attributes:" in TrainConfig.__doc__ and "batch_size: images per step." in TrainConfig.__doc__


def test_output_paths():
    assert TrainConfig().checkpoint is None and TrainConfig().log is None  # default: the run's own folder
    assert output_path("data/shapes_maskrcnn.pt", SHAPES_CHECKPOINT) == SHAPES_CHECKPOINT  # from any folder
    assert output_path("data/shapes_train_log.json", SHAPES_TRAIN_LOG) == SHAPES_TRAIN_LOG
    assert output_path("m.pt", SHAPES_CHECKPOINT) == ROOT.cwd() / "m.pt"
    assert output_path("/tmp/m.pt", SHAPES_CHECKPOINT).as_posix() == "/tmp/m.pt"
    assert repo_relative("/elsewhere/m.pt") == "/elsewhere/m.pt"


def test_command_line_entry_point_runs_as_a_module(tmp_path):
    args = [sys.executable, "-m", "helpers.train", "--steps", "2", "--batch-size", "2", "--val-images", "2",
            "--eval-subset", "1", "--threads", "1", "--checkpoint", str(tmp_path / "c.pt"), "--log", str(tmp_path / "c.json"),
            "--runs-dir", str(tmp_path / "runs"), *TINY_ARGS]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train: 100%" in done.stderr  # the tqdm bar
    assert "segm" in done.stdout and "bbox" in done.stdout  # the metrics table
    log = json.loads((tmp_path / "c.json").read_text())
    assert log["command"].startswith("python -m helpers.train --steps 2 --batch-size 2")
    assert (tmp_path / "c.pt").is_file()


def test_coco_format_folder_trains(tmp_path):
    images_dir, json_path = export_coco(ShapesDataset(6, seed=5), tmp_path / "mydata")
    log = main(["--coco-images", str(images_dir), "--coco-json", str(json_path), "--steps", "3", "--batch-size", "2",
                "--val-fraction", "0.34", "--no-progress", "--threads", "1", "--checkpoint", str(tmp_path / "k.pt"),
                "--log", str(tmp_path / "k.json"), *TINY_ARGS])
    assert log["classes"] == ["background", "circle", "square", "triangle"]
    assert log["val_images"] == 2 and log["steps_done"] == 3
    assert set(log["metrics"]) == {"segm", "bbox"}
    assert torch.load(tmp_path / "k.pt", weights_only=True)["config"]["num_classes"] == 4


def test_coco_validation_folder_and_category_ids(tmp_path):
    images_dir, json_path = export_coco(ShapesDataset(4, seed=5), tmp_path / "train")
    val_dir, val_json = export_coco(ShapesDataset(2, seed=6), tmp_path / "val")
    cfg = TrainConfig(steps=2, batch_size=2, coco_images=str(images_dir), coco_json=str(json_path),
                      coco_val_images=str(val_dir), coco_val_json=str(val_json), progress=False, threads=1)
    log = train(cfg, TINY_MODEL, write=False)
    assert log["val_images"] == 2
    data = json.loads(val_json.read_text())
    data["categories"] = data["categories"][:2]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 2]
    val_json.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="same category ids"):
        train(cfg, TINY_MODEL, write=False)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (dict(lr=0.0), ValueError, "lr must be > 0"),
    (dict(lr=float("nan")), ValueError, "lr must not be NaN"),
    (dict(seed=5, val_seed=5), ValueError, "val_seed must differ from seed"),
    (dict(device="tpu"), ValueError, "device must be one of 'auto', 'cpu', 'cuda'"),
    (dict(coco_images="x"), ValueError, "coco_images and coco_json go together"),
    (dict(coco_val_images="x", coco_val_json="y"), ValueError, "need coco_images"),
    (dict(val_fraction=1.0), ValueError, "val_fraction must be < 1"),
    (dict(val_fraction=0), ValueError, "val_fraction must be > 0"),
    (dict(progress=1), TypeError, "progress must be True or False"),
    (dict(checkpoint=3), TypeError, "checkpoint must be a str"),
    (dict(name="a/b"), ValueError, "name must be a folder name"),
    (dict(workers=-1), ValueError, "workers must be >= 0"),
    (dict(time_limit=-1), ValueError, "time_limit must be > 0"),
])
def test_train_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_train_argument_errors(capsys):
    with pytest.raises(TypeError, match="train_config must be a TrainConfig"):
        train({"steps": 3})
    with pytest.raises(TypeError, match="model_config must be a ShapesModelConfig"):
        train(TrainConfig(steps=1), "small")
    for argv, match in ((["--pool", "max"], "invalid choice"), (["--feature-stride", "12"], "feature_stride must be"),
                        (["--widths", "a,b"], "comma-separated ints"), (["--model-json", "{"], "not valid JSON"),
                        (["--steps", "0"], "steps must be >= 1")):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert match in capsys.readouterr().err


def test_parse_args_builds_the_ablation_variants():
    cfg, mcfg = parse_args(["--pool", "pool", "--feature-stride", "16", "--seed", "2"])
    assert (mcfg.pool, mcfg.feature_stride, cfg.seed) == ("pool", 16, 2)
    cfg, mcfg = parse_args([])
    assert cfg == TrainConfig() and mcfg.pool == "align" and mcfg.feature_stride is None


def test_too_small_coco_folder(tmp_path):
    images_dir, json_path = export_coco(ShapesDataset(1, seed=5), tmp_path / "one")
    cfg = TrainConfig(steps=1, coco_images=str(images_dir), coco_json=str(json_path), progress=False, threads=1)
    with pytest.raises(ValueError, match="need at least 2"):
        train(cfg, TINY_MODEL, write=False)


# -- COCO-format data ----------------------------------------------------------------------------------
def test_coco_folder_round_trip_matches_the_generator(tmp_path):
    shapes = ShapesDataset(5, seed=11)
    images_dir, json_path = export_coco(shapes, tmp_path)
    coco = CocoInstanceDataset(images_dir, json_path)
    assert len(coco) == 5 and coco.classes == ("background", "circle", "square", "triangle")
    for i in range(5):
        (a, ta), (b, tb) = shapes[i], coco[i]
        assert (a - b).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG, rounded
        for key in ("boxes", "labels", "masks", "area", "iscrowd"):
            torch.testing.assert_close(ta[key], tb[key], rtol=0, atol=0)
        assert ta["image_id"] == tb["image_id"]


def test_coco_category_ids_polygons_and_crowds(tmp_path):
    write_image(torch.zeros(3, 20, 30), tmp_path / "a.png")
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 30, "height": 20}],
        "categories": [{"id": 40, "name": "late"}, {"id": 3, "name": "early"}],
        "annotations": [
            # a polygon square covering pixel centres 2..11 (x) and 4..9 (y): COCO polygons are in pixel edges
            {"id": 1, "image_id": 7, "category_id": 40, "bbox": [2, 4, 10, 6], "area": 60, "iscrowd": 0,
             "segmentation": [[2, 4, 12, 4, 12, 10, 2, 10]]},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1,
             "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [5, 5, 0, 3], "area": 0, "iscrowd": 0,
             "segmentation": [[5, 5, 5, 8, 5, 8]]},
        ],
    }
    (tmp_path / "i.json").write_text(json.dumps(data))
    ds = CocoInstanceDataset(tmp_path, tmp_path / "i.json")
    assert ds.classes == ("background", "early", "late")
    assert ds.label_to_category == {1: 3, 2: 40}
    image, target = ds[0]
    assert image.shape == (3, 20, 30) and target["image_id"] == 7
    assert target["labels"].tolist() == [2]  # the crowd and the zero-width box are left out
    assert target["boxes"].tolist() == [[2.0, 4.0, 12.0, 10.0]]
    expected = np.zeros((20, 30), np.uint8)
    expected[4:10, 2:12] = 1
    np.testing.assert_array_equal(target["masks"][0].numpy(), expected)


def test_coco_folder_errors(tmp_path):
    images_dir, json_path = export_coco(ShapesDataset(2, seed=5), tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        CocoInstanceDataset(tmp_path / "nope", json_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CocoInstanceDataset(images_dir, tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        CocoInstanceDataset(images_dir, bad)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"missing \['annotations', 'categories'\]"):
        CocoInstanceDataset(images_dir, bad)
    data = json.loads(json_path.read_text())
    data["annotations"][0]["category_id"] = 99
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_id 99"):
        CocoInstanceDataset(images_dir, bad)
    (images_dir / "000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) .* missing"):
        CocoInstanceDataset(images_dir, json_path)
    ds = CocoInstanceDataset(images_dir, json_path, image_ids=[0])
    with pytest.raises(IndexError, match="out of range"):
        ds[1]
    with pytest.raises(ValueError, match="not in the annotation file"):
        CocoInstanceDataset(images_dir, json_path, image_ids=[5])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(images_dir / "000001.png")
    with pytest.raises(ValueError, match=r"image must be Tensor\[3, H, W\]"):
        write_image(torch.zeros(20, 30), tmp_path / "x.png")


# -- COCO evaluation -----------------------------------------------------------------------------------
def _perfect(dataset):
    out = []
    for i in range(len(dataset)):
        t = dataset[i][1]
        out.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"])),
                    "masks": t["masks"][:, None].float()})
    return out


def test_ground_truth_as_predictions_scores_one():
    ds = ShapesDataset(6, seed=21)
    metrics = evaluate(torch.nn.Identity(), ds, outputs=_perfect(ds))
    for kind in ("segm", "bbox"):
        assert metrics[kind]["AP"] == pytest.approx(1.0) and metrics[kind]["AP50"] == pytest.approx(1.0)
        assert metrics[kind]["APl"] == -1.0  # no shape is larger than 96 x 96 pixels


def test_one_detection_ap_equals_the_fraction_of_thresholds_its_iou_passes():
    # one 10 x 10 ground-truth square; a predicted square shifted so that IoU = 62 / 138 ... computed below
    gt_mask = torch.zeros(1, 32, 32, dtype=torch.uint8)
    gt_mask[0, 10:20, 10:20] = 1
    ds = [(torch.zeros(3, 32, 32), {"masks": gt_mask, "labels": torch.tensor([1]), "iscrowd": torch.tensor([0]),
                                    "image_id": 0, "boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0]])})]
    pred = torch.zeros(1, 1, 32, 32)
    pred[0, 0, 10:20, 12:22] = 0.9  # shifted 2 px right: IoU = 80 / 120
    pred[0, 0, 0:2, 0:2] = 0.5  # exactly 0.5 is *not* in the mask (> 0.5)
    out = [{"boxes": torch.tensor([[12.0, 10.0, 22.0, 20.0]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.8]), "masks": pred}]
    iou = 80 / 120  # float64 by hand
    expected = np.mean([iou >= t for t in np.linspace(0.5, 0.95, 10)])
    metrics = evaluate(torch.nn.Identity(), ds, to_coco(ds), outputs=out)
    assert metrics["segm"]["AP"] == pytest.approx(expected) and metrics["bbox"]["AP"] == pytest.approx(expected)
    assert metrics["segm"]["AP50"] == pytest.approx(1.0) and metrics["segm"]["AP75"] == pytest.approx(0.0)
    results = to_coco_results(out, [0])
    assert results["bbox"][0]["bbox"] == [12.0, 10.0, 10.0, 10.0]  # (x1, y1, x2, y2) -> [x, y, w, h]
    from pycocotools import mask as mask_utils

    assert int(mask_utils.area(results["segm"][0]["segmentation"])) == 100  # the 0.5 pixels are out


def test_no_detections_scores_zero_and_table():
    ds = ShapesDataset(2, seed=21)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
              "masks": torch.zeros(0, 1, 128, 128)}] * 2
    metrics = evaluate(torch.nn.Identity(), ds, outputs=empty)
    assert all(v == 0.0 for row in metrics.values() for v in row.values())
    table = format_metrics_table({"segm": {"AP": 0.5, "APl": -1.0}})
    assert table.splitlines() == ["type      AP    APl", "segm   0.500    n/a"]


def test_evaluation_errors():
    ds = ShapesDataset(2, seed=21)
    with pytest.raises(ValueError, match="same length"):
        to_coco_results(_perfect(ds), [0])
    with pytest.raises(TypeError, match=r"outputs\[0\] must be a dict"):
        to_coco_results([{"boxes": torch.zeros(0, 4)}], [0])
    with pytest.raises(ValueError, match=r"must be Tensor\[D, 4\]"):
        to_coco_results([{"boxes": torch.zeros(3), "labels": torch.zeros(0), "scores": torch.zeros(0)}], [0])
    bad = _perfect(ds)[:1]
    bad[0]["masks"] = bad[0]["masks"][:, 0]
    with pytest.raises(ValueError, match=r"must be Tensor\[D, 1, H, W\]"):
        to_coco_results(bad, [0])
    with pytest.raises(ValueError, match="mask_threshold must be in"):
        to_coco_results(_perfect(ds), [0, 1], mask_threshold=1.0)
    with pytest.raises(ValueError, match="iou_types must be drawn from"):
        coco_evaluate(to_coco(ds), {"keypoints": []}, iou_types=["keypoints"])
    with pytest.raises(ValueError, match="coco_gt must hold"):
        coco_evaluate({"images": []}, {})
    with pytest.raises(TypeError, match="coco_gt must be a COCO dict"):
        coco_evaluate("gt.json", {})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        predict("model", ds)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        predict(torch.nn.Identity(), ds, batch_size=0)
    with pytest.raises(ValueError, match="metrics must be a non-empty"):
        format_metrics_table({})


# -- the shipped checkpoint against its own log ---------------------------------------------------------
def test_shipped_checkpoint_reproduces_its_logged_metrics_on_the_subset():
    log = json.loads(SHAPES_TRAIN_LOG.read_text())
    model, checkpoint = load_checkpoint(SHAPES_CHECKPOINT, impl=log.get("impl", "torchvision"))  # the model the log scored
    assert checkpoint["config"] == log["model_config"]
    cfg = log["train_config"]
    n = log["eval_subset"]
    val = ShapesDataset(log["val_images"], seed=cfg["val_seed"])
    subset = [val[i] for i in range(n)]
    metrics = evaluate(model, subset)
    for kind in ("segm", "bbox"):
        for name in ("AP", "AP50", "AP75"):
            # same weights, same images; only float summation order may differ between CPUs
            assert metrics[kind][name] == pytest.approx(log["metrics_subset"][kind][name], abs=0.01), (kind, name)


def test_is_shipped_command_accepts_the_shipped_commands_and_nothing_else():
    for command in (SHIPPED_COMMAND, DEFAULT_COMMAND):
        assert is_shipped_command(command)
        assert is_shipped_command(command + " --no-progress")
        assert is_shipped_command(command.replace(" ", "  "))  # word by word, not character by character
    assert is_shipped_command(SHIPPED_COMMAND.replace("--checkpoint", "--no-progress --checkpoint"))
    wrong = [SHIPPED_COMMAND + " --steps 10",  # a different recipe
             SHIPPED_COMMAND.replace("data/shapes_maskrcnn.pt", "runs/x.pt"),  # a different output
             SHIPPED_COMMAND.replace(" --overwrite", ""),
             "python -m helpers.ablation", "", DEFAULT_COMMAND + " --progress"]
    for command in wrong:
        assert not is_shipped_command(command), command
    with pytest.raises(TypeError, match="command must be a str"):
        is_shipped_command(SHIPPED_COMMAND.split())


def test_shipped_log_meets_the_floors():
    log = json.loads(SHAPES_TRAIN_LOG.read_text())
    assert log["metrics"]["segm"]["AP"] >= 0.65 and log["metrics"]["segm"]["AP50"] >= 0.88
    assert is_shipped_command(log["command"]), log["command"]
    assert log["threads"] == 2 and not log["stopped_early"] and log["impl"] == "series"  # the series' own model
    assert log["train_config"]["val_seed"] != log["train_config"]["seed"]
    assert len(log["steps"]) == log["train_config"]["steps"]


# -- AP rebuilt in NumPy against COCOeval ----------------------------------------------------------------
def _noisy_predictions(dataset, seed):
    """Ground truth spoiled at random: shifted masks and boxes, wrong classes, missed and extra objects."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(len(dataset)):
        t = dataset[i][1]
        masks, boxes, labels = [], [], []
        for mask, box, label in zip(t["masks"], t["boxes"], t["labels"]):
            if torch.rand(1, generator=g) < 0.15:
                continue  # a miss
            dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=g))
            masks.append(torch.roll(mask, shifts=(dy, dx), dims=(0, 1)))
            boxes.append(box + torch.tensor([dx, dy, dx, dy], dtype=torch.float32))
            wrong = torch.rand(1, generator=g) < 0.1
            labels.append(int(torch.randint(1, 4, (1,), generator=g)) if wrong else int(label))
        if torch.rand(1, generator=g) < 0.5:  # a false positive
            m = torch.zeros_like(t["masks"][0]) if len(t["masks"]) else torch.zeros(128, 128, dtype=torch.uint8)
            m[5:25, 90:110] = 1
            masks.append(m)
            boxes.append(torch.tensor([90.0, 5.0, 110.0, 25.0]))
            labels.append(1)
        n = len(masks)
        out.append({"boxes": torch.stack(boxes) if n else torch.zeros(0, 4), "labels": torch.tensor(labels, dtype=torch.int64),
                    "scores": torch.rand(n, generator=g),
                    "masks": torch.stack(masks)[:, None].float() if n else torch.zeros(0, 1, 128, 128)})
    return out


@settings(deadline=None, max_examples=6)
@given(seed=st.integers(0, 10_000))
def test_average_precision_rebuilt_in_numpy_equals_cocoeval(seed):
    ds = ShapesDataset(8, seed=seed % 50 + 100)
    gt = to_coco(ds)
    results = to_coco_results(_noisy_predictions(ds, seed), [i for i in range(len(ds))])
    metrics = coco_evaluate(gt, results)
    for kind in ("segm", "bbox"):
        for name, threshold in (("AP50", 0.5), ("AP75", 0.75)):
            ours = average_precision(gt, results[kind], kind, threshold)["AP"]
            assert ours == pytest.approx(metrics[kind][name], abs=1e-12), (kind, name)
        mean = np.mean([average_precision(gt, results[kind], kind, t)["AP"] for t in np.linspace(0.5, 0.95, 10)])
        assert mean == pytest.approx(metrics[kind]["AP"], abs=1e-12)


def test_iou_matrix_by_hand_and_errors():
    dets = [{"bbox": [0.0, 0.0, 10.0, 10.0]}, {"bbox": [20.0, 20.0, 5.0, 5.0]}]
    gts = [{"bbox": [5.0, 0.0, 10.0, 10.0]}]
    np.testing.assert_allclose(iou_matrix(dets, gts, "bbox"), [[50 / 150], [0.0]])
    assert iou_matrix([], gts, "segm").shape == (0, 1)
    with pytest.raises(ValueError, match="iou_type must be one of"):
        iou_matrix(dets, gts, "keypoints")
    gt = to_coco(ShapesDataset(1, seed=0))
    with pytest.raises(ValueError, match="iou_threshold must be in"):
        average_precision(gt, [], "segm", 1.5)
    gt["annotations"][0]["iscrowd"] = 1
    with pytest.raises(ValueError, match="crowd"):
        average_precision(gt, [], "segm")


def test_match_detections_sorts_hits_misses_confusions_and_false_positives():
    gt_masks = torch.zeros(3, 20, 20, dtype=torch.uint8)
    gt_masks[0, 0:10, 0:10] = 1   # object 0: circle (label 1), found
    gt_masks[1, 10:20, 10:20] = 1  # object 1: square (label 2), found as a triangle
    gt_masks[2, 0:4, 15:19] = 1    # object 2: triangle (label 3), missed
    target = {"labels": torch.tensor([1, 2, 3]), "masks": gt_masks}
    pred = torch.zeros(5, 1, 20, 20)
    pred[0, 0, 0:10, 0:8] = 0.9    # IoU 80 / 100 with object 0
    pred[1, 0, 10:20, 10:20] = 0.8  # IoU 1 with object 1, wrong class
    pred[2, 0, 0:10, 0:10] = 0.7   # a duplicate of object 0: a false positive
    pred[3, 0, 15:20, 0:5] = 0.9   # nothing there: a false positive
    pred[4, 0, 0:4, 15:19] = 0.9   # would find object 2, but its score is too low
    prediction = {"labels": torch.tensor([1, 3, 1, 2, 3]), "scores": torch.tensor([0.9, 0.95, 0.6, 0.55, 0.2]),
                  "masks": pred}
    out = match_detections(prediction, target)
    assert out["kept"].tolist() == [1, 0, 2, 3]
    assert out["hits"] == [(0, 0, pytest.approx(0.8))]
    assert out["confusions"] == [(1, 1, pytest.approx(1.0))]
    assert out["false_positives"] == [2, 3] and out["missed"] == [2]
    assert match_detections(prediction, target, score_thresh=0.1)["missed"] == []
    with pytest.raises(ValueError, match="score_thresh must be in"):
        match_detections(prediction, target, score_thresh=2)
    with pytest.raises(TypeError, match="prediction must be a dict"):
        match_detections({"labels": torch.zeros(1)}, target)
    with pytest.raises(TypeError, match="target must be a dict"):
        match_detections(prediction, {"masks": gt_masks})
    with pytest.raises(ValueError, match=r"prediction\['masks'\] must be Tensor\[D, 1, 20, 20\]"):
        match_detections({**prediction, "masks": pred[:, 0]}, target)


def test_periodic_evaluation_and_time_limit():
    cfg = TrainConfig(steps=4, batch_size=1, val_images=2, eval_subset=2, eval_every=2, progress=False, threads=1)
    log = train(cfg, TINY_MODEL, write=False)
    assert [row["step"] for row in log["periodic_eval"]] == [2]  # not after the last step: the final eval does
    assert set(log["periodic_eval"][0]) == {"step", "segm_AP", "bbox_AP", "segm_AP50"}
    assert log["steps"][-1]["cpu"] <= log["train_cpu_s"] + 0.01 and not log["stopped_early"]  # rounded to 3 and 2 decimals
    cfg = TrainConfig(steps=50, batch_size=1, val_images=1, eval_subset=0, progress=False, threads=1, time_limit=1e-9)
    log = train(cfg, TINY_MODEL, write=False)
    assert log["stopped_early"] and log["steps_done"] == 1


def test_benchmark_times_steps(tmp_path, capsys):
    from helpers.train import benchmark

    rows = benchmark(steps=1, threads=1, checkpoint=None, batch_size=1, warmup=0)
    assert [r["weights"] for r in rows] == ["fresh"]
    assert rows[0]["wall_per_step"] > 0 and rows[0]["projected_run_s"] == pytest.approx(
        TrainConfig().steps * rows[0]["wall_per_step"], rel=0.01)
    out = main(["--benchmark", "1", "--batch-size", "1", "--threads", "1", "--checkpoint", str(tmp_path / "none.pt")])
    assert [r["weights"] for r in out["benchmark"]] == ["fresh"]
    assert f"projected {TrainConfig().steps}-step run" in capsys.readouterr().out
    with pytest.raises(ValueError, match="steps must be >= 1"):
        benchmark(steps=0)


# -- the claims notebook 09 makes about the shipped run ----------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    log = json.loads(SHAPES_TRAIN_LOG.read_text())
    model, _ = load_checkpoint(SHAPES_CHECKPOINT, impl=log.get("impl", "torchvision"))  # the model the log scored
    val = ShapesDataset(log["val_images"], seed=log["train_config"]["val_seed"])
    return log, val, predict(model, val)


def test_shipped_metrics_recomputed_on_all_validation_images(shipped):
    log, val, outputs = shipped
    results = to_coco_results(outputs, [t["image_id"] for _, t in val])
    metrics = coco_evaluate(to_coco(val), results)
    for kind in ("segm", "bbox"):
        for name in METRIC_NAMES:
            assert metrics[kind][name] == pytest.approx(log["metrics"][kind][name], abs=0.005), (kind, name)
    # small objects get worse masks: mean mask IoU of the found objects, small against medium
    found_small, found_medium = [], []
    for out, (_, target) in zip(outputs, val):
        m = match_detections(out, target)
        for _, g, iou in m["hits"] + m["confusions"]:
            (found_small if target["area"][g] < 32**2 else found_medium).append(iou)
    assert np.mean(found_small) < np.mean(found_medium) - 0.03
    ap75 = {c: average_precision(to_coco(val), results["segm"], "segm", 0.75)["per_category"][c] for c in (1, 2, 3)}
    assert min(ap75, key=ap75.get) == 3  # triangles lose the most at IoU 0.75


def test_shipped_false_positives_are_mostly_duplicates_under_another_class(shipped):
    _, val, outputs = shipped
    other = same = rest = 0
    for out, (_, target) in zip(outputs, val):
        m = match_detections(out, target)
        rows = m["kept"].tolist()
        for d in m["false_positives"]:
            ious = m["ious"][rows.index(d)]
            if len(ious) and ious.max() >= 0.5:
                if int(out["labels"][d]) == int(target["labels"][ious.argmax()]):
                    same += 1
                else:
                    other += 1
            else:
                rest += 1
    assert other > same and other > rest


def test_shipped_loss_curves_behave_as_notebook_09_says():
    log = json.loads(SHAPES_TRAIN_LOG.read_text())
    window = 25
    smooth = lambda name: np.convolve([r[name] for r in log["steps"]], np.ones(window) / window, mode="valid")
    objectness, box_reg, mask = smooth("loss_objectness"), smooth("loss_box_reg"), smooth("loss_mask")
    assert objectness[0] > 50 * objectness[-1]
    assert box_reg[:300].max() > 2 * box_reg[0] and box_reg[-1] < box_reg[:300].max() / 2
    first_mask = np.mean([r["loss_mask"] for r in log["steps"][:10]])
    assert first_mask > np.log(2) > mask[100 - window + 1]
    assert np.mean([r["loss_rpn_box_reg"] for r in log["steps"][:10]]) < 0.05


def test_average_precision_of_a_class_without_detections_is_zero():
    ds = ShapesDataset(4, seed=21)
    gt = to_coco(ds)
    results = to_coco_results(_perfect(ds), list(range(4)))
    present = {a["category_id"] for a in gt["annotations"]}
    kept = [r for r in results["segm"] if r["category_id"] != min(present)]
    ours = average_precision(gt, kept, "segm", 0.5)
    assert ours["per_category"][min(present)] == 0.0
    assert ours["AP"] == pytest.approx(coco_evaluate(gt, {"segm": kept}, ["segm"])["segm"]["AP50"], abs=1e-12)

"""helpers.ablation (notebook 10): the script runs end to end on a tiny config, the summaries and the
RoIPool/RoIAlign geometry agree with independent recomputations, bad input is refused by name.

CI does not run the real ablation (about an hour); the tiny run proves the entry point trains both
ops, evaluates, keeps checkpoints that reload to the stored AP, and writes valid JSON.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import roi_align, roi_pool

from helpers.masks import mask_iou
from helpers import ablation
from helpers.ablation import (ABLATION_MODEL, METRICS, SHIPPED_COMMAND, build_parser, checkpoint_path, coordinate_map,
                              format_summary, load_half_checkpoint, roipool_cells, roipool_extent, run_ablation,
                              summarise)
from helpers.evaluate import evaluate
from helpers.maskrcnn import SeriesMaskRCNN
from helpers.model import build_model, save_checkpoint
from helpers.project import ABLATION_CHECKPOINTS, ABLATION_RESULTS, ROOT
from helpers.shapes import ShapesDataset

TINY = ["--steps", "3", "--batch-size", "2", "--val-images", "4", "--eval-subset", "2", "--warmup-steps", "1",
        "--seeds", "0", "--strides", "16", "--jobs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny run of the command line: both ops, one stride, one seed, checkpoints kept."""
    folder = tmp_path_factory.mktemp("ablation")
    out = folder / "results.json"
    results = ablation.main([*TINY, "--out", str(out), "--checkpoints", str(folder / "ck")])
    return folder, out, results


def test_script_writes_valid_json(tiny, capsys):
    folder, out, results = tiny
    data = json.loads(out.read_text())  # valid JSON, the same as returned
    assert data == json.loads(json.dumps(results))
    assert data["complete"] is True and data["total_wall_s"] > 0
    assert data["settings"]["ops"] == ["align", "pool"] and data["settings"]["strides"] == [16]
    assert data["settings"]["train"]["steps"] == 3 and data["settings"]["model"] == ABLATION_MODEL
    assert "--steps 3" in data["command"]
    runs = data["runs"]
    assert [(r["feature_stride"], r["op"], r["seed"]) for r in runs] == [(16, "align", 0), (16, "pool", 0)]
    for r in runs:
        assert r["steps"] == 3 and r["wall_s"] > 0 and r["train_wall_s"] > 0 and r["impl"] == "series"
        for kind in ("mask", "box"):
            assert set(r[kind]) == set(METRICS)
            assert all(v == -1 or 0 <= v <= 1 for v in r[kind].values())
        assert set(r["final_losses"]) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                                          "loss_box_reg", "loss_mask"}
        assert all(math.isfinite(v) for v in r["final_losses"].values())
        assert r["loss_curve"]["step"] == [0]


def test_checkpoints_reload_to_the_stored_ap(tiny):
    folder, out, results = tiny
    for r in results["runs"]:
        model, ck = load_half_checkpoint(r["checkpoint"])
        assert ck["extra"]["op"] == r["op"] and ck["config"]["pool"] == r["op"]
        assert isinstance(model, SeriesMaskRCNN) and model.shapes_config.pool == r["op"]
        assert all(v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())
        subset = ShapesDataset(2, seed=1_000_000)
        assert evaluate(model, subset)["segm"]["AP"] == pytest.approx(r["checkpoint_subset_mask_AP"], abs=1e-4)


def test_resume_keeps_finished_runs(tiny, monkeypatch):
    folder, out, results = tiny

    def no_training(*args, **kwargs):
        raise AssertionError(f"resume retrained {args}")

    monkeypatch.setattr(ablation, "run_one", no_training)
    again = run_ablation(["align", "pool"], [16], [0], out=out, checkpoints=None, resume=True, progress=False,
                         train_overrides={"steps": 3, "batch_size": 2, "val_images": 4, "eval_subset": 2,
                                          "warmup_steps": 1})
    assert again["runs"] == results["runs"] and again["complete"]


def test_shipped_results_if_present():
    """The shipped data/ablation_results.json: 2 ops x 2 strides x 3 seeds, complete, metrics in range."""
    path = ABLATION_RESULTS
    if not path.is_file():
        pytest.skip("no shipped ablation results (regenerate with `python -m helpers.ablation`)")
    data = json.loads(path.read_text())
    assert data["complete"] and len(data["runs"]) == len(data["settings"]["ops"]) * len(
        data["settings"]["strides"]) * len(data["settings"]["seeds"]) >= 12
    assert len(data["settings"]["seeds"]) >= 3
    for r in data["runs"]:
        assert all(v == -1 or 0 <= v <= 1 for kind in ("mask", "box") for v in r[kind].values())
        if "checkpoint" in r:
            assert (ROOT / r["checkpoint"]).stat().st_size < 3_000_000


# -- summaries ------------------------------------------------------------------------------------
def _fake_results(rng, seeds=(0, 1, 2)):
    runs = []
    for stride in (4, 16):
        for op in ("align", "pool"):
            for seed in seeds:
                runs.append({"feature_stride": stride, "op": op, "seed": seed,
                             "mask": {m: float(rng.uniform()) for m in METRICS},
                             "box": {m: float(rng.uniform()) for m in METRICS}})
    return {"runs": runs}


@pytest.mark.parametrize("seed", range(3))
def test_summarise_against_numpy(seed):
    results = _fake_results(np.random.default_rng(seed))
    rows = summarise(results)
    assert [(r["feature_stride"], r["op"]) for r in rows] == [(4, "align"), (4, "pool"), (16, "align"), (16, "pool")]
    for row in rows:
        runs = [r for r in results["runs"] if (r["feature_stride"], r["op"]) == (row["feature_stride"], row["op"])]
        for kind in ("mask", "box"):
            for m in ("AP", "AP50", "AP75"):
                v = np.array([r[kind][m] for r in runs])
                assert row[f"{kind}_{m}"] == pytest.approx((v.mean(), v.std(ddof=1)), abs=1e-12)
    table = format_summary(rows)
    assert len(table.splitlines()) == 5 and "±" in table
    first = rows[0]["mask_AP"]
    assert f"{first[0] * 100:.1f} ± {first[1] * 100:.1f}" in table.splitlines()[1]


def test_summarise_single_seed_has_zero_std():
    rows = summarise(_fake_results(np.random.default_rng(0), seeds=(0,)))
    assert all(row["mask_AP"][1] == 0.0 and row["n"] == 1 for row in rows)


def test_summary_errors():
    with pytest.raises(TypeError, match="results must be the ablation results dict"):
        summarise({"runs": None})
    with pytest.raises(ValueError, match="kinds must be one of"):
        summarise({"runs": []}, kinds=("segm",))
    with pytest.raises(ValueError, match="metrics must be one of"):
        summarise({"runs": []}, metrics=("AR1",))
    with pytest.raises(ValueError, match="rows must hold at least one"):
        format_summary([])


def test_grid_errors(tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(ValueError, match=r"ops\[0\] must be one of 'align', 'pool'"):
        run_ablation(["max"], [16], [0], out=out)
    with pytest.raises(TypeError, match="ops must be a list"):
        run_ablation("align", [16], [0], out=out)
    with pytest.raises(TypeError, match=r"strides\[0\] must be an int"):
        run_ablation(["align"], [16.0], [0], out=out)
    with pytest.raises(ValueError, match=r"seeds\[0\] must be >= 0"):
        run_ablation(["align"], [16], [-1], out=out)
    with pytest.raises(ValueError, match="feature_stride must be None"):
        run_ablation(["align"], [32], [0], out=out)  # the 3-stage backbone stops at stride 16
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_ablation(["align"], [16], [0], out=out, jobs=0)
    with pytest.raises(TypeError, match="steps must be an int"):
        run_ablation(["align"], [16], [0], out=out, train_overrides={"steps": 2.5})
    assert not out.exists()  # nothing trained, nothing written
    with pytest.raises(SystemExit):
        ablation.main(["--ops", "align,max", "--out", str(out)])


def test_half_checkpoint_round_trip(tmp_path):
    """The ablation's models are save_checkpoint(dtype=float16) files; load_half_checkpoint reads them."""
    torch.manual_seed(0)
    model = build_model({**ABLATION_MODEL, "feature_stride": 16, "pool": "pool"})
    path = save_checkpoint(model, tmp_path / "m.pt", extra={"note": "x"}, dtype=torch.float16)
    loaded, ck = load_half_checkpoint(path)
    assert ck["extra"] == {"note": "x"} and not loaded.training
    for k, v in model.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == v.dtype
        assert torch.equal(w, v.half().float() if v.is_floating_point() else v)
    with pytest.raises(FileNotFoundError, match="no ablation checkpoint"):
        load_half_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a helpers.model checkpoint"):
        load_half_checkpoint(tmp_path / "bad.pt")


def test_shipped_command_names_the_shipped_files():
    assert checkpoint_path("data/ablation", "align", 4, 0) == ABLATION_CHECKPOINTS / "align_stride4_seed0.pt"
    args = build_parser().parse_args(SHIPPED_COMMAND.split()[3:])       # after "python -m helpers.ablation"
    assert ROOT / args.out == ABLATION_RESULTS and ROOT / args.checkpoints == ABLATION_CHECKPOINTS
    assert args.overwrite and not args.resume


def _record_grid(monkeypatch) -> dict:
    """Replace run_ablation by a recorder of its arguments (main still parses and summarises)."""
    seen: dict = {}

    def record(ops, strides, seeds, **kwargs):
        seen.update(kwargs)
        return {**_fake_results(np.random.default_rng(0), seeds=(0,)), "total_wall_s": 1.0}

    monkeypatch.setattr(ablation, "run_ablation", record)
    return seen


def test_default_outputs_go_to_a_run_folder_not_to_data(tmp_path, monkeypatch):
    seen = _record_grid(monkeypatch)
    ablation.main(["--runs-dir", str(tmp_path), "--name", "mine", "--no-progress"])
    assert seen["out"] == tmp_path / "mine" / "ablation_results.json"
    assert seen["checkpoints"] == tmp_path / "mine" / "ablation"
    assert seen["overwrite"] is False and seen["resume"] is False
    ablation.main(["--no-progress"])                                     # no name: runs/ablation-<UTC time>/
    out, checkpoints = ROOT / seen["out"], ROOT / seen["checkpoints"]
    assert out.parent.parent == ROOT / "runs" and re.fullmatch(r"ablation-\d{8}-\d{6}", out.parent.name)
    assert out.name == "ablation_results.json" and checkpoints == out.parent / "ablation"
    ablation.main(["--out", str(tmp_path / "r.json"), "--checkpoints", "none", "--overwrite"])
    assert (seen["out"], seen["checkpoints"], seen["overwrite"]) == (str(tmp_path / "r.json"), None, True)


def _no_training(monkeypatch):
    def trained(*args, **kwargs):
        raise AssertionError(f"trained {args}")

    monkeypatch.setattr(ablation, "run_one", trained)


TINY_SETTINGS = {"train_overrides": {"steps": 3}, "progress": False}


def test_refuses_to_replace_results_or_checkpoints(tmp_path, monkeypatch):
    _no_training(monkeypatch)
    out, folder = tmp_path / "r.json", tmp_path / "ck"
    out.write_text("{}\n")
    with pytest.raises(FileExistsError, match=r"refusing to overwrite .*r\.json: pass --overwrite"):
        run_ablation(["align"], [16], [0], out=out, **TINY_SETTINGS)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):      # --resume, other settings: refused too
        run_ablation(["align"], [16], [0], out=out, resume=True, **TINY_SETTINGS)
    assert out.read_text() == "{}\n"
    out.unlink()
    folder.mkdir()
    taken = checkpoint_path(folder, "pool", 16, 0)
    taken.write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"pool_stride16_seed0\.pt"):
        run_ablation(["align", "pool"], [16], [0], out=out, checkpoints=folder, **TINY_SETTINGS)
    assert not out.exists() and taken.read_bytes() == b"x"
    with pytest.raises(AssertionError, match="trained"):                    # --overwrite: on to training
        run_ablation(["align", "pool"], [16], [0], out=out, checkpoints=folder, overwrite=True, **TINY_SETTINGS)
    with pytest.raises(SystemExit):                                          # the command line: a usage error
        ablation.main(["--seeds", "0", "--strides", "16", "--out", str(out), "--checkpoints", str(folder)])


def test_the_shipped_files_need_their_paths_and_overwrite(monkeypatch, capsys):
    if not ABLATION_RESULTS.is_file():
        pytest.skip("no shipped ablation results")
    _no_training(monkeypatch)
    before = ABLATION_RESULTS.read_bytes()
    with pytest.raises(SystemExit):
        ablation.main(["--out", "data/ablation_results.json", "--checkpoints", "data/ablation", "--no-progress"])
    assert "refusing to overwrite data/ablation_results.json" in capsys.readouterr().err
    assert ABLATION_RESULTS.read_bytes() == before


# -- RoIPool's cells and RoIAlign's bin centres, against torchvision's ops ---------------------------
def _roipool_read(boxes, stride, size):
    h = w = size // stride
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    pooled = roi_pool(coordinate_map(stride, (h, w)), rois, 7, 1 / stride)  # [K, 5, 7, 7]
    full = pooled[:, 4] > 0

    def last(c):
        return torch.where(full, pooled[:, c], -1e9).amax(dim=(1, 2))

    read = torch.stack([-last(2), -last(3), last(0), last(1)], dim=1).double() / stride
    return read, full.flatten(1).any(dim=1)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.floats(0, 120), st.floats(0, 120), st.floats(1, 60), st.floats(1, 60)),
                min_size=1, max_size=8), st.sampled_from([4, 8, 16]))
def test_roipool_cells_match_torchvision(raw, stride):
    boxes = torch.tensor([[x, y, min(x + w, 128.0), min(y + h, 128.0)] for x, y, w, h in raw], dtype=torch.float32)
    size = 128 // stride
    cells = roipool_cells(boxes, stride, (size, size))
    read, reads_any = _roipool_read(boxes, stride, 128)
    assert torch.equal(read[reads_any], cells[reads_any].double())
    # A box whose rounded top-left corner lands on or past the map's last edge reads no cell at all
    # (torchvision's RoIPool returns zeros); roipool_cells clamps it to the last cell instead.
    rounded = torch.floor(boxes[~reads_any, :2].double() / stride + 0.5)
    assert bool((rounded >= size).any(dim=1).all())
    extent = roipool_extent(boxes, stride, (size, size))
    assert torch.equal(extent[:, :2], cells[:, :2].double() * stride)
    assert torch.equal(extent[:, 2:], (cells[:, 2:] + 1).double() * stride)


def test_roipool_rounds_half_away_from_zero():
    # x1 = 40 at stride 16 is 2.5 cells: C's round gives 3 (torch.round would give 2)
    cells = roipool_cells(torch.tensor([[40.0, 8.0, 56.0, 24.0]]), 16, (8, 8))
    assert cells.tolist() == [[3, 1, 4, 2]]  # x2 = 3.5 -> 4, y = 0.5 -> 1 and 1.5 -> 2


def test_roialign_on_the_coordinate_map_returns_bin_centres():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 44.0], [3.0, 70.0, 30.0, 101.0]])
    rois = torch.cat([torch.zeros(2, 1), boxes], dim=1)
    for stride in (4, 16):
        h = 128 // stride
        out = roi_align(coordinate_map(stride, (h, h)), rois, 14, 1 / stride, 2, aligned=False)
        bw = (boxes[:, 2] - boxes[:, 0]).clamp(min=stride) / 14
        bh = (boxes[:, 3] - boxes[:, 1]).clamp(min=stride) / 14
        cx = boxes[:, :1] + (torch.arange(14) + 0.5) * bw[:, None]
        cy = boxes[:, 1:2] + (torch.arange(14) + 0.5) * bh[:, None]
        assert torch.allclose(out[:, 0, 0, :], cx, atol=1e-3)
        assert torch.allclose(out[:, 1, :, 0], cy, atol=1e-3)
        assert torch.equal(out[:, 4], torch.ones_like(out[:, 4]))


def test_geometry_errors():
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        roipool_cells(torch.zeros(4), 16, (8, 8))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        roipool_cells(torch.zeros(1, 4), 0, (8, 8))


# -- the mask branch on given boxes ----------------------------------------------------------------
@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)  # random weights, every detection kept: enough to compare two code paths
    return build_model({**ABLATION_MODEL, "feature_stride": 16, "box_score_thresh": 0.0}).eval()


def test_masks_for_boxes_reproduces_the_models_own_masks(random_model):
    data = ShapesDataset(3, seed=5)
    images = [data[i][0] for i in range(3)]
    with torch.no_grad():
        outs = random_model(images)
    assert sum(len(o["boxes"]) for o in outs) > 0
    again = ablation.masks_for_boxes(random_model, images, [o["boxes"] for o in outs], [o["labels"] for o in outs])
    for a, o in zip(again, outs):
        assert a.shape == o["masks"].shape and torch.allclose(a, o["masks"], atol=1e-6)


def test_mask_iou_against_pycocotools(random_model):
    from pycocotools import mask as mask_utils

    data = ShapesDataset(2, seed=6)
    items = [data[i] for i in range(2)]
    masks = torch.cat(ablation.masks_for_boxes(random_model, [x for x, _ in items], [t["boxes"] for _, t in items],
                                               [t["labels"] for _, t in items]))
    truth = torch.cat([t["masks"] for _, t in items])
    ours = mask_iou(masks, truth).numpy()

    def rle(m):
        return mask_utils.encode(np.asfortranarray(m.numpy().transpose(1, 2, 0).astype(np.uint8)))

    coco = np.diag(mask_utils.iou(rle(masks[:, 0] > 0.5), rle(truth), [0] * len(truth)))
    assert np.allclose(ours, coco, atol=1e-12)
    assert mask_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)).tolist() == [0.0]


def test_roipool_runs_through_the_series_roi_pool(random_model):
    """The RoIPool variant of the series' model pools with helpers.roi.roi_pool (called once per branch),
    never with torchvision's ops."""
    import cProfile
    import pstats

    import helpers.roi

    torch.manual_seed(0)
    model = build_model({**ABLATION_MODEL, "feature_stride": 16, "pool": "pool"})
    assert isinstance(model, SeriesMaskRCNN)
    images, targets = zip(*[ShapesDataset(2, seed=8)[i] for i in range(2)])
    profiler = cProfile.Profile()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as ops:
        profiler.enable()
        sum(model(list(images), list(targets)).values()).backward()
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    calls = {(path, name): row[1] for (path, _, name), row in stats.items()}
    assert calls.get((helpers.roi.__file__, "roi_pool"), 0) == 2  # the box branch and the mask branch
    assert not [p for p, _ in calls if "torchvision" in p]
    assert not [e.name for e in ops.events() if e.name.startswith("torchvision::")]


def test_mask_branch_errors(random_model):
    image = torch.rand(3, 32, 32)
    with pytest.raises(TypeError, match="model must be a helpers.maskrcnn.SeriesMaskRCNN"):
        ablation.masks_for_boxes(build_model(ABLATION_MODEL, impl="torchvision"), [image], [torch.zeros(0, 4)],
                                 [torch.zeros(0)])
    with pytest.raises(TypeError, match="lists of the same length"):
        ablation.masks_for_boxes(random_model, image, [torch.zeros(1, 4)], [torch.zeros(1)])
    with pytest.raises(ValueError, match=r"images\[0\] must be Tensor\[3, H, W\]"):
        ablation.masks_for_boxes(random_model, [torch.rand(32, 32)], [torch.zeros(1, 4)], [torch.zeros(1)])
    with pytest.raises(ValueError, match=r"labels\[0\] must be Tensor\[K\] with K = 1"):
        ablation.masks_for_boxes(random_model, [image], [torch.tensor([[1.0, 1, 9, 9]])], [torch.zeros(2)])
    with pytest.raises(ValueError, match="matching"):
        mask_iou(torch.zeros(2, 4, 4), torch.zeros(1, 4, 4))


def test_draw_ablation_bars_heights_are_the_means():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.viz import draw_ablation_bars

    rows = summarise(_fake_results(np.random.default_rng(4)))
    fig, ax = plt.subplots()
    bars = draw_ablation_bars(rows, "box", ax=ax)
    assert len(bars) == 2 * 2 * 3
    for row in rows:
        for m in ("AP", "AP50", "AP75"):
            assert bars[row["feature_stride"], row["op"], m].get_height() == pytest.approx(100 * row[f"box_{m}"][0])
    with pytest.raises(ValueError, match="kind must be 'mask' or 'box'"):
        draw_ablation_bars(rows, "segm", ax=ax)
    with pytest.raises(ValueError, match="rows must hold at least one"):
        draw_ablation_bars([], ax=ax)
    plt.close(fig)


def test_draw_ablation_bars_values_are_8pt_and_apart():
    """The figure standard: the bar values are 8 pt, and two neighbouring bars of the same height
    (the worst case: their values at the same height) keep their values apart, at notebook 10's size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.viz import draw_ablation_bars

    rows = [{"feature_stride": s, "op": op, **{f"{k}_{m}": (0.267, 0.01) for k in ("mask", "box")
                                                for m in ("AP", "AP50", "AP75")}}
            for s in (4, 16) for op in ("align", "pool")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))                     # as notebook 10 draws it
    for ax, kind in zip(axes, ("mask", "box")):
        draw_ablation_bars(rows, kind, ax=ax)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in axes:
        values = [t for t in ax.texts if t.get_text() == "26.7"]
        assert len(values) == 12 and all(t.get_fontsize() >= 8 for t in values)
        extents = sorted((t.get_window_extent(renderer) for t in values), key=lambda e: e.x0)
        for left, right in zip(extents, extents[1:]):
            assert left.x1 < right.x0, (left, right)
    plt.close(fig)

"""helpers.pretrained (notebook 11): both paths of the COCO-or-fallback loader, the photos, the drawing.

The COCO weights cannot be downloaded here, so the online path is checked with the same architecture
built without weights (``weights=None, weights_backbone=None``): only the plumbing (the weights'
preprocessing and category names reaching the drawing) is tested, not the weights' values. The
offline path is checked by pointing torch.hub at an empty folder and making the network fail.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
import torchvision.models.detection as detection  # noqa: E402

from helpers import pretrained  # noqa: E402
from helpers.pretrained import (PHOTOS, UNAVAILABLE, cached_weights_path, coco_pipeline, coco_weights,  # noqa: E402
                                fetch_weights, filter_detections, load_photos, load_pipeline, shapes_pipeline,
                                time_inference)
from helpers.viz import draw_instance_predictions, instance_overlay  # noqa: E402

SMALL = {"min_size": 160, "max_size": 240}  # keeps the ResNet-50 forward cheap: plumbing only


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """torch.hub's cache pointed at an empty folder; the offline switch unset."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv(pretrained.OFFLINE_ENV, raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("simulated: no network")


@pytest.fixture(scope="module")
def architecture():
    torch.manual_seed(0)
    return detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, **SMALL).eval()


# -- photos --------------------------------------------------------------------------------------
def test_photos_are_skimage_arrays_channels_first():
    photos = load_photos()
    assert list(photos) == list(PHOTOS) == ["astronaut", "coffee", "chelsea", "rocket"]
    for name, image in photos.items():
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert np.array_equal(image.permute(1, 2, 0).numpy(), getattr(skimage.data, name)())
        assert PHOTOS[name].licence.startswith(("public domain", "CC0"))


def test_photos_bad_names():
    with pytest.raises(ValueError, match="unknown photo"):
        load_photos(["lena"])
    with pytest.raises(TypeError, match="names must be a list"):
        load_photos("astronaut")


# -- the offline path ----------------------------------------------------------------------------
def test_cache_path_is_torch_hub_checkpoints(empty_hub):
    path = cached_weights_path()
    assert path.parent == empty_hub / "checkpoints"
    assert path.name == coco_weights().url.rsplit("/", 1)[-1] == "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    with pytest.raises(TypeError, match="WeightsEnum"):
        cached_weights_path("not weights")


def test_failed_probe_is_quiet_and_fast(empty_hub, monkeypatch, capfd):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    called = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: called.append(a))
    result = fetch_weights()
    assert not result.ok and result.reason == UNAVAILABLE and "URLError" in result.detail
    assert not called  # the download is not even attempted after a failed probe
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # nothing printed, no progress bar, no stderr
    assert not cached_weights_path().exists()


def test_failed_download_leaves_nothing_and_prints_nothing(empty_hub, monkeypatch, capfd):
    class Answer:  # the HEAD probe succeeds ...
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def broken_download(url, dst, hash_prefix=None, progress=True):  # ... then the transfer breaks
        open(dst, "wb").close()
        raise ConnectionResetError("simulated: connection reset")

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Answer())
    monkeypatch.setattr(torch.hub, "download_url_to_file", broken_download)
    result = fetch_weights(timeout=0.5)
    assert not result.ok and result.reason == UNAVAILABLE and "ConnectionResetError" in result.detail
    assert not cached_weights_path().exists()
    assert capfd.readouterr() == ("", "")


def test_real_offline_attempt_fails_quietly(empty_hub, capfd):
    """No monkeypatching: on this machine (and in CI) the network is really absent."""
    result = fetch_weights(timeout=2.0, progress=True)
    if result.ok:  # pragma: no cover - only on a machine with internet
        pytest.skip("this machine can download the weights: nothing offline to test")
    assert result.reason == UNAVAILABLE
    assert capfd.readouterr().err == ""


def test_offline_switch_wins_over_the_cache(empty_hub, monkeypatch):
    path = cached_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert fetch_weights().ok and fetch_weights().reason == "found in the torch.hub cache"
    monkeypatch.setenv(pretrained.OFFLINE_ENV, "1")
    result = fetch_weights()
    assert not result.ok and result.reason == UNAVAILABLE and pretrained.OFFLINE_ENV in result.detail


def test_fetch_bad_timeout():
    with pytest.raises(ValueError, match="timeout must be a positive"):
        fetch_weights(timeout=0)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        fetch_weights(timeout=True)


def test_load_pipeline_falls_back_to_the_shapes_model(empty_hub, monkeypatch, capfd):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    pipeline, message = load_pipeline()
    assert pipeline.source == "shapes" and message == f"COCO weights: {UNAVAILABLE}."
    assert pipeline.categories == ["background", "circle", "square", "triangle"]
    assert capfd.readouterr().err == ""
    from helpers.shapes import ShapesDataset

    images = [ShapesDataset(2, seed=1_000_000)[i][0] for i in range(2)]
    outputs = pipeline(images)
    assert len(outputs) == 2 and {"boxes", "labels", "scores", "masks"} <= set(outputs[0])
    assert outputs[0]["masks"].shape[-2:] == images[0].shape[-2:]
    fig, ax = plt.subplots()
    art = draw_instance_predictions(images[0], outputs[0], pipeline.categories, ax=ax, score_thresh=0.5)
    kept = filter_detections(outputs[0], 0.5)
    assert [t.get_text().rsplit(" ", 1)[0] for t in art.labels] == \
        [pipeline.categories[label] for label in kept["labels"].tolist()]
    plt.close(fig)


# -- the online path, plumbing only ---------------------------------------------------------------
def test_load_pipeline_online_path_gets_coco_names_and_preprocessing(empty_hub, monkeypatch, architecture):
    """Pretend the weights were fetched and build the model without them: the COCO plumbing runs."""
    monkeypatch.setattr(pretrained, "fetch_weights",
                        lambda **kw: pretrained.FetchResult(True, "found in the torch.hub cache", "test"))
    built = {}

    def build(weights=None, progress=True, **kwargs):
        built["weights"] = weights  # the real call asks for the COCO weights ...
        return architecture  # ... the test hands over the same architecture without them

    monkeypatch.setattr(detection, "maskrcnn_resnet50_fpn", build)
    pipeline, message = load_pipeline()
    assert built["weights"] == coco_weights()
    assert pipeline.source == "coco" and message == "COCO weights: found in the torch.hub cache."
    assert pipeline.categories == list(coco_weights().meta["categories"]) and len(pipeline.categories) == 91
    photo = load_photos(["chelsea"])["chelsea"]
    assert torch.equal(pipeline.preprocess(photo), photo.float() / 255)
    out = pipeline([photo])[0]
    assert out["masks"].shape[-2:] == photo.shape[-2:]  # masks come back at the photo's own size
    assert len(out["scores"]) > 0  # random weights still produce (meaningless) detections
    fig, ax = plt.subplots()
    art = draw_instance_predictions(photo, out, pipeline.categories, ax=ax, score_thresh=0.0)
    names = {t.get_text().rsplit(" ", 1)[0] for t in art.labels}
    assert names and names <= set(pipeline.categories) - {"__background__"}
    assert art.overlay_rgba.shape == (*photo.shape[1:], 4)
    plt.close(fig)


def test_coco_pipeline_rejects_non_models():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        coco_pipeline(model="resnet")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        shapes_pipeline(model=3)


def test_pipeline_rejects_bad_images(architecture):
    pipeline = coco_pipeline(architecture)
    with pytest.raises(TypeError, match="images must be a list"):
        pipeline(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"images\[0\] must be Tensor\[3, H, W\]"):
        pipeline([torch.zeros(1, 8, 8)])


# -- filtering, overlay, timing --------------------------------------------------------------------
def _fake_output(rng, d=6, h=20, w=30):
    return {"boxes": torch.tensor(rng.uniform(0, 10, (d, 4)), dtype=torch.float32).sort(dim=1).values,
            "labels": torch.tensor(rng.integers(1, 4, d)),
            "scores": torch.tensor(np.sort(rng.uniform(0, 1, d))[::-1].copy(), dtype=torch.float32),
            "masks": torch.tensor(rng.uniform(0, 1, (d, 1, h, w)), dtype=torch.float32)}


@pytest.mark.parametrize("seed", range(5))
def test_filter_and_overlay_against_numpy(seed):
    rng = np.random.default_rng(seed)
    out = _fake_output(rng)
    thresh = float(rng.uniform(0, 1))
    kept = filter_detections(out, thresh)
    sel = out["scores"].numpy() >= thresh
    for key in out:
        assert np.array_equal(kept[key].numpy(), out[key].numpy()[sel])
    layer = instance_overlay(kept["masks"], mask_thresh=0.5, alpha=0.4)
    expected_any = (kept["masks"].numpy()[:, 0] > 0.5).any(axis=0) if sel.any() else np.zeros((20, 30), bool)
    assert np.array_equal(layer[..., 3] > 0, expected_any)
    assert np.allclose(layer[..., 3][expected_any], 0.4)


def test_overlay_later_mask_wins():
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, 0, :2] = 0.9
    masks[1, 0, 1:3] = 0.9
    layer = instance_overlay(masks, ["#ff0000", "#0000ff"])
    assert np.allclose(layer[0, 0, :3], [1, 0, 0]) and np.allclose(layer[1, 0, :3], [0, 0, 1])
    assert layer[3, 0, 3] == 0


def test_filter_and_overlay_errors():
    with pytest.raises(TypeError, match="output must be a dict"):
        filter_detections({"boxes": torch.zeros(0, 4)}, 0.5)
    with pytest.raises(ValueError, match="score_thresh must be a float in"):
        filter_detections(_fake_output(np.random.default_rng(0)), 1.5)
    with pytest.raises(ValueError, match="masks must be"):
        instance_overlay(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="mask_thresh must be in"):
        instance_overlay(torch.zeros(1, 4, 4), mask_thresh=1.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        instance_overlay(torch.zeros(1, 4, 4), alpha=2)
    with pytest.raises(TypeError, match="prediction must be a dict"):
        draw_instance_predictions(torch.zeros(3, 4, 4), {}, ["a"])
    with pytest.raises(ValueError, match="image must be"):
        draw_instance_predictions(torch.zeros(4, 4), _fake_output(np.random.default_rng(0)), ["a"])


def test_draw_nothing_above_threshold_says_so():
    out = _fake_output(np.random.default_rng(1), h=8, w=8)
    out["scores"] = out["scores"] * 0.1
    fig, ax = plt.subplots()
    art = draw_instance_predictions(torch.rand(3, 8, 8), out, ["bg", "a", "b", "c"], ax=ax, score_thresh=0.5)
    assert art.rectangles == [] and art.overlay is None
    assert any("no detections above 0.5" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_time_inference_and_errors():
    from helpers.model import build_model

    torch.manual_seed(0)
    architecture = build_model().eval()  # small and quick: the timing code is what is tested
    image = torch.rand(3, 64, 64)
    assert time_inference(architecture, image, repeats=2, warmup=1) > 0
    with pytest.raises(ValueError, match="repeats must be an int"):
        time_inference(architecture, image, repeats=0)
    with pytest.raises(ValueError, match="warmup must be an int"):
        time_inference(architecture, image, warmup=-1)
    with pytest.raises(ValueError, match="image must be Tensor"):
        time_inference(architecture, torch.rand(64, 64))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        time_inference("model", image)

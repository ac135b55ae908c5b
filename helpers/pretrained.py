"""torchvision's COCO-trained Mask R-CNN on real photographs, or the series' shapes model when offline.

Notebook 11 runs ``maskrcnn_resnet50_fpn(weights=MaskRCNN_ResNet50_FPN_Weights.DEFAULT)`` on
photographs that ship with scikit-image, with the weights' own preprocessing
(``weights.transforms()``) and category names (``weights.meta["categories"]``). The weights file
(170 MB) comes from ``download.pytorch.org`` through ``torch.hub``'s cache. Where it is neither
cached nor downloadable (no internet, as on the machine that wrote the series and in its CI), the
loader says so in one line and the *same* pipeline runs with the shapes model trained in notebook 09
on shapes images instead. :func:`load_pipeline` returns which path ran.

The download attempt fails fast and quietly: a 3-second ``HEAD`` probe first (an offline machine
answers in well under a second), then ``torch.hub.download_url_to_file`` under a socket timeout;
any failure is caught and turned into one sentence, and a partial file is removed. Nothing is
written to stderr on failure (tqdm's bar only starts once the server answers).

Set the environment variable ``MASKRCNN_SBS_OFFLINE=1`` to skip the COCO weights even when they are
cached or downloadable (for example to make ``pytest --nbval`` compare the stored offline outputs on
a machine with internet).

Conventions: images ``Tensor[3, H, W]`` (``uint8`` in ``[0, 255]`` or float in ``[0, 1]``), boxes
``(x1, y1, x2, y2)`` in pixels with (0, 0) the top-left pixel and ``y`` growing downwards, masks
``Tensor[D, 1, H, W]`` probabilities at the image's own size (torchvision's eval-mode output).

Written for notebook 11.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "PHOTOS",
    "OFFLINE_ENV",
    "UNAVAILABLE",
    "FetchResult",
    "Photo",
    "load_photos",
    "coco_weights",
    "cached_weights_path",
    "fetch_weights",
    "DetectionPipeline",
    "coco_pipeline",
    "shapes_pipeline",
    "load_pipeline",
    "filter_detections",
    "time_inference",
]

OFFLINE_ENV = "MASKRCNN_SBS_OFFLINE"
"""Environment variable: when set to a non-empty value other than ``0``, never use the COCO weights."""


@dataclass(frozen=True)
class Photo:
    """A photograph shipped inside scikit-image, with where it comes from and its licence."""

    name: str
    """The ``skimage.data`` function that returns it."""
    title: str
    credit: str
    licence: str
    source: str


PHOTOS: dict[str, Photo] = {
    "astronaut": Photo("astronaut", "Eileen Collins, NASA astronaut", "NASA (Great Images in NASA)",
                       "public domain (no known copyright restrictions)", "https://flic.kr/p/r9qvLn"),
    "coffee": Photo("coffee", "A cup of coffee", "Rachel Michetti, courtesy of Pikolo Espresso Bar",
                    "CC0 (no copyright restrictions)", "scikit-image sample data"),
    "chelsea": Photo("chelsea", "Chelsea the cat", "Stefan van der Walt", "CC0 (no copyright restrictions)",
                     "scikit-image sample data"),
    "rocket": Photo("rocket", "Falcon 9 launching DSCOVR", "SpaceX", "public domain (released by SpaceX)",
                    "https://www.flickr.com/photos/spacexphotos/16511594820/"),
}
"""The four photographs notebook 11 uses; licences as scikit-image's docstrings state them."""


def load_photos(names: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Load scikit-image's sample photographs (they ship inside the package: nothing is downloaded).

    Args:
        names: keys of :data:`PHOTOS` (``None``: all four, in that order).

    Returns:
        ``{name: Tensor[3, H, W] uint8}`` (channels first, as torchvision's models take them).
    """
    import skimage.data

    if names is None:
        names = list(PHOTOS)
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list of photo names from {list(PHOTOS)}, got {names!r}")
    unknown = [n for n in names if n not in PHOTOS]
    if unknown:
        raise ValueError(f"unknown photo(s) {unknown}; choose from {list(PHOTOS)}")
    photos = {}
    for name in names:
        array = np.ascontiguousarray(getattr(skimage.data, name)())  # [H, W, 3] uint8
        photos[name] = torch.from_numpy(array).permute(2, 0, 1).contiguous()  # [3, H, W]
    return photos


# ----------------------------------------------------------------------------------------------
# the weights: cached, downloaded, or unavailable
# ----------------------------------------------------------------------------------------------
def coco_weights() -> Any:
    """``torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT`` (COCO_V1)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    return MaskRCNN_ResNet50_FPN_Weights.DEFAULT


def cached_weights_path(weights: Any = None) -> Path:
    """Where ``torch.hub`` keeps (or would keep) the weights file: ``<hub dir>/checkpoints/<file name>``.

    Args:
        weights: a torchvision ``WeightsEnum`` member (``None``: :func:`coco_weights`).

    Returns:
        The path (it may not exist).
    """
    weights = coco_weights() if weights is None else weights
    url = getattr(weights, "url", None)
    if not isinstance(url, str):
        raise TypeError(f"weights must be a torchvision WeightsEnum member with a url, got {weights!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _offline_forced() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


UNAVAILABLE = "not in the torch.hub cache and not downloadable here"
"""The one reason :func:`fetch_weights` gives when the weights cannot be had (the same sentence
offline, after a failed download, and under :data:`OFFLINE_ENV`, so that stored outputs match)."""


@dataclass
class FetchResult:
    """What :func:`fetch_weights` found.

    Attributes:
        ok: the weights file is in the cache now.
        reason: one fixed sentence (``"found in the torch.hub cache"``, ``"downloaded into the
            torch.hub cache"`` or :data:`UNAVAILABLE`): no paths, no error texts that vary by machine.
        detail: what actually happened (the exception's type and message), for a curious reader.
        path: the cached file when ``ok``.
    """

    ok: bool
    reason: str
    detail: str = ""
    path: Path | None = None


def fetch_weights(weights: Any = None, timeout: float = 3.0, progress: bool = True) -> FetchResult:
    """Make sure the weights file is in ``torch.hub``'s cache, downloading it when possible.

    Order: :data:`OFFLINE_ENV` set -> unavailable (as if offline); the file in the cache -> ok; a
    ``HEAD`` probe of the URL with ``timeout`` -> on success ``torch.hub.download_url_to_file``
    (sha256 prefix checked) under a socket timeout of ``timeout`` per blocking operation.

    Args:
        weights: a torchvision ``WeightsEnum`` member (``None``: :func:`coco_weights`).
        timeout: seconds for the probe and for each blocking socket operation of the download
            (not for the whole download).
        progress: show torch.hub's tqdm bar while downloading (it only starts once the server
            has answered, so a failed attempt writes nothing to stderr).

    Returns:
        :class:`FetchResult`. Never raises for a network failure: that is reported in ``detail``.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    weights = coco_weights() if weights is None else weights
    path = cached_weights_path(weights)
    if _offline_forced():
        return FetchResult(False, UNAVAILABLE, f"the environment variable {OFFLINE_ENV} is set (simulated offline)")
    if path.is_file():
        return FetchResult(True, "found in the torch.hub cache", "cached", path)
    from urllib.request import Request, urlopen

    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(float(timeout))
        with urlopen(Request(weights.url, method="HEAD", headers={"User-Agent": "torch.hub"}), timeout=timeout):
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(path.name)  # "...-bf2d0c1e.pth": the sha256 prefix
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=match.group(1) if match else None,
                                       progress=progress)
    except Exception as exc:  # noqa: BLE001 - any failure means "not available", said in one line
        with contextlib.suppress(OSError):
            if path.is_file() and not path.stat().st_size:
                path.unlink()
        return FetchResult(False, UNAVAILABLE, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    finally:
        socket.setdefaulttimeout(previous)
    return FetchResult(True, "downloaded into the torch.hub cache", "downloaded", path)


# ----------------------------------------------------------------------------------------------
# one pipeline for both models: preprocess -> model -> outputs with names
# ----------------------------------------------------------------------------------------------
@dataclass
class DetectionPipeline:
    """A detection model in eval mode with its preprocessing and category names.

    Attributes:
        model: torchvision ``MaskRCNN`` (eval mode).
        preprocess: ``image Tensor[3, H, W] -> Tensor[3, H, W] float in [0, 1]`` (the weights'
            ``transforms()``; the resize to 800 and the normalisation happen inside the model).
        categories: ``categories[label]`` names a label (index 0 is the background).
        source: ``"coco"`` (torchvision's COCO weights, or the same architecture without weights in
            tests) or ``"shapes"`` (the series' own model).
        description: one line saying which model runs, for the notebook to print.
    """

    model: nn.Module
    preprocess: Callable[[Tensor], Tensor]
    categories: list[str]
    source: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)

    @torch.inference_mode()
    def __call__(self, images: Sequence[Tensor]) -> list[dict[str, Tensor]]:
        """Run the model on a list of ``Tensor[3, H, W]`` images; one output dict per image.

        Returns:
            ``boxes Tensor[D, 4]``, ``labels Tensor[D]``, ``scores Tensor[D]`` (sorted, highest
            first), ``masks Tensor[D, 1, H, W]`` probabilities, at each image's own size.
        """
        if isinstance(images, Tensor) or not isinstance(images, (list, tuple)):
            raise TypeError("images must be a list of Tensor[3, H, W] images")
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
                raise ValueError(f"images[{i}] must be Tensor[3, H, W], got {getattr(image, 'shape', type(image))}")
        self.model.eval()
        return [{k: v.detach() for k, v in out.items()} for out in self.model([self.preprocess(im) for im in images])]


def coco_pipeline(model: nn.Module | None = None, weights: Any = None) -> DetectionPipeline:
    """The COCO pipeline: ``maskrcnn_resnet50_fpn`` with the weights' preprocessing and categories.

    Args:
        model: the model to run. ``None``: build ``maskrcnn_resnet50_fpn(weights=weights)`` (the
            weights file must be in the cache, see :func:`fetch_weights`). Tests pass a model built
            with ``weights=None, weights_backbone=None`` to check the plumbing without the file.
        weights: the ``WeightsEnum`` member whose ``transforms()`` and ``meta["categories"]`` are
            used (``None``: :func:`coco_weights`).

    Returns:
        A :class:`DetectionPipeline` with ``source="coco"``.
    """
    weights = coco_weights() if weights is None else weights
    if model is None:
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        model = maskrcnn_resnet50_fpn(weights=weights, progress=False)
        what = f"torchvision maskrcnn_resnet50_fpn with {type(weights).__name__}.{weights.name} (COCO)"
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    else:
        what = "maskrcnn_resnet50_fpn supplied by the caller, with the COCO weights' preprocessing and names"
    return DetectionPipeline(model.eval(), weights.transforms(), list(weights.meta["categories"]), "coco", what,
                             {"metrics": dict(weights.meta.get("_metrics", {}))})


def _shapes_checkpoint() -> tuple[nn.Module, str]:
    from helpers.project import ABLATION_CHECKPOINTS, SHAPES_CHECKPOINT

    shipped = SHAPES_CHECKPOINT
    if shipped.is_file():
        from helpers.model import load_checkpoint

        model, _ = load_checkpoint(shipped)
        return model, "the shapes Mask R-CNN trained in notebook 09 (data/shapes_maskrcnn.pt)"
    ablation = ABLATION_CHECKPOINTS / "align_stride4_seed0.pt"
    if ablation.is_file():
        from helpers.ablation import load_half_checkpoint

        model, _ = load_half_checkpoint(ablation)
        return model, ("the shapes Mask R-CNN of notebook 10's ablation (RoIAlign, stride 4; "
                       "data/shapes_maskrcnn.pt is missing)")
    raise FileNotFoundError("no shapes model in data/: train one with `python -m helpers.train`")


def shapes_pipeline(model: nn.Module | None = None) -> DetectionPipeline:
    """The fallback pipeline: the series' shapes Mask R-CNN, with the same preprocessing as COCO's.

    Args:
        model: a shapes model (``None``: load ``data/shapes_maskrcnn.pt`` from notebook 09, or when
            that file is missing the RoIAlign model kept by notebook 10's ablation).

    Returns:
        A :class:`DetectionPipeline` with ``source="shapes"`` and ``helpers.shapes.CLASSES`` names.
    """
    from helpers.shapes import CLASSES

    if model is None:
        model, what = _shapes_checkpoint()
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or None, got {type(model).__name__}")
    else:
        what = "a shapes Mask R-CNN supplied by the caller"
    return DetectionPipeline(model.eval(), coco_weights().transforms(), list(CLASSES), "shapes", what)


def load_pipeline(timeout: float = 3.0, progress: bool = True) -> tuple[DetectionPipeline, str]:
    """The COCO pipeline when its weights are cached or downloadable, else the shapes fallback.

    Args:
        timeout: passed to :func:`fetch_weights`.
        progress: show the download's progress bar (only when a download actually runs).

    Returns:
        ``(pipeline, message)``: ``message`` is one line saying what happened to the weights (no
        machine paths, no timings), for the notebook to print.
    """
    fetched = fetch_weights(timeout=timeout, progress=progress)
    if fetched.ok:
        return coco_pipeline(), f"COCO weights: {fetched.reason}."
    return shapes_pipeline(), f"COCO weights: {fetched.reason}."


def filter_detections(output: Mapping[str, Tensor], score_thresh: float = 0.5) -> dict[str, Tensor]:
    """Keep the detections scoring at least ``score_thresh``.

    Args:
        output: one eval-mode output dict (``boxes Tensor[D, 4]``, ``labels``, ``scores``, optional
            ``masks Tensor[D, 1, H, W]``).
        score_thresh: in ``[0, 1]``.

    Returns:
        The same keys with only the kept rows (order kept: highest score first).
    """
    if not isinstance(output, Mapping) or not {"boxes", "labels", "scores"} <= set(output):
        raise TypeError("output must be a dict with 'boxes', 'labels' and 'scores' (a torchvision detection output)")
    if isinstance(score_thresh, bool) or not isinstance(score_thresh, (int, float)) or not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be a float in [0, 1], got {score_thresh!r}")
    keep = output["scores"] >= score_thresh  # [D] bool
    return {k: v[keep] for k, v in output.items()}


def time_inference(model: nn.Module, image: Tensor, repeats: int = 1, warmup: int = 0) -> float:
    """Median wall time in seconds of ``model([image])`` in eval mode under ``torch.inference_mode``.

    Args:
        model: a torchvision detection model.
        image: ``Tensor[3, H, W]`` float in ``[0, 1]`` (already preprocessed).
        repeats: timed calls (the median is returned).
        warmup: untimed calls first.

    Returns:
        Seconds (varies from run to run and machine to machine: never compare it exactly).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be Tensor[3, H, W], got {getattr(image, 'shape', type(image))}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    model.eval()
    times = []
    with torch.inference_mode():
        for k in range(warmup + repeats):
            start = time.perf_counter()
            model([image])
            if k >= warmup:
                times.append(time.perf_counter() - start)
    return float(np.median(times))

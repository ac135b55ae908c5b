"""The series itself: one line per notebook, in reading order. Everything else reads this list.

:data:`SERIES` is the manifest of the notebooks. From it come:

- the navigation bars of every notebook and the table of notebooks in the README
  (``python tools/nb.py nav`` writes both; ``nav --check`` fails when they, a notebook's heading,
  or the files in ``notebooks/`` disagree with this list);
- the map of the series drawn in notebook 00 (:func:`helpers.viz.draw_pipeline`);
- the tests that check the README and the notebooks.

Adding a notebook: write ``notebooks/NN_short_name.ipynb`` whose first heading is
``# NN · <title>``, add one :class:`Notebook` line to :data:`SERIES` below, then run
``python tools/nb.py nav``. A notebook split in two keeps its first part at the old address (links
from outside point there) and numbers the second part with a letter: ``05`` then ``05b``, so that
the later notebooks keep their numbers and addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NUMBER = re.compile(r"(\d\d)([a-z]?)")
"""A notebook number: two digits and an optional lowercase letter (``"05"``, ``"05b"``)."""

NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"
"""The files of the series in ``notebooks/`` (``NN_name.ipynb`` or ``NNx_name.ipynb``); filter them with
:func:`is_notebook_file`."""


def number_key(number: str) -> tuple[int, str]:
    """The sort key of a notebook number: ``"05"`` -> ``(5, "")``, ``"05b"`` -> ``(5, "b")``.

    Raises:
        ValueError: ``number`` is not two digits with an optional lowercase letter.
    """
    match = NUMBER.fullmatch(number) if isinstance(number, str) else None
    if match is None:
        raise ValueError(f"number must be two digits with an optional lowercase letter ('05', '05b'), got {number!r}")
    return int(match.group(1)), match.group(2)


def number_of_file(name: str) -> str | None:
    """The notebook number a file name starts with (``"05b_rpn_losses.ipynb"`` -> ``"05b"``), or ``None``
    when the name is not ``NN_name.ipynb`` / ``NNx_name.ipynb``."""
    match = re.fullmatch(r"(\d\d[a-z]?)_\w+\.ipynb", name)
    return match.group(1) if match else None


def notebook_files(folder: Path) -> list[Path]:
    """The notebooks of the series in ``folder``, in reading order (``05`` before ``05b`` before ``06``)."""
    found = [p for p in folder.glob(NOTEBOOK_GLOB) if number_of_file(p.name) is not None]
    return sorted(found, key=lambda p: (number_key(number_of_file(p.name)), p.name))

STAGES: tuple[str, ...] = ("bilinear", "roialign", "roipool", "backbone", "rpn", "boxhead", "maskhead",
                           "whole model")
"""The places a notebook can take in the map of the series (:func:`helpers.viz.draw_pipeline`): a
stage of Mask R-CNN (or one of RoIAlign's foundations, ``bilinear`` and ``roipool``), or
``"whole model"`` for the notebooks that use the model assembled."""

PIPELINE_PATH: tuple[str, ...] = ("backbone", "rpn", "roialign", "boxhead", "maskhead")
"""The stages one image passes through, in order (image -> ... -> masks); the other stages of
:data:`STAGES` are RoIAlign's foundations (``bilinear``, ``roipool``) and ``"whole model"``. The
pipeline strip at the top of every notebook (``tools/nb.py nav``) follows this order."""

STAGE_LABELS: dict[str, str] = {"bilinear": "bilinear interpolation", "roialign": "RoIAlign",
                                "roipool": "RoIPool vs RoIAlign", "backbone": "backbone + FPN", "rpn": "RPN",
                                "boxhead": "box head", "maskhead": "mask head", "whole model": "the whole model"}
"""A few words naming each stage of :data:`STAGES` in the pipeline strip."""


@dataclass(frozen=True)
class Notebook:
    """One notebook of the series.

    Attributes:
        number: two digits, ``"00"``, ``"01"``..., with a lowercase letter for the later part of a
            notebook split in two (``"05b"``); the file name starts with it.
        file: the file name inside ``notebooks/``, ``NN_short_name.ipynb`` (``NNx_short_name.ipynb``).
        title: the notebook's heading without its number: the heading reads ``# NN · <title>``.
        short_title: a few words for the map of the series (notebook 00).
        stage: where the notebook sits in the map of the series (one of :data:`STAGES`), or
            ``None`` for a notebook the map does not show (00, the map itself).
        learn: one line, "what you learn", for the README's table.
    """

    number: str
    file: str
    title: str
    short_title: str
    stage: str | None
    learn: str

    def __post_init__(self) -> None:
        number_key(self.number)   # ValueError unless two digits and an optional lowercase letter
        if not (self.file.startswith(f"{self.number}_") and self.file.endswith(".ipynb")):
            raise ValueError(f"file must be named {self.number}_<short_name>.ipynb, got {self.file!r}")
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES} or None, got {self.stage!r}")

    @property
    def heading(self) -> str:
        """The text of the notebook's first ``# `` heading (and of its links in navigation bars):
        ``"NN · <title>"``."""
        return f"{self.number} · {self.title}"


SERIES: tuple[Notebook, ...] = (
    Notebook("00", "00_instance_segmentation.ipynb", "Instance segmentation, and the map of the series",
             "instance segmentation, and the map of the series", None,
             "Instance vs semantic segmentation on a synthetic image; the map of the whole series."),
    Notebook("01", "01_bilinear_interpolation.ipynb",
             "Bilinear interpolation: reading a feature map between its pixels", "bilinear interpolation", "bilinear",
             "Bilinear interpolation by hand: the 4×4 worked example and its **7.2**, checked against "
             "`grid_sample`; a slider moves the sample point."),
    Notebook("02", "02_roi_align.ipynb", "RoIAlign: the rules",
             "RoIAlign: the rules", "roialign",
             "RoIAlign's rules in full: bins, `sampling_ratio`, `spatial_scale`, `aligned`, boxes outside the map; "
             "a loop version equal to torchvision; RoI sliders."),
    Notebook("02b", "02b_roi_align_fast.ipynb", "RoIAlign made fast and differentiable",
             "RoIAlign: fast and differentiable", "roialign",
             "RoIAlign vectorised and timed, equal to torchvision in float64 and float32; `helpers.roi.roi_align`, "
             "the one the model uses; the gradient checked; the max variant."),
    Notebook("03", "03_roipool_vs_roialign.ipynb", "RoIPool vs RoIAlign: what rounding costs",
             "RoIPool vs RoIAlign", "roipool",
             "RoIPool rebuilt and set against RoIAlign: the staircase, and what rounding costs in mask IoU at "
             "strides 16 and 32."),
    Notebook("04", "04_backbone_fpn.ipynb", "Backbone, strides and the FPN",
             "backbone and FPN", "backbone",
             "The ResNet-50 + FPN backbone: feature maps, strides, `spatial_scale = 1/stride`, and which level "
             "each box is pooled from."),
    Notebook("05", "05_rpn.ipynb", "The region proposal network: anchors, matching and sampling",
             "RPN: anchors and matching", "rpn",
             "The region proposal network, part 1: anchors, box encoding, IoU matching and sampling (which "
             "anchors learn what), each equal to torchvision; panels for the IoU thresholds and for a moved ground-truth box."),
    Notebook("05b", "05b_rpn_losses_proposals.ipynb", "The region proposal network: losses, NMS and proposals",
             "RPN: losses and proposals", "rpn",
             "The region proposal network, part 2: the head's outputs, its two losses, decoding, top-N, NMS and "
             "proposals, each equal to torchvision; the trained model's proposals and their recall."),
    Notebook("06", "06_box_head.ipynb", "The box head and its losses",
             "box head and losses", "boxhead",
             "The box head: two FC layers, class scores and box deltas, the losses by hand, and post-processing."),
    Notebook("07", "07_mask_head.ipynb", "The mask head: targets, a per-class loss, and pasting masks back",
             "mask head", "maskhead",
             "The mask head: 4 conv + deconv 14→28 + 1×1 to K masks, mask targets, per-class BCE, "
             "L = Lcls + Lbox + Lmask, pasting masks back."),
    Notebook("08", "08_whole_model.ipynb", "The whole model: one image through every stage",
             "the whole model, one image through every stage", "whole model",
             "The whole model: one image through every stage, and the series' own Mask R-CNN, built only "
             "from the rebuilt pieces, equal to torchvision's."),
    Notebook("09", "09_train_and_evaluate.ipynb", "Train on a CPU, score with COCO mask AP",
             "train on a CPU, score with COCO mask AP", "whole model",
             "Train a small Mask R-CNN from scratch on a CPU and score it with COCO mask AP."),
    Notebook("10", "10_roialign_vs_roipool_ablation.ipynb",
             "RoIAlign against RoIPool: the paper's ablation, in miniature",
             "RoIAlign vs RoIPool ablation", "whole model",
             "The paper's RoIAlign-vs-RoIPool ablation in miniature, at a fine and a coarse stride, over several "
             "seeds."),
    Notebook("11", "11_pretrained_coco_model.ipynb", "The pretrained COCO Mask R-CNN on real photographs",
             "the pretrained COCO model on real photos", "whole model",
             "torchvision's pretrained `maskrcnn_resnet50_fpn` on real photographs (with an offline path)."),
)
"""The notebooks of the series, in reading order (numbers 00, 01, 02... without gaps; a split notebook's
later part carries a letter: 05, 05b, 06)."""


def expected_numbers(numbers: list[str]) -> list[str]:
    """The numbers a manifest with these numbers must have, in order: the digits run 00, 01, 02...
    without gaps, and the parts of one number run ``NN``, ``NNb``, ``NNc``... (only the digits and
    letters present are used: ``["00", "01", "01b"]`` is sound, ``["00", "01b"]`` is not)."""
    parts: dict[int, int] = {}
    for number in numbers:
        digits, letter = number_key(number)
        parts[digits] = max(parts.get(digits, 1), ord(letter) - ord("a") + 1 if letter else 1)
    return [f"{k:02d}" + ("" if j == 0 else chr(ord("a") + j)) for k in range(max(parts, default=-1) + 1)
            for j in range(parts.get(k, 1))]


def check_series(series: tuple[Notebook, ...] | list[Notebook]) -> list[str]:
    """What is wrong with a manifest: numbers out of order or with gaps, files named twice.

    Returns:
        A list of problems (empty when the manifest is sound).
    """
    problems = []
    numbers = [nb.number for nb in series]
    expected = expected_numbers(numbers)
    if numbers != expected:
        problems.append(f"notebook numbers must run {', '.join(expected)} in order, got {', '.join(numbers)}")
    files = [nb.file for nb in series]
    for file in sorted({f for f in files if files.count(f) > 1}):
        problems.append(f"{file} is listed more than once")
    return problems

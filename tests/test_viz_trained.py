"""helpers.viz.trained: the pictures of the trained model (notebooks 05-07), on small hand-made inputs.

What each picture draws is read back from its artists and compared with the inputs (or with an
independent computation: pycocotools for mask IoU); bad inputs raise errors that name the argument.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

from helpers.viz import (CLASS_COLORS, EXTRA, HIT, MASK_ERROR_COLORS, MISS, RPN_COLORS, box_outlines,  # noqa: E402
                         draw_box_refinement, draw_class_scores, draw_mask_errors, draw_mask_pairs,
                         draw_proposal_panels, draw_recall_curves, mask_errors)

NAMES = ("background", "circle", "square", "triangle")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def image(h: int = 32, w: int = 32) -> torch.Tensor:
    return torch.linspace(0, 1, 3 * h * w).reshape(3, h, w)


# -- mask_errors ---------------------------------------------------------------------------------
def test_mask_errors_codes_by_hand() -> None:
    predicted = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert mask_errors(predicted, truth).tolist() == [[HIT, EXTRA, 0], [MISS, HIT, 0], [0, 0, MISS]]


def test_mask_errors_iou_equals_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, t = rng.random((16, 20)) > 0.5, rng.random((16, 20)) > 0.4
        codes = mask_errors(p, t)
        ours = (codes == HIT).sum() / (codes != 0).sum()
        rle = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in (p, t)]
        assert ours == pytest.approx(mask_utils.iou([rle[0]], [rle[1]], [0])[0, 0], abs=1e-12)


def test_mask_errors_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="predicted and truth"):
        mask_errors(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="predicted and truth"):
        mask_errors(np.zeros(3), np.zeros(3))


# -- draw_mask_errors ----------------------------------------------------------------------------
def test_draw_mask_errors_paints_codes_and_counts() -> None:
    truth = torch.zeros(2, 32, 32, dtype=torch.bool)
    truth[0, 4:12, 4:12] = True
    truth[1, 20:30, 10:20] = True
    predicted = truth.clone()
    predicted[0, 4, 4:12] = False          # 8 missed
    predicted[1, 19, 10:15] = True         # 5 extra
    fig, axes = plt.subplots(1, 2)
    out = draw_mask_errors(image(), predicted, truth, [2, 1], NAMES, axes)
    assert out["counts"] == [{"hit": 56, "missed": 8, "extra": 0}, {"hit": 100, "missed": 0, "extra": 5}]
    assert np.allclose(out["ious"], [56 / 64, 100 / 105])
    rgba = out["overlays"][0].get_array()
    assert np.allclose(rgba[4, 4, :3], to_rgb(MASK_ERROR_COLORS["missed"]))
    assert np.allclose(rgba[5, 5, :3], to_rgb(MASK_ERROR_COLORS["hit"]))
    assert np.allclose(out["overlays"][1].get_array()[19, 10, :3], to_rgb(MASK_ERROR_COLORS["extra"]))
    assert rgba[0, 0, 3] == 0  # neither mask: transparent
    assert "IoU 0.875" in axes[0].get_title() and "8 missed, 0 extra" in axes[0].get_title()
    assert np.allclose(to_rgb(axes[1].title.get_color()), to_rgb(CLASS_COLORS[1]))
    # zoomed to the two masks plus the margin (4 pixels), in pixel-centre coordinates
    assert axes[0].get_xlim() == pytest.approx((-0.5, 15.5)) and axes[0].get_ylim() == pytest.approx((15.5, -0.5))


def test_draw_mask_errors_rejects_bad_input() -> None:
    m = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="labels"):
        draw_mask_errors(image(8, 8), m, m, [1, 2], NAMES)
    with pytest.raises(ValueError, match="predicted and truth"):
        draw_mask_errors(image(8, 8), m, torch.zeros(2, 8, 8), [1], NAMES)
    with pytest.raises(ValueError, match="axes"):
        draw_mask_errors(image(8, 8), m, m, [1], NAMES, axes=plt.subplots(1, 2)[1])


# -- draw_mask_pairs -----------------------------------------------------------------------------
def test_draw_mask_pairs_images_and_ious() -> None:
    pred = torch.zeros(2, 28, 28)
    targ = torch.zeros(2, 28, 28)
    pred[0, :14] = 0.9
    targ[0, :7] = 1.0                       # IoU (7 rows) / (14 rows) = 0.5
    pred[1] = targ[1] = 0.0                 # both empty: IoU 1 by convention
    out = draw_mask_pairs(pred, targ, [3, 1], NAMES)
    assert np.allclose(out["ious"], [0.5, 1.0])
    assert np.array_equal(out["predicted"][0].get_array(), pred[0].numpy().astype(np.float64))
    assert np.array_equal(out["targets"][0].get_array(), targ[0].numpy().astype(np.float64))
    ax = out["predicted"][0].axes
    assert "triangle" in ax.get_title() and "IoU 0.50" in ax.get_title()
    assert np.allclose(to_rgb(ax.spines["left"].get_edgecolor()), to_rgb(CLASS_COLORS[3]))
    with pytest.raises(ValueError, match="predicted and targets"):
        draw_mask_pairs(pred, targ[:1], [3, 1], NAMES)


# -- draw_box_refinement -------------------------------------------------------------------------
def test_draw_box_refinement_boxes_arrows_and_labels() -> None:
    proposals = torch.tensor([[4.0, 6.0, 20.0, 18.0], [2.0, 20.0, 10.0, 30.0]])
    refined = torch.tensor([[5.0, 5.0, 22.0, 19.0], [3.0, 21.0, 11.0, 29.0]])
    gt = torch.tensor([[5.0, 5.0, 22.0, 20.0]])
    fig, ax = plt.subplots()
    out = draw_box_refinement(image(), proposals, refined, gt, [1, 2], NAMES, ax,
                              ious=([0.6, 0.5], [0.9, 0.8]))
    for rects, boxes in ((out["proposals"], proposals), (out["refined"], refined)):
        for rect, (x1, y1, x2, y2) in zip(rects, boxes.tolist()):
            assert np.allclose([*rect.get_xy(), rect.get_width(), rect.get_height()],
                               [x1 - 0.5, y1 - 0.5, x2 - x1, y2 - y1])
    assert [r.get_linestyle() for r in out["proposals"]] == ["--", "--"]
    # two arrows per pair: top-left corner to top-left corner, bottom-right to bottom-right
    starts = [a._posA_posB[0] for a in out["arrows"]]
    ends = [a._posA_posB[1] for a in out["arrows"]]
    assert np.allclose(starts, [(3.5, 5.5), (19.5, 17.5), (1.5, 19.5), (9.5, 29.5)])
    assert np.allclose(ends, [(4.5, 4.5), (21.5, 18.5), (2.5, 20.5), (10.5, 28.5)])
    assert [t.get_text() for t in out["texts"]] == ["circle 0.60→0.90", "square 0.50→0.80"]
    assert np.allclose(to_rgb(out["refined"][1].get_edgecolor()), to_rgb(CLASS_COLORS[2]))


def test_draw_box_refinement_rejects_bad_input() -> None:
    b = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="refined"):
        draw_box_refinement(image(), b, b[:1], b, [1, 1], NAMES)
    with pytest.raises(ValueError, match="labels"):
        draw_box_refinement(image(), b, b, b, [1], NAMES)
    with pytest.raises(ValueError, match="ious"):
        draw_box_refinement(image(), b, b, b, [1, 1], NAMES, ious=([0.5], [0.6]))
    with pytest.raises(ValueError, match="proposals"):
        draw_box_refinement(image(), torch.zeros(2, 3), b, b, [1, 1], NAMES)


# -- draw_class_scores ---------------------------------------------------------------------------
def test_draw_class_scores_values_written() -> None:
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.0, 0.25, 0.5, 0.25]])
    out = draw_class_scores(probs, NAMES, ["a", "b"])
    assert [[t.get_text() for t in row] for row in out["texts"]] == [["0.70", "0.10", "0.10", "0.10"],
                                                                     ["0.00", "0.25", "0.50", "0.25"]]
    assert np.allclose(out["image"].get_array(), probs.numpy())
    with pytest.raises(ValueError, match="probabilities"):
        draw_class_scores(probs, NAMES, ["a"])
    with pytest.raises(ValueError, match="probabilities"):
        draw_class_scores(probs * 2, NAMES, ["a", "b"])


# -- notebook 05b --------------------------------------------------------------------------------
def test_draw_proposal_panels_draws_every_box() -> None:
    before = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    fig, axes = plt.subplots(1, 2)
    out = draw_proposal_panels(image(), gt, {"before NMS": before, "after NMS": before[[0, 2]]}, axes)
    assert np.allclose(out["before NMS"].get_segments(), box_outlines(before))
    assert len(out["after NMS"].get_segments()) == 2
    assert np.allclose(out["after NMS"].get_colors()[0][:3], to_rgb(RPN_COLORS["proposal"]))
    assert np.allclose(out["gt"][1].get_segments(), box_outlines(gt))
    assert [ax.get_title() for ax in axes] == ["before NMS: 3 proposals", "after NMS: 2 proposals"]
    with pytest.raises(ValueError, match="stages"):
        draw_proposal_panels(image(), gt, {})
    with pytest.raises(ValueError, match="axes"):
        draw_proposal_panels(image(), gt, {"a": before}, axes)


def test_draw_recall_curves_lines_and_legend() -> None:
    t = np.round(np.arange(0.5, 0.951, 0.05), 2)
    before = np.linspace(1.0, 0.1, len(t))
    after = before * 0.9
    out = draw_recall_curves(t, {"before NMS": before, "after NMS": after})
    assert np.allclose(out["lines"]["after NMS"].get_ydata(), after)
    assert np.allclose(out["lines"]["before NMS"].get_xdata(), t)
    assert out["labels"]["before NMS"] == f"before NMS; 1.00 at 0.5; {before[4]:.2f} at 0.7"
    legend = out["lines"]["before NMS"].axes.get_legend()
    assert [x.get_text() for x in legend.get_texts()] == list(out["labels"].values())
    with pytest.raises(ValueError, match="thresholds"):
        draw_recall_curves(t[::-1], {"a": before})
    with pytest.raises(ValueError, match="marks"):
        draw_recall_curves(t, {"a": before}, marks=(0.52,))
    with pytest.raises(ValueError, match=r"recalls\['a'\]"):
        draw_recall_curves(t, {"a": before[:3]})

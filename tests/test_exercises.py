"""The exercise checkers (helpers.exercises) and the exercise cells of notebooks 00-11.

Every checker accepts the solution written in its notebook (run from the notebook's folded
``Solution`` block), refuses at least one wrong answer with a message that names the mistake, and
answers ``None`` with "not answered yet"; the committed answer cells hold that placeholder.
"""

from __future__ import annotations

import json
import math
import re

import nbformat
import numpy as np
import pytest
import torch

from helpers import exercises
from helpers.exercises import EXERCISES, check, exercise_ids, grade
from helpers.project import ROOT
from helpers.series import notebook_files, number_of_file

NOTEBOOKS = notebook_files(ROOT / "notebooks")
SOLUTION = re.compile(r"<details><summary>Solution</summary>\s*```python\n(.*?)\n```", re.S)


def exercise_cells() -> dict[str, tuple[str, nbformat.NotebookNode]]:
    cells = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            key = cell.metadata.get("exercise")
            if key:
                cells[f"{number_of_file(path.name)}:{key}" if key in ("intro", "import") else key] = (path.name, cell)
    return cells


CELLS = exercise_cells()


def solution_of(eid: str):
    _, cell = CELLS[f"{eid}/question"]
    match = SOLUTION.search(cell.source)
    assert match, f"exercise {eid}: no ```python block in a <details><summary>Solution</summary> block"
    namespace: dict = {}
    exec(compile(match.group(1), f"<solution {eid}>", "exec"), namespace)  # noqa: S102 - our own notebook text
    return namespace["answer"]


def test_every_notebook_has_checked_exercises() -> None:
    for path in NOTEBOOKS:
        ids = exercise_ids(number_of_file(path.name))
        assert 1 <= len(ids) <= 4, f"{path.name}: {len(ids)} checked exercises"
        for eid in ids:
            assert f"{eid}/question" in CELLS and f"{eid}/answer" in CELLS, f"{eid}: cells missing from {path.name}"
    assert set(exercise_ids()) == {k.split("/")[0] for k in CELLS if "/" in k}


@pytest.mark.parametrize("eid", exercise_ids())
def test_the_notebook_solution_is_right(eid: str) -> None:
    verdict = grade(eid, solution_of(eid))
    assert verdict.right, verdict.message
    assert verdict.message.startswith(f"Exercise {eid}: right")


@pytest.mark.parametrize("eid", exercise_ids())
def test_none_is_not_answered_yet(eid: str, capsys: pytest.CaptureFixture[str]) -> None:
    verdict = grade(eid, None)
    assert verdict.status == "unanswered" and not verdict.right
    check(eid, None)
    printed = capsys.readouterr().out
    assert printed == verdict.message + "\n"
    assert f"Exercise {eid}: not answered yet" in printed and "Hint:" in printed


@pytest.mark.parametrize("eid", exercise_ids())
def test_every_listed_mistake_is_recognised_and_is_not_the_answer(eid: str) -> None:
    ex = EXERCISES[eid]
    mistakes = ex.mistakes()
    assert mistakes, f"{eid} lists no common mistake"
    for value, message in mistakes:
        verdict = grade(eid, value)
        assert not verdict.right, f"{eid}: the mistake {value!r} is accepted"
        assert message in verdict.message, f"{eid}: {value!r} got {verdict.message!r}, not {message!r}"


def _stride4_align_mask_ap() -> list[float]:
    """The three seeds' mask AP (percent) of RoIAlign at stride 4, from the shipped results (notebook 10's table)."""
    runs = json.loads((ROOT / "data" / "ablation_results.json").read_text())["runs"]
    return [100 * r["mask"]["AP"] for r in runs if r["op"] == "align" and r["feature_stride"] == 4]


# Wrong answers written here by hand, as a student would get them, with the words the diagnosis must use.
WRONG = [
    ("00.1", 441 / 3331, "+1"),
    ("00.1", 0.25, "smaller"),
    ("00.2", 0.3, "small"),
    ("01.1", 15.0, "1:3 weighting"),
    ("01.1", 12, "nearest"),
    ("01.2", (0.56, 0.24, 0.14, 0.06), "downwards"),
    ("01.3", (-1, 1), "align_corners=True"),
    ("02.1", [[8.5, 9.5], [12.5, 13.5]], "aligned=False"),
    ("02.1", [[0, 0], [0, 0]], "spatial_scale"),
    ("02.2", 2, "ceil"),
    ("02.2", 36, "after spatial_scale"),
    ("02b.1", 4.0, "reads 0"),
    ("02b.1", 12.0, "averages"),
    ("02b.1", 2.0, "repeats column 0"),
    ("03.1", 7, "round"),
    ("03.1", 6.5, "maximum"),
    ("03.2", [16], "floor"),
    ("03.2", [0.5, 1.5], "image pixels"),
    ("04.1", 5, "square root"),
    ("04.1", "P4", "224-px"),
    ("04.2", 317, "floor"),
    ("05.1", 672 / 1024, "anchor's area"),
    ("05.2", 4092, "three ratios"),
    ("05b.1", 0.70007, "number of positives"),
    ("05b.1", 0.00245, "beta = 1"),
    ("05b.1", 0.0055, "close"),
    ("05b.2", [3, 0], "already suppressed"),
    ("05b.2", [0, 1, 2, 3], "0.82 > 0.7"),
    ("06.1", (45.57, -2.10, 94.43, 42.10), "weights (10, 10, 5, 5)"),
    ("06.2", (128, 384), "cap"),
    ("07.1", 0.5, None),
    ("07.1", 1.0, "adaptive grid"),
    ("07.2", 3 * 4 * 784, "ground-truth class"),
    ("08.1", [0, 3], "class-agnostic"),
    ("08.1", [3, 2, 0], None),  # the right set in another order is right: see test below
    ("08.2", 1000, "per level"),
    ("09.1", 0.625, "101 recall points"),
    ("09.1", (0.25 * 1 + 0.25 * 2 / 3 + 0.25 * 0.75), "raw precision"),
    ("09.2", 0.6287, "removes the last one"),
    ("09.2", 2 / 3, "past the highest recall"),
    # 10.x read the shipped ablation results: the student's slips computed from them, rounded as read off the table
    ("10.1", round(1 - EXERCISES["10.1"].reference(), 2), "keeps"),
    ("10.2", round(float(np.std(np.array(_stride4_align_mask_ap()), ddof=0)), 1), "ddof=1"),
    ("11.1", (444, 1333), "floors"),
    ("11.1", (800, 2402), "1333"),
    ("11.2", 11, "__background__"),
]


@pytest.mark.parametrize("eid, answer, words", WRONG)
def test_a_wrong_answer_says_what_is_wrong(eid: str, answer, words: str | None) -> None:
    verdict = grade(eid, answer)
    if eid == "08.1" and words is None:
        assert verdict.right  # the kept boxes are a set: any order is right
        return
    assert verdict.status == "wrong"
    assert EXERCISES[eid].where in verdict.message  # where to look
    if words is not None:
        assert words in verdict.message, verdict.message


def test_an_unrecognised_wrong_answer_gets_where_to_look_and_the_hint() -> None:
    verdict = grade("01.1", 11.0)
    assert verdict.status == "wrong"
    assert "11 is not what the reference computes" in verdict.message
    assert EXERCISES["01.1"].hint in verdict.message and EXERCISES["01.1"].where in verdict.message
    close = grade("09.1", 0.63)
    assert "close" in close.message and not close.right


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"exercise must be one of 00\.1, "):
        grade("1.1", 13)
    with pytest.raises(ValueError, match="exercise must be one of"):
        check(1.1, 13)
    with pytest.raises(ValueError, match="notebook must be a notebook number"):
        exercise_ids("1")
    with pytest.raises(ValueError, match="notebook must be a notebook number"):
        exercise_ids("05B")
    assert exercise_ids("05b") and all(e.startswith("05b.") for e in exercise_ids("05b"))
    assert not any(e.startswith("05b.") for e in exercise_ids("05"))
    assert exercise_ids("02b") == ["02b.1"] and exercise_ids("02") == ["02.1", "02.2"]
    wrong_type = grade("01.1", "thirteen")
    assert wrong_type.status == "wrong" and "`answer` must be a number" in wrong_type.message
    wrong_length = grade("01.2", [0.25, 0.75])
    assert wrong_length.status == "wrong" and "4 number(s); got 2" in wrong_length.message
    assert grade("01.1", torch.tensor(13.0)).right and grade("01.2", np.array([0.14, 0.06, 0.56, 0.24])).right


def test_the_committed_answer_cells_are_placeholders_with_the_not_answered_output() -> None:
    for eid in exercise_ids():
        name, cell = CELLS[f"{eid}/answer"]
        assert cell.cell_type == "code"
        assert cell.source.splitlines()[0].startswith("answer = None  # your answer"), f"{name} {eid}"
        assert f'check("{eid}", answer)' in cell.source
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if cell.get("outputs"):  # executed notebooks store exactly what check prints for None
            assert text == grade(eid, None).message + "\n", f"{name} {eid}: stored output {text!r}"


def test_the_checkers_agree_with_the_series_own_code() -> None:
    """The references are torchvision / grid_sample / pycocotools; the series' own functions, taught in
    the notebooks, must give the same answers (a second, independent way to the same numbers)."""
    from helpers import box_coder, fpn, roi

    feature = torch.arange(1.0, 17.0, dtype=torch.float64).reshape(4, 4)
    assert math.isclose(roi.bilinear(feature, 3.0, 2.25), EXERCISES["01.1"].reference(), abs_tol=1e-12)
    ours = roi.roi_align(feature[None, None], torch.tensor([[0.0, 16, 16, 48, 48]], dtype=torch.float64), 2,
                         1 / 16, 2, True)[0, 0]
    assert np.allclose(ours.numpy(), EXERCISES["02.1"].reference())
    for fast in (roi.roi_align, roi.roi_align_padded):   # 02b.1: the gradient total, by our backward (autograd)
        feature_02b = feature[None, None].clone().requires_grad_(True)
        out = fast(feature_02b, torch.tensor([[0.0, *exercises.BOX_02B_1]], dtype=torch.float64), exercises.SIZE_02B_1,
                   1.0, exercises.GRID_02B_1, False)
        (grad,) = torch.autograd.grad(out.sum(), feature_02b)
        assert math.isclose(float(grad.sum()), EXERCISES["02b.1"].reference(), rel_tol=1e-12)
    assert int(fpn.map_levels([torch.tensor([[0.0, 0, 112, 112]])])[0]) == EXERCISES["04.1"].reference()
    decoded = box_coder.BoxCoder((10.0, 10.0, 5.0, 5.0)).decode_single(
        torch.tensor([exercises.DELTAS_06], dtype=torch.float64), torch.tensor([exercises.PROPOSAL_06], dtype=torch.float64))
    assert np.allclose(decoded[0].numpy(), EXERCISES["06.1"].reference())
    from helpers import boxes, rpn

    diffs = torch.tensor(exercises.DIFFS_05B, dtype=torch.float64)
    ours_05b = float(rpn.smooth_l1_loss(diffs, torch.zeros_like(diffs), exercises.BETA_05B)) / exercises.SAMPLED_05B
    assert math.isclose(ours_05b, EXERCISES["05b.1"].reference(), rel_tol=1e-12)
    kept = boxes.nms_loop(torch.tensor(exercises.BOXES_05B), torch.tensor(exercises.SCORES_05B), exercises.THRESH_05B)
    assert kept.tolist() == EXERCISES["05b.2"].reference()


def test_checking_leaves_the_global_random_state_alone() -> None:
    """A check at the end of a notebook must not change what a later seeded cell draws."""
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    for eid in exercise_ids():
        grade(eid, solution_of(eid))
    assert torch.equal(torch.random.get_rng_state(), before)


EXERCISE_LABEL = re.compile(r"^#### Exercise (\d\d[a-z]?\.\d+) · |^- \*\*(\d\d[a-z]?\.\d+)\*\* ", re.M)
EXERCISE_REFERENCE = re.compile(r"\b[Ee]xercises? (\d\d[a-z]\.\d+|\d[\d.]*\d|\d)\b")


def test_one_numbering_scheme_for_every_exercise() -> None:
    """Every exercise of notebook NN (05b) is called NN.k (05b.k), checked and open alike: the checked ones first, with
    the ids of helpers.exercises (and of their ``check`` calls), then the open ones, numbered on; a
    reference to an exercise anywhere in the notebooks names an id that exists."""
    labels = {}
    for path in NOTEBOOKS:
        nn = number_of_file(path.name)
        markdown = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        found = [a or b for a, b in EXERCISE_LABEL.findall(markdown)]
        checked = exercise_ids(nn)
        assert found[:len(checked)] == checked, f"{path.name}: checked exercises {found[:len(checked)]}, helpers has {checked}"
        assert found == [f"{nn}.{k}" for k in range(1, len(found) + 1)], f"{path.name}: {found}"
        labels.update(dict.fromkeys(found))
    for path in NOTEBOOKS:
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells)
        for ref in EXERCISE_REFERENCE.findall(text):
            assert re.fullmatch(r"\d\d[a-z]?\.\d+", ref) and ref in labels, \
                f"{path.name}: 'exercise {ref}' is not an NN.k (or NNb.k) id"

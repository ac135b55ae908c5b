"""Tests for the drawing helpers of notebook 00 in helpers.viz: label maps, detections, the series map."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from helpers.series import SERIES  # noqa: E402
from helpers.shapes import CLASSES, instance_map, make_image, semantic_map  # noqa: E402
from helpers.viz import (  # noqa: E402
    CLASS_COLORS,
    INSTANCE_COLORS,
    PIPELINE_NOTEBOOKS,
    draw_detections,
    draw_label_map,
    draw_pipeline,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_pipeline_names_every_notebook_and_connects_the_stages():
    artists = draw_pipeline()
    assert artists.notebooks_named() == [entry.number for entry in SERIES if entry.stage]  # 01-11
    # each stage box carries its own notebook number (the notebooks using the whole model: a box each)
    # (a stage taught in two notebooks, the RPN's 05 and 05b, names both: "notebooks 05, 05b"; RoIAlign's 02 and 02b too)
    expected: dict[str, list[str]] = {}
    for e in SERIES:
        if e.stage:
            expected.setdefault(f"nb{e.number}" if e.stage == "whole model" else e.stage, []).append(e.number)
    assert expected["roialign"] == ["02", "02b"] and expected["nb11"] == ["11"] and expected["rpn"] == ["05", "05b"]
    for key, numbers in expected.items():
        x, y = artists.boxes[key].get_x(), artists.boxes[key].get_y()
        w, h = artists.boxes[key].get_width(), artists.boxes[key].get_height()
        inside = [t.get_text() for t in artists.texts
                  if x <= t.get_position()[0] <= x + w and y <= t.get_position()[1] <= y + h]
        named = ("notebook " if len(numbers) == 1 else "notebooks ") + ", ".join(numbers)
        assert any(named in text for text in inside), (key, inside)
    # the path of one image
    for edge in [("image", "backbone"), ("backbone", "rpn"), ("rpn", "roialign"), ("roialign", "boxhead"),
                 ("roialign", "maskhead"), ("boxhead", "detections"), ("maskhead", "masks")]:
        assert edge in artists.arrows
    # every box lies inside the drawing area (nothing cut off)
    x0, x1 = artists.ax.get_xlim()
    y0, y1 = artists.ax.get_ylim()
    for key, patch in artists.boxes.items():
        assert x0 <= patch.get_x() and patch.get_x() + patch.get_width() <= x1, key
        assert y0 <= patch.get_y() and patch.get_y() + patch.get_height() <= y1, key


def test_pipeline_notebooks_named_reads_the_drawing():
    """notebooks_named reads the texts, so a notebook dropped from the drawing is noticed."""
    artists = draw_pipeline()
    for text in artists.texts:
        text.set_text(text.get_text().replace("notebooks 05, 05b", "RPN"))
    assert "05" not in artists.notebooks_named() and "05b" not in artists.notebooks_named()
    assert "04" in artists.notebooks_named()


def test_pipeline_bad_arguments():
    with pytest.raises(ValueError, match="missing 07"):
        draw_pipeline(notebooks=[n for n in PIPELINE_NOTEBOOKS if n[0] != "07"])


def test_label_maps_follow_the_data():
    _, target = make_image(82, size=96, min_shapes=4, max_shapes=5)
    sem = semantic_map(target, 96, 96)
    ins = instance_map(target, 96, 96)
    drawn = draw_label_map(sem, CLASSES)
    assert drawn.values == sorted(torch.unique(sem).tolist())
    assert drawn.legend_labels == [CLASSES[v] for v in drawn.values]
    assert drawn.colors == [CLASS_COLORS[v] for v in drawn.values]
    assert np.array_equal(np.asarray(drawn.image.get_array()), sem.numpy())
    # the colour of each pixel is the colour of its value
    rgba = drawn.image.to_rgba(np.asarray(drawn.image.get_array()))
    for v in drawn.values:
        y, x = np.argwhere(sem.numpy() == v)[0]
        assert to_hex(rgba[y, x]) == to_hex(CLASS_COLORS[v])
    names = {i: f"#{i}" for i in range(len(target["labels"]) + 1)}
    drawn = draw_label_map(ins, names, colors=INSTANCE_COLORS)
    assert drawn.values == list(range(len(target["labels"]) + 1))
    assert drawn.legend_labels == [f"#{i}" for i in drawn.values]


def test_label_map_cycles_colours_past_the_palette():
    label_map = torch.arange(14).reshape(2, 7)
    drawn = draw_label_map(label_map, [str(i) for i in range(14)], colors=INSTANCE_COLORS, legend=False)
    assert drawn.colors[0] == INSTANCE_COLORS[0]
    assert drawn.colors[11] == INSTANCE_COLORS[1] and drawn.colors[13] == INSTANCE_COLORS[3]
    assert INSTANCE_COLORS[0] not in drawn.colors[1:]  # the "no object" colour is never reused


def test_label_map_bad_arguments():
    with pytest.raises(ValueError, match="non-negative integers"):
        draw_label_map(torch.tensor([[0, -1]]), CLASSES)
    with pytest.raises(ValueError, match="non-negative integers"):
        draw_label_map(torch.tensor([[0.5, 1.0]]), CLASSES)
    with pytest.raises(ValueError, match="at least two colours"):
        draw_label_map(torch.zeros(2, 2), CLASSES, colors=["#000000"])


def test_detections_boxes_hug_the_pixels():
    image, target = make_image(3, size=64)
    rects = draw_detections(image, target["boxes"], target["labels"], CLASSES)
    assert len(rects) == len(target["labels"])
    for rect, (x1, y1, x2, y2), label in zip(rects, target["boxes"].tolist(), target["labels"].tolist()):
        assert rect.get_xy() == (x1 - 0.5, y1 - 0.5)
        assert rect.get_width() == x2 - x1 and rect.get_height() == y2 - y1
        assert to_hex(rect.get_edgecolor()) == to_hex(CLASS_COLORS[label])


def test_detections_empty_and_bad_arguments():
    image, target = make_image(0, size=40, min_shapes=0, max_shapes=0)
    _, ax = plt.subplots()
    assert draw_detections(image, target["boxes"], target["labels"], CLASSES, ax=ax) == []
    assert any(t.get_text() == "no instances" for t in ax.texts)
    with pytest.raises(ValueError, match="one entry per box"):
        draw_detections(image, torch.zeros(2, 4), [1], CLASSES)
    with pytest.raises(ValueError, match=r"image must be \[3, H, W\]"):
        draw_detections(torch.zeros(2, 8, 8), torch.zeros(0, 4), [], CLASSES)


def test_pipeline_path_of_one_image_reaches_every_stage_without_the_test_time_arrow():
    """Moved from notebook 00 (plumbing): following the arrows from the image, without the dashed
    box head -> mask head arrow (the inference path), reaches every stage and both outputs; the map
    names the notebooks of helpers/series.py, in order."""
    artists = draw_pipeline()
    assert [number for number, _ in PIPELINE_NOTEBOOKS] == artists.notebooks_named()
    reached, frontier = {"image"}, ["image"]
    while frontier:
        node = frontier.pop()
        for a, b in artists.arrows:
            if a == node and b not in reached and (a, b) != ("boxhead", "maskhead"):
                reached.add(b)
                frontier.append(b)
    assert {"backbone", "rpn", "roialign", "boxhead", "maskhead", "detections", "masks"} <= reached, reached


def test_pipeline_text_is_readable():
    """The figure standard on the map: every text at least 8 pt, no text on another, and each text
    either wholly inside a box (its title and note) or clear of every box (the arrow labels)."""
    artists = draw_pipeline()
    fig = artists.ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    sizes = [t.get_fontsize() for t in artists.texts]
    assert min(sizes) >= 8, sorted(sizes)[:3]
    _no_overlaps(artists.ax, artists.texts)
    for text in artists.texts:
        t = text.get_window_extent(renderer)
        for key, patch in artists.boxes.items():
            b = patch.get_window_extent(renderer)
            inside = b.x0 <= t.x0 and t.x1 <= b.x1 and b.y0 <= t.y0 and t.y1 <= b.y1
            assert inside or not t.overlaps(b), (text.get_text(), key)


# -- the figure standard for labelled boxes: 8 pt, no label on another, one colour per class -------
def _crowded_prediction() -> dict[str, torch.Tensor]:
    """Five instances whose boxes start at nearly the same corner (the labels would stack)."""
    boxes = torch.tensor([[20.0, 20, 60, 60], [22, 21, 58, 62], [21, 40, 70, 90], [60, 60, 100, 100], [5, 2, 40, 30]])
    masks = torch.zeros(5, 1, 128, 128)
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, 0, y1:y2, x1:x2] = 0.9
    return {"boxes": boxes, "labels": torch.tensor([1, 2, 1, 3, 2]), "scores": torch.tensor([0.98, 0.9, 0.8, 0.7, 0.6]),
            "masks": masks}


def _no_overlaps(ax, texts):
    renderer = ax.figure.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in texts]
    for i in range(len(extents)):
        for j in range(i):
            assert not extents[i].overlaps(extents[j]), (texts[i].get_text(), texts[j].get_text())


def test_instance_labels_are_8pt_apart_and_coloured_by_class():
    from matplotlib.colors import to_rgb

    from helpers.viz import class_color, draw_instance_predictions

    prediction = _crowded_prediction()
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    art = draw_instance_predictions(torch.rand(3, 128, 128, generator=torch.Generator().manual_seed(0)), prediction,
                                    CLASSES, ax, score_thresh=0.5)
    assert [t.get_fontsize() for t in art.labels] == [8.0] * 5
    _no_overlaps(ax, art.labels)
    for rect, text, label in zip(art.rectangles, art.labels, prediction["labels"].tolist()):
        # the colour is the class's, whatever the instance's rank: truth and prediction match
        assert to_hex(rect.get_edgecolor()) == to_hex(CLASS_COLORS[label]) == to_hex(class_color(label))
        assert to_hex(text.get_bbox_patch().get_facecolor()) == to_hex(CLASS_COLORS[label])
    # the mask overlay too: an overlay pixel of instance 3 (the only one at (95, 95)) is a triangle's colour
    assert np.allclose(art.overlay_rgba[95, 95, :3], to_rgb(CLASS_COLORS[3]))
    plt.close(fig)


def test_detection_labels_do_not_cover_each_other():
    prediction = _crowded_prediction()
    fig, ax = plt.subplots(figsize=(3.0, 3.0))
    draw_detections(torch.rand(3, 128, 128), prediction["boxes"], prediction["labels"], CLASSES, ax=ax,
                    scores=prediction["scores"])
    labels = [t for t in ax.texts if t.get_text().split(" ")[0] in CLASSES]
    assert len(labels) == 5 and all(t.get_fontsize() >= 8 for t in labels)
    _no_overlaps(ax, labels)


def test_class_color_cycles_past_the_palette_and_rejects_bad_labels():
    from helpers.viz import class_color

    assert [class_color(k) for k in range(4)] == list(CLASS_COLORS)
    assert class_color(4) == CLASS_COLORS[1] and class_color(6) == CLASS_COLORS[3] and class_color(7) == CLASS_COLORS[1]
    with pytest.raises(ValueError, match="label must be a non-negative"):
        class_color(-1)
    with pytest.raises(ValueError, match="palette must hold at least two"):
        class_color(1, ["#000000"])


def test_place_box_labels_rejects_small_text_and_mismatched_lengths():
    from helpers.viz import place_box_labels

    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="fontsize must be at least 8"):
        place_box_labels(ax, torch.zeros(1, 4), ["a"], ["#000000"], fontsize=7)
    with pytest.raises(ValueError, match="one entry per box"):
        place_box_labels(ax, torch.zeros(2, 4), ["a"], ["#000000"])


def test_a_box_at_the_top_edge_keeps_its_label_inside_the_axes():
    """A box touching the image's top (or right) edge: its label goes inside the box, never off the axes."""
    from helpers.viz import draw_instance_predictions

    prediction = {"boxes": torch.tensor([[60.0, 0, 128, 40], [10, 60, 40, 100]]), "labels": torch.tensor([2, 1]),
                  "scores": torch.tensor([0.9, 0.8])}
    fig, ax = plt.subplots(figsize=(3.0, 3.0))
    art = draw_instance_predictions(torch.rand(3, 128, 128), prediction, CLASSES, ax, score_thresh=0.5)
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    for text in art.labels:
        e = text.get_window_extent(renderer)
        assert frame.x0 - 1 <= e.x0 and e.x1 <= frame.x1 + 1 and frame.y0 - 1 <= e.y0 and e.y1 <= frame.y1 + 1, text.get_text()
    _no_overlaps(ax, art.labels)

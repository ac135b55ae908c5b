"""Every colour the pictures use, in one place (nothing is ever drawn in a random colour).

- :data:`COLORS`: one colour per *kind of thing* in the RoI pictures of notebooks 01-03 (the RoI,
  sample points, RoIPool, RoIAlign...), also used for guides and truths in later pictures;
- :data:`COMPARISON_COLORS`: the order in which curves or masks being compared take their colours;
- :data:`CLASS_COLORS` and :data:`INSTANCE_COLORS`: semantic and instance label maps (notebook 00),
  and class-coloured boxes (notebooks 00, 06);
- :data:`LEVEL_COLORS`: the FPN levels P2-P6 (notebook 04);
- :data:`RPN_COLORS`: anchors, ground truth and proposals (notebooks 05, 05b);
- :data:`MASK_COLORS`: proposals and their mask targets (notebook 07);
- :func:`class_color`: the colour of one class label (truth and prediction alike, notebooks 00, 05-11);
- :data:`PIPELINE_COLORS`: the boxes of the map of the series (notebook 00);
- :data:`MASK_ERROR_COLORS`: a predicted mask scored pixel by pixel against the truth (notebook 07).

Adding a picture: take its colours from here; add a palette (or a key) here if none fits.
"""

from __future__ import annotations

COLORS: dict[str, str] = {
    "roi": "#d62728",        # red: the RoI and its RoIAlign bins
    "sample": "#1f77b4",     # blue: bilinear sample points
    "roipool": "#2ca02c",    # green: RoIPool's quantised bins and its curves
    "roialign": "#1f77b4",   # blue: RoIAlign's curves
    "aligned": "#ff7f0e",    # orange: RoIAlign with aligned=True
    "neighbour": "#9467bd",  # purple: the four bilinear neighbours
    "truth": "#000000",      # black: ground truth (masks, true values)
    "text": "#000000",
    "grid": "#9e9e9e",       # light grey: pixel borders
}
"""Fixed colours, one per kind of thing drawn (never drawn at random)."""

COMPARISON_COLORS: tuple[str, ...] = (COLORS["roipool"], COLORS["roialign"], COLORS["aligned"], COLORS["neighbour"])
"""The colours of compared methods or variants, taken in this order (green, blue, orange, purple)."""

CLASS_COLORS: tuple[str, ...] = ("#e8e8e8", "#1f77b4", "#ff7f0e", "#2ca02c")
"""Fixed colours of the shapes classes in a semantic map: background light grey, circle blue,
square orange, triangle green (index = label, as ``helpers.shapes.CLASSES``)."""

INSTANCE_COLORS: tuple[str, ...] = ("#e8e8e8", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                                    "#bcbd22", "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c")
"""Fixed colours of an instance map: 0 (no instance) light grey, then one colour per instance id
(cycled after 10); chosen apart from :data:`CLASS_COLORS` so the two maps are not confused."""

LEVEL_COLORS: dict[int, str] = {2: "#1f77b4", 3: "#2ca02c", 4: "#ff7f0e", 5: "#9467bd", 6: "#8c564b"}
"""Fixed colour of each FPN level (P2 .. P6) in the pyramid pictures of notebook 04."""

RPN_COLORS: dict[str, str] = {
    "gt": "#000000",         # black: ground-truth boxes
    "positive": "#2ca02c",   # green: anchors labelled object (1)
    "ignored": "#ff7f0e",    # orange: anchors between the thresholds (-1, not in the loss)
    "negative": "#9e9e9e",   # grey: background anchors (0)
    "proposal": "#d62728",   # red: proposals after NMS
    "anchor": "#1f77b4",     # blue: anchors drawn for their own sake
}
"""Fixed colours of notebooks 05's and 05b's pictures (one per kind of box)."""

MASK_COLORS: tuple[str, ...] = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
"""Fixed colours for proposals / instances, taken in order (never at random)."""



def class_color(label: int, palette: tuple[str, ...] | list[str] = CLASS_COLORS) -> str:
    """The one colour of class ``label``: ``palette[label]``, cycled over ``palette[1:]`` past its end
    (``palette[0]`` belongs to the background alone). Ground truth and predictions take their colour
    here, so a class keeps it from notebook to notebook (and COCO's 90 classes reuse the three).

    Raises:
        ValueError: ``label`` is negative, or ``palette`` holds fewer than two colours.
    """
    label = int(label)
    if label < 0:
        raise ValueError(f"label must be a non-negative class index, got {label}")
    if len(palette) < 2:
        raise ValueError("palette must hold at least two colours (one for the background, one or more for classes)")
    return palette[label] if label < len(palette) else palette[1 + (label - 1) % (len(palette) - 1)]

PIPELINE_COLORS: dict[str, str] = {
    "stage": "#dbe9f6",      # light blue: a stage of the model
    "base": "#fde9d3",       # light orange: what RoIAlign is built on (notebooks 01, 03)
    "whole": "#e2f0d9",      # light green: notebooks that use the whole model
    "data": "#f2f2f2",       # light grey: inputs and outputs
    "edge": "#555555",       # box borders
    "arrow": "#444444",      # arrows and their labels
    "note": "#333333",       # second lines of box texts
}
"""Fixed colours of the map of the series (:func:`helpers.viz.draw_pipeline`)."""

MASK_ERROR_COLORS: dict[str, str] = {
    "hit": "#9e9e9e",        # grey: in both masks (right, so it does not call for attention)
    "missed": "#D55E00",     # Okabe-Ito vermillion: in the true mask only
    "extra": "#56B4E9",      # Okabe-Ito sky blue: in the predicted mask only
}
"""Fixed colours of mask errors (colour-blind-safe, and apart from the class colours by lightness)."""

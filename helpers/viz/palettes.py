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

Every categorical colour is one of the eight of Okabe and Ito's colour-blind-safe palette
(:data:`OKABE_ITO`), so that readers with a red-green colour deficiency (deuteranopia, protanopia)
can still tell them apart; ``tests/test_figures.py`` checks that under a simulated deficiency.
Matplotlib's default colour cycle is set to the same palette on import (:mod:`helpers.viz.core`),
so a plain ``ax.plot`` draws in these colours too.

Adding a picture: take its colours from here; add a palette (or a key) here if none fits.
"""

from __future__ import annotations

OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "black": "#000000",
}
"""Okabe and Ito's eight colours ("Color Universal Design", 2002), distinguishable with any common
colour-vision deficiency: every categorical colour of the series is one of them. Yellow is light:
it is kept for fills, never for thin lines or text on white."""

OKABE_ITO_CYCLE: tuple[str, ...] = tuple(OKABE_ITO[k] for k in ("blue", "orange", "bluish green", "vermillion",
                                                                 "reddish purple", "sky blue", "black"))
"""The order in which plain plots (``ax.plot`` without a colour) take their colours: matplotlib's
default cycle is set to it on import (:mod:`helpers.viz.core`). Yellow is left out: thin lines on white."""

COLORS: dict[str, str] = {
    "roi": OKABE_ITO["vermillion"],        # the RoI and its RoIAlign bins
    "sample": OKABE_ITO["blue"],           # bilinear sample points
    "roipool": OKABE_ITO["bluish green"],  # RoIPool's quantised bins and its curves
    "roialign": OKABE_ITO["blue"],         # RoIAlign's curves
    "aligned": OKABE_ITO["orange"],        # RoIAlign with aligned=True
    "neighbour": OKABE_ITO["reddish purple"],  # the four bilinear neighbours
    "truth": "#000000",      # black: ground truth (masks, true values)
    "text": "#000000",
    "grid": "#9e9e9e",       # light grey: pixel borders
}
"""Fixed colours, one per kind of thing drawn (never drawn at random)."""

COMPARISON_COLORS: tuple[str, ...] = (COLORS["roipool"], COLORS["roialign"], COLORS["aligned"], COLORS["neighbour"])
"""The colours of compared methods or variants, taken in this order (bluish green, blue, orange,
reddish purple)."""

CLASS_COLORS: tuple[str, ...] = ("#e8e8e8", OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"])
"""Fixed colours of the shapes classes: background light grey, circle blue, square orange, triangle
bluish green (index = label, as ``helpers.shapes.CLASSES``), Okabe-Ito's."""

INSTANCE_COLORS: tuple[str, ...] = ("#e8e8e8", OKABE_ITO["vermillion"], OKABE_ITO["reddish purple"],
                                    OKABE_ITO["sky blue"], OKABE_ITO["yellow"], OKABE_ITO["black"])
"""Fixed colours of an instance map: 0 (no instance) light grey, then one colour per instance id
(cycled after 5): the Okabe-Ito colours that :data:`CLASS_COLORS` does not use, so the two maps are
not confused."""

LEVEL_COLORS: dict[int, str] = {2: OKABE_ITO["blue"], 3: OKABE_ITO["bluish green"], 4: OKABE_ITO["orange"],
                                5: OKABE_ITO["reddish purple"], 6: OKABE_ITO["vermillion"]}
"""Fixed colour of each FPN level (P2 .. P6) in the pyramid pictures of notebook 04."""

RPN_COLORS: dict[str, str] = {
    "gt": "#000000",         # black: ground-truth boxes
    "positive": OKABE_ITO["bluish green"],  # anchors labelled object (1)
    "ignored": OKABE_ITO["orange"],         # anchors between the thresholds (-1, not in the loss)
    "negative": "#9e9e9e",                  # grey: background anchors (0)
    "proposal": OKABE_ITO["vermillion"],    # proposals after NMS
    "anchor": OKABE_ITO["blue"],            # anchors drawn for their own sake
}
"""Fixed colours of notebooks 05's and 05b's pictures (one per kind of box)."""

MASK_COLORS: tuple[str, ...] = (OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["bluish green"],
                                OKABE_ITO["orange"], OKABE_ITO["reddish purple"], OKABE_ITO["sky blue"])
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
    "missed": OKABE_ITO["vermillion"],  # in the true mask only
    "extra": OKABE_ITO["sky blue"],     # in the predicted mask only
}
"""Fixed colours of mask errors (colour-blind-safe, and apart from the class colours by lightness)."""


def text_color_on(background: str) -> str:
    """The colour to write on a patch of ``background``: black on light colours (Okabe-Ito's orange,
    yellow, sky blue), white on dark ones, whichever contrasts more (WCAG relative luminance).

    Raises:
        ValueError: ``background`` is not a colour matplotlib understands.
    """
    from matplotlib.colors import to_rgb

    try:
        rgb = to_rgb(background)
    except ValueError as exc:
        raise ValueError(f"background must be a matplotlib colour, got {background!r}") from exc
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    # contrast with white: 1.05 / (L + 0.05); with black: (L + 0.05) / 0.05
    return "black" if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else "white"

"""Drawing helpers shared by the notebooks and the slider panels, one module per stage's pictures.

One function per picture type, in the spirit of matterport's ``visualize.py`` (without its
``(y1, x1, y2, x2)`` boxes and unseeded colours):

- every ``draw_*`` function takes the data first and ``ax=None`` (``None``: a new figure is made
  with :func:`matplotlib.pyplot.subplots`), draws, and returns the artists it created, so that a
  panel can later *move* them (``set_data``, ``set_xy``, ``set_offsets``...) instead of re-plotting;
- the numbers a picture shows come from small pure functions (:func:`roi_bin_edges`,
  :func:`roi_bin_segments`, :func:`cell_rectangles`) that notebooks and tests can assert on;
- colours are fixed (:mod:`helpers.viz.palettes`), nothing is random, so figures are identical run
  after run.

Conventions (the same as :mod:`helpers.roi` and torchvision's ops):

- a feature map ``Tensor[H, W]`` is drawn with the centre of pixel ``(x, y)`` at the *integer*
  point ``(x, y)``: pixel ``(0, 0)`` is the top-left one and covers ``[-0.5, 0.5] x [-0.5, 0.5]``,
  ``x`` grows to the right and ``y`` grows **downwards** (the y axis is inverted); that extent is
  :func:`image_extent`;
- boxes are ``(x1, y1, x2, y2)`` in those same coordinates.

The modules, in the order of the series:

- :mod:`helpers.viz.core`       axes, arrays, boxes, :func:`image_extent`, :func:`log` (used by all)
- :mod:`helpers.viz.palettes`   every colour palette
- :mod:`helpers.viz.bilinear`   a feature map as a grid of pixels; bilinear neighbours (01)
- :mod:`helpers.viz.roi`        RoIAlign's bins and samples, RoIPool's bins, the two compared (02-03)
- :mod:`helpers.viz.fpn`        which FPN level a box is pooled from (04)
- :mod:`helpers.viz.detection`  label maps, images, boxes, detections, instance predictions (00, 05-11)
- :mod:`helpers.viz.masks`      mask targets, per-class maps, pasting masks back (07)
- :mod:`helpers.viz.pipeline`   the map of the series (00)
- :mod:`helpers.viz.model_shapes` the tensor shapes of the whole model, measured (08; linked from 04-07)
- :mod:`helpers.viz.ablation`   the RoIAlign-versus-RoIPool ablation (10)
- :mod:`helpers.viz.trained`    the trained model stage by stage: proposals, recall, refined boxes,
  masks against their targets, mask errors (05-07, closing sections)

Everything public is importable from :mod:`helpers.viz` itself (``from helpers.viz import draw_boxes``).

Adding a helper: write a ``draw_<picture>(data, ax=None, ...)`` function that returns its artists
in the module of its stage, take colours from :mod:`helpers.viz.palettes` (add a key or a palette
there if you need a new one), and export it here.
"""

from helpers.viz.ablation import draw_ablation_bars
from helpers.viz.bilinear import (LABEL_DY, GridArtists, NeighbourArtists, draw_feature_grid, draw_neighbours,
                                  lightened_clim, pixel_centres)
from helpers.viz.bilinear import OPPOSITE_AREA_COLORS, OppositeAreaArtists, draw_opposite_areas
from helpers.viz.core import (FIGURE_DPI, ArrayLike, as_box, as_map, as_numpy, axes_or_new, box_rectangle, image_extent, log,
                              move_rectangle, set_pixel_limits, show_image)
from helpers.viz.detection import (BoxLabelPlacer, InstanceArtists, LabelMapArtists, box_outlines, draw_boxes, draw_detections,
                                   draw_image, draw_instance_predictions, draw_label_map, instance_overlay,
                                   LABEL_FONTSIZE, place_box_labels)
from helpers.viz.fpn import LevelCurveArtists, cell_border_segments, draw_level_curve, level_boundaries
from helpers.viz.trained import (EXTRA, HIT, MISS, draw_box_refinement, draw_class_scores, draw_mask_errors,
                                 draw_mask_pairs, draw_proposal_panels, draw_recall_curves, mask_errors)
from helpers.viz.masks import draw_class_competition, draw_mask_targets, draw_paste_profiles, draw_paste_steps
from helpers.viz.palettes import (CLASS_COLORS, COLORS, COMPARISON_COLORS, INSTANCE_COLORS, LEVEL_COLORS, MASK_COLORS,
                                  MASK_ERROR_COLORS, OKABE_ITO, OKABE_ITO_CYCLE, PIPELINE_COLORS, RPN_COLORS,
                                  class_color, text_color_on)
from helpers.viz.model_shapes import ModelShapes, ModelShapesArtists, ShapeStep, draw_model_shapes, measure_model_shapes
from helpers.viz.pipeline import PIPELINE_NOTEBOOKS, PipelineArtists, draw_pipeline
from helpers.viz.roi import (OutputArtists, RoIArtists, cell_rectangles, draw_iou_plot, draw_mask_outlines,
                             draw_pooled_output, draw_roi_bins, draw_roipool_bins, draw_sample_points,
                             draw_shift_curves, roi_bin_edges, roi_bin_segments)

__all__ = [
    # core
    "FIGURE_DPI", "ArrayLike", "as_box", "as_map", "as_numpy", "axes_or_new", "box_rectangle", "image_extent", "log",
    "move_rectangle", "set_pixel_limits", "show_image",
    # palettes
    "CLASS_COLORS", "COLORS", "COMPARISON_COLORS", "INSTANCE_COLORS", "LEVEL_COLORS", "MASK_COLORS",
    "MASK_ERROR_COLORS", "OKABE_ITO", "OKABE_ITO_CYCLE", "PIPELINE_COLORS", "RPN_COLORS", "class_color",
    "text_color_on",
    # notebooks 01-03
    "LABEL_DY", "GridArtists", "NeighbourArtists", "draw_feature_grid", "draw_neighbours", "lightened_clim",
    "pixel_centres", "OPPOSITE_AREA_COLORS", "OppositeAreaArtists", "draw_opposite_areas", "OutputArtists", "RoIArtists", "cell_rectangles", "draw_iou_plot", "draw_mask_outlines",
    "draw_pooled_output", "draw_roi_bins", "draw_roipool_bins", "draw_sample_points", "draw_shift_curves",
    "roi_bin_edges", "roi_bin_segments",
    # notebook 04
    "LevelCurveArtists", "cell_border_segments", "draw_level_curve", "level_boundaries",
    # notebooks 00, 05-11
    "BoxLabelPlacer", "InstanceArtists", "LabelMapArtists", "box_outlines", "draw_boxes", "draw_detections", "draw_image",
    "draw_instance_predictions", "draw_label_map", "instance_overlay", "LABEL_FONTSIZE", "place_box_labels",
    "draw_class_competition", "draw_mask_targets", "draw_paste_profiles", "draw_paste_steps",
    "PIPELINE_NOTEBOOKS", "PipelineArtists", "draw_pipeline",
    "draw_ablation_bars",
    # the tensor shapes of the whole model (08)
    "ModelShapes", "ModelShapesArtists", "ShapeStep", "draw_model_shapes", "measure_model_shapes",
    # notebooks 05-07, the trained model
    "EXTRA", "HIT", "MISS", "draw_box_refinement", "draw_class_scores", "draw_mask_errors", "draw_mask_pairs",
    "draw_proposal_panels", "draw_recall_curves", "mask_errors",
]

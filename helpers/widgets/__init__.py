"""Slider panels for the notebooks, built only from core ipywidgets.

Every panel is a :class:`Panel`: a row of sliders, a picture and a readout of the numbers the
picture shows. The picture is a matplotlib figure drawn with the Agg backend and sent to a
``widgets.Image`` as PNG bytes, so the panels work with ipywidgets 8 (JupyterLab) and with the 7.7
line that Colab ships, without ipympl (see :mod:`helpers.widgets.panel`).

The modules, in the order of the series:

- :mod:`helpers.widgets.panel`         :class:`Panel`, :class:`BlitPanel` and their plumbing
- :mod:`helpers.widgets.bilinear`      :class:`BilinearPanel` (notebook 01)
- :mod:`helpers.widgets.roi_align`     :class:`RoIAlignPanel` (notebook 02)
- :mod:`helpers.widgets.roi_pool`      :class:`RoIPoolVsAlignPanel` (notebook 03)
- :mod:`helpers.widgets.fpn_level`     :class:`FPNLevelPanel` (notebook 04)
- :mod:`helpers.widgets.anchor_match`  :class:`AnchorMatchPanel`, :class:`GroundTruthBoxPanel` (notebook 05)
- :mod:`helpers.widgets.detections`    :class:`DetectionPanel` (notebook 06)
- :mod:`helpers.widgets.mask_roi`      :class:`MaskRoIPanel` (notebook 07)
- :mod:`helpers.widgets.trained`       the trained model's stages, for the panels of 06 and 07

Every panel is importable from :mod:`helpers.widgets` itself (``from helpers.widgets import
RoIAlignPanel``). Adding a panel: write it in a module of its own, subclassing :class:`Panel`
(or :class:`BlitPanel` when only a few artists move), and export it here; the tests find every
panel exported here.
"""

from helpers.widgets.panel import BlitPanel, Panel, PanelMessage, PanelSnapshot, format_readout
from helpers.widgets.bilinear import BilinearPanel
from helpers.widgets.roi_align import RoIAlignPanel
from helpers.widgets.roi_pool import RoIPoolVsAlignPanel
from helpers.widgets.fpn_level import FPNLevelPanel
from helpers.widgets.anchor_match import AnchorMatchPanel, GroundTruthBoxPanel
from helpers.widgets.detections import DetectionPanel
from helpers.widgets.mask_roi import MaskRoIPanel

__all__ = ["Panel", "PanelMessage", "PanelSnapshot", "format_readout", "BlitPanel",
           "BilinearPanel", "RoIAlignPanel", "RoIPoolVsAlignPanel", "FPNLevelPanel", "AnchorMatchPanel", "GroundTruthBoxPanel",
           "DetectionPanel", "MaskRoIPanel"]

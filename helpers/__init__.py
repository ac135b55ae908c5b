"""Shared code for *Mask R-CNN, Step by Step*.

One module per stage of the series, each mirroring torchvision's names and signatures where
torchvision has the function:

- :mod:`helpers.roi`        bilinear interpolation, RoIAlign, RoIPool (notebooks 01-03)
- :mod:`helpers.viz`        drawing helpers shared by the notebooks
- :mod:`helpers.widgets`    the ipywidgets slider panels
- :mod:`helpers.shapes`     the seeded synthetic-shapes data set

Conventions used everywhere in the package:

- Images and feature maps are ``Tensor[N, C, H, W]``; pixel ``(x, y)`` has its *centre* at integer
  coordinates, ``x`` grows to the right, ``y`` grows **downwards**, ``(0, 0)`` is the top-left pixel.
- Boxes are ``(x1, y1, x2, y2)`` (torchvision's format, not matterport's ``(y1, x1, y2, x2)``).

Submodules are imported on demand (``from helpers.roi import roi_align``) so that importing the
package stays cheap.
"""

__all__ = ["roi", "viz", "widgets", "shapes"]

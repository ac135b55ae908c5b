"""Shared code for *Mask R-CNN, Step by Step*.

One module per stage of the series, each mirroring torchvision's names and signatures where
torchvision has the function:

- :mod:`helpers.roi`         bilinear interpolation, RoIAlign, RoIPool (notebooks 01-03)
- :mod:`helpers.fpn`         FPN level assignment and multi-scale RoIAlign (notebook 04)
- :mod:`helpers.box_coder`   box encoding and decoding (notebook 05)
- :mod:`helpers.boxes`       box area, IoU, clipping, small-box removal, NMS (notebooks 05, 05b; torchvision's ``ops/boxes.py``)
- :mod:`helpers.rpn`         anchors, matching, sampling, RPN losses, proposals (notebooks 05, 05b)
- :mod:`helpers.box_head`    the box head, its losses and post-processing (notebook 06)
- :mod:`helpers.mask_head`   the mask head, mask targets, mask loss, pasting (notebook 07)
- :mod:`helpers.model`       torchvision's MaskRCNN assembled for the shapes task (notebooks 08-10)
- :mod:`helpers.maskrcnn`    the same Mask R-CNN made only of the series' own pieces (``build_model(impl="series")``)
- :mod:`helpers.train`       the training entry point, ``python -m helpers.train`` (notebook 09)
- :mod:`helpers.evaluate`    COCO mask and box AP with pycocotools (notebook 09)
- :mod:`helpers.predict`     a trained model on your images, ``python -m helpers.predict`` (notebook 09)
- :mod:`helpers.masks`       mask IoU and COCO run-length encoding, kept once
- :mod:`helpers.coco_data`   a data set read from a COCO-format folder (your own data)
- :mod:`helpers.ablation`    the RoIAlign-versus-RoIPool ablation runs (notebook 10)
- :mod:`helpers.pretrained`  the pretrained COCO model and its offline fallback (notebook 11)
- :mod:`helpers.shapes`      the seeded synthetic-shapes data set (notebooks 00, 05-10)
- :mod:`helpers.viz`         drawing helpers shared by the notebooks (a package: one module per stage)
- :mod:`helpers.widgets`     the ipywidgets slider panels (a package: one module per panel)
- :mod:`helpers.series`      the list of notebooks, read by the README table, navigation bars and map
- :mod:`helpers.project`     the repository URL and paths, kept in one place
- :mod:`helpers.checks`      argument checks shared by every module (``check_int(value, name, ...)``)
- :mod:`helpers.exercises`   the checkers of the notebooks' exercises (``check("01.1", answer)``)

Functions a notebook writes in the open are exported into these modules from the notebook's
``#@save helpers.<module>`` cells by ``python tools/nb.py export``; they stand in blocks marked
``# @export <notebook>: <name>`` and are edited in the notebook, never here.

Conventions used everywhere in the package:

- Images and feature maps are ``Tensor[N, C, H, W]``; pixel ``(x, y)`` has its *centre* at integer
  coordinates, ``x`` grows to the right, ``y`` grows **downwards**, ``(0, 0)`` is the top-left pixel.
- Boxes are ``(x1, y1, x2, y2)`` (torchvision's format, not matterport's ``(y1, x1, y2, x2)``).

Submodules are imported on demand (``from helpers.roi import roi_align``) so that importing the
package stays cheap.
"""

__all__ = ["roi", "fpn", "box_coder", "boxes", "rpn", "box_head", "mask_head", "model", "maskrcnn", "train", "evaluate",
           "predict", "masks", "coco_data", "ablation", "pretrained", "shapes", "viz", "widgets", "series", "project", "checks"]

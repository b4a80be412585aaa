"""Detectors and instance segmenters: the common types (``base``), COCO labels, the registry's
built-in detectors (``zoo``: OpenCV SSD, torchvision R-CNNs) and the R-CNN networks vitrine
fine-tunes (``rcnn``)."""

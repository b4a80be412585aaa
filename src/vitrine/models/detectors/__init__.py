"""Detectors and instance segmenters: the common types (``base``), COCO labels, the registry's
built-in detectors (``zoo``: OpenCV SSD, torchvision R-CNNs) and the networks vitrine fine-tunes
(``torchvision_family``: Faster / Mask R-CNN, RetinaNet, FCOS, SSDlite, on the EfficientNet-Lite
bodies of ``lite_features`` or ResNet-50 FPN)."""

"""Training the torchvision detectors (Faster / Mask R-CNN, RetinaNet, FCOS, SSDlite): ``config``
(DetectionConfig), ``data`` (the dataset checked, split, decoded and augmented; where it comes from)
and ``trainer`` (DetectionTrainer and :func:`~vitrine.train.detection.trainer.train_detector`)."""

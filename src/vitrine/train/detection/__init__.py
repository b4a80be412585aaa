"""Training Faster / Mask R-CNN detectors: ``config`` (DetectionConfig), ``data`` (the dataset
checked, split, decoded and augmented; where it comes from) and ``trainer`` (DetectionTrainer and
:func:`~vitrine.train.detection.trainer.train_detector`)."""

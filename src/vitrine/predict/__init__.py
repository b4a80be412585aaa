"""Inference from what runs produced and from the registry's models: predictors that never import ``train/``.

``classifier``: every trained classifier (fine-tuning, linear probe, zero-shot) loaded from its
run folder for prediction; predict pages, the CLI and evaluation only use this.
``detector``: detectors by name (a registry model or a fine-tuned detection run); ``overlay``
draws their detections, ``export`` turns them into the API/CLI JSON and COCO results.
``run_detector``: a fine-tuned detector (detection or segmentation run) rebuilt from its checkpoint.
"""

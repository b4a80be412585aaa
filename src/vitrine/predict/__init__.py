"""Inference from what runs produced: predictors that never import ``train/``.

``classifier``: every trained classifier (fine-tuning, linear probe, zero-shot) loaded from its
run folder for prediction; predict pages, the CLI and evaluation only use this.
``run_detector``: a fine-tuned detector (detection or segmentation run) rebuilt from its checkpoint.
"""

"""Training: ``trainer`` (the loop every network trainer shares: budget, cancel, records, resume,
RNG, last/best checkpoints) with the task hooks in ``classification/`` (fine-tuning, linear probe,
zero-shot) and ``detection/`` (Faster / Mask R-CNN)."""

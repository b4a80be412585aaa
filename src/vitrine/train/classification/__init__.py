"""Training image classifiers: ``finetune`` (a backbone fine-tuned end to end, with ``config``
and ``data``), ``linear_probe`` (logistic regression on embeddings), ``zero_shot`` (class prompts
in a text-image space), ``embeddings`` (the dataset's cached embeddings those two share) and
``augment`` (the fine-tuning transforms, which prediction reuses)."""

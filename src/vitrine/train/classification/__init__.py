"""Training image classifiers: ``finetune`` (a backbone fine-tuned end to end, with ``config``
and ``data``), ``linear_probe`` (logistic regression on embeddings), ``zero_shot`` (class prompts
in a text-image space), and ``embeddings`` (the dataset's cached embeddings those two share). The fine-tuning transforms
live with the backbones in :mod:`vitrine.models.classifiers.transforms`, since prediction uses
them too."""

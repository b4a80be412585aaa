"""Image classifiers that vitrine fine-tunes: the backbones (with their weights specs), building a
classifier with a new head, and the image transforms their weights expect."""

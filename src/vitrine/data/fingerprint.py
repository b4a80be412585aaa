"""A fingerprint of the exact images and labels a run was scored on.

Two runs are comparable only when they were scored on the same split: the same images with the same
labels. The fingerprint is a SHA-256 over the split's sorted rows, so it does not depend on the order
rows were imported in, and it changes when an image is added, removed, relabelled, re-annotated or
replaced by a file of another size:

- classification: (path, label, file size) per sample;
- detection: (file name, width, height, file size) per image, and (category name, box rounded to
  0.01 px, iscrowd) per annotation, sorted.

File sizes are read from disk where the files are (-1 where they are not), a cheap stand-in for
hashing every image that catches a file swapped under the same name in nearly every case.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

PREFIX = "sha256:"
LENGTH = 16  # hex digits kept: 64 bits, ample for telling splits apart


def _size(path: Path | None) -> int:
    if path is None:
        return -1
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _digest(rows: list) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return PREFIX + h.hexdigest()[:LENGTH]


def classification_fingerprint(dataset, split: str, samples=None) -> str:
    """The fingerprint of ``split`` ("train", "val", "test"; "all": every sample) of a
    classification dataset, or of ``samples`` scored under that name (a validation set held out of
    the train split)."""
    if samples is None:
        samples = dataset.samples if split == "all" else dataset.split(split)
    rows = sorted((s.path, s.label, _size(dataset.path_of(s))) for s in samples)
    return _digest([["classification", split], *rows])


def detection_fingerprint(dataset, split: str | None, image_ids=None) -> str:
    """The fingerprint of ``split`` of a detection dataset (None: its images without a split), or of
    the images ``image_ids`` scored under that name (a validation set held out of the train split)."""
    keep = None if image_ids is None else set(image_ids)
    names = {c.id: c.name for c in dataset.categories}
    root = Path(dataset.root) if dataset.root is not None else None
    by_image = dataset.annotations_by_image()
    rows = []
    for im in dataset.images:
        if (im.split != split) if keep is None else (im.id not in keep):
            continue
        anns = by_image.get(im.id, [])
        boxes = sorted(
            (names.get(a.category_id, str(a.category_id)), [round(float(v), 2) for v in a.bbox], int(a.iscrowd))
            for a in anns
        )
        rows.append((im.file_name, im.width, im.height, _size(root / im.file_name if root else None), boxes))
    rows.sort()
    return _digest([["detection", split], *rows])


def split_fingerprint(dataset, split: str | None) -> str:
    """The fingerprint of a split of either kind of dataset."""
    if hasattr(dataset, "samples"):
        return classification_fingerprint(dataset, split or "")
    return detection_fingerprint(dataset, split)

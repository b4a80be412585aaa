"""A detection run's predictions, kept beside its report: ``predictions.json.gz`` in the run folder.

Every detection run keeps the predictions its evaluation scored (trained runs, detectors imported
with ``vitrine eval --record``, models submitted to a board, and COCO-results submissions), so that
its errors can be browsed image by image later (:mod:`vitrine.evaluate.detection_errors`) without
running the model again. The file is gzip-compressed JSON:

    {"format": "vitrine.coco-results", "version": 1,
     "split": "test",                  # the split of the run's dataset that was scored (None: all)
     "image_ids": [3, 4, ...],         # the images scored (their ground truth is the report's)
     "ignore_difficult": false,        # the VOC protocol, when the evaluation used it
     "results": [{"image_id": 3, "category_id": 2, "bbox": [x, y, w, h], "score": 0.91,
                  "segmentation": {...}}, ...]}   # COCO results, in the dataset's category ids

``results`` is exactly what :func:`~vitrine.evaluate.detection.evaluate_detection` scored (every
score down to the threshold the detector was run at), so matching them again at the report's
thresholds gives the report's counts. It is written atomically and published with the run.
Measured on the detection benchmark's 200-image test split (Mask R-CNN, its 30 detections per image
kept, each with its mask's RLE): 6,000 results, 0.66 MB (1.8 MB uncompressed), read in 0.5 s and
matched again in 0.2 s (random-weight network: the count of boxes, not their quality, sets the size).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from vitrine.core.atomic import atomic_write_bytes
from vitrine.core.errors import VitrineError

PREDICTIONS_FILE = "predictions.json.gz"
FORMAT = "vitrine.coco-results"
VERSION = 1


def write_predictions(
    run_dir: str | Path,
    results: list[dict],
    image_ids: list[int],
    split: str | None,
    ignore_difficult: bool = False,
) -> dict:
    """Write ``predictions.json.gz`` into ``run_dir`` atomically; returns what the run record keeps
    of it (file name, size, counts)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "image_ids": [int(i) for i in image_ids],
        "ignore_difficult": bool(ignore_difficult),
        "results": results,
    }
    data = gzip.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"), compresslevel=6, mtime=0)
    path = Path(run_dir) / PREDICTIONS_FILE
    atomic_write_bytes(path, data)
    return {"file": PREDICTIONS_FILE, "bytes": len(data), "results": len(results), "images": len(doc["image_ids"])}


def has_predictions(run_dir: str | Path) -> bool:
    return (Path(run_dir) / PREDICTIONS_FILE).is_file()


def read_predictions(run_dir: str | Path) -> dict:
    """The document :func:`write_predictions` wrote; a VitrineError when it is missing or damaged."""
    path = Path(run_dir) / PREDICTIONS_FILE
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()).decode("utf-8"))
    except FileNotFoundError:
        raise VitrineError(f"{path.name} is missing from run folder {Path(run_dir).name}") from None
    except (OSError, EOFError, ValueError) as exc:
        raise VitrineError(
            f"{path.name} of run {Path(run_dir).name} is damaged: {exc}",
            hint="evaluate the run again to rewrite it (vitrine eval RUN_ID)",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("results"), list):
        raise VitrineError(f"{path.name} of run {Path(run_dir).name} is not a {FORMAT} file")
    return doc


__all__ = ["PREDICTIONS_FILE", "has_predictions", "read_predictions", "write_predictions"]

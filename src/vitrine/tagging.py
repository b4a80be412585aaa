"""Run a detector over a project's images and keep its labels as searchable tags.

Incremental like indexing: only the catalog's contents not yet tagged by the model (at the same
score threshold) are run, batch by batch, each batch committed in one transaction, so a killed
run resumes where it stopped. Tags hang off contents (by SHA-256): a removed image's tags go with
its content, and a changed file is a new content, tagged on the next run. Per content and label
the catalog keeps the best score, the number of boxes and the boxes (pixel xyxy of the file).

Images are decoded by the embedding pipeline's threaded decoder (:mod:`vitrine.embed.pipeline`)
and shrunk to at most :data:`MAX_SIDE` pixels (both SSD and the torchvision detectors resize to
less anyway); boxes are scaled back to the file's pixels.

>>> report = project.tag("ssd-mobilenet-v2-coco", threshold=0.5)
>>> project.search("a sleeping animal", tags=["cat"])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from vitrine.core.errors import VitrineError
from vitrine.embed.pipeline import EmbedItem, decode_batches, throttle_seconds
from vitrine.models.detectors.base import Detections, Detector
from vitrine.store.catalog import Catalog

DEFAULT_TAG_MODEL = "ssd-mobilenet-v2-coco"
DEFAULT_THRESHOLD = 0.5
MAX_SIDE = 1333  # torchvision detectors' largest input side; SSD uses 300x300
BATCH_SIZE = 8

Progress = Callable[[int, int], None]  # (done, total)


@dataclass
class TagReport:
    model: str
    threshold: float
    tagged: int = 0  # contents run through the detector in this run
    unchanged: int = 0  # contents already tagged by this model at this threshold
    objects: int = 0  # boxes kept in this run, all labels
    labels: dict[str, int] = field(default_factory=dict)  # label -> contents found with it in this run
    failed: list[dict] = field(default_factory=list)  # {"path", "reason"}
    seconds: float = 0.0
    detect_seconds: float = 0.0  # decoding and detection only

    @property
    def images_per_second(self) -> float:
        return self.tagged / self.detect_seconds if self.detect_seconds else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["images_per_second"] = round(self.images_per_second, 2)
        d["seconds"] = round(self.seconds, 3)
        d["detect_seconds"] = round(self.detect_seconds, 3)
        return d


def check_threshold(threshold: float) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise VitrineError(
            f"threshold {threshold!r} is not a number", hint="give a score between 0 and 1, e.g. 0.5"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise VitrineError(f"threshold {value} is outside 0..1", hint="give a score between 0 and 1, e.g. 0.5")
    return round(value, 4)


def _shrink(image: Image.Image) -> tuple[Image.Image, float]:
    """``(image in RGB at most MAX_SIDE pixels a side, factor from its pixels to the file's)``."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    side = max(image.width, image.height)
    if side <= MAX_SIDE:
        return image, 1.0
    scale = MAX_SIDE / side
    small = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR
    )
    return small, image.width / small.width


def summarize(det: Detections, scale: float = 1.0) -> list[dict]:
    """One row per label: ``{"label", "score" (the best), "count", "boxes" [[x1, y1, x2, y2, score]]}``,
    boxes in the file's pixels, best first; labels by best score."""
    by_label: dict[str, dict] = {}
    for label, box, score in zip(det.labels, det.boxes, det.scores, strict=True):
        name = str(label).strip().lower()
        if not name:
            continue
        row = by_label.setdefault(name, {"label": name, "score": 0.0, "count": 0, "boxes": []})
        row["count"] += 1
        row["score"] = max(row["score"], round(float(score), 4))
        row["boxes"].append([round(float(v) * scale, 1) for v in box] + [round(float(score), 4)])
    for row in by_label.values():
        row["boxes"].sort(key=lambda b: -b[4])
    return sorted(by_label.values(), key=lambda r: (-r["score"], r["label"]))


def tag_contents(
    detector: Detector,
    catalog: Catalog,
    images_dir: Path,
    model: str,
    threshold: float,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    batch_size: int = BATCH_SIZE,
    workers: int | None = None,
) -> TagReport:
    """Tag every content of ``catalog`` not yet tagged by ``model`` at ``threshold``; each batch
    is committed before the next starts. Unreadable images are reported in ``failed`` (and
    tried again by the next run); ``cancel`` stops between batches (raises ``Cancelled``)."""
    threshold = check_threshold(threshold)
    start = time.perf_counter()
    report = TagReport(model=model, threshold=threshold)
    todo = catalog.contents_to_tag(model, threshold)
    report.unchanged = len({f.content_id for f in catalog.files().values()}) - len(todo)
    items = [EmbedItem(cid, images_dir / rel, rel) for cid, rel in todo]
    throttle = throttle_seconds()
    done = 0
    if progress:
        progress(0, len(items))
    batches = decode_batches(
        items,
        _shrink,
        max(1, int(batch_size)),
        cancel=cancel,
        workers=workers,
        cancelled="tagging was cancelled; the images tagged so far are kept",
    )
    with closing(batches):
        for decoded in batches:
            ok, info = [], {}
            for item, prepared, meta, error in decoded:
                if error is not None:
                    # every file with this content failed, not only the one that was decoded
                    paths = catalog.paths_for([item.content_id])[item.content_id] or [item.relpath]
                    report.failed.extend({"path": p, "reason": error} for p in paths)
                else:
                    ok.append((item, prepared))
                    info[item.content_id] = meta
            if ok:
                results = detector.predict_batch([im for _, (im, _s) in ok], threshold=threshold)
                found = {
                    item.content_id: summarize(det, scale)
                    for (item, (_im, scale)), det in zip(ok, results, strict=True)
                }
                catalog.add_tags(model, threshold, found, info)
                report.tagged += len(found)
                for rows in found.values():
                    for row in rows:
                        report.objects += row["count"]
                        report.labels[row["label"]] = report.labels.get(row["label"], 0) + 1
                if throttle:
                    time.sleep(throttle)
            done += len(decoded)
            if progress:
                progress(done, len(items))
    report.detect_seconds = time.perf_counter() - start
    report.labels = dict(sorted(report.labels.items(), key=lambda kv: (-kv[1], kv[0])))
    report.failed.sort(key=lambda f: f["path"])
    report.seconds = time.perf_counter() - start
    return report


__all__ = [
    "DEFAULT_TAG_MODEL",
    "DEFAULT_THRESHOLD",
    "TagReport",
    "check_threshold",
    "summarize",
    "tag_contents",
]

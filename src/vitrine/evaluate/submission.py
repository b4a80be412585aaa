"""Submissions: predictions made elsewhere, scored on a split of a workspace dataset (typically a
hidden test split, :mod:`vitrine.data.board`) by the same code that scores every run, and kept as a
run so that they stand on the dataset's leaderboard.

What a submission is:

- **classification**: a CSV with a header naming an image column (``image``, also ``id``, ``path``,
  ``file``) and a class column (``class``, also ``label``, ``prediction``): one row per image of the
  split, the image named by the id the listing gives (:func:`listing`; the sample path is accepted
  too where the caller may see the split's paths), the class by its name (case, spaces, ``_`` and
  ``-`` do not matter). Every image needs exactly one row.
- **detection**: COCO results, as ``COCO.loadRes`` and the COCO evaluation server take them: a JSON
  array, or JSON Lines (one result per line), of ``{"image_id", "category_id" (or
  "category_name"), "bbox": [x, y, w, h], "score"}`` with an optional ``segmentation`` (RLE or
  polygons) for masks. Images without a result simply have no detections.

A submission that does not fit gets one :class:`SubmissionError` listing what is wrong, with line
numbers (at most :data:`MAX_LISTED` problems, and how many more), and nothing is recorded. One that
fits becomes a finished run (``submission`` for classification, ``detection``/``segmentation``
for detection) holding the file it was made from, its metrics under the split with the split's
fingerprint, and the same report files a trained run writes. The dataset is only read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitrine.core.atomic import atomic_write_bytes
from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.board import Board, image_token, read_board, with_secret
from vitrine.evaluate.detection import normalize_name
from vitrine.runs import SUBMISSION_KIND, Run

MAX_LISTED = 10
IMAGE_COLUMNS = ("image", "id", "image_id", "path", "file", "filename", "file_name")
CLASS_COLUMNS = ("class", "label", "prediction", "predicted", "category")
FORMATS = {"classify": "csv", "detect": "coco-results"}


class SubmissionError(VitrineError):
    """A submission that cannot be scored: what is wrong, where (line numbers), what to do."""

    status = 422
    code = "bad_submission"

    def __init__(self, problems: list[str], hint: str | None = None):
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = len(problems) - len(shown)
        message = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
        super().__init__(message, hint=hint)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "details": [{"message": p} for p in self.problems[:100]]}


# ------------------------------------------------------------------------------------ the target
@dataclass
class Target:
    """The images of one split of a dataset, as submissions name them."""

    board: Board
    split: str
    dataset: Any  # ClassificationDataset | DetectionDataset (the whole dataset)
    gt: Any = None  # detection: the split's DetectionDataset
    classes: list[str] = field(default_factory=list)  # classification: class names
    by_id: dict[str, Any] = field(default_factory=dict)  # the id members see -> sample or image

    @property
    def task(self) -> str:
        return self.board.task

    def image_path(self, item) -> Path:
        if self.task == "classify":
            return Path(self.dataset.path_of(item))
        return Path(self.gt.root) / item.file_name


def load_target(workspace: Workspace, name: str, split: str = "test") -> Target:
    """The images of ``split`` of dataset ``name``; NotFound when it has none."""
    board = with_secret(workspace, read_board(workspace, name))
    if board.task == "classify":
        from vitrine.data.importers import load_dataset

        ds = load_dataset(workspace, name)
        samples = ds.split(split)
        if not samples:
            raise NotFound(f"dataset {name!r} has no {split!r} images to submit predictions for")
        by_id = {image_token(board, s.path): s for s in samples}
        return Target(board, split, ds, classes=list(ds.classes), by_id=by_id)
    from vitrine.data.detection.resolve import resolve_dataset

    ds, _, _ = resolve_dataset(str(workspace.dataset_dir(name)), name)
    gt = ds.split(split)
    if not gt.images:
        raise NotFound(f"dataset {name!r} has no {split!r} images to submit predictions for")
    return Target(board, split, ds, gt=gt, by_id={str(im.id): im for im in gt.images})


def listing(target: Target, show_paths: bool = False) -> dict:
    """What a member needs to make a submission: the split's image ids (no labels, no paths unless
    ``show_paths``), the class or category names, and the expected format."""
    images = []
    for key, item in target.by_id.items():
        if target.task == "classify":
            row = {"id": key}
            if show_paths:
                row["path"] = item.path
        else:
            row = {"id": item.id, "width": item.width, "height": item.height}
            if show_paths:
                row["file_name"] = item.file_name
        images.append(row)
    out = {
        "dataset": target.board.dataset,
        "task": target.task,
        "split": target.split,
        "hidden": target.board.is_hidden(target.split),
        "format": FORMATS[target.task],
        "images": images,
    }
    if target.task == "classify":
        out["classes"] = list(target.classes)
        out["example"] = "image,class\n" + "".join(f"{r['id']},{target.classes[0]}\n" for r in images[:2])
    else:
        out["categories"] = [{"id": c.id, "name": c.name} for c in target.gt.categories]
        out["example"] = [{"image_id": images[0]["id"], "category_id": out["categories"][0]["id"],
                           "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.9}]  # fmt: skip
    return out


def image_of(target: Target, image_id: str) -> Path:
    """The file of the image members call ``image_id``; NotFound for any other id."""
    item = target.by_id.get(str(image_id))
    if item is None:
        raise NotFound(f"no image {image_id!r} in the {target.split} split of dataset {target.board.dataset!r}")
    path = target.image_path(item)
    if not path.is_file():
        raise NotFound(f"image {image_id!r} is missing on the server", hint="tell the dataset's owner")
    return path


# -------------------------------------------------------------------------------------- readers
def _text(data: bytes, what: str) -> str:
    if not data.strip():
        raise SubmissionError([f"the {what} is empty"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SubmissionError([f"the {what} is not UTF-8 text (byte {exc.start})"], hint="save it as UTF-8") from None


def read_classification_csv(data: bytes, target: Target, allow_paths: bool = False) -> list[int]:
    """The predicted class index of every image of ``target`` (in ``target.by_id`` order) from a CSV."""
    text = _text(data, "CSV")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    header = [h.strip().casefold() for h in next(rows, [])]
    image_col = next((i for i, h in enumerate(header) if h in IMAGE_COLUMNS), None)
    class_col = next((i for i, h in enumerate(header) if h in CLASS_COLUMNS), None)
    if image_col is None or class_col is None:
        raise SubmissionError(
            [f"line 1: the header must name an image column and a class column, found {header[:6]}"],
            hint="start the file with the line: image,class",
        )
    paths = {item.path: key for key, item in target.by_id.items()} if allow_paths else {}
    classes = {normalize_name(c): i for i, c in enumerate(target.classes)}
    keys = list(target.by_id)
    predicted: dict[str, int] = {}
    first_line: dict[str, int] = {}
    problems: list[str] = []
    width = max(image_col, class_col) + 1
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < width:
            problems.append(f"line {line}: {len(row)} field(s), expected at least {width}")
            continue
        image, label = row[image_col].strip(), row[class_col].strip()
        key = image if image in target.by_id else paths.get(image.replace("\\", "/"))
        if key is None:
            problems.append(f"line {line}: image {image!r} is not an image of the {target.split} split")
            continue
        index = classes.get(normalize_name(label))
        if index is None:
            problems.append(f"line {line}: class {label!r} is not one of the dataset's classes")
            continue
        if key in predicted:
            problems.append(f"line {line}: image {image!r} already has a prediction (line {first_line[key]})")
            continue
        predicted[key], first_line[key] = index, line
    missing = [k for k in keys if k not in predicted]
    if missing and not problems:
        problems.append(
            f"{len(missing)} of {len(keys)} images of the {target.split} split have no prediction "
            f"(first: {', '.join(missing[:3])})"
        )
    if problems:
        raise SubmissionError(problems, hint=f"one row per image of the split; classes: {', '.join(target.classes)}")
    return [predicted[k] for k in keys]


def _results(text: str) -> list[tuple[str, Any]]:
    """``(where, value)`` per result of a JSON array or of JSON Lines."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SubmissionError([f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None
        return [(f"result [{i}]", r) for i, r in enumerate(doc)]
    out, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not valid JSON (column {exc.colno}: {exc.msg})")
    if problems:
        raise SubmissionError(problems, hint="a JSON array of results, or one JSON object per line (JSON Lines)")
    return out


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _segmentation(value, height: int, width: int):
    """An RLE for a result's segmentation (RLE or polygons), or a problem string."""
    from pycocotools import mask as mask_utils

    if isinstance(value, dict) and "counts" in value and "size" in value:
        if list(value["size"]) != [height, width]:
            return f"segmentation size {value['size']} is not the image's [{height}, {width}]"
        counts = value["counts"]
        return {"size": [height, width], "counts": counts} if isinstance(counts, str | list) else "bad RLE counts"
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) >= 6 for p in value):
        if not all(_number(v) is not None for p in value for v in p):
            return "polygon coordinates must be numbers"
        rle = mask_utils.merge(mask_utils.frPyObjects(value, height, width))
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    return "segmentation must be an RLE {size, counts} or a list of polygons [[x1, y1, x2, y2, x3, y3, ...]]"


def read_coco_results(data: bytes, target: Target) -> list[dict]:
    """The COCO results of a detection submission, checked against ``target`` (ids, categories,
    boxes, scores, masks), category names mapped to the dataset's ids."""
    parsed = _results(_text(data, "results file"))
    images = {im.id: im for im in target.gt.images}
    cat_ids = {c.id for c in target.gt.categories}
    by_name = {normalize_name(c.name): c.id for c in target.gt.categories}
    results, problems = [], []
    for where, r in parsed:
        if not isinstance(r, dict):
            problems.append(f"{where}: a result is a JSON object, not {type(r).__name__}")
            continue
        image_id = r.get("image_id")
        if isinstance(image_id, str) and image_id.strip().isdigit():
            image_id = int(image_id)
        if isinstance(image_id, bool) or not isinstance(image_id, int) or image_id not in images:
            problems.append(f"{where}: image_id {image_id!r} is not an image of the {target.split} split")
            continue
        if "category_id" in r:
            category = r["category_id"]
            if isinstance(category, bool) or not isinstance(category, int) or category not in cat_ids:
                problems.append(f"{where}: category_id {category!r} is not a category of the dataset")
                continue
        elif "category_name" in r or "category" in r:
            label = r.get("category_name", r.get("category"))
            category = by_name.get(normalize_name(str(label)))
            if category is None:
                problems.append(f"{where}: category name {label!r} does not map to a category of the dataset")
                continue
        else:
            problems.append(f"{where}: no category_id (or category_name)")
            continue
        bbox = r.get("bbox")
        box = [_number(v) for v in bbox] if isinstance(bbox, list) else []
        if len(box) != 4 or any(v is None for v in box) or box[2] < 0 or box[3] < 0:
            problems.append(f"{where}: bbox must be [x, y, width, height], 4 finite numbers, width and height >= 0")
            continue
        score = _number(r.get("score"))
        if score is None:
            problems.append(f"{where}: score must be a finite number")
            continue
        result = {"image_id": image_id, "category_id": category, "bbox": box, "score": score}
        if r.get("segmentation") is not None:
            im = images[image_id]
            segm = _segmentation(r["segmentation"], im.height, im.width)
            if isinstance(segm, str):
                problems.append(f"{where}: {segm}")
                continue
            result["segmentation"] = segm
        results.append(result)
    if problems:
        raise SubmissionError(
            problems,
            hint='COCO results: [{"image_id": 1, "category_id": 3, "bbox": [x, y, w, h], "score": 0.9}, ...]; '
            "image ids and categories are listed by the dataset's submission page",
        )
    return results


# -------------------------------------------------------------------------------------- scoring
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def score_submission(
    workspace: Workspace,
    name: str,
    data: bytes,
    filename: str = "submission",
    *,
    split: str = "test",
    label: str | None = None,
    allow_paths: bool = False,
    run_id: str | None = None,
) -> Run:
    """Score the submission ``data`` on ``split`` of dataset ``name`` and record it as a finished run
    (``label`` names it on the board). Raises :class:`SubmissionError` (nothing recorded) when the
    file does not fit."""
    from vitrine.core.workspace import check_name
    from vitrine.evaluate.comparable import split_record

    target = load_target(workspace, name, split)
    label = (label or Path(filename).stem or "submission").strip()[:100] or "submission"
    if run_id is not None:
        check_name(run_id, "run id")
    config = {
        "submitted": Path(filename).name[:200],
        "sha256": _sha256(data),
        "bytes": len(data),
        "format": FORMATS[target.task],
        "split": split,
    }
    extra = {"submission": True, "task": "classification" if target.task == "classify" else "detection"}
    if target.task == "classify":
        predicted = read_classification_csv(data, target, allow_paths)
        report = _classification_report(target, predicted)
        report.update(split_record(target.dataset, split))
        run = Run.create(workspace, SUBMISSION_KIND, name, label, config, run_id=run_id, extra=extra)
        _finish_classification(run, target, report, data)
    else:
        results = read_coco_results(data, target)
        from vitrine.evaluate.detection import evaluate_detection

        report = evaluate_detection(target.gt, results)
        kind = "segmentation" if "segm" in report["iou_types"] else "detection"
        run = Run.create(workspace, kind, name, label, config, run_id=run_id, extra=extra)
        _finish_detection(run, target, report, data, results)
    return run


def _classification_report(target: Target, predicted: list[int]) -> dict:
    import numpy as np

    from vitrine.evaluate.classification import classification_report

    index = {c: i for i, c in enumerate(target.classes)}
    y_true = [index[item.label] for item in target.by_id.values()]
    probs = np.zeros((len(predicted), len(target.classes)))
    probs[np.arange(len(predicted)), predicted] = 1.0
    return {"split": target.split, **classification_report(y_true, probs, target.classes, ks=())}


def _finish_classification(run: Run, target: Target, report: dict, data: bytes) -> None:
    from vitrine.evaluate.classification import summary, write_report

    atomic_write_bytes(run.dir / "submission.csv", data)
    write_report(run.dir, report)
    now = time.time()
    run.update(
        state="done",
        classes=list(target.classes),
        metrics={target.split: summary(report)},
        started_at=now,
        finished_at=now,
    )


def _finish_detection(run: Run, target: Target, report: dict, data: bytes, results: list[dict]) -> None:
    from vitrine.evaluate.comparable import split_record
    from vitrine.evaluate.detection import report_summary, write_detection_report
    from vitrine.evaluate.predictions_file import write_predictions

    atomic_write_bytes(run.dir / "submission.json", data)
    write_detection_report(report, run.dir)
    write_predictions(run.dir, results, [im.id for im in target.gt.images], target.split)
    evaluation = {
        **report_summary(report),
        **split_record(target.dataset, target.split),
        "n_images": report.get("images"),
    }
    now = time.time()
    run.update(
        state="done",
        classes=sorted({c.name for c in target.gt.categories}),
        metrics={target.split: evaluation},
        started_at=now,
        finished_at=now,
    )


def is_submission(run: Run) -> bool:
    return bool(run.record.get("submission"))


def submissions(runs: Iterable[Run], name: str) -> list[Run]:
    """The submission runs of dataset ``name`` among ``runs``, newest first."""
    found = [r for r in runs if is_submission(r) and r.record.get("dataset") == name]
    return sorted(found, key=lambda r: -(r.record.get("created_at") or 0))


__all__ = [
    "SUBMISSION_KIND",
    "SubmissionError",
    "Target",
    "image_of",
    "listing",
    "load_target",
    "read_classification_csv",
    "read_coco_results",
    "score_submission",
    "submissions",
]

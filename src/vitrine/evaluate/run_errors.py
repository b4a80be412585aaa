"""What a detection run's errors are computed from: the ground truth of the images it was scored on
and the predictions it kept (:mod:`vitrine.evaluate.predictions_file`), found from its record.

:func:`load_run_errors` reads ``predictions.json.gz`` (every run evaluated since runs keep it), or,
for a COCO-results submission scored before that, the ``submission.json`` it keeps. A run evaluated
before predictions were kept has neither: :class:`NoPredictions` (409) says how to get them —
``vitrine eval RUN_ID`` evaluates a trained run again (:func:`reevaluate_detection_run`), an
imported detector is recorded again with ``vitrine eval --model M --data D --record``. The server's
``evaluate-run`` job (:mod:`vitrine.tasks.evaluate_run`) does the former from the run's page.

The ground truth comes from the dataset the run names: the annotation file or folder it was trained
or scored on (``dataset_path``), else the workspace dataset of its name, restricted to the images
the predictions file lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vitrine.core.errors import NotFound, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.evaluate.detection_errors import detection_errors
from vitrine.evaluate.predictions_file import has_predictions, read_predictions
from vitrine.runs import Run


class NoPredictions(VitrineError):
    """A detection run evaluated before runs kept their predictions."""

    status = 409
    code = "no_predictions"


@dataclass
class RunErrors:
    """A run's ground truth (``gt``: the images it was scored on) and kept predictions (``results``)."""

    run_id: str
    gt: object  # DetectionDataset
    results: list[dict]
    split: str | None
    dataset: str  # the dataset's name (a workspace dataset, or the name it was scored under)
    ignore_difficult: bool = False
    iou_types: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loaded_at: float = field(default_factory=time.time)

    def errors(self, **options) -> dict:
        """:func:`~vitrine.evaluate.detection_errors.detection_errors` on this run."""
        return detection_errors(self.gt, self.results, ignore_difficult=self.ignore_difficult, **options)

    def image_ids(self) -> set[int]:
        return {im.id for im in self.gt.images}

    def image_path(self, image_id: int) -> Path:
        """The file of one of the run's scored images (NotFound for any other id, and for a file name
        that leads outside the dataset's images folder)."""
        image = next((im for im in self.gt.images if im.id == int(image_id)), None)
        if image is None or self.gt.root is None:
            raise NotFound(f"no image {image_id} among the images run {self.run_id!r} was scored on")
        root = Path(self.gt.root).resolve()
        path = (root / image.file_name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise NotFound(
                f"image {image.file_name} of run {self.run_id!r} is not on the server", hint="check the dataset"
            )
        return path


def _dataset_of(ws: Workspace, run: Run):
    """The whole dataset the run was scored on."""
    from vitrine.data.detection.resolve import resolve_dataset

    name = str(run.record.get("dataset") or "")
    source = run.record.get("dataset_path")
    if source and Path(source).exists():
        return resolve_dataset(str(source), name)[0]
    if name and ws.dataset_dir(name).is_dir():
        return resolve_dataset(str(ws.dataset_dir(name)), name)[0]
    raise NotFound(
        f"the dataset of run {run.id!r} ({source or name!r}) is not on this server",
        hint="its errors are drawn on the dataset's images: put the dataset back where it was",
    )


def _restrict(ds, image_ids: list[int]):
    from vitrine.data.detection.model import DetectionDataset

    ids = set(image_ids)
    return DetectionDataset(
        images=[im for im in ds.images if im.id in ids],
        categories=list(ds.categories),
        annotations=[a for a in ds.annotations if a.image_id in ids],
        root=ds.root,
    )


def load_run_errors(ws: Workspace, run: Run) -> RunErrors:
    """The ground truth and predictions of detection run ``run``; :class:`NoPredictions` when it kept none."""
    from vitrine.core.jsonio import read_json

    report = read_json(run.dir / "detection_metrics.json") or {}
    notes: list[str] = []
    if has_predictions(run.dir):
        doc = read_predictions(run.dir)
        ds = _dataset_of(ws, run)
        gt = _restrict(ds, doc.get("image_ids") or [])
        missing = len(set(doc.get("image_ids") or [])) - len(gt.images)
        if missing:
            notes.append(f"{missing} image(s) the run was scored on are no longer in its dataset")
        results, split, ignore = doc["results"], doc.get("split"), bool(doc.get("ignore_difficult"))
    elif (run.dir / "submission.json").is_file():  # a submission scored before runs kept predictions
        from vitrine.evaluate.submission import load_target, read_coco_results

        split = str((run.record.get("config") or {}).get("split") or "test")
        target = load_target(ws, str(run.record.get("dataset")), split)
        gt, results, ignore = target.gt, read_coco_results((run.dir / "submission.json").read_bytes(), target), False
    else:
        trained = not run.record.get("imported") and not run.record.get("submission")
        raise NoPredictions(
            f"run {run.id!r} was evaluated before detection runs kept their predictions: it has no errors to show",
            hint=f"evaluate it again to keep them: vitrine eval {run.id} (or Evaluate again on its page)"
            if trained
            else "record the detector again: vitrine eval --model M --data D --data-split S --record",
        )
    types = [t for t in report.get("iou_types", ["bbox"]) if t in ("bbox", "segm")] or ["bbox"]
    if report and len(gt.images) != report.get("images", len(gt.images)):
        notes.append("the dataset changed since the run was evaluated: the errors are against today's labels")
    return RunErrors(run.id, gt, results, split, str(run.record.get("dataset") or ""), ignore, types, notes)


class NotFinished(VitrineError):
    status = 409
    code = "conflict"


def check_reevaluable(run: Run) -> None:
    """A VitrineError unless ``run`` is a trained detection run that has finished with a checkpoint."""
    if run.record.get("imported") or run.record.get("submission"):
        raise VitrineError(
            f"run {run.id!r} has no model of its own to run again",
            hint="record the detector again: vitrine eval --model M --data D --data-split S --record",
        )
    if run.record.get("state") not in ("done", "cancelled"):
        raise NotFinished(f"run {run.id!r} is {run.record.get('state')}: evaluate it when it has finished")
    if not any((run.dir / "checkpoints" / name).is_file() for name in ("best.pt", "last.pt")):
        raise NotFinished(f"run {run.id!r} has no checkpoint to evaluate", hint="train it again")


def reevaluate_detection_run(ws: Workspace, run: Run, progress=None) -> dict:
    """Evaluate a finished trained detection run again on the split it was evaluated on, with its
    best checkpoint and its own thresholds: rewrites its report files and keeps its predictions
    (``predictions.json.gz``); the run's metrics for that split are updated. Returns the report."""
    from vitrine.evaluate.detection import (
        coco_results,
        evaluate_detection,
        predict_dataset,
        report_summary,
        write_detection_report,
    )
    from vitrine.evaluate.predictions_file import write_predictions
    from vitrine.predict.detector import load_detector

    check_reevaluable(run)
    metrics = dict(run.record.get("metrics") or {})
    split = next((s for s in ("test", "val") if isinstance(metrics.get(s), dict) and "n_images" in metrics[s]), None)
    split = split or str((run.record.get("data") or {}).get("eval_split") or "test")
    ds = _dataset_of(ws, run)
    gt = ds.split(split)
    if not gt.images:
        raise VitrineError(f"the dataset of run {run.id!r} has no {split!r} images any more")
    config = run.record.get("config") or {}
    detector = load_detector(run.id, workspace=ws.root)
    predictions = predict_dataset(detector, gt, threshold=0.0, progress=progress)
    report = evaluate_detection(
        gt,
        predictions,
        score_threshold=float(config.get("score_threshold", 0.5)),
        iou_threshold=float(config.get("iou_threshold", 0.5)),
    )
    write_detection_report(report, run.dir)
    write_predictions(run.dir, coco_results(gt, predictions), [im.id for im in gt.images], split)
    metrics[split] = {**(metrics.get(split) or {}), **report_summary(report), "n_images": len(gt.images)}
    run.update(metrics=metrics, reevaluated_at=time.time())
    run.publish()
    return report


__all__ = ["NoPredictions", "RunErrors", "check_reevaluable", "load_run_errors", "reevaluate_detection_run"]

"""A detector trained elsewhere (a YOLO exported to ONNX, any registry detector, another workspace's
run), scored on a dataset and recorded as a run, so that it stands on the leaderboard beside the
runs trained here: the same metrics, the split fingerprint, the speed harness and the cost figures.

The run is an ordinary ``detection`` run (state ``done``, no checkpoints) whose record says where the
model came from (``imported``). Its evaluation sits under ``metrics[<split>]`` with the split's
fingerprint, exactly where a trained run's is, so the board ranks the two together only when they
were scored on the same images and labels.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from vitrine.collection.imageio import open_image
from vitrine.core.workspace import Workspace, check_name
from vitrine.data.fingerprint import detection_fingerprint
from vitrine.evaluate.cost import weights_bytes
from vitrine.evaluate.detection import measure_detector_speed, report_summary, write_detection_report
from vitrine.runs import Run

SPEED_IMAGES = 10  # images timed one at a time (latency at batch 1)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _onnx_parameters(path: Path) -> int | None:
    """The number of weights stored in an ONNX file (its initializers)."""
    try:
        import numpy as np
        import onnx
    except ImportError:  # pragma: no cover - a test dependency
        return None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - a count we cannot make is None
        return None
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def record_detector(
    workspace: Workspace,
    detector,
    gt,
    report: dict,
    *,
    split: str | None,
    dataset: str,
    source: str,
    run_id: str | None = None,
    label: str | None = None,
    extra: dict | None = None,
    fingerprint_of=None,
) -> Run:
    """A finished ``detection`` run for ``detector`` scored on ``gt`` (the images of ``split``):
    ``report`` is its :func:`~vitrine.evaluate.detection.evaluate_detection` report; ``source``
    the model as the user named it (a file or a registry name); ``label`` its name on the board
    (default: the detector's); ``extra`` more fields of the run record (a submission says so);
    ``fingerprint_of`` the whole dataset ``gt`` was taken from, when ``gt`` is only its split
    (the fingerprint is the split's within the dataset, as trained runs record it)."""
    check_name(dataset, "dataset name")
    path = Path(source)
    weights = path if path.is_file() else None
    config = {
        "imported": str(path.resolve()) if weights else source,
        "layout": getattr(detector, "layout", None),
        "input_size": getattr(detector, "height", None),
        "sha256": _sha256(path) if weights else None,
        "score_threshold": report.get("score_threshold"),
        "iou_threshold": report.get("iou_threshold"),
    }
    images = [open_image(Path(gt.root) / im.file_name) for im in gt.images[:SPEED_IMAGES]]
    speed = measure_detector_speed(detector, images, repeats=SPEED_IMAGES) if images else {}
    speed["latency_ms"] = speed.get("ms_per_image")
    key = split or "all"
    evaluation = {
        **report_summary(report),
        "split": split,
        "fingerprint": detection_fingerprint(fingerprint_of if fingerprint_of is not None else gt, split),
        "n_images": report.get("images"),
    }
    cost = {
        "parameters": _onnx_parameters(weights) if weights and weights.suffix.lower() == ".onnx" else None,
        "gflops": None,
        "input_size": getattr(detector, "height", None),
        "weights_bytes": weights_bytes(weights),
    }
    model = label or getattr(detector, "name", None) or path.name
    run = Run.create(workspace, "detection", dataset, model, config, run_id=run_id,
                     extra={"task": "detection", "imported": True, **(extra or {})})  # fmt: skip
    now = time.time()
    write_detection_report(report, run.dir)
    run.update(
        state="done",
        classes=sorted({c.name for c in gt.categories}),
        metrics={key: evaluation, "speed": speed, "cost": cost},
        started_at=now,
        finished_at=now,
    )
    return run

"""A detector trained elsewhere (a YOLO exported to ONNX, a torchvision checkpoint, any registry
detector, another workspace's run), scored on a dataset and recorded as a run, so that it stands on
the leaderboard beside the runs trained here: the same metrics, the split fingerprint, the speed
harness and the cost figures.

The run is an ordinary ``detection`` run (state ``done``, no checkpoints) whose record says where the
model came from (``imported``, with what the loader knows of it: a checkpoint's format, builder and
class count) and the decisions made loading it (``data.notes``: where the class names came from).
Its evaluation sits under ``metrics[<split>]`` with the split's fingerprint, exactly where a trained
run's is, so the board ranks the two together only when they were scored on the same images and
labels. A torch model's cost is measured as a trained run's is (parameters, GFLOPs of one forward
pass on a dataset image, which the network resizes to its input size); an ONNX file's parameters
are the weights it stores.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from vitrine.collection.imageio import open_image
from vitrine.core.workspace import Workspace, check_name
from vitrine.evaluate.comparable import split_record, torch_cost
from vitrine.evaluate.cost import weights_bytes
from vitrine.evaluate.detection import coco_results, measure_detector_speed, report_summary, write_detection_report
from vitrine.evaluate.predictions_file import write_predictions
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


def _torch_module(detector):
    """The torch network a detector runs, or None (ONNX Runtime, OpenCV)."""
    model = getattr(detector, "model", None)
    try:
        import torch
    except ImportError:  # pragma: no cover - a dependency
        return None
    return model if isinstance(model, torch.nn.Module) else None


def input_size(detector) -> int | None:
    """The side a detector resizes images to: its own ``input_size`` (an ONNX model's ``height``),
    else the shorter side of a torchvision network's transform."""
    size = getattr(detector, "input_size", None) or getattr(detector, "height", None)
    if size:
        return int(size)
    module = _torch_module(detector)
    transform = getattr(module, "transform", None) or getattr(getattr(module, "model", None), "transform", None)
    sizes = getattr(transform, "min_size", None)
    return int(sizes[0]) if isinstance(sizes, tuple | list) and sizes else None


def _cost(detector, weights: Path | None, images: list) -> dict:
    """Parameters, GFLOPs (torch models: one forward pass on the first image), input size, weights bytes."""
    module = _torch_module(detector)
    size = input_size(detector)
    if module is not None:
        import numpy as np
        import torch

        example = None
        if images:
            pixels = np.asarray(images[0].convert("RGB"), dtype=np.uint8).copy()
            device = next(module.parameters()).device
            example = [torch.from_numpy(pixels).permute(2, 0, 1).to(device, torch.float32) / 255.0]
        return torch_cost(module, example, weights, size)
    onnx = weights is not None and weights.suffix.lower() == ".onnx"
    return {
        "parameters": _onnx_parameters(weights) if onnx else None,
        "gflops": None,
        "input_size": size,
        "weights_bytes": weights_bytes(weights),
    }


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
    predictions=None,
    dataset_path: str | None = None,
) -> Run:
    """A finished ``detection`` run for ``detector`` scored on ``gt`` (the images of ``split``):
    ``report`` is its :func:`~vitrine.evaluate.detection.evaluate_detection` report; ``source``
    the model as the user named it (a file or a registry name); ``label`` its name on the board
    (default: the detector's); ``extra`` more fields of the run record (a submission says so);
    ``fingerprint_of`` the whole dataset ``gt`` was taken from, when ``gt`` is only its split
    (the fingerprint is the split's within the dataset, as trained runs record it); ``predictions``
    what ``report`` scored (``{image_id: Detections}``), kept as ``predictions.json.gz``;
    ``dataset_path`` the annotation file or folder ``gt`` was read from (where the run's errors view
    finds its ground truth and images). What the
    detector says of itself (``source_info``: a checkpoint's format, builder, class count;
    ``notes``) is kept in the run."""
    check_name(dataset, "dataset name")
    path = Path(source)
    weights = path if path.is_file() else None
    config = {
        "imported": str(path.resolve()) if weights else source,
        "layout": getattr(detector, "layout", None),
        "input_size": input_size(detector),
        "sha256": _sha256(path) if weights else None,
        "score_threshold": report.get("score_threshold"),
        "iou_threshold": report.get("iou_threshold"),
        **(getattr(detector, "source_info", None) or {}),
    }
    images = [open_image(Path(gt.root) / im.file_name) for im in gt.images[:SPEED_IMAGES]]
    speed = measure_detector_speed(detector, images, repeats=SPEED_IMAGES) if images else {}
    speed["latency_ms"] = speed.get("ms_per_image")
    key = split or "all"
    evaluation = {
        **report_summary(report),
        **split_record(fingerprint_of if fingerprint_of is not None else gt, split),
        "n_images": report.get("images"),
    }
    cost = _cost(detector, weights, images)
    model = label or getattr(detector, "name", None) or path.name
    fields = {"task": "detection", "imported": True, **({"dataset_path": dataset_path} if dataset_path else {})}
    run = Run.create(workspace, "detection", dataset, model, config, run_id=run_id, extra={**fields, **(extra or {})})
    now = time.time()
    write_detection_report(report, run.dir)
    if predictions is not None:  # kept for browsing the run's errors image by image
        write_predictions(run.dir, coco_results(gt, predictions), [im.id for im in gt.images], split,
                          ignore_difficult=bool(report.get("ignore_difficult")))  # fmt: skip
    run.update(
        state="done",
        classes=sorted({c.name for c in gt.categories}),
        metrics={key: evaluation, "speed": speed, "cost": cost},
        data={"notes": list(getattr(detector, "notes", None) or [])},
        started_at=now,
        finished_at=now,
    )
    return run

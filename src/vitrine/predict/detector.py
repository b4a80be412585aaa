"""Detectors by name, for inference: a registry model or a detection run fine-tuned in vitrine.

``load_detector(name)`` resolves either a registry model (tasks ``detection`` / ``segmentation``,
see :mod:`vitrine.models.detectors.zoo`) or a run fine-tuned in vitrine (by run id, in the
workspace), and returns a :class:`~vitrine.models.detectors.base.Detector`. ``draw_overlay``
(:mod:`vitrine.predict.overlay`) draws its :class:`~vitrine.models.detectors.base.Detections`;
:mod:`vitrine.predict.export` turns them into the API/CLI JSON and COCO results.

Heavy libraries (torch, torchvision, OpenCV) are imported only when a model is loaded.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from vitrine.core.errors import ModelError, NotFound, VitrineError
from vitrine.models.detectors.base import Detections, Detector

DETECTION_TASKS = ("detection", "segmentation")
# model names that are files on this machine (ONNX YOLOs, torchvision checkpoints): the CLI loads
# them; the server never loads a file a request names
MODEL_FILE_SUFFIXES = (".onnx", ".pt", ".pth")

__all__ = [
    "DETECTION_TASKS",
    "MODEL_FILE_SUFFIXES",
    "Detections",
    "Detector",
    "draw_overlay",
    "is_model_file",
    "list_detectors",
    "load_detector",
]


def is_model_file(name: str) -> bool:
    """Whether ``name`` is a model file's path (``.onnx``, ``.pt``, ``.pth``, ``.xml``) or a model folder
    written by ``vitrine export-model``, rather than a registry model or a run id."""
    from vitrine.predict.exported import is_exported_model

    text = str(name).strip()
    return text.lower().endswith((*MODEL_FILE_SUFFIXES, ".xml")) or is_exported_model(text)


def _load_exported(name: str) -> Detector:
    """The detector exported to ``name`` (a folder with vitrine-model.json, or a model file in it)."""
    from vitrine.predict.exported import load_exported

    model = load_exported(name)
    if model.manifest["task"] == "classification":
        raise ModelError(
            f"{name} is an exported classifier, not a detector",
            hint=f"classify with `vitrine predict --model {name} IMAGES...`",
        )
    return model  # type: ignore[return-value]


def _workspace(workspace):
    from vitrine.core.workspace import Workspace

    if workspace is None or isinstance(workspace, Workspace):
        return workspace if workspace is not None else Workspace()
    return Workspace(Path(workspace))


def _run_task(record: dict) -> str | None:
    """The detection task of a run record, or None when the run is not a detector."""
    task = record.get("task") or (record.get("config") or {}).get("task")
    if task in DETECTION_TASKS:
        return task
    kind = str(record.get("kind", ""))
    if kind in DETECTION_TASKS or kind.startswith(("detect", "segment")):
        return "segmentation" if kind.startswith("segment") else "detection"
    return None


def _registry_names() -> list[str]:
    from vitrine.models import registry

    return sorted(s.name for s in registry.list_models() if s.task in DETECTION_TASKS)


def load_detector(
    name: str,
    weights: str | None = None,
    device: str | None = None,
    workspace=None,
    *,
    arch: str | None = None,
    classes=None,
    categories=None,
) -> Detector:
    """A detector by name: a registry model (``ssd-mobilenet-v2-coco``, ``maskrcnn-r50-fpn``...), a
    folder written by ``vitrine export-model`` (or its model file: :mod:`vitrine.predict.exported`, no
    torch), a YOLO exported to ONNX (a path ending in ``.onnx``: :mod:`vitrine.models.detectors.onnx_yolo`), a
    torchvision detection checkpoint (a path ending in ``.pt`` / ``.pth``:
    :mod:`vitrine.predict.torchvision_checkpoint`) or the id of a detection run fine-tuned in
    ``workspace`` (a :class:`~vitrine.core.workspace.Workspace` or a folder; default
    ``$VITRINE_HOME`` or the current folder).

    For a checkpoint only: ``arch`` (the torchvision builder of a bare state_dict), ``classes`` (a
    file of class names, one a line, or the names) and ``categories`` (the categories of the dataset
    it is scored on, for names when ``classes`` is not given).

    Registry models are loaded once per process (``weights``: a local weights file or folder).
    Raises :class:`ModelError` (unknown name, not a detector, weights unavailable) or
    :class:`NotFound` with a hint.
    """
    from vitrine.models import registry

    if not name or not str(name).strip():
        raise ModelError("no detection model given", hint=f"one of {', '.join(_registry_names())}, or a run id")
    name = str(name).strip()
    from vitrine.predict.exported import is_exported_model

    a_folder = "/" in name and Path(name).expanduser().is_dir() and not (Path(name) / "run.json").is_file()
    if is_exported_model(name) or a_folder:  # exported by `vitrine export-model` (another folder: why not)
        return _load_exported(name)
    from vitrine.predict.torchvision_checkpoint import is_checkpoint_name, load_checkpoint_detector

    if is_checkpoint_name(name):  # a torchvision detector trained elsewhere, or a run's last.pt / best.pt
        return load_checkpoint_detector(name, arch=arch, classes=classes, categories=categories, device=device)
    if arch is not None or classes is not None:
        raise ModelError(
            f"--arch and --classes are for a .pt / .pth checkpoint, not {name!r}",
            hint="leave them out, or give the checkpoint file",
        )
    if name.lower().endswith(".onnx"):  # a YOLO exported to ONNX elsewhere (Ultralytics, YOLOv5)
        from vitrine.models.detectors.onnx_yolo import OnnxYoloDetector

        return OnnxYoloDetector(Path(name).expanduser())
    specs = {s.name: s for s in registry.list_models()}
    spec = specs.get(name)
    if spec is not None:
        if spec.task not in DETECTION_TASKS:
            raise ModelError(
                f"model {name!r} is a {spec.task} model, not a detector",
                hint=f"detection models: {', '.join(_registry_names())}",
            )
        return registry.load(name, weights=weights, device=device)  # type: ignore[return-value]
    return _load_run(name, device=device, workspace=workspace)


def _load_run(run_id: str, device: str | None, workspace) -> Detector:
    from vitrine.core.workspace import check_name
    from vitrine.runs import Run

    known = ", ".join(_registry_names())
    try:
        check_name(run_id, "run id")
    except VitrineError:
        raise ModelError(
            f"unknown detection model {run_id!r}", hint=f"detection models: {known}, or the id of a detection run"
        ) from None
    ws = _workspace(workspace)
    try:
        run = Run.load(ws, run_id)
    except NotFound:
        raise ModelError(
            f"unknown detection model {run_id!r}: neither a registry model nor a run in {ws.root}",
            hint=f"detection models: {known}; fine-tuned detectors are listed by `vitrine runs`",
        ) from None
    if _run_task(run.record) is None:
        raise ModelError(
            f"run {run_id!r} is a {run.record.get('kind', 'unknown')} run, not a detector",
            hint=f"detection models: {known}, or the id of a detection run",
        )
    try:
        from vitrine.predict.run_detector import load_run_detector
    except ImportError:
        raise NotFound(
            f"run {run_id!r} is a detection run, but this vitrine cannot load fine-tuned detectors",
            hint=f"update vitrine (vitrine.predict.run_detector is missing), or use a registry model: {known}",
        ) from None
    params = inspect.signature(load_run_detector).parameters
    if "device" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return load_run_detector(run, device=device)
    return load_run_detector(run)


def list_detectors(workspace=None) -> list[dict]:
    """Registry detectors (with availability, no network) and the workspace's detection runs.

    Each row: ``name``, ``task``, ``kind`` (``"registry"`` or ``"run"``), ``available``, a
    ``summary``; registry rows carry the full model card, run rows the run's ``state``,
    ``dataset``, ``classes`` and ``metrics``.
    """
    from vitrine.models import registry

    rows = []
    for spec in registry.list_models():
        if spec.task in DETECTION_TASKS:
            rows.append({**spec.describe(probe_hub=False), "kind": "registry"})
    try:
        from vitrine.runs import list_runs

        runs = list_runs(_workspace(workspace))
    except VitrineError:
        runs = []
    for run in runs:
        task = _run_task(run.record)
        if task is None:
            continue
        state = run.record.get("state", "")
        rows.append(
            {
                "name": run.id,
                "task": task,
                "kind": "run",
                "available": state == "done",
                "state": state,
                "dataset": run.record.get("dataset"),
                "model": run.record.get("model"),
                "classes": run.record.get("classes", []),
                "metrics": run.record.get("metrics", {}),
                "summary": f"fine-tuned {run.record.get('model', 'detector')} on {run.record.get('dataset', '?')}",
            }
        )
    return rows


def draw_overlay(*args, **kwargs):
    """See :func:`vitrine.predict.overlay.draw_overlay` (imported lazily)."""
    from vitrine.predict.overlay import draw_overlay as _draw

    return _draw(*args, **kwargs)

"""What the image commands read, shared by ``vitrine predict``, ``detect``, ``segment`` and ``eval``:
the image files under the paths given, and the detector to run on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def collect_inputs(args: list[Path]) -> list[tuple[str, Path | None, str | None]]:
    """``(shown path, file, error)`` for every image under ``args``, in the order given (folders sorted)."""
    from vitrine.collection.walk import walk_images
    from vitrine.core.errors import VitrineError

    out: list[tuple[str, Path | None, str | None]] = []
    seen: set[Path] = set()

    def add(shown: str, path: Path | None, error: str | None) -> None:
        if path is not None:
            key = path.resolve()
            if key in seen:
                return
            seen.add(key)
        out.append((shown, path, error))

    for arg in args:
        if arg.is_dir():
            try:
                found, skipped = walk_images(arg)
            except VitrineError as exc:
                add(str(arg), None, exc.message)
                continue
            rows = [(str(arg / f.relpath), f.path, None) for f in found]
            rows += [(str(arg / s.relpath), None, s.reason) for s in skipped]
            for shown, path, error in sorted(rows, key=lambda r: r[0]):
                add(shown, path, error)
        elif arg.exists():
            add(str(arg), arg, None)
        else:
            add(str(arg), None, "no such file or folder")
    return out


def _segmentation_models(workspace) -> list[str]:
    from vitrine.predict.detector import list_detectors

    return [r["name"] for r in list_detectors(workspace=workspace) if r.get("task") == "segmentation"]


def load_for_task(model: str, task: str, workspace, **checkpoint: Any) -> Any:
    """The detector ``model``; for ``segment``, refuse a boxes-only model with the ones to use.
    ``checkpoint``: ``arch``, ``classes``, ``categories`` for a .pt / .pth file (see
    :func:`vitrine.predict.detector.load_detector`)."""
    from vitrine.core.errors import VitrineError
    from vitrine.predict.detector import load_detector

    detector = load_detector(model, workspace=workspace, **checkpoint)
    if task == "segmentation" and getattr(detector, "task", "detection") != "segmentation":
        seg = _segmentation_models(workspace)
        raise VitrineError(
            f"model {model!r} only detects boxes: it cannot segment",
            hint=("segmentation models: " + ", ".join(seg) if seg else "fine-tune a Mask R-CNN first")
            + f"; or run `vitrine detect --model {model}` for boxes",
        )
    return detector

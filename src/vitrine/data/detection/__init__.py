"""Detection and instance-segmentation datasets: one in-memory model (``model.py``), readers and
writers in symmetric pairs (COCO, YOLO, CVAT for images 1.1, Pascal VOC), conversion, and the
offline scenes generator. Names are imported lazily so that ``model`` stays light."""

from __future__ import annotations

from importlib import import_module

from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord, Problem

_LAZY = {
    "from_coco": "coco",
    "to_coco": "coco",
    "from_yolo": "yolo",
    "to_yolo": "yolo",
    "from_cvat": "cvat",
    "to_cvat": "cvat",
    "from_voc": "voc",
    "to_voc": "voc",
    "read_any": "convert",
    "write_any": "convert",
    "detect_format": "convert",
    "generate_scenes": "scenes",
}

__all__ = ["Annotation", "Category", "DetectionDataset", "ImageRecord", "Problem", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"vitrine.data.detection.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

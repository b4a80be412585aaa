"""Read or write any supported annotation format: COCO, YOLO, CVAT for images 1.1, Pascal VOC."""

from __future__ import annotations

import os
from pathlib import Path

from vitrine.core.errors import NotFound, VitrineError
from vitrine.data.detection.model import DetectionDataset, Problem

__all__ = ["FORMATS", "detect_format", "read_any", "write_any"]

FORMATS = ("coco", "yolo", "cvat", "voc")


def _xml_root_tag(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
    except OSError:
        return None
    for tag in ("annotations", "annotation"):
        if f"<{tag}>" in head or f"<{tag} " in head:
            return tag
    return None


def detect_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its name and a peek inside: a .json file is COCO, an .xml file
    CVAT (``<annotations>``) or VOC (``<annotation>``), a data.yaml, an obj.data (darknet) or a
    folder with ``labels/`` YOLO, a folder with ``Annotations/`` VOC."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFound(f"not found: {p}")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            return "coco"
        if suffix in (".yaml", ".yml") or p.name.lower() == "obj.data":
            return "yolo"
        if suffix == ".xml":
            tag = _xml_root_tag(p)
            if tag == "annotations":
                return "cvat"
            if tag == "annotation":
                return "voc"
    else:
        if (
            any((p / n).is_file() for n in ("data.yaml", "dataset.yaml", "data.yml", "obj.data"))
            or (p / "labels").is_dir()
        ):
            return "yolo"
        if (p / "Annotations").is_dir():
            return "voc"
        xmls = sorted(p.glob("*.xml"))
        if xmls and all(_xml_root_tag(x) == "annotation" for x in xmls[:5]):
            return "voc"
    raise VitrineError(
        f"cannot tell the annotation format of {p}",
        hint="give it with --from (coco, yolo, cvat, voc): a COCO .json, a CVAT .xml, a YOLO data.yaml, obj.data or "
        "folder, "
        "a VOC folder with Annotations/",
    )


def dataset_name(path: str | os.PathLike) -> str:
    """The name a detection dataset read from ``path`` goes by (in runs and on leaderboards): the
    dataset's folder for ``<folder>/annotations/x.json`` and annotation folders, a COCO file's stem,
    the folder holding any other annotation file (``data.yaml``, a CVAT .xml)."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        return p.parent.name if p.name == "annotations" else p.name
    if p.suffix.lower() == ".json":
        return p.parent.parent.name if p.parent.name == "annotations" else p.stem
    return p.parent.name


def read_any(path: str | os.PathLike, format: str | None = None, images_root: str | os.PathLike | None = None):
    """Read ``path`` in ``format`` (detected when ``None``) as a :class:`DetectionDataset`."""
    fmt = (format or detect_format(path)).lower()
    if fmt == "coco":
        from vitrine.data.detection.coco import from_coco

        return from_coco(path, images_root=images_root)
    if fmt == "yolo":
        from vitrine.data.detection.yolo import from_yolo

        return from_yolo(path)
    if fmt == "cvat":
        from vitrine.data.detection.cvat import from_cvat

        return from_cvat(path, images_root=images_root)
    if fmt == "voc":
        from vitrine.data.detection.voc import from_voc

        return from_voc(path, images_root=images_root)
    raise VitrineError(f"unknown annotation format {format!r}", hint="choose among " + ", ".join(FORMATS))


def write_any(
    ds: DetectionDataset, path: str | os.PathLike, format: str, *, task: str | None = None, images: str = "link"
) -> list[Problem]:
    """Write ``ds`` to ``path`` in ``format``: a .json file (COCO), an .xml file (CVAT), a folder
    (YOLO, VOC; ``images``: link, copy or none). ``task`` (YOLO): detect or segment, by default
    segment when the dataset has masks. Returns what could not be represented."""
    fmt = format.lower()
    if fmt == "coco":
        from vitrine.data.detection.coco import to_coco

        return to_coco(ds, path)
    if fmt == "yolo":
        from vitrine.data.detection.yolo import to_yolo

        return to_yolo(ds, path, task=task or ("segment" if ds.has_masks else "detect"), images=images)
    if fmt == "cvat":
        from vitrine.data.detection.cvat import to_cvat

        return to_cvat(ds, path)
    if fmt == "voc":
        from vitrine.data.detection.voc import to_voc

        return to_voc(ds, path, images=images)
    raise VitrineError(f"unknown annotation format {format!r}", hint="choose among " + ", ".join(FORMATS))

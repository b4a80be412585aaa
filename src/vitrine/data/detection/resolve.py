"""Where a detection dataset comes from: :func:`resolve_dataset` takes a dataset, a COCO json file, a
folder of COCO files of one dataset (``annotations/instances_<split>.json``, merged into one), or any
format :func:`vitrine.data.detection.convert.read_any` reads (YOLO, CVAT, VOC). Trainers, evaluation
and submissions all read a dataset folder through it."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from vitrine.core.errors import VitrineError


def resolve_dataset(dataset, dataset_name: str | None):
    """(DetectionDataset, name, source path or None) from a dataset, a COCO json file, a folder of
    COCO files of one dataset (``annotations/instances_<split>.json``, merged), or any annotation
    format ``vitrine.data.detection.convert.read_any`` reads (YOLO, CVAT, VOC)."""
    from vitrine.data.detection.coco import from_coco
    from vitrine.data.detection.convert import dataset_name as name_of
    from vitrine.data.detection.convert import read_any
    from vitrine.data.detection.model import DetectionDataset

    if isinstance(dataset, DetectionDataset):
        name = dataset_name or (Path(dataset.root).name if dataset.root else "dataset")
        return dataset, name, None
    path = Path(dataset).expanduser()
    if not path.exists():
        raise VitrineError(
            f"detection dataset {path} not found",
            hint="give a COCO annotation file (.json), a folder of them, a YOLO data.yaml, a CVAT .xml or a VOC folder",
        )
    if path.is_dir():
        folder = path / "annotations" if (path / "annotations").is_dir() else path
        found = sorted(folder.glob("*.json"))
        if found:
            ds = _merge([from_coco(p) for p in found], found)
            name = dataset_name or name_of(path)
            return ds, name, str(path.resolve())
    if path.is_file() and path.suffix.lower() == ".json":
        ds = from_coco(path)
        name = dataset_name or name_of(path)
        return ds, name, str(path.resolve())
    ds = read_any(path)  # YOLO, CVAT, VOC
    name = dataset_name or name_of(path)
    return ds, name, str(path.resolve())


def _merge(parts: list, files: list[Path]):
    """One dataset from several COCO files of one dataset (instances_train/val/test.json)."""
    from vitrine.data.detection.model import DetectionDataset

    first = parts[0]
    cats = sorted((c.id, c.name) for c in first.categories)
    root = Path(os.path.commonpath([Path(p.root).resolve() for p in parts]))
    images, annotations, seen, seen_ann = [], [], set(), set()
    for part, file in zip(parts, files, strict=True):
        if sorted((c.id, c.name) for c in part.categories) != cats:
            raise VitrineError(
                f"{file}: its categories differ from those of {files[0].name}",
                hint="train on one annotation file, or give the files the same categories",
            )
        # each file may have its own images folder (COCO's layout: instances_<split>.json with
        # images/<split>/): file names are made relative to the folder they all share
        prefix = Path(os.path.relpath(Path(part.root).resolve(), root)).as_posix()
        for im in part.images:
            if im.id in seen:
                raise VitrineError(f"{file}: image id {im.id} is also in another annotation file of the folder")
            seen.add(im.id)
            images.append(im if prefix == "." else replace(im, file_name=f"{prefix}/{im.file_name}"))
        for a in part.annotations:
            if a.id in seen_ann:
                raise VitrineError(f"{file}: annotation id {a.id} is also in another annotation file of the folder")
            seen_ann.add(a.id)
            annotations.append(a)
    problems = [p for part in parts for p in part.problems]
    root = root if len(parts) > 1 else first.root
    return DetectionDataset(images, list(first.categories), annotations, root, problems)

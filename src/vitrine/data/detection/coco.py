"""COCO instances JSON: :func:`from_coco` / :func:`to_coco`.

Boxes, polygons, RLE masks (compressed ``counts`` strings and uncompressed ``counts`` lists),
``iscrowd`` and ``area`` are read and written. Every entry is checked: an annotation pointing at
an unknown image or category, or with a box of no size, is skipped; one outside its image is
clipped; each is reported as a :class:`~vitrine.data.detection.model.Problem` naming the entry
(``annotations[12] (id 57)``). A file that is not JSON, or lacks ``images`` or ``categories``,
raises :class:`~vitrine.core.errors.VitrineError` with the line and column or the missing key.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vitrine.core.errors import ImageError, NotFound, VitrineError
from vitrine.data.detection._io import image_size, write_text
from vitrine.data.detection.geometry import (
    is_finite,
    polygons_to_rle,
    segmentation_to_polygons,
    to_compressed_rle,
)
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord, Problem
from vitrine.data.detection.validate import clean_annotation

__all__ = ["from_coco", "to_coco", "split_from_name"]

_SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def split_from_name(name: str) -> str | None:
    """``instances_train2017.json`` -> ``"train"``; ``None`` when the name says no split."""
    for word in re.split(r"[^a-z]+", Path(name).stem.lower()):
        if word in _SPLIT_WORDS:
            return _SPLIT_WORDS[word]
    return None


def _load_json(path: Path):
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFound(f"COCO file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise VitrineError(f"{path}: not UTF-8 text (byte {exc.start})", hint="a COCO file is UTF-8 JSON") from None
    except OSError as exc:
        raise VitrineError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise VitrineError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            hint="fix the file (a truncated download or a hand edit?) and try again",
        ) from None


def _guess_root(json_path: Path, file_names: list[str]) -> Path:
    """The images folder: the first candidate where the first listed images exist."""
    base = json_path.parent
    split = split_from_name(json_path.name)
    candidates = [base, base.parent / "images", base / "images", base.parent]
    if split:
        candidates += [base.parent / "images" / split, base.parent / split, base / split]
    probe = file_names[:5]
    for cand in candidates:
        if probe and all((cand / f).is_file() for f in probe):
            return cand
    return base


def _int_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def from_coco(json_path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> DetectionDataset:
    """Read a COCO instances file. ``images_root``: the folder ``file_name`` is relative to (default:
    found next to the file: its folder, ``../images``, ``../images/<split>``...). The split of the
    images is the file's (``instances_val.json`` -> ``val``) unless an image entry says ``split``."""
    path = Path(json_path).expanduser()
    file = str(path)
    data = _load_json(path)
    if isinstance(data, list):
        raise VitrineError(
            f"{path}: a JSON list, not a COCO dataset",
            hint="this looks like a detection results file; a dataset is an object with images, annotations "
            "and categories",
        )
    if not isinstance(data, dict):
        raise VitrineError(f"{path}: the top level is a {type(data).__name__}, not a COCO object")
    for key in ("images", "categories"):
        if key not in data:
            raise VitrineError(
                f"{path}: missing key {key!r} at the top level",
                hint="a COCO instances file has images, annotations and categories lists",
            )
        if not isinstance(data[key], list):
            raise VitrineError(f"{path}: {key!r} is a {type(data[key]).__name__}, not a list")
    raw_anns = data.get("annotations", [])
    if not isinstance(raw_anns, list):
        raise VitrineError(f"{path}: 'annotations' is a {type(raw_anns).__name__}, not a list")

    problems: list[Problem] = []
    categories: dict[int, Category] = {}
    for k, c in enumerate(data["categories"]):
        where = f"categories[{k}]"
        cid = _int_id(c.get("id")) if isinstance(c, dict) else None
        if cid is None or not isinstance(c.get("name"), str) or not c["name"].strip():
            problems.append(Problem(file, where, "category without an integer id and a name: skipped"))
            continue
        if cid in categories:
            problems.append(Problem(file, where, f"category id {cid} used twice: this one skipped"))
            continue
        categories[cid] = Category(cid, c["name"], str(c.get("supercategory") or ""))

    file_split = split_from_name(path.name)
    entries = [im for im in data["images"] if isinstance(im, dict)]
    root = Path(images_root).expanduser() if images_root is not None else None
    if root is None:
        root = _guess_root(path, [str(im.get("file_name", "")) for im in entries if im.get("file_name")])
    images: dict[int, ImageRecord] = {}
    for k, im in enumerate(data["images"]):
        where = f"images[{k}]"
        if not isinstance(im, dict):
            problems.append(Problem(file, where, f"a {type(im).__name__}, not an object: skipped"))
            continue
        iid, name = _int_id(im.get("id")), im.get("file_name")
        if iid is None or not isinstance(name, str) or not name:
            problems.append(Problem(file, where, "image without an integer id and a file_name: skipped"))
            continue
        where = f"images[{k}] (id {iid})"
        if iid in images:
            problems.append(Problem(file, where, f"image id {iid} used twice: this one skipped"))
            continue
        w, h = _int_id(im.get("width")), _int_id(im.get("height"))
        if not (w and h and w > 0 and h > 0):
            try:
                w, h = image_size(root / name)
            except ImageError as exc:
                problems.append(Problem(file, where, f"no width/height and {exc.message}: skipped"))
                continue
        split = im.get("split") if im.get("split") in ("train", "val", "test") else file_split
        images[iid] = ImageRecord(iid, name.replace("\\", "/"), w, h, split)

    annotations: list[Annotation] = []
    used_ids: set[int] = set()
    for k, a in enumerate(raw_anns):
        where = f"annotations[{k}]"
        if not isinstance(a, dict):
            problems.append(Problem(file, where, f"a {type(a).__name__}, not an object: skipped"))
            continue
        aid = _int_id(a.get("id"))
        if aid is not None:
            where = f"annotations[{k}] (id {aid})"
        iid, cid = _int_id(a.get("image_id")), _int_id(a.get("category_id"))
        if iid not in images:
            problems.append(Problem(file, where, f"image_id {a.get('image_id')!r} is not a listed image: skipped"))
            continue
        if cid not in categories:
            problems.append(
                Problem(file, where, f"category_id {a.get('category_id')!r} is not a listed category: skipped")
            )
            continue
        seg = a.get("segmentation")
        if isinstance(seg, list) and not seg:
            seg = None
        elif isinstance(seg, list) and all(is_finite(v) for v in seg):
            seg = [seg]  # a single flat polygon
        bbox = a.get("bbox")
        if bbox is not None and not (isinstance(bbox, list | tuple) and len(bbox) == 4 and is_finite(*bbox)):
            problems.append(Problem(file, where, f"bbox {bbox!r} is not 4 numbers: derived from the mask"))
            bbox = None
        area = a.get("area") if is_finite(a.get("area")) else None
        fresh = aid is not None and aid not in used_ids
        ann = Annotation(
            id=aid if fresh else 0,
            image_id=iid,
            category_id=cid,
            bbox=tuple(float(v) for v in bbox) if bbox is not None else None,
            segmentation=seg,
            iscrowd=1 if a.get("iscrowd") in (1, True) else 0,
            area=float(area) if area is not None else None,
            attributes=dict(a["attributes"]) if isinstance(a.get("attributes"), dict) else {},
        )
        ann = clean_annotation(ann, images[iid], problems, file, where)
        if ann is None:
            continue
        if fresh:
            ann.id = aid  # 0 is a valid id (globox starts there); only repeated ids are renumbered
        else:
            if aid is not None:
                problems.append(Problem(file, where, f"annotation id {aid} used twice: given a new id"))
            ann.id = max(used_ids, default=0) + 1
        used_ids.add(ann.id)
        annotations.append(ann)

    return DetectionDataset(
        images=list(images.values()),
        categories=list(categories.values()),
        annotations=annotations,
        root=root,
        problems=problems,
    )


def to_coco(ds: DetectionDataset, json_path: str | os.PathLike, masks: str = "keep") -> list[Problem]:
    """Write ``ds`` as one COCO instances file (atomically). ``masks``: ``keep`` (polygons stay
    polygons, RLE stays compressed RLE), ``polygons`` (RLE traced into polygons) or ``rle``.
    Annotation ``attributes`` are written under ``"attributes"``; an image's split under
    ``"split"``. Returns what could not be written as asked (nothing in COCO)."""
    if masks not in ("keep", "polygons", "rle"):
        raise VitrineError(f"unknown masks option {masks!r}", hint="choose keep, polygons or rle")
    path = Path(json_path).expanduser()
    sizes = {im.id: (im.height, im.width) for im in ds.images}
    images = []
    for im in ds.images:
        entry = {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
        if im.split:
            entry["split"] = im.split
        images.append(entry)
    anns = []
    for a in ds.annotations:
        seg = a.segmentation
        if seg is not None and masks == "polygons":
            seg = segmentation_to_polygons(seg)
        elif seg is not None and masks == "rle" and not isinstance(seg, dict):
            seg = polygons_to_rle(seg, *sizes[a.image_id])
        elif isinstance(seg, dict):
            seg = to_compressed_rle(seg)
        entry = {
            "id": a.id,
            "image_id": a.image_id,
            "category_id": a.category_id,
            "bbox": [float(v) for v in a.bbox],
            "area": float(a.area) if a.area is not None else float(a.bbox[2] * a.bbox[3]),
            "iscrowd": int(a.iscrowd),
            "segmentation": seg if seg is not None else [],
        }
        if a.attributes:
            entry["attributes"] = a.attributes
        anns.append(entry)
    doc = {
        "info": {"description": "written by vitrine"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": c.supercategory}
            for c in sorted(ds.categories, key=lambda c: c.id)
        ],
    }
    write_text(path, json.dumps(doc, separators=(",", ":")))
    return []

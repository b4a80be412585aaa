"""CVAT for images 1.1 XML: :func:`from_cvat` / :func:`to_cvat`.

::

    <annotations>
      <version>1.1</version>
      <meta><task><labels><label><name>cat</name></label></labels></task></meta>
      <image id="0" name="a.jpg" width="640" height="480" subset="train">
        <box label="cat" occluded="0" xtl="10" ytl="20" xbr="110" ybr="220" z_order="0"/>
        <polygon label="cat" occluded="0" points="10,20;110,20;60,220" z_order="0" group_id="1"/>
      </image>
    </annotations>

Boxes, polygons and CVAT masks (``<mask rle left top width height>``, read as COCO RLE) are
read; shapes sharing a ``group_id`` (and a label) in an image are one
object (that is how an object in several parts, or a box with its polygon, is written). Other
shapes (polylines, points, ellipses, skeletons) are skipped and reported. ``<attribute>``
children, ``occluded`` and ``z_order`` land in the annotation's ``attributes``. Labels that the
file's meta does not declare are skipped and reported (when it declares any).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from vitrine.core.errors import VitrineError
from vitrine.data.detection._io import write_text
from vitrine.data.detection._xml import parse_xml
from vitrine.data.detection.coco import split_from_name
from vitrine.data.detection.geometry import (
    is_finite,
    mask_bbox,
    mask_to_rle,
    polygons_bbox,
    rle_to_mask,
    segmentation_area,
    segmentation_bbox,
    segmentation_to_mask,
    segmentation_to_polygons,
)
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord, Problem
from vitrine.data.detection.validate import clean_annotation, fmt

__all__ = ["from_cvat", "to_cvat"]

_SUBSETS = {"train": "train", "training": "train", "val": "val", "validation": "val", "test": "test"}
_DEFAULT_SUBSET = "default"  # CVAT's name for a task without a subset
_SKIPPED_SHAPES = ("polyline", "points", "ellipse", "cuboid", "skeleton", "tag")


def _float(value: str | None) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if is_finite(v) else None


def _points(text: str | None) -> list[float] | None:
    if not text:
        return None
    out = []
    for pair in text.strip().split(";"):
        xy = pair.split(",")
        if len(xy) != 2:
            return None
        x, y = _float(xy[0]), _float(xy[1])
        if x is None or y is None:
            return None
        out += [x, y]
    return out


def from_cvat(xml_path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> DetectionDataset:
    """Read a CVAT for images 1.1 file. ``images_root``: the folder image names are relative to
    (default: the file's folder, or its ``images/`` subfolder when that holds the images)."""
    path = Path(xml_path).expanduser()
    file = str(path)
    doc = parse_xml(path)
    root_el = doc.root
    if root_el.tag != "annotations":
        raise VitrineError(
            f"{path}: line {doc.line(root_el)}: root element <{root_el.tag}>, expected <annotations>",
            hint="export from CVAT as 'CVAT for images 1.1'",
        )
    problems: list[Problem] = []
    declared: list[str] = []
    meta = root_el.find("meta")
    if meta is not None:
        for label in meta.iter("label"):
            name = (label.findtext("name") or "").strip()
            if name and name not in declared:
                declared.append(name)
    image_els = root_el.findall("image")
    if not image_els and root_el.find("track") is not None:
        raise VitrineError(
            f"{path}: this is a CVAT video export (<track>), not CVAT for images",
            hint="export the task as 'CVAT for images 1.1'",
        )
    # a task export has no subset on its images: the task's <subset> (CVAT), else the file's name
    # (datumaro writes train.xml, val.xml)
    task_subset = meta.findtext("task/subset") if meta is not None else None
    default_split = _SUBSETS.get((task_subset or "").strip().lower()) or split_from_name(path.name)
    names = list(declared)
    images: list[ImageRecord] = []
    annotations: list[Annotation] = []
    for k, im in enumerate(image_els):
        where_im = f"line {doc.line(im)}: <image> {k + 1}"
        w, h, name = _float(im.get("width")), _float(im.get("height")), im.get("name")
        if not name or not w or not h or w <= 0 or h <= 0:
            problems.append(Problem(file, where_im, "image without name, width and height: skipped"))
            continue
        where_im = f"line {doc.line(im)}: <image name={name!r}>"
        subset = im.get("subset")
        split = _SUBSETS.get((subset or "").strip().lower()) if subset is not None else default_split
        record = ImageRecord(len(images) + 1, name.replace("\\", "/"), int(w), int(h), split)
        images.append(record)
        groups: dict[tuple[str, str], Annotation] = {}
        for j, shape in enumerate(im):
            where = f"line {doc.line(shape)}: <image name={name!r}> / <{shape.tag}> {j + 1}"
            if shape.tag in _SKIPPED_SHAPES:
                problems.append(Problem(file, where, f"<{shape.tag}> shapes are not supported: skipped"))
                continue
            if shape.tag not in ("box", "polygon", "mask"):
                continue
            label = shape.get("label")
            if not label:
                problems.append(Problem(file, where, "shape without a label: skipped"))
                continue
            if label not in names:
                if declared:
                    problems.append(Problem(file, where, f"label {label!r} is not declared in <meta>: skipped"))
                    continue
                names.append(label)
            attributes: dict = {}
            for a in shape.findall("attribute"):
                if a.get("name"):
                    attributes[a.get("name")] = (a.text or "").strip()
            for key in ("occluded", "z_order"):
                if shape.get(key) not in (None, "", "0"):
                    attributes[key] = shape.get(key)
            iscrowd = 1 if attributes.pop("iscrowd", "0") in ("1", "true", "True") else 0
            if shape.tag == "box":
                xtl, ytl, xbr, ybr = (_float(shape.get(a)) for a in ("xtl", "ytl", "xbr", "ybr"))
                if None in (xtl, ytl, xbr, ybr):
                    problems.append(Problem(file, where, "box without numeric xtl, ytl, xbr, ybr: skipped"))
                    continue
                bbox, seg = (xtl, ytl, xbr - xtl, ybr - ytl), None
            elif shape.tag == "mask":
                try:
                    seg = _cvat_mask(shape, record)
                except ValueError as exc:
                    problems.append(Problem(file, where, f"{exc}: skipped"))
                    continue
                bbox = mask_bbox(rle_to_mask(seg))
                if bbox is None:
                    problems.append(Problem(file, where, "empty mask: skipped"))
                    continue
            else:
                poly = _points(shape.get("points"))
                if poly is None:
                    problems.append(
                        Problem(file, where, f"points {shape.get('points')!r} are not 'x,y;x,y;...': skipped")
                    )
                    continue
                if len(poly) < 6:
                    problems.append(
                        Problem(file, where, f"polygon with {len(poly) // 2} point(s), at least 3 needed: skipped")
                    )
                    continue
                bbox, seg = polygons_bbox([poly]), [poly]
            ann = Annotation(0, record.id, names.index(label) + 1, bbox, seg, iscrowd, None, attributes)
            ann = clean_annotation(ann, record, problems, file, where)
            if ann is None:
                continue
            group = shape.get("group_id")
            if group not in (None, "", "0"):
                key = (group, label)
                if key in groups:
                    _merge(groups[key], ann, record)
                    continue
                groups[key] = ann
            ann.id = len(annotations) + 1
            annotations.append(ann)
        for ann in groups.values():  # merged groups: box and area of the whole object
            if ann.segmentation is not None:
                ann.bbox = segmentation_bbox(ann.segmentation, record.height, record.width)
                ann.area = segmentation_area(ann.segmentation, record.height, record.width)
    if not image_els:
        problems.append(Problem(file, "<annotations>", "no <image> element: the file holds no annotated image"))
    root = Path(images_root).expanduser() if images_root is not None else path.parent
    if images_root is None and images and not (root / images[0].file_name).is_file():
        if (path.parent / "images" / images[0].file_name).is_file():
            root = path.parent / "images"
    return DetectionDataset(
        images=images,
        categories=[Category(i + 1, n) for i, n in enumerate(names)],
        annotations=annotations,
        root=root,
        problems=problems,
    )


def _cvat_mask(shape, image: ImageRecord) -> dict:
    """A CVAT ``<mask rle left top width height>`` (run lengths over its box, row by row,
    starting with background) as a compressed COCO RLE of the whole image."""
    try:
        runs = [int(v) for v in (shape.get("rle") or "").replace(" ", "").split(",") if v != ""]
        left, top, width, height = (int(float(shape.get(k))) for k in ("left", "top", "width", "height"))
    except (TypeError, ValueError):
        raise ValueError("mask without integer rle, left, top, width and height") from None
    if width <= 0 or height <= 0 or any(r < 0 for r in runs) or sum(runs) != width * height:
        raise ValueError(f"mask rle covers {sum(runs)} pixels, not its {width} x {height} box")
    values = np.arange(len(runs)) % 2
    crop = np.repeat(values, runs).astype(np.uint8).reshape(height, width)
    full = np.zeros((image.height, image.width), np.uint8)
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(image.width, left + width), min(image.height, top + height)
    if x1 > x0 and y1 > y0:
        full[y0:y1, x0:x1] = crop[y0 - top : y1 - top, x0 - left : x1 - left]
    return mask_to_rle(full)


def _merge(into: Annotation, other: Annotation, image: ImageRecord) -> None:
    """One object drawn as several shapes: polygons are joined (masks united), boxes united."""
    a, b = into.segmentation, other.segmentation
    if isinstance(a, dict) or isinstance(b, dict):
        h, w = image.height, image.width
        union = np.zeros((h, w), np.uint8)
        for seg in (a, b):
            if seg is not None:
                union |= segmentation_to_mask(seg, h, w)
        into.segmentation = mask_to_rle(union)
    elif b is not None:
        into.segmentation = (a or []) + list(b)
    x0 = min(into.bbox[0], other.bbox[0])
    y0 = min(into.bbox[1], other.bbox[1])
    x1 = max(into.bbox[0] + into.bbox[2], other.bbox[0] + other.bbox[2])
    y1 = max(into.bbox[1] + into.bbox[3], other.bbox[1] + other.bbox[3])
    into.bbox = (x0, y0, x1 - x0, y1 - y0)
    for k, v in other.attributes.items():
        into.attributes.setdefault(k, v)


def to_cvat(ds: DetectionDataset, xml_path: str | os.PathLike, name: str = "vitrine") -> list[Problem]:
    """Write ``ds`` as one CVAT for images 1.1 file (atomically). Objects with a mask become
    polygons (RLE masks are traced), several parts sharing a ``group_id``; box-only objects
    become ``<box>``. Written as CVAT exports: a dataset of one split (or none) as a task
    (``<meta><task>`` with its ``<subset>``, no ``subset`` on the images), a dataset of several
    splits as a project (``<meta><project>``, one task per split, each image's ``subset``)."""
    path = Path(xml_path).expanduser()
    cats = sorted(ds.categories, key=lambda c: c.id)
    label_of = {c.id: c.name for c in cats}
    subsets = list(dict.fromkeys(im.split or _DEFAULT_SUBSET for im in ds.images)) or [_DEFAULT_SUBSET]
    project = len(subsets) > 1
    root = ET.Element("annotations")
    ET.SubElement(root, "version").text = "1.1"
    meta = ET.SubElement(root, "meta")
    owner = ET.SubElement(meta, "project") if project else meta
    if project:
        ET.SubElement(owner, "name").text = name
        tasks = ET.SubElement(owner, "tasks")
    for subset in subsets if project else subsets[:1]:
        task = ET.SubElement(tasks if project else owner, "task")
        ET.SubElement(task, "name").text = f"{name} {subset}" if project else name
        ET.SubElement(task, "size").text = str(sum(1 for im in ds.images if (im.split or _DEFAULT_SUBSET) == subset))
        ET.SubElement(task, "mode").text = "annotation"
        ET.SubElement(task, "subset").text = subset
    labels = ET.SubElement(owner if project else task, "labels")
    for c in cats:
        lab = ET.SubElement(labels, "label")
        ET.SubElement(lab, "name").text = c.name
        ET.SubElement(lab, "type").text = "any"
        ET.SubElement(lab, "attributes")
    if project:
        ET.SubElement(owner, "subsets").text = "\n".join(subsets)
    by_image = ds.annotations_by_image()
    group = 0
    for k, im in enumerate(ds.images):
        attrs = {"id": str(k), "name": im.file_name, "width": str(im.width), "height": str(im.height)}
        if project:
            attrs["subset"] = im.split or _DEFAULT_SUBSET
        image_el = ET.SubElement(root, "image", attrs)
        for a in by_image.get(im.id, []):
            common = {"label": label_of[a.category_id], "source": "manual"}
            common["occluded"] = str(a.attributes.get("occluded", 0))
            extra = {k: v for k, v in a.attributes.items() if k not in ("occluded", "z_order")}
            if a.iscrowd:
                extra["iscrowd"] = 1
            polys = segmentation_to_polygons(a.segmentation)
            shapes = []
            if polys:
                if len(polys) > 1:
                    group += 1
                for p in polys:
                    points = ";".join(f"{fmt(p[i])},{fmt(p[i + 1])}" for i in range(0, len(p), 2))
                    el = ET.SubElement(image_el, "polygon", {**common, "points": points})
                    shapes.append(el)
            else:
                x, y, w, h = a.bbox
                box = {"xtl": fmt(x), "ytl": fmt(y), "xbr": fmt(x + w), "ybr": fmt(y + h)}
                shapes.append(ET.SubElement(image_el, "box", {**common, **box}))
            for el in shapes:
                el.set("z_order", str(a.attributes.get("z_order", 0)))
                if polys and len(polys) > 1:
                    el.set("group_id", str(group))
                for key, value in extra.items():
                    ET.SubElement(el, "attribute", {"name": str(key)}).text = str(value)
    ET.indent(root, space="  ")
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
    write_text(path, text)
    return []

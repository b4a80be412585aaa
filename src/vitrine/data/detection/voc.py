"""Pascal VOC XML, one file per image: :func:`from_voc` / :func:`to_voc`.

Layout: ``Annotations/<name>.xml``, images in ``JPEGImages/``, splits in
``ImageSets/Main/<split>.txt``, and the class names in order: ``labelmap.txt`` (datumaro's and
CVAT's, ``background`` first), or vitrine's ``labels.txt``; both are written, the first is read.
VOC boxes are 1-based inclusive pixel indexes: a box ``(x, y, w, h)`` is written
``xmin = x + 1``, ``xmax = x + w`` (as Detectron2 and torchvision read them), floats kept to
1e-4 px. ``difficult``, ``truncated``, ``occluded`` and ``pose`` go to the annotation's
``attributes``. VOC holds boxes only: a mask is reported as not representable and its box kept.
A file that is not well-formed XML is skipped and reported with its line (the whole dataset
raises only when no file can be read).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

from vitrine.core.errors import ImageError, NotFound, VitrineError
from vitrine.data.detection._io import image_size, place_image, write_text
from vitrine.data.detection._xml import parse_xml
from vitrine.data.detection.geometry import is_finite
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord, Problem
from vitrine.data.detection.validate import clean_annotation, fmt

__all__ = ["from_voc", "to_voc"]

SPLITS = ("train", "val", "test")
_ATTRIBUTES = ("difficult", "truncated", "occluded")
_BACKGROUND = "background"  # label 0 of a labelmap.txt


def _number(text: str | None) -> float | None:
    try:
        v = float((text or "").strip())
    except ValueError:
        return None
    return v if is_finite(v) else None


def _locate(path: Path, images_root: Path | None) -> tuple[list[Path], Path, Path, Path]:
    """(xml files, annotations folder, images root, dataset folder)."""
    if path.is_file():
        return [path], path.parent, images_root or path.parent, path.parent
    if not path.is_dir():
        raise NotFound(f"VOC dataset not found: {path}")
    ann_dir = path / "Annotations" if (path / "Annotations").is_dir() else path
    base = path if ann_dir != path else path.parent
    if images_root is None:
        images_root = path / "JPEGImages" if (path / "JPEGImages").is_dir() else base / "JPEGImages"
        if not images_root.is_dir():
            images_root = path
    files = sorted(ann_dir.rglob("*.xml"))
    if not files:
        raise VitrineError(f"{path}: no .xml annotation file found", hint="a VOC dataset has Annotations/*.xml")
    return files, ann_dir, images_root, base


def _declared_labels(base: Path, problems: list[Problem]) -> list[str]:
    """The class names in order: ``labelmap.txt`` (datumaro's and CVAT's ``name:r,g,b:parts:actions``,
    ``background`` first: left out, so that category ids are the VOC label indexes), else vitrine's
    ``labels.txt`` (one name a line), else none (names in order of appearance)."""
    labelmap = base / "labelmap.txt"
    if labelmap.is_file():
        names: list[str] = []
        for n, line in enumerate(labelmap.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name = line.split(":", 1)[0].strip()
            if line.count(":") != 3 or not name:
                problems.append(Problem(str(labelmap), f"line {n}", "not 'name:r,g,b:parts:actions': line skipped"))
                continue
            if name in names:
                problems.append(Problem(str(labelmap), f"line {n}", f"label {name!r} declared twice: line skipped"))
                continue
            names.append(name)
        return names[1:] if names[:1] == [_BACKGROUND] else names
    labels_txt = base / "labels.txt"
    if labels_txt.is_file():
        return [n.strip() for n in labels_txt.read_text(encoding="utf-8").splitlines() if n.strip()]
    return []


def _voc_colour(index: int) -> tuple[int, int, int]:
    """The Pascal VOC palette: label index bits spread over the high bits of r, g, b."""
    r = g = b = 0
    for shift in range(7, -1, -1):
        r |= ((index >> 0) & 1) << shift
        g |= ((index >> 1) & 1) << shift
        b |= ((index >> 2) & 1) << shift
        index >>= 3
    return r, g, b


def from_voc(path: str | os.PathLike, images_root: str | os.PathLike | None = None) -> DetectionDataset:
    """Read a VOC dataset: its folder (with ``Annotations/``), a folder of XML files, or one XML."""
    path = Path(path).expanduser()
    files, ann_dir, root, base = _locate(path, Path(images_root).expanduser() if images_root else None)
    problems: list[Problem] = []
    declared = _declared_labels(base, problems)
    declared_in = "labelmap.txt" if (base / "labelmap.txt").is_file() else "labels.txt"
    split_of: dict[str, str] = {}
    for split in SPLITS:
        listing = base / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").splitlines():
                if line.split():
                    split_of.setdefault(line.split()[0], split)
    names = list(declared)
    images: list[ImageRecord] = []
    annotations: list[Annotation] = []
    first_error: VitrineError | None = None
    for xml_file in files:
        file = str(xml_file)
        try:
            doc = parse_xml(xml_file)
        except VitrineError as exc:
            first_error = first_error or exc
            problems.append(Problem(file, "file", f"{exc.message}: file skipped"))
            continue
        el = doc.root
        if el.tag != "annotation":
            problems.append(Problem(file, f"line {doc.line(el)}", f"root <{el.tag}> is not <annotation>: skipped"))
            continue
        rel_dir = xml_file.parent.relative_to(ann_dir).as_posix() if xml_file.is_relative_to(ann_dir) else "."
        filename = (el.findtext("filename") or "").strip()
        if not filename:
            problems.append(Problem(file, f"line {doc.line(el)}", "no <filename>: skipped"))
            continue
        file_name = filename if rel_dir in (".", "") else f"{rel_dir}/{filename}"
        size = el.find("size")
        w = _number(size.findtext("width")) if size is not None else None
        h = _number(size.findtext("height")) if size is not None else None
        if not w or not h or w <= 0 or h <= 0:
            try:
                w, h = image_size(root / file_name)
            except ImageError as exc:
                problems.append(Problem(file, "<size>", f"no usable <size> and {exc.message}: skipped"))
                continue
        stem = file_name.rsplit(".", 1)[0]
        record = ImageRecord(len(images) + 1, file_name, int(w), int(h), split_of.get(stem))
        images.append(record)
        for k, obj in enumerate(el.findall("object")):
            where = f"line {doc.line(obj)}: <object> {k + 1}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                problems.append(Problem(file, where, "object without a <name>: skipped"))
                continue
            if name not in names:
                if declared:
                    problems.append(Problem(file, where, f"label {name!r} is not in {declared_in}: skipped"))
                    continue
                names.append(name)
            box = obj.find("bndbox")
            values = [_number(box.findtext(t)) if box is not None else None for t in ("xmin", "ymin", "xmax", "ymax")]
            if None in values:
                problems.append(Problem(file, where, "no <bndbox> with numeric xmin, ymin, xmax, ymax: skipped"))
                continue
            xmin, ymin, xmax, ymax = values
            attributes: dict = {}
            for key in _ATTRIBUTES:
                v = _number(obj.findtext(key))
                if v is not None:
                    attributes[key] = int(v)
            pose = (obj.findtext("pose") or "").strip()
            if pose and pose != "Unspecified":
                attributes["pose"] = pose
            ann = Annotation(0, record.id, 0, (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1), None, 0)
            ann.attributes = attributes
            ann.category_id = names.index(name) + 1
            ann = clean_annotation(ann, record, problems, file, where)
            if ann is not None:
                ann.id = len(annotations) + 1
                annotations.append(ann)
    if not images and first_error is not None:
        raise first_error
    return DetectionDataset(
        images=images,
        categories=[Category(i + 1, n) for i, n in enumerate(names)],
        annotations=annotations,
        root=root,
        problems=problems,
    )


def to_voc(ds: DetectionDataset, out_dir: str | os.PathLike, images: str = "link") -> list[Problem]:
    """Write ``ds`` as a VOC tree in ``out_dir``: ``Annotations/``, ``JPEGImages/`` (hard links,
    ``copy``, or ``none``), ``ImageSets/Main/<split>.txt``, ``labelmap.txt`` and ``labels.txt``. Masks cannot be
    written (boxes are): they are reported, as are crowd flags."""
    out = Path(out_dir).expanduser()
    cats = sorted(ds.categories, key=lambda c: c.id)
    label_of = {c.id: c.name for c in cats}
    by_image = ds.annotations_by_image()
    problems: list[Problem] = []
    masks = crowd = 0
    listing: dict[str, list[str]] = {}
    for im in ds.images:
        stem = im.file_name.rsplit(".", 1)[0]
        if images != "none":
            if ds.root is None:
                raise VitrineError("the dataset has no images folder (root) to take the images from")
            place_image(ds.root / im.file_name, out / "JPEGImages" / im.file_name, images)
        el = ET.Element("annotation")
        folder, _, filename = im.file_name.rpartition("/")
        ET.SubElement(el, "folder").text = folder or "JPEGImages"
        ET.SubElement(el, "filename").text = filename
        size = ET.SubElement(el, "size")
        ET.SubElement(size, "width").text = str(im.width)
        ET.SubElement(size, "height").text = str(im.height)
        ET.SubElement(size, "depth").text = "3"
        ET.SubElement(el, "segmented").text = "0"
        for a in by_image.get(im.id, []):
            if a.segmentation is not None:
                masks += 1
            if a.iscrowd:
                crowd += 1
            obj = ET.SubElement(el, "object")
            ET.SubElement(obj, "name").text = label_of[a.category_id]
            ET.SubElement(obj, "pose").text = str(a.attributes.get("pose", "Unspecified"))
            for key in _ATTRIBUTES:
                value = a.attributes.get(key)
                if value is not None or key != "occluded":
                    ET.SubElement(obj, key).text = str(int(value or 0))
            x, y, w, h = a.bbox
            box = ET.SubElement(obj, "bndbox")
            for tag, v in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
                ET.SubElement(box, tag).text = fmt(v)
        ET.indent(el, space="  ")
        xml_path = out / "Annotations" / f"{stem}.xml"
        xml_path.parent.mkdir(parents=True, exist_ok=True)
        xml_path.write_text(ET.tostring(el, encoding="unicode") + "\n", encoding="utf-8")
        if im.split:
            listing.setdefault(im.split, []).append(stem)
    for split, stems in listing.items():
        write_text(out / "ImageSets" / "Main" / f"{split}.txt", "".join(s + "\n" for s in stems))
    write_text(out / "labels.txt", "".join(c.name + "\n" for c in cats))
    unwritable = [c.name for c in cats if ":" in c.name or c.name.strip() != c.name or c.name == _BACKGROUND]
    if unwritable:
        problems.append(
            Problem(
                str(out),
                "labelmap.txt",
                f"class name(s) {', '.join(map(repr, unwritable))} cannot be written to labelmap.txt (':' separates "
                "its fields, 'background' is label 0): labelmap.txt not written, labels.txt has the names",
            )
        )
    else:
        lines = ["# label:color_rgb:parts:actions", f"{_BACKGROUND}:0,0,0::"]
        lines += [f"{c.name}:{','.join(map(str, _voc_colour(i)))}::" for i, c in enumerate(cats, start=1)]
        write_text(out / "labelmap.txt", "".join(line + "\n" for line in lines))
    if masks:
        problems.append(
            Problem(str(out), "Annotations", f"{masks} mask(s) not representable in VOC (boxes only): boxes kept")
        )
    if crowd:
        problems.append(Problem(str(out), "Annotations", f"{crowd} crowd flag(s) not representable in VOC: dropped"))
    return problems

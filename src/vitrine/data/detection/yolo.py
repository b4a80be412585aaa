"""YOLO (Ultralytics) txt labels and data.yaml: :func:`from_yolo` / :func:`to_yolo`.

One label file per image, ``labels/<split>/<stem>.txt`` beside ``images/<split>/<name>``, one
object per line, coordinates normalised to [0, 1]:

- detection: ``class cx cy w h``;
- segmentation: ``class x1 y1 x2 y2 ...`` (one polygon per object: several parts, or holes, are
  joined by zero-width bridges, as Ultralytics does).

``data.yaml`` names the classes (``names``: a list or ``{index: name}``) and the splits
(``train``/``val``/``test``: folders or .txt lists of images, relative to ``path`` or to the
yaml's folder). Image sizes come from the image headers (the pixels are not decoded). A bad line
(wrong number of fields, not numbers, class out of range, polygon of fewer than 3 points) is
skipped and reported with its file and line; an unreadable data.yaml raises.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from vitrine.core.errors import ImageError, NotFound, VitrineError
from vitrine.data.detection._io import image_size, place_image, write_text
from vitrine.data.detection.geometry import is_finite, join_polygons, polygons_bbox, segmentation_to_polygons
from vitrine.data.detection.model import Annotation, Category, DetectionDataset, ImageRecord, Problem
from vitrine.data.detection.validate import clean_annotation

__all__ = ["IMAGE_SUFFIXES", "from_yolo", "to_yolo"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


def _num(v: float) -> str:
    """Normalised coordinates with 8 decimals: 1e-3 px or better on images up to 100,000 px."""
    text = f"{float(v):.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``; ``.txt`` suffix."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"YOLO data file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise VitrineError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VitrineError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise VitrineError(f"{path}: expected a mapping (names:, train:, val:), found {type(data).__name__}")
    return data


def _names(value, file: Path) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        try:
            items = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError):
            raise VitrineError(f"{file}: 'names' keys must be class indexes 0, 1, 2...") from None
        if [k for k, _ in items] != list(range(len(items))):
            raise VitrineError(f"{file}: 'names' indexes must be 0..{len(items) - 1} without gaps")
        return [v for _, v in items]
    raise VitrineError(f"{file}: 'names' must be a list or a mapping of index: name", hint="e.g. names: [cat, dog]")


def _images_in(entry: Path) -> list[Path]:
    if entry.is_file() and entry.suffix.lower() == ".txt":  # a list of image paths
        base = entry.parent
        out = []
        for line in entry.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                out.append(p if p.is_absolute() else (base / p))
        return out
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return []


def _parse_labels(
    label: Path, image: ImageRecord, n_classes: int | None, problems: list[Problem], next_id: int
) -> list[Annotation] | None:
    """The annotations of one label file; ``None`` when the file cannot be read (image skipped)."""
    file = str(label)
    try:
        text = label.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []  # no label file: an image without objects
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(file, "file", f"cannot be read as text ({exc}): image skipped"))
        return None
    W, H = image.width, image.height
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"line {n}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            problems.append(Problem(file, where, f"{bad!r} is not a number: line skipped"))
            continue
        if not all(is_finite(v) for v in values):
            problems.append(Problem(file, where, "not finite numbers (nan/inf): line skipped"))
            continue
        cls = values[0]
        if not cls.is_integer() or cls < 0 or (n_classes is not None and cls >= n_classes):
            known = f"0..{n_classes - 1}" if n_classes else "0 or more"
            problems.append(
                Problem(file, where, f"class {fields[0]} is out of range (data.yaml names {known}): line skipped")
            )
            continue
        coords = values[1:]
        if coords and (max(coords) > 1.5 or min(coords) < -0.5):
            problems.append(
                Problem(
                    file,
                    where,
                    f"coordinate {max(coords, key=abs):g} is far outside 0..1 (YOLO coordinates are fractions of "
                    "the image size, not pixels): line skipped",
                )
            )
            continue
        if len(coords) == 4:
            cx, cy, w, h = coords
            box, seg = ((cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H), None
        elif len(coords) >= 6 and len(coords) % 2 == 0:
            poly = [v * (W if i % 2 == 0 else H) for i, v in enumerate(coords)]
            seg, box = [poly], polygons_bbox([poly])
        elif len(coords) == 2:
            problems.append(
                Problem(file, where, f"polygon with {len(coords) // 2} point(s), at least 3 needed: line skipped")
            )
            continue
        else:
            problems.append(
                Problem(
                    file,
                    where,
                    f"{len(fields)} fields: expected 5 (class cx cy w h) or an odd number of 7 or more "
                    "(class x1 y1 x2 y2 x3 y3 ...): line skipped",
                )
            )
            continue
        ann = Annotation(next_id + len(out), image.id, int(cls) + 1, box, seg)
        ann = clean_annotation(ann, image, problems, file, where)
        if ann is not None:
            out.append(ann)
    return out


def _is_float(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


_DARKNET_SPLITS = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}


def _darknet_path(value: str, base: Path) -> Path:
    """A path from obj.data or a list file: darknet runs from a folder where the dataset is ``data/``."""
    p = Path(value.strip())
    if p.is_absolute():
        return p
    if p.parts and p.parts[0] == "data" and not (base / p).exists():
        p = Path(*p.parts[1:]) if len(p.parts) > 1 else Path(".")
    return base / p


def _read_darknet(obj_data: Path, problems: list[Problem]) -> tuple[Path, list[str], dict[str | None, list[Path]]]:
    """(root, class names, images per split) of a darknet layout (CVAT's YOLO 1.1, datumaro's yolo):
    ``obj.data`` (``classes = n``, ``train = data/train.txt``, ``names = data/obj.names``...),
    ``obj.names``, ``obj_<subset>_data/`` with each image's ``.txt`` beside it."""
    base = obj_data.parent
    file = str(obj_data)
    entries: dict[str, str] = {}
    try:
        text = obj_data.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VitrineError(f"cannot read {obj_data}: {exc}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            problems.append(Problem(file, f"line {n}", f"{line.strip()!r} is not 'key = value': line skipped"))
            continue
        entries[key.strip().lower()] = value.strip()
    names_file = _darknet_path(entries.get("names", "obj.names"), base)
    if not names_file.is_file():
        raise VitrineError(
            f"{obj_data}: the class names file {names_file} does not exist",
            hint="a darknet YOLO dataset has obj.names (one class name per line) beside obj.data",
        )
    names = [n.strip() for n in names_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    classes = entries.get("classes")
    if classes is not None and classes.strip().isdigit() and int(classes) != len(names):
        problems.append(Problem(file, "classes", f"classes is {classes} but {names_file.name} names {len(names)}"))
    splits: dict[str | None, list[Path]] = {}
    for key, value in entries.items():
        split = _DARKNET_SPLITS.get(key)
        if split is None:
            continue
        listing = _darknet_path(value, base)
        if not listing.is_file():
            problems.append(Problem(file, key, f"{listing} does not exist: split {split} is empty"))
            continue
        for line in listing.read_text(encoding="utf-8").splitlines():
            if line.strip():
                splits.setdefault(split, []).append(_darknet_path(line, base))
    if not splits:  # no list files: the obj_<subset>_data folders
        for folder in sorted(base.glob("obj_*_data")):
            subset = folder.name[len("obj_") : -len("_data")]
            found = _images_in(folder)
            if found:
                splits.setdefault(_DARKNET_SPLITS.get(subset.lower()), []).extend(found)
    if not splits:
        raise VitrineError(f"{obj_data}: no image listed", hint="obj.data names train = data/train.txt")
    return base, names, splits


def from_yolo(root_or_data_yaml: str | os.PathLike) -> DetectionDataset:
    """Read a YOLO dataset: a data.yaml, or a folder holding one (data.yaml / dataset.yaml), or a
    folder with ``images/`` and ``labels/`` (splits from ``images/train`` etc., names from
    ``classes.txt`` when there is one), or the darknet layout (``obj.data``, ``obj.names``,
    ``obj_train_data/``: CVAT's YOLO 1.1, datumaro's yolo). Category ids are the class indexes + 1."""
    given = Path(root_or_data_yaml).expanduser()
    problems: list[Problem] = []
    if not given.exists():
        raise NotFound(f"YOLO dataset not found: {given}")
    yaml_file = None
    splits: dict[str | None, list[Path]] = {}
    darknet = given if given.is_file() and given.suffix.lower() == ".data" else None
    if darknet is None and given.is_dir() and (given / "obj.data").is_file():
        darknet = given / "obj.data"
    if darknet is not None:
        root, names, splits = _read_darknet(darknet, problems)
    elif given.is_file():
        yaml_file = given
    else:
        for name in ("data.yaml", "dataset.yaml", "data.yml"):
            if (given / name).is_file():
                yaml_file = given / name
                break
    if darknet is not None:
        pass
    elif yaml_file is not None:
        data = _load_yaml(yaml_file)
        if "names" not in data:
            raise VitrineError(f"{yaml_file}: no 'names' (the class names)", hint="add e.g. names: [cat, dog]")
        names = _names(data["names"], yaml_file)
        nc = data.get("nc")
        if nc is not None and nc != len(names):
            problems.append(Problem(str(yaml_file), "nc", f"nc is {nc} but {len(names)} names are given: names used"))
        root = Path(data["path"]) if data.get("path") else yaml_file.parent
        if not root.is_absolute():
            root = (yaml_file.parent / root).resolve()
            if not root.is_dir():
                root = yaml_file.parent
        listed: dict[Path, list[str]] = {}
        for split in SPLITS:
            entries = data.get(split)
            if not entries:
                continue
            for entry in entries if isinstance(entries, list) else [entries]:
                p = Path(str(entry))
                p = p if p.is_absolute() else root / p
                if not p.exists() and str(entry).startswith("../") and (root / str(entry)[3:]).exists():
                    p = root / str(entry)[3:]  # Roboflow's exports say ../train/images for train/images
                if not p.exists():
                    problems.append(Problem(str(yaml_file), split, f"{p} does not exist: split {split} is empty"))
                    continue
                listed.setdefault(p.resolve(), []).append(split)
        for p, named in listed.items():
            # one folder given for several splits (val: images/train is common): the split it is named
            # after (images/train: train), else no split of its own
            own = named[0] if len(named) == 1 else (p.stem if p.stem in named else None)
            splits.setdefault(own, []).extend(_images_in(p))
        if not splits:
            raise VitrineError(
                f"{yaml_file}: no train/val/test image folder found",
                hint="set train: images/train (relative to path: or to the yaml's folder)",
            )
    else:
        root = given
        names = None
        classes_txt = root / "classes.txt"
        if classes_txt.is_file():
            names = [n.strip() for n in classes_txt.read_text(encoding="utf-8").splitlines() if n.strip()]
        images_dir = root / "images" if (root / "images").is_dir() else root
        split_dirs = [s for s in SPLITS if (images_dir / s).is_dir()]
        if split_dirs:
            for s in split_dirs:
                splits[s] = _images_in(images_dir / s)
        else:
            splits[None] = _images_in(images_dir)
        if not any(splits.values()):
            raise VitrineError(f"{given}: no images found", hint="a YOLO dataset has images/ and labels/ folders")

    n_classes = len(names) if names is not None else None
    images: list[ImageRecord] = []
    annotations: list[Annotation] = []
    seen: dict[Path, str | None] = {}
    for split, paths in splits.items():
        for path in paths:
            key = path.resolve()
            if key in seen:
                problems.append(
                    Problem(str(path), "image", f"listed in {seen[key]} and in {split}: kept in {seen[key]} only")
                )
                continue
            seen[key] = split
            try:
                w, h = image_size(path)
            except ImageError as exc:
                problems.append(Problem(str(path), "image", f"{exc.message}: skipped"))
                continue
            rel = Path(os.path.relpath(path, root)).as_posix()
            record = ImageRecord(len(images) + 1, rel, w, h, split)
            anns = _parse_labels(_label_path(path), record, n_classes, problems, len(annotations) + 1)
            if anns is None:
                continue
            images.append(record)
            annotations.extend(anns)
    if names is None:
        top = max((a.category_id for a in annotations), default=0)
        names = [str(i) for i in range(top)]
        if top:
            problems.append(Problem(str(given), "names", "no data.yaml or classes.txt: classes named by index"))
    return DetectionDataset(
        images=images,
        categories=[Category(i + 1, n) for i, n in enumerate(names)],
        annotations=annotations,
        root=root,
        problems=problems,
    )


def to_yolo(
    ds: DetectionDataset, out_dir: str | os.PathLike, task: str = "detect", images: str = "link"
) -> list[Problem]:
    """Write ``ds`` as a YOLO tree in ``out_dir``: ``images/<split>/`` (hard links, ``copy``, or
    ``none`` to write labels only), ``labels/<split>/*.txt`` and ``data.yaml`` (written last, atomically).
    ``task``: ``detect`` (boxes) or ``segment`` (polygons; RLE masks are traced into polygons, a
    box-only object becomes its rectangle). Crowd annotations are left out. Class index = rank of
    the category id. Returns what could not be written as it was."""
    if task not in ("detect", "segment"):
        raise VitrineError(f"unknown YOLO task {task!r}", hint="choose detect or segment")
    out = Path(out_dir).expanduser()
    cats = sorted(ds.categories, key=lambda c: c.id)
    index = {c.id: i for i, c in enumerate(cats)}
    by_image = ds.annotations_by_image()
    problems: list[Problem] = []
    crowd = boxes_as_polygons = 0
    used: dict[Path, str] = {}
    split_dirs: set[str | None] = set()
    for im in ds.images:
        rel = im.file_name
        if "images/" in "/" + rel:  # read from a YOLO tree: keep what is below images/(<split>/)
            rel = ("/" + rel).rsplit("/images/", 1)[1]
        if im.split and rel.startswith(im.split + "/"):
            rel = rel[len(im.split) + 1 :]
        sub = Path(im.split) / rel if im.split else Path(rel)
        dest = out / "images" / sub
        if dest in used:
            problems.append(Problem(im.file_name, "image", f"same place as {used[dest]} in the YOLO tree: skipped"))
            continue
        used[dest] = im.file_name
        split_dirs.add(im.split)
        if ds.root is None and images != "none":
            raise VitrineError("the dataset has no images folder (root) to take the images from")
        if images != "none":
            place_image(ds.root / im.file_name, dest, images)
        lines = []
        W, H = im.width, im.height
        for a in by_image.get(im.id, []):
            if a.iscrowd:
                crowd += 1
                continue
            x, y, w, h = a.bbox
            c = index[a.category_id]
            if task == "detect":
                lines.append(f"{c} {_num((x + w / 2) / W)} {_num((y + h / 2) / H)} {_num(w / W)} {_num(h / H)}")
                continue
            polys = segmentation_to_polygons(a.segmentation)
            if not polys:
                boxes_as_polygons += 1
                polys = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            joined = join_polygons(polys)
            lines.append(f"{c} " + " ".join(_num(v / (W if i % 2 == 0 else H)) for i, v in enumerate(joined)))
        label = _label_path(dest)  # the reader's rule (and Ultralytics')
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if crowd:
        problems.append(Problem(str(out), "labels", f"{crowd} crowd annotation(s) left out (YOLO has no crowd)"))
    if boxes_as_polygons:
        problems.append(
            Problem(str(out), "labels", f"{boxes_as_polygons} object(s) without a mask written as their box rectangle")
        )
    doc: dict = {}
    present = [s for s in SPLITS if s in split_dirs]
    for s in present:
        doc[s] = f"images/{s}"
    if None in split_dirs or not present:
        doc["train"] = doc.get("train", "images")
    # Ultralytics requires both train: and val:; a missing one names a split that is there (the
    # reader gives a folder listed twice the split it is named after, so no split is invented)
    first = doc.get("train") or doc.get("val") or doc["test"]
    doc = {"train": doc.get("train", first), "val": doc.get("val", first), **doc}
    doc["nc"] = len(cats)
    doc["names"] = {i: c.name for i, c in enumerate(cats)}
    write_text(out / "data.yaml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return problems

"""Building a :class:`ClassificationDataset` from what users have, and writing it back out.

Three sources, each with its writer where that makes sense:

* an ImageFolder tree, ``<root>/<class>/<image>`` or ``<root>/<split>/<class>/<image>``
  (:func:`from_imagefolder`, :func:`to_imagefolder`);
* a CSV file with an image-path column and a label column (:func:`from_csv`, :func:`to_csv`);
* a vitrine collection, whose subfolders of ``images/`` are the labels (:func:`from_collection`).

Rows or files that cannot be used (missing file, unreadable image, empty label, path leaving the
image root, unknown split) never stop an import: each becomes a :class:`RowProblem` on the
dataset's ``problems`` and is left out. CSV problems carry the line number in the file (the header
is line 1); file problems carry the file's path relative to the image root and ``row=0``.
An import that leaves no usable image at all raises :class:`~vitrine.core.errors.VitrineError`.

:func:`import_dataset` and :func:`load_dataset` save and load datasets in a workspace.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vitrine.collection.imageio import SUPPORTED_SUFFIXES, image_info
from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import ImageError, NotFound, VitrineError
from vitrine.core.workspace import Workspace, check_name
from vitrine.data.dataset import SPLITS, ClassificationDataset, RowProblem, Sample

__all__ = [
    "SPLIT_ALIASES",
    "from_collection",
    "from_csv",
    "from_imagefolder",
    "import_dataset",
    "load_dataset",
    "normalize_split",
    "safe_folder_name",
    "to_csv",
    "to_imagefolder",
]

# Folder names and CSV values accepted for each split (compared case-insensitively).
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}

DEFAULT_WORKERS = 8
_CHUNK = 256  # files per thread-pool task
_PROBLEMS_IN_ERROR = 3  # problems quoted in the "no usable image" error


# --- small helpers ------------------------------------------------------------------------------


def normalize_split(value: str) -> str | None:
    """``"Train"`` -> ``"train"``, ``"valid"`` -> ``"val"``, ``""`` -> ``""``; None when unknown."""
    v = (value or "").strip().lower()
    if not v:
        return ""
    return SPLIT_ALIASES.get(v)


_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


def safe_folder_name(label: str) -> str:
    """A folder name for a class label, safe on Linux, macOS and Windows: ``"T-shirt/top"`` ->
    ``"T-shirt_top"``. Path separators, control and reserved characters become ``_``; leading
    dots and trailing dots/spaces are removed."""
    name = _UNSAFE.sub("_", label.strip()).rstrip(" .").lstrip(".")
    return name or "_"


def _is_supported(name: str) -> bool:
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in SUPPORTED_SUFFIXES


def _valid_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _probe(path: Path, check_images: bool) -> str | None:
    """Why ``path`` cannot be used as an image (None when it can). Header only, never decodes."""
    try:
        if check_images:
            image_info(path)
            return None
        st = os.stat(path)
    except ImageError as exc:
        return getattr(exc, "reason", None) or exc.message
    except FileNotFoundError:
        return "file not found"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "this is a folder, not an image file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (device, pipe or socket)"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return None


def _probe_all(paths: list[Path], check_images: bool, workers: int = DEFAULT_WORKERS) -> list[str | None]:
    """:func:`_probe` for every path, in a thread pool; results in the order of ``paths``."""
    if not paths:
        return []
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]

    def run(chunk: list[Path]) -> list[str | None]:
        return [_probe(p, check_images) for p in chunk]

    if len(chunks) == 1 or workers <= 1:
        return [r for chunk in chunks for r in run(chunk)]
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="vitrine-probe") as pool:
        return [r for part in pool.map(run, chunks) for r in part]


def _finish(
    name: str,
    root: Path,
    candidates: list[tuple[Sample, int, str]],
    problems: list[RowProblem],
    source: dict,
    check_images: bool,
    workers: int,
    what: str,
    empty_hint: str,
) -> ClassificationDataset:
    """Probe the candidates' files, turn the bad ones into problems, build the dataset.

    ``candidates`` are ``(sample, row, problem_source)``."""
    reasons = _probe_all([root / s.path for s, _, _ in candidates], check_images, workers)
    samples: list[Sample] = []
    for (sample, row, src), reason in zip(candidates, reasons, strict=True):
        if reason is None:
            samples.append(sample)
        else:
            problems.append(RowProblem(src, row, f"{sample.path}: {reason}" if row else reason))
    problems.sort(key=lambda p: (p.source, p.row))
    if not samples:
        shown = "; ".join(_describe_problem(p) for p in problems[:_PROBLEMS_IN_ERROR])
        more = f" (and {len(problems) - _PROBLEMS_IN_ERROR} more)" if len(problems) > _PROBLEMS_IN_ERROR else ""
        raise VitrineError(
            f"no usable image in {what}" + (f": {len(problems)} skipped: {shown}{more}" if problems else ""),
            hint="check the paths and labels" if problems else empty_hint,
        )
    return ClassificationDataset(name=name, root=root, samples=samples, source=source, problems=problems)


def _describe_problem(p: RowProblem) -> str:
    return f"{p.source}:{p.row}: {p.message}" if p.row else f"{p.source}: {p.message}"


def _existing_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise NotFound(f"{what} not found: {p}")
    if not p.is_dir():
        raise VitrineError(f"{what} is not a folder: {p}")
    return Path(os.path.abspath(p))


# --- ImageFolder --------------------------------------------------------------------------------


def _walk_tree(top: Path, prefix: str, out: list[str], problems: list[RowProblem], seen: set) -> None:
    """Every supported image file under ``top`` (recursively, symlinks followed, hidden names
    skipped), as POSIX paths ``prefix + relpath``; problems for the ones that cannot be used."""
    try:
        st = os.stat(top)
    except OSError:
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:  # a symlink loop, or a folder reached twice through links
        problems.append(RowProblem(prefix.rstrip("/"), 0, "folder already walked (symlink loop or second link)"))
        return
    seen.add(key)
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(RowProblem(prefix.rstrip("/") or ".", 0, f"cannot list this folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        name = entry.name
        if name.startswith("."):
            continue
        rel = prefix + name
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            if not _valid_utf8(name):
                problems.append(RowProblem(_printable(rel), 0, "folder name is not valid UTF-8: rename it"))
                continue
            _walk_tree(Path(entry.path), rel + "/", out, problems, seen)
            continue
        if not _is_supported(name):
            continue
        if not _valid_utf8(name):
            problems.append(RowProblem(_printable(rel), 0, "file name is not valid UTF-8: rename it"))
            continue
        if entry.is_symlink() and not os.path.exists(entry.path):
            problems.append(RowProblem(rel, 0, "broken symlink"))
            continue
        out.append(rel)


def _list_dirs(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def _looks_split(root: Path) -> bool:
    top = _list_dirs(root)
    return bool(top) and all(d.lower() in SPLIT_ALIASES for d in top) and any(_list_dirs(root / d) for d in top)


def from_imagefolder(
    root: str | os.PathLike,
    name: str,
    *,
    check_images: bool = True,
    split_dirs: bool | str = "auto",
    workers: int = DEFAULT_WORKERS,
) -> ClassificationDataset:
    """Import ``<root>/<class>/<image>`` (images may sit deeper inside a class folder).

    When ``root`` holds only split folders (``train``, ``val``/``valid``/``validation``, ``test``)
    that contain class folders, the split is kept: ``<root>/<split>/<class>/<image>``.
    ``split_dirs``: ``"auto"`` (detect), ``True`` (require that layout) or ``False`` (never; a
    folder named ``test`` is then a class). Images directly in ``root`` (or in a split folder) are
    reported and skipped. With ``check_images``, every file's header is read (no full decode).
    """
    check_name(name, "dataset name")
    root = _existing_dir(root, "image folder")
    if split_dirs == "auto":
        use_splits = _looks_split(root)
    elif isinstance(split_dirs, bool):
        use_splits = split_dirs
    else:
        raise VitrineError(f"split_dirs must be 'auto', True or False, not {split_dirs!r}")

    files: list[str] = []
    problems: list[RowProblem] = []
    seen: set = set()
    if use_splits:
        top = _list_dirs(root)
        if not any(d.lower() in SPLIT_ALIASES for d in top):
            raise VitrineError(
                f"{root} has no split folders (train, val, test)",
                hint="lay it out as <root>/<split>/<class>/<image>, or import it without split folders",
            )
        for entry in sorted(os.listdir(root)):
            if entry.startswith(".") or not _is_supported(entry) or (root / entry).is_dir():
                continue
            problems.append(RowProblem(entry, 0, "image outside any split folder"))
        for d in top:
            if d.lower() not in SPLIT_ALIASES:
                problems.append(RowProblem(d, 0, "folder is not a split folder (train, val, test): skipped"))
                continue
            _walk_tree(root / d, d + "/", files, problems, seen)
    else:
        _walk_tree(root, "", files, problems, seen)

    depth = 2 if use_splits else 1  # components before the file name: [split/]class/
    candidates: list[tuple[Sample, int, str]] = []
    for rel in files:
        parts = rel.split("/")
        if len(parts) <= depth:
            where = "a class folder" if not use_splits or len(parts) == 2 else "a split folder"
            problems.append(RowProblem(rel, 0, f"image outside {where}"))
            continue
        split = SPLIT_ALIASES[parts[0].lower()] if use_splits else ""
        candidates.append((Sample(rel, parts[depth - 1], split), 0, rel))
    source = {"kind": "imagefolder", "path": str(root), "split_dirs": use_splits, "check_images": check_images}
    layout = "<root>/<split>/<class>/<image>" if use_splits else "<root>/<class>/<image>"
    hint = f"put the images in {layout}"
    return _finish(name, root, candidates, problems, source, check_images, workers, str(root), hint)


def _dest_names(dataset: ClassificationDataset, flat: bool) -> list[str]:
    """Relative destination path of every sample for :func:`to_imagefolder`."""
    folders: dict[str, str] = {}
    owner: dict[str, str] = {}  # folder name (lower case: some file systems ignore case) -> label
    for label in dataset.classes + sorted({s.label for s in dataset.samples} - set(dataset.classes)):
        folder = safe_folder_name(label)
        other = owner.setdefault(folder.lower(), label)
        if other != label:
            raise VitrineError(
                f"classes {other!r} and {label!r} would share the folder {folder!r}",
                hint="rename one of the classes, or export to CSV (which keeps labels as they are)",
            )
        folders[label] = folder
    used: set[str] = set()
    out: list[str] = [""] * len(dataset.samples)
    for i in sorted(range(len(dataset.samples)), key=lambda i: dataset.samples[i].path):
        s = dataset.samples[i]
        folder = folders[s.label] if flat else f"{s.split}/{folders[s.label]}"
        base = posixpath.basename(s.path)
        dest = f"{folder}/{base}"
        if dest.lower() in used:  # same file name from two source folders
            stem, dot, suffix = base.rpartition(".")
            tag = hashlib.sha1(s.path.encode("utf-8")).hexdigest()[:8]
            dest = f"{folder}/{stem}__{tag}.{suffix}" if dot else f"{folder}/{base}__{tag}"
        used.add(dest.lower())
        out[i] = dest
    return out


def to_imagefolder(
    dataset: ClassificationDataset,
    out_dir: str | os.PathLike,
    link: str = "symlink",
    *,
    workers: int = DEFAULT_WORKERS,
) -> Path:
    """Write ``<out_dir>/<split>/<class>/<file>`` (``<out_dir>/<class>/<file>`` when no sample has a
    split), which :func:`from_imagefolder` reads back. ``link``: ``"symlink"`` (absolute links),
    ``"hardlink"`` (falls back to a copy across file systems) or ``"copy"``. Class names become
    folder names through :func:`safe_folder_name`; two files with the same name in one class
    folder get a short hash of their source path added. ``out_dir`` must be new or empty."""
    if link not in ("symlink", "copy", "hardlink"):
        raise VitrineError(f"unknown link mode {link!r}", hint="choose symlink, copy or hardlink")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VitrineError(f"{out} exists and is not an empty folder", hint="choose a new output folder")
    with_split = [s for s in dataset.samples if s.split]
    if with_split and len(with_split) != len(dataset.samples):
        raise VitrineError(
            f"{len(dataset.samples) - len(with_split)} samples have no split while the others have one",
            hint="assign splits first (vitrine.data.assign_splits)",
        )
    bad = [s.split for s in with_split if s.split not in SPLITS]
    if bad:
        raise VitrineError(f"unknown split {bad[0]!r}", hint="splits are train, val and test")
    dests = _dest_names(dataset, flat=not with_split)
    sources = [os.path.abspath(dataset.path_of(s)) for s in dataset.samples]
    missing = [s.path for s, src in zip(dataset.samples, sources, strict=True) if not os.path.isfile(src)]
    if missing:
        raise VitrineError(
            f"{len(missing)} images of dataset {dataset.name!r} are missing, e.g. {missing[0]}",
            hint=f"were they moved? the dataset's image root is {dataset.root}",
        )
    out.mkdir(parents=True, exist_ok=True)
    for folder in sorted({posixpath.dirname(d) for d in dests}):
        (out / folder).mkdir(parents=True, exist_ok=True)

    def put(pair: tuple[str, str]) -> None:
        src, dest = pair
        target = out / dest
        if link == "symlink":
            os.symlink(src, target)
        elif link == "hardlink":
            try:
                os.link(src, target)
            except OSError:
                shutil.copy2(src, target)
        else:
            shutil.copy2(src, target)

    try:
        _run_pool(put, list(zip(sources, dests, strict=True)), workers)
    except OSError as exc:
        raise VitrineError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return out


def _run_pool(fn: Callable, items: list, workers: int) -> None:
    if len(items) <= _CHUNK or workers <= 1:
        for item in items:
            fn(item)
        return
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]

    def run(chunk):
        for item in chunk:
            fn(item)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrine-write") as pool:
        for _ in pool.map(run, chunks):
            pass


# --- CSV ----------------------------------------------------------------------------------------

_DELIMITERS = (",", ";", "\t", "|")
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[/\\]|^[/\\]{2}")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"CSV file not found: {path}") from None
    except IsADirectoryError:
        raise VitrineError(f"{path} is a folder, not a CSV file") from None
    except OSError as exc:
        raise VitrineError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VitrineError(
            f"{path.name} is not UTF-8 text (bad byte at offset {exc.start})",
            hint="save the CSV as UTF-8 (in spreadsheet programs: CSV UTF-8)",
        ) from None


def _header(text: str, delimiter: str) -> list[str]:
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            if any(cell.strip() for cell in row):
                return [cell.strip() for cell in row]
    except csv.Error:
        pass
    return []


def _pick_delimiter(text: str, wanted: list[str]) -> str:
    """The delimiter whose header holds every wanted column, else the one giving most columns."""
    headers = {d: _header(text, d) for d in _DELIMITERS}
    for d in _DELIMITERS:
        if all(w in headers[d] for w in wanted):
            return d
    try:
        sniffed = csv.Sniffer().sniff(text[:65536], delimiters="".join(_DELIMITERS)).delimiter
    except csv.Error:
        sniffed = ","
    best = max(_DELIMITERS, key=lambda d: len(headers[d]))
    return sniffed if len(headers.get(sniffed, [])) >= len(headers[best]) else best


def _cut_label(label: str, depth: int | None, separator: str) -> str:
    if depth is None:
        return label
    parts = [p.strip() for p in label.split(separator)]
    parts = [p for p in parts if p]
    return f" {separator.strip() or separator} ".join(parts[:depth])


def _relative_path(raw: str, root: Path) -> tuple[str | None, str | None]:
    """(POSIX path relative to root, None) or (None, why it cannot be used)."""
    p = raw.strip().replace("\\", "/")
    if not p:
        return None, "empty image path"
    if "\x00" in p:
        return None, "image path contains a NUL character"
    if p.startswith("/") or _WINDOWS_ABS.match(raw.strip()):
        absolute = os.path.normpath(p)
        for base in {str(root), os.path.realpath(root)}:
            if absolute.startswith(base.rstrip("/") + "/"):
                return absolute[len(base.rstrip("/")) + 1 :], None
        return None, f"absolute path outside the image root: {raw.strip()} (paths must be relative to {root})"
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../"):
        return None, f"path leaves the image root: {raw.strip()}"
    if norm == ".":
        return None, "empty image path"
    return norm, None


def from_csv(
    csv_path: str | os.PathLike,
    name: str,
    *,
    image_column: str,
    label_column: str,
    root: str | os.PathLike | None = None,
    split_column: str | None = None,
    label_depth: int | None = None,
    separator: str = ">>",
    check_images: bool = True,
    delimiter: str | None = None,
    workers: int = DEFAULT_WORKERS,
) -> ClassificationDataset:
    """Import a CSV with one row per image.

    ``image_column`` holds paths relative to ``root`` (default: the CSV's folder; absolute paths
    are accepted when they lie inside it), ``label_column`` the class. With ``label_depth``, a
    category path such as ``"Home Furnishing >> Curtains >> Door"`` (parts joined by
    ``separator``) is cut to its first ``label_depth`` parts, whitespace around parts removed:
    ``"Home Furnishing >> Curtains"``. ``split_column`` (optional) holds train/val/test (also
    training, valid, validation, dev, testing; empty = not assigned). The delimiter (``,`` ``;``
    tab ``|``) is detected unless given. Rows that cannot be used are reported with their line
    number (header = 1) and skipped; so is a second row for the same image.
    """
    check_name(name, "dataset name")
    csv_path = Path(csv_path).expanduser()
    text = _read_text(csv_path)
    if label_depth is not None and label_depth < 1:
        raise VitrineError(f"label depth must be at least 1, not {label_depth}")
    if not separator:
        raise VitrineError("the category separator cannot be empty")
    base = _existing_dir(root if root is not None else (csv_path.parent or Path(".")), "image root")
    wanted = [c for c in (image_column, label_column, split_column) if c is not None]
    if delimiter is None:
        delimiter = _pick_delimiter(text, wanted)
    elif delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    if len(delimiter) != 1:
        raise VitrineError(f"the CSV delimiter must be one character, not {delimiter!r}")

    src = csv_path.name
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    problems: list[RowProblem] = []
    header: list[str] | None = None
    candidates: list[tuple[Sample, int, str]] = []
    first_row: dict[str, int] = {}
    line = 0  # physical line where the next record starts, minus one
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = [cell.strip() for cell in record]
                index = _column_indexes(header, wanted, src)
                continue
            row = _csv_row(record, start, header, index, image_column, label_column, split_column)
            if isinstance(row, str):
                problems.append(RowProblem(src, start, row))
                continue
            raw_path, label, split = row
            rel, why = _relative_path(raw_path, base)
            if why:
                problems.append(RowProblem(src, start, why))
                continue
            label = _cut_label(label, label_depth, separator)
            if not label:
                problems.append(RowProblem(src, start, f"empty label for {rel}"))
                continue
            if rel in first_row:
                problems.append(RowProblem(src, start, f"{rel}: same image as row {first_row[rel]}; skipped"))
                continue
            first_row[rel] = start
            candidates.append((Sample(rel, label, split), start, src))
    except csv.Error as exc:
        problems.append(RowProblem(src, line + 1, f"cannot parse the CSV from here on: {exc}"))
    if header is None:
        raise VitrineError(f"{src} is empty", hint="the first line must name the columns")
    source = {
        "kind": "csv",
        "path": str(Path(os.path.abspath(csv_path))),
        "image_column": image_column,
        "label_column": label_column,
        "split_column": split_column,
        "label_depth": label_depth,
        "separator": separator,
        "delimiter": delimiter,
        "check_images": check_images,
    }
    hint = "the CSV has no rows below its header"
    return _finish(name, base, candidates, problems, source, check_images, workers, src, hint)


def _column_indexes(header: list[str], wanted: list[str], src: str) -> dict[str, int]:
    index: dict[str, int] = {}
    for col in wanted:
        if col in header:
            index[col] = header.index(col)
            continue
        available = ", ".join(repr(h) for h in header)
        close = [h for h in header if h.lower() == col.strip().lower()]
        raise VitrineError(
            f"{src} has no column {col!r}; available columns: {available}",
            hint=f"did you mean {close[0]!r}? (names are case-sensitive)" if close else "pass one of these names",
        )
    return index


def _csv_row(
    record: list[str],
    line: int,
    header: list[str],
    index: dict[str, int],
    image_column: str,
    label_column: str,
    split_column: str | None,
) -> tuple[str, str, str] | str:
    """(path, label, split) of a record, or why it cannot be used."""
    need = max(index.values()) + 1
    if len(record) < need:
        return f"row has {len(record)} fields, the header has {len(header)}"
    split = ""
    if split_column is not None:
        raw = record[index[split_column]]
        split = normalize_split(raw)
        if split is None:
            return f"invalid split value {raw.strip()!r} (expected train, val or test, or empty)"
    return record[index[image_column]], record[index[label_column]].strip(), split


def to_csv(
    dataset: ClassificationDataset, csv_path: str | os.PathLike, *, root: str | os.PathLike | None = None
) -> Path:
    """Write ``path,label,split`` (UTF-8, comma-separated), read back by
    ``from_csv(csv_path, image_column="path", label_column="label", split_column="split", root=...)``.

    Paths are relative to ``root``; by default the CSV's folder when every image lies inside it
    (then ``from_csv`` needs no ``root``), else the dataset's image root (pass ``root=dataset.root``
    when importing). Returns the CSV's path."""
    csv_path = Path(csv_path).expanduser()
    abs_paths = [os.path.abspath(dataset.path_of(s)) for s in dataset.samples]
    if root is None:
        folder = os.path.abspath(csv_path.parent)
        inside = all(p.startswith(folder.rstrip("/") + "/") for p in abs_paths)
        base = folder if inside else os.path.abspath(dataset.root)
    else:
        base = os.path.abspath(Path(root).expanduser())
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "label", "split"])
    for s, p in zip(dataset.samples, abs_paths, strict=True):
        rel = os.path.relpath(p, base)
        if rel == ".." or rel.startswith("../"):
            raise VitrineError(f"{s.path} is not inside {base}", hint="give a root that holds every image")
        writer.writerow([Path(rel).as_posix(), s.label, s.split])
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(csv_path, buf.getvalue())
    return csv_path


# --- collection ---------------------------------------------------------------------------------


def from_collection(
    project_dir: str | os.PathLike,
    name: str,
    *,
    depth: int = 1,
    check_images: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> ClassificationDataset:
    """Use a collection's subfolders of ``images/`` as labels: the first ``depth`` folder names
    (joined by ``/``) of each image. Images with fewer folders above them (e.g. directly in
    ``images/``) are reported and skipped, as are the files the collection walk skips."""
    from vitrine.collection.layout import project_paths
    from vitrine.collection.walk import walk_images

    check_name(name, "dataset name")
    if depth < 1:
        raise VitrineError(f"depth must be at least 1, not {depth}")
    paths = project_paths(project_dir)
    found, skipped = walk_images(paths.images_dir)
    problems = [RowProblem(s.relpath, 0, s.reason) for s in skipped]
    candidates: list[tuple[Sample, int, str]] = []
    for f in found:
        parts = f.relpath.split("/")
        if len(parts) <= depth:
            where = "directly in images/" if len(parts) == 1 else f"fewer than {depth} folders deep"
            problems.append(RowProblem(f.relpath, 0, f"no label: the image is {where}"))
            continue
        candidates.append((Sample(f.relpath, "/".join(parts[:depth])), 0, f.relpath))
    source = {"kind": "collection", "path": str(paths.project_dir), "depth": depth, "check_images": check_images}
    hint = "put the images in images/<label>/ subfolders"
    return _finish(
        name, paths.images_dir, candidates, problems, source, check_images, workers, str(paths.images_dir), hint
    )


# --- workspace ----------------------------------------------------------------------------------


def _workspace(workspace: Workspace | str | os.PathLike | None) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def dataset_exists(workspace: Workspace | str | os.PathLike | None, name: str) -> bool:
    return (_workspace(workspace).dataset_dir(name) / "dataset.json").is_file()


def import_dataset(
    workspace: Workspace | str | os.PathLike | None,
    dataset: ClassificationDataset,
    *,
    overwrite: bool = False,
) -> Path:
    """Save ``dataset`` as ``<workspace>/datasets/<name>/``; refuse to replace an existing dataset
    unless ``overwrite``. Returns the dataset's folder."""
    ws = _workspace(workspace)
    directory = ws.dataset_dir(dataset.name)
    if (directory / "dataset.json").is_file() and not overwrite:
        raise VitrineError(
            f"dataset {dataset.name!r} already exists in {ws.root}",
            hint="choose another name, or overwrite it (--overwrite)",
        )
    if directory.exists() and not directory.is_dir():
        raise VitrineError(f"{directory} exists and is not a folder")
    try:
        dataset.save(directory)
    except OSError as exc:
        raise VitrineError(f"cannot write dataset {dataset.name!r}: {exc.strerror or exc}") from None
    (directory / "stats.json").unlink(missing_ok=True)  # computed for the previous content
    return directory


def load_dataset(workspace: Workspace | str | os.PathLike | None, name: str) -> ClassificationDataset:
    """The dataset saved as ``name`` in ``workspace``; NotFound (listing the existing ones) if none."""
    ws = _workspace(workspace)
    directory = ws.dataset_dir(name)
    if not (directory / "dataset.json").is_file():
        names = ws.dataset_names()
        raise NotFound(
            f"no dataset {name!r} in {ws.root}",
            hint=("datasets here: " + ", ".join(names)) if names else "import one with `vitrine data import`",
        )
    return ClassificationDataset.load(directory)


def iter_problem_lines(problems: Iterable[RowProblem]) -> Iterable[str]:
    """``file:row: message`` (or ``path: message`` for file problems), for printing."""
    for p in problems:
        yield _describe_problem(p)

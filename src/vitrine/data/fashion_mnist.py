"""Fashion-MNIST, real data that works offline: Debian's ``dataset-fashion-mnist`` package installs
the four gzipped IDX files in ``/usr/share/datasets/fashion-mnist``.

:func:`export_fashion_mnist` turns them into a dataset vitrine imports: PNG files in an
ImageFolder tree (``<out>/train/<class>/<index>.png``, ``<out>/test/<class>/...``), or an
``images/`` folder with a ``labels.csv`` (``path,label,split``). The official test split is kept;
a validation split is carved from train at import (:func:`vitrine.data.assign_splits`).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import NotFound, VitrineError

__all__ = [
    "DEFAULT_SOURCE",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FOLDERS",
    "export_fashion_mnist",
    "read_fashion_mnist",
    "read_idx",
]

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"  # where Debian's dataset-fashion-mnist puts it

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Folder names for the ImageFolder layout ("/" cannot be in a file name).
FASHION_MNIST_FOLDERS = tuple(c.replace("/", "_") for c in FASHION_MNIST_CLASSES)

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, as a numpy array.

    The magic number (``0x0000TTDD``: two zero bytes, the type code, the number of dimensions)
    and the data length are checked; any problem raises :class:`~vitrine.core.errors.VitrineError`."""
    path = Path(path)
    name = path.name
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"IDX file not found: {path}") from None
    except OSError as exc:
        raise VitrineError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the name says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise VitrineError(f"{name}: cannot decompress (truncated or corrupt gzip data: {exc})") from None
    if len(raw) < 4:
        raise VitrineError(f"{name} is not an IDX file: only {len(raw)} bytes")
    magic = struct.unpack(">I", raw[:4])[0]
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_TYPES or ndim == 0:
        raise VitrineError(
            f"{name} is not an IDX file: magic number 0x{magic:08X}",
            hint="IDX files start with 0x0000 then a type code (0x08 for bytes) and the number of dimensions, "
            "e.g. 0x00000803 for images and 0x00000801 for labels",
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise VitrineError(f"{name}: truncated IDX header ({ndim} dimensions announced)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise VitrineError(
            f"{name}: {len(raw) - header} bytes of data where its header announces {expected} "
            f"({' x '.join(map(str, dims))} of {dtype.name})",
            hint="the file is truncated or corrupt; reinstall or download it again",
        )
    array = np.frombuffer(raw, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _find(source: Path, stem: str) -> Path:
    for candidate in (source / f"{stem}.gz", source / stem):
        if candidate.is_file():
            return candidate
    raise NotFound(
        f"Fashion-MNIST file {stem}.gz not found in {source}",
        hint=f"install Debian's dataset-fashion-mnist package (it fills {DEFAULT_SOURCE}), or give the folder "
        "holding the four IDX files",
    )


def read_fashion_mnist(source_dir: str | os.PathLike = DEFAULT_SOURCE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images N x 28 x 28 uint8, labels N), "test": (...)}``, checked."""
    source = Path(source_dir).expanduser()
    if not source.is_dir():
        raise NotFound(
            f"Fashion-MNIST folder not found: {source}",
            hint=f"install Debian's dataset-fashion-mnist package (it fills {DEFAULT_SOURCE})",
        )
    out = {}
    for split, (images_stem, labels_stem) in _FILES.items():
        images, labels = read_idx(_find(source, images_stem)), read_idx(_find(source, labels_stem))
        if images.ndim != 3 or labels.ndim != 1 or images.dtype != np.uint8:
            raise VitrineError(f"{images_stem}: unexpected shapes {images.shape} / {labels.shape}")
        if len(images) != len(labels):
            raise VitrineError(f"{split}: {len(images)} images but {len(labels)} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
            raise VitrineError(f"{labels_stem}: labels outside 0..9")
        out[split] = (images, labels.astype(np.int64))
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_gray(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a 2-D uint8 array (8-bit greyscale, no filter). Much faster than going
    through Pillow for tiny images; Pillow reads the result back exactly."""
    h, w = image.shape
    rows = np.zeros((h, w + 1), np.uint8)  # a filter-type byte (0, none) before each row
    rows[:, 1:] = image
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)),
            _chunk(b"IEND", b""),
        )
    )


def _subset(labels: np.ndarray, per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indexes to export, sorted: all, or ``per_class`` drawn at random from each class."""
    if per_class is None:
        return np.arange(len(labels))
    chosen = []
    for c in range(len(FASHION_MNIST_CLASSES)):
        idx = np.flatnonzero(labels == c)
        if per_class < len(idx):
            idx = rng.choice(idx, per_class, replace=False)
        chosen.append(idx)
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def export_fashion_mnist(
    out_dir: str | os.PathLike,
    *,
    source_dir: str | os.PathLike = DEFAULT_SOURCE,
    layout: str = "imagefolder",
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
    workers: int = 4,
) -> Path:
    """Write Fashion-MNIST as PNG files; returns ``out_dir``.

    ``layout="imagefolder"``: ``<out>/train/<class>/<index>.png`` and ``<out>/test/<class>/...``,
    class folders named as in :data:`FASHION_MNIST_FOLDERS` (``T-shirt_top``, ``Ankle boot``...).
    ``layout="csv"``: ``<out>/images/<split>/<index>.png`` and ``<out>/labels.csv`` with columns
    ``path,label,split``, labels being the display names (``T-shirt/top``). ``<index>`` is the
    image's position in the official file (5 digits). ``train_per_class`` / ``test_per_class``
    keep a seeded random subset of each class. ``out_dir`` must be new or empty.
    """
    if layout not in ("imagefolder", "csv"):
        raise VitrineError(f"unknown layout {layout!r}", hint="choose imagefolder or csv")
    for what, n in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if n is not None and n < 0:
            raise VitrineError(f"{what} must be 0 or more, not {n}")
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise VitrineError(f"{out} exists and is not an empty folder", hint="choose a new output folder")
    data = read_fashion_mnist(source_dir)

    jobs: list[tuple[str, np.ndarray]] = []  # (relative path, image)
    rows: list[tuple[str, str, str]] = []
    for split_no, (split, per_class) in enumerate((("train", train_per_class), ("test", test_per_class))):
        images, labels = data[split]
        rng = np.random.default_rng([seed, split_no])
        for i in _subset(labels, per_class, rng):
            c = int(labels[i])
            if layout == "imagefolder":
                rel = f"{split}/{FASHION_MNIST_FOLDERS[c]}/{i:05d}.png"
            else:
                rel = f"images/{split}/{i:05d}.png"
            jobs.append((rel, images[i]))
            rows.append((rel, FASHION_MNIST_CLASSES[c], split))

    try:
        for folder in sorted({os.path.dirname(rel) for rel, _ in jobs}):
            (out / folder).mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)

        def write(chunk: list[tuple[str, np.ndarray]]) -> None:
            for rel, image in chunk:
                with open(out / rel, "wb") as fh:
                    fh.write(png_gray(image))

        chunks = [jobs[i : i + 512] for i in range(0, len(jobs), 512)]
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vitrine-fmnist") as pool:
            for _ in pool.map(write, chunks):
                pass
        if layout == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(["path", "label", "split"])
            writer.writerows(rows)
            atomic_write_text(out / "labels.csv", buf.getvalue())
    except OSError as exc:
        raise VitrineError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return out

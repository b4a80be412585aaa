"""The one atomic writer: every file vitrine writes that must never be seen half-written goes
through here (run records, checkpoints, reports, manifests, index files, caches, thumbnails).

The rule is the classic one: write a temporary file in the same folder, flush and fsync it, rename it
over the target (atomic on POSIX and Windows), then fsync the folder so the rename itself survives a
crash. On any error the temporary file is removed and the old file is left as it was.

- :func:`atomic_open` for code that writes into a file object (JSON, CSV, ``np.savez``, a FAISS sink);
- :func:`atomic_path` for libraries that write by file name (``torch.save``, ``joblib.dump``, Plotly);
- :func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`atomic_write_json` for whole values.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a folder, so that a rename into it is durable; best effort where folders cannot be
    opened (Windows) or synced."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden temporary name beside ``path``, unique per process and call (threads never share one)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, *, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path for a library to write ``path``'s new content to by name; on a clean
    exit it is fsynced and renamed over ``path``, on an error it is removed. ``sync=False`` skips the
    fsyncs for caches that may be lost (thumbnails), never for records."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if sync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


@contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing, atomically: the file object writes a temporary file that replaces
    ``path`` only when the ``with`` block ends without an error. Text modes default to UTF-8 and
    write newlines as given."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes a whole new file: mode {mode!r} has no 'w'")
    if "b" not in mode:
        encoding = encoding or "utf-8"
        newline = "" if newline is None else newline
    with atomic_path(path, sync=False) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
    fsync_dir(Path(path).parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, newlines as given), atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented UTF-8 JSON (non-JSON values written with ``str``),
    atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2, default=str)

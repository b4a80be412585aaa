"""Artifact storage: run folders, checkpoints and metric files, on local disk or in an object store.

:class:`ArtifactStore` is one fsspec file system and a root inside it, given by a URL: a local
path (the default), ``file://…``, ``s3://bucket/prefix`` (S3 and S3-compatible stores such as
MinIO; needs the ``s3fs`` package, ``pip install vitrine[s3]``; credentials and endpoint come from
the usual AWS variables or ``storage_options``), ``memory://`` (tests), or any other fsspec
protocol. Keys are relative POSIX paths (``run-1/metrics.json``).

Writes are atomic: on local disk through a temporary file in the same folder, fsync and rename (a
crash never leaves a half-written file under the final name); object stores make an object
visible only once it is completely uploaded.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from vitrine.core.atomic import atomic_open, atomic_write_bytes
from vitrine.core.errors import NotFound, VitrineError

__all__ = ["ArtifactStore", "export_tree"]


class ArtifactStore:
    """Files under one root URL: ``put_bytes``, ``put_file``, ``open``, ``read_bytes``, ``exists``,
    ``list``, ``delete``."""

    def __init__(self, url: str | os.PathLike | None = None, **storage_options):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        from vitrine.core.workspace import default_workspace

        raw = os.fspath(url) if url is not None else str(default_workspace())
        if not raw.strip():
            raise VitrineError("empty artifact storage URL", hint="give a folder, or a URL such as s3://bucket/prefix")
        try:
            fs, root = fsspec.core.url_to_fs(raw, **storage_options)
        except ImportError as exc:
            protocol = raw.split("://", 1)[0]
            raise VitrineError(
                f"no storage driver for {protocol}:// ({exc})",
                hint="for s3:// install s3fs (pip install 'vitrine[s3]'); or give a local folder",
            ) from None
        except ValueError as exc:  # an unknown protocol
            raise VitrineError(
                f"cannot use {raw!r} for artifacts: {exc}", hint="give a folder or s3://bucket/prefix"
            ) from None
        self.url = raw
        self.fs = fs
        self.local = isinstance(fs, LocalFileSystem)
        self.root = root.rstrip("/") if root not in ("/", "") else root
        if self.local:
            self.root = str(Path(self.root).expanduser().resolve())

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # --------------------------------------------------------------------- keys
    def _path(self, key: str) -> str:
        key = str(key).replace("\\", "/")
        parts = [p for p in key.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or key.startswith("/"):
            raise VitrineError(f"invalid artifact key {key!r}", hint="use a relative path such as run-1/metrics.json")
        return posixpath.join(self.root, *parts) if self.root else "/".join(parts)

    def url_for(self, key: str) -> str:
        """The full URL of ``key`` (a path for local storage)."""
        path = self._path(key)
        if self.local:
            return path
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, (tuple, list)) else self.fs.protocol
        return f"{protocol}://{path.lstrip('/')}"

    # --------------------------------------------------------------------- writing
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (replacing it), atomically; return its URL."""
        path = self._path(key)
        if self.local:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            atomic_write_bytes(path, data)
        else:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.pipe_file(path, bytes(data))
        return self.url_for(key)

    def put_file(self, key: str, source: str | os.PathLike) -> str:
        """Copy the local file ``source`` to ``key`` (replacing it), atomically; return its URL."""
        source = Path(source)
        if not source.is_file():
            raise NotFound(f"no file {source}")
        path = self._path(key)
        if self.local:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            with open(source, "rb") as src, atomic_open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.put_file(str(source), path)
        return self.url_for(key)

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not self.fs.exists(path):
            raise NotFound(f"no artifact {key!r} in {self.url}")
        self.fs.rm(path, recursive=True)

    # --------------------------------------------------------------------- reading
    def open(self, key: str, mode: str = "rb") -> IO:
        """Open ``key`` for reading (write with put_bytes / put_file, which are atomic)."""
        if "r" not in mode or any(c in mode for c in "wax+"):
            raise VitrineError(
                f"artifacts open for reading only, not {mode!r}", hint="write with put_bytes or put_file"
            )
        path = self._path(key)
        try:
            return self.fs.open(path, mode)
        except FileNotFoundError:
            raise NotFound(f"no artifact {key!r} in {self.url}") from None

    def read_bytes(self, key: str) -> bytes:
        with self.open(key, "rb") as fh:
            return fh.read()

    def exists(self, key: str) -> bool:
        return bool(self.fs.isfile(self._path(key)))

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (every level), sorted."""
        base = self._path(prefix) if prefix.strip("/") else self.root
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self.root.rstrip("/") + "/" if self.root else ""
        out = []
        for p in found:
            if p.startswith(root):
                key = p[len(root) :]
                name = posixpath.basename(key)
                if not (name.startswith(".") and name.endswith(".tmp")):  # a write under way
                    out.append(key)
        return sorted(out)


def export_tree(source: str | os.PathLike, store: ArtifactStore, prefix: str, skip: Iterable[str] = ()) -> list[str]:
    """Copy every file under the local folder ``source`` to ``prefix/…`` in ``store`` (hidden
    temporary files and paths starting with any of ``skip`` left out); return the keys written."""
    source = Path(source)
    if not source.is_dir():
        raise NotFound(f"no folder {source}")
    skip = tuple(s.strip("/") for s in skip)
    keys = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        key = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
        store.put_file(key, path)
        keys.append(key)
    return keys

"""Exported and quantized models on disk: one folder per key, built once, moved into place atomically.

A key is the hash of everything the files depend on: the model's name, a hash of its weights, the
runtime and its version, and the export options (precision, input size, opset...). Change any of
them (new weights, an upgraded OpenVINO) and a new folder is built; the old one is never read again.
Weights often live in a read-only place (a package in site-packages, the Hugging Face cache), so the
folders live in vitrine's cache (``VITRINE_CACHE_DIR``, else ``~/.cache/vitrine``), under
``runtime/<model>/<key>/``, each with ``artifact.json`` saying what it holds and what made it.

A folder is built under a temporary name and renamed when complete, so a crash or a second process
building the same key never leaves a half-written model that a later run would load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from importlib import metadata
from pathlib import Path

from vitrine.core.atomic import atomic_write_json, fsync_dir

MANIFEST = "artifact.json"
FORMAT_VERSION = 1  # bump when the layout of an exported folder changes

_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def cache_root() -> Path:
    """vitrine's cache folder (created): ``VITRINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/vitrine``."""
    root = os.environ.get("VITRINE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vitrine"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def runtime_dir() -> Path:
    return cache_root() / "runtime"


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex, 16 characters), remembered per process by (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if memo in _HASHES:
            return _HASHES[memo]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()[:16]
    with _HASH_LOCK:
        _HASHES[memo] = digest
    return digest


def files_hash(paths: Iterable[str | os.PathLike]) -> str:
    """One hash over several files (a model and its text tower, a folder of weights)."""
    h = hashlib.sha256()
    for p in sorted(str(x) for x in paths):
        h.update(Path(p).name.encode())
        h.update(file_hash(p).encode())
    return h.hexdigest()[:16]


def state_hash(state_dict: Mapping) -> str:
    """Hash of a model's tensors (names, shapes, bytes): the weights' identity when they are not a file
    (a model built in memory, a fine-tuned run loaded from a checkpoint with other entries)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def runtime_version(runtime: str) -> str:
    """The installed version of a runtime ("onnxruntime", "openvino"), read without importing it."""
    try:
        return metadata.version(runtime)
    except metadata.PackageNotFoundError:
        return "missing"


def artifact_key(model: str, weights: str, runtime: str, options: Mapping | None = None) -> str:
    """The folder key: a hash of the model, its weights hash, the runtime and its version, the options."""
    payload = {
        "format": FORMAT_VERSION,
        "model": model,
        "weights": weights,
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "options": dict(options or {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def artifact_dir(model: str, key: str) -> Path:
    return runtime_dir() / _safe(model) / key


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def cached(model: str, key: str, build: Callable[[Path], Mapping | None], describe: Mapping | None = None) -> Path:
    """The folder for ``key``, building it first when it is missing: ``build(tmp_folder)`` writes the
    files and may return facts to keep in the manifest. The folder appears complete or not at all:
    a crash mid-build leaves only a temporary folder (removed by the next build of that key), and
    when two processes build the same key the second rename loses and its copy is dropped."""
    final = artifact_dir(model, key)
    if read_manifest(final) is not None:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{key}.*.tmp"):
        try:  # an older crash's leftovers (never a live build: those are younger than a day)
            if time.time() - stale.stat().st_mtime > 86400:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    tmp = final.parent / f".{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        facts = build(tmp) or {}
        manifest = {"model": model, "key": key, "created": time.time(), **dict(describe or {}), **dict(facts)}
        atomic_write_json(tmp / MANIFEST, manifest)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if final.exists() and read_manifest(final) is None:
            shutil.rmtree(final, ignore_errors=True)  # an incomplete folder from an older layout
        try:
            os.rename(tmp, final)
        except OSError:
            if read_manifest(final) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: use its copy
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

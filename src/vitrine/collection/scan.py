"""Scanning: bring the catalog in line with the files under ``images/``.

Unchanged files (same size and mtime) are not re-read; new or changed ones are hashed (SHA-256,
in threads) so that each distinct image is recorded once, whatever its name or folder.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vitrine.collection.layout import ProjectPaths
from vitrine.collection.walk import FoundFile, SkippedFile, walk_images
from vitrine.core.errors import Cancelled
from vitrine.store.catalog import Catalog

_CHUNK = 1 << 20


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ScanReport:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)  # unreadable or unsafe, with reasons
    removed_contents: list[int] = field(default_factory=list)


def scan_project(
    paths: ProjectPaths,
    catalog: Catalog,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    workers: int = 4,
) -> ScanReport:
    found, skipped = walk_images(paths.images_dir)
    known = catalog.files()
    report = ScanReport(skipped=list(skipped))
    to_hash: list[FoundFile] = []
    for f in found:
        row = known.get(f.relpath)
        if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns and row.folder == f.folder:
            report.unchanged += 1
        else:
            to_hash.append(f)
            (report.changed if row is not None else report.new).append(f.relpath)
    present = {f.relpath for f in found}
    report.removed = sorted(set(known) - present)

    upserts: list[tuple[str, str, int, int, str]] = []
    failed: set[str] = set()

    def hash_one(f: FoundFile):
        try:
            return f, sha256_file(f.path), None
        except OSError as exc:
            return f, None, f"cannot read file: {exc.strerror or exc}"

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hash") as pool:
        for i, (f, digest, error) in enumerate(pool.map(hash_one, to_hash), 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled("scan cancelled; nothing was changed")
            if error:
                report.skipped.append(SkippedFile(f.relpath, error))
                failed.add(f.relpath)
            else:
                upserts.append((f.relpath, f.folder, f.size, f.mtime_ns, digest))
            if progress:
                progress(i, len(to_hash))
    report.new = [r for r in report.new if r not in failed]
    report.changed = [r for r in report.changed if r not in failed]
    # a path that can no longer be read is dropped from the catalog, like a removed file
    gone = report.removed + [r for r in failed if r in known]
    report.removed_contents = catalog.apply_scan(upserts, gone)
    return report

"""The catalog: one row per image file, one per distinct content (by SHA-256), and the vectors.

SQLAlchemy Core over SQLite in WAL mode by default (a file in the project's data dir); any
SQLAlchemy URL works. Content ids are never reused (AUTOINCREMENT), so they can serve as stable
FAISS ids. Every write is a transaction: a killed indexing run leaves the catalog consistent,
and the next run carries on from what was committed.

A corrupt catalog file (truncated, overwritten, garbage in the middle) is reported when it is
opened, as :class:`CatalogCorrupt` (exit 2 in the CLI, 503 from the API) saying how to rebuild it
from the images, never as a SQLAlchemy traceback. The check is in two parts (see
:func:`check_sqlite_catalog`): the header and the size, read on every open (microseconds), and
SQLite's ``PRAGMA quick_check``, which reads every page (about 2 s warm, 20 s cold, for a
100,000-image catalog of 750 MB), run only when the file changed since its last clean check (its
size and mtime are kept next to it in ``.<name>.checked``).

Vectors are stored as float16 (half the bytes of float32: 1 KiB for a 512-d CLIP vector) and read
back as float32, L2-normalised again. A cosine between two stored vectors moves by 5e-5 at most
(measured on 100,000 unit vectors of 512 dimensions, random and clustered: exact search over the
float16 copies finds 99.9 % of the float32 top 10, the rest near-ties); the FAISS index is built
from the float32 read-back. Which encoding a model's vectors use is kept
in ``meta`` (``vector_dtype:<model>``); a catalog written by an earlier vitrine (float32 rows, no
such key) is read as it is and converted, model by model, in the transaction of the next write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError as SQLDatabaseError

from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import VitrineError

SCHEMA_VERSION = 1

metadata = MetaData()

contents = Table(
    "contents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", Integer, nullable=False),
    Column("width", Integer),
    Column("height", Integer),
    Column("format", String(16)),
    Column("error", Text),  # why decoding failed on the last attempt; NULL when the image is fine
    sqlite_autoincrement=True,
)

files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("relpath", Text, nullable=False, unique=True),  # POSIX, relative to images/
    Column("folder", Text, nullable=False, index=True),
    Column("size", Integer, nullable=False),
    Column("mtime_ns", Integer, nullable=False),
    Column("content_id", Integer, ForeignKey("contents.id"), nullable=False, index=True),
)

embeddings = Table(
    "embeddings",
    metadata,
    Column("content_id", Integer, ForeignKey("contents.id"), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("space", String(64), primary_key=True),
    Column("vector", LargeBinary, nullable=False),  # float16 (float32 before), L2-normalised: see the docstring
)

VECTOR_DTYPE = "float16"  # how vectors are written
LEGACY_DTYPE = "float32"  # a model's vectors written before their encoding was recorded
CONVERT_BATCH = 20_000  # rows rewritten per statement when a legacy model is converted


def _encode(vector) -> bytes:
    return np.asarray(vector, np.float32).astype(np.float16).tobytes()


def _decode(blobs: list[bytes], dtype: str) -> np.ndarray:
    """(n, dim) float32 rows, L2-normalised, from stored blobs."""
    arr = np.frombuffer(b"".join(blobs), dtype=np.dtype(dtype)).reshape(len(blobs), -1).astype(np.float32)
    if dtype != "float32":  # rounding moved the norms a little: back onto the unit sphere
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        np.divide(arr, norms, out=arr, where=norms > 0)
    return arr


# Detector labels as tags (vitrine.tagging). ``tagged`` records that a content was run through a
# detection model at a threshold (even when nothing was found); ``tags`` holds one row per label
# found: the best score, the number of boxes and the boxes themselves (JSON, pixel xyxy + score).
# Both are added by ``create_all`` to catalogs made before they existed (no migration needed).
tagged = Table(
    "tagged",
    metadata,
    Column("content_id", Integer, ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("threshold", Float, nullable=False),
    Column("objects", Integer, nullable=False),  # boxes kept at that threshold, all labels
)

tags = Table(
    "tags",
    metadata,
    Column("content_id", Integer, ForeignKey("contents.id", ondelete="CASCADE"), primary_key=True),
    Column("model", String(128), primary_key=True),
    Column("label", String(128), primary_key=True, index=True),  # lower case
    Column("score", Float, nullable=False),  # the best box's score
    Column("count", Integer, nullable=False),
    Column("boxes", Text, nullable=False),  # JSON [[x1, y1, x2, y2, score], ...], best first
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)


@dataclass(frozen=True)
class FileRow:
    relpath: str
    folder: str
    size: int
    mtime_ns: int
    content_id: int


SQL_CHUNK = 500  # values per IN (...) list or multi-row statement: SQLite's bound-parameter limit


def _chunks(values: list, size: int = SQL_CHUNK):
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _content_ids(conn, shas: list[str]) -> dict[str, int]:
    """sha256 -> content id, for those of ``shas`` in the catalog."""
    out: dict[str, int] = {}
    for chunk in _chunks(shas):
        out.update(conn.execute(select(contents.c.sha256, contents.c.id).where(contents.c.sha256.in_(chunk))).all())
    return out


def _known_relpaths(conn, relpaths: list[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(relpaths):
        out.update(r[0] for r in conn.execute(select(files.c.relpath).where(files.c.relpath.in_(chunk))))
    return out


class CatalogCorrupt(VitrineError):
    """The catalog file is damaged; it can be rebuilt from the images."""

    status = 503
    code = "catalog_corrupt"


SQLITE_MAGIC = b"SQLite format 3\x00"


def _corrupt(path: Path, what: str) -> CatalogCorrupt:
    return CatalogCorrupt(
        f"the catalog {path} is damaged: {what}",
        hint=(
            "it holds nothing that cannot be rebuilt from the images: move it away with its -wal and -shm "
            f"files (e.g. `mv {path} {path}.corrupt`, and the same for {path.name}-wal and {path.name}-shm "
            "when present), then run `vitrine index` on the project: every image is scanned and embedded "
            "again (and `vitrine tag` again if you used detector tags)"
        ),
    )


def _marker(path: Path) -> Path:
    return path.with_name(f".{path.name}.checked")


def _signature(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns}"


def check_sqlite_catalog(path: str | Path, full: bool | None = None) -> None:
    """Raise :class:`CatalogCorrupt` when the SQLite file at ``path`` is damaged; a missing or
    empty file is fine (a new catalog). Always: the 100-byte header (SQLite's signature, a valid
    page size) and the size (a whole number of pages, not shorter than the header says when
    there is no write-ahead log to complete it). Then ``PRAGMA quick_check`` when ``full`` is
    True, or, by default, when the file changed since the last clean check."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_size == 0:
        return
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise _corrupt(path, "it is not a SQLite database (its header is missing or overwritten)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise _corrupt(path, f"its header gives an impossible page size ({page_size})")
    wal = path.with_name(path.name + "-wal")
    has_wal = wal.exists() and wal.stat().st_size > 0
    pages = int.from_bytes(header[28:32], "big")
    header_valid = header[24:28] == header[92:96]
    if not has_wal and (st.st_size % page_size or (header_valid and pages * page_size > st.st_size)):
        expected = f"{pages * page_size} bytes" if header_valid else "a whole number of pages"
        raise _corrupt(path, f"the file is truncated ({st.st_size} bytes, expected {expected})")
    marker = _marker(path)
    if full is None:
        try:
            full = marker.read_text().strip() != _signature(st)
        except OSError:
            full = True
    if not full:
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check(5)").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise _corrupt(path, f"SQLite cannot read it ({exc})") from None
    problems = [r[0] for r in rows if r and r[0] != "ok"]
    if problems:
        raise _corrupt(path, "SQLite's integrity check found damaged pages: " + "; ".join(problems[:3]))
    _mark_checked(path, st)


def _mark_checked(path: Path, st: os.stat_result) -> None:
    """Record that the file, as ``st`` describes it, is known to be sound."""
    marker = _marker(path)
    try:
        atomic_write_text(marker, _signature(st) + "\n")
    except OSError:
        pass  # a read-only folder: check again next time


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Catalog:
    """Catalog of one project. Thread-safe for the server (one engine, short transactions)."""

    def __init__(self, url_or_path: str | Path):
        url = str(url_or_path)
        file: Path | None = None
        if "://" not in url:
            file = Path(url)
            file.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{url}"
            check_sqlite_catalog(file)
        self.url = url
        self.file = file
        self.engine: Engine = create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._lock = threading.Lock()
        self._float16_models: set[str] = set()  # known to be written as float16: not asked again
        try:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                if conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first() is None:
                    conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        except SQLDatabaseError as exc:
            self.engine.dispose()
            if file is None:
                raise
            raise _corrupt(file, f"SQLite cannot read it ({exc.orig})") from None

    def close(self) -> None:
        """Close the connections. When this was the last one (SQLite has folded its write-ahead log
        back into the file), the file as vitrine left it is recorded as sound, so that the next open
        skips the full integrity check; after a crash, or a change by anything else, it runs."""
        self.engine.dispose()
        if self.file is None:
            return
        wal = self.file.with_name(self.file.name + "-wal")
        try:
            if wal.exists() and wal.stat().st_size > 0:
                return  # another process still has it open
            _mark_checked(self.file, self.file.stat())
        except OSError:
            pass

    # --- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default=None):
        with self.engine.connect() as conn:
            row = conn.execute(select(meta.c.value).where(meta.c.key == key)).first()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        with self.engine.begin() as conn:
            self._set_meta(conn, key, value)

    @staticmethod
    def _set_meta(conn, key: str, value) -> None:
        text = json.dumps(value)
        if conn.execute(update(meta).where(meta.c.key == key).values(value=text)).rowcount == 0:
            conn.execute(meta.insert().values(key=key, value=text))

    def generation(self, model: str) -> int:
        """A counter bumped on every change to ``model``'s vectors; indexes record the one they saw."""
        return int(self.get_meta(f"generation:{model}", 0))

    def _bump(self, conn, model: str) -> None:
        row = conn.execute(select(meta.c.value).where(meta.c.key == f"generation:{model}")).first()
        self._set_meta(conn, f"generation:{model}", (json.loads(row[0]) if row else 0) + 1)

    # --- files and contents -----------------------------------------------------------------
    def files(self) -> dict[str, FileRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(files.c.relpath, files.c.folder, files.c.size, files.c.mtime_ns, files.c.content_id)
            )
            return {r.relpath: FileRow(*r) for r in rows}

    def content_ids_by_sha(self, shas: Iterable[str]) -> dict[str, int]:
        with self.engine.connect() as conn:
            return _content_ids(conn, list(shas))

    def apply_scan(
        self,
        upserts: list[tuple[str, str, int, int, str]],
        removed: Iterable[str],
    ) -> list[int]:
        """Record new/changed files ``(relpath, folder, size, mtime_ns, sha256)`` and drop removed
        paths, in one transaction. Contents no file points to any more are deleted with their
        vectors. Returns the ids of deleted contents."""
        removed = list(removed)
        with self._lock, self.engine.begin() as conn:
            # set-wise, a few statements per 500 files: a first scan of millions of files must not
            # pay a statement per file (nor load every known content to find the new ones)
            shas = {u[4]: u[2] for u in upserts}
            ids = _content_ids(conn, list(shas))
            new = [{"sha256": sha, "size": size} for sha, size in shas.items() if sha not in ids]
            for chunk in _chunks(new):
                conn.execute(contents.insert(), chunk)
            ids.update(_content_ids(conn, [row["sha256"] for row in new]))
            known = _known_relpaths(conn, [u[0] for u in upserts])
            columns = ("folder", "size", "mtime_ns", "content_id")
            changed, added = [], []
            for relpath, folder, size, mtime_ns, sha in upserts:
                row = dict(zip(columns, (folder, size, mtime_ns, ids[sha]), strict=True))
                if relpath in known:
                    changed.append({"b_relpath": relpath, **{f"b_{c}": v for c, v in row.items()}})
                else:
                    added.append({"relpath": relpath, **row})
            if changed:
                conn.execute(
                    update(files)
                    .where(files.c.relpath == bindparam("b_relpath"))
                    .values(**{c: bindparam(f"b_{c}") for c in columns}),
                    changed,
                )
            for chunk in _chunks(added):
                conn.execute(files.insert(), chunk)
            for chunk in _chunks(removed):
                conn.execute(delete(files).where(files.c.relpath.in_(chunk)))
            orphans = [
                r[0]
                for r in conn.execute(
                    select(contents.c.id).where(~contents.c.id.in_(select(files.c.content_id).distinct()))
                )
            ]
            if orphans:
                models = [
                    r[0]
                    for r in conn.execute(
                        select(embeddings.c.model).where(embeddings.c.content_id.in_(orphans)).distinct()
                    )
                ]
                for chunk in _chunks(orphans):
                    conn.execute(delete(embeddings).where(embeddings.c.content_id.in_(chunk)))
                    conn.execute(delete(tags).where(tags.c.content_id.in_(chunk)))
                    conn.execute(delete(tagged).where(tagged.c.content_id.in_(chunk)))
                    conn.execute(delete(contents).where(contents.c.id.in_(chunk)))
                for model in models:
                    self._bump(conn, model)
            return orphans

    def contents_to_embed(self, model: str) -> list[tuple[int, str]]:
        """(content id, one relpath) for contents that have no vector for ``model`` yet."""
        have = select(embeddings.c.content_id).where(embeddings.c.model == model).distinct()
        q = (
            select(files.c.content_id, func.min(files.c.relpath))
            .where(~files.c.content_id.in_(have))
            .group_by(files.c.content_id)
            .order_by(files.c.content_id)
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]

    def record_failures(self, failures: dict[int, str]) -> None:
        if not failures:
            return
        with self._lock, self.engine.begin() as conn:
            for cid, reason in failures.items():
                conn.execute(update(contents).where(contents.c.id == cid).values(error=reason))

    def failures(self) -> dict[str, str]:
        """relpath -> reason, for files whose content failed to decode."""
        q = select(files.c.relpath, contents.c.error).join(contents, files.c.content_id == contents.c.id)
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(q.where(contents.c.error.is_not(None)))}

    def add_vectors(
        self, model: str, ids: list[int], vectors: dict[str, np.ndarray], info: dict[int, dict] | None = None
    ) -> None:
        """Store a batch of vectors (all spaces) in one transaction, with image size/format."""
        info = info or {}
        with self._lock, self.engine.begin() as conn:
            self._convert_legacy(conn, model)
            rows = [
                {
                    "content_id": int(cid),
                    "model": model,
                    "space": space,
                    "vector": _encode(vecs[j]),
                }
                for space, vecs in vectors.items()
                for j, cid in enumerate(ids)
            ]
            conn.execute(
                delete(embeddings).where(
                    embeddings.c.model == model, embeddings.c.content_id.in_([int(c) for c in ids])
                )
            )
            if rows:
                conn.execute(embeddings.insert(), rows)
            # one statement per set of columns (every image of a batch has the same), not per image
            by_columns: dict[tuple[str, ...], list[dict]] = {}
            for cid in ids:
                extra = info.get(int(cid), {})
                params = {"b_id": int(cid), **{f"b_{k}": v for k, v in extra.items()}}
                by_columns.setdefault(tuple(sorted(extra)), []).append(params)
            for columns, params in by_columns.items():
                stmt = (
                    update(contents)
                    .where(contents.c.id == bindparam("b_id"))
                    .values(error=None, **{c: bindparam(f"b_{c}") for c in columns})
                )
                conn.execute(stmt, params)
            self._bump(conn, model)

    @staticmethod
    def _dtype(conn, model: str) -> str:
        row = conn.execute(select(meta.c.value).where(meta.c.key == f"vector_dtype:{model}")).first()
        return json.loads(row[0]) if row else LEGACY_DTYPE

    def _convert_legacy(self, conn, model: str) -> None:
        """Within a write's transaction: rewrite ``model``'s float32 rows as float16, once."""
        if model in self._float16_models:
            return
        if self._dtype(conn, model) == VECTOR_DTYPE:
            self._float16_models.add(model)
            return
        last = -1
        while True:
            rows = conn.execute(
                select(embeddings.c.content_id, embeddings.c.space, embeddings.c.vector)
                .where(embeddings.c.model == model, embeddings.c.content_id > last)
                .order_by(embeddings.c.content_id)
                .limit(CONVERT_BATCH)
            ).all()
            if not rows:
                break
            last = rows[-1][0]
            done = conn.execute(  # the whole content's spaces: the limit may cut between them
                select(embeddings.c.content_id, embeddings.c.space, embeddings.c.vector).where(
                    embeddings.c.model == model, embeddings.c.content_id == last
                )
            ).all()
            for cid, space, blob in {(r[0], r[1]): r for r in [*rows, *done]}.values():
                vec = np.frombuffer(blob, np.float32)
                conn.execute(
                    update(embeddings)
                    .where(embeddings.c.content_id == cid, embeddings.c.model == model, embeddings.c.space == space)
                    .values(vector=_encode(vec))
                )
        self._set_meta(conn, f"vector_dtype:{model}", VECTOR_DTYPE)

    def vector_dtype(self, model: str) -> str:
        """How ``model``'s vectors are stored: float16, or float32 in a catalog not written since."""
        with self.engine.connect() as conn:
            return self._dtype(conn, model)

    def iter_vectors(self, model: str, space: str, batch: int = 50_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64, vectors float32) chunks of every stored vector of a model/space."""
        q = (
            select(embeddings.c.content_id, embeddings.c.vector)
            .where(embeddings.c.model == model, embeddings.c.space == space)
            .order_by(embeddings.c.content_id)
        )
        with self.engine.connect() as conn:
            dtype = self._dtype(conn, model)  # the same transaction as the rows: one snapshot
            result = conn.execution_options(stream_results=True).execute(q)
            while rows := result.fetchmany(batch):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                yield ids, _decode([r[1] for r in rows], dtype)

    def vector_ids(self, model: str, space: str) -> np.ndarray:
        q = select(embeddings.c.content_id).where(embeddings.c.model == model, embeddings.c.space == space)
        with self.engine.connect() as conn:
            return np.array(sorted(r[0] for r in conn.execute(q)), dtype=np.int64)

    def vectors_for(self, model: str, space: str, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
        q = select(embeddings.c.content_id, embeddings.c.vector).where(
            embeddings.c.model == model, embeddings.c.space == space, embeddings.c.content_id.in_([int(i) for i in ids])
        )
        with self.engine.connect() as conn:
            dtype = self._dtype(conn, model)
            rows = conn.execute(q.order_by(embeddings.c.content_id)).all()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids_out = np.array([r[0] for r in rows], np.int64)
        return ids_out, _decode([r[1] for r in rows], dtype)

    def has_vectors(self, model: str) -> bool:
        """Whether any content has a vector for ``model``: one row looked at, where :meth:`models`
        counts them all (what every query asked before, a scan of every vector)."""
        q = select(embeddings.c.content_id).where(embeddings.c.model == model).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    def models(self) -> dict[str, int]:
        """model name -> number of contents with vectors."""
        q = select(embeddings.c.model, func.count(func.distinct(embeddings.c.content_id))).group_by(embeddings.c.model)
        with self.engine.connect() as conn:
            return dict(conn.execute(q).all())

    # --- lookups for search results and pages -----------------------------------------------
    def content_ids_in_folder(self, folder: str) -> np.ndarray:
        with self.engine.connect() as conn:
            ids = {r[0] for r in conn.execute(select(files.c.content_id).where(files.c.folder == folder))}
        return np.array(sorted(ids), dtype=np.int64)

    def paths_for(self, ids: Iterable[int]) -> dict[int, list[str]]:
        ids = [int(i) for i in ids]
        out: dict[int, list[str]] = {i: [] for i in ids}
        if not ids:
            return out
        with self.engine.connect() as conn:
            for cid, relpath in conn.execute(
                select(files.c.content_id, files.c.relpath).where(files.c.content_id.in_(ids)).order_by(files.c.relpath)
            ):
                out[cid].append(relpath)
        return out

    def file_info(self, relpath: str) -> dict | None:
        q = (
            select(
                files.c.relpath,
                files.c.folder,
                files.c.size,
                files.c.mtime_ns,
                files.c.content_id,
                contents.c.sha256,
                contents.c.width,
                contents.c.height,
                contents.c.format,
                contents.c.error,
            )
            .join(contents, files.c.content_id == contents.c.id)
            .where(files.c.relpath == relpath)
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return dict(row._mapping) if row else None

    def file_stats(self, relpaths: Iterable[str]) -> dict[str, dict]:
        """relpath -> {"size", "mtime_ns"} for those of ``relpaths`` in the catalog."""
        relpaths = list(dict.fromkeys(relpaths))
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(relpaths):
                q = select(files.c.relpath, files.c.size, files.c.mtime_ns).where(files.c.relpath.in_(chunk))
                for r in conn.execute(q):
                    out[r.relpath] = {"size": r.size, "mtime_ns": r.mtime_ns}
        return out

    def content_info(self, ids: Iterable[int]) -> dict[int, dict]:
        ids = [int(i) for i in ids]
        q = select(contents.c.id, contents.c.sha256, contents.c.width, contents.c.height, contents.c.format).where(
            contents.c.id.in_(ids)
        )
        with self.engine.connect() as conn:
            return {r.id: dict(r._mapping) for r in conn.execute(q)}

    def list_files(self, folder: str | None = None, offset: int = 0, limit: int = 100) -> tuple[int, list[dict]]:
        q = select(
            files.c.relpath,
            files.c.folder,
            files.c.size,
            files.c.content_id,
            contents.c.sha256,
            contents.c.width,
            contents.c.height,
            contents.c.error,
        ).join(contents, files.c.content_id == contents.c.id)
        count = select(func.count()).select_from(files)
        if folder is not None:
            q = q.where(files.c.folder == folder)
            count = count.where(files.c.folder == folder)
        with self.engine.connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = conn.execute(q.order_by(files.c.relpath).offset(offset).limit(limit)).all()
        return total, [dict(r._mapping) for r in rows]

    def folders(self) -> dict[str, int]:
        q = select(files.c.folder, func.count()).group_by(files.c.folder).order_by(files.c.folder)
        with self.engine.connect() as conn:
            return dict(conn.execute(q).all())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            n_files = conn.execute(select(func.count()).select_from(files)).scalar_one()
            n_contents = conn.execute(select(func.count()).select_from(contents)).scalar_one()
            n_failed = conn.execute(
                select(func.count()).select_from(contents).where(contents.c.error.is_not(None))
            ).scalar_one()
        return {"files": n_files, "contents": n_contents, "failed": n_failed}

    # --- tags (detector labels) --------------------------------------------------------------
    def contents_to_tag(self, model: str, threshold: float) -> list[tuple[int, str]]:
        """(content id, one relpath) for contents not yet tagged by ``model`` at ``threshold``
        (a content tagged at another threshold is tagged again)."""
        done = select(tagged.c.content_id).where(tagged.c.model == model, tagged.c.threshold == float(threshold))
        q = (
            select(files.c.content_id, func.min(files.c.relpath))
            .where(~files.c.content_id.in_(done))
            .group_by(files.c.content_id)
            .order_by(files.c.content_id)
        )
        with self.engine.connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q)]

    def add_tags(
        self, model: str, threshold: float, found: dict[int, list[dict]], info: dict[int, dict] | None = None
    ) -> None:
        """Store one batch of tagging results in one transaction: ``found`` maps a content id to
        its labels ``{"label", "score", "count", "boxes"}`` (an empty list: nothing found). Earlier
        tags of these contents by ``model`` are replaced. ``info``: image width/height/format,
        recorded for contents that have none yet."""
        info = info or {}
        ids = [int(c) for c in found]
        if not ids:
            return
        with self._lock, self.engine.begin() as conn:
            conn.execute(delete(tags).where(tags.c.model == model, tags.c.content_id.in_(ids)))
            conn.execute(delete(tagged).where(tagged.c.model == model, tagged.c.content_id.in_(ids)))
            # a content removed by a concurrent scan since the batch was read is not tagged
            alive = {r[0] for r in conn.execute(select(contents.c.id).where(contents.c.id.in_(ids)))}
            conn.execute(
                tagged.insert(),
                [
                    {
                        "content_id": cid,
                        "model": model,
                        "threshold": float(threshold),
                        "objects": sum(int(t["count"]) for t in found[cid]),
                    }
                    for cid in ids
                    if cid in alive
                ],
            )
            rows = [
                {
                    "content_id": cid,
                    "model": model,
                    "label": str(t["label"]).lower(),
                    "score": float(t["score"]),
                    "count": int(t["count"]),
                    "boxes": json.dumps(t["boxes"]),
                }
                for cid in ids
                if cid in alive
                for t in found[cid]
            ]
            if rows:
                conn.execute(tags.insert(), rows)
            for cid, extra in info.items():
                if int(cid) in alive and extra:
                    conn.execute(
                        update(contents).where(contents.c.id == int(cid), contents.c.width.is_(None)).values(**extra)
                    )

    def tag_counts(self, model: str | None = None) -> dict[str, int]:
        """label -> number of contents with it (any model, or ``model``), most frequent first."""
        n = func.count(func.distinct(tags.c.content_id))
        q = select(tags.c.label, n).group_by(tags.c.label).order_by(n.desc(), tags.c.label)
        if model is not None:
            q = q.where(tags.c.model == model)
        with self.engine.connect() as conn:
            return dict(conn.execute(q).all())

    def content_ids_with_tags(self, labels: Iterable[str], model: str | None = None) -> np.ndarray:
        """Ids of the contents that have every one of ``labels`` (case-insensitive)."""
        wanted = sorted({str(lab).strip().lower() for lab in labels if str(lab).strip()})
        if not wanted:
            return np.zeros(0, dtype=np.int64)
        q = (
            select(tags.c.content_id)
            .where(tags.c.label.in_(wanted))
            .group_by(tags.c.content_id)
            .having(func.count(func.distinct(tags.c.label)) == len(wanted))
        )
        if model is not None:
            q = q.where(tags.c.model == model)
        with self.engine.connect() as conn:
            return np.array(sorted(r[0] for r in conn.execute(q)), dtype=np.int64)

    def tagged_contents(self, label: str, model: str | None = None) -> list[dict]:
        """The contents with ``label``, best score first: ``{content_id, model, label, score,
        count, boxes}`` (with several models, the row of the best-scoring one)."""
        q = select(tags).where(tags.c.label == str(label).strip().lower())
        if model is not None:
            q = q.where(tags.c.model == model)
        best: dict[int, dict] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                row = dict(r._mapping)
                if row["content_id"] not in best or row["score"] > best[row["content_id"]]["score"]:
                    best[row["content_id"]] = row
        out = sorted(best.values(), key=lambda r: (-r["score"], r["content_id"]))
        for row in out:
            row["boxes"] = json.loads(row["boxes"])
        return out

    def tags_for(self, ids: Iterable[int], model: str | None = None) -> dict[int, list[dict]]:
        """content id -> its tags ``{model, label, score, count}``, best score first."""
        ids = [int(i) for i in ids]
        out: dict[int, list[dict]] = {i: [] for i in ids}
        if not ids:
            return out
        q = select(tags.c.content_id, tags.c.model, tags.c.label, tags.c.score, tags.c.count).where(
            tags.c.content_id.in_(ids)
        )
        if model is not None:
            q = q.where(tags.c.model == model)
        with self.engine.connect() as conn:
            for r in conn.execute(q.order_by(tags.c.score.desc())):
                out[r.content_id].append({"model": r.model, "label": r.label, "score": r.score, "count": r.count})
        return out

    def tagging_state(self) -> dict[str, dict]:
        """model -> ``{"tagged": contents, "thresholds": [...], "objects": boxes}`` for each model
        that has tagged this catalog."""
        q = select(
            tagged.c.model, tagged.c.threshold, func.count(), func.coalesce(func.sum(tagged.c.objects), 0)
        ).group_by(tagged.c.model, tagged.c.threshold)
        out: dict[str, dict] = {}
        with self.engine.connect() as conn:
            for model, threshold, n, objects in conn.execute(q):
                row = out.setdefault(model, {"tagged": 0, "thresholds": [], "objects": 0})
                row["tagged"] += n
                row["objects"] += int(objects)
                row["thresholds"].append(threshold)
        return out

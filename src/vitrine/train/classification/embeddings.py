"""Embedding a dataset's images once per (model, space), with an on-disk cache.

The linear probe and the zero-shot classifier both work on embeddings of a dataset's images.
:func:`embed_dataset` computes them with the indexing pipeline (threaded decode, batched model,
see :mod:`vitrine.embed.pipeline`) and keeps them in ``<cache_dir>/<model>-<space>.npz``
(:func:`dataset_cache_dir` gives ``<workspace>/datasets/<name>/embeddings/``):

* vectors are keyed by the SHA-1 of the file's content, so a renamed, moved or re-exported image
  is not embedded again, and an image whose content changed is;
* a file whose path, size and modification time match what the cache recorded is not even read
  again (the hash is taken from the cache);
* the model computes every one of its spaces in one pass, so every space's cache file is updated
  at once: embedding for the zero-shot classifier (``concepts``) also fills the linear probe's
  cache (``visual``) of ``offline-concepts``;
* what was embedded is saved even when the work is cancelled or fails half-way (and every few
  minutes on long runs), so the next call resumes;
* an image that cannot be read is skipped and reported (``EmbeddedDataset.failed``), never fatal.
  Failures are not cached: a fixed file is picked up by the next call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_open
from vitrine.core.errors import Cancelled, VitrineError
from vitrine.core.workspace import Workspace
from vitrine.data.dataset import ClassificationDataset, Sample

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
SAVE_EVERY_S = 300.0  # long runs also save their cache this often (a kill loses at most this much)

Progress = Callable[[str, int, int], None]  # progress(stage, done, total), as vitrine's jobs take it


@dataclass
class EmbeddedDataset:
    """Vectors of the samples that could be read, in the order asked for.

    Unpacks as ``paths, vectors = embed_dataset(...)``.
    """

    samples: list[Sample]
    vectors: np.ndarray  # (len(samples), dim) float32, L2-normalised
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sample path, reason)
    embedded: int = 0  # images that went through the model in this call
    cached: int = 0  # images whose vectors came from the cache
    seconds: float = 0.0

    @property
    def paths(self) -> list[str]:
        return [s.path for s in self.samples]

    def __iter__(self) -> Iterator:
        yield self.paths
        yield self.vectors

    def labels(self, classes: Sequence[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(classes)}
        return np.array([index[s.label] for s in self.samples], dtype=np.int64)

    def subset(self, split: str) -> EmbeddedDataset:
        keep = [i for i, s in enumerate(self.samples) if s.split == split]
        return EmbeddedDataset([self.samples[i] for i in keep], self.vectors[keep])


def dataset_cache_dir(workspace: Workspace, dataset: ClassificationDataset) -> Path:
    return workspace.dataset_dir(dataset.name) / "embeddings"


def cache_file(cache_dir: str | Path, model_name: str, space: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model_name}-{space}")
    return Path(cache_dir) / f"{safe}.npz"


def file_hash(path: str | os.PathLike) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class VectorCache:
    """One ``<model>-<space>.npz`` file: content hash -> vector, and path -> (size, mtime, hash)."""

    def __init__(self, path: Path, model_name: str, space: str, dim: int):
        self.path, self.model_name, self.space, self.dim = path, model_name, space, dim
        self.rows: dict[str, int] = {}
        self.blocks: list[np.ndarray] = []
        self.n = 0
        self.stats: dict[str, tuple[int, int, str]] = {}
        self.dirty = False
        self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta_ok = (
                    int(data["format"]) == CACHE_FORMAT
                    and str(data["model"]) == self.model_name
                    and str(data["space"]) == self.space
                    and data["vectors"].ndim == 2
                    and data["vectors"].shape[1] == self.dim
                )
                if not meta_ok:
                    log.warning("embedding cache %s is for another model or format: rebuilding it", self.path)
                    return
                vectors = np.asarray(data["vectors"], dtype=np.float32)
                hashes = [str(h) for h in data["hashes"]]
                stat_paths = [str(p) for p in data["stat_paths"]]
                sizes, mtimes = data["stat_sizes"].tolist(), data["stat_mtimes"].tolist()
                stat_hashes = [str(h) for h in data["stat_hashes"]]
        except (OSError, ValueError, KeyError, EOFError) as exc:  # a damaged cache only costs time
            log.warning("embedding cache %s is unreadable (%s): rebuilding it", self.path, exc)
            return
        if len(hashes) != len(vectors):
            return
        self.rows = {h: i for i, h in enumerate(hashes)}
        self.blocks = [vectors]
        self.n = len(vectors)
        self.stats = {p: (s, m, h) for p, s, m, h in zip(stat_paths, sizes, mtimes, stat_hashes, strict=True)}

    def known_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        entry = self.stats.get(path)
        if entry is not None and entry[0] == size and entry[1] == mtime_ns:
            return entry[2]
        return None

    def note_stat(self, path: str, size: int, mtime_ns: int, digest: str) -> None:
        if self.stats.get(path) != (size, mtime_ns, digest):
            self.stats[path] = (size, mtime_ns, digest)
            self.dirty = True

    def add(self, digests: list[str], vectors: np.ndarray) -> None:
        keep = [i for i, d in enumerate(digests) if d not in self.rows]
        if not keep:
            return
        for i in keep:
            self.rows[digests[i]] = self.n
            self.n += 1
        self.blocks.append(np.asarray(vectors[keep], dtype=np.float32))
        self.dirty = True

    def matrix(self) -> np.ndarray:
        if len(self.blocks) != 1:
            self.blocks = [np.concatenate(self.blocks) if self.blocks else np.zeros((0, self.dim), np.float32)]
        return self.blocks[0]

    def get(self, digests: list[str]) -> np.ndarray:
        matrix = self.matrix()
        return matrix[[self.rows[d] for d in digests]] if digests else np.zeros((0, self.dim), np.float32)

    def save(self) -> None:
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        hashes = [""] * self.n
        for digest, row in self.rows.items():
            hashes[row] = digest
        stat_items = sorted(self.stats.items())
        with atomic_open(self.path, "wb") as fh:
            np.savez(
                fh,
                format=np.int64(CACHE_FORMAT),
                model=np.str_(self.model_name),
                space=np.str_(self.space),
                vectors=self.matrix(),
                hashes=np.array(hashes, dtype="U40"),
                stat_paths=np.array([p for p, _ in stat_items], dtype=str),
                stat_sizes=np.array([v[0] for _, v in stat_items], dtype=np.int64),
                stat_mtimes=np.array([v[1] for _, v in stat_items], dtype=np.int64),
                stat_hashes=np.array([v[2] for _, v in stat_items], dtype="U40"),
            )
        self.dirty = False


def embed_dataset(
    dataset: ClassificationDataset,
    model_name: str,
    space: str,
    *,
    cache_dir: str | Path,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    samples: Sequence[Sample] | None = None,
    batch_size: int | None = None,
) -> EmbeddedDataset:
    """Vectors in ``space`` of ``model_name`` for ``samples`` (default: every sample of the dataset).

    Returns an :class:`EmbeddedDataset` (it unpacks as ``(paths, vectors)``) holding the samples
    that could be read, in the order given, their vectors, and ``failed``: ``(path, reason)`` for
    every image skipped. ``progress(stage, done, total)`` is called while files are hashed
    (``"hash"``) and as batches finish (``"embed"``; total: the images not found in the cache);
    ``cancel`` (a :class:`threading.Event`) stops the work
    with :class:`~vitrine.core.errors.Cancelled` after saving what was embedded.
    """
    from vitrine.embed.pipeline import EmbedItem, embed_items
    from vitrine.models import registry

    started = time.perf_counter()
    model = registry.load(model_name)
    if space not in model.spaces.dims:
        raise VitrineError(
            f"model {model_name!r} has no space {space!r}",
            hint=f"its spaces: {', '.join(model.spaces.dims)}",
        )
    samples = list(dataset.samples if samples is None else samples)
    caches = {
        sp: VectorCache(cache_file(cache_dir, model_name, sp), model_name, sp, dim)
        for sp, dim in model.spaces.dims.items()
    }
    cache = caches[space]

    # 1. content hash of every sample (from the cache when path, size and mtime are unchanged)
    failed: list[tuple[str, str]] = []
    digests: dict[int, str] = {}
    for i, sample in enumerate(samples):
        if progress and i % 1000 == 0:
            progress("hash", i, len(samples))
        if cancel is not None and cancel.is_set():
            raise Cancelled("embedding was cancelled")
        path = dataset.path_of(sample)
        key = str(path.absolute())
        try:
            st = os.stat(path)
            digest = cache.known_hash(key, st.st_size, st.st_mtime_ns)
            if digest is None:
                digest = file_hash(path)
        except FileNotFoundError:
            failed.append((sample.path, "file not found"))
            continue
        except OSError as exc:
            failed.append((sample.path, f"cannot read: {exc.strerror or exc}"))
            continue
        for c in caches.values():
            c.note_stat(key, st.st_size, st.st_mtime_ns, digest)
        digests[i] = digest

    if progress:
        progress("hash", len(samples), len(samples))

    # 2. embed the contents the cache does not have (each content once)
    cached = sum(1 for digest in digests.values() if digest in cache.rows)
    todo: dict[str, int] = {}
    for i, digest in digests.items():
        if digest not in cache.rows and digest not in todo:
            todo[digest] = i
    order = list(todo.items())
    items = [EmbedItem(n, dataset.path_of(samples[i]), samples[i].path) for n, (_, i) in enumerate(order)]
    bad_digests: dict[str, str] = {}
    last_save = time.monotonic()

    def on_batch(ids: list[int], vectors: dict[str, np.ndarray], info: dict) -> None:
        nonlocal last_save
        batch_digests = [order[n][0] for n in ids]
        for sp, c in caches.items():
            if sp in vectors:
                c.add(batch_digests, vectors[sp])
        if time.monotonic() - last_save > SAVE_EVERY_S:
            for c in caches.values():
                c.save()
            last_save = time.monotonic()

    def on_failure(item, reason: str) -> None:
        bad_digests[order[item.content_id][0]] = reason

    if progress:
        progress("embed", 0, len(items))
    try:
        if items:
            embed_items(
                model,
                items,
                on_batch,
                on_failure,
                progress=(lambda done, total: progress("embed", done, total)) if progress else None,
                cancel=cancel,
                batch_size=batch_size,
            )
    finally:
        for c in caches.values():
            c.save()

    # 3. assemble in the order asked for
    kept: list[Sample] = []
    kept_digests: list[str] = []
    for i, sample in enumerate(samples):
        digest = digests.get(i)
        if digest is None:
            continue
        if digest in bad_digests:
            failed.append((sample.path, bad_digests[digest]))
            continue
        kept.append(sample)
        kept_digests.append(digest)
    for path, reason in failed:
        log.warning("skipped %s: %s", path, reason)
    return EmbeddedDataset(
        samples=kept,
        vectors=cache.get(kept_digests),
        failed=failed,
        embedded=len(items) - len(bad_digests),
        cached=cached,
        seconds=time.perf_counter() - started,
    )


# ------------------------------------------------------------------------------------------------
# shared by the linear probe and the zero-shot classifier


def resolve(workspace, dataset) -> tuple[Workspace, ClassificationDataset]:
    """Accept a Workspace or a folder, and a dataset or its name in that workspace."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ds = dataset if isinstance(dataset, ClassificationDataset) else ClassificationDataset.load(ws.dataset_dir(dataset))
    return ws, ds


def evaluate_probs(
    run,
    classes: list[str],
    split: str,
    y_true: np.ndarray,
    probs: np.ndarray,
    metrics: dict,
    *,
    skipped: Sequence[tuple[str, str]] = (),
    classifier=None,
    speed_images: Sequence | None = None,
    dataset=None,
    paths: Sequence[str] | None = None,
) -> dict:
    """Report on ``split`` from probabilities already computed on cached embeddings.

    The same report as :func:`vitrine.evaluate.classification.evaluate_run` (and the same files in
    the run folder: metrics.json, per-class tables, confusion matrix), without decoding and
    embedding the split's images a second time. ``metrics[split]`` gets the summary and, when
    ``classifier`` (the saved one, loaded) and ``speed_images`` (decoded images) are given,
    ``metrics["speed"]`` its prediction speed, timed by ``predict_proba`` (preprocessing included:
    latency at batch 1 and throughput), and ``metrics["cost"]`` what it costs. ``dataset`` (the
    ClassificationDataset scored) adds the split's fingerprint; ``paths`` (the images of ``probs``'
    rows) keeps each image's prediction (``predictions.csv``) for error browsing.
    """
    from vitrine.evaluate.classification import classification_report, measure_speed, summary, write_report
    from vitrine.evaluate.comparable import classifier_cost, run_file, split_record
    from vitrine.evaluate.predictions import write_predictions

    report = {"split": split, **classification_report(y_true, probs, list(classes), (1, 3, 5))}
    if dataset is not None:
        report.update(split_record(dataset, split))
    report["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
    if classifier is not None and speed_images:
        report["speed"] = measure_speed(classifier, list(speed_images), latency_images=10)
        report["cost"] = classifier_cost(classifier, run_file(run.dir, "classifier.joblib", "classifier.npz"))
    write_report(run.dir, report)
    if paths is not None:
        write_predictions(run.dir, paths, y_true, probs, classes)
    metrics[split] = summary(report)
    for key in ("speed", "cost"):
        if key in report:
            metrics[key] = report[key]
    return report


def decode_some(dataset: ClassificationDataset, samples: Sequence[Sample], n: int = 64) -> list:
    """Up to ``n`` decoded images of ``samples`` (unreadable ones left out), to time predictions."""
    from vitrine.collection.imageio import open_image
    from vitrine.core.errors import ImageError

    images = []
    for sample in samples:
        if len(images) >= n:
            break
        try:
            images.append(open_image(dataset.path_of(sample)))
        except ImageError:
            continue
    return images

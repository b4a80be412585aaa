"""Batch embedding: decode (thread pool) -> preprocess -> model -> vectors, with bounded prefetch.

Decoding and preprocessing run in worker threads (PIL and torchvision release the GIL for most of
the work) while the model runs on the main thread; at most ``prefetch`` batches are decoded ahead,
so memory stays flat on any collection size. A file that cannot be decoded is reported through
``on_failure`` and the batch goes on without it.

For embedding, images are decoded at reduced scale (``min_side``: JPEG by its DCT, other formats
box-reduced right after decoding; see :mod:`vitrine.collection.imageio`), and every full-size
decode draws on the process's pixel budget, so a folder of 9000 x 9000 PNGs decodes a few at a
time whatever the number of decode threads. The model's own preprocessing bounds the aspect ratio
(:mod:`vitrine.models.preprocess`). The sizes recorded in the catalog are the file's, read from
its header.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitrine.collection.imageio import open_image_with_info
from vitrine.core.allocator import give_back, keep_batch_memory
from vitrine.core.errors import Cancelled, ImageError
from vitrine.models.base import Embedder
from vitrine.models.preprocess import DECODE_MIN_SIDE


@dataclass
class StageTimes:
    """Where an embedding run's time went. ``decode`` is thread time (every decode worker's
    seconds added up: decoding runs beside the model); ``wait`` is the time the model sat idle
    waiting for decoded images, so a run with a large ``wait`` is decode-bound and one with a
    small ``wait`` is model-bound. ``model`` and ``store`` are on the main thread."""

    decode: float = 0.0
    wait: float = 0.0
    model: float = 0.0
    store: float = 0.0
    workers: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_decode(self, seconds: float) -> None:
        with self._lock:
            self.decode += seconds

    def to_dict(self) -> dict:
        return {
            "decode_seconds": round(self.decode, 3),
            "decode_workers": self.workers,
            "wait_seconds": round(self.wait, 3),
            "model_seconds": round(self.model, 3),
            "store_seconds": round(self.store, 3),
        }


@dataclass(frozen=True)
class EmbedItem:
    content_id: int
    path: Path
    relpath: str


def default_workers() -> int:
    return int(os.environ.get("VITRINE_DECODE_WORKERS", "0")) or max(1, min(8, (os.cpu_count() or 2)))


def decode_item(prepare: Callable[[Image.Image], Any], item: EmbedItem, min_side: int | None = None):
    """Open one image and ``prepare`` it: ``(item, prepared, info, error)``; ``error`` is the
    reason when the file cannot be decoded or prepared (then ``prepared`` and ``info`` are None).
    ``min_side``: the image may be decoded at reduced scale, keeping both sides at least that."""
    try:
        image, header = open_image_with_info(item.path, min_side=min_side)
        # the file's own size and format (the decoded image may be reduced)
        info = {"width": header["width"], "height": header["height"], "format": header["format"]}
        return item, prepare(image), info, None
    except ImageError as exc:
        # the reason without the file name: a content may have several names (duplicates), and
        # reasons from the scan (empty file, broken symlink...) carry no file name either
        return item, None, None, getattr(exc, "reason", None) or exc.message
    except Exception as exc:  # a preprocessing bug must not stop the run; report it
        return item, None, None, f"could not preprocess: {type(exc).__name__}: {exc}"


def decode_batches(
    items: Sequence[EmbedItem],
    prepare: Callable[[Image.Image], Any],
    batch_size: int,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    cancelled: str = "cancelled",
    min_side: int | None = None,
    times: StageTimes | None = None,
) -> Iterator[list[tuple[EmbedItem, Any, dict | None, str | None]]]:
    """Yield ``items`` decoded and prepared (:func:`decode_item`) batch by batch, in order, with
    up to ``prefetch`` batches decoded ahead in a thread pool. Raises ``Cancelled(cancelled)``
    before a batch when ``cancel`` is set. ``min_side``: as for :func:`decode_item` (None: full
    size, for callers that need the file's pixels). ``times``: decode and wait seconds added in."""
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    workers = workers or default_workers()
    if times is not None:
        times.workers = workers

    def decode(item: EmbedItem):
        t0 = time.perf_counter()
        try:
            return decode_item(prepare, item, min_side)
        finally:
            if times is not None:
                times.add_decode(time.perf_counter() - t0)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[list[Future]] = []
        next_batch = 0

        def submit_next():
            nonlocal next_batch
            if next_batch < len(batches):
                pending.append([pool.submit(decode, it) for it in batches[next_batch]])
                next_batch += 1

        for _ in range(prefetch + 1):
            submit_next()
        try:
            while pending:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(cancelled)
                futures = pending.pop(0)
                submit_next()
                t0 = time.perf_counter()
                done = [fut.result() for fut in futures]
                if times is not None:
                    times.wait += time.perf_counter() - t0
                yield done
        finally:
            for futures in pending:
                for fut in futures:
                    fut.cancel()


def embed_items(
    model: Embedder,
    items: Sequence[EmbedItem],
    on_batch: Callable[[list[int], dict[str, np.ndarray], dict[int, dict]], None],
    on_failure: Callable[[EmbedItem, str], None],
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    prefetch: int = 2,
    times: StageTimes | None = None,
) -> StageTimes:
    """Embed ``items`` batch by batch; ``on_batch`` stores each batch (it is the commit point).
    Returns where the time went, added into ``times`` as it goes when given (so a caller that
    is interrupted keeps what was measured so far)."""
    times = times if times is not None else StageTimes()
    batch_size = batch_size or model.batch_size
    keep_batch_memory()  # a batch's blocks are reused by the next, not mapped afresh (1.7x on torch)
    # seconds to pause after each committed batch: lets tests (and people trying out resume)
    # interrupt a run part-way on any machine, however fast
    throttle = throttle_seconds()
    batches = decode_batches(
        items,
        model.preprocess,
        batch_size,
        cancel=cancel,
        workers=workers,
        prefetch=prefetch,
        cancelled="indexing was cancelled; what was embedded so far is kept",
        min_side=DECODE_MIN_SIDE,
        times=times,
    )
    with closing(batches):  # an error here stops the decoding threads now, not when collected
        try:
            _embed_batches(model, items, batches, on_batch, on_failure, progress, times, throttle)
        finally:
            give_back()  # what the run's batches kept goes back to the system
    return times


def _embed_batches(model, items, batches, on_batch, on_failure, progress, times: StageTimes, throttle: float) -> None:
    done = 0
    for decoded in batches:
        ids, tensors, info = [], [], {}
        for item, tensor, meta, error in decoded:
            if error is not None:
                on_failure(item, error)
            else:
                ids.append(item.content_id)
                tensors.append(tensor)
                info[item.content_id] = meta
        if ids:
            t0 = time.perf_counter()
            vectors = embed_prepared(model, tensors)
            t1 = time.perf_counter()
            on_batch(ids, vectors, info)
            times.model += t1 - t0
            times.store += time.perf_counter() - t1
            if throttle:
                time.sleep(throttle)
        done += len(decoded)
        if progress:
            progress(done, len(items))


def embed_prepared(model: Embedder, prepared: list) -> dict[str, np.ndarray]:
    """Embed a batch of ``model.preprocess`` outputs: ``{space: (n, dim) float32}``. The one place
    that turns prepared images into a model batch (the local loop and the Ray actors share it)."""
    return model.embed_batch(stack(prepared))


def stack(prepared: list) -> Any:
    """One batch of preprocessed images: numpy arrays (a model on a CPU runtime) with ``np.stack``,
    torch tensors with ``torch.stack``."""
    if isinstance(prepared[0], np.ndarray):
        return np.stack(prepared)
    import torch

    return torch.stack(prepared)


def throttle_seconds() -> float:
    """Seconds to pause after each committed batch (``VITRINE_THROTTLE_BATCH_SECONDS``)."""
    return float(os.environ.get("VITRINE_THROTTLE_BATCH_SECONDS") or 0)

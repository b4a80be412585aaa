"""glibc's allocator, told that this process works in batches of large arrays.

A model batch allocates and frees blocks of tens to hundreds of MB (EfficientNet-Lite0's widest
activation at batch 32 is ~150 MB). glibc serves blocks above its mmap threshold (128 KB, rising
to at most 32 MB as big blocks are freed) with fresh ``mmap`` calls, and gives freed heap back to
the system above its trim threshold, so every batch pays page faults for its memory again: in
``vitrine index --runtime torch`` with offline-concepts on 512 photos, half the CPU time was the
kernel's (16.5 s user + 17.1 s system; 33 images/s). With both thresholds at 256 MB the same run
took 15.4 s + 6.8 s (58 images/s). :func:`keep_batch_memory` sets them once per process (unless
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` are set, or ``VITRINE_MALLOC_TUNING=0``);
:func:`give_back` returns what is free to the system, for the end of a run. Elsewhere than glibc
both do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading

BATCH_BYTES = 256 * 1024 * 1024
TUNING_ENV = "VITRINE_MALLOC_TUNING"
_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters
_M_MMAP_THRESHOLD = -3
_lock = threading.Lock()
_tuned: bool | None = None


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both; musl has neither
        return libc
    except (OSError, AttributeError):
        return None


def keep_batch_memory(limit: int = BATCH_BYTES) -> bool:
    """Blocks up to ``limit`` bytes come from the heap and freed ones stay there for the next batch;
    once per process. True when the allocator is (now or already) tuned."""
    global _tuned
    with _lock:
        if _tuned is not None:
            return _tuned
        _tuned = False
        libc = _libc()
        told = any(os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        if libc is None or told or os.environ.get(TUNING_ENV, "1").strip() == "0":
            return False
        _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(limit))) and bool(libc.mallopt(_M_TRIM_THRESHOLD, int(limit)))
        return _tuned


def give_back() -> None:
    """Return the free memory at the top of the heap and whole free pages to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)

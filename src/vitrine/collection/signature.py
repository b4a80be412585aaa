"""Pixel signatures: a picture's coarse layout, to tell a copy of a photo from another photo of
the same thing.

An embedding says what a picture shows: two photos of one plain wall or one coin tray sit as close
in it as a re-encoded copy. A signature is the picture itself, grey and shrunk to 16 x 16 (area
average), zero mean and unit length, so the inner product of two signatures is the normalised
cross-correlation of the two thumbnails: near 1 for the same picture re-encoded, resized, cropped
by a few per cent or made brighter, low for a different photo however alike its content.
:mod:`vitrine.search.neighbours` uses it to confirm near-duplicate pairs; the thresholds are
measured by ``benchmarks/near_duplicates.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.collection.imageio import open_image
from vitrine.core.errors import ImageError

SIDE = 16  # pixels per side


def pixel_signature(image: Image.Image, side: int = SIDE) -> np.ndarray:
    """The unit signature of ``image`` (``side * side`` float32); the zero vector for a flat image
    (under one grey level of spread), which matches nothing."""
    gray = np.asarray(image.convert("L").resize((side, side), Image.Resampling.BOX), dtype=np.float32)
    v = gray.ravel() - gray.mean()
    norm = float(np.linalg.norm(v))
    return v / norm if norm >= side else np.zeros_like(v)


def _one(path: Path) -> tuple[np.ndarray | None, str | None]:
    try:
        # a JPEG decodes at 1/8 scale or less here: a few ms even for a camera's 12 MP
        return pixel_signature(open_image(path, min_side=4 * SIDE)), None
    except ImageError as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"{path.name}: cannot read the file: {exc}"


def signatures_of(paths: Sequence[Path], workers: int | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Signatures of the files at ``paths`` (rows in order; decoded in threads) and the files that
    could not be read: ``{position: reason}``, whose rows are zero."""
    out = np.zeros((len(paths), SIDE * SIDE), np.float32)
    failed: dict[int, str] = {}
    if not paths:
        return out, failed
    workers = workers or min(8, os.cpu_count() or 1, len(paths))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="signature") as pool:
        for k, (sig, reason) in enumerate(pool.map(_one, paths)):
            if sig is None:
                failed[k] = reason or "unreadable"
            else:
                out[k] = sig
    return out, failed

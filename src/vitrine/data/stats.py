"""Numbers about a classification dataset, for the dashboard, the API and ``vitrine data stats``.

:func:`dataset_stats` counts images per class and split, reads every image's header (never the
pixels) for its width, height and format, and finds duplicate files by SHA-256 (only files whose
size is shared with another file are hashed). A duplicate group that spans two splits is
*leakage*: the same image would be trained on and evaluated on. Everything in the result is
plain JSON. Given the dataset's folder as ``cache_dir``, the result is cached there as
``stats.json``, valid as long as the dataset's files (samples.csv, dataset.json) are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from vitrine.collection.imageio import image_info
from vitrine.core.atomic import atomic_write_text
from vitrine.core.errors import ImageError
from vitrine.data.dataset import SPLITS, ClassificationDataset

__all__ = ["STATS_VERSION", "dataset_stats", "sample_paths"]

STATS_VERSION = 1
PER_IMAGE_LIMIT = 100_000  # per-image arrays are included up to this many measured images
_CHUNK = 256
_HASH_BLOCK = 1 << 20
_PERCENTILES = (5, 25, 50, 75, 95)


def _measure(path: Path) -> tuple[int | None, dict | None, str | None]:
    """(file size, header info, problem) of one image."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return None, None, "file not found"
    except OSError as exc:
        return None, None, f"cannot read the file: {exc.strerror or exc}"
    try:
        return size, image_info(path), None
    except ImageError as exc:
        return size, None, getattr(exc, "reason", None) or exc.message
    except OSError as exc:
        return size, None, f"cannot read the file: {exc.strerror or exc}"


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _pool_map(fn, items: list, workers: int) -> list:
    if not items:
        return []
    chunks = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]

    def run(chunk):
        return [fn(x) for x in chunk]

    if workers <= 1 or len(chunks) == 1:
        return [r for c in chunks for r in run(c)]
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="vitrine-stats") as pool:
        return [r for part in pool.map(run, chunks) for r in part]


def _summary(values: list[float], bins: int = 20) -> dict:
    """min/max/mean/percentiles and a histogram (JSON-friendly); all None for no values."""
    if not values:
        return {"n": 0, "min": None, "max": None, "mean": None, "percentiles": {}, "histogram": None}
    a = np.asarray(values, dtype=np.float64)
    pct = np.percentile(a, _PERCENTILES)
    counts, edges = np.histogram(a, bins=bins)
    return {
        "n": int(a.size),
        "min": _num(a.min()),
        "max": _num(a.max()),
        "mean": round(float(a.mean()), 4),
        "percentiles": {f"p{p}": round(float(v), 4) for p, v in zip(_PERCENTILES, pct, strict=True)},
        "histogram": {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]},
    }


def _num(x) -> int | float:
    f = float(x)
    return int(f) if f.is_integer() else round(f, 4)


def _cache_key(cache_dir: Path, max_images: int | None, seed: int) -> dict | None:
    try:
        s = os.stat(cache_dir / "samples.csv")
        m = os.stat(cache_dir / "dataset.json")
    except OSError:
        return None
    return {
        "version": STATS_VERSION,
        "samples_mtime_ns": s.st_mtime_ns,
        "samples_size": s.st_size,
        "meta_mtime_ns": m.st_mtime_ns,
        "meta_size": m.st_size,
        "max_images": max_images,
        "seed": seed,
    }


def _read_cache(cache_dir: Path, key: dict) -> dict | None:
    try:
        data = json.loads((cache_dir / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("stats"), dict):
        return None
    return data["stats"]


def dataset_stats(
    dataset: ClassificationDataset,
    *,
    max_images: int | None = None,
    workers: int = 4,
    cache_dir: str | os.PathLike | None = None,
    refresh: bool = False,
    seed: int = 0,
) -> dict:
    """Statistics of ``dataset`` as a JSON-ready dict.

    Keys: ``total``, ``classes``, ``counts`` ({split: {class: n}}, unassigned samples under
    ``"unassigned"``), ``per_class``, ``imbalance_ratio`` (largest class / smallest class),
    ``measured`` and ``sampled`` (``max_images`` measures a seeded random subset), ``width``,
    ``height``, ``aspect`` (width / height) and ``file_size`` (bytes) summaries, each with
    min/max/mean, percentiles p5..p95 and a 20-bin histogram, ``per_image`` (the raw values, up to
    100,000 images, else None), ``formats``, ``modes``, ``duplicates`` (groups of files with the
    same SHA-256, each with paths, labels and splits), ``leakage`` (the duplicate groups that span
    several splits), ``label_conflicts`` (groups with several labels), ``unreadable`` (path and
    reason), ``warnings`` (sentences), ``elapsed_s`` and ``cached``.
    Paths are relative to the dataset's image root.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    key = _cache_key(cache, max_images, seed) if cache is not None else None
    if key is not None and not refresh:
        cached = _read_cache(cache, key)
        if cached is not None:
            cached["cached"] = True
            return cached
    t0 = time.perf_counter()
    stats = _compute(dataset, max_images=max_images, workers=max(1, int(workers)), seed=seed)
    stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
    if key is not None:
        try:
            atomic_write_text(cache / "stats.json", json.dumps({"key": key, "stats": stats}, ensure_ascii=False))
        except OSError:
            pass  # a read-only dataset folder: no cache, same numbers
    stats["cached"] = False
    return stats


def _compute(dataset: ClassificationDataset, *, max_images: int | None, workers: int, seed: int) -> dict:
    samples = dataset.samples
    counts = {(sp or "unassigned"): c for sp, c in dataset.counts().items()}
    per_class = Counter(s.label for s in samples)
    per_class_all = {c: per_class.get(c, 0) for c in dataset.classes}
    for c in sorted(set(per_class) - set(per_class_all)):
        per_class_all[c] = per_class[c]
    present = [n for n in per_class_all.values() if n > 0]
    imbalance = round(max(present) / min(present), 4) if present else None

    chosen = sorted(range(len(samples)), key=lambda i: samples[i].path)
    sampled = max_images is not None and 0 <= max_images < len(chosen)
    if sampled:
        chosen = sorted(random.Random(seed).sample(chosen, max_images), key=lambda i: samples[i].path)
    paths = [dataset.path_of(samples[i]) for i in chosen]
    measured = _pool_map(_measure, paths, workers)

    widths: list[int] = []
    heights: list[int] = []
    aspects: list[float] = []
    sizes: list[int] = []
    formats: Counter = Counter()
    modes: Counter = Counter()
    unreadable = []
    by_size: dict[int, list[int]] = defaultdict(list)
    for k, (size, info, problem) in enumerate(measured):
        s = samples[chosen[k]]
        if size is not None:
            sizes.append(size)
            by_size[size].append(k)
        if info is None:
            unreadable.append({"path": s.path, "label": s.label, "split": s.split, "reason": problem})
            continue
        w, h = info["width"], info["height"]
        widths.append(w)
        heights.append(h)
        aspects.append(round(w / h, 4))
        formats[info["format"]] += 1
        modes[info["mode"]] += 1

    # duplicates: only files sharing their size with another file can share their content
    candidates = [k for group in by_size.values() if len(group) > 1 for k in group]
    digests = _pool_map(_sha256, [paths[k] for k in candidates], workers)
    by_hash: dict[str, list[int]] = defaultdict(list)
    for k, digest in zip(candidates, digests, strict=True):
        if digest is not None:
            by_hash[digest].append(k)
    groups = []
    for digest, members in by_hash.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda k: samples[chosen[k]].path)
        ss = [samples[chosen[k]] for k in members]
        groups.append(
            {
                "sha256": digest,
                "size": measured[members[0]][0],
                "paths": [s.path for s in ss],
                "labels": [s.label for s in ss],
                "splits": [s.split for s in ss],
            }
        )
    groups.sort(key=lambda g: g["paths"][0])
    leakage = [g for g in groups if len({sp for sp in g["splits"] if sp}) > 1]
    conflicts = [g for g in groups if len(set(g["labels"])) > 1]

    n = len(measured)
    warnings = []
    if leakage:
        n_img = sum(len(g["paths"]) for g in leakage)
        warnings.append(
            f"leakage: {len(leakage)} group(s) of identical images ({n_img} files) appear in more than one split"
        )
    if conflicts:
        warnings.append(f"{len(conflicts)} group(s) of identical images carry different labels")
    if unreadable:
        warnings.append(f"{len(unreadable)} image(s) cannot be read")
    if imbalance is not None and imbalance >= 10:
        warnings.append(f"classes are imbalanced: the largest is {imbalance:g} times the smallest")
    assigned = {s.split for s in samples}
    n_unassigned = sum(1 for s in samples if not s.split)
    if n_unassigned:
        warnings.append(f"{n_unassigned} sample(s) have no split")
    for sp in SPLITS:
        for c, k in counts.get(sp, {}).items():
            if k == 0 and sp in assigned and per_class_all.get(c):
                warnings.append(f"class {c!r} has no {sp} image")
    if sampled:
        warnings.append(f"measured a random sample of {n} of {len(samples)} images (duplicates only among those)")

    per_image = None
    if n <= PER_IMAGE_LIMIT:
        per_image = {"width": widths, "height": heights, "aspect": aspects, "file_size": sizes}
    return {
        "version": STATS_VERSION,
        "name": dataset.name,
        "root": str(dataset.root),
        "total": len(samples),
        "classes": list(per_class_all),
        "counts": counts,
        "per_class": per_class_all,
        "imbalance_ratio": imbalance,
        "measured": n,
        "sampled": sampled,
        "width": _summary(widths),
        "height": _summary(heights),
        "aspect": _summary(aspects),
        "file_size": _summary(sizes),
        "per_image": per_image,
        "formats": dict(formats.most_common()),
        "modes": dict(modes.most_common()),
        "duplicates": {
            "groups": groups,
            "n_groups": len(groups),
            "n_images": sum(len(g["paths"]) for g in groups),
            "redundant": sum(len(g["paths"]) - 1 for g in groups),
        },
        "leakage": leakage,
        "label_conflicts": conflicts,
        "unreadable": unreadable,
        "warnings": warnings,
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def sample_paths(
    dataset: ClassificationDataset, per_class: int = 8, seed: int = 0, *, split: str | None = None
) -> dict[str, list[str]]:
    """Up to ``per_class`` paths (relative to the image root) per class, chosen at random with
    ``seed`` (each class on its own stream, so adding a class changes no other's sample), sorted.
    ``split`` restricts to one split. For thumbnails."""
    by_class: dict[str, list[str]] = {c: [] for c in dataset.classes}
    for s in dataset.samples:
        if split is None or s.split == split:
            by_class.setdefault(s.label, []).append(s.path)
    out = {}
    for c, paths in by_class.items():
        paths.sort()
        if len(paths) > per_class:
            paths = sorted(random.Random(f"{seed}\x00{c}").sample(paths, max(0, per_class)))
        out[c] = paths
    return out

"""The images a fine-tuning run trains on: the dataset's splits (a val split held out of train
when it has none, a stratified subset when asked), decoded once into memory up to a budget
(:class:`ImageStore`), and the batches a DataLoader makes of them (unreadable images skipped
with their reason)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitrine.core.errors import Cancelled, ImageError, VitrineError
from vitrine.train.classification.config import FinetuneConfig


def _decode(path: Path, max_side: int | None):
    """(uint8 tensor 3 x H x W, None) or (None, why). Downscaled so the shorter side <= max_side."""
    from PIL import Image

    from vitrine.collection.imageio import open_image

    try:
        im = open_image(path)
    except ImageError as e:
        return None, getattr(e, "reason", None) or e.message
    except VitrineError as e:
        return None, e.message
    except Exception as e:  # never let one file stop a training run
        return None, f"{type(e).__name__}: {e}"
    if max_side and min(im.size) > max_side:
        scale = max_side / min(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    array = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous(), None


class ImageStore:
    """Decoded images (uint8 tensors), cached in memory up to a budget; the rest decoded on use."""

    def __init__(self, paths: list[Path], max_side: int | None, budget_bytes: int):
        self.paths = paths
        self.max_side = max_side
        self.budget = budget_bytes
        self.used = 0
        self.cache: dict[int, torch.Tensor] = {}
        self.failed: dict[int, str] = {}

    def _keep(self, i: int, tensor: torch.Tensor) -> None:
        size = tensor.numel()
        if self.used + size <= self.budget:
            self.cache[i] = tensor
            self.used += size

    def preload(self, indexes: list[int], progress=None, cancel=None) -> None:
        """Decode ``indexes`` in threads until the budget is used up (cancel-aware)."""
        if not indexes or self.budget <= 0:
            return
        workers = min(8, 2 * (os.cpu_count() or 2))
        chunk = 256
        done = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitrine-ft-decode") as pool:
            for start in range(0, len(indexes), chunk):
                if cancel is not None and cancel.is_set():
                    raise Cancelled("fine-tuning cancelled while loading images")
                if self.used >= self.budget:
                    break
                part = indexes[start : start + chunk]
                for i, (tensor, why) in zip(
                    part, pool.map(lambda i: _decode(self.paths[i], self.max_side), part), strict=True
                ):
                    if tensor is None:
                        self.failed[i] = why
                    else:
                        self._keep(i, tensor)
                done += len(part)
                if progress:
                    progress("load", done, len(indexes), {"cached_mb": round(self.used / 2**20, 1)})

    def get(self, i: int):
        hit = self.cache.get(i)
        if hit is not None:
            return hit, None
        if i in self.failed:
            return None, self.failed[i]
        tensor, why = _decode(self.paths[i], self.max_side)
        if tensor is None:
            self.failed[i] = why
        return tensor, why


class SplitDataset(torch.utils.data.Dataset):
    def __init__(self, store: ImageStore, indexes: list[int], labels: list[int], transform):
        self.store, self.indexes, self.labels, self.transform = store, indexes, labels, transform

    def __len__(self) -> int:
        return len(self.indexes)

    def __getitem__(self, k: int):
        i = self.indexes[k]
        image, why = self.store.get(i)
        if image is None:
            return None, self.labels[k], i, why
        return self.transform(image), self.labels[k], i, None


def collate(batch):
    good = [b for b in batch if b[0] is not None]
    bad = [(b[2], b[3]) for b in batch if b[0] is None]
    if not good:
        return None, None, bad
    x = torch.stack([b[0] for b in good])
    y = torch.tensor([b[1] for b in good], dtype=torch.long)
    return x, y, bad


def _stratified_pick(labels: np.ndarray, n_pick: int, rng: np.random.Generator, keep_one: bool) -> np.ndarray:
    """Positions (into ``labels``) of ``n_pick`` samples, proportionally per class (sorted).
    ``keep_one``: never pick every sample of a class (leave one behind)."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = n_pick * counts / counts.sum()
    take = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - take))[: n_pick - take.sum()]:
        take[j] += 1
    if keep_one:
        take = np.minimum(take, counts - 1)
    picked = []
    for c, t in zip(classes, take, strict=True):
        if t > 0:
            members = np.flatnonzero(labels == c)
            picked.append(rng.permutation(members)[:t])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


@dataclass
class Splits:
    paths: list[Path]  # every image used (train, then val, then eval)
    rel: list[str]
    labels: list[int]
    train: list[int]  # indexes into paths
    val: list[int]
    eval: list[int]
    eval_split: str
    notes: list[str]


def prepare_splits(dataset, cfg: FinetuneConfig) -> Splits:
    index = dataset.class_index()
    notes: list[str] = []
    paths: list[Path] = []
    rel: list[str] = []
    labels: list[int] = []

    def add(samples) -> list[int]:
        out = []
        for s in samples:
            if s.label not in index:
                continue
            out.append(len(paths))
            paths.append(dataset.path_of(s))
            rel.append(s.path)
            labels.append(index[s.label])
        return out

    rng = np.random.default_rng(cfg.seed)
    train = add(dataset.split("train"))
    if len(train) < 2:
        raise VitrineError(
            f"dataset {dataset.name!r} has {len(train)} train sample(s): fine-tuning needs at least 2",
            hint="assign train/val/test splits to the dataset first",
        )
    val = add(dataset.split("val"))
    if not val:
        n_val = max(1, round(cfg.val_fraction * len(train)))
        pos = _stratified_pick(np.asarray([labels[i] for i in train]), n_val, rng, keep_one=True)
        if len(pos) == 0:
            pos = np.asarray([len(train) - 1])
        held = set(pos.tolist())
        val = [train[p] for p in sorted(held)]
        train = [t for p, t in enumerate(train) if p not in held]
        notes.append(f"no val split: {len(val)} train samples held out for validation (stratified)")
    if cfg.max_train_samples and len(train) > cfg.max_train_samples:
        pos = _stratified_pick(np.asarray([labels[i] for i in train]), cfg.max_train_samples, rng, keep_one=False)
        notes.append(f"trained on a stratified subset of {len(pos)} of {len(train)} train samples")
        train = [train[p] for p in pos.tolist()]
    test = add(dataset.split("test"))
    if test:
        eval_idx, eval_split = test, "test"
    else:
        eval_idx, eval_split = val, "val"
        notes.append("no test split: the final evaluation is on the validation split")
    return Splits(paths, rel, labels, train, val, eval_idx, eval_split, notes)


# ------------------------------------------------------------------------------------------------
# the trainer

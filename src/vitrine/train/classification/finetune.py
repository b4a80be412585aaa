"""Fine-tuning an image classifier end to end with PyTorch.

:func:`train_finetune` trains a backbone from :mod:`vitrine.train.backbones` (EfficientNet-Lite0
with its packaged ImageNet weights by default) on a dataset's train split, validates every epoch,
and evaluates the best checkpoint on the test split (val when there is none). A run folder gets:

    run.json                  state, progress (epoch, step, ETA), metrics, per-epoch history
    checkpoints/last.pt       every epoch, on cancel and on the time budget: resumable
    checkpoints/best.pt       the weights with the lowest validation loss (what predictions use)
    tb/                       TensorBoard scalars: train/loss, train/acc, lr per step;
                              val/loss, val/acc, train/epoch_loss, train/epoch_acc, epoch per epoch
    metrics.json, per_class.csv/.json, confusion.csv/.svg     the evaluation

Checkpoints are written atomically (temporary file, fsync, rename), so a crash or a cancel
never leaves a half-written ``last.pt``: the previous one stays loadable. ``resume=True``
continues from ``last.pt``: epoch and step counters, optimizer, schedule, RNG states, the
early-stopping count and the TensorBoard curves go on where they stopped (mid-epoch included).

The schedule is computed from the training progress (the fraction of steps done, or of the
time budget used when ``max_minutes`` is set and that is further along), so a run stopped by its
time budget has annealed its learning rate like one that ran all its epochs.

Small datasets are decoded once into memory (``cache_mb``; images larger than needed are
downscaled first), so the network, not image decoding, sets the pace. Images that cannot be read
are skipped with a warning and listed in ``run.json`` (``metrics.skipped``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitrine.errors import Cancelled, ImageError, VitrineError
from vitrine.predict.classifier import FinetuneClassifier
from vitrine.runs import Run
from vitrine.runs.checkpoint import load_checkpoint

KIND = "finetune"
SCHEDULES = ("cosine", "onecycle", "step", "constant")
AUGMENTS = ("none", "light", "strong")
AMP_MODES = ("auto", "on", "off")
CHECKPOINT_FORMAT = 1
MIN_LR_RATIO = 0.01  # cosine and one-cycle schedules end at 1 % of the peak learning rate
VAL_RESERVE_MARGIN = 1.5  # the time budget keeps 1.5x the last validation's time for the final one
RESUME_OVERRIDES = (
    "epochs",
    "max_minutes",
    "early_stopping_patience",
    "num_workers",
    "threads",
    "cache_images",
    "cache_mb",
    "eval_batch_size",
    "log_every",
    "device",
)

log = logging.getLogger("vitrine.train.finetune")


# ------------------------------------------------------------------------------------------------
# configuration


@dataclass
class FinetuneConfig:
    """Everything that decides how a fine-tuning run trains (saved in run.json and checkpoints)."""

    backbone: str = "efficientnet-lite0"
    pretrained: bool = True  # False: random initialisation (no weights needed)
    weights: str | None = None  # a local weights file for the backbone (hub backbones)
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | onecycle | step | constant
    warmup_epochs: float = 0.0
    freeze_backbone: bool = False  # True: train the new head only (backbone frozen, BN stats too)
    freeze_stages: int = 0  # freeze the stem and the first N stages (input side): faster steps
    augment: str = "light"  # none | light | strong
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = 3  # epochs without a lower val loss; None or 0: off
    class_weights: bool = False  # True ("balanced"): weight the loss by n / (C * count) from train
    amp: str = "auto"  # auto: mixed precision on GPU only; on; off
    num_workers: int = 0  # DataLoader workers; 0 is fastest for small in-memory images
    threads: int | None = None  # torch CPU threads (None: torch's default, less the workers)
    seed: int = 0
    max_train_samples: int | None = None  # a stratified subset of the train split
    max_minutes: float | None = None  # training time budget: stops cleanly, still evaluates
    channels_last: bool = True  # NHWC tensors: 1.5-2x faster training on CPU (oneDNN), and on GPU
    cache_images: bool = True  # decode images once into memory, up to cache_mb
    cache_mb: int = 2048
    val_fraction: float = 0.1  # held out of train (stratified) when the dataset has no val split
    eval_batch_size: int | None = None  # default: 2 x batch_size
    log_every: int = 1  # TensorBoard step scalars every N steps
    device: str | None = None  # default: cuda when available, else cpu

    def __post_init__(self):
        def bad(name, why):
            raise VitrineError(f"fine-tuning option {name}={getattr(self, name)!r}: {why}")

        if isinstance(self.class_weights, str):
            if self.class_weights.lower() not in ("balanced", "none", "true", "false"):
                bad("class_weights", "use balanced or none")
            self.class_weights = self.class_weights.lower() in ("balanced", "true")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTS:
            bad("augment", f"one of {', '.join(AUGMENTS)}")
        if self.amp not in AMP_MODES:
            bad("amp", f"one of {', '.join(AMP_MODES)}")
        if not 16 <= int(self.image_size) <= 2048:
            bad("image_size", "between 16 and 2048 pixels")
        if int(self.epochs) < 1:
            bad("epochs", "at least 1")
        if int(self.batch_size) < 2:
            bad("batch_size", "at least 2 (batch normalisation needs two images per batch)")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            bad("lr", "a finite number >= 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", ">= 0")
        if not 0 <= self.warmup_epochs <= self.epochs:
            bad("warmup_epochs", "between 0 and epochs")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "in [0, 1)")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 0:
            bad("early_stopping_patience", ">= 0 (0 or None: off)")
        if self.freeze_stages < 0:
            bad("freeze_stages", ">= 0")
        if self.num_workers < 0:
            bad("num_workers", ">= 0")
        if self.threads is not None and self.threads < 1:
            bad("threads", ">= 1")
        if self.max_train_samples is not None and self.max_train_samples < 2:
            bad("max_train_samples", "at least 2")
        if self.max_minutes is not None and not self.max_minutes > 0:
            bad("max_minutes", "> 0")
        if self.cache_mb < 0:
            bad("cache_mb", ">= 0")
        if not 0 < self.val_fraction < 1:
            bad("val_fraction", "in (0, 1)")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            bad("eval_batch_size", ">= 1")
        if self.log_every < 1:
            bad("log_every", ">= 1")
        self.image_size, self.epochs, self.batch_size = int(self.image_size), int(self.epochs), int(self.batch_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VitrineError(
                f"fine-tuning has no option {', '.join(unknown)}", hint=f"its options: {', '.join(sorted(known))}"
            )
        return cls(**data)


def balanced_class_weights(labels, num_classes: int) -> np.ndarray:
    """scikit-learn's "balanced" weights, n / (C_present * count_c); 0 for classes with no sample."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    present = int((counts > 0).sum())
    out = np.zeros(num_classes, dtype=np.float64)
    if present:
        out[counts > 0] = counts.sum() / (present * counts[counts > 0])
    return out


def lr_factor(schedule: str, progress: float, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate at ``progress`` (0..1 of the run); ``warmup`` is the
    fraction of the run spent warming up linearly (one-cycle: 0.3 when not given)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "onecycle" and warmup <= 0:
        warmup = 0.3
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    p = (progress - warmup) / (1 - warmup) if warmup < 1 else 1.0
    if schedule in ("cosine", "onecycle"):
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * p))
    if schedule == "step":
        return 0.1 ** min(int(p * 3), 2)
    return 1.0


def resumed_config(run: Run, config, config_cls, allowed: tuple[str, ...]):
    """The configuration a resumed run continues with, and its ``last.pt`` state: the saved
    configuration, with only the ``allowed`` fields (epochs, time budget, threads, ...) taken from
    ``config`` (a config object: those fields; a dict: an error for any other key). Refuses a run
    with no checkpoint or one that already ran all its epochs."""
    last = run.checkpoints_dir / "last.pt"
    if not last.is_file():
        raise VitrineError(
            f"run {run.id!r} has no checkpoint to resume from (it stopped before its first save)",
            hint="start it again as a new run",
        )
    state = load_checkpoint(last)
    saved = dict(state.get("config") or run.record.get("config") or {})
    if isinstance(config, config_cls):
        overrides = {k: getattr(config, k) for k in allowed}
    else:
        overrides = dict(config or {})
        refused = sorted(set(overrides) - set(allowed))
        if refused:
            raise VitrineError(
                f"cannot change {', '.join(refused)} when resuming",
                hint=f"a resumed run can change: {', '.join(allowed)}",
            )
    cfg = config_cls.from_dict({**saved, **overrides})
    if run.record.get("state") == "done" and int(state["epoch"]) >= cfg.epochs:
        raise VitrineError(
            f"run {run.id!r} is finished ({state['epoch']} of {cfg.epochs} epochs)",
            hint="give more epochs (--epochs) to train it further",
        )
    return cfg, state


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    with contextlib.suppress(Exception):
        random.setstate(_to_tuple(state["python"]))
    with contextlib.suppress(Exception):
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    with contextlib.suppress(Exception):
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_tuple(x):
    return tuple(_to_tuple(i) for i in x) if isinstance(x, list | tuple) else x


# ------------------------------------------------------------------------------------------------
# data


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


class _SplitDataset(torch.utils.data.Dataset):
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


def _collate(batch):
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
class _Splits:
    paths: list[Path]  # every image used (train, then val, then eval)
    rel: list[str]
    labels: list[int]
    train: list[int]  # indexes into paths
    val: list[int]
    eval: list[int]
    eval_split: str
    notes: list[str]


def _prepare_splits(dataset, cfg: FinetuneConfig) -> _Splits:
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
    return _Splits(paths, rel, labels, train, val, eval_idx, eval_split, notes)


# ------------------------------------------------------------------------------------------------
# the trainer


def _resolve(workspace, dataset):
    from vitrine.data.dataset import ClassificationDataset
    from vitrine.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if not isinstance(dataset, ClassificationDataset):
        dataset = ClassificationDataset.load(ws.dataset_dir(str(dataset)))
    return ws, dataset


def _device(cfg: FinetuneConfig) -> torch.device:
    if cfg.device:
        try:
            dev = torch.device(cfg.device)
        except RuntimeError as e:
            raise VitrineError(f"unknown device {cfg.device!r}: {e}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise VitrineError("device cuda asked for, but no CUDA GPU is available", hint="drop --device")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Trainer:
    def __init__(self, run: Run, dataset, cfg: FinetuneConfig, progress, cancel):
        self.run, self.dataset, self.cfg = run, dataset, cfg
        self._progress = progress
        self.cancel = cancel or threading.Event()
        self.classes = list(dataset.classes)
        self.writer = None
        self.skipped: dict[int, str] = {}
        self._last_record = 0.0
        self.session_start = time.perf_counter()
        self.session_step0 = 0
        self.session_train_seconds = 0.0
        self.session_images = 0
        self.seconds_before = 0.0
        self.train_finished_seconds: float | None = None  # set when train() returns

    # -- helpers ------------------------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        if self._progress is not None:
            self._progress(stage, done, total, info or {})

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"fine-tuning cancelled; resume with run id {self.run.id}")

    def _note_skipped(self, bad) -> None:
        for i, why in bad:
            if i not in self.skipped:
                self.skipped[i] = why or "unreadable"
                log.warning("skipping unreadable image %s: %s", self.splits.rel[i], self.skipped[i])

    def _loader(self, indexes: list[int], transform, batches: list[list[int]] | None, batch_size: int):
        ds = _SplitDataset(self.store, indexes, [self.splits.labels[i] for i in indexes], transform)
        kw = {"num_workers": self.cfg.num_workers, "collate_fn": _collate, "pin_memory": self.device.type == "cuda"}
        if batches is not None:
            return torch.utils.data.DataLoader(ds, batch_sampler=batches, **kw)
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, **kw)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """The (deterministic) batches of an epoch: positions into the train index list."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.splits.train), generator=g).tolist()
        bs = self.cfg.batch_size
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # batch normalisation cannot train on one image
        return batches

    def _autocast(self):
        if not self.amp_dtype:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, x, y):
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def _progress_fraction(self) -> float:
        frac = self.step / max(1, self.total_steps)
        if self.cfg.max_minutes:
            frac = max(frac, self._train_seconds() / (60 * self.cfg.max_minutes))
        return frac

    def _train_seconds(self) -> float:
        """Training time so far (validation passes included, the final evaluation not)."""
        if self.train_finished_seconds is not None:
            return self.train_finished_seconds
        return self.seconds_before + (time.perf_counter() - self.session_start)

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, resume_state: dict | None, prebuilt=None) -> None:
        from vitrine.train import backbones
        from vitrine.train.augment import eval_transform, train_transform

        cfg = self.cfg
        if resume_state is None and prebuilt is None:
            _seed_everything(cfg.seed)
        self.device = _device(cfg)
        self._threads_before = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif self.device.type == "cpu" and cfg.num_workers:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) - cfg.num_workers))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        self.splits = _prepare_splits(self.dataset, cfg)
        n_classes = len(self.classes)
        if prebuilt is None:
            prebuilt = backbones.build_classifier(
                cfg.backbone, n_classes, pretrained=cfg.pretrained and resume_state is None, weights=cfg.weights
            )
        model, self.data_config = prebuilt
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model.to(self.device)
        self.head = backbones.classifier_head(self.model)
        self.frozen_modules = []
        if cfg.freeze_backbone:
            for p in self.model.parameters():
                p.requires_grad_(False)
            for p in self.head.parameters():
                p.requires_grad_(True)
        elif cfg.freeze_stages:
            stages = backbones.stem_and_stages(self.model)
            if cfg.freeze_stages > len(stages) - 1:
                raise VitrineError(
                    f"freeze_stages={cfg.freeze_stages}: {cfg.backbone} has a stem and {len(stages) - 1} stages",
                    hint=f"freeze at most {len(stages) - 1} stages, or use freeze_backbone",
                )
            self.frozen_modules = stages[: cfg.freeze_stages + 1]  # the stem, then N stages
            for module in self.frozen_modules:
                for p in module.parameters():
                    p.requires_grad_(False)
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
        )
        self.amp_dtype = None
        if cfg.amp == "on" or (cfg.amp == "auto" and self.device.type == "cuda"):
            if self.device.type == "cuda":
                self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                self.amp_dtype = torch.bfloat16
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.amp_dtype == torch.float16
        )
        train_labels = [self.splits.labels[i] for i in self.splits.train]
        self.class_weights = balanced_class_weights(train_labels, n_classes) if cfg.class_weights else None
        weight = (
            torch.tensor(self.class_weights, dtype=torch.float32, device=self.device) if cfg.class_weights else None
        )
        self.criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
        self.train_tf = train_transform(cfg.image_size, self.data_config, cfg.augment)
        self.eval_tf = eval_transform(cfg.image_size, self.data_config)

        budget = int(cfg.cache_mb) * 2**20 if cfg.cache_images else 0
        self.store = ImageStore(self.splits.paths, max_side=math.ceil(cfg.image_size * 1.5), budget_bytes=budget)

        self.steps_per_epoch = len(self._epoch_batches(0))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup = min(cfg.warmup_epochs / cfg.epochs, 0.99)
        self.epoch = 0  # completed epochs
        self.step = 0
        self.step_in_epoch = 0  # batches done in the current (incomplete) epoch
        self.best_val_loss = math.inf
        self.best_epoch = None
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.seconds_before = 0.0
        self.images_trained = 0
        self.last_val_seconds = None
        if resume_state is not None:
            self._restore(resume_state)

    def _restore(self, state: dict) -> None:
        if state.get("classes") != self.classes:
            raise VitrineError(
                f"run {self.run.id!r}: the dataset's classes changed since the checkpoint was written",
                hint="start a new run",
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        best = state.get("best_val_loss")
        self.best_val_loss = math.inf if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self.bad_epochs = int(state.get("bad_epochs", 0))
        self.history = list(state.get("history") or [])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.images_trained = int(state.get("images_trained", 0))
        if self.step_in_epoch >= self.steps_per_epoch:  # defensive: treat as a completed epoch
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        _set_rng_state(state.get("rng") or {})

    # -- checkpoints ----------------------------------------------------------------------------
    def _common_state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": KIND,
            "config": self.cfg.to_dict(),
            "classes": self.classes,
            "backbone": self.cfg.backbone,
            "image_size": self.cfg.image_size,
            "data_config": self.data_config,
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "torch": str(torch.__version__),
        }

    def save_last(self) -> None:
        state = {
            **self._common_state(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": self.cfg.schedule, "step": self.step, "progress": self._progress_fraction()},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "train_seconds": self._train_seconds(),
            "images_trained": self.images_trained,
            "rng": _rng_state(),
        }
        self.run.save_checkpoint("last.pt", state)

    def save_best(self, val: dict) -> None:
        state = {**self._common_state(), "model": self.model.state_dict(), "val": val}
        self.run.save_checkpoint("best.pt", state)

    # -- records --------------------------------------------------------------------------------
    def _eta(self) -> float | None:
        done = self.step - self.session_step0
        if done <= 0:
            return None
        per_step = self.session_train_seconds / done
        remaining_steps = self.total_steps - self.step
        remaining_epochs = self.cfg.epochs - self.epoch
        eta = remaining_steps * per_step + remaining_epochs * self._expected_val_seconds()
        if self.cfg.max_minutes:
            eta = min(eta, max(0.0, 60 * self.cfg.max_minutes - self._train_seconds()))
        return eta

    def _run_progress(self, stage: str) -> dict:
        eta = self._eta()
        return {
            "stage": stage,
            "epoch": self.epoch + (1 if self.step_in_epoch else 0),
            "epochs": self.cfg.epochs,
            "step": self.step,
            "steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def _metrics(self) -> dict:
        metrics = dict(self.run.record.get("metrics") or {})
        metrics.update(
            epochs_completed=self.epoch,
            steps=self.step,
            best_epoch=self.best_epoch,
            best_val_loss=None if math.isinf(self.best_val_loss) else self.best_val_loss,
            train_seconds=round(self._train_seconds(), 2),
            train_images_per_second=(
                round(self.session_images / self.session_train_seconds, 2) if self.session_train_seconds > 0 else None
            ),
            history=self.history,
            skipped=[{"path": self.splits.rel[i], "reason": why} for i, why in sorted(self.skipped.items())],
        )
        if self.history:
            last = self.history[-1]
            metrics["val"] = {"loss": last["val_loss"], "accuracy": last["val_accuracy"]}
        return metrics

    def record(self, stage: str, force: bool = False, **fields) -> None:
        now = time.monotonic()
        if not force and now - self._last_record < 2.0:
            return
        self._last_record = now
        self.run.update(progress=self._run_progress(stage), metrics=self._metrics(), **fields)

    # -- training -------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = self.cfg.lr * lr_factor(self.cfg.schedule, self._progress_fraction(), self.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _train_mode(self) -> None:
        if self.cfg.freeze_backbone:
            self.model.eval()  # frozen batch-norm statistics too
            self.head.train()
        else:
            self.model.train()
            for module in self.frozen_modules:
                module.eval()

    def _out_of_time(self) -> bool:
        if not self.cfg.max_minutes:
            return False
        # room for the last validation, with a margin: on a shared machine one pass can take
        # longer than the one before
        return self._train_seconds() + VAL_RESERVE_MARGIN * self._expected_val_seconds() >= 60 * self.cfg.max_minutes

    def _expected_val_seconds(self) -> float:
        """How long a validation pass takes: the last one measured, or before the first, an estimate
        from the training speed (a forward pass costs about a third of a training step), so that the
        time budget keeps room for it and the first cut does not overrun."""
        if self.last_val_seconds is not None:
            return self.last_val_seconds
        per_image = self.session_train_seconds / self.session_images if self.session_images else 0.0
        return len(self.splits.val) * per_image / 3

    def _predict(self, indexes: list[int], stage: str):
        """(probs n x C float64, labels, mean loss) over ``indexes`` (unreadable images skipped)."""
        bs = self.cfg.eval_batch_size or 2 * self.cfg.batch_size
        loader = self._loader(indexes, self.eval_tf, None, bs)
        self.model.eval()
        probs, labels, loss_sum, n, done = [], [], 0.0, 0, 0
        with torch.inference_mode():
            for x, y, bad in loader:
                self._note_skipped(bad)
                done += len(bad) + (0 if y is None else len(y))
                if x is not None:
                    x, y = self._to_device(x, y)
                    with self._autocast():
                        logits = self.model(x)
                    logits = logits.float()
                    loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
                    n += len(y)
                    probs.append(logits.softmax(dim=1).double().cpu().numpy())
                    labels.append(y.cpu().numpy())
                self.progress(stage, done, len(indexes), {"epoch": self.epoch, "epochs": self.cfg.epochs})
        if not n:
            return np.zeros((0, len(self.classes))), np.zeros(0, dtype=np.int64), math.nan
        return np.concatenate(probs), np.concatenate(labels), loss_sum / n

    def validate(self) -> dict:
        started = time.perf_counter()
        probs, labels, loss = self._predict(self.splits.val, "validate")
        self.last_val_seconds = time.perf_counter() - started
        acc = float((probs.argmax(1) == labels).mean()) if len(labels) else math.nan
        return {"val_loss": float(loss), "val_accuracy": acc, "val_n": int(len(labels))}

    def _log_scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def train(self) -> str:
        """Train until the last epoch, early stopping or the time budget; returns why it stopped."""
        cfg = self.cfg
        self.session_start = time.perf_counter()
        self.session_step0 = self.step
        self.session_train_seconds = 0.0
        self.session_images = 0
        stop = "completed"
        epoch_loss_sum, epoch_correct, epoch_n = 0.0, 0, 0
        while self.epoch < cfg.epochs:
            self._check_cancel()
            if self._out_of_time():
                stop = "time budget"
                break
            batches = self._epoch_batches(self.epoch)[self.step_in_epoch :]
            loader = self._loader(self.splits.train, self.train_tf, batches, cfg.batch_size)
            self._train_mode()
            out_of_time = False
            step_started = time.perf_counter()
            for x, y, bad in loader:
                self._note_skipped(bad)
                if x is None or len(y) < 2:
                    self.step_in_epoch += 1
                    self.step += 1
                    continue
                lr = self._set_lr()
                x, y = self._to_device(x, y)
                with self._autocast():
                    logits = self.model(x)
                    loss = self.criterion(logits.float(), y)
                if not torch.isfinite(loss):
                    raise VitrineError(
                        f"the training loss became {float(loss)} at step {self.step + 1}",
                        hint="lower the learning rate (--lr), or turn mixed precision off",
                    )
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.step += 1
                self.step_in_epoch += 1
                n = len(y)
                loss_value = float(loss.detach())
                correct = int((logits.detach().argmax(1) == y).sum())
                epoch_loss_sum += loss_value * n
                epoch_correct += correct
                epoch_n += n
                self.images_trained += n
                self.session_images += n
                now = time.perf_counter()
                self.session_train_seconds += now - step_started
                step_started = now
                if self.step % cfg.log_every == 0:
                    self._log_scalar("train/loss", loss_value, self.step)
                    self._log_scalar("train/acc", correct / n, self.step)
                    self._log_scalar("lr", lr, self.step)
                info = self._run_progress("train")
                info.update(
                    step_in_epoch=self.step_in_epoch,
                    loss=loss_value,
                    accuracy=correct / n,
                    epoch_loss=epoch_loss_sum / epoch_n,
                    epoch_accuracy=epoch_correct / epoch_n,
                    lr=lr,
                    images_per_second=self.session_images / max(self.session_train_seconds, 1e-9),
                )
                self.progress("train", self.step, self.total_steps, info)
                self.record("train")
                if self.cancel.is_set():
                    self.save_last()
                    self._check_cancel()
                if self._out_of_time():
                    out_of_time = True
                    break
            if out_of_time and self.step_in_epoch >= self.steps_per_epoch:
                out_of_time = False  # the budget ran out on the epoch's last step: a full epoch
            partial = out_of_time
            val = self.validate()
            if not partial:
                self.epoch += 1
                self.step_in_epoch = 0
            entry = {
                "epoch": self.epoch if not partial else self.epoch + 1,
                "partial": partial,
                "step": self.step,
                "train_loss": epoch_loss_sum / epoch_n if epoch_n else None,
                "train_accuracy": epoch_correct / epoch_n if epoch_n else None,
                **val,
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self._train_seconds(), 2),
            }
            self.history.append(entry)
            epoch_loss_sum, epoch_correct, epoch_n = 0.0, 0, 0
            self._log_scalar("val/loss", val["val_loss"], self.step)
            self._log_scalar("val/acc", val["val_accuracy"], self.step)
            self._log_scalar("train/epoch_loss", entry["train_loss"], self.step)
            self._log_scalar("train/epoch_acc", entry["train_accuracy"], self.step)
            self._log_scalar("epoch", entry["epoch"], self.step)
            improved = math.isfinite(val["val_loss"]) and val["val_loss"] < self.best_val_loss - 1e-6
            if improved:
                self.best_val_loss, self.best_epoch, self.bad_epochs = val["val_loss"], entry["epoch"], 0
                self.save_best(val)
            elif not partial:
                self.bad_epochs += 1
            self.save_last()
            if self.writer is not None:
                self.writer.flush()
            self.record("train", force=True)
            info = {**self._run_progress("epoch"), **entry, "improved": improved, "best_val_loss": self.best_val_loss}
            self.progress("epoch", entry["epoch"], cfg.epochs, info)
            self._check_cancel()
            if partial:
                stop = "time budget"
                break
            patience = cfg.early_stopping_patience
            if patience and self.bad_epochs >= patience and self.epoch < cfg.epochs:
                stop = "early stopping"
                break
        return stop

    # -- final evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict:
        from PIL import Image

        from vitrine.evaluate.classification import classification_report, measure_speed, summary, write_report

        best = self.run.checkpoints_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        split = self.splits.eval_split
        probs, labels, loss = self._predict(self.splits.eval, "evaluate")
        report = {"split": split, **classification_report(labels, probs, self.classes)}
        report["loss"] = None if math.isnan(loss) else loss
        report["checkpoint"] = "best.pt" if best.exists() else "last"
        speed_images = []
        for i in self.splits.eval[:64]:
            tensor, _ = self.store.get(i)
            if tensor is not None:
                speed_images.append(Image.fromarray(tensor.permute(1, 2, 0).numpy()))
        if speed_images:
            try:
                clf = FinetuneClassifier(self.run.dir, device=str(self.device))
                report["speed"] = measure_speed(clf, speed_images, batch_size=min(32, len(speed_images)))
            except VitrineError as e:  # pragma: no cover - best.pt was just written
                log.warning("could not measure inference speed: %s", e)
        write_report(self.run.dir, report)
        self._eval_summary = summary(report)
        return report

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        with contextlib.suppress(Exception):
            torch.set_num_threads(self._threads_before)


def train_finetune(
    workspace,
    dataset,
    config: FinetuneConfig | dict | None = None,
    *,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
    resume: bool = False,
) -> Run:
    """Fine-tune ``config.backbone`` on ``dataset`` (a ClassificationDataset or its name in the
    workspace); return the finished run.

    ``progress(stage, done, total, info)`` is called with the stages ``load`` (decoding images
    into memory), ``train`` (every step; ``info`` has epoch, epochs, step, steps, loss, accuracy,
    lr, eta_seconds, images_per_second), ``validate``, ``epoch`` (epoch end, with val_loss and
    val_accuracy), ``evaluate`` and ``done``. Setting ``cancel`` stops at the next step: last.pt
    is saved, the run's state becomes ``cancelled`` and :class:`~vitrine.errors.Cancelled` is
    raised. ``resume=True`` continues run ``run_id`` from its last.pt; ``config`` may then only
    change the options in ``RESUME_OVERRIDES`` (a dict, or a FinetuneConfig whose values for those
    options are taken).
    """
    from vitrine.train import backbones

    ws, ds = _resolve(workspace, dataset)
    resume_state = None
    prebuilt = None
    if resume:
        if not run_id:
            raise VitrineError("resuming needs the run id")
        run = Run.load(ws, run_id)
        if run.kind != KIND:
            raise VitrineError(f"run {run_id!r} is a {run.kind} run, not a fine-tuning run")
        cfg, resume_state = resumed_config(run, config, FinetuneConfig, RESUME_OVERRIDES)
        if ds.name != run.record.get("dataset"):
            raise VitrineError(f"run {run_id!r} was trained on dataset {run.record.get('dataset')!r}, not {ds.name!r}")
        run.update(config=cfg.to_dict())
    else:
        if config is None:
            cfg = FinetuneConfig()
        elif isinstance(config, dict):
            cfg = FinetuneConfig.from_dict(config)
        else:
            cfg = config
        if len(ds.classes) < 2:
            raise VitrineError(f"dataset {ds.name!r} has {len(ds.classes)} class(es): a classifier needs 2 or more")
        if run_id and (ws.run_dir(run_id) / "run.json").exists():
            raise VitrineError(f"run {run_id!r} already exists", hint="pick another name, or resume it")
        # built before the run folder exists: unknown backbones and missing weights leave no run behind;
        # seeded first, so that the new head (and a random initialisation) are reproducible
        _seed_everything(cfg.seed)
        prebuilt = backbones.build_classifier(
            cfg.backbone, len(ds.classes), pretrained=cfg.pretrained, weights=cfg.weights
        )
        run = Run.create(ws, KIND, ds.name, cfg.backbone, cfg.to_dict(), run_id=run_id)

    trainer = _Trainer(run, ds, cfg, progress, cancel)
    started = time.time()
    try:
        run.update(state="running", classes=list(ds.classes), started_at=started, error=None)
        trainer.setup(resume_state, prebuilt)
        prebuilt = None
        from torch.utils.tensorboard import SummaryWriter

        run.tensorboard_dir.mkdir(parents=True, exist_ok=True)
        trainer.writer = SummaryWriter(str(run.tensorboard_dir), purge_step=trainer.step + 1 if resume_state else None)
        run.update(
            data={
                "n_train": len(trainer.splits.train),
                "n_val": len(trainer.splits.val),
                "n_eval": len(trainer.splits.eval),
                "eval_split": trainer.splits.eval_split,
                "notes": trainer.splits.notes,
                "class_weights": None if trainer.class_weights is None else trainer.class_weights.tolist(),
                "device": str(trainer.device),
                "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else None,
                "threads": torch.get_num_threads(),
            }
        )
        if cfg.cache_images:
            trainer.store.preload(
                trainer.splits.train + trainer.splits.val + trainer.splits.eval, trainer.progress, trainer.cancel
            )
            trainer._note_skipped(list(trainer.store.failed.items()))
            good = [i for i in trainer.splits.train if i not in trainer.store.failed]
            if len(good) < 2:
                raise VitrineError(f"dataset {ds.name!r}: fewer than 2 readable train images")
        stop = trainer.train()
        trainer.train_finished_seconds = trainer._train_seconds()  # the test evaluation is not training
        trainer.record("evaluate", force=True, stopped=stop)
        report = trainer.evaluate()
        metrics = trainer._metrics()
        metrics[report["split"]] = trainer._eval_summary
        if "speed" in report:
            metrics["speed"] = report["speed"]
        metrics["stopped"] = stop
        run.update(
            state="done",
            progress={**trainer._run_progress("done"), "eta_seconds": 0},
            metrics=metrics,
            finished_at=time.time(),
        )
        trainer.progress(
            "done", trainer.step, trainer.total_steps, {"accuracy": report.get("accuracy"), "stopped": stop}
        )
        return run
    except (Cancelled, KeyboardInterrupt):
        if hasattr(trainer, "optimizer") and trainer.step > 0:
            with contextlib.suppress(Exception):
                trainer.save_last()
        with contextlib.suppress(Exception):
            run.update(
                state="cancelled",
                progress=trainer._run_progress("cancelled") if hasattr(trainer, "history") else {"stage": "cancelled"},
                metrics=trainer._metrics() if hasattr(trainer, "history") else run.record.get("metrics", {}),
                finished_at=time.time(),
            )
        raise
    except BaseException as e:
        with contextlib.suppress(Exception):
            run.update(state="failed", error=f"{type(e).__name__}: {e}", finished_at=time.time())
        raise
    finally:
        trainer.close()

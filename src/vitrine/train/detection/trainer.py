"""Fine-tuning Faster R-CNN and Mask R-CNN on a detection / instance-segmentation dataset.

:func:`train_detector` trains a network from :mod:`vitrine.train.detection_models`
(EfficientNet-Lite0 + FPN with its packaged ImageNet weights by default: works offline) on a
:class:`~vitrine.data.detection.model.DetectionDataset`'s train split, validates with COCO mAP
(``vitrine.evaluate.detection.evaluate_detection``, pycocotools) every epoch, and evaluates the
best checkpoint on the test split (val when there is none). The run lives in the workspace's
``runs/`` folder beside the classification runs (kind ``segmentation`` for Mask R-CNN,
``detection`` for Faster R-CNN), so ``vitrine runs`` lists it:

    run.json                  config, classes, state, progress (epoch, step, ETA), metrics, history
    checkpoints/last.pt       every epoch, on cancel and on the time budget: resumable
    checkpoints/best.pt       the weights with the best validation mAP@.5 (masks for Mask R-CNN)
    tb/                       TensorBoard: train/loss and each loss component, lr per step;
                              val/bbox_map50, val/segm_map50 (and @.5:.95) per validation
    detection_metrics.json, per_class_<bbox|segm>.csv   the final evaluation (vitrine.evaluate.detection)

Checkpoints are atomic (:func:`vitrine.runs.checkpoint.save_checkpoint`). ``resume=True``
continues from ``last.pt`` with the same batches, augmentations and optimizer state as an
uninterrupted run (mid-epoch included). A time budget (``max_minutes``) stops training early
enough for the validation that follows to fit in it, and the run is still evaluated; a
``cancel`` event stops at the next step, keeping ``last.pt``.

:func:`load_run_detector` turns a finished run into a :class:`~vitrine.detect.base.Detector`
(what ``vitrine.detect.load_detector(run_id)`` returns).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from vitrine.errors import Cancelled, ImageError, ModelError, VitrineError
from vitrine.runs import Run
from vitrine.runs.checkpoint import load_checkpoint
from vitrine.train.detection_models import (
    ARCHS,
    DETECTION_BACKBONES,
    DetectionModelOptions,
    build_detection_model,
    check_options,
    model_summary,
)
from vitrine.train.finetune import (
    _rng_state,
    _seed_everything,
    _set_rng_state,
    lr_factor,
    resumed_config,
)

KINDS = {"maskrcnn": "segmentation", "fasterrcnn": "detection"}
CHECKPOINT_FORMAT = 1
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")
AUGMENTS = ("none", "flip", "light")
MAX_CATEGORY_ID = 10_000
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
_MODEL_FIELDS = tuple(f.name for f in fields(DetectionModelOptions))

log = logging.getLogger("vitrine.train.detection")


# ------------------------------------------------------------------------------------------------
# configuration


@dataclass
class DetectionConfig:
    """Everything that decides how a detection run trains (saved in run.json and checkpoints)."""

    arch: str = "maskrcnn"  # maskrcnn (boxes + masks) | fasterrcnn (boxes)
    backbone: str = "efficientnet-lite0"  # | resnet50-fpn | resnet50-fpn-v2 (COCO weights from the hub)
    pretrained: bool = True  # ImageNet (efficientnet-lite0, packaged) or COCO (resnet50-fpn*); False: scratch
    weights: str | None = None  # local weights file instead of the package / hub
    image_size: int = 128  # the network's internal resize: shorter side (min_size)
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

    def model_options(self) -> DetectionModelOptions:
        values = {k: getattr(self, k) for k in _MODEL_FIELDS if k not in ("min_size",) and hasattr(self, k)}
        values["min_size"] = self.image_size
        values["anchor_sizes"] = tuple(self.anchor_sizes) if self.anchor_sizes else None
        values["aspect_ratios"] = tuple(self.aspect_ratios)
        return DetectionModelOptions(**values)

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


def _device(cfg: DetectionConfig) -> torch.device:
    if cfg.device:
        try:
            dev = torch.device(cfg.device)
        except RuntimeError as e:
            raise VitrineError(f"unknown device {cfg.device!r}: {e}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise VitrineError("device cuda asked for, but no CUDA GPU is available", hint="drop --device")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------
# data: images and targets


@dataclass
class _Prepared:
    """The dataset checked and split: image positions into ``dataset.images`` per split."""

    train: list[int]
    val: list[int]
    eval: list[int]
    eval_split: str
    notes: list[str]
    category_ids: list[int]
    names: dict[int, str]


def check_dataset(dataset, arch: str) -> None:
    """Raise a VitrineError naming what is wrong with ``dataset`` for training ``arch``."""
    from vitrine.data.detection.model import DetectionDataset

    if not isinstance(dataset, DetectionDataset):
        raise VitrineError(f"expected a detection dataset, got {type(dataset).__name__}")
    if not dataset.images:
        raise VitrineError("the detection dataset has no images", hint="check the annotation file's images list")
    if dataset.root is None:
        raise VitrineError("the detection dataset has no images folder (root)", hint="give the images folder")
    if not dataset.categories:
        raise VitrineError("the detection dataset has no categories", hint="its annotation file must list categories")
    cat_ids = {c.id for c in dataset.categories}
    bad_ids = [c.id for c in dataset.categories if not isinstance(c.id, int) or not 0 < c.id <= MAX_CATEGORY_ID]
    if bad_ids:
        raise VitrineError(f"category ids must be integers in 1..{MAX_CATEGORY_ID}, got {bad_ids[:5]}")
    image_ids = {im.id: im for im in dataset.images}
    for a in dataset.annotations:
        where = f"annotation id {a.id}"
        if a.image_id not in image_ids:
            raise VitrineError(f"{where} refers to image id {a.image_id}, which is not in the dataset's images")
        if a.category_id not in cat_ids:
            im = image_ids[a.image_id]
            raise VitrineError(
                f"{where} (image {im.file_name}) has category id {a.category_id}, which is not a category of the "
                f"dataset (known ids: {', '.join(str(i) for i in sorted(cat_ids))})",
                hint="fix the annotation or add the category to the dataset",
            )
    if arch == "maskrcnn" and not dataset.has_masks:
        raise VitrineError(
            "the dataset has boxes but no masks: Mask R-CNN needs instance masks (polygons or RLE)",
            hint="train a box detector instead (--arch fasterrcnn)",
        )


def _prepare(dataset, cfg: DetectionConfig) -> _Prepared:
    check_dataset(dataset, cfg.arch)
    notes: list[str] = []
    rng = np.random.default_rng(cfg.seed)
    by_split: dict[str | None, list[int]] = {}
    for pos, im in enumerate(dataset.images):
        by_split.setdefault(im.split, []).append(pos)
    if set(by_split) == {None}:
        train = by_split[None]
        notes.append("the dataset has no splits: every image is a train image (val held out below)")
    else:
        train = by_split.get("train", [])
    if not train:
        raise VitrineError(
            f"the detection dataset has no train images (splits: {', '.join(sorted(map(str, by_split)))})",
            hint="assign train/val/test splits to its images",
        )
    val = by_split.get("val", [])
    if not val:
        if len(train) < 2:
            raise VitrineError("the detection dataset has 1 train image and no val split: give it at least 2 images")
        n_val = max(1, round(cfg.val_fraction * len(train)))
        held = set(rng.permutation(len(train))[:n_val].tolist())
        val = [t for p, t in enumerate(train) if p in held]
        train = [t for p, t in enumerate(train) if p not in held]
        notes.append(f"no val split: {len(val)} train images held out for validation")
    test = by_split.get("test", [])
    if test:
        eval_idx, eval_split = test, "test"
    else:
        eval_idx, eval_split = val, "val"
        notes.append("no test split: the final evaluation is on the validation split")
    names = {c.id: c.name for c in sorted(dataset.categories, key=lambda c: c.id)}
    return _Prepared(train, val, eval_idx, eval_split, notes, sorted(names), names)


def _subset(dataset, positions: list[int]):
    """A DetectionDataset with the images at ``positions`` (and their annotations)."""
    from vitrine.data.detection.model import DetectionDataset

    images = [dataset.images[p] for p in positions]
    ids = {im.id for im in images}
    return DetectionDataset(
        images=images,
        categories=list(dataset.categories),
        annotations=[a for a in dataset.annotations if a.image_id in ids],
        root=dataset.root,
    )


class DetectionSamples:
    """Decoded images (uint8 CHW tensors) and their targets (xyxy boxes clipped to the image,
    labels 1..K: the categories in id order, uint8 masks), decoded once and kept in memory up to a budget."""

    def __init__(self, dataset, with_masks: bool, budget_bytes: int, label_of: dict[int, int] | None = None):
        self.dataset = dataset
        self.label_of = label_of or {c.id: k + 1 for k, c in enumerate(sorted(dataset.categories, key=lambda c: c.id))}
        self.root = Path(dataset.root)
        self.with_masks = with_masks
        self.anns = dataset.annotations_by_image()
        self.budget = budget_bytes
        self.used = 0
        self.cache: dict[int, tuple] = {}
        self.failed: dict[int, str] = {}
        self.dropped = 0  # degenerate boxes (no area inside the image) and crowd regions skipped

    def _decode(self, pos: int):
        from vitrine.collection.imageio import open_image
        from vitrine.data.detection.geometry import segmentation_to_mask

        rec = self.dataset.images[pos]
        path = self.root / rec.file_name
        try:
            im = open_image(path)
        except ImageError as e:
            return None, getattr(e, "reason", None) or e.message
        except VitrineError as e:
            return None, e.message
        except Exception as e:  # one bad file never stops a run
            return None, f"{type(e).__name__}: {e}"
        image = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        h, w = image.shape[1:]
        sx, sy = w / rec.width if rec.width else 1.0, h / rec.height if rec.height else 1.0
        boxes, labels, masks = [], [], []
        for a in self.anns.get(rec.id, []):
            if a.iscrowd:
                self.dropped += 1
                continue
            x, y, bw, bh = (float(v) for v in a.bbox)
            x1, y1 = min(max(x * sx, 0.0), w), min(max(y * sy, 0.0), h)
            x2, y2 = min(max((x + bw) * sx, 0.0), w), min(max((y + bh) * sy, 0.0), h)
            if not (x2 - x1 >= 1 and y2 - y1 >= 1):
                self.dropped += 1
                continue
            if self.with_masks:
                if a.segmentation is None:  # a box-only annotation in a mask dataset: the box is the mask
                    mask = np.zeros((h, w), np.uint8)
                    mask[int(y1) : math.ceil(y2), int(x1) : math.ceil(x2)] = 1
                else:
                    try:
                        mask = segmentation_to_mask(a.segmentation, rec.height or h, rec.width or w)
                    except Exception as e:
                        raise VitrineError(
                            f"annotation id {a.id} (image {rec.file_name}): its segmentation cannot be decoded: "
                            f"{type(e).__name__}: {e}"
                        ) from None
                    if mask.shape != (h, w):
                        mask = np.asarray(
                            torch.nn.functional.interpolate(
                                torch.from_numpy(mask)[None, None].float(), size=(h, w), mode="nearest"
                            )[0, 0]
                        ).astype(np.uint8)
                masks.append(mask)
            boxes.append((x1, y1, x2, y2))
            labels.append(self.label_of[int(a.category_id)])
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        if self.with_masks:
            target["masks"] = (
                torch.from_numpy(np.stack(masks)).to(torch.uint8)
                if masks
                else torch.zeros((0, h, w), dtype=torch.uint8)
            )
        return (image, target), None

    def get(self, pos: int):
        """``((image, target), None)`` or ``(None, why)`` when the image cannot be read."""
        hit = self.cache.get(pos)
        if hit is not None:
            return hit, None
        if pos in self.failed:
            return None, self.failed[pos]
        item, why = self._decode(pos)
        if item is None:
            self.failed[pos] = why
            log.warning("skipping unreadable image %s: %s", self.dataset.images[pos].file_name, why)
            return None, why
        size = item[0].numel() + (item[1]["masks"].numel() if "masks" in item[1] else 0)
        if self.used + size <= self.budget:
            self.cache[pos] = item
            self.used += size
        return item, None


def train_transform(augment: str):
    """Augmentations applied to an image and its boxes and masks together (torchvision v2)."""
    from torchvision.transforms import v2

    steps = []
    if augment in ("flip", "light"):
        steps.append(v2.RandomHorizontalFlip(0.5))
    if augment == "light":
        steps.append(v2.RandomAffine(degrees=0.0, translate=(0.1, 0.1), scale=(0.75, 1.25)))
    if not steps:
        return None
    steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=1.0)]
    return v2.Compose(steps)


def _augment(transform, image: torch.Tensor, target: dict):
    if transform is None:
        return image, target
    from torchvision import tv_tensors

    h, w = image.shape[1:]
    t = {"boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w))}
    t["labels"] = target["labels"]
    if "masks" in target:
        t["masks"] = tv_tensors.Mask(target["masks"])
    img, t = transform(tv_tensors.Image(image), t)
    out = {"boxes": t["boxes"].as_subclass(torch.Tensor).float(), "labels": t["labels"]}
    if "masks" in t:
        out["masks"] = t["masks"].as_subclass(torch.Tensor)
    return img.as_subclass(torch.Tensor), out


# ------------------------------------------------------------------------------------------------
# evaluation (through vitrine.evaluate.detection)


def _evaluate(gt, predictions: dict, cfg: DetectionConfig) -> dict:
    from vitrine.evaluate.detection import evaluate_detection

    return evaluate_detection(gt, predictions, score_threshold=cfg.score_threshold, iou_threshold=cfg.iou_threshold)


def summarize(report: dict) -> dict:
    """The headline numbers of an ``evaluate_detection`` report, flat: ``bbox_map50``, ``bbox_map``
    (@.5:.95), ``segm_map50``, ``segm_map``, and precision / recall / F1 / mean IoU per IoU type."""
    out = {}
    for iou_type in ("bbox", "segm"):
        section = report.get(iou_type)
        if not isinstance(section, dict):
            continue
        for key in ("map50", "map", "map75", "precision", "recall", "f1", "mean_iou"):
            v = section.get(key)
            if isinstance(v, int | float):
                out[f"{iou_type}_{key}"] = float(v)
    return out


# ------------------------------------------------------------------------------------------------
# the trainer


class CategoryMapped(torch.nn.Module):
    """A detection network trained on labels 1..K whose predictions carry the dataset's category
    ids (``category_ids[k - 1]`` for label k): what a run's detector returns."""

    def __init__(self, model: torch.nn.Module, category_ids: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("ids", torch.tensor([0, *category_ids], dtype=torch.int64), persistent=False)

    def forward(self, images, targets=None):
        out = self.model(images, targets)
        if self.training:
            return out
        for o in out:
            o["labels"] = self.ids.to(o["labels"].device)[o["labels"]]
        return out


class _Trainer:
    def __init__(self, run: Run, dataset, cfg: DetectionConfig, progress, cancel):
        self.run, self.dataset, self.cfg = run, dataset, cfg
        self._progress = progress
        self.cancel = cancel or threading.Event()
        self.writer = None
        self.session_start = time.perf_counter()
        self.session_steps = 0
        self.session_train_seconds = 0.0
        self.session_images = 0
        self.seconds_before = 0.0
        self._last_record = 0.0
        self.last_val_seconds: float | None = None
        self.nonfinite = 0
        self.trained_seconds: float | None = None  # training and its validations, final evaluation excluded

    # -- helpers ------------------------------------------------------------------------------
    def progress(self, stage: str, done: int, total: int, info: dict | None = None) -> None:
        if self._progress is not None:
            self._progress(stage, done, total, info or {})

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"detection training cancelled; resume with run id {self.run.id}")

    def _train_seconds(self) -> float:
        return self.seconds_before + (time.perf_counter() - self.session_start)

    def _fraction(self) -> float:
        frac = self.step / max(1, self.total_steps)
        if self.cfg.max_minutes:
            frac = max(frac, self._train_seconds() / (60 * self.cfg.max_minutes))
        return min(frac, 1.0)

    def _lr(self) -> float:
        cfg = self.cfg
        factor = lr_factor(cfg.schedule, self._fraction(), 0.0)
        if cfg.warmup_steps and self.step < cfg.warmup_steps:
            factor *= max(self.step / cfg.warmup_steps, 1e-3)
        return cfg.lr * factor

    def _val_reserve(self) -> float:
        """Seconds to keep for the validation that follows training (estimated before the first)."""
        if self.last_val_seconds is not None:
            return self.last_val_seconds
        if self.session_images:
            per_image = self.session_train_seconds / self.session_images
            return per_image * len(self.val_positions) * 0.5
        return 0.0

    def _out_of_time(self) -> bool:
        if not self.cfg.max_minutes:
            return False
        return self._train_seconds() + self._val_reserve() >= 60 * self.cfg.max_minutes

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.prep.train), generator=g).tolist()
        bs = self.cfg.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def _log_scalar(self, tag: str, value, step: int) -> None:
        if self.writer is not None and isinstance(value, int | float) and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def _run_progress(self, stage: str) -> dict:
        elapsed = self._train_seconds()
        per_step = self.session_train_seconds / self.session_steps if self.session_steps else None
        eta = None
        if per_step is not None:
            eta = per_step * max(0, self.total_steps - self.step)
            if self.cfg.max_minutes:
                eta = min(eta, max(0.0, 60 * self.cfg.max_minutes - elapsed))
        return {
            "stage": stage,
            "epoch": self.epoch + (1 if stage == "train" else 0),
            "epochs": self.cfg.epochs,
            "step": self.step,
            "steps": self.total_steps,
            "elapsed_seconds": round(elapsed, 1),
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def record(self, stage: str, force: bool = False, **extra) -> None:
        now = time.monotonic()
        if force or now - self._last_record > 5:
            self._last_record = now
            self.run.update(progress={**self._run_progress(stage), **extra})

    # -- setup ----------------------------------------------------------------------------------
    def setup(self, resume_state: dict | None, prebuilt=None) -> None:
        cfg = self.cfg
        if resume_state is None and prebuilt is None:
            _seed_everything(cfg.seed)
        self.device = _device(cfg)
        self._threads_before = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.prep = _prepare(self.dataset, cfg)
        self.num_classes = len(self.prep.category_ids) + 1
        if prebuilt is None:
            prebuilt = build_detection_model(cfg.model_options(), self.num_classes, load_weights=False)
        self.model = prebuilt.to(self.device)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.params = params
        label_of = {cid: k + 1 for k, cid in enumerate(self.prep.category_ids)}
        self.samples = DetectionSamples(self.dataset, cfg.arch == "maskrcnn", int(cfg.cache_mb) * 2**20, label_of)
        self.transform = train_transform(cfg.augment)
        rng = np.random.default_rng(cfg.seed + 1)
        val = list(self.prep.val)
        if cfg.max_val_images and len(val) > cfg.max_val_images:
            val = sorted(rng.permutation(val)[: cfg.max_val_images].tolist())
            self.prep.notes.append(f"validation each epoch on {len(val)} of {len(self.prep.val)} val images")
        self.val_positions = val
        self.steps_per_epoch = len(self._epoch_batches(0))
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.epoch = 0
        self.step = 0
        self.step_in_epoch = 0
        self.best_score = -math.inf
        self.best_epoch = None
        self.best_metric = "segm_map50" if cfg.arch == "maskrcnn" else "bbox_map50"
        self.history: list[dict] = []
        self.images_trained = 0
        if resume_state is not None:
            self._restore(resume_state)

    def _restore(self, state: dict) -> None:
        if [int(i) for i in state.get("category_ids", [])] != self.prep.category_ids:
            raise VitrineError(
                f"run {self.run.id!r}: the dataset's categories changed since the checkpoint was written",
                hint="start a new run",
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.step = int(state["step"])
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        best = state.get("best_score")
        self.best_score = -math.inf if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self.history = list(state.get("history") or [])
        self.seconds_before = float(state.get("train_seconds", 0.0))
        self.images_trained = int(state.get("images_trained", 0))
        self.last_val_seconds = state.get("last_val_seconds")
        if self.step_in_epoch >= self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        _set_rng_state(state.get("rng") or {})

    # -- checkpoints ----------------------------------------------------------------------------
    def _common_state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": self.cfg.kind,
            "config": self.cfg.to_dict(),
            "category_ids": self.prep.category_ids,
            "category_names": [self.prep.names[i] for i in self.prep.category_ids],
            "num_classes": self.num_classes,
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
            "best_score": None if math.isinf(self.best_score) else self.best_score,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "train_seconds": self._train_seconds(),
            "images_trained": self.images_trained,
            "last_val_seconds": self.last_val_seconds,
            "rng": _rng_state(),
        }
        self.run.save_checkpoint("last.pt", state)

    def save_best(self, val: dict) -> None:
        state = {**self._common_state(), "model": self.model.state_dict(), "val": val}
        self.run.save_checkpoint("best.pt", state)

    # -- prediction -----------------------------------------------------------------------------
    def detector(self):
        from vitrine.detect.torch_detector import TorchvisionDetector

        return TorchvisionDetector(
            CategoryMapped(self.model, self.prep.category_ids),
            {i: self.prep.names[i] for i in self.prep.category_ids},
            name=self.run.id,
            task=self.cfg.kind,
            device=str(self.device),
            batch_size=self.cfg.eval_batch_size,
        )

    def predict(self, positions: list[int], stage: str) -> tuple[dict, list[int]]:
        """Detections (threshold 0: every box the model keeps) per image id, and the positions used."""
        from PIL import Image

        det = self.detector()
        preds: dict = {}
        used: list[int] = []
        bs = self.cfg.eval_batch_size
        try:
            for start in range(0, len(positions), bs):
                self._check_cancel()
                chunk = positions[start : start + bs]
                images, ids = [], []
                for pos in chunk:
                    item, _ = self.samples.get(pos)
                    if item is None:
                        continue
                    images.append(Image.fromarray(item[0].permute(1, 2, 0).numpy()))
                    ids.append(self.dataset.images[pos].id)
                    used.append(pos)
                for image_id, d in zip(ids, det.predict_batch(images, threshold=0.0), strict=True):
                    preds[image_id] = d
                self.progress(stage, min(start + bs, len(positions)), len(positions))
        finally:
            self.model.train()
        return preds, used

    def validate(self) -> dict:
        t0 = time.perf_counter()
        preds, used = self.predict(self.val_positions, "validate")
        metrics = _evaluate(_subset(self.dataset, used), preds, self.cfg) if used else {}
        self.last_val_seconds = time.perf_counter() - t0
        return {**summarize(metrics), "val_seconds": round(self.last_val_seconds, 2)}

    # -- the loop -------------------------------------------------------------------------------
    def train_step(self, positions: list[int]) -> dict | None:
        cfg = self.cfg
        images, targets = [], []
        for p in positions:
            item, _ = self.samples.get(self.prep.train[p])
            if item is None:
                continue
            image, target = _augment(self.transform, *item)
            images.append(image.to(self.device, non_blocking=True).float().div_(255.0))
            targets.append({k: v.to(self.device, non_blocking=True) for k, v in target.items()})
        if not images:
            return None
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = self.model(images, targets)
        loss = sum(losses.values())
        value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(value):
            self.nonfinite += 1
            log.warning("step %d: loss is %s; step skipped", self.step + 1, value)
            if self.nonfinite >= 10:
                raise VitrineError(
                    f"the training loss was not finite for {self.nonfinite} steps (last at step {self.step + 1})",
                    hint="lower the learning rate (--lr) or keep the warm-up longer (--warmup-steps)",
                )
        else:
            self.nonfinite = 0
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.optimizer.step()
        return {"loss": value, "lr": lr, "n": len(images), **{k: float(v.detach()) for k, v in losses.items()}}

    def train(self) -> str:
        cfg = self.cfg
        stop = "epochs"
        while self.epoch < cfg.epochs:
            batches = self._epoch_batches(self.epoch)
            out_of_time = False
            sums: dict[str, float] = {}
            n_steps = 0
            step_started = time.perf_counter()
            for b in range(self.step_in_epoch, len(batches)):
                out = self.train_step(batches[b])
                self.step += 1
                self.step_in_epoch = b + 1
                if out is not None:
                    n = out.pop("n")
                    self.images_trained += n
                    self.session_images += n
                    n_steps += 1
                    for k, v in out.items():
                        sums[k] = sums.get(k, 0.0) + v
                    if self.step % cfg.log_every == 0:
                        for k, v in out.items():
                            self._log_scalar("lr" if k == "lr" else f"train/{k}", v, self.step)
                now = time.perf_counter()
                self.session_train_seconds += now - step_started
                self.session_steps += 1
                step_started = now
                info = self._run_progress("train")
                if out is not None:
                    info.update(out)
                info.update(
                    step_in_epoch=self.step_in_epoch,
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
            partial = out_of_time and self.step_in_epoch < len(batches)
            self.record("validate", force=True)
            val = self.validate()
            if not partial:
                self.epoch += 1
                self.step_in_epoch = 0
            entry = {
                "epoch": self.epoch if not partial else self.epoch + 1,
                "partial": partial,
                "step": self.step,
                "train_loss": sums["loss"] / n_steps if n_steps else None,
                **{f"train_{k}": v / n_steps for k, v in sums.items() if k not in ("loss", "lr") and n_steps},
                **{f"val_{k}": v for k, v in val.items() if k != "val_seconds"},
                "val_seconds": val.get("val_seconds"),
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(self._train_seconds(), 2),
            }
            self.history.append(entry)
            for k, v in val.items():
                if k != "val_seconds":
                    self._log_scalar(f"val/{k}", v, self.step)
            self._log_scalar("train/epoch_loss", entry["train_loss"], self.step)
            score = val.get(self.best_metric, val.get("bbox_map50"))
            improved = score is not None and math.isfinite(score) and score > self.best_score + 1e-9
            if improved or self.best_epoch is None:
                self.best_score = score if score is not None else -math.inf
                self.best_epoch = entry["epoch"]
                self.save_best(val)
            self.save_last()
            if self.writer is not None:
                self.writer.flush()
            self.record("train", force=True)
            info = {**self._run_progress("epoch"), **entry, "improved": improved, "best_score": self.best_score}
            self.progress("epoch", entry["epoch"], cfg.epochs, info)
            self._check_cancel()
            if out_of_time:
                stop = "time budget"
                break
        return stop

    # -- final evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict:
        from PIL import Image

        best = self.run.checkpoints_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best)["model"])
        preds, used = self.predict(self.prep.eval, "evaluate")
        gt = _subset(self.dataset, used)
        metrics = _evaluate(gt, preds, self.cfg) if used else {}
        self._write_report(metrics)
        report = {
            "split": self.prep.eval_split,
            "n_images": len(used),
            "checkpoint": "best.pt" if best.exists() else "last",
            **summarize(metrics),
        }
        # inference speed: one image at a time, as a user's request runs
        det = self.detector()
        images = []
        for pos in used[:30]:
            item, _ = self.samples.get(pos)
            images.append(Image.fromarray(item[0].permute(1, 2, 0).numpy()))
        if images:
            det.predict(images[0])  # warm-up
            t0 = time.perf_counter()
            for im in images:
                det.predict(im)
            seconds = time.perf_counter() - t0
            report["speed"] = {
                "ms_per_image": round(1000 * seconds / len(images), 2),
                "images": len(images),
                "device": str(self.device),
                "threads": torch.get_num_threads(),
            }
        self.model.train()
        return report

    def _write_report(self, metrics: dict) -> None:
        """detection_metrics.json and per_class_<bbox|segm>.csv, through the evaluation's writer."""
        from vitrine.evaluate.detection import write_detection_report

        if metrics:
            write_detection_report(_jsonable(metrics), self.run.dir)

    def metrics(self) -> dict:
        return {
            "epochs_completed": self.epoch,
            "steps": self.step,
            "best_epoch": self.best_epoch,
            "best_metric": self.best_metric,
            "best_val_score": None if math.isinf(self.best_score) else self.best_score,
            "train_seconds": round(self.trained_seconds or self._train_seconds(), 1),
            "train_images_per_second": round(self.session_images / max(self.session_train_seconds, 1e-9), 2),
            "images_trained": self.images_trained,
            "history": self.history,
            "skipped": [
                {"file": self.dataset.images[p].file_name, "why": why} for p, why in sorted(self.samples.failed.items())
            ],
            "dropped_annotations": self.samples.dropped,
        }

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        with contextlib.suppress(Exception):
            torch.set_num_threads(self._threads_before)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ------------------------------------------------------------------------------------------------
# runs


def _create_run(ws, kind: str, dataset_name: str, model: str, config: dict, run_id: str | None, extra: dict) -> Run:
    """A new run folder (kinds ``detection`` / ``segmentation``) beside the classification runs."""
    return Run.create(ws, kind, dataset_name, model, config, run_id=run_id, extra={"task": kind, **extra})


def resolve_dataset(dataset, dataset_name: str | None):
    """(DetectionDataset, name, source path or None) from a dataset, a COCO json file, a folder of
    COCO files of one dataset (``annotations/instances_<split>.json``, merged), or any annotation
    format ``vitrine.data.detection.convert.read_any`` reads (YOLO, CVAT, VOC)."""
    from vitrine.data.detection.coco import from_coco
    from vitrine.data.detection.model import DetectionDataset

    if isinstance(dataset, DetectionDataset):
        name = dataset_name or (Path(dataset.root).name if dataset.root else "dataset")
        return dataset, name, None
    path = Path(dataset).expanduser()
    if not path.exists():
        raise VitrineError(
            f"detection dataset {path} not found",
            hint="give a COCO annotation file (.json), a folder of them, a YOLO data.yaml, a CVAT .xml or a VOC folder",
        )
    if path.is_dir():
        folder = path / "annotations" if (path / "annotations").is_dir() else path
        found = sorted(folder.glob("*.json"))
        if found:
            ds = _merge([from_coco(p) for p in found], found)
            name = dataset_name or (path.parent.name if path.name == "annotations" else path.name)
            return ds, name, str(path.resolve())
    if path.is_file() and path.suffix.lower() == ".json":
        ds = from_coco(path)
        name = dataset_name or (path.parent.parent.name if path.parent.name == "annotations" else path.stem)
        return ds, name, str(path.resolve())
    from vitrine.data.detection.convert import read_any  # YOLO, CVAT, VOC

    ds = read_any(path)
    name = dataset_name or (path.parent.name if path.is_file() else path.name)
    return ds, name, str(path.resolve())


def _merge(parts: list, files: list[Path]):
    """One dataset from several COCO files of one dataset (instances_train/val/test.json)."""
    from vitrine.data.detection.model import DetectionDataset

    first = parts[0]
    cats = sorted((c.id, c.name) for c in first.categories)
    root = Path(os.path.commonpath([Path(p.root).resolve() for p in parts]))
    images, annotations, seen, seen_ann = [], [], set(), set()
    for part, file in zip(parts, files, strict=True):
        if sorted((c.id, c.name) for c in part.categories) != cats:
            raise VitrineError(
                f"{file}: its categories differ from those of {files[0].name}",
                hint="train on one annotation file, or give the files the same categories",
            )
        # each file may have its own images folder (COCO's layout: instances_<split>.json with
        # images/<split>/): file names are made relative to the folder they all share
        prefix = Path(os.path.relpath(Path(part.root).resolve(), root)).as_posix()
        for im in part.images:
            if im.id in seen:
                raise VitrineError(f"{file}: image id {im.id} is also in another annotation file of the folder")
            seen.add(im.id)
            images.append(im if prefix == "." else replace(im, file_name=f"{prefix}/{im.file_name}"))
        for a in part.annotations:
            if a.id in seen_ann:
                raise VitrineError(f"{file}: annotation id {a.id} is also in another annotation file of the folder")
            seen_ann.add(a.id)
            annotations.append(a)
    problems = [p for part in parts for p in part.problems]
    root = root if len(parts) > 1 else first.root
    return DetectionDataset(images, list(first.categories), annotations, root, problems)


def train_detector(
    workspace,
    dataset,
    config: DetectionConfig | dict | None = None,
    *,
    progress=None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
    resume: bool = False,
    dataset_name: str | None = None,
) -> Run:
    """Train a Faster / Mask R-CNN on ``dataset`` (a DetectionDataset, or a COCO json file) and
    return the finished run.

    ``progress(stage, done, total, info)`` is called with the stages ``train`` (every step; info
    has epoch, epochs, step, steps, loss and its components, lr, eta_seconds, images_per_second),
    ``validate``, ``epoch`` (with val_bbox_map50 / val_segm_map50), ``evaluate`` and ``done``.
    Setting ``cancel`` stops at the next step: last.pt is saved, the run becomes ``cancelled`` and
    :class:`~vitrine.errors.Cancelled` is raised. ``resume=True`` continues run ``run_id`` from its
    last.pt (``dataset`` may then be None when the run was trained from a file); ``config`` may
    then only change the options in ``RESUME_OVERRIDES``.
    """
    from vitrine.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    resume_state = None
    prebuilt = None
    if resume:
        if not run_id:
            raise VitrineError("resuming needs the run id")
        run = Run.load(ws, run_id)
        if run.kind not in KINDS.values():
            raise VitrineError(f"run {run_id!r} is a {run.kind} run, not a detection run")
        if dataset is None:
            source = run.record.get("dataset_path")
            if not source:
                raise VitrineError(f"run {run_id!r} was trained on an in-memory dataset: give the dataset again")
            dataset = source
        ds, name, source = resolve_dataset(dataset, dataset_name or run.record.get("dataset"))
        cfg, resume_state = resumed_config(run, config, DetectionConfig, RESUME_OVERRIDES)
        if name != run.record.get("dataset"):
            raise VitrineError(f"run {run_id!r} was trained on dataset {run.record.get('dataset')!r}, not {name!r}")
        run.update(config=cfg.to_dict())
    else:
        if config is None:
            cfg = DetectionConfig()
        elif isinstance(config, dict):
            cfg = DetectionConfig.from_dict(config)
        else:
            cfg = config
        ds, name, source = resolve_dataset(dataset, dataset_name)
        _prepare(ds, cfg)  # every dataset problem is reported before a run folder exists
        if run_id and (ws.run_dir(run_id) / "run.json").exists():
            raise VitrineError(f"run {run_id!r} already exists", hint="pick another name, or resume it")
        # built before the run folder exists: missing weights leave no run behind; seeded first
        _seed_everything(cfg.seed)
        num_classes = len(ds.categories) + 1
        prebuilt = build_detection_model(cfg.model_options(), num_classes)
        run = _create_run(
            ws,
            cfg.kind,
            name,
            f"{cfg.arch}-{cfg.backbone}",
            cfg.to_dict(),
            run_id,
            {"dataset_path": source} if source else {},
        )

    trainer = _Trainer(run, ds, cfg, progress, cancel)
    try:
        names = {c.id: c.name for c in ds.categories}
        run.update(
            state="running",
            classes=[names[i] for i in sorted(names)],
            category_ids=sorted(names),
            started_at=time.time(),
            error=None,
        )
        trainer.setup(resume_state, prebuilt)
        prebuilt = None
        from torch.utils.tensorboard import SummaryWriter

        run.tensorboard_dir.mkdir(parents=True, exist_ok=True)
        trainer.writer = SummaryWriter(str(run.tensorboard_dir), purge_step=trainer.step + 1 if resume_state else None)
        run.update(
            data={
                "n_train": len(trainer.prep.train),
                "n_val": len(trainer.prep.val),
                "n_val_used": len(trainer.val_positions),
                "n_eval": len(trainer.prep.eval),
                "eval_split": trainer.prep.eval_split,
                "notes": trainer.prep.notes,
                "device": str(trainer.device),
                "threads": torch.get_num_threads(),
                **model_summary(trainer.model),
            }
        )
        stop = trainer.train()
        trainer.trained_seconds = trainer._train_seconds()
        trainer.record("evaluate", force=True, stopped=stop)
        report = trainer.evaluate()
        metrics = trainer.metrics()
        metrics[report["split"]] = report
        metrics["val"] = {k: v for k, v in (trainer.history[-1] if trainer.history else {}).items()}
        if "speed" in report:
            metrics["speed"] = report["speed"]
        metrics["stopped"] = stop
        run.update(
            state="done",
            progress={**trainer._run_progress("done"), "eta_seconds": 0},
            metrics=_jsonable(metrics),
            finished_at=time.time(),
        )
        trainer.progress(
            "done",
            trainer.step,
            trainer.total_steps,
            {k: v for k, v in report.items() if "map" in k} | {"stopped": stop},
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
                metrics=_jsonable(trainer.metrics()) if hasattr(trainer, "history") else run.record.get("metrics", {}),
                finished_at=time.time(),
            )
        raise
    except BaseException as e:
        with contextlib.suppress(Exception):
            run.update(state="failed", error=f"{type(e).__name__}: {e}", finished_at=time.time())
        raise
    finally:
        trainer.close()


# ------------------------------------------------------------------------------------------------
# the detector a run offers


def load_run_detector(run: Run, device: str | None = None, checkpoint: str = "best"):
    """A :class:`~vitrine.detect.torch_detector.TorchvisionDetector` over the run's best.pt (else
    last.pt), rebuilt from the run's config; class ids are the dataset's category ids."""
    from vitrine.detect.torch_detector import TorchvisionDetector

    names = ("best.pt", "last.pt") if checkpoint == "best" else ("last.pt", "best.pt")
    for name in names:
        path = run.checkpoints_dir / name
        if path.is_file():
            break
    else:
        raise ModelError(
            f"run {run.id!r} has no checkpoint yet (state: {run.record.get('state')})",
            hint="train it (again) with vitrine train-detector",
        )
    state = load_checkpoint(path)
    if state.get("kind") not in KINDS.values():
        raise ModelError(f"{path} is not a detection checkpoint")
    cfg = DetectionConfig.from_dict(dict(state["config"]))
    model = build_detection_model(cfg.model_options(), int(state["num_classes"]), load_weights=False)
    model.load_state_dict(state["model"])
    ids = [int(i) for i in state["category_ids"]]
    classes = dict(zip(ids, state["category_names"], strict=True))
    return TorchvisionDetector(CategoryMapped(model, ids), classes, name=run.id, task=cfg.kind, device=device)

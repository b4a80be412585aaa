"""The images a detection run trains on: the dataset checked and split (:func:`check_dataset`,
:func:`prepare`), decoded with its targets and kept in memory up to a budget
(:class:`DetectionSamples`), augmented with its boxes and masks together (:func:`train_transform`,
:func:`augment`). Where a dataset comes from is the data layer's
:func:`vitrine.data.detection.resolve.resolve_dataset`, re-exported here for older callers."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitrine.core.errors import ImageError, VitrineError
from vitrine.data.detection.resolve import resolve_dataset  # noqa: F401  (re-exported)
from vitrine.train.detection.config import DetectionConfig

MAX_CATEGORY_ID = 10_000

log = logging.getLogger("vitrine.train.detection")


@dataclass
class Prepared:
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


def prepare(dataset, cfg: DetectionConfig) -> Prepared:
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
    ignored = cfg.ignored_options()
    if ignored:
        given = ", ".join(f"{k}={v}" for k, v in ignored.items())
        notes.append(f"options {cfg.arch} does not use, ignored: {given}")
    return Prepared(train, val, eval_idx, eval_split, notes, sorted(names), names)


def subset(dataset, positions: list[int]):
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


def augment(transform, image: torch.Tensor, target: dict):
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

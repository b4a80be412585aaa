"""Image towers on CPU runtimes: exported to ONNX, run by ONNX Runtime or OpenVINO, fed by numpy.

An embedder that can run its image side outside torch hands out an :class:`ImageTower`: the torch
module to export (image batch in, raw outputs out), the identity of its weights, the preprocessing
as an :class:`ArrayTransform` (PIL + numpy, the same arrays as the model's torch transform, so the
decode workers never touch torch), and ``postprocess`` (raw outputs -> vitrine's spaces). From it:

* :func:`export_onnx`: the fp32 ONNX file (legacy exporter, opset 17, dynamic batch), cached. Its
  input is the uint8 pixels (N, H, W, 3) of :meth:`ImageTower.prepare`: the normalisation is the
  graph's first operation, so decode workers hand over a quarter of the bytes and skip a float pass;
* :func:`build_session`: a :class:`~vitrine.runtime.session.Session` for one variant: ONNX Runtime
  fp32 or int8 (static QDQ calibrated on the user's images), OpenVINO fp32, bf16 (precision hint on
  the fp32 IR) or int8 (NNCF calibrated on the user's images), each cached by the weights hash, the
  runtime's version and the options (:func:`vitrine.runtime.cache.cached`);
* :class:`RuntimeImageEmbedder`: the :class:`~vitrine.models.base.Embedder` that indexes with such a
  session; its ``preprocess`` returns a numpy array, text goes to the torch model it wraps.

The calibration images of an int8 file are the ones it was first built with (a later build of the
same key reads the cached file): quantization ranges from a user's photos are good for the next ones.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vitrine.models.preprocess import RESAMPLE, ArrayTransform
from vitrine.runtime.cache import artifact_key, cached, runtime_version
from vitrine.runtime.session import Session, Variant, default_threads, model_file, open_session

OPSET = 17
INPUT = "pixels"
# what the exported graph takes; part of every file's key and of the saved choices' names, so a
# change of the graph's input re-exports and re-measures
INPUT_FORMAT = "uint8-nhwc"
# the variants tried, in the order they are prepared and shown
VARIANTS = (
    Variant("onnxruntime", "fp32"),
    Variant("onnxruntime", "int8"),
    Variant("openvino", "fp32"),
    Variant("openvino", "bf16"),
    Variant("openvino", "int8"),
)


# --------------------------------------------------------------------------------------------
# preprocessing without torch


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    size = list(size)
    return (int(size[0]), int(size[0])) if len(size) == 1 else (int(size[0]), int(size[1]))


def array_transform(transform) -> ArrayTransform:
    """The :class:`ArrayTransform` doing what a torchvision eval ``Compose`` does (open_clip's and
    timm's); ``ValueError`` naming the step when the pipeline holds something it cannot mirror."""
    steps = getattr(transform, "transforms", None)
    if steps is None:
        raise ValueError(f"cannot mirror {type(transform).__name__}: not a torchvision Compose")
    resize = resize_to = crop = mean = std = None
    resample = Image.Resampling.BILINEAR
    for step in steps:
        kind = type(step).__name__
        if kind == "Resize":
            if getattr(step, "max_size", None) is not None:
                raise ValueError("cannot mirror Resize with max_size")
            size = step.size
            if isinstance(size, int) or len(size) == 1:
                resize = size if isinstance(size, int) else int(size[0])
            else:
                resize_to = _pair(size)
            mode = getattr(step.interpolation, "value", str(step.interpolation))
            if mode not in RESAMPLE:
                raise ValueError(f"cannot mirror Resize interpolation {mode!r}")
            resample = RESAMPLE[mode]
        elif kind == "CenterCrop":
            crop = _pair(step.size)
        elif kind == "Normalize":
            mean = tuple(float(v) for v in np.asarray(step.mean, dtype=np.float64).ravel())
            std = tuple(float(v) for v in np.asarray(step.std, dtype=np.float64).ravel())
        elif kind in ("ToTensor", "MaybeToTensor", "MaybeConvertMode", "PILToTensor") or (
            kind == "function" and "rgb" in getattr(step, "__name__", "").lower()
        ):
            continue  # RGB conversion and /255 are part of every ArrayTransform
        else:
            raise ValueError(f"cannot mirror the preprocessing step {kind} without torch")
    if crop is None:
        if resize_to is None:
            raise ValueError("cannot mirror a preprocessing with no crop and no fixed size")
        crop = resize_to
    if mean is None:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return ArrayTransform(resize, crop, int(resample), mean, std, resize_to)


# --------------------------------------------------------------------------------------------
# what an embedder hands out


@dataclass
class ImageTower:
    """An embedder's image side, ready to export (see the module docstring)."""

    name: str  # the model's registry name: the cache folder and the saved choices are filed under it
    module: Any  # torch.nn.Module: (N, 3, H, W) float32 -> a tensor or a tuple of tensors
    output_names: list[str]
    weights_hash: str
    transform: ArrayTransform
    postprocess: Callable[[list[np.ndarray]], dict[str, np.ndarray]]
    transformer: bool = False  # a ViT: NNCF's transformer scheme, no shape inference before QDQ
    batch_size: int = 32

    def prepare(self, image: Image.Image) -> np.ndarray:
        """What the exported graph takes for one image: uint8 (H, W, 3) pixels, resized and cropped."""
        return self.transform.pixels(image)

    def options(self, **more) -> dict:
        return {
            "outputs": list(self.output_names),
            "input": list(self.transform.pixels_shape),
            "input_format": INPUT_FORMAT,
            "opset": OPSET,
            **more,
        }


def image_tower(embedder) -> ImageTower | None:
    """The embedder's :class:`ImageTower`, or None when it has none (it stays on torch)."""
    make = getattr(embedder, "image_tower", None)
    return make() if callable(make) else None


# --------------------------------------------------------------------------------------------
# export and the variants


def export_onnx(tower: ImageTower) -> Path:
    """The fp32 ONNX file of the tower (built once per weights hash, opset and exporter)."""
    import torch

    key = artifact_key(tower.name, tower.weights_hash, "onnx", tower.options(torch=torch.__version__))

    def build(folder: Path):
        module = _from_pixels(torch, tower.module.eval(), tower.transform)
        example = torch.zeros((2, *tower.transform.pixels_shape), dtype=torch.uint8)
        axes = {INPUT: {0: "batch"}, **{name: {0: "batch"} for name in tower.output_names}}
        # MultiheadAttention's fused fast path (taken without grad) has no ONNX export: off meanwhile
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            _export(torch, module, example, folder, tower, axes)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        return {"format": "onnx", "precision": "fp32", "torch": torch.__version__}

    folder = cached(tower.name, key, build, describe={"weights": tower.weights_hash})
    return folder / "model.onnx"


def _from_pixels(torch, module, transform: ArrayTransform):
    """``module`` behind the normalisation :class:`ArrayTransform` does in numpy: uint8 (N, H, W, 3)
    in, x * (1/255/std) - mean/std, (N, 3, H, W) into ``module``."""
    scale, shift = (torch.from_numpy(a.reshape(1, 3, 1, 1)) for a in transform.scale_shift())

    class FromPixels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module
            self.register_buffer("scale", scale)
            self.register_buffer("shift", shift)

        def forward(self, pixels):
            return self.inner(pixels.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift)

    return FromPixels().eval()


def _export(torch, module, example, folder: Path, tower: ImageTower, axes: dict) -> None:
    import warnings

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter, chosen on purpose
        torch.onnx.export(
            module,
            (example,),
            str(folder / "model.onnx"),
            input_names=[INPUT],
            output_names=list(tower.output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


class _Reader:
    """ONNX Runtime's calibration reader over preprocessed batches."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self._batches = iter(list(batches))

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT: _as_pixels(batch)}


Calibration = np.ndarray | Callable[[], np.ndarray] | None  # the images, or how to get them


def _calibration_batches(calibration: Calibration, size: int = 16) -> list[np.ndarray]:
    """Batches of the calibration images; called only when an int8 file is built, so a callable that
    decodes them costs nothing when the file is already cached."""
    if callable(calibration):
        calibration = calibration()
    if calibration is None or not len(calibration):
        raise ValueError("int8 needs calibration images: none were given")
    return [calibration[i : i + size] for i in range(0, len(calibration), size)]


def _ort_int8(tower: ImageTower, onnx_path: Path, calibration: Calibration) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    options = tower.options(
        precision="int8", format="qdq", per_channel=True, calibration="minmax", matmul_only=tower.transformer
    )
    key = artifact_key(tower.name, tower.weights_hash, "onnxruntime", options)

    def build(folder: Path):
        batches = _calibration_batches(calibration)
        pre = folder / "pre.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=tower.transformer)
        quantize_static(
            str(pre),
            str(folder / "model.onnx"),
            _Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # a ViT: the matrix products only (LayerNorm, Softmax and GELU stay fp32, as in NNCF's
            # transformer scheme); a CNN: every operator ONNX Runtime quantizes
            op_types_to_quantize=["MatMul", "Gemm", "Conv"] if tower.transformer else None,
        )
        pre.unlink()
        return {"format": "onnx", "precision": "int8", "calibration_images": int(sum(len(b) for b in batches))}

    return cached(tower.name, key, build, describe={"weights": tower.weights_hash}) / "model.onnx"


def _ov_fp32(tower: ImageTower, onnx_path: Path) -> Path:
    import openvino as ov

    key = artifact_key(tower.name, tower.weights_hash, "openvino", tower.options(precision="fp32", format="ir"))

    def build(folder: Path):
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
        return {"format": "openvino-ir", "precision": "fp32"}

    return model_file(cached(tower.name, key, build, describe={"weights": tower.weights_hash}))


def _ov_int8(tower: ImageTower, ir_path: Path, calibration: Calibration) -> Path:
    options = tower.options(precision="int8", format="ir", nncf=runtime_version("nncf"))
    key = artifact_key(tower.name, tower.weights_hash, "openvino", options)

    def build(folder: Path):
        import nncf  # imports torch (~2 s): only when a file is quantized
        import openvino as ov

        batches = _calibration_batches(calibration)
        model = ov.Core().read_model(str(ir_path))
        kw = {"model_type": nncf.ModelType.TRANSFORMER} if tower.transformer else {}
        # NNCF draws progress bars on stdout: send them to stderr, stdout may be JSON (--json)
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model,
                nncf.Dataset(batches, lambda b: {INPUT: _as_pixels(b)}),
                subset_size=len(batches),
                **kw,
            )
        ov.save_model(quantized, str(folder / "model.xml"), compress_to_fp16=False)
        return {"format": "openvino-ir", "precision": "int8", "calibration_images": int(sum(len(b) for b in batches))}

    return model_file(cached(tower.name, key, build, describe={"weights": tower.weights_hash}))


def variant_file(tower: ImageTower, variant: Variant, calibration: Calibration = None) -> Path:
    """The exported file that runs ``variant`` (built and cached on first use)."""
    onnx_path = export_onnx(tower)
    if variant.runtime == "onnxruntime":
        if variant.precision == "fp32":
            return onnx_path
        if variant.precision == "int8":
            return _ort_int8(tower, onnx_path, calibration)
        raise ValueError(f"ONNX Runtime has no {variant.precision} variant here: use fp32 or int8")
    if variant.runtime == "openvino":
        ir = _ov_fp32(tower, onnx_path)
        if variant.precision in ("fp32", "bf16"):
            return ir  # bf16 is OpenVINO's precision hint on the fp32 file
        return _ov_int8(tower, ir, calibration)
    raise ValueError(f"no exported file for runtime {variant.runtime!r}")


def streams_for(variant: Variant, threads: int) -> int:
    """OpenVINO runs int8 and bf16 best as 2 streams of half the threads each (issue 14: 4.5x for the
    int8 ViT with 2 streams on 2 cores); fp32 and ONNX Runtime keep one stream."""
    if variant.runtime == "openvino" and variant.precision in ("int8", "bf16") and threads >= 2:
        return 2
    return 1


def build_session(
    tower: ImageTower,
    variant: Variant,
    calibration: Calibration = None,
    threads: int | None = None,
    keep_compiled: bool = False,
) -> Session:
    """A session running ``variant`` of the tower; ``keep_compiled``: the one a model indexes with
    (OpenVINO caches its compiled form, see :func:`~vitrine.runtime.session.open_session`)."""
    threads = threads or default_threads()
    path = variant_file(tower, variant, calibration)
    return open_session(
        path, variant, threads=threads, streams=streams_for(variant, threads), keep_compiled=keep_compiled
    )


# --------------------------------------------------------------------------------------------
# the embedder that indexes with a runtime


def _as_pixels(batch) -> np.ndarray:
    """A batch of :meth:`ImageTower.prepare` outputs as one contiguous uint8 (N, H, W, 3) array."""
    x = np.ascontiguousarray(batch if isinstance(batch, np.ndarray) else np.stack([np.asarray(b) for b in batch]))
    if x.dtype != np.uint8:
        raise TypeError(f"an image tower takes uint8 pixels from ImageTower.prepare, not {x.dtype}")
    return x


def run_tower(tower: ImageTower, session: Session, batch) -> dict[str, np.ndarray]:
    """The tower's spaces for a batch of :meth:`ImageTower.prepare` outputs (or one of them)."""
    x = _as_pixels(batch)
    if x.ndim == 3:
        x = x[None]
    return tower.postprocess(session.run({session.input_names[0]: x}))


@dataclass
class RuntimeImageEmbedder:
    """Images through an exported tower on a runtime, text (and anything else) through ``base``."""

    base: Any
    tower: ImageTower
    session: Session
    variant: Variant
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def spaces(self):
        return self.base.spaces

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.tower.prepare(image)

    def embed_batch(self, batch) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return {s: np.zeros((0, d), dtype=np.float32) for s, d in self.spaces.dims.items()}
        return run_tower(self.tower, self.session, batch)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.base.embed_texts(texts)

    def __getattr__(self, name: str):  # the torch model's other helpers (dim, top labels...)
        if name in ("base", "tower", "session", "variant", "notes"):
            raise AttributeError(name)
        return getattr(self.base, name)

"""``vitrine export-model``: a fine-tuned run as a portable model (ONNX, OpenVINO IR), its preprocessing and
class names beside it, checked against the torch model on real images.

:func:`export_run` writes one folder (``--output``, default ``<run>/exports/<format>[-int8]``):

    model.onnx            the network, exported with torch's legacy (TorchScript) exporter, opset 17
    model.xml, model.bin  OpenVINO's IR of it (``--format openvino``)
    model-int8.*          the int8 copy (``--int8``: ORT static QDQ, or NNCF), when the gate passed
    vitrine-model.json    task, class names, input, preprocessing, output layout, weights hash,
                          what exported it, and the parity figures

A folder rather than one zip file: OpenVINO's IR is two files that the runtimes open by path, and a
folder is run in place (``vitrine predict --model FOLDER``, or plain ONNX Runtime) with nothing
unpacked first; zip it to ship it. The folder is built under a temporary name and renamed into
place, so it is complete or absent.

Classifiers (``finetune`` runs) take ``(N, 3, S, S)`` normalised images and return logits; the
resize/crop/normalisation is written down and redone in numpy/PIL by :mod:`vitrine.predict.exported`.
Detectors (``detection``/``segmentation`` runs: torchvision R-CNNs, RetinaNet, FCOS, SSDlite) take
one ``(3, H, W)`` image in [0, 1] of any size (torchvision takes a list of images: the export wraps
one) and return ``boxes``, ``labels`` (the network's 1..K; ``label_ids`` maps them to the dataset's
category ids), ``scores`` and, for Mask R-CNN, ``masks`` (N, 1, H, W) probabilities.

Parity (:mod:`vitrine.runtime.parity`) compares each exported variant with the torch model on the
given images: classifiers by top-1 agreement and the largest probability change, detectors by boxes
kept (same class at IoU >= 0.9), class agreement and mean IoU. An fp32 export that fails the gate is
refused (the export is wrong, not merely less precise); an int8 one is not written unless ``force``.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitrine.core.atomic import atomic_write_json, fsync_dir
from vitrine.core.errors import ModelError, ModelUnavailable, VitrineError
from vitrine.predict.exported import FORMAT_VERSION, FORMATS, MANIFEST, classifier_input, detector_input
from vitrine.runs import DETECTION_RUN_KINDS, Run
from vitrine.runtime.parity import Parity, classification_parity, detection_parity

OPSET = 17
DEFAULT_IMAGES = 8  # parity images taken from the run's validation split when none are given
MAX_IMAGES = 256
PARITY_SCORE = 0.3  # detections compared: those the torch model scores at least this

__all__ = ["OPSET", "ExportReport", "default_output", "export_run", "parity_images"]


@dataclass
class ExportReport:
    folder: Path
    manifest: dict
    images: int
    skipped: list[str] = field(default_factory=list)
    int8: str | None = None  # None (not asked), "passed", "refused", "forced"

    @property
    def refused(self) -> bool:
        return self.int8 == "refused"

    def to_dict(self) -> dict:
        return {
            "folder": str(self.folder),
            "task": self.manifest["task"],
            "format": self.manifest["format"],
            "precision": self.manifest["precision"],
            "int8": self.int8,
            "images": self.images,
            "skipped": list(self.skipped),
            "parity": self.manifest["parity"],
        }


# ------------------------------------------------------------------------------------------------
# what to export


def _task(run: Run) -> str:
    if run.kind in DETECTION_RUN_KINDS:
        return run.kind
    if run.kind == "finetune":
        return "classification"
    if run.record.get("submission"):
        raise ModelError(f"run {run.id!r} is a submission (predictions), not a model", hint="export a trained run")
    raise ModelError(
        f"run {run.id!r} is a {run.kind} run: export-model exports fine-tuned networks (finetune, detection "
        "and segmentation runs)",
        hint="a linear probe or zero-shot classifier runs on an embedding model: use it through vitrine predict",
    )


def default_output(run: Run, fmt: str, int8: bool) -> Path:
    return run.dir / "exports" / (fmt + ("-int8" if int8 else ""))


def parity_images(run: Run, limit: int = DEFAULT_IMAGES) -> list[Path]:
    """Up to ``limit`` images of the validation split (else test, else train) of the run's dataset,
    when it is reachable from here; [] when it is not."""
    from vitrine.core.workspace import Workspace

    try:
        if run.kind in DETECTION_RUN_KINDS:
            from vitrine.data.detection.resolve import resolve_dataset

            source = run.record.get("dataset_path")
            if not source:
                return []
            ds, _, _ = resolve_dataset(source, run.record.get("dataset"))
            for split in ("val", "test", "train"):
                paths = [Path(ds.root) / im.file_name for im in ds.images if im.split == split]
                if paths:
                    return paths[:limit]
            return []
        from vitrine.data.importers import load_dataset

        ds = load_dataset(Workspace(run.dir.parent.parent), run.record.get("dataset", ""))
        for split in ("val", "test", "train"):
            paths = [ds.path_of(s) for s in ds.split(split)]
            if paths:
                return paths[:limit]
    except (VitrineError, OSError, KeyError, ValueError):
        return []
    return []


def _read_images(paths: list[Path]) -> tuple[list, list[str]]:
    from vitrine.collection.imageio import open_image
    from vitrine.core.errors import ImageError

    images, skipped = [], []
    for p in paths:
        try:
            images.append(open_image(p))
        except ImageError as exc:
            skipped.append(f"{p}: {getattr(exc, 'reason', None) or exc.message}")
    return images, skipped


# ------------------------------------------------------------------------------------------------
# torch side


class _Network:
    """The torch model to export, its example input and how to run either side on images."""

    def __init__(self, run: Run, task: str):
        import torch

        self.task = task
        if task == "classification":
            from vitrine.predict.classifier import FinetuneClassifier

            clf = FinetuneClassifier(run.dir, device="cpu")
            self.module = clf.model.float().eval()
            self.checkpoint = clf.checkpoint
            self.transform = clf.transform
            self.meta = {
                "classes": list(clf.classes),
                "model": clf.backbone,
                "preprocess": {
                    "resize_shorter": clf.image_size,
                    "center_crop": clf.image_size,
                    "interpolation": str(clf.data_config.get("interpolation", "bilinear")),
                    "max_aspect": _max_aspect(),
                    "scale": 1 / 255,
                    "mean": [float(v) for v in clf.data_config["mean"]],
                    "std": [float(v) for v in clf.data_config["std"]],
                    "channels": "RGB",
                },
                "input": {"name": "images", "shape": ["batch", 3, clf.image_size, clf.image_size], "dtype": "float32"},
                "outputs": ["logits"],
                "output_layout": {
                    "logits": "(batch, classes) logits in the order of classes; softmax for probabilities"
                },
            }
            self.input_names, self.output_names = ["images"], ["logits"]
            self.dynamic_axes = {"images": {0: "batch"}, "logits": {0: "batch"}}
        else:
            from vitrine.models.detectors.torch_detector import MAX_ASPECT_RATIO
            from vitrine.predict.run_detector import load_run_detector

            det = load_run_detector(run, device="cpu")
            mapped = det.model  # CategoryMapped: labels are mapped in numpy after the graph
            inner = mapped.model.float().eval()
            with_masks = task == "segmentation" and getattr(inner, "roi_heads", None) is not None
            with_masks = with_masks and inner.roi_heads.has_mask()
            self.module = _one_image(inner, with_masks).eval()
            self.checkpoint = _checkpoint_of(run)
            ids = [int(i) for i in mapped.ids.tolist()]
            self.output_names = ["boxes", "labels", "scores", *(["masks"] if with_masks else [])]
            self.input_names = ["image"]
            self.dynamic_axes = {
                "image": {1: "height", 2: "width"},
                **{n: {0: "detections"} for n in self.output_names},
            }
            if with_masks:
                self.dynamic_axes["masks"] = {0: "detections", 2: "height", 3: "width"}
            config = run.record.get("config") or {}
            self.meta = {
                "classes": [{"id": int(k), "name": str(v)} for k, v in sorted(det.classes.items())],
                "label_ids": ids,
                "model": run.record.get("model") or config.get("arch"),
                "preprocess": {"scale": 1 / 255, "channels": "RGB", "resize": "inside the graph (torchvision)"},
                "max_aspect": MAX_ASPECT_RATIO,
                "score_threshold": float(config.get("score_threshold", 0.5)),  # the run's evaluation threshold
                "graph_score_threshold": float(config.get("box_score_thresh", 0.05)),  # boxes below: never output
                "input": {"name": "image", "shape": [3, "height", "width"], "dtype": "float32", "range": [0, 1]},
                "outputs": self.output_names,
                "output_layout": {
                    "boxes": "(n, 4) x1 y1 x2 y2 in pixels of the input image",
                    "labels": "(n,) int64 network labels 1..K; label_ids[label] is the dataset's category id",
                    "scores": "(n,) float32",
                    **({"masks": "(n, 1, height, width) probabilities; >= 0.5 is the object"} if with_masks else {}),
                },
            }
        self.torch = torch

    def inputs(self, images) -> list[np.ndarray]:
        """The exported graph's inputs, one array per image (numpy/PIL preprocessing)."""
        if self.task == "classification":
            pre = self.meta["preprocess"]
            return [classifier_input(im, pre)[None] for im in images]
        return [detector_input(im) for im in images]

    def reference(self, images) -> tuple[list, float]:
        """The torch model's outputs per image (preprocessed the torch way), and its seconds per image
        for the network alone (the runtimes are timed on prepared inputs too)."""
        torch = self.torch
        if self.task == "classification":
            tensors = [self.transform(im if im.mode == "RGB" else im.convert("RGB"))[None] for im in images]
        else:
            tensors = [torch.from_numpy(detector_input(im)) for im in images]
        out = []
        with torch.inference_mode():
            t0 = time.perf_counter()
            for x in tensors:
                if self.task == "classification":
                    out.append(self.module(x).float().numpy())
                else:
                    out.append([t.float().numpy() if t.is_floating_point() else t.numpy() for t in self.module(x)])
            seconds = (time.perf_counter() - t0) / max(1, len(tensors))
        return out, seconds

    def export(self, path: Path, example: np.ndarray) -> None:
        torch = self.torch
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's warnings about torchvision's Python branches
            torch.onnx.export(
                self.module,
                (torch.from_numpy(example),),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=self.input_names,
                output_names=self.output_names,
                dynamic_axes=self.dynamic_axes,
                do_constant_folding=True,
            )


def _max_aspect() -> float:
    from vitrine.models.preprocess import MAX_ASPECT

    return float(MAX_ASPECT)


def _checkpoint_of(run: Run) -> Path:
    for name in ("best.pt", "last.pt"):
        if (run.checkpoints_dir / name).is_file():
            return run.checkpoints_dir / name
    raise ModelError(f"run {run.id!r} has no checkpoint yet", hint="train it (again)")


def _one_image(model, masks: bool):
    """A torchvision detector (a list of images in, a list of dicts out) as one tensor in, tensors out."""
    import torch

    class OneImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, image):
            out = self.model([image])[0]
            if masks:
                return out["boxes"], out["labels"], out["scores"], out["masks"]
            return out["boxes"], out["labels"], out["scores"]

    return OneImage()


# ------------------------------------------------------------------------------------------------
# parity


def _run_session(session, arrays: list[np.ndarray]) -> tuple[list, float]:
    name = session.input_names[0]
    t0 = time.perf_counter()
    out = [session.run({name: a}) for a in arrays]
    return out, (time.perf_counter() - t0) / max(1, len(arrays))


def _parity(task: str, reference: list, candidate: list) -> Parity:
    if task == "classification":
        return classification_parity(np.concatenate(reference), np.concatenate([c[0] for c in candidate]))
    ref = [(r[0], r[1], r[2]) for r in reference]
    cand = [(c[0], c[1], c[2]) for c in candidate]
    return detection_parity(ref, cand, score_threshold=PARITY_SCORE)


def _row(variant: str, parity: Parity, ms: float, torch_ms: float) -> dict:
    return {
        "variant": variant,
        **parity.to_dict(),
        "ms_per_image": round(ms * 1000, 2),
        "torch_ms": round(torch_ms * 1000, 2),
    }


# ------------------------------------------------------------------------------------------------
# writing


def _prepare_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise VitrineError(f"{output} exists and is not a folder", hint="give --output a folder path")
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise VitrineError(
            f"{output} is a folder that holds something else than an exported model: not overwriting it",
            hint="give --output a new or empty folder",
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitrineError(f"cannot create {output.parent}: {exc.strerror or exc}") from None


def _move_into_place(tmp: Path, output: Path) -> None:
    old = None
    if output.exists():
        old = output.with_name(f".{output.name}.old.{uuid.uuid4().hex[:8]}")
        os.rename(output, old)
    try:
        os.rename(tmp, output)
    except OSError:
        if old is not None:
            os.rename(old, output)
        raise
    fsync_dir(output.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _versions(fmt: str) -> dict:
    from importlib import metadata

    names = [
        "vitrine",
        "torch",
        "torchvision",
        "onnx",
        "onnxruntime",
        *(["openvino", "nncf"] if fmt == "openvino" else []),
    ]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return out


def export_run(
    run: Run,
    fmt: str = "onnx",
    int8: bool = False,
    images: list[Path] | None = None,
    output: Path | None = None,
    force: bool = False,
    threads: int | None = None,
) -> ExportReport:
    """Export ``run`` to ``output`` (see the module's docstring) and check it on ``images`` (default: a
    few of the run's validation images). Raises :class:`ModelError` / :class:`VitrineError` saying what
    is wrong (not an exportable run, unknown format, no readable image, an fp32 export failing parity)."""
    from vitrine.runtime.cache import file_hash
    from vitrine.runtime.session import Variant, open_session

    if fmt not in FORMATS:
        raise VitrineError(f"unknown export format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    task = _task(run)
    paths = list(images) if images else parity_images(run)
    if not paths:
        raise VitrineError(
            f"no images to check the export on: the dataset of run {run.id!r} is not reachable from here",
            hint="give some with --images (files or folders of the kind the model will see)",
        )
    pictures, skipped = _read_images(paths[:MAX_IMAGES])
    if len(paths) > MAX_IMAGES:
        skipped.append(f"{len(paths) - MAX_IMAGES} more image(s): parity is checked on the first {MAX_IMAGES}")
    if not pictures:
        first = skipped[0] if skipped else ""
        raise VitrineError(
            f"none of the {len(paths)} image file(s) given could be read ({first})",
            hint="give --images real image files (JPEG, PNG, ...)",
        )
    output = Path(output) if output is not None else default_output(run, fmt, int8)
    _prepare_output(output)
    net = _Network(run, task)
    arrays = net.inputs(pictures)
    net.reference(pictures[:1])  # warm up: the timing compares steady states
    reference, torch_ms = net.reference(pictures)

    tmp = output.with_name(f".{output.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        onnx_path = tmp / "model.onnx"
        try:
            net.export(onnx_path, arrays[0])
        except Exception as exc:  # noqa: BLE001 - the exporter's own error, with the model named
            raise ModelError(f"run {run.id!r}: torch could not export {net.meta['model']} to ONNX: {exc}") from None
        runtime = "onnxruntime" if fmt == "onnx" else "openvino"
        files = {"fp32": "model.onnx"}
        if fmt == "openvino":
            try:
                import openvino as ov
            except ImportError as exc:
                raise ModelUnavailable(
                    f"OpenVINO is not installed ({exc})", hint="pip install openvino, or --format onnx"
                ) from None

            ov.save_model(ov.convert_model(str(onnx_path)), str(tmp / "model.xml"), compress_to_fp16=False)
            files = {"fp32": "model.xml"}
        rows = []
        session = open_session(tmp / files["fp32"], Variant(runtime, "fp32"), threads=threads)
        _run_session(session, arrays[:1])
        candidate, ms = _run_session(session, arrays)
        fp32 = _parity(task, reference, candidate)
        rows.append(_row(f"{runtime} fp32", fp32, ms, torch_ms))
        if not fp32.passed and not force:
            raise ModelError(
                f"run {run.id!r}: the exported model does not reproduce the torch model ({fp32.reason}); "
                "nothing written",
                hint="report it with the run's model; --force writes it anyway",
            )
        status = None
        precision = "fp32"
        if int8:
            q_name = "model-int8.onnx" if fmt == "onnx" else "model-int8.xml"
            try:
                q_path = _quantize(fmt, tmp, files["fp32"], q_name, session.input_names[0], arrays, task)
                q_session = open_session(q_path, Variant(runtime, "int8"), threads=threads)
            except ModelError as exc:  # the quantizer failed: refused like a variant that fails parity
                q_parity, q_ms = None, 0.0
                rows.append({"variant": f"{runtime} int8", "passed": False, "figures": {}, "reason": exc.message})
            else:
                _run_session(q_session, arrays[:1])
                q_out, q_ms = _run_session(q_session, arrays)
                q_parity = _parity(task, reference, q_out)
                rows.append(_row(f"{runtime} int8", q_parity, q_ms, torch_ms))
            if q_parity is None:
                status = "refused"
                for f in tmp.glob("model-int8.*"):
                    f.unlink()
            elif q_parity.passed:
                status, precision, files["int8"] = "passed", "int8", q_name
            elif force:
                status, precision, files["int8"] = "forced", "int8", q_name
            else:
                status = "refused"
                for f in tmp.glob("model-int8.*"):
                    f.unlink()
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": run.id,
            "task": task,
            "format": fmt,
            "runtime": runtime,
            "precision": precision,
            "files": files,
            "onnx": "model.onnx",
            "run": {"id": run.id, "kind": run.kind, "dataset": run.record.get("dataset")},
            **net.meta,
            "weights_hash": file_hash(net.checkpoint),
            "exported_by": {"opset": OPSET, "exporter": "torch.onnx legacy (dynamo=False)", **_versions(fmt)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "parity": {
                "images": len(pictures),
                "reference": "the run's torch model, fp32, on CPU",
                "variants": rows,
                "int8": status,
                "notes": (["int8 calibrated on the same images it is checked on"] if int8 else [])
                + [f"{len(skipped)} image(s) skipped (unreadable, or over {MAX_IMAGES})"] * bool(skipped),
            },
        }
        atomic_write_json(tmp / MANIFEST, manifest)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _move_into_place(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportReport(output, manifest, len(pictures), skipped, status)


def _quantize(fmt: str, folder: Path, source: str, target: str, input_name: str, arrays, task: str) -> Path:
    from vitrine.predict import export_int8

    if fmt == "onnx":
        return export_int8.quantize_onnx(
            folder / source, folder / target, input_name, arrays, convs_only=task != "classification"
        )
    return export_int8.quantize_openvino(folder / source, folder / target, arrays)

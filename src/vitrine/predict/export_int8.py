"""int8 copies of an exported model, calibrated on the user's images.

* ONNX Runtime: static QDQ quantization (``onnxruntime.quantization.quantize_static``), activations
  calibrated with MinMax on the given inputs, weights per channel. Detectors quantize their
  convolutions only: the box decoding, NMS and mask pasting stay in fp32.
* OpenVINO: NNCF post-training quantization (``nncf.quantize``) of the IR. ``import nncf`` takes
  seconds and imports torch, so it happens here, at export time only.

Both return the file they wrote; the caller holds the result to the parity gate before keeping it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

from vitrine.core.errors import ModelError


@contextmanager
def _quiet() -> Iterator[None]:
    """The quantizers log each tensor they skip to the root logger, and NNCF draws progress bars on
    stdout: keep the first off the terminal and the second off stdout (``--json`` owns it)."""
    root = logging.getLogger()
    nncf_log = logging.getLogger("nncf")
    before = root.level, nncf_log.level
    root.setLevel(logging.ERROR)
    nncf_log.setLevel(logging.ERROR)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        root.setLevel(before[0])
        nncf_log.setLevel(before[1])


def quantize_onnx(
    source: Path, target: Path, input_name: str, calibration: Sequence[np.ndarray], convs_only: bool = False
) -> Path:
    """``target``: ``source`` with QDQ int8 weights and activations, activations calibrated on
    ``calibration`` (one input array per run)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(calibration)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: np.ascontiguousarray(x, dtype=np.float32)}

    model_input = source
    if not convs_only:  # shape inference and constant folding help the quantizer on plain CNNs
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = target.with_name(target.stem + "-prep.onnx")
        try:
            with _quiet():
                quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            model_input = prepared
        except Exception:  # noqa: BLE001 - the pre-processing is an optimisation, not a requirement
            model_input = source
    try:
        with _quiet():
            quantize_static(
                str(model_input),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["Conv"] if convs_only else None,
            )
    except Exception as exc:  # noqa: BLE001 - the quantizer's own error, reported with the export
        raise ModelError(f"ONNX Runtime could not quantize the model to int8: {exc}") from None
    finally:
        if model_input != source:
            Path(model_input).unlink(missing_ok=True)
    return target


def quantize_openvino(source_xml: Path, target_xml: Path, calibration: Sequence[np.ndarray]) -> Path:
    """``target_xml``: the IR quantized to int8 by NNCF, calibrated on ``calibration``."""
    import openvino as ov

    try:
        import nncf
    except ImportError as exc:
        raise ModelError(
            f"NNCF is not installed ({exc})", hint="pip install nncf, or export with --format onnx"
        ) from None
    model = ov.Core().read_model(str(source_xml))
    items = [np.ascontiguousarray(x, dtype=np.float32) for x in calibration]
    try:
        with _quiet():
            quantized = nncf.quantize(
                model, nncf.Dataset(items), subset_size=max(1, len(items)), advanced_parameters=None
            )
    except Exception as exc:  # noqa: BLE001 - NNCF's own error, reported with the export
        raise ModelError(f"NNCF could not quantize the model to int8: {exc}") from None
    ov.save_model(quantized, str(target_xml), compress_to_fp16=False)
    return target_xml

"""Test helper: tiny "YOLO exported to ONNX" files whose output is a given array, in the layout
and with the metadata Ultralytics writes (``names``, ``imgsz``, ``stride``). They test decoding and
scoring paths, never detection quality.

Import it from a test file in ``tests/`` after putting this folder on ``sys.path``::

    sys.path.insert(0, str(Path(__file__).parents[N]))
    import yolo_onnx
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch


class Fixed(torch.nn.Module):
    """A 'model' whose output is a given tensor (it still reads its input, so the graph has one)."""

    def __init__(self, output: np.ndarray):
        super().__init__()
        self.out = torch.nn.Parameter(torch.from_numpy(output.astype(np.float32)), requires_grad=False)

    def forward(self, x):
        return self.out + 0.0 * x.mean()


def export(folder: Path, output: np.ndarray, name: str, names: dict[int, str], size: int = 64) -> str:
    """Write ``<folder>/<name>.onnx``: input ``images`` (1, 3, size, size), output ``output0``."""
    path = Path(folder) / f"{name}.onnx"
    torch.onnx.export(Fixed(output), torch.zeros(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output0"])  # fmt: skip
    model = onnx.load(str(path))
    for key, value in {"names": str(names), "imgsz": str([size, size]), "stride": "32"}.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))
    return str(path)

"""One way to run an exported model on a CPU: ONNX Runtime or OpenVINO behind :class:`Session`.

Threads and precision are always set, never left to the runtime: OpenVINO runs fp32 models in bf16
on CPUs that have it unless told otherwise, and both runtimes take every core by default, which
starves the threads decoding images beside them. ``precision`` is what the *runtime* computes in:
``fp32``, ``bf16`` (OpenVINO's hint) or ``int8`` (a quantized file; its float parts stay fp32).

Sessions are safe to call from several threads (OpenVINO: one infer request per thread).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitrine.core.errors import ModelUnavailable
from vitrine.runtime.cache import runtime_dir

RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
THREADS_ENV = "VITRINE_RUNTIME_THREADS"


def default_threads() -> int:
    """Threads for one model: ``VITRINE_RUNTIME_THREADS``, else every core the process may use."""
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Variant:
    """A way to run a model: a runtime and the precision it computes in."""

    runtime: str  # "torch" | "onnxruntime" | "openvino"
    precision: str = "fp32"

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "precision": self.precision}

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``"openvino-int8"``, ``"onnxruntime"`` (fp32), ``"torch"``."""
        runtime, _, precision = text.strip().lower().partition("-")
        runtime = {"ort": "onnxruntime", "ov": "openvino"}.get(runtime, runtime)
        if runtime not in ("torch", *RUNTIMES):
            raise ValueError(f"unknown runtime {runtime!r}: use torch, onnxruntime or openvino")
        precision = precision or "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        return cls(runtime, precision)


class Session:
    """A loaded model: ``run({input name: array}) -> [output arrays]`` in the model's output order."""

    runtime: str
    precision: str
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - protocol
        raise NotImplementedError


class OrtSession(Session):
    runtime = "onnxruntime"

    def __init__(self, path: str | os.PathLike, threads: int | None = None, precision: str = "fp32"):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelUnavailable(f"ONNX Runtime is not installed ({exc})", hint="pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or default_threads()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # idle intra-op threads sleep instead of spinning: they would take the cores from the threads
        # decoding images beside the model (and from whatever is timed next to it)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.precision = precision
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(feeds))


class OpenVinoSession(Session):
    runtime = "openvino"

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        precision: str = "fp32",
        streams: int = 1,
        keep_compiled: bool = False,
    ):
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelUnavailable(f"OpenVINO is not installed ({exc})", hint="pip install openvino") from None
        core = ov.Core()
        config = {
            # bf16 only when asked: fp32 and int8 files keep their float parts in fp32
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": int(threads or default_threads()),
            "NUM_STREAMS": int(max(1, streams)),
            "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
        }
        self.precision = precision
        self.streams = max(1, streams)
        self._compiled = None
        if keep_compiled:
            # OpenVINO's own cache of the compiled model (keyed by the file and this config): the next
            # session of a model indexed with starts in a fraction of the compile time (0.08 -> 0.03 s
            # for Lite0). A blob it cannot use is one more reason to compile as usual, never an error.
            with contextlib.suppress(Exception):
                self._compiled = core.compile_model(str(path), "CPU", {**config, "CACHE_DIR": str(compiled_dir())})
        if self._compiled is None:
            self._compiled = core.compile_model(str(path), "CPU", config)
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        self._local = threading.local()
        self._streams_lock = threading.Lock()
        self._stream_requests: list | None = None

    def _request(self):
        req = getattr(self._local, "request", None)
        if req is None:
            req = self._local.request = self._compiled.create_infer_request()
        return req

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        if self.streams > 1:
            batch = len(next(iter(feeds.values())))
            if batch >= 2 * self.streams:
                return self._run_streams(feeds, batch)
        result = self._request().infer(dict(feeds))
        return [np.array(result[out]) for out in self._compiled.outputs]

    def _run_streams(self, feeds: Mapping[str, np.ndarray], batch: int) -> list[np.ndarray]:
        """Split the batch over the streams and run the parts at once (the int8 ViT's 4.5x needs it).
        One set of requests per session, started and waited on here: no callback thread ever holds
        the last reference to a queue (destroying one from its own thread aborts the process)."""
        bounds = np.linspace(0, batch, self.streams + 1).astype(int)
        with self._streams_lock:
            if self._stream_requests is None:
                self._stream_requests = [self._compiled.create_infer_request() for _ in range(self.streams)]
            requests = self._stream_requests
            for i, req in enumerate(requests):
                req.start_async({k: np.ascontiguousarray(v[bounds[i] : bounds[i + 1]]) for k, v in feeds.items()})
            for req in requests:
                req.wait()
            n_out = len(self._compiled.outputs)
            return [np.concatenate([np.array(req.get_output_tensor(j).data) for req in requests]) for j in range(n_out)]


def open_session(
    path: str | os.PathLike, variant: Variant, threads: int | None = None, streams: int = 1, keep_compiled: bool = False
) -> Session:
    """A session for an exported file (``.onnx``, or OpenVINO's ``.xml``; OpenVINO also reads ``.onnx``).
    ``keep_compiled``: OpenVINO caches the compiled model (:func:`compiled_dir`), for the sessions a
    model runs with again and again, not for trials (a compiled model weighs as much as its weights)."""
    if variant.runtime == "onnxruntime":
        return OrtSession(path, threads=threads, precision=variant.precision)
    if variant.runtime == "openvino":
        return OpenVinoSession(
            path, threads=threads, precision=variant.precision, streams=streams, keep_compiled=keep_compiled
        )
    raise ValueError(f"no session for runtime {variant.runtime!r}")


def compiled_dir() -> Path:
    """Where OpenVINO keeps compiled models, in vitrine's runtime cache."""
    return runtime_dir() / "openvino-compiled"


def model_file(folder: str | os.PathLike, stem: str = "model") -> Path:
    """The model file in an exported folder: OpenVINO's IR (``.xml``) when there, else ``.onnx``."""
    folder = Path(folder)
    for name in (f"{stem}.xml", f"{stem}.onnx"):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no {stem}.xml or {stem}.onnx in {folder}")

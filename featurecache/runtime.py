"""Which library runs the extractor's forward pass: TensorFlow, or OpenVINO on a CPU.

`auto` picks OpenVINO on a machine without a GPU when the `openvino` package is
installed (`pip install -e '.[runtime]'`), TensorFlow otherwise. Gradient work
(robustness, attacks) always runs on TensorFlow.

With OpenVINO the Extractor builds the same Keras graph as with TensorFlow (in
float32), converts it once per process (`openvino.convert_model`) and compiles
it for the CPU with the compute precision set explicitly
(INFERENCE_PRECISION_HINT: f32, or bf16 when asked; left to itself OpenVINO
picks bf16 on CPUs that have it). float32 features from the two runtimes agree
within float32 rounding; bfloat16 features do not, so a cache's identity names
the runtime whenever its precision is not float32 (`precision_runtime`).

A batch is split into one chunk per asynchronous infer request (THROUGHPUT
hint: one stream per core group), and the chunks run at once; the last chunk of
a batch is padded to the compiled size.

No TensorFlow or OpenVINO import at module level.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from featurecache.errors import SettingError

RUNTIMES = ("auto", "tensorflow", "openvino")
INSTALL = "pip install -e '.[runtime]' (or pip install 'openvino>=2025.0')"
# compute precision -> OpenVINO's INFERENCE_PRECISION_HINT
OV_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


def openvino_module():
    """The `openvino` module, or None when it is not installed (or blocked: sys.modules['openvino'] = None)."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def resolve_runtime(runtime: str) -> str:
    """auto -> openvino (installed, no GPU) or tensorflow; openvino without the package is one UserError."""
    from featurecache.precision import gpu_device_present

    if runtime not in RUNTIMES:
        raise SettingError(f"runtime={runtime!r} is not one of {', '.join(RUNTIMES)}")
    if runtime == "auto":
        return "openvino" if not gpu_device_present() and openvino_module() is not None else "tensorflow"
    if runtime == "openvino" and openvino_module() is None:
        raise SettingError(f"runtime='openvino' needs the openvino package, which is not installed: {INSTALL}")
    return runtime


def identity_runtime(runtime: str, precision: str) -> str:
    """The runtime as part of a cache's identity: "" in float32 (both runtimes give the same features within
    float32 rounding), the runtime's name otherwise (bfloat16 rounds differently on each)."""
    return "" if precision == "float32" else runtime


_CONVERTED: dict[tuple, object] = {}  # settings -> converted openvino.Model: converted once per process


def model_cache_dir() -> Path:
    """Where converted models are kept between processes: FEATURECACHE_OPENVINO_CACHE, else
    $XDG_CACHE_HOME/featurecache/openvino (~/.cache/...). Set FEATURECACHE_OPENVINO_CACHE=off to convert every time."""
    where = os.environ.get("FEATURECACHE_OPENVINO_CACHE")
    if where:
        return Path(where)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "featurecache" / "openvino"


def convert(keras_model, key: tuple):
    """`keras_model` as an OpenVINO model: converted once per process for the same `key` (the extractor's
    recorded settings, which name the weights' and model file's digests), and kept on disk as IR, in
    float32, under the digest of `key` and the library versions."""
    if key not in _CONVERTED:
        ov = openvino_module()
        import keras

        name = hashlib.sha256(repr((key, ov.__version__, keras.__version__)).encode()).hexdigest()[:32]
        folder = model_cache_dir()
        xml = folder / f"{name}.xml"
        model = None
        if os.environ.get("FEATURECACHE_OPENVINO_CACHE") != "off" and xml.is_file():
            try:
                model = ov.Core().read_model(xml)
            except Exception:  # noqa: BLE001 - a damaged entry is converted again
                model = None
        if model is None:
            model = quiet_convert(keras_model)
            if os.environ.get("FEATURECACHE_OPENVINO_CACHE") != "off":
                save_ir(model, xml)
        _CONVERTED[key] = model
    return _CONVERTED[key]


def quiet_convert(keras_model):
    """`openvino.convert_model` of a Keras model, without TensorFlow's and Keras' chatter."""
    from featurecache.tfimport import quiet_fd2

    with warnings.catch_warnings(), quiet_fd2():
        warnings.simplefilter("ignore")  # Keras' note that the input is passed as a list, not by name
        return openvino_module().convert_model(keras_model)


def save_ir(model, xml: Path) -> None:
    """Write model.xml and model.bin (float32 weights) beside each other, renamed into place (.bin first);
    a cache folder that cannot be written is skipped."""
    ov = openvino_module()
    tmp = xml.with_name(f"{xml.stem}.{os.getpid()}.tmp.xml")
    try:
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
        os.replace(tmp, xml)
    except OSError:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


class OpenVinoRunner:
    """A converted model compiled for the CPU; call it on a batch of any size (its first dim).

    A full batch of `batch_size` rows is split into one chunk per infer request, run side by side
    (`start_async`). The compiled shape is static (a dynamic batch ran 30% slower here):
    a shorter batch (a split's last) runs in chunks of the next power of two, each size compiled
    once, the last chunk padded."""

    def __init__(self, model, precision: str, batch_size: int, threads: int | None = None):
        ov = openvino_module()
        if precision not in OV_PRECISIONS:
            raise SettingError(f"precision={precision!r} runs on TensorFlow only; pass runtime='tensorflow' "
                               f"or precision={' or '.join(OV_PRECISIONS)}")
        self.model, self.core = model, ov.Core()
        self.config = {"INFERENCE_PRECISION_HINT": OV_PRECISIONS[precision], "PERFORMANCE_HINT": "THROUGHPUT"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self.batch_size = batch_size
        self.requests = 0        # infer requests OpenVINO runs at once; read from the first compiled model
        self._compiled: dict[int, list] = {}  # rows per request -> that compiled model's infer requests

    def _requests(self, rows: int) -> list:
        """The infer requests of the model compiled for `rows` rows each (compiled on first use)."""
        if rows not in self._compiled:
            model = self.model.clone()
            dims = [d.get_length() for d in list(model.inputs[0].get_partial_shape())[1:]]
            model.reshape([rows, *dims])
            compiled = self.core.compile_model(model, "CPU", self.config)
            self.requests = self.requests or max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._compiled[rows] = [compiled.create_infer_request() for _ in range(self.requests)]
        return self._compiled[rows]

    def chunk_rows(self, n: int) -> int:
        """Rows per infer request for a call of `n` rows."""
        requests = self.requests or 2  # known after the first compile; guessed until then
        full = max(1, -(-self.batch_size // requests))
        if n >= full * requests:
            return full
        return min(full, 1 << (max(1, -(-n // requests)) - 1).bit_length())

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(n, ...) -> (n, D) float32, in chunks of a compiled size run side by side."""
        n = len(images)
        c = self.chunk_rows(n)
        requests, outs = self._requests(c), []
        for first in range(0, n, c * len(requests)):
            running = []
            try:
                for request, start in zip(requests, range(first, n, c)):
                    chunk = images[start : start + c]
                    if len(chunk) < c:  # the compiled shape is static: pad the last chunk, drop the extra rows after
                        chunk = np.concatenate([chunk, np.zeros((c - len(chunk), *chunk.shape[1:]), chunk.dtype)])
                    request.start_async({0: np.ascontiguousarray(chunk)})
                    running.append(request)
            finally:  # also on Ctrl-C: no request may still run while the interpreter exits
                for request in running:
                    request.wait()
            outs.extend(request.get_output_tensor(0).data.copy() for request in running)
        return np.concatenate(outs)[:n].reshape(n, -1).astype(np.float32, copy=False)

"""What the hardware runs well: compute precision and batch size defaults.

`auto` is exact on a CPU: float32, whatever the CPU supports (bfloat16 changes
the features by more than rounding; ask for it with `--precision bfloat16`).
On a GPU it picks bfloat16 at compute capability 8.0 and up, float16 on 7.x,
float32 otherwise (docs/performance.md says why).
"""

from __future__ import annotations

import functools
import math

from pathlib import Path


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def gpu_device_present() -> bool:
    """Whether this machine has a GPU device node TensorFlow could use; answered without importing TensorFlow,
    so that a run with nothing to compute never loads it."""
    import glob

    return bool(glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/dxg"))


@functools.lru_cache(maxsize=None)
def gpu_capability() -> tuple[int, int] | None:
    """Compute capability of the first GPU TensorFlow sees, or None."""
    if not gpu_device_present():
        return None
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return tuple(details.get("compute_capability", (0, 0)))


def resolve_precision(precision: str) -> str:
    if precision != "auto":
        return precision
    cap = gpu_capability()
    if cap is not None:
        if cap >= (8, 0):
            return "bfloat16"
        return "float16" if cap >= (7, 0) else "float32"
    return "float32"  # on a CPU only asked-for bfloat16 is used: auto stays exact


def default_batch_size(precision: str, model_size: int, runtime: str = "tensorflow") -> int:
    """512 images at 32 px, then proportionally fewer so a batch's activations stay about the
    same size (64 px: 128, 128 px: 32, 224 px: 8); OpenVINO, which splits a batch over its infer
    requests, takes at least 16. GPUs take 256. docs/performance.md has the measurements behind
    these numbers."""
    if gpu_capability() is not None:
        return 256
    rows = 512 * (32 / max(model_size, 32)) ** 2
    return int(max(16 if runtime == "openvino" else 8, 2 ** round(math.log2(rows))))

"""What the hardware runs well: compute precision and batch size defaults.

`auto` picks bfloat16 on CPUs with AVX-512 BF16 or AMX (oneDNN runs VGG16
about 1.9x faster than float32 there, at 32 and at 64 px; see
`default_batch_size`), bfloat16 on GPUs of compute capability 8.0 and up,
float16 on 7.x, float32 otherwise.
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


@functools.lru_cache(maxsize=None)
def gpu_capability() -> tuple[int, int] | None:
    """Compute capability of the first GPU TensorFlow sees, or None."""
    from extract.tfimport import tensorflow

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
    return "bfloat16" if cpu_has_bf16() else "float32"


def default_batch_size(precision: str, model_size: int) -> int:
    """Batch 128 up to 64 px, then proportionally fewer images so a batch's activations stay
    about the same size (128 px: 32, 224 px: 8). GPUs take 256.

    Measured with `python -m bench.sweep --sizes 32,64 --precisions bfloat16,float32
    --batches 32,64,128,256` on the 2-core AVX-512 BF16 CPU (VGG16, images/s per 2
    CPU-seconds, which other work on the machine disturbs least):

        bfloat16 32 px: 698 / 701 / 741 / 753     float32 32 px: 361 / 385 / 383 / 379
        bfloat16 64 px: 186 / 187 / 191 / 189     float32 64 px:  97 /  98 /  98 /  98

    128 is within 2% of the best everywhere; 256 gains under 2% at 32 px for twice the
    activations. Peak memory of extract on 1,000 images: 0.83 GB at 32 px (batch 128),
    0.93 GB at 128 px (batch 32).
    """
    if gpu_capability() is not None:
        return 256
    rows = 128 * (64 / max(model_size, 64)) ** 2
    return int(max(8, 2 ** round(math.log2(rows))))

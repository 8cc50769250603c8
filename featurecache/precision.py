"""What the hardware runs well: compute precision and batch size defaults.

`auto` picks bfloat16 on CPUs with AVX-512 BF16 or AMX (oneDNN runs VGG16
about 1.9x faster than float32 with AVX-512 BF16 alone, 4-9x with AMX; see
`default_batch_size` and `make bench`), bfloat16 on GPUs of compute capability 8.0 and up,
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
    return "bfloat16" if cpu_has_bf16() else "float32"


def default_batch_size(precision: str, model_size: int) -> int:
    """512 images at 32 px, then proportionally fewer so a batch's activations stay about the
    same size (64 px: 128, 128 px: 32, 224 px: 8). GPUs take 256.

    Measured with `python -m bench.sweep --sizes 32,64 --precisions bfloat16,float32
    --batches ...` (VGG16, random weights, best of interleaved rounds, images/s), on two
    2-core CPUs:

        Xeon with AMX (this default's reason)     EPYC with AVX-512 BF16, no AMX
        batch:     64 / 128 / 256 / 512           32 / 64 / 128 / 256
        bf16 32 px 1079 / 1322 / 1435 / 1595      698 / 701 / 741 / 753
        bf16 64 px  613 /  677 /  707 /  729      186 / 187 / 191 / 189
        f32  32 px    - /  374 /  393 /  405      361 / 385 / 383 / 379

    With AMX the convolutions are so fast that per-batch costs show: 512 beats 128 by 20% at
    32 px; without AMX, anything from 128 up is within 2%. At 64 px and up the gain from
    bigger batches is under 8%, not worth twice the activations. Peak memory of extract on
    1,000 images stays within 1.3x from 32 px to 128 px (`make bench`).
    """
    if gpu_capability() is not None:
        return 256
    rows = 512 * (32 / max(model_size, 32)) ** 2
    return int(max(8, 2 ** round(math.log2(rows))))

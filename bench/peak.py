"""The machine's measured peak: the best GFLOP/s of large square matrix multiplies.

This is what TensorFlow's own matmul (oneDNN on x86) reaches on this machine in
this run, in float32 and in bfloat16, not a datasheet figure.
"""

from __future__ import annotations

import time


def matmul_gflops(dtype: str, sizes=(2048, 4096), repeats: int = 4) -> dict:
    """Best GFLOP/s of (n x n) @ (n x n) in `dtype` over `sizes`, `repeats`, and B as is or
    transposed (oneDNN is a few % faster with one or the other): the best real matmul we can get."""
    from featurecache.tfimport import tensorflow

    tf = tensorflow()
    best = {"gflops": 0.0, "n": 0, "seconds": 0.0}
    for n in sizes:
        g = tf.random.Generator.from_seed(0)
        a = tf.cast(g.normal([n, n]), dtype)
        b = tf.cast(g.normal([n, n]), dtype)
        for tb in (False, True):
            # reduce to one number inside the graph: the timing is the matmul, not a copy out
            mm = tf.function(lambda a, b, tb=tb: tf.reduce_sum(tf.cast(tf.matmul(a, b, transpose_b=tb)[:1, :1], tf.float32)))
            mm(a, b).numpy()  # trace and warm up
            for _ in range(repeats):
                t = time.perf_counter()
                mm(a, b).numpy()
                s = time.perf_counter() - t
                g_s = 2 * n**3 / s / 1e9
                if g_s > best["gflops"]:
                    best = {"gflops": g_s, "n": n, "transpose_b": tb, "seconds": s}
    return {"dtype": dtype, **best}

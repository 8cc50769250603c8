"""Import TensorFlow and Keras once, without their C++ start-up chatter.

TensorFlow writes oneDNN notices and "no CUDA driver" lines straight to file
descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says. They are not
for our users: stderr is pointed at /dev/null for the import and the first
device query only. Python errors are raised after it is restored, as usual.
Set FEATURECACHE_TF_LOGS=1 to see everything.

Python's cyclic garbage collector is paused during the import, and what it
loaded is then frozen (`gc.freeze`): those modules live as long as the
process, so no later collection needs to walk their millions of objects
(docs/performance.md has the numbers).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys


@contextlib.contextmanager
def fd2_to_devnull():
    """Point file descriptor 2 at /dev/null for the block: what C++ libraries (TensorFlow, Ray's core)
    write below Python's sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_fd2():
    """`fd2_to_devnull` for TensorFlow's start-up, unless FEATURECACHE_TF_LOGS is set."""
    if os.environ.get("FEATURECACHE_TF_LOGS"):
        yield
        return
    with fd2_to_devnull():
        yield


@functools.lru_cache(maxsize=None)
def tensorflow():
    """The `tensorflow` module, imported quietly, with the GPU list already probed."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with quiet_fd2():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
            import keras  # noqa: F401 - loads the Keras backend inside the quiet window
    finally:
        if enabled:
            gc.enable()
    gc.freeze()  # everything loaded so far stays for the life of the process: no collection need walk it
    return tf


def keras():
    """The `keras` module (Keras 3 on the TensorFlow backend), imported quietly."""
    tensorflow()
    import keras as k

    return k

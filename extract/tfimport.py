"""Import TensorFlow and Keras once, without their C++ start-up chatter.

TensorFlow writes oneDNN notices and "no CUDA driver" lines straight to file
descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says. They are not
for our users: stderr is pointed at /dev/null for the import and the first
device query only. Python errors are raised after it is restored, as usual.
Set FEATURECACHE_TF_LOGS=1 to see everything.

Start-up time matters: `extract` imports TensorFlow once per run, `classify`
once for the MLP. Three things keep it short, measured on a 2-core CPU:
- Python's cyclic garbage collector is paused during the import, and what it
  loaded is then frozen (`gc.freeze`): those modules live as long as the
  process, yet each collection walked their few million objects again
  (import 2.9 -> 2.5 s; process exit 0.75 -> 0.1 s).
- Keras's optional scikit-learn wrappers and plotting helpers, which this
  project never uses, are not loaded with it: Keras guards those imports
  because both packages are optional for it, and `_SkipKerasExtras` makes them
  fail for those two Keras modules only (import 2.5 -> 1.6 s where scikit-learn
  and matplotlib were not loaded yet; other importers get them as usual).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.abc
import os
import sys

# Keras modules whose scikit-learn / matplotlib imports are optional and unused here
_KERAS_EXTRAS = ("keras.src.wrappers", "keras.src.visualization")


class _SkipKerasExtras(importlib.abc.MetaPathFinder):
    """Refuse `sklearn` and `matplotlib` imports made by `_KERAS_EXTRAS`, only while TensorFlow loads."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ("sklearn", "matplotlib"):
            return None
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # up to the module whose import statement this is
        importer = frame.f_globals.get("__name__", "") if frame is not None else ""
        if importer.startswith(_KERAS_EXTRAS):
            raise ImportError(f"{name} is optional for {importer} and not loaded by featurecache", name=name)
        return None


@contextlib.contextmanager
def _quiet_fd2():
    if os.environ.get("FEATURECACHE_TF_LOGS"):
        yield
        return
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


@functools.lru_cache(maxsize=None)
def tensorflow():
    """The `tensorflow` module, imported quietly, with the GPU list already probed."""
    enabled = gc.isenabled()
    skip = _SkipKerasExtras()
    gc.disable()
    sys.meta_path.insert(0, skip)
    try:
        with _quiet_fd2():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
            import keras  # noqa: F401 - loads the Keras backend inside the quiet window
    finally:
        sys.meta_path.remove(skip)
        if enabled:
            gc.enable()
    gc.freeze()  # everything loaded so far stays for the life of the process: no collection need walk it
    return tf


def keras():
    tensorflow()
    import keras as k

    return k

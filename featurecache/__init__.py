"""featurecache: the contract every stage shares.

    featurecache.errors     UserError (one line, exit 1), SettingError (a setting, in Python's terms)
                            and `reason` (a short cause)
    featurecache.command    the command layer's click classes: a library error -> one line naming the flag
    featurecache.cli        `featurecache` / `python -m featurecache`: every stage as a subcommand
    featurecache.files      Staged / atomic_path / write_text (atomic writes), sha256,
                            check_writable, versions
    featurecache.cache      the HDF5 feature cache: format, `write_cache`, `read_cache`,
                            `read_attrs`, `verify_cache`, `Cache`, `SplitData`, `default_cache` (which cache
                            and why), `latest`, `set_latest`, `caches_in`;
                            streaming: `split_shapes`, `iter_rows` (chunks of rows, with views), `CacheFile`
                            (a cache opened once, so a file renamed over it is never read)
    featurecache.backbones  the name -> Keras application table, `POOLINGS`, `PRECISIONS`
    featurecache.extractor  `Extractor`: pixels -> features, built from extract's settings
                            or from a cache's attributes; owns input size and weights checks
    featurecache.images     photos: `load_image` (decode to RGB), `walk_images` (a folder's images),
                            `source_image` (the picture behind a cache row), `ImageProblem`
    featurecache.cifar      CIFAR-10's batch files read safely (`CifarFiles`, `parse_cifar_batch`)
    featurecache.precision  what the hardware runs well: precision and batch-size defaults
    featurecache.tfimport   TensorFlow and Keras, imported once and quietly
    featurecache.progress   `progress`: a bar on a terminal, a plain line every ~10% or 30 s in a log

`extract` (images -> features/), `classify` (features/ -> reports/), `predict`
and `bench` import these and nothing private of each other. Importing this
package, `errors`, `files` or `cache` never imports TensorFlow.

From Python (a notebook), the API (featurecache.api, docs/python-api.md), loaded at first use:

    featurecache.extract(data_dir, backbone=..., out=..., **settings) -> Cache
    featurecache.load(path) -> Cache
    featurecache.train(cache, model="lr", **params) -> Run
    featurecache.load_run(path or "best", reports=..., features=...) -> Run
    run.predict(images), run.export(folder)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's Python-side info logs; see featurecache.tfimport

__version__ = "0.2.0"

# the API's names, imported from featurecache.api at first use: importing this package stays cheap
API = ("extract", "load", "train", "load_run", "Run", "Predictions")


def __getattr__(name: str):
    if name in API:
        from featurecache import api

        return getattr(api, name)
    raise AttributeError(f"module 'featurecache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(API))

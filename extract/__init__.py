"""featurecache, stage 1: run a frozen ImageNet CNN over a data set once and cache its features.

Importing this package is cheap: TensorFlow is imported only by `extract.pipeline`
and `extract.backbones` when a model is built, so `classify` can read caches
through `extract.cache` without it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's Python-side info logs; see extract.tfimport

__version__ = "0.1.0"

"""featurecache, stage 1: run a frozen ImageNet CNN over a data set once and cache its features.

    extract.datasets   image sources: CIFAR-10 (python layout) and photo folders, read batch by batch
    extract.pipeline   the extraction run: loader -> Extractor -> checkpoint parts -> HDF5 cache
    extract.config     ExtractConfig, every setting and its default
    extract.cli        `python -m extract`

Importing this package is cheap: TensorFlow is imported only when a model is built.
"""

from featurecache import __version__  # noqa: F401

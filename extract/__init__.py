"""featurecache, stage 1: run a frozen ImageNet CNN over a data set once and cache its features.

    extract.datasets   which image source a path holds (`load_dataset`), read batch by batch
    extract.data       Dataset, Split, Batch: what every image source returns
    extract.cifar      CIFAR-10 (python layout, its archive, or Keras' download)
    extract.folders    folders of photos with one subfolder per class (optionally under train/, test/)
    extract.index      the photo folders' content-hash index, `<cache>.index.json`
    extract.pipeline   the extraction run: loader -> Extractor -> checkpoint parts -> HDF5 cache
    extract.config     ExtractConfig, every setting and its default
    extract.cli        `python -m extract`

Importing this package is cheap: TensorFlow is imported only when a model is built.
"""

from featurecache import __version__  # noqa: F401

"""featurecache, stage 2: train and compare classifiers on a feature cache; reads features/, writes reports/.

    python -m classify --model lr|rf|mlp     one classifier: curves, reports, confusion, gallery, run record, model
    featurecache compare                     lr, rf and mlp on one or more caches: comparison table and chart
    featurecache learning-curve              test accuracy against training-set size

The commands are `classify.cli`, `classify.options` and `classify.commands` (the command layer, the only
modules here that import click); everything else returns data and raises featurecache.errors.

Importing this package is cheap and never imports TensorFlow; only the MLP does.
"""

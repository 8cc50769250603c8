"""featurecache, stage 2: train and compare classifiers on a feature cache; reads features/, writes reports/.

    python -m classify --model lr|rf|mlp     one classifier: curves, reports, confusion, gallery, run record, model
    featurecache compare                     lr, rf and mlp on one or more caches: comparison table and chart
    featurecache learning-curve              test accuracy against training-set size

By role:

    classify.training   the model table (specs: lr, rf, mlp, knn), the cache's rows and splits, fit and score
    classify.runs       the run record (RunRecord), its files and names, saved models, MLflow tracking
    classify.reporting  the report page and every figure
    classify.workflows  compare, learning curve, active learning, few-shot, audit, robust model
    classify.pixel      the end-to-end model, attacks, adversarial training, predict, export

The commands are `classify.cli`, `classify.options` and `classify.commands` (the command layer, the only
modules here that import click); everything else returns data and raises featurecache.errors.

Importing this package is cheap and never imports TensorFlow; only the MLP does.
"""

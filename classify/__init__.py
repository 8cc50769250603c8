"""featurecache, stage 2: train and compare classifiers on a feature cache; reads features/, writes reports/.

    python -m classify --model lr|rf|mlp     one classifier: curves, reports, confusion, gallery, run record, model
    python -m classify.workflows.compare               lr, rf and mlp on one or more caches: comparison table and chart
    python -m classify.workflows.learning_curve        test accuracy against training-set size

Importing this package is cheap and never imports TensorFlow; only the MLP does.
"""

"""The classify commands besides `classify` itself: each module a click command and its `main`, a thin
layer over the library (workflows, pixel, reporting). `featurecache.cli` loads them by name, only when run.

    compare  learning_curve  active  fewshot  audit  robustness  report  predict (predict and export)
"""

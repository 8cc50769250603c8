"""classify.training: the model table, the cache's rows and splits, fitting and scoring."""

"""classify.runs: the run record, its files, names and identity, saved models, tracking."""

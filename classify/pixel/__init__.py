"""classify.pixel: the end-to-end model, attacks, robustness, predict and export."""

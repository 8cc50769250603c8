"""featurecache, stage 3: predict classes of new images with a saved classify run."""

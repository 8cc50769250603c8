"""featurecache, stage 3: predict classes of new images with a saved classify run.

    predict.images   collect_images (files and folders, extract's walker), predict_images (plain data)
    predict.cli      `python -m predict`
"""

from predict.images import collect_images, predict_images

__all__ = ["collect_images", "predict_images"]

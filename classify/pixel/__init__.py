"""classify.pixel: work in pixel space through the frozen backbone: the end-to-end model, attacks and
adversarial training of the head, predict on new images, export for deployment."""

"""Importers of the authors' PyTorch checkpoints (L2M-GAN, StarGAN v2) into model bundles.

Importing this package does not import keras or torch: ``official`` does, when used.
"""

from keras_l2mgan.importers.checkpoint import FORMATS, read_torch_checkpoint

__all__ = ["FORMATS", "read_torch_checkpoint"]

"""The three L2M-GAN networks: generator, style encoder (with style transformer), discriminator."""

from keras_l2mgan.networks.discriminator import Discriminator
from keras_l2mgan.networks.generator import Generator
from keras_l2mgan.networks.style_encoder import StyleEncoder

__all__ = ["Discriminator", "Generator", "StyleEncoder"]

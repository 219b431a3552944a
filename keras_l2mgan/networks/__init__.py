"""The L2M-GAN networks: generator, style encoder (with style transformer), discriminator, and
StarGAN v2's face-landmark network FAN (its heatmaps give the generator its masks)."""

from keras_l2mgan.networks.discriminator import Discriminator
from keras_l2mgan.networks.fan import FAN, load_fan_state_dict
from keras_l2mgan.networks.generator import Generator
from keras_l2mgan.networks.style_encoder import StyleEncoder

__all__ = ["FAN", "Discriminator", "Generator", "StyleEncoder", "load_fan_state_dict"]

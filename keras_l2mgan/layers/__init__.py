"""Building blocks shared with StarGAN v2, written with ``keras.ops`` only."""

from keras_l2mgan.layers.blocks import AdainResBlk, ResBlk
from keras_l2mgan.layers.highpass import HighPass
from keras_l2mgan.layers.normalization import AdaIN, InstanceNorm

__all__ = ["AdaIN", "AdainResBlk", "HighPass", "InstanceNorm", "ResBlk"]

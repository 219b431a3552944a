"""L2MGAN: the three networks under one config, and the edit itself.

The edit moves only the attribute-related part of the style code:
    s~ = s_un + s_re + alpha * (s~_re - s_re);   x~ = G(x, s~)
alpha = 0 reconstructs, 1 is the full edit, > 1 extrapolates.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_l2mgan.config import L2MConfig, get_preset
from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE
from keras_l2mgan.networks import Discriminator, Generator, StyleEncoder


def _as_column(alpha, dtype):
    """alpha as a scalar or an (N, 1) column, so it broadcasts over the style code."""
    alpha = ops.cast(ops.convert_to_tensor(alpha), dtype)
    return ops.reshape(alpha, (-1, 1)) if len(alpha.shape) == 1 else alpha


def edit_style(style_encoder: StyleEncoder, x, source, target, alpha=1.0):
    """The edited style code s~ of images x moved from `source` to `target` with strength alpha."""
    _, s_un, s_re, s_tilde_re = style_encoder(x, source, target)
    return s_un + s_re + _as_column(alpha, s_re.dtype) * (s_tilde_re - s_re)


def edit(generator: Generator, style_encoder: StyleEncoder, x, source, target, alpha=1.0,
         masks=None):
    """Edit images x (N, S, S, 3 in [-1, 1]) from domain `source` to `target`.

    source and target are (N,) integer labels; alpha is a float or an (N,) array.
    """
    return generator(x, edit_style(style_encoder, x, source, target, alpha), masks)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class L2MGAN(keras.Model):
    """Generator, style encoder (with the style transformer) and discriminator of one config."""

    def __init__(self, config: L2MConfig | dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = L2MConfig()
        if isinstance(config, dict):
            config = L2MConfig.from_dict(config)
        self.config = config
        c = config
        self.generator = Generator(c.img_size, c.style_dim, c.w_hpf, c.dim_in, c.max_conv_dim,
                                   name="generator")
        self.style_encoder = StyleEncoder(c.img_size, c.style_dim, c.num_domains, c.dim_in,
                                          c.max_conv_dim, name="style_encoder")
        self.discriminator = Discriminator(c.img_size, c.num_domains, c.dim_in, c.max_conv_dim,
                                           name="discriminator")
        self.built = True

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> L2MGAN:
        return cls(get_preset(name, **overrides))

    def edit(self, x, source, target, alpha=1.0, masks=None):
        """See :func:`edit`. Labels may be ints (one domain for the whole batch) or (N,) arrays."""
        x = ops.convert_to_tensor(x)
        batch = x.shape[0]
        source = self._labels(source, batch, "source")
        target = self._labels(target, batch, "target")
        return edit(self.generator, self.style_encoder, x, source, target, alpha, masks)

    def _labels(self, labels, batch, argument):
        from keras_l2mgan.networks.common import check_labels

        check_labels(labels, self.config.num_domains, argument)
        labels = ops.convert_to_tensor(labels, dtype="int32")
        if len(labels.shape) == 0 and batch is not None:
            labels = ops.full((batch,), labels, dtype="int32")
        return labels

    def call(self, inputs):
        """An image batch alone reconstructs it in domain 0 (what fit() calls while building);
        a dict with images, source_domain, target_domain and alpha edits."""
        if isinstance(inputs, dict):
            return self.edit(inputs["images"], inputs["source_domain"],
                             inputs["target_domain"], inputs.get("alpha", 1.0))
        zeros = ops.zeros((ops.shape(inputs)[0],), dtype="int32")
        return self.generator(inputs, self.style_encoder.encode(inputs, zeros))

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("config"), **config)

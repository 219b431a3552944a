"""The style encoder with L2M-GAN's style transformer (decomposer + per-domain transformers)."""

from __future__ import annotations

import keras
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE, dense
from keras_l2mgan.networks import common as shared


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class StyleMLP(keras.layers.Layer):
    """Dense -> ReLU -> Dense -> ReLU -> Dense, all style_dim wide (decomposer and transformers)."""

    def __init__(self, style_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.style_dim = style_dim
        self.dense_layers = [dense(style_dim, name=f"dense{i}") for i in range(3)]

    def build(self, input_shape):
        for layer in self.dense_layers:
            layer.build((None, self.style_dim))
        self.built = True

    def call(self, s):
        h = ops.relu(self.dense_layers[0](s))
        h = ops.relu(self.dense_layers[1](h))
        return self.dense_layers[2](h)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "style_dim": self.style_dim}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class StyleEncoder(keras.Model):
    """Image + source label -> style code s, split and moved towards a target domain.

    ``call(x, source, target)`` returns ``(s, s_un, s_re, s_tilde_re)`` where
    s = head[source](trunk(x)), s_un = decomposer(s), s_re = s - s_un and
    s_tilde_re = transformer[target](s_re).
    """

    def __init__(self, img_size: int = 256, style_dim: int = 64, num_domains: int = 2,
                 dim_in: int | None = None, max_conv_dim: int = 512, **kwargs):
        super().__init__(**kwargs)
        from keras_l2mgan.config import L2MConfig  # validates the arguments

        self.config = L2MConfig(img_size=img_size, style_dim=style_dim, num_domains=num_domains,
                                dim_in=dim_in, max_conv_dim=max_conv_dim)
        self.img_size, self.style_dim, self.num_domains = img_size, style_dim, num_domains
        self.dim_in, self.max_conv_dim = dim_in, max_conv_dim
        self.from_rgb, self.blocks, self.last_conv, trunk_dim = shared.build_trunk(
            self.config, "shared")
        self.heads = [dense(style_dim, name=f"head{i}") for i in range(num_domains)]
        for head in self.heads:
            head.build((None, trunk_dim))
        self.decomposer = StyleMLP(style_dim, name="decomposer")
        self.transformers = [StyleMLP(style_dim, name=f"transformer{i}")
                             for i in range(num_domains)]
        for mlp in [self.decomposer, *self.transformers]:
            mlp.build((None, style_dim))
        self.built = True

    def encode(self, x, source):
        """The full style code s of x in its source domain, shape (N, style_dim)."""
        shared.check_images(x, self.img_size, "x")
        shared.check_labels(source, self.num_domains, "source")
        features = shared.run_trunk(self.from_rgb, self.blocks, self.last_conv, x)
        stacked = ops.stack([head(features) for head in self.heads], axis=1)
        return shared.select_by_label(stacked, source, self.num_domains)

    def decompose(self, s):
        """Split s into (s_un, s_re); s == s_un + s_re by construction."""
        s_un = self.decomposer(s)
        return s_un, s - s_un

    def transform(self, s_re, target):
        """Move the attribute-related code to the target domain: s~_re."""
        shared.check_labels(target, self.num_domains, "target")
        stacked = ops.stack([mlp(s_re) for mlp in self.transformers], axis=1)
        return shared.select_by_label(stacked, target, self.num_domains)

    def __call__(self, x, source, target=None, **kwargs):
        # Checked here: Layer.__call__ turns NumPy labels into tensors before call() sees them.
        shared.check_labels(source, self.num_domains, "source")
        if target is not None:
            shared.check_labels(target, self.num_domains, "target")
        return super().__call__(x, source, target, **kwargs)

    def call(self, x, source, target=None):
        s = self.encode(x, source)
        s_un, s_re = self.decompose(s)
        s_tilde_re = self.transform(s_re, source if target is None else target)
        return s, s_un, s_re, s_tilde_re

    def get_config(self):
        return {**super().get_config(), "img_size": self.img_size, "style_dim": self.style_dim,
                "num_domains": self.num_domains, "dim_in": self.dim_in,
                "max_conv_dim": self.max_conv_dim}

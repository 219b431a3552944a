"""The multi-task discriminator: one real/fake logit per domain, selected by label."""

from __future__ import annotations

import keras
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE, conv
from keras_l2mgan.networks import common as shared


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Discriminator(keras.Model):
    """``call(x, labels)`` -> the (N,) logit of each image for its own domain."""

    def __init__(self, img_size: int = 256, num_domains: int = 2, dim_in: int | None = None,
                 max_conv_dim: int = 512, **kwargs):
        super().__init__(**kwargs)
        from keras_l2mgan.config import L2MConfig  # validates the arguments

        self.config = L2MConfig(img_size=img_size, num_domains=num_domains, dim_in=dim_in,
                                max_conv_dim=max_conv_dim)
        self.img_size, self.num_domains = img_size, num_domains
        self.dim_in, self.max_conv_dim = dim_in, max_conv_dim
        self.from_rgb, self.blocks, self.last_conv, trunk_dim = shared.build_trunk(
            self.config, "main")
        self.classifier = conv(num_domains, 1, name="classifier")
        self.classifier.build((None, 1, 1, trunk_dim))
        self.built = True

    def domain_logits(self, x):
        """Logits for every domain, shape (N, num_domains)."""
        shared.check_images(x, self.img_size, "x")
        features = shared.run_trunk(self.from_rgb, self.blocks, self.last_conv, x)
        # A 1x1 conv on a 1x1 map is a Dense; run it as the conv so the weights keep its layout.
        logits = self.classifier(ops.reshape(features, (-1, 1, 1, features.shape[-1])))
        return ops.reshape(logits, (-1, self.num_domains))

    def __call__(self, x, labels, **kwargs):
        # Checked here: Layer.__call__ turns NumPy labels into tensors before call() sees them.
        shared.check_labels(labels, self.num_domains, "labels")
        return super().__call__(x, labels, **kwargs)

    def call(self, x, labels):
        return shared.select_by_label(self.domain_logits(x), labels, self.num_domains)

    def get_config(self):
        return {**super().get_config(), "img_size": self.img_size,
                "num_domains": self.num_domains, "dim_in": self.dim_in,
                "max_conv_dim": self.max_conv_dim}

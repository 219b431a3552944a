"""One train step per backend: the only backend-specific code of training.

Each module exposes ``train_step`` and follows the split of Keras' own trainers
(keras/src/backend/<backend>/trainer.py): the losses come from keras_l2mgan.losses, the module
only takes gradients and applies them. One iteration is a D step, then a G+E step that sees
the updated D.
"""

from __future__ import annotations

import importlib


def get_trainer(backend: str):
    """The ``train_step(model, *args)`` function of a Keras backend."""
    backends = ("tensorflow", "jax", "torch")  # each has a module of the same name here
    if backend not in backends:
        raise ValueError(f"no L2M-GAN trainer for backend {backend!r}; use one of {backends}")
    return importlib.import_module(f"keras_l2mgan.trainers.{backend}").train_step


def extra_logs(optimizers) -> dict:
    """The dynamic loss scale of a LossScaleOptimizer, when there is one."""
    scale = getattr(optimizers.g_optimizer, "dynamic_scale", None)
    return {} if scale is None else {"loss_scale": scale.value}

"""Gradients of a scalar function of Keras variables and one input, on the running backend.

The trainers differentiate inside their own train steps; tests that check which weights a loss
term reaches need the same three routes in a form they can call directly.
"""

from __future__ import annotations

import keras
import numpy as np


def loss_gradients(loss_fn, variables, x) -> tuple[float, list[np.ndarray], np.ndarray]:
    """(loss_fn(x), d loss / d variables, d loss / d x) as NumPy; a weight the loss does not
    reach gets zeros (TensorFlow and torch report None for it)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(x)
        *grads, grad_x = tape.gradient(loss, [v.value for v in variables] + [x])
    elif backend == "jax":
        import jax

        def traced(values, x):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return loss_fn(x)

        loss, (grads, grad_x) = jax.value_and_grad(traced, argnums=(0, 1))(
            [v.value for v in variables], x)
    elif backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        for v in variables:
            v.value.grad = None
        loss = loss_fn(x)
        loss.backward()
        grads, grad_x = [v.value.grad for v in variables], x.grad
    else:
        raise NotImplementedError(backend)
    as_numpy = [np.zeros(v.shape, "float32") if g is None else keras.ops.convert_to_numpy(g)
                for v, g in zip(variables, grads, strict=True)]
    return float(keras.ops.convert_to_numpy(loss)), as_numpy, keras.ops.convert_to_numpy(grad_x)

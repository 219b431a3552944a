"""Everything that differs between Keras backends: one module per backend, picked here.

Keras picks a trainer per backend once (keras/src/backend/<backend>/trainer.py); so does this
package. Outside it, only the CLI (choosing the backend) and export (choosing a process) name a
backend: the rest of the code asks ``get_trainer(backend)`` or ``current_trainer()`` and calls
the same names on whichever module comes back. Each of tensorflow.py, jax.py and torch.py
defines exactly these (``HOOKS``; tests/test_trainers.py checks it):

``train_step(model, *args)``
    One iteration: a D step, then a G+E step that sees the updated D. The losses come from
    keras_l2mgan.losses; the module only takes gradients and applies them. TF and torch are
    called as ``train_step(model, data)``, JAX as ``train_step(model, state, data)``.
``SUPPORTS_JIT``
    Whether ``compile(jit_compile=True)`` may be honoured (False: the step always runs eagerly).
``SUPPORTS_MIXED_FLOAT16``
    Whether ``--precision mixed_float16`` (dynamic loss scaling) trains on this backend.
``SUPPORTS_MULTI_DEVICE`` / ``SUPPORTS_MULTI_WORKER``
    Whether ``--devices N`` (N > 1) / ``--multi-worker`` can run on this backend.
``default_jit() -> bool``
    What ``--jit`` means when not given.
``list_devices() -> list[str]``
    The devices work can be placed on, as "cpu:0", "gpu:0", "cuda:0"... (``l2m info`` prints
    them; ``--devices`` picks among them).
``data_parallel(devices) -> context manager``
    Sets up data-parallel training over ``devices``; the model is built inside the context.
``multi_worker_strategy()``
    The tf.distribute strategy of ``--multi-worker`` (TF_CONFIG's workers).
``sync_state(model)``
    Copies the state a jitted step keeps outside the Keras variables back into them, before
    anything reads the variables (checkpoints, the EMA copy).
``symbolic_build_inputs(model, iterator, data_batch) -> (iterator, data_batch)``
    What the model's ``_maybe_symbolic_build`` passes on to Keras (a TF workaround).
``convolution(inputs, kernel, padding, bias=None)``
    The networks' stride-1 convolution (NHWC inputs, HWIO kernel, "same" or "valid", an
    optional per-channel bias): keras.ops.conv plus the bias, except on JAX, whose kernel
    gradient on CPU (and in bfloat16 its forward pass and input gradient too) is computed
    faster by hand as matmuls per kernel tap, and torch, which convolves the NHWC memory as
    channels_last without copying it and adds the bias inside the convolution.
``instance_normalize(x, epsilon, scale=None, offset=None)``
    Instance normalisation of NHWC x over H and W in float32, then the optional per-channel
    affine step (scale and offset, both or neither): keras.ops on TensorFlow and JAX, torch's
    fused kernels on torch (group_norm on channels_last memory from 32x32 pixels).
``downsample(x)``
    The networks' 2x2 average pooling of NHWC x: keras.ops.average_pool, except on torch, which
    pools the NHWC memory as channels_last (keras.ops copies it to NCHW and back).
``upsample(x)``
    The networks' nearest-neighbour 2x up-sampling of NHWC x: keras.ops.repeat, except on
    torch, which runs its own nearest-neighbour kernel on the NHWC memory as channels_last.
``feed_in_memory(batches)``
    What fit() is given for ``data.memory.MemoryBatches``: on TensorFlow its static-shape
    tf.data stream (fed as a plain generator, the step ran ~2x slower), elsewhere a generator
    of (batch,) tuples (fit() takes generators, not other iterables).
``fused_adam_step`` / ``fused_moving_average``
    None, or the optimizer's Adam update of all variables at once
    ``(optimizer, grads, variables, learning_rate)`` / its EMA update of all averages at once
    ``(averages, variables, momentum)``; None: Keras' per-variable updates, which TF and JAX
    compile into the step anyway. torch runs eagerly, op by op, so it fuses them.

Importing this package imports no backend; ``get_trainer`` imports one backend's module (and
so keras and that backend's library).
"""

from __future__ import annotations

import importlib
from types import ModuleType

BACKENDS = ("tensorflow", "jax", "torch")  # each has a module of the same name here
HOOKS = ("train_step", "SUPPORTS_JIT", "SUPPORTS_MIXED_FLOAT16", "SUPPORTS_MULTI_DEVICE",
         "SUPPORTS_MULTI_WORKER", "default_jit", "list_devices", "data_parallel",
         "multi_worker_strategy", "sync_state", "symbolic_build_inputs", "convolution",
         "instance_normalize", "downsample", "upsample", "feed_in_memory", "fused_adam_step",
         "fused_moving_average")


def get_trainer(backend: str) -> ModuleType:
    """The module of a Keras backend's train step and hooks (see this package's docstring)."""
    if backend not in BACKENDS:
        raise ValueError(f"no L2M-GAN trainer for backend {backend!r}; use one of {BACKENDS}")
    return importlib.import_module(f"keras_l2mgan.trainers.{backend}")


def generator_feed(batches):
    """``feed_in_memory`` for backends without tf.data: a generator of (batch,) tuples."""
    return ((batch,) for batch in batches)


def current_trainer() -> ModuleType:
    """The trainer module of the backend keras runs on."""
    import keras

    return get_trainer(keras.backend.backend())


def extra_logs(optimizers) -> dict:
    """The dynamic loss scale of a LossScaleOptimizer, when there is one."""
    scale = getattr(optimizers.g_optimizer, "dynamic_scale", None)
    return {} if scale is None else {"loss_scale": scale.value}

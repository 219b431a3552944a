"""TensorFlow train step: GradientTape, with R1's input gradient taken by a nested tape.

Also the TensorFlow side of the hooks listed in keras_l2mgan/trainers/__init__.py:
tf.distribute for --devices and --multi-worker, and a workaround for Keras' symbolic build
under a strategy.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import keras
import tensorflow as tf

from keras_l2mgan import losses
from keras_l2mgan.layers.common import add_bias, downsample_with_ops, upsample_with_ops
from keras_l2mgan.layers.normalization import instance_normalize_with_ops
from keras_l2mgan.trainers import extra_logs
from keras_l2mgan.training.optimizers import inner

SUPPORTS_JIT = True
SUPPORTS_MIXED_FLOAT16 = True
SUPPORTS_MULTI_DEVICE = True  # MirroredStrategy
SUPPORTS_MULTI_WORKER = True  # MultiWorkerMirroredStrategy
fused_adam_step = None  # Keras' per-variable updates, compiled into the step
fused_moving_average = None


def _r1(discriminator):
    def r1_fn(x, labels):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = discriminator(x, labels)
            # The sum must be taken inside the tape, or the gradient comes back None.
            total = tf.reduce_sum(tf.cast(logits, tf.float32))
        return logits, losses.r1_from_gradients(tape.gradient(total, x))

    return r1_fn


def _gradients(tape, loss, variables):
    grads = tape.gradient(loss, variables)
    return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]


def _clipped_across_replicas(optimizer, grads, num_replicas: int):
    """Gradients whose all-reduced sum is the global gradient clipped to the optimizer's
    global_clipnorm (unchanged with one replica or no clipping).

    Keras clips each replica's share before it all-reduces them, so a cap meant for the global
    gradient would be put on every partial sum. Here the shares are summed first, the global
    norm (of the unscaled gradient, under loss scaling) sets one factor, and each replica hands
    on 1/n of the clipped sum: the optimizer's own clip then finds nothing to do, and its
    all-reduce gives back the clipped global gradient. The price is one more all-reduce.
    """
    clip_norm = inner(optimizer).global_clipnorm
    if num_replicas == 1 or not clip_norm:
        return grads
    summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    scale = getattr(optimizer, "dynamic_scale", None)
    norm = tf.linalg.global_norm(summed) / (1.0 if scale is None else tf.cast(scale, tf.float32))
    factor = tf.minimum(1.0, clip_norm / norm) / num_replicas
    return [g * tf.cast(factor, g.dtype) for g in summed]


def _in_multi_worker_mode(strategy) -> bool:
    """Whether Keras reduces this strategy's step outputs across workers (the test Keras'
    TensorFlow trainer makes)."""
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def train_step(model, data):
    optimizers = model.optimizer
    g_opt, d_opt = optimizers.g_optimizer, optimizers.d_optimizer
    strategy = tf.distribute.get_strategy()
    # Keras all-reduce-SUMS gradients across replicas, so each replica's loss is divided by
    # their number: the sum of per-replica means is then the global mean.
    per_replica = 1.0 / strategy.num_replicas_in_sync
    x, source, target, unchanged = model.unpack_batch(data)
    x = tf.cast(x, tf.float32)

    masks = losses.generator_masks(model, x)  # None without a FAN; both steps share them
    x_fake = losses.make_fakes(model, x, source, target, masks)
    with tf.GradientTape() as tape:
        d_loss, d_logs = losses.discriminator_loss(model, x, x_fake, source, target,
                                            model.loss_weights, _r1(model.discriminator))
        scaled = d_opt.scale_loss(d_loss * per_replica)
    d_grads = _gradients(tape, scaled, optimizers.d_variables)
    d_opt.apply(_clipped_across_replicas(d_opt, d_grads, strategy.num_replicas_in_sync),
                optimizers.d_variables)

    with tf.GradientTape() as tape:
        g_loss, g_logs = losses.generator_loss(model, x, source, target, model.loss_weights, masks,
                                               unchanged)
        scaled = g_opt.scale_loss(g_loss * per_replica)
    g_grads = _gradients(tape, scaled, optimizers.g_variables)
    g_opt.apply(_clipped_across_replicas(g_opt, g_grads, strategy.num_replicas_in_sync),
                optimizers.g_variables)

    logs = {**d_logs, **g_logs, **extra_logs(optimizers)}
    if _in_multi_worker_mode(strategy):
        # Keras 3 reduces each output across workers with reduce("MEAN", v, axis=0), which
        # fails on scalars ("Invalid reduction dimension 0 for input with 0 dimensions",
        # keras-team/keras#20585); as shape (1,) they reduce to the scalar global mean.
        logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def feed_in_memory(batches):
    """fit()'s input for in-memory batches: their static-shape tf.data stream (see
    MemoryBatches.as_tf_dataset; as a plain generator the step ran ~2x slower)."""
    return batches.as_tf_dataset()


def default_jit() -> bool:
    """XLA with a GPU, not on CPU, where it made the 64 px train step 1.6-3.2x slower (README,
    Speed)."""
    return bool(tf.config.list_logical_devices("GPU"))


def list_devices() -> list[str]:
    """GPUs when there are any, else the CPU (logical) devices, as "gpu:0", "cpu:0"."""
    return keras.distribution.list_devices()


def data_parallel(devices: list[str]) -> AbstractContextManager:
    """MirroredStrategy's scope: variables made inside it are mirrored on every device."""
    return tf.distribute.MirroredStrategy(devices).scope()


def multi_worker_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy over the workers of TF_CONFIG (each one's local GPUs, else
    its CPU, are its replicas). Must run before anything else initialises TensorFlow's runtime
    in this process."""
    return tf.distribute.MultiWorkerMirroredStrategy()


def sync_state(model) -> None:
    """Nothing to do: the step updates the Keras variables themselves."""


def symbolic_build_inputs(model, iterator, data_batch) -> tuple:
    """Under a tf.distribute strategy, Keras 3's TensorFlow trainer opens an extra iterator
    on the training data and all-reduces its first batch, only to read shapes. That
    (a) fails on dict batches under MultiWorkerMirroredStrategy ("Attempt to convert a
    value ({'images': PerReplica:...}) with an unsupported type (<class 'dict'>) to a
    Tensor", keras-team/keras#20329) and (b) consumes one pass of the seeded shuffle,
    so training would start on another order than a one-device run with the same
    seed. This model is built by __init__ and compile(): the element spec is enough."""
    if iterator is not None and model._distribute_strategy is not None:
        return None, iterator.data_adapter.get_tf_dataset().element_spec
    return iterator, data_batch


def convolution(inputs, kernel, padding: str, bias=None):
    """keras.ops.conv at stride 1, plus the bias (see trainers/__init__.py)."""
    return add_bias(keras.ops.conv(inputs, kernel, strides=1, padding=padding), bias)


instance_normalize = instance_normalize_with_ops
downsample = downsample_with_ops
upsample = upsample_with_ops

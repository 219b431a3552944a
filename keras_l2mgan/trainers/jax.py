"""JAX train step: stateless, threading both optimizers' state through fit's jitted step.

fit() hands over (trainable, non_trainable, optimizer, metrics) values; the optimizer values
are those of GANOptimizers (own, G+E optimizer, D optimizer), split and re-joined here. Every
forward pass runs in a StatelessScope mapping variables to the values being traced; the draw
of target labels updates the seed generator's state the same way.
"""

from __future__ import annotations

import contextlib
import functools
from typing import NoReturn

import jax
import jax.numpy as jnp
import keras
from keras import StatelessScope

from keras_l2mgan import losses
from keras_l2mgan.layers.common import add_bias, downsample_with_ops, upsample_with_ops
from keras_l2mgan.layers.normalization import instance_normalize_with_ops
from keras_l2mgan.trainers import generator_feed

SUPPORTS_JIT = True
# No dynamic loss scaling for two optimizers here: --precision mixed_bfloat16 instead.
SUPPORTS_MIXED_FLOAT16 = False
SUPPORTS_MULTI_DEVICE = True  # keras.distribution.DataParallel
SUPPORTS_MULTI_WORKER = False  # --multi-worker is TensorFlow's MultiWorkerMirroredStrategy
fused_adam_step = None  # Keras' per-variable updates, compiled into the step
fused_moving_average = None


def _r1(discriminator):
    def r1_fn(x, labels):
        def total(images):
            logits = discriminator(images, labels)
            return jnp.sum(logits.astype(jnp.float32)), logits

        (_, logits), grads = jax.value_and_grad(total, has_aux=True)(x)
        return logits, losses.r1_from_gradients(grads)

    return r1_fn


def _network_step(model, optimizer, variables, values, mapping, optimizer_values, loss_fn):
    """Differentiate loss_fn w.r.t. `variables` and apply `optimizer` statelessly."""
    own_mapping = list(zip(optimizer.variables, optimizer_values, strict=True))

    def scaled_loss(trainable):
        state = mapping + list(zip(variables, trainable, strict=True)) + own_mapping
        with StatelessScope(state_mapping=state):
            loss, logs = loss_fn()
            return optimizer.scale_loss(loss), logs

    (_, logs), grads = jax.value_and_grad(scaled_loss, has_aux=True)(values)
    new_values, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, values)
    return new_values, optimizer_values, logs


def train_step(model, state, data):
    trainable, non_trainable, optimizer_values, metrics_values = state
    optimizers = model.optimizer
    own, g_opt_values, d_opt_values = optimizers.split_values(optimizer_values)
    model_variables = model.trainable_variables
    value_of = {id(v): value for v, value in zip(model_variables, trainable, strict=True)}
    g_vars, d_vars = optimizers.g_variables, optimizers.d_variables
    g_values = [value_of[id(v)] for v in g_vars]
    d_values = [value_of[id(v)] for v in d_vars]
    non_trainable_vars = model.non_trainable_variables
    nt_mapping = list(zip(non_trainable_vars, non_trainable, strict=True))

    with StatelessScope(state_mapping=nt_mapping + list(zip(g_vars, g_values, strict=True))
                        + list(zip(d_vars, d_values, strict=True))) as scope:
        x, source, target, unchanged = model.unpack_batch(data)
        x = x.astype(jnp.float32)
        masks = losses.generator_masks(model, x)  # None without a FAN; both steps share them
        x_fake = losses.make_fakes(model, x, source, target, masks)
    non_trainable = [scope.get_current_value(v) for v in non_trainable_vars]
    nt_mapping = list(zip(non_trainable_vars, non_trainable, strict=True))
    weights = model.loss_weights

    d_values, d_opt_values, d_logs = _network_step(
        model, optimizers.d_optimizer, d_vars, d_values,
        nt_mapping + list(zip(g_vars, g_values, strict=True)), d_opt_values,
        lambda: losses.discriminator_loss(model, x, x_fake, source, target, weights,
                                   _r1(model.discriminator)))
    g_values, g_opt_values, g_logs = _network_step(
        model, optimizers.g_optimizer, g_vars, g_values,
        nt_mapping + list(zip(d_vars, d_values, strict=True)), g_opt_values,
        lambda: losses.generator_loss(model, x, source, target, weights, masks, unchanged))

    logs = {**d_logs, **g_logs}
    scale = getattr(optimizers.g_optimizer, "dynamic_scale", None)
    if scale is not None:
        position = [id(v) for v in optimizers.g_optimizer.variables].index(id(scale))
        logs["loss_scale"] = g_opt_values[position]
    new_value = {id(v): value for v, value in zip(g_vars + d_vars, g_values + d_values,
                                                    strict=True)}
    trainable = [new_value[id(v)] for v in model_variables]
    optimizer_values = list(own) + list(g_opt_values) + list(d_opt_values)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


feed_in_memory = generator_feed


def default_jit() -> bool:
    """Always: eager JAX dispatches op by op, many times slower."""
    return True


def list_devices() -> list[str]:
    """GPUs (or TPUs) when there are any, else the CPU devices, as "gpu:0", "cpu:0"."""
    return keras.distribution.list_devices()


def data_parallel(devices: list[str]) -> contextlib.AbstractContextManager:
    # A global setting: variables and batches built from now on are placed over `devices`.
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return contextlib.nullcontext()


def multi_worker_strategy() -> NoReturn:
    raise NotImplementedError("--multi-worker runs on TensorFlow only (SUPPORTS_MULTI_WORKER)")


def sync_state(model) -> None:
    """fit() keeps the jitted step's state outside the variables until the epoch ends: copy it
    back before the variables are read (checkpoints, the EMA copy)."""
    model.jax_state_sync()


def symbolic_build_inputs(model, iterator, data_batch) -> tuple:
    """Unchanged (Keras' JAX trainer does not call _maybe_symbolic_build)."""
    return iterator, data_batch


def convolution(inputs, kernel, padding: str, bias=None):
    """A stride-1 NHWC convolution with hand-written gradients, faster than XLA's on CPU.

    XLA on CPU computes a convolution's kernel gradient 3-4x slower than its forward pass: the
    3x3 convolutions of official_64 at batch 8 ran forward at 97 GFLOP/s and kernel gradient at
    20-23 GFLOP/s (`python benchmarks/jax_step_parts.py convs`; TensorFlow's ran at 92-115),
    while the same gradient as k*k matmuls of shifted inputs by output gradients ran at
    48-72 GFLOP/s. In bfloat16 XLA's convolutions gain nothing over float32 while its matmuls
    run 2.7x faster, so bfloat16 convolutions with an odd kernel and SAME padding also run
    forward (and their input gradient, the same convolution with the kernel flipped) as one
    matmul per kernel tap. Every rule is ordinary JAX code, so R1's gradient of a gradient goes
    through them.
    """
    kernel = keras.ops.convert_to_tensor(kernel)  # a Variable's value, autocast under bf16
    outputs = _convolution(jnp.asarray(inputs, kernel.dtype), kernel, padding.upper())
    return add_bias(outputs, bias)


def _lax_convolution(inputs, kernel, padding: str):
    return jax.lax.conv_general_dilated(inputs, kernel, (1, 1), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _runs_by_taps(kernel, padding: str) -> bool:
    """bfloat16, SAME and an odd kernel of more than one tap: where matmuls per tap win."""
    taps_h, taps_w = kernel.shape[:2]
    return (kernel.dtype == jnp.bfloat16 and padding == "SAME" and taps_h * taps_w > 1
            and taps_h % 2 == 1 and taps_w % 2 == 1)


def _pad_same(inputs, taps_h: int, taps_w: int):
    """XLA's SAME padding for stride 1: k - 1 pixels of zeros, the odd one at the end."""
    pad_h, pad_w = (taps_h - 1) // 2, (taps_w - 1) // 2
    return jnp.pad(inputs, ((0, 0), (pad_h, taps_h - 1 - pad_h),
                            (pad_w, taps_w - 1 - pad_w), (0, 0)))


def _tap_offsets(taps_h: int, taps_w: int):
    return jnp.array([(i, j) for i in range(taps_h) for j in range(taps_w)], jnp.int32)


def _taps_convolution(inputs, kernel):
    """SAME convolution as a scan over kernel taps: out += shifted input @ kernel[i, j],
    accumulated in float32, one shifted copy alive at a time."""
    taps_h, taps_w, channels_in, channels_out = kernel.shape
    padded = _pad_same(inputs, taps_h, taps_w)
    batch, height, width = inputs.shape[:3]

    def add_tap(total, offset):
        shifted = jax.lax.dynamic_slice(padded, (0, offset[0], offset[1], 0),
                                        (batch, height, width, channels_in))
        tap_kernel = jax.lax.dynamic_slice(kernel, (offset[0], offset[1], 0, 0),
                                           (1, 1, channels_in, channels_out))
        return total + jnp.dot(shifted.reshape(-1, channels_in), tap_kernel[0, 0],
                               preferred_element_type=jnp.float32), None

    start = jnp.zeros((batch * height * width, channels_out), jnp.float32)
    total, _ = jax.lax.scan(add_tap, start, _tap_offsets(taps_h, taps_w))
    return total.reshape(batch, height, width, channels_out).astype(inputs.dtype)


def _convolution_value(inputs, kernel, padding: str):
    if _runs_by_taps(kernel, padding):
        return _taps_convolution(inputs, kernel)
    return _lax_convolution(inputs, kernel, padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _convolution(inputs, kernel, padding: str):
    return _convolution_value(inputs, kernel, padding)


def _convolution_forward(inputs, kernel, padding: str):
    return _convolution_value(inputs, kernel, padding), (inputs, kernel)


def _convolution_backward(padding: str, saved, output_gradient):
    inputs, kernel = saved
    if _runs_by_taps(kernel, padding):
        # Stride 1, SAME, odd kernel: the input gradient is the same convolution of the output
        # gradient with the kernel flipped in space and its channels swapped.
        flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
        input_gradient = _convolution(output_gradient, flipped, padding)
    else:
        _, input_vjp = jax.vjp(lambda x: _lax_convolution(x, kernel, padding), inputs)
        (input_gradient,) = input_vjp(output_gradient)
    return input_gradient, _kernel_gradient(inputs, output_gradient, kernel, padding)


def _kernel_gradient(inputs, output_gradient, kernel, padding: str):
    """dL/dkernel[i, j] = sum over batch and pixels of the input shifted by tap (i, j) times
    the output gradient: one (C_out x pixels) @ (pixels x C_in) matmul per tap, with the output
    gradient transposed once (XLA's matmul contracting the rows of both operands ran 1.2x
    slower in float32 and 1.8x in bfloat16).

    The taps run in a scan, one shifted copy of the input at a time. Written as k*k separate
    matmuls, XLA made every tap's copy long before its matmul (many convolutions' copies were
    alive together), and the celeba_hq_256 step asked for 27.1 GiB of temporaries, where it
    now asks for 9.2 (XLA's own kernel gradient: 8.9; `python benchmarks/jax_step_memory.py`).
    """
    taps_h, taps_w, channels_in, channels_out = kernel.shape
    if taps_h * taps_w == 1:  # a 1x1 convolution's kernel gradient is one matmul
        gradient = jax.lax.dot_general(inputs.reshape(-1, channels_in),
                                       output_gradient.reshape(-1, channels_out),
                                       (((0,), (0,)), ((), ())),
                                       preferred_element_type=jnp.float32)
        return gradient.reshape(kernel.shape).astype(kernel.dtype)
    if padding == "SAME":
        inputs = _pad_same(inputs, taps_h, taps_w)
    batch, out_h, out_w = output_gradient.shape[:3]
    gradient_by_channel = output_gradient.reshape(-1, channels_out).T

    def tap_gradient(_, offset):
        shifted = jax.lax.dynamic_slice(inputs, (0, offset[0], offset[1], 0),
                                        (batch, out_h, out_w, channels_in))
        return None, jnp.dot(gradient_by_channel, shifted.reshape(-1, channels_in),
                             preferred_element_type=jnp.float32)

    _, taps = jax.lax.scan(tap_gradient, None, _tap_offsets(taps_h, taps_w))
    # (taps, C_out, C_in) -> (k_h, k_w, C_in, C_out)
    return jnp.transpose(taps, (0, 2, 1)).reshape(kernel.shape).astype(kernel.dtype)


_convolution.defvjp(_convolution_forward, _convolution_backward)


instance_normalize = instance_normalize_with_ops
downsample = downsample_with_ops
upsample = upsample_with_ops

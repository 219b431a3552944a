"""PyTorch train step: eager autograd; R1 by torch.autograd.grad(create_graph=True).

torch.compile cannot run R1's double backward, so the step stays eager. Training runs on one
device: keras.distribution does not exist for torch.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import NoReturn

import keras
import torch

from keras_l2mgan import losses
from keras_l2mgan.layers.common import add_bias
from keras_l2mgan.trainers import extra_logs, generator_feed

SUPPORTS_JIT = False  # jit_compile=True is turned off by L2MGAN.compile()
SUPPORTS_MIXED_FLOAT16 = True
SUPPORTS_MULTI_DEVICE = False
SUPPORTS_MULTI_WORKER = False


def _r1(discriminator):
    def r1_fn(x, labels):
        x = x.detach().requires_grad_(True)
        logits = discriminator(x, labels)
        (grads,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
        return logits, losses.r1_from_gradients(grads)

    return r1_fn


def _apply(optimizer, loss, variables) -> None:
    params = [v.value for v in variables]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
    with torch.no_grad():
        optimizer.apply(grads, variables)


def train_step(model, data):
    optimizers = model.optimizer
    g_opt, d_opt = optimizers.g_optimizer, optimizers.d_optimizer
    x, source, target, unchanged = model.unpack_batch(data)
    x = x.float()

    with torch.no_grad():
        masks = losses.generator_masks(model, x)  # None without a FAN; both steps share them
        x_fake = losses.make_fakes(model, x, source, target, masks)
    d_loss, d_logs = losses.discriminator_loss(model, x, x_fake, source, target, model.loss_weights,
                                        _r1(model.discriminator))
    _apply(d_opt, d_opt.scale_loss(d_loss), optimizers.d_variables)

    g_loss, g_logs = losses.generator_loss(model, x, source, target, model.loss_weights, masks,
                                           unchanged)
    _apply(g_opt, g_opt.scale_loss(g_loss), optimizers.g_variables)

    logs = {**d_logs, **g_logs, **extra_logs(optimizers)}
    return {k: v.detach() if hasattr(v, "detach") else v for k, v in logs.items()}


feed_in_memory = generator_feed


def default_jit() -> bool:
    return False


def list_devices() -> list[str]:
    """The CPU and every CUDA device, as "cpu:0", "cuda:0"."""
    return ["cpu:0"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def data_parallel(devices: list[str]) -> AbstractContextManager:
    raise ValueError(f"--devices {len(devices)}: multi-device training runs on the tensorflow "
                     "(MirroredStrategy) and jax (DataParallel) backends, not on torch")


def multi_worker_strategy() -> NoReturn:
    raise NotImplementedError("--multi-worker runs on TensorFlow only (SUPPORTS_MULTI_WORKER)")


def sync_state(model) -> None:
    """Nothing to do: the step updates the Keras variables themselves."""


def symbolic_build_inputs(model, iterator, data_batch) -> tuple:
    """Unchanged (Keras' torch trainer does not call _maybe_symbolic_build)."""
    return iterator, data_batch


def convolution(inputs, kernel, padding: str, bias=None):
    """A stride-1 NHWC convolution without layout copies, the bias added inside it (see
    trainers/__init__.py).

    keras.ops.conv makes NHWC inputs contiguous NCHW, then converts them to channels_last
    memory again: at 256 px those copies were 42 % of an edit (`benchmarks/torch_step_profile.py
    --kind edit`). An NHWC tensor seen through permute(0, 3, 1, 2) already is an NCHW tensor in
    channels_last memory, which torch convolves as it is; its output permuted back is
    contiguous NHWC. A bias added afterwards cost one more pass over each output and a sum over
    its gradient (0.3 s of an official_64 batch-8 step); torch's convolution does both itself.
    """
    rows, cols = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (rows % 2 == 0 or cols % 2 == 0):
        # Even kernels pad unevenly; keras.ops.conv pads the way the other backends do.
        return add_bias(keras.ops.conv(inputs, kernel, strides=1, padding=padding), bias)
    pad = (rows // 2, cols // 2) if padding == "same" else 0
    inputs, kernel = keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel)
    if bias is not None:
        bias = keras.ops.convert_to_tensor(bias)
    outputs = torch.nn.functional.conv2d(inputs.permute(0, 3, 1, 2), _channels_last_kernel(kernel),
                                         bias, padding=pad)
    return outputs.permute(0, 2, 3, 1)


def _channels_last_kernel(kernel):
    """An HWIO kernel as torch's OIHW weight in channels_last memory (O, H, W, I): one 2-D
    transpose of the (H*W*I, O) matrix. Seen through permute(3, 2, 0, 1) instead, the weight
    was copied to contiguous OIHW on every forward and again in every backward, a strided copy
    that took 4.6 s of a 256 px train step at batch 1 (`benchmarks/torch_step_profile.py`)."""
    rows, cols, channels_in, channels_out = kernel.shape
    by_output = kernel.reshape(-1, channels_out).t().contiguous()
    return by_output.view(channels_out, rows, cols, channels_in).permute(0, 3, 1, 2)


def _fused_adam_step(optimizer, grads, variables, learning_rate) -> None:
    """Keras' own torch Adam (torch._foreach ops over all variables), which Keras picks only for
    keras.optimizers.Adam itself: per-variable updates cost ~800 small ops a step."""
    with torch.no_grad():
        _KerasTorchAdam._parallel_update_step(optimizer, grads, variables, learning_rate)


try:  # a private Keras module: should a Keras release move it, Adam runs per variable again
    from keras.src.backend.torch.optimizers.torch_adam import Adam as _KerasTorchAdam
except ImportError:
    _KerasTorchAdam = None
fused_adam_step = None if _KerasTorchAdam is None else _fused_adam_step


def fused_moving_average(averages, variables, momentum) -> None:
    """average <- momentum * average + (1 - momentum) * variable, in place, all at once."""
    with torch.no_grad():
        torch._foreach_lerp_([a.value for a in averages], [v.value for v in variables],
                             1.0 - momentum)


def instance_normalize(x, epsilon: float, scale=None, offset=None):
    """Instance norm by torch's own kernels (one pass for the statistics, one fused backward):
    keras.ops' mean, var, subtract and multiply passes cost 3x its time in a 256 px edit.

    From 32x32 pixels up it runs as group_norm with one group per channel on the NHWC memory
    (channels_last): instance_norm copies its input to contiguous NCHW and returns NCHW, which
    the next convolution copied back to channels_last. At 8x64x64x128, norm + the next 3x3
    convolution took 104 ms this way against 204 ms; at 16x16x512 instance_norm was faster.

    The per-channel ``scale`` and ``offset`` (both or neither) go into instance_norm's kernel as
    its weight and bias, but not into group_norm's: torch 2.13's group_norm backward on
    channels_last input crashes the process (segmentation fault) when its weight needs a
    gradient (batch 2, 4 to 512 channels). There they are one fused multiply-add instead.
    """
    x = keras.ops.convert_to_tensor(x)
    if scale is not None:
        scale, offset = (keras.ops.convert_to_tensor(v).float() for v in (scale, offset))
    channels_first = x.float().permute(0, 3, 1, 2)
    if x.shape[1] * x.shape[2] < _GROUP_NORM_MIN_PIXELS:
        normalized = torch.nn.functional.instance_norm(channels_first, weight=scale, bias=offset,
                                                       eps=epsilon)
        return normalized.permute(0, 2, 3, 1).to(x.dtype)
    normalized = torch.nn.functional.group_norm(channels_first, x.shape[3], eps=epsilon)
    normalized = normalized.permute(0, 2, 3, 1)
    if scale is not None:
        normalized = torch.addcmul(offset, normalized, scale)
    return normalized.to(x.dtype)


_GROUP_NORM_MIN_PIXELS = 32 * 32


def downsample(x):
    """2x2 average pooling of the NHWC memory as channels_last: keras.ops.average_pool made it
    contiguous NCHW and returned NCHW memory, which the next convolution copied back (11 copies
    of each of 8 activation sizes in a 256 px train step at batch 1)."""
    x = keras.ops.convert_to_tensor(x)
    return torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)


def upsample(x):
    """Nearest-neighbour 2x up-sampling of the NHWC memory as channels_last, by torch's kernel:
    keras.ops.repeat twice wrote two copies (and their gradients summed back through reshapes),
    0.7 s of an official_64 batch-8 step against torch's 0.06 s for the same pixels."""
    x = keras.ops.convert_to_tensor(x)
    return torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), scale_factor=2,
                                           mode="nearest").permute(0, 2, 3, 1)

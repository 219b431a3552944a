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


def convolution(inputs, kernel, padding: str):
    """A stride-1 NHWC convolution without layout copies (see trainers/__init__.py).

    keras.ops.conv makes NHWC inputs contiguous NCHW, then converts them to channels_last
    memory again: at 256 px those copies were 42 % of an edit (`benchmarks/torch_step_profile.py
    --kind edit`). An NHWC tensor seen through permute(0, 3, 1, 2) already is an NCHW tensor in
    channels_last memory, which torch convolves as it is; its output permuted back is
    contiguous NHWC.
    """
    rows, cols = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (rows % 2 == 0 or cols % 2 == 0):
        # Even kernels pad unevenly; keras.ops.conv pads the way the other backends do.
        return keras.ops.conv(inputs, kernel, strides=1, padding=padding)
    pad = (rows // 2, cols // 2) if padding == "same" else 0
    inputs, kernel = keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel)
    outputs = torch.nn.functional.conv2d(inputs.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1),
                                         padding=pad)
    return outputs.permute(0, 2, 3, 1)


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


def instance_normalize(x, epsilon: float):
    """Instance norm by torch's own kernel (one pass for the statistics, one fused backward):
    keras.ops' mean, var, subtract and multiply passes cost 3x its time in a 256 px edit."""
    x = keras.ops.convert_to_tensor(x)
    normalized = torch.nn.functional.instance_norm(x.float().permute(0, 3, 1, 2), eps=epsilon)
    return normalized.permute(0, 2, 3, 1).to(x.dtype)

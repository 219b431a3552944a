"""Tried and dropped: 3x3 SAME convolutions in JAX as Winograd F(2x2, 3x3), against XLA's.

    python benchmarks/jax_winograd.py

Winograd needs 16 multiplies per 2x2 output tile where a direct 3x3 convolution needs 36, so
its 16 batched matmuls (tiles x C_in @ C_in x C_out) do 2.25x fewer FLOPs; the input, kernel and
output transforms are additions. Written in plain jax.numpy, JAX differentiates it (R1 needs
the gradient of a gradient) without a hand-written rule. Printed: GFLOP/s counted as a direct
convolution's FLOPs (so above-peak numbers are possible), forward and forward + both gradients,
float32 and bfloat16, beside XLA's convolution and torch's float32 one (the official step's).
Result on 2026-12-04 (benchmarks/results/jax_winograd_2026-12-04.txt): forward 1.0-1.9x XLA's,
but forward + gradients 0.5-0.8x XLA's (the transposes of the strided tile slices): slower
where it counts, so the trainer does not use it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
from jax_step_parts import _median_time  # run from benchmarks/, like its siblings

INPUT_TRANSFORM = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
KERNEL_TRANSFORM = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
OUTPUT_TRANSFORM = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
REPEATS = 3  # timed calls per median, after one warm-up
SHAPES = [(8, 64, 256, 256), (8, 32, 512, 512), (8, 16, 512, 512), (8, 8, 512, 512)]


def _combine(coefficients, parts):
    """sum(c * part) skipping zero coefficients (most are 0 or +-1)."""
    total = None
    for coefficient, part in zip(coefficients, parts, strict=True):
        if coefficient == 0:
            continue
        term = part if coefficient == 1 else -part if coefficient == -1 else part * coefficient
        total = term if total is None else total + term
    return total


def winograd_convolution(x, kernel):
    """NHWC x (even height and width), HWIO 3x3 kernel, SAME padding, stride 1."""
    batch, height, width, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    tiles = [[padded[:, r:r + height:2, c:c + width:2] for c in range(4)] for r in range(4)]
    rows = [[_combine(INPUT_TRANSFORM[i], [tiles[r][c] for r in range(4)]) for c in range(4)]
            for i in range(4)]
    transformed = jnp.stack([_combine(INPUT_TRANSFORM[j], rows[i])
                             for i in range(4) for j in range(4)])
    k = kernel.astype(jnp.float32)
    kernel_rows = [[_combine(KERNEL_TRANSFORM[i], [k[r, c] for r in range(3)]) for c in range(3)]
                   for i in range(4)]
    kernel_t = jnp.stack([_combine(KERNEL_TRANSFORM[j], kernel_rows[i])
                          for i in range(4) for j in range(4)]).astype(x.dtype)
    products = jnp.einsum("tbhwc,tck->tbhwk", transformed, kernel_t,
                          preferred_element_type=jnp.float32)
    m = [[products[4 * i + j] for j in range(4)] for i in range(4)]
    half = [[_combine(OUTPUT_TRANSFORM[a], [m[i][j] for i in range(4)]) for j in range(4)]
            for a in range(2)]
    out = jnp.stack([jnp.stack([_combine(OUTPUT_TRANSFORM[b], half[a]) for b in range(2)], axis=3)
                     for a in range(2)], axis=2)  # (batch, height/2, 2, width/2, 2, C_out)
    return out.reshape(batch, height, width, kernel.shape[3]).astype(x.dtype)


def xla_convolution(x, kernel):
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 8, 5)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    error = jnp.max(jnp.abs(winograd_convolution(x, kernel) - xla_convolution(x, kernel)))
    print(f"max |winograd - xla| float32: {float(error):.2e}")
    for batch, size, channels_in, channels_out in SHAPES:
        x = rng.standard_normal((batch, size, size, channels_in)).astype(np.float32)
        kernel = (rng.standard_normal((3, 3, channels_in, channels_out)) * 0.05).astype(np.float32)
        flops = 2 * batch * size * size * 9 * channels_in * channels_out
        for dtype in (jnp.float32, jnp.bfloat16):
            xs, ks = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
            for name, convolve in (("xla", xla_convolution), ("winograd", winograd_convolution)):
                forward = jax.jit(convolve)
                both = jax.jit(lambda a, b, f=convolve: jax.vjp(f, a, b)[1](f(a, b)))
                seconds = _median_time(lambda f=forward, a=xs, b=ks: f(a, b).block_until_ready(),
                                       REPEATS)
                seconds_both = _median_time(lambda f=both, a=xs, b=ks: jax.block_until_ready(
                    f(a, b)), REPEATS)
                print(f"{size:3d} {channels_in}->{channels_out} {dtype.__name__:8} {name:8} "
                      f"forward {flops / seconds / 1e9:5.0f}  forward+grads "
                      f"{3 * flops / seconds_both / 1e9:5.0f} GFLOP/s", flush=True)
        xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
        kt = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous().requires_grad_()

        def torch_both(xt=xt, kt=kt):
            out = torch.nn.functional.conv2d(xt, kt, padding=1)
            torch.autograd.grad(out, [xt, kt], out.detach())

        print(f"{size:3d} {channels_in}->{channels_out} torch f32 forward+grads "
              f"{3 * flops / _median_time(torch_both, REPEATS) / 1e9:5.0f} GFLOP/s", flush=True)


if __name__ == "__main__":
    main()

"""Ways to run a bfloat16 3x3 SAME convolution in JAX on CPU, timed against each other and
against the official code's own float32 convolution (torch), in one process, round-robin.

    python benchmarks/jax_conv_variants.py [--repeats 5] [--xla-flags "..."]

Variants, each forward and forward + both gradients (jax.vjp), batch 8, the official_64 shapes:
- `xla conv` (bf16) and `xla conv f32`: jax.lax.conv_general_dilated (XLA's own convolution
  and gradients);
- `taps (scan)`: the trainer's hook (`keras_l2mgan.trainers.jax.convolution`): one matmul per
  kernel tap in a lax.scan, one shifted copy alive at a time;
- `hook f32`: the hook in float32 (XLA's forward and input gradient, the taps' kernel
  gradient); `taps f32`: the tap matmuls in float32 too;
- `im2col`: the k*k shifted copies side by side on the channel axis and one matmul with
  k*k*C_in rows of kernel (and one for the kernel gradient), more memory, bigger matmuls;
- `matmul peak`: one (pixels x C_in*9) @ (C_in*9 x C_out) bf16 matmul, the same FLOPs: what
  XLA's dot can give at best;
- `torch f32`: torch.nn.functional.conv2d in float32, what the official step runs.
GFLOP/s count 2*pixels*9*C_in*C_out per forward, 3x that for forward + both gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jax_step_parts import CONV_SHAPES  # noqa: E402  the official_64 3x3 shapes, batch 8


def _im2col_convolution(jnp, inputs, kernel):
    taps_h, taps_w, channels_in, channels_out = kernel.shape
    batch, height, width = inputs.shape[:3]
    padded = jnp.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    columns = jnp.concatenate([padded[:, i:i + height, j:j + width]
                               for i in range(taps_h) for j in range(taps_w)], axis=-1)
    out = jnp.dot(columns.reshape(-1, taps_h * taps_w * channels_in),
                  kernel.reshape(-1, channels_out), preferred_element_type=jnp.float32)
    return out.reshape(batch, height, width, channels_out).astype(inputs.dtype)


def variants(x, w) -> dict:
    import jax
    import jax.numpy as jnp

    from keras_l2mgan.trainers import jax as jax_trainer

    xs, ws = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)

    def lax_conv(a, b):
        return jax.lax.conv_general_dilated(a, b, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def taps(a, b):
        return jax_trainer._convolution(a, b, "SAME")

    def hook(a, b):
        return jax_trainer.convolution(a, b, "same")

    def taps_any_dtype(a, b):  # the tap matmuls for float32 too
        saved = jax_trainer._runs_by_taps
        jax_trainer._runs_by_taps = lambda kernel, padding: padding == "SAME"
        try:
            return jax_trainer._convolution(a, b, "SAME")
        finally:
            jax_trainer._runs_by_taps = saved

    def im2col(a, b):
        return _im2col_convolution(jnp, a, b)

    x32, w32 = jnp.asarray(x), jnp.asarray(w)
    calls = {}
    for name, conv, a, b in (("xla conv f32", lax_conv, x32, w32), ("hook f32", hook, x32, w32),
                             ("taps f32", taps_any_dtype, x32, w32), ("xla conv", lax_conv, xs, ws),
                             ("taps (scan)", taps, xs, ws), ("im2col", im2col, xs, ws)):
        forward = jax.jit(conv)

        def both(a, b, conv=conv):
            out, pullback = jax.vjp(conv, a, b)
            return pullback(out)

        both = jax.jit(both)
        calls[(name, "forward")] = lambda f=forward, a=a, b=b: f(a, b).block_until_ready()
        calls[(name, "fwd+grads")] = lambda f=both, a=a, b=b: jax.block_until_ready(f(a, b))
    rows, k = x.shape[0] * x.shape[1] * x.shape[2], 9 * x.shape[3]
    left = jnp.ones((rows, k), jnp.bfloat16)
    right = jnp.ones((k, w.shape[3]), jnp.bfloat16)
    peak = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    calls[("matmul peak", "forward")] = lambda: peak(left, right).block_until_ready()

    import torch

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_()

    def torch_forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, padding=1)

    def torch_both():
        out = torch.nn.functional.conv2d(xt, wt, padding=1)
        torch.autograd.grad(out, [xt, wt], out.detach())

    calls[("torch f32", "forward")] = torch_forward
    calls[("torch f32", "fwd+grads")] = torch_both
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--xla-flags", default="", help="XLA_FLAGS, set before jax loads")
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = args.xla_flags
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np

    results = []
    for batch, size, c_in, c_out in CONV_SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, size, size, c_in), dtype=np.float32)
        w = (rng.standard_normal((3, 3, c_in, c_out)) * 0.05).astype(np.float32)
        calls = variants(x, w)
        for function in calls.values():
            function()  # compile, first touch
        times: dict = {key: [] for key in calls}
        for _ in range(args.repeats):
            for key, function in calls.items():
                start = time.perf_counter()
                function()
                times[key].append(time.perf_counter() - start)
        flops = 2 * batch * size * size * 9 * c_in * c_out
        for (name, part), values in times.items():
            seconds = statistics.median(values)
            work = flops * (3 if part == "fwd+grads" else 1)
            row = {"shape": [batch, size, c_in, c_out], "variant": name, "part": part,
                   "seconds": round(seconds, 4), "gflop_per_s": round(work / seconds / 1e9, 1)}
            results.append(row)
            print(f"{str(row['shape']):22} {name:12} {part:10} {seconds * 1e3:8.1f} ms "
                  f"{row['gflop_per_s']:7.1f} GFLOP/s", flush=True)
    if args.out:
        from keras_l2mgan.atomic import write_file_atomic

        write_file_atomic(args.out, json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

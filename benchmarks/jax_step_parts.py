"""Where the JAX train step spends its time: parts of the step and single convolutions, each
timed against the same work on TensorFlow (and torch), to find what XLA on CPU does slower.

    python benchmarks/jax_step_parts.py convs [--repeats 5]
    python benchmarks/jax_step_parts.py step --backend jax --preset official_64 [--xla-flags ...]

`convs`: forward, and input + filter gradient, of the 3x3 convolutions of the official_64
networks at batch 8 (the shapes that dominate the step's FLOPs) in jax.jit, tf.function and
torch, all in one process and timed round-robin; medians of --repeats after a warm-up, GFLOP/s.
`step`: one configuration's full train step, and the step with the generator loss or R1
replaced by zero, so D step, G step and R1 get their own times. XLA_FLAGS given with
--xla-flags apply to that process (compare one flag at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (batch, size, c_in, c_out): the 3x3 convolutions of official_64 (dim_in 256, max 512).
CONV_SHAPES = [(8, 64, 256, 256), (8, 32, 256, 512), (8, 32, 512, 512), (8, 16, 512, 512),
               (8, 8, 512, 512)]


def _median_time(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _conv_parts(framework: str, x, w) -> dict:
    """{part: callable} of one 3x3 'same' convolution of NHWC x with HWIO w."""
    if framework == "jax":
        import jax

        def conv(x, w):
            return jax.lax.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

        fwd = jax.jit(conv)
        grads = jax.jit(jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1)))
        xs, ws = jax.device_put(x), jax.device_put(w)
        return {"forward": lambda: fwd(xs, ws).block_until_ready(),
                "backward (input + filter)": lambda: jax.block_until_ready(grads(xs, ws))}
    if framework == "tensorflow":
        import tensorflow as tf

        xs, ws = tf.constant(x), tf.constant(w)
        fwd = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))

        @tf.function
        def grads(x, w):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME"))
            return tape.gradient(y, [x, w])

        return {"forward": lambda: fwd(xs, ws).numpy(),
                "backward (input + filter)": lambda: [g.numpy() for g in grads(xs, ws)]}
    import torch

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().requires_grad_()
    wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous().requires_grad_()

    def forward():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, padding=1)

    def backward():
        torch.autograd.grad(torch.nn.functional.conv2d(xt, wt, padding=1).sum(), [xt, wt])

    return {"forward": forward, "backward (input + filter)": backward}


def conv_child(frameworks: list[str], repeats: int, batch_size: int) -> list[dict]:
    """All frameworks in this one process, timed round-robin per shape (load hits all alike)."""
    import numpy as np

    if "torch" in frameworks and os.environ.get("OMP_NUM_THREADS") == "1":
        import torch

        torch.set_num_threads(1)
    rows = []
    for _, size, c_in, c_out in CONV_SHAPES:
        batch = batch_size
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, size, size, c_in), dtype=np.float32)
        w = rng.standard_normal((3, 3, c_in, c_out), dtype=np.float32) * 0.05
        flops = 2 * batch * size * size * 9 * c_in * c_out
        calls = {(f, part): function for f in frameworks
                 for part, function in _conv_parts(f, x, w).items()}
        times: dict = {key: [] for key in calls}
        for function in calls.values():
            function()  # warm-up: compilation, first-touch allocations
        for _ in range(repeats):
            for key, function in calls.items():
                start = time.perf_counter()
                function()
                times[key].append(time.perf_counter() - start)
        for (framework, part), values in times.items():
            seconds = statistics.median(values)
            work = flops * (2 if part.startswith("backward") else 1)
            rows.append({"framework": framework, "shape": [batch, size, c_in, c_out],
                         "part": part, "seconds": round(seconds, 4),
                         "gflop_per_s": round(work / seconds / 1e9, 1)})
    return rows


def step_child(preset: str, precision: str, jit: bool, steps: int, batch: int) -> dict:
    """Full step, step without the G loss, step without R1: seconds (median of steps)."""
    import keras
    import numpy as np
    from keras import ops

    from keras_l2mgan import losses
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.config.set_dtype_policy(precision)
    rng = np.random.default_rng(0)
    size = get_preset(preset).img_size
    data = {"images": rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"),
            "labels": rng.integers(0, 2, batch).astype("int32")}

    def zero_g(model, x, *args, **kwargs):
        # Keeps every G/E weight in the graph (zero gradient) so the optimizer step is the same.
        total = ops.sum(ops.stack([ops.sum(w) for w in model.generator.trainable_weights
                                   + model.style_encoder.trainable_weights])) * 0.0
        return total, {"g_loss": total}

    def no_r1(discriminator):
        def r1_fn(x, labels):
            return discriminator(x, labels), ops.zeros(())
        return r1_fn

    results = {}
    for variant in ("full", "no G step losses", "no R1"):
        model = L2MGAN(get_preset(preset))
        model.compile(jit_compile=jit)
        trainer_module = sys.modules["keras_l2mgan.trainers." + keras.backend.backend()]
        # The trainers call losses.generator_loss through the losses module, so that is where
        # the G losses are swapped out; R1's function is the trainer module's own.
        saved_generator_loss, saved_r1 = losses.generator_loss, trainer_module._r1
        if variant == "no G step losses":
            losses.generator_loss = zero_g
        if variant == "no R1":
            trainer_module._r1 = no_r1
        try:
            results[variant] = _median_time(
                lambda m=model: m.fit(data, batch_size=batch, verbose=0), steps)
        finally:
            losses.generator_loss, trainer_module._r1 = saved_generator_loss, saved_r1
    return {k: round(v, 3) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("what", choices=("convs", "step"))
    parser.add_argument("--frameworks", default="jax,tensorflow,torch",
                        help="convs: comma-separated [%(default)s]")
    parser.add_argument("--backend", default="jax", help="step: Keras backend [%(default)s]")
    parser.add_argument("--preset", default="official_64", help="step [%(default)s]")
    parser.add_argument("--precision", default="float32", help="step [%(default)s]")
    parser.add_argument("--no-jit", action="store_true", help="step: XLA off")
    parser.add_argument("--batch-size", type=int, default=8, help="[%(default)s]")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls [%(default)s]")
    parser.add_argument("--xla-flags", default="", help="XLA_FLAGS for the child process")
    parser.add_argument("--single-thread", action="store_true",
                        help="one compute thread in every framework (side_by_side.py)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "convs":
        print("RESULT " + json.dumps(conv_child(args.frameworks.split(","), args.repeats,
                                                args.batch_size)))
        return
    if args.child == "step":
        print("RESULT " + json.dumps(step_child(args.preset, args.precision, not args.no_jit,
                                                args.repeats, args.batch_size)))
        return
    jobs = ([("convs", args.frameworks, "tensorflow")] if args.what == "convs"
            else [("step", args.backend, args.backend)])
    for child, framework, backend in jobs:
        env = {**os.environ, "KERAS_BACKEND": backend,
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
        if args.single_thread:
            from side_by_side import SINGLE_THREAD_ENV

            env.update(SINGLE_THREAD_ENV)
        if args.xla_flags:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
        command = [sys.executable, __file__, args.what, "--child", child, "--frameworks",
                   framework, "--preset", args.preset, "--precision", args.precision,
                   "--batch-size", str(args.batch_size), "--repeats", str(args.repeats)]
        if args.no_jit:
            command.append("--no-jit")
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            print(f"{framework}: failed: {proc.stderr.strip().splitlines()[-3:]}")
            continue
        result = json.loads(lines[-1][len("RESULT "):])
        if isinstance(result, list):
            for row in result:
                print(json.dumps(row), flush=True)
        else:
            print(json.dumps({"backend": framework, "xla_flags": args.xla_flags,
                              "preset": args.preset, "precision": args.precision, **result}),
                  flush=True)


if __name__ == "__main__":
    main()

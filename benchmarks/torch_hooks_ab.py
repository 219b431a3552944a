"""A/B of the torch hooks of 2026-12-03 against the ones before, next to the official step.

    KERAS_BACKEND=torch python benchmarks/torch_hooks_ab.py PRESET BATCH ROUNDS

One process builds three train steps on the same random batch: ours with the hooks as they were
before 2026-12-03 evening (kernel seen through a permute, so torch copied it on every forward and
backward; torch's instance_norm, whose NCHW output the next convolution copied back; keras.ops'
average pooling, which copies NHWC to NCHW), ours with today's hooks (trainers/torch.py), and the
official step (tests/torch_reference.py). After a warm-up each, ROUNDS rounds time one step of
each side, the order reversed every round, and it prints the medians and the ratios.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _old_convolution(inputs, kernel, padding: str):
    import keras
    import torch

    rows, cols = kernel.shape[0], kernel.shape[1]
    if padding == "same" and (rows % 2 == 0 or cols % 2 == 0):
        return keras.ops.conv(inputs, kernel, strides=1, padding=padding)
    pad = (rows // 2, cols // 2) if padding == "same" else 0
    inputs, kernel = keras.ops.convert_to_tensor(inputs), keras.ops.convert_to_tensor(kernel)
    return torch.nn.functional.conv2d(inputs.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1),
                                      padding=pad).permute(0, 2, 3, 1)


def _old_instance_normalize(x, epsilon: float):
    import keras
    import torch

    x = keras.ops.convert_to_tensor(x)
    normalized = torch.nn.functional.instance_norm(x.float().permute(0, 3, 1, 2), eps=epsilon)
    return normalized.permute(0, 2, 3, 1).to(x.dtype)


def main() -> None:
    if os.environ.get("KERAS_BACKEND") != "torch" or len(sys.argv) != 4:
        sys.exit("usage: KERAS_BACKEND=torch python benchmarks/torch_hooks_ab.py "
                 "PRESET BATCH ROUNDS")
    from side_by_side import _ours_call, _reference_call

    from keras_l2mgan.layers.common import downsample_with_ops
    from keras_l2mgan.trainers import torch as hooks

    preset, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spec = {"kind": "train", "preset": preset, "batch": batch, "precision": "float32",
            "jit": False}
    new = (hooks.convolution, hooks.instance_normalize, hooks.downsample)
    # Convolution and instance norm are bound when a layer builds; downsample is looked up
    # per call, so the old side gets the old one around each of its steps.
    hooks.convolution, hooks.instance_normalize = _old_convolution, _old_instance_normalize
    hooks.downsample = downsample_with_ops
    sides = {"old hooks": _ours_call(spec)}
    sides["old hooks"]()
    hooks.convolution, hooks.instance_normalize, hooks.downsample = new
    sides["new hooks"] = _ours_call(spec)
    sides["official"] = _reference_call({"kind": "train", "preset": preset, "batch": batch})
    sides["new hooks"]()
    sides["official"]()
    times = {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            hooks.downsample = downsample_with_ops if name == "old hooks" else new[2]
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
            print(f"{name} {times[name][-1]:.2f} s", flush=True)
    hooks.downsample = new[2]
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{preset} batch {batch}, {rounds} rounds, medians: "
          + ", ".join(f"{name} {value:.2f} s" for name, value in median.items()))
    print(f"vs official: old {median['official'] / median['old hooks']:.2f}x, "
          f"new {median['official'] / median['new hooks']:.2f}x; "
          f"new/old speedup {median['old hooks'] / median['new hooks']:.2f}x")


if __name__ == "__main__":
    main()

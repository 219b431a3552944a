"""A/B of the torch hooks of 2026-12-04 against those of 2026-12-03, next to the official step.

    KERAS_BACKEND=torch python benchmarks/torch_hooks_ab.py PRESET BATCH ROUNDS

One process builds three train steps on the same random batch: ours with the hooks as they were
on 2026-12-03 (the convolution's bias and InstanceNorm's gamma and beta added by separate
keras.ops passes, nearest-neighbour up-sampling by keras.ops.repeat), ours with today's hooks
(trainers/torch.py: the bias inside torch's convolution, gamma and beta inside its group_norm /
instance_norm, torch's own nearest-neighbour kernel), and the official step
(tests/torch_reference.py). After a warm-up each, ROUNDS rounds time one step of each side, the
order reversed every round, and it prints the medians and the ratios. (The A/B of 2026-12-03,
kernel layout, group_norm and pooling, is this script at commit ccb16c4.)
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


def _old_hooks(new: dict) -> dict:
    """The 2026-12-03 hooks, built from today's: bias and affine step as separate passes."""
    from keras import ops

    from keras_l2mgan.layers.common import add_bias, upsample_with_ops

    def convolution(inputs, kernel, padding: str, bias=None):
        return add_bias(new["convolution"](inputs, kernel, padding), bias)

    def instance_normalize(x, epsilon: float, scale=None, offset=None):
        out = new["instance_normalize"](x, epsilon)
        if scale is not None:
            out = out * ops.cast(scale, out.dtype) + ops.cast(offset, out.dtype)
        return out

    return {"convolution": convolution, "instance_normalize": instance_normalize,
            "upsample": upsample_with_ops}


def main() -> None:
    if os.environ.get("KERAS_BACKEND") != "torch" or len(sys.argv) != 4:
        sys.exit("usage: KERAS_BACKEND=torch python benchmarks/torch_hooks_ab.py "
                 "PRESET BATCH ROUNDS")
    from side_by_side import _ours_call, _reference_call

    from keras_l2mgan.trainers import torch as hooks

    preset, batch, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spec = {"kind": "train", "preset": preset, "batch": batch, "precision": "float32",
            "jit": False}
    new = {name: getattr(hooks, name) for name in ("convolution", "instance_normalize", "upsample")}
    old = _old_hooks(new)

    def use(chosen: dict) -> None:
        for name, function in chosen.items():
            setattr(hooks, name, function)

    # Convolution and instance norm are bound when a layer builds; upsample is looked up per
    # call, so each side gets its own hooks set around each of its steps.
    use(old)
    sides = {"old hooks": _ours_call(spec)}
    sides["old hooks"]()
    use(new)
    sides["new hooks"] = _ours_call(spec)
    sides["official"] = _reference_call({"kind": "train", "preset": preset, "batch": batch})
    sides["new hooks"]()
    sides["official"]()
    times = {name: [] for name in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            use(old if name == "old hooks" else new)
            start = time.perf_counter()
            seconds = sides[name]()  # our train call times its own step (a float)
            times[name].append(seconds if isinstance(seconds, float)
                               else time.perf_counter() - start)
            print(f"{name} {times[name][-1]:.2f} s", flush=True)
    use(new)
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{preset} batch {batch}, {rounds} rounds, medians: "
          + ", ".join(f"{name} {value:.2f} s" for name, value in median.items()))
    print(f"vs official: old {median['official'] / median['old hooks']:.2f}x, "
          f"new {median['official'] / median['new hooks']:.2f}x; "
          f"new/old speedup {median['old hooks'] / median['new hooks']:.2f}x")


if __name__ == "__main__":
    main()

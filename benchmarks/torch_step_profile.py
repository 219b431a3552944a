"""Where the torch train step (or edit) spends its time, op by op, next to the official one.

    KERAS_BACKEND=torch python benchmarks/torch_step_profile.py [--kind train|edit]
        [--preset official_64] [--batch 8] [--top 25] [-o benchmarks/results/torch_step_profile.md]

Both sides run in this one process on the same random batch: our L2MGAN train step (Keras on
the torch backend, float32, eager, official losses) and tests/torch_reference.py's
OfficialTrainer (the official recipe); with --kind edit, our predict() of an alpha-1 edit and
the official edit under no_grad, as benchmarks/bench_edit.py times them. Each side gets one
warm-up call, then one call under torch.profiler; the table lists aten ops by self CPU time on
each side, so an op that costs more on our side (or that only our side runs) shows where it loses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Profile this tree's keras_l2mgan, not whichever one the environment has installed.
sys.path.insert(0, str(ROOT))


def _profile(step) -> tuple[float, dict[str, tuple[float, int]]]:
    """Seconds of one profiled call and {op name: (self CPU seconds, calls)}."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        seconds = time.perf_counter() - start
    ops = {}
    for event in prof.key_averages():
        ops[event.key] = (event.self_cpu_time_total / 1e6, event.count)
    return seconds, ops


def _sides(kind: str, preset: str, batch: int) -> dict:
    """The two calls, built the way benchmarks/side_by_side.py times them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from side_by_side import _ours_call, _reference_call

    spec = {"kind": kind, "preset": preset, "batch": batch}
    return {"ours": _ours_call({**spec, "precision": "float32", "jit": False}),
            "official": _reference_call(spec)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("train", "edit"), default="train")
    parser.add_argument("--preset", default="official_64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "torch":
        sys.exit("Error: run with KERAS_BACKEND=torch (this profiles the torch train step)")

    sides = _sides(args.kind, args.preset, args.batch)
    results = {}
    for name, step in sides.items():
        step()  # warm-up: builds variables and optimizer slots
        results[name] = _profile(step)
        print(f"{name}: {results[name][0]:.2f} s", file=sys.stderr)

    ours_ops, official_ops = results["ours"][1], results["official"][1]
    names = sorted(set(ours_ops) | set(official_ops),
                   key=lambda k: -max(ours_ops.get(k, (0, 0))[0], official_ops.get(k, (0, 0))[0]))
    lines = [f"### torch {args.kind} by op: {args.preset}, batch {args.batch}, float32, eager",
             "",
             f"One profiled call each, same process: ours {results['ours'][0]:.2f} s, "
             f"official {results['official'][0]:.2f} s (profiler overhead included).",
             "",
             "| op | ours: self CPU s (calls) | official: self CPU s (calls) | ours - official s |",
             "|---|---:|---:|---:|"]
    for key in names[:args.top]:
        mine, theirs = ours_ops.get(key, (0.0, 0)), official_ops.get(key, (0.0, 0))
        lines.append(f"| `{key}` | {mine[0]:.3f} ({mine[1]}) | {theirs[0]:.3f} ({theirs[1]}) "
                     f"| {mine[0] - theirs[0]:+.3f} |")
    total_mine = sum(v[0] for v in ours_ops.values())
    total_theirs = sum(v[0] for v in official_ops.values())
    lines.append(f"| **all ops** | {total_mine:.3f} | {total_theirs:.3f} "
                 f"| {total_mine - total_theirs:+.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        from keras_l2mgan.atomic import write_file_atomic

        write_file_atomic(args.output, text)


if __name__ == "__main__":
    main()

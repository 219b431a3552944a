"""Where the TensorFlow train step spends its time, by op type, float32 next to mixed_bfloat16.

    KERAS_BACKEND=tensorflow python benchmarks/tf_step_profile.py [--preset official_64]
        [--batch 8] [--top 30] [-o benchmarks/results/tf_step_profile.md]

Both precisions run in this one process on the same random batch, built the way
benchmarks/side_by_side.py times them (XLA off). Each gets one warm-up step, then one step
under tf.profiler; the kernel events of the trace (`name:OpType` on the host threads) are summed
by op type. The two columns side by side show which ops bfloat16 made faster and which it did
not (or made slower), which a step time alone cannot.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _op_seconds(logdir: Path) -> dict[str, tuple[float, int]]:
    """{op type: (seconds summed over its kernel events, events)} from the trace's xplane."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, list] = collections.defaultdict(lambda: [0.0, 0])
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            for line in plane.lines:
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if ":" not in name or name.startswith("__"):
                        continue
                    op_type = name.rsplit(":", 1)[1]
                    if not op_type or not op_type[0].isupper():
                        continue
                    totals[op_type][0] += event.duration_ps / 1e12
                    totals[op_type][1] += 1
    return {k: (v[0], v[1]) for k, v in totals.items()}


def _profile(step) -> tuple[float, dict[str, tuple[float, int]]]:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tf_profile.") as logdir:
        tf.profiler.experimental.start(logdir)
        seconds = step()  # the step's own time (benchmarks/side_by_side.py _step_timer)
        tf.profiler.experimental.stop()
        return seconds, _op_seconds(Path(logdir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="official_64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    if os.environ.get("KERAS_BACKEND") != "tensorflow":
        sys.exit("Error: run with KERAS_BACKEND=tensorflow (this profiles the TF train step)")
    from side_by_side import _ours_call

    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        step = _ours_call({"kind": "train", "preset": args.preset, "batch": args.batch,
                           "precision": precision, "jit": False})
        step()  # warm-up: tracing, variables, optimizer slots
        results[precision] = _profile(step)
        print(f"{precision}: {results[precision][0]:.2f} s", file=sys.stderr)
    f32, bf16 = results["float32"][1], results["mixed_bfloat16"][1]
    names = sorted(set(f32) | set(bf16),
                   key=lambda k: -max(f32.get(k, (0, 0))[0], bf16.get(k, (0, 0))[0]))
    lines = [f"### TensorFlow train step by op type: {args.preset}, batch {args.batch}, XLA off",
             "",
             f"One profiled step each, same process: float32 {results['float32'][0]:.2f} s, "
             f"mixed_bfloat16 {results['mixed_bfloat16'][0]:.2f} s (profiler overhead included;"
             " kernel time summed over both threads, so columns can exceed the step).",
             "",
             "| op type | float32 s (events) | mixed_bfloat16 s (events) | f32 / bf16 |",
             "|---|---:|---:|---:|"]
    for key in names[:args.top]:
        a, b = f32.get(key, (0.0, 0)), bf16.get(key, (0.0, 0))
        ratio = f"{a[0] / b[0]:.2f}x" if b[0] > 0 else "-"
        lines.append(f"| `{key}` | {a[0]:.3f} ({a[1]}) | {b[0]:.3f} ({b[1]}) | {ratio} |")
    total_a, total_b = sum(v[0] for v in f32.values()), sum(v[0] for v in bf16.values())
    lines.append(f"| **all ops** | {total_a:.3f} | {total_b:.3f} | {total_a / total_b:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        from keras_l2mgan.atomic import write_file_atomic

        write_file_atomic(args.output, text)


if __name__ == "__main__":
    main()

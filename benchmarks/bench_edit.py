"""Edit latency at 256 px (random weights), side by side with the official PyTorch edit.

    python benchmarks/bench_edit.py [--preset celeba_hq_256] [--batches 1,8] [--repeats 5]
        [--backends tensorflow,jax,torch] [--precisions float32,mixed_bfloat16]
        [--no-savedmodel] [--out benchmarks/results]

Runners: the exported SavedModel in float32 and bfloat16 (what `l2m edit` and serving run),
and Keras `predict()` of the model on each backend and precision (jit on JAX, tf.function on
TensorFlow, eager torch). Each runner is a worker process; after one warm-up call on each side,
`--repeats` timed calls alternate with the official edit (tests/torch_reference.py ``edit``,
float32, eager, no_grad) at the same batch, and the ratio is the median of the reference over
that window divided by the runner's. No FAN on either side (the preset has none), so the
high-pass path is skipped on both. Writes edit_latency.json and edit_latency.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from side_by_side import Worker, interleave, summary

ROOT = Path(__file__).resolve().parents[1]
AUTO_JIT = {"tensorflow": False, "jax": True, "torch": False}


def runner_specs(args) -> list[tuple[str, dict]]:
    specs = []
    if not args.no_savedmodel:
        specs += [(f"SavedModel {dtype}", {"side": "savedmodel", "compute_dtype": dtype})
                  for dtype in ("float32", "bfloat16")]
    for backend in args.backends.split(","):
        for precision in args.precisions.split(","):
            specs.append((f"keras predict, {backend}, {precision}",
                          {"side": "ours", "backend": backend, "precision": precision,
                           "jit": AUTO_JIT[backend]}))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--preset", default="celeba_hq_256", help="[%(default)s]")
    parser.add_argument("--batches", default="1,8", help="comma-separated [%(default)s]")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed calls per side and runner, after 1 warm-up [%(default)s]")
    parser.add_argument("--backends", default="tensorflow,jax,torch",
                        help="backends of the Keras predict runners [%(default)s]")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16",
                        help="dtype policies of the Keras predict runners [%(default)s]")
    parser.add_argument("--no-savedmodel", action="store_true",
                        help="skip the SavedModel runners")
    parser.add_argument("--single-thread", action="store_true",
                        help="one compute thread on every side (PyTorch, TensorFlow, XLA): for "
                             "a machine busy with other work, where 2-thread PyTorch ops stall")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for edit_latency.json and .md [%(default)s]")
    args = parser.parse_args()

    rows, references = [], {}
    for batch in (int(b) for b in args.batches.split(",")):
        common = {"kind": "edit", "preset": args.preset, "batch": batch,
                  "single_thread": args.single_thread}
        reference = Worker({**common, "side": "reference"})
        references[batch] = {"warmup_s": round(reference.step(), 3), "times_s": [],
                             **reference.info}
        for name, spec in runner_specs(args):
            row = {"runner": name, "batch": batch}
            worker = None
            try:
                worker = Worker({**common, **spec})
                row["first_call_s"] = round(worker.step(), 3)
                mine, theirs = interleave(worker, reference, args.repeats)
            except RuntimeError as error:
                row["error"] = str(error)[-300:]
                mine = theirs = []
            finally:
                if worker is not None:
                    worker.close()
            if mine:
                median = statistics.median(mine)
                references[batch]["times_s"] += summary(theirs)["times_s"]
                row.update(seconds=round(median, 4), seconds_per_image=round(median / batch, 4),
                           times_s=summary(mine)["times_s"],
                           official_seconds=summary(theirs)["median_s"],
                           official_times_s=summary(theirs)["times_s"],
                           vs_official=round(statistics.median(theirs) / median, 3))
            print(json.dumps(row), flush=True)
            rows.append(row)
        reference.close()
        if references[batch]["times_s"]:
            references[batch]["median_s"] = round(statistics.median(
                references[batch]["times_s"]), 4)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "repeats": args.repeats, "single_thread": args.single_thread,
            "timing": "median of repeats after one warm-up, alternating with the official edit"}
    (out / "edit_latency.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "official": references}, indent=2) + "\n")
    lines = [f"# Edit latency, {args.preset}, median of {args.repeats} (official PyTorch edit "
             "timed alternately with each row"
             + (", one compute thread on every side)" if args.single_thread else ")"), "",
             "| runner | batch | s per batch | s per image | official s (same window) "
             "| vs official |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['runner']} | {r['batch']} | error: {r['error'][-120:]} | | | |")
        else:
            lines.append(f"| {r['runner']} | {r['batch']} | {r['seconds']:.3f} | "
                         f"{r['seconds_per_image']:.3f} | {r['official_seconds']:.3f} | "
                         f"**{r['vs_official']:.2f}x** |")
    lines += ["", "Official edit, every timed call of this run:", ""]
    lines += [f"- batch {b}: median {ref.get('median_s', '?')} s "
              f"({min(ref['times_s'], default=0):.3f}-{max(ref['times_s'], default=0):.3f} s, "
              f"{len(ref['times_s'])} calls, torch threads {ref.get('torch_threads', '?')})"
              for b, ref in references.items()]
    (out / "edit_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

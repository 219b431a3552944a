"""Train step, side by side with the official PyTorch step, per backend, precision and preset.

    python benchmarks/bench_train.py --presets official_64,celeba_hq_256 --steps 3,2
    python benchmarks/bench_train.py --backends tensorflow --precisions float32 --single-thread

Per preset, one worker runs the official recipe (tests/torch_reference.py ``OfficialTrainer``:
float32, eager PyTorch, its Adam and EMA) and stays up; each of our configurations gets its own
worker (keras fixes backend and dtype policy at import). After one warm-up step on each side
(tracing, compilation), `--steps` timed steps of ours alternate with as many of the reference
(see benchmarks/side_by_side.py), on the same random batch of `--batch-size` images. The
"vs official" ratio of a row is the reference's median over that row's window divided by ours:
both from this run. Results: train.json and train.md in --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from side_by_side import Worker, interleave, summary

ROOT = Path(__file__).resolve().parents[1]
# Per backend, what `--jit auto` picks on CPU: XLA off on TensorFlow (its CPU convolutions lose
# to TF's own kernels here), always on JAX, never on torch (no double backward in compile).
AUTO_JIT = {"tensorflow": "off", "jax": "on", "torch": "off"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--backends", default="tensorflow,jax,torch",
                        help="comma-separated Keras backends [%(default)s]")
    parser.add_argument("--presets", default="official_64", help="comma-separated [%(default)s]")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16",
                        help="comma-separated Keras dtype policies [%(default)s]")
    parser.add_argument("--jit", default="auto",
                        help="auto (the CLI's choice per backend), on, off or on,off; torch is "
                             "always eager [%(default)s]")
    parser.add_argument("--steps", default="3",
                        help="timed steps per side and configuration, after 1 warm-up; one "
                             "value, or one per preset (e.g. 3,2) [%(default)s]")
    parser.add_argument("--batch-size", type=int, default=8, help="[%(default)s]")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the official step (no ratios)")
    parser.add_argument("--single-thread", action="store_true",
                        help="one compute thread on every side (PyTorch, TensorFlow, XLA): for "
                             "a machine busy with other work, where 2-thread PyTorch ops stall")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for train.json and train.md [%(default)s]")
    args = parser.parse_args()
    rows, references = [], {}
    presets = args.presets.split(",")
    steps_of = [int(n) for n in args.steps.split(",")]
    if len(steps_of) not in (1, len(presets)):
        parser.error("--steps: one value, or one per preset")
    steps_of = dict(zip(presets, steps_of * len(presets) if len(steps_of) == 1 else steps_of,
                        strict=True))
    for preset in presets:
        steps = steps_of[preset]
        reference = None if args.no_reference else Worker(
            {"kind": "train", "side": "reference", "preset": preset, "batch": args.batch_size,
             "single_thread": args.single_thread})
        if reference is not None:
            references[preset] = {"batch": args.batch_size, "steps": steps,
                                  "warmup_s": round(reference.step(), 2), "times_s": [],
                                  **reference.info}
        for backend, precision, jit in itertools.product(
                args.backends.split(","), args.precisions.split(","), args.jit.split(",")):
            jit = AUTO_JIT[backend] if jit == "auto" else jit
            if backend == "torch" and jit == "on":
                continue  # torch.compile cannot run R1's double backward: always eager
            row = {"backend": backend, "preset": preset, "precision": precision, "xla": jit,
                   "batch": args.batch_size, "steps": steps}
            ours = None
            try:
                ours = Worker({"kind": "train", "side": "ours", "backend": backend,
                               "preset": preset, "precision": precision, "jit": jit == "on",
                               "batch": args.batch_size, "single_thread": args.single_thread})
                row["first_step_s"] = round(ours.step(), 2)
                if reference is None:
                    mine, theirs = [ours.step() for _ in range(steps)], []
                else:
                    mine, theirs = interleave(ours, reference, steps)
            except RuntimeError as error:
                row["error"] = str(error)[-300:]
                mine, theirs = [], []
            finally:
                if ours is not None:
                    ours.close()
            if mine:
                row.update(seconds_per_step=summary(mine)["median_s"],
                           times_s=summary(mine)["times_s"],
                           images_per_s=round(args.batch_size / statistics.median(mine), 3))
            if theirs:
                references[preset]["times_s"] += summary(theirs)["times_s"]
                row.update(official_seconds_per_step=summary(theirs)["median_s"],
                           official_times_s=summary(theirs)["times_s"],
                           vs_official=round(statistics.median(theirs)
                                             / statistics.median(mine), 3))
            print(json.dumps(row), flush=True)
            rows.append(row)
        if reference is not None:
            reference.close()
            times = references[preset]["times_s"]
            if times:
                references[preset]["median_s"] = round(statistics.median(times), 3)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(
        {"rows": rows, "official": references, "single_thread": args.single_thread, "timing":
         "1 warm-up + `steps` timed steps per side, alternating; medians"},
        indent=2) + "\n")
    text = markdown(rows, references, args.single_thread)
    (out / "train.md").write_text(text)
    print(text)


def markdown(rows: list[dict], references: dict, single_thread: bool = False) -> str:
    lines = ["Train step, seconds (median of `steps` timed steps after 1 warm-up); the official "
             "PyTorch float32 step timed alternately with each row"
             + (", one compute thread on every side." if single_thread else "."), "",
             "| backend | preset | precision | XLA | batch | steps | s/step | images/s "
             "| first step s | official s/step (same window) | vs official |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        head = (f"| {r['backend']} | {r['preset']} | {r['precision']} | {r['xla']} | "
                f"{r['batch']} | {r['steps']} |")
        if "error" in r:
            lines.append(f"{head} error: {r['error'][-120:]} | | | | |")
            continue
        official, ratio = "", ""
        if "official_seconds_per_step" in r:
            official = f"{r['official_seconds_per_step']:.2f}"
            ratio = f"**{r['vs_official']:.2f}x**"
        lines.append(f"{head} {r['seconds_per_step']:.2f} | {r['images_per_s']:.2f} | "
                     f"{r['first_step_s']:.1f} | {official} | {ratio} |")
    if references:
        lines += ["", "Official step (tests/torch_reference.py OfficialTrainer, float32, "
                      "eager), every timed step of this run:", ""]
        for preset, ref in references.items():
            lines.append(f"- {preset}: median {ref.get('median_s', '?')} s, "
                         f"{', '.join(f'{t:.1f}' for t in ref['times_s'])} s "
                         f"(warm-up {ref['warmup_s']} s, torch threads "
                         f"{ref.get('torch_threads', '?')})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

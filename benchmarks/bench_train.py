"""Train-step throughput (images/s) per backend, precision, XLA on/off and model size.

    python benchmarks/bench_train.py --backends tensorflow,jax,torch --presets small_64 \
        --precisions float32,mixed_bfloat16 --steps 5
    python benchmarks/bench_train.py --presets official_64 --steps 2     # official widths

Each configuration runs in its own process (keras fixes its backend and policy at import):
build, compile, one warm-up fit step (compilation), then `--steps` timed steps of batch 8
on random images. Results: benchmarks/results/train.json and train.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The official PyTorch modules with the same losses, float32, batch 8, on this 2-core CPU
# (seconds per train step, from the issue that asked for this benchmark).
OFFICIAL_TORCH_S = {"official_64": 18.0, "celeba_hq_256": 81.0}
CHILD = r"""
import json, sys, time, numpy as np, keras
from keras_l2mgan.config import get_preset
from keras_l2mgan.model import L2MGAN
preset, precision, jit = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
steps, batch = int(sys.argv[4]), int(sys.argv[5])
keras.config.set_dtype_policy(precision)
config = get_preset(preset)
size = config.img_size
model = L2MGAN(config)
model.compile(jit_compile=jit)
rng = np.random.default_rng(0)
data = {"images": rng.uniform(-1, 1, (batch * (steps + 1), size, size, 3)).astype("float32"),
        "labels": rng.integers(0, 2, batch * (steps + 1)).astype("int32")}
warm = {k: v[:batch] for k, v in data.items()}
t = time.perf_counter()
model.fit(warm, batch_size=batch, verbose=0)
first = time.perf_counter() - t
rest = {k: v[batch:] for k, v in data.items()}
t = time.perf_counter()
model.fit(rest, batch_size=batch, verbose=0)
seconds = time.perf_counter() - t
print(json.dumps({"seconds_per_step": seconds / steps, "images_per_s": batch * steps / seconds,
                  "first_step_s": first}))
"""


def run_one(backend, preset, precision, jit, steps, batch, timeout):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, preset, precision, str(int(jit)),
                               str(steps), str(batch)], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--presets", default="small_64")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--jit", default="on,off", help="on, off or on,off (torch: always off)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    rows = []
    for backend, preset, precision, jit in itertools.product(
            args.backends.split(","), args.presets.split(","), args.precisions.split(","),
            args.jit.split(",")):
        if backend == "torch" and jit == "on":
            continue  # torch.compile cannot run R1's double backward: always eager
        result = run_one(backend, preset, precision, jit == "on", args.steps, args.batch_size,
                         args.timeout)
        row = {"backend": backend, "preset": preset, "precision": precision, "xla": jit,
               "batch": args.batch_size, "steps": args.steps, **result}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((out / "train.json").read_text()) if (out / "train.json").exists() else []
    keys = ("backend", "preset", "precision", "xla", "batch")
    merged = {tuple(r[k] for k in keys): r for r in previous + rows}
    rows = list(merged.values())
    (out / "train.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = ["| backend | preset | precision | XLA | batch | s/step | images/s | first step s "
             "| speed-up vs official torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['preset']} | {r['precision']} | {r['xla']} | "
                         f"{r['batch']} | error: {r['error']} | | | |")
        else:
            reference = OFFICIAL_TORCH_S.get(r["preset"]) if r["batch"] == 8 else None
            ratio = f"{reference / r['seconds_per_step']:.2f}x" if reference else ""
            lines.append(f"| {r['backend']} | {r['preset']} | {r['precision']} | {r['xla']} | "
                         f"{r['batch']} | {r['seconds_per_step']:.3f} | {r['images_per_s']:.1f} "
                         f"| {r['first_step_s']:.1f} | {ratio} |")
    (out / "train.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

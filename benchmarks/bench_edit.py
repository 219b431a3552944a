"""Edit latency at 256 px (celeba_hq_256 widths, random weights): Keras eager / tf.function /
XLA jit on the TensorFlow backend, and the exported SavedModel in float32 and bfloat16.

    KERAS_BACKEND=tensorflow python benchmarks/bench_edit.py [--preset celeba_hq_256]
        [--batches 1,8] [--repeats 3] [--out benchmarks/results]

Writes edit_latency.json and edit_latency.md. Reference: the official PyTorch modules take
~0.58 s (batch 1) and ~5.6 s (batch 8) per 256 px edit on this 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(function, repeats: int) -> float:
    function()  # warm-up: tracing, compilation, first-touch allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def runners(model, graph_edit, jit_edit, loaded, x, source, target, alpha, served) -> dict:
    """The timed callables for one batch (bound here, not in the loop)."""
    def saved(dtype):
        return lambda: loaded[dtype].signatures["serving_default"](**served)

    return {
        "keras eager (float32)": lambda: model.edit(x, source, target, alpha),
        "keras tf.function (float32)": lambda: graph_edit(x, source, target, alpha),
        "keras XLA jit (float32)": lambda: jit_edit(x, source, target, alpha),
        "SavedModel float32": saved("float32"),
        "SavedModel bfloat16": saved("bfloat16"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="celeba_hq_256")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN

    config = get_preset(args.preset)
    model = L2MGAN(config)
    size = config.img_size
    work = Path(tempfile.mkdtemp(prefix="bench_edit."))
    save_bundle(model, work / "model")
    loaded = {dtype: tf.saved_model.load(str(export_saved_model(
        work / "model", f"bench_{dtype}", output_dir=work / "saved_models",
        compute_dtype=dtype))) for dtype in ("float32", "bfloat16")}

    graph_edit = tf.function(lambda x, s, t, a: model.edit(x, s, t, a))
    jit_edit = tf.function(lambda x, s, t, a: model.edit(x, s, t, a), jit_compile=True)
    rows = []
    for batch in (int(b) for b in args.batches.split(",")):
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        x = tf.constant(pixels.astype(np.float32) / 127.5 - 1.0)
        source = tf.zeros([batch], tf.int32)
        target = tf.ones([batch], tf.int32)
        alpha = tf.ones([batch], tf.float32)
        served = {"images": tf.constant(pixels), "source_domain": source,
                  "target_domain": target, "alpha": alpha}
        reference = loaded["float32"].signatures["serving_default"](**served)["images"].numpy()
        candidates = runners(model, graph_edit, jit_edit, loaded, x, source, target, alpha,
                             served)
        for name, function in candidates.items():
            seconds = timed(function, args.repeats)
            row = {"runner": name, "batch": batch, "seconds": round(seconds, 3),
                   "seconds_per_image": round(seconds / batch, 3)}
            if name == "SavedModel bfloat16":
                out = loaded["bfloat16"].signatures["serving_default"](**served)["images"]
                row["max_abs_diff_vs_float32_grey_levels"] = int(np.abs(
                    out.numpy().astype(int) - reference.astype(int)).max())
            rows.append(row)
            print(json.dumps(row), flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"preset": args.preset, "repeats": args.repeats, "tensorflow": tf.__version__,
            "cpu_threads": os.cpu_count(), "timing": "best of repeats after one warm-up",
            "reference_official_pytorch_seconds": {"batch_1": 0.58, "batch_8": 5.6}}
    (out / "edit_latency.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"# Edit latency, {args.preset} ({size} px), best of {args.repeats}", "",
             "| runner | batch | s per batch | s per image |", "|---|---:|---:|---:|"]
    lines += [f"| {r['runner']} | {r['batch']} | {r['seconds']:.3f} | "
              f"{r['seconds_per_image']:.3f} |" for r in rows]
    lines += ["", "Official PyTorch (float32): 0.58 s batch 1, 5.6 s batch 8."]
    (out / "edit_latency.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

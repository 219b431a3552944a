"""Data speed: synthetic-face rendering and the tf.data pipeline.

    python benchmarks/bench_data.py [--build-20k] [--out benchmarks/results]

Measures (1) render time per face at 32-256 px in one process, (2) render + PNG encode
throughput with the builder's worker processes, (3) optionally the full TFDS build of the
default 64 px dataset (20k train + 2k test), and (4) pipeline images/s (decode, augment,
balance, batch 8) at 64 and 256 px. Writes data_speed.json and data_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def render_speed(sizes: list[int], count: int) -> dict[int, float]:
    """CPU milliseconds per face, rendering only, one process (CPU time, not wall time: the
    machine may be shared, and this is the cost a worker pays per face)."""
    import numpy as np

    from keras_l2mgan.data.synthetic_faces import render, sample_params

    params = sample_params(np.random.default_rng(0), count)
    out = {}
    for size in sizes:
        render(params[0], size)
        start = time.process_time()
        for p in params:
            render(p, size)
        out[size] = 1000 * (time.process_time() - start) / count
    return out


def parallel_encode_speed(size: int, count: int, workers: int) -> float:
    """Faces per second rendered and PNG-encoded by the builder's worker processes."""
    from keras_l2mgan.data.synthetic_faces.builder import _encode_chunk, balanced_attributes

    attributes = balanced_attributes(count, 0, "train")
    chunk = 250
    jobs = [(0, "train", s, attributes[s : s + chunk], size) for s in range(0, count, chunk)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_encode_chunk, jobs[:workers]))  # start the workers first
        start = time.perf_counter()
        list(pool.map(_encode_chunk, jobs))
        return count / (time.perf_counter() - start)


def full_build_seconds(data_dir: str) -> float:
    import tensorflow_datasets as tfds

    from keras_l2mgan.data import SyntheticFaces

    tfds.disable_progress_bar()
    start = time.perf_counter()
    SyntheticFaces(config="64px", data_dir=data_dir).download_and_prepare()
    return time.perf_counter() - start


def pipeline_speed(size: int, num_examples: int, data_dir: str, batches: int) -> float:
    """Images per second out of build_dataset (augment on, 2 domains, batch 8)."""
    from keras_l2mgan.data import build_dataset

    info = build_dataset("synthetic", attrs="smiling", img_size=size, batch_size=8,
                         data_dir=data_dir, num_examples=num_examples)
    iterator = iter(info.dataset)
    for _ in range(10):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * 8 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build-20k", action="store_true",
                        help="also time the full default 64 px TFDS build (22k faces)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    workers = os.cpu_count() or 1
    results: dict = {"cpu_count": workers, "load_average_at_start": os.getloadavg()[0]}
    results["render_ms_per_face"] = render_speed([32, 64, 128, 256], 200)
    results["encode_faces_per_s_64px"] = parallel_encode_speed(64, 2000, workers)
    results["encode_20k_64px_estimate_s"] = 20_000 / results["encode_faces_per_s_64px"]
    with tempfile.TemporaryDirectory(prefix="bench_data.") as data_dir:
        if args.build_20k:
            results["tfds_build_22k_64px_s"] = full_build_seconds(data_dir)
        results["pipeline_images_per_s"] = {
            64: pipeline_speed(64, 2000, data_dir, 300),
            256: pipeline_speed(256, 400, data_dir, 100),
        }

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_speed.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# Data speed ({workers} CPU cores, load average {results['load_average_at_start']:.1f}"
        " at start: wall-clock rows slow down on a shared machine)",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| render one face, {s} px (CPU time) | {ms:.2f} ms |"
          for s, ms in results["render_ms_per_face"].items()),
        f"| render + PNG, {workers} workers, 64 px | "
        f"{results['encode_faces_per_s_64px']:.0f} faces/s |",
        f"| 20k faces at 64 px (estimate from the line above) | "
        f"{results['encode_20k_64px_estimate_s']:.1f} s |",
    ]
    if "tfds_build_22k_64px_s" in results:
        lines.append(f"| full TFDS build, 64px config (20k + 2k) | "
                     f"{results['tfds_build_22k_64px_s']:.1f} s |")
    lines += [f"| pipeline, {s} px, augment, batch 8 | {v:.0f} images/s |"
              for s, v in results["pipeline_images_per_s"].items()]
    (out / "data_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

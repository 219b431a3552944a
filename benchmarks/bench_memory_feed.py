"""How fast does a TensorFlow train step run, fed each way? One fresh process per way, the same
mini_64 model (2 domains, batch 8, reconstruction term): 3 warm-up steps, then the mean of
--steps steps; each way runs --repeats times (interleaved, so drift hits every way alike) and the
table gives the median and the ratio to the first way.

    python benchmarks/bench_memory_feed.py [--steps 15] [--repeats 3] [--ways tfds,generator,...]

Ways: `tfds` the synthetic TFDS pipeline (`--data synthetic`); `generator` the in-memory faces
as a plain Python generator, which Keras wraps with tf.data's from_generator (what `l2m train
--data synthetic_memory` did on TensorFlow before 2026-12-02); `tf_dataset` the same faces by
``MemoryBatches.as_tf_dataset`` (what it does now). Needs L2M_DATA_DIR (faces are generated
there on first use).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("tfds", "generator", "tf_dataset")


def one_way(way: str, steps: int) -> float:
    """Seconds per train step fed `way` (runs in this process)."""
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.utils.set_random_seed(0)
    if way == "tfds":
        from keras_l2mgan.data import build_dataset

        feed = build_dataset("synthetic", attrs="smiling", img_size=64, batch_size=8, seed=0,
                             num_examples=2000).dataset
    else:
        from keras_l2mgan.data.memory import build_memory_dataset
        from keras_l2mgan.trainers import generator_feed

        stream = build_memory_dataset("smiling", 64, 8, num_examples=2000).dataset
        feed = stream.as_tf_dataset() if way == "tf_dataset" else generator_feed(stream)
    model = L2MGAN(get_preset("mini_64").replace(num_domains=2,
                                                 domain_names=("not_smiling", "smiling")))
    model.compile(learning_rate=3e-4, loss_weights={"reconstruction": 10}, jit_compile=False)
    if way == "generator":  # one fit() over warm-up and timed steps: a generator is used once
        timings = []
        callback = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: timings.append(time.perf_counter()))
        model.fit(feed, epochs=1, steps_per_epoch=3 + steps, verbose=0, callbacks=[callback])
        return (timings[-1] - timings[2]) / steps
    model.fit(feed, epochs=1, steps_per_epoch=3, verbose=0)
    started = time.perf_counter()
    model.fit(feed, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - started) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=WAYS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(f"{one_way(args.one, args.steps):.3f}")
        return 0
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    ways = args.ways.split(",")
    seconds: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(args.repeats):
        for way in ways:
            result = subprocess.run([sys.executable, __file__, "--one", way, "--steps",
                                     str(args.steps)], env=env, capture_output=True, text=True,
                                    check=True)
            seconds[way].append(float(result.stdout.strip().splitlines()[-1]))
    baseline = statistics.median(seconds[ways[0]])
    print(f"| feed | s / step, median of {args.repeats} | runs | time vs {ways[0]} |")
    print("|---|---:|---|---:|")
    for way in ways:
        median = statistics.median(seconds[way])
        runs = ", ".join(f"{value:.2f}" for value in seconds[way])
        print(f"| {way} | {median:.2f} | {runs} | {median / baseline:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

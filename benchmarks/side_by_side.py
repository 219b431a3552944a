"""Side-by-side timing of our model and the official PyTorch code, in one run on one machine.

Each side is a persistent worker process (keras fixes its backend and dtype policy at import,
and the reference is plain PyTorch): the parent builds and warms both, then alternates one
timed call on each side, swapping which goes first every repeat, so load from anything else on
the machine falls on both alike. Ratios are medians of the two sides from the same window.

The reference is tests/torch_reference.py (the PyTorch model of the official modules written
for the import parity tests) run as the official code runs: float32, eager, its Adam and EMA
(``OfficialTrainer``), and ``edit`` under ``torch.no_grad``.

With ``"single_thread": true`` in a spec, that worker computes on one thread (PyTorch, TF and
XLA alike): the setting for a machine busy with other work (see SINGLE_THREAD_ENV).

Worker kinds (the spec is a JSON object; ``python side_by_side.py --serve SPEC`` runs one):
    {"kind": "train", "side": "ours", "backend", "preset", "precision", "jit", "batch"}
    {"kind": "train", "side": "reference", "preset", "batch"}
    {"kind": "edit", "side": "ours", "backend", "preset", "precision", "jit", "batch"}
    {"kind": "edit", "side": "savedmodel", "preset", "compute_dtype", "batch"}   (TensorFlow)
    {"kind": "edit", "side": "reference", "preset", "batch"}
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# One compute thread on every side. On a machine with more runnable threads than cores, the
# OpenMP barriers of a 2-thread PyTorch op wait for a descheduled thread: measured under a load
# of ~19 on 2 cores, a tiny_32 official step took 150-220 s (aten::mm of 64x64 operands 190 ms
# on average) against 4-6 s at a lower load the same day. One thread per side has no barrier to
# wait on.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
                     "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false "
                                  "intra_op_parallelism_threads=1"}


def _inputs(batch: int, size: int, seed: int = 0):
    import numpy as np

    from keras_l2mgan.image_range import to_unit

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    images = to_unit(pixels)
    labels = rng.integers(0, 2, batch).astype("int32")
    return pixels, images, labels


def _reference_call(spec: dict) -> Callable[[], None]:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    import torch_reference as ref

    from keras_l2mgan.config import get_preset

    c = get_preset(spec["preset"])
    nets = ref.build(img_size=c.img_size, num_domains=c.num_domains, style_dim=c.style_dim,
                     w_hpf=c.w_hpf, dim_in=c.base_dim,
                     max_conv_dim=c.max_conv_dim, seed=0)
    _, images, labels = _inputs(spec["batch"], c.img_size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    source = torch.from_numpy(labels).long()
    target = 1 - source
    if spec["kind"] == "train":
        trainer = ref.OfficialTrainer(nets)
        return lambda: trainer.step(x, source, target)

    def edit() -> None:
        with torch.no_grad():
            ref.edit(nets, x, source, target, 1.0)

    return edit


def _step_timer():
    """A callback timing fit()'s one train step; its `seconds` is read after fit returns."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Seconds from the batch's start to its losses being read back: the train step
        itself. One fit() per timed step also pays fit's setup and teardown, which a real run
        pays once: on TensorFlow, every other fit() of official_64 spent ~7 s after its step
        freeing the call (20.5 s against 13.3-14.3 s; `python benchmarks/tf_step_profile.py`
        and cProfile: the kernels took the same time in both)."""

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            for value in (logs or {}).values():  # JAX dispatches asynchronously: wait for it
                float(keras.ops.convert_to_numpy(value))
            self.seconds = time.perf_counter() - self.start

    return StepTimer()


def _ours_call(spec: dict) -> Callable[[], float | None]:
    import keras
    import numpy as np

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.config.set_dtype_policy(spec["precision"])
    config = get_preset(spec["preset"])
    model = L2MGAN(config)
    _, images, labels = _inputs(spec["batch"], config.img_size)
    if spec["kind"] == "train":
        model.compile(jit_compile=spec["jit"])
        data = {"images": images, "labels": labels}
        timer = _step_timer()

        def train_step() -> float:
            history = model.fit(data, batch_size=spec["batch"], verbose=0, callbacks=[timer])
            # Read the step's losses back: JAX reports a failed step (out of memory at 256 px
            # on a 23 GiB machine) only when its results are read, and fit() can return first.
            for values in history.history.values():
                float(keras.ops.convert_to_numpy(values[-1]))
            return timer.seconds

        return train_step
    # Edit through predict(): the backend's compiled inference path (jit on JAX, tf.function
    # on TensorFlow, eager on torch), the same one every backend's `l2m edit` can use.
    model.compile(jit_compile=spec["jit"])
    inputs = {"images": images, "source_domain": labels, "target_domain": 1 - labels,
              "alpha": np.ones(spec["batch"], "float32")}
    return lambda: model.predict(inputs, batch_size=spec["batch"], verbose=0)


def _savedmodel_call(spec: dict) -> Callable[[], None]:
    import tensorflow as tf

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN

    config = get_preset(spec["preset"])
    work = Path(tempfile.mkdtemp(prefix="bench_edit."))
    save_bundle(L2MGAN(config), work / "model")
    loaded = tf.saved_model.load(str(export_saved_model(
        work / "model", "bench", output_dir=work / "saved_models",
        compute_dtype=spec["compute_dtype"])))
    pixels, _, labels = _inputs(spec["batch"], config.img_size)
    served = {"images": tf.constant(pixels), "source_domain": tf.constant(labels),
              "target_domain": tf.constant(1 - labels),
              "alpha": tf.ones([spec["batch"]], tf.float32)}
    signature = loaded.signatures["serving_default"]
    return lambda: signature(**served)["images"].numpy()


def serve(spec: dict) -> None:
    """Worker loop: build, print READY, then time one call per `step` line read."""
    if spec.get("single_thread"):
        import torch

        torch.set_num_threads(1)
        if spec["side"] == "savedmodel" or spec.get("backend") == "tensorflow":
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    if spec["side"] == "reference":
        call = _reference_call(spec)
    elif spec["side"] == "savedmodel":
        call = _savedmodel_call(spec)
    else:
        call = _ours_call(spec)
    info = {"pid": os.getpid()}
    if spec["side"] == "reference" or spec.get("backend") == "torch":
        import torch

        info["torch_threads"] = torch.get_num_threads()
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "step":
            break
        start = time.perf_counter()
        seconds = call()  # our train call times its own step (a float)
        if not isinstance(seconds, float):
            seconds = time.perf_counter() - start
        _return_free_memory()
        print("TIME " + json.dumps(seconds), flush=True)


def _return_free_memory() -> None:
    """Hand freed heap memory back to the OS between steps (glibc's malloc_trim).

    Both workers of a row are alive at once. At celeba_hq_256, batch 8, the official worker kept
    ~5 GB between its steps and our TensorFlow one ~12 GB: the official step (+8.5 GB) then ran
    a 23 GiB machine out of memory and the kernel killed ours. Untimed; a no-op without glibc.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Worker:
    """One side in its own process; `step()` returns the seconds of one timed call."""

    def __init__(self, spec: dict):
        self.spec = spec
        backend = spec.get("backend", "tensorflow" if spec["side"] == "savedmodel" else "torch")
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
               "PYTHONPATH": str(ROOT)}
        if spec.get("single_thread"):
            env.update(SINGLE_THREAD_ENV)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", json.dumps(spec)], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.info = json.loads(self._read("READY "))

    def _read(self, prefix: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.seek(0)
                tail = (self.log.read().strip().splitlines() or ["?"])[-1][:300]
                raise RuntimeError(f"worker {self.spec} died: {tail}")
            if line.startswith(prefix):
                return line[len(prefix):]

    def step(self) -> float:
        try:
            self.proc.stdin.write("step\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # the worker died (out of memory: killed by the kernel)
            self.proc.wait()
            raise RuntimeError(f"worker {self.spec} died (exit code {self.proc.returncode}; "
                               "-9: killed, out of memory?)") from None
        return json.loads(self._read("TIME "))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


def interleave(ours: Worker, reference: Worker, repeats: int) -> tuple[list[float], list[float]]:
    """`repeats` timed calls on each side, alternating which side goes first."""
    mine, theirs = [], []
    for r in range(repeats):
        if r % 2 == 0:
            mine.append(ours.step())
            theirs.append(reference.step())
        else:
            theirs.append(reference.step())
            mine.append(ours.step())
    return mine, theirs


def summary(times: list[float]) -> dict:
    return {"median_s": round(statistics.median(times), 4),
            "times_s": [round(t, 4) for t in times]}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(json.loads(sys.argv[2]))
    else:
        sys.exit(__doc__)

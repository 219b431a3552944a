"""Keras callbacks of a training run: step counting, speed, checkpoints, samples, TensorBoard,
and the non-finite-loss guard. They count global steps from the step a run (re)started at."""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np

from keras_l2mgan.bundle import save_bundle
from keras_l2mgan.trainers import current_trainer
from keras_l2mgan.training import checkpoints
from keras_l2mgan.training.samples import sample_grid, write_png


def _float(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)))


class RunCallback(keras.callbacks.Callback):
    """Everything a run does between steps, in one place so the order is explicit:
    speed and guard first, then TensorBoard scalars, samples, checkpoints."""

    def __init__(self, run_dir: Path, start_step: int, total_steps: int, batch_size: int,
                 checkpoint_every: int, sample_every: int, sample_batch: dict,
                 keep_checkpoints: int = 3, log_every: int = 10, allow_non_finite: bool = False,
                 header: dict | None = None, write: bool = True):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.step = start_step
        self.start_step, self.total_steps, self.batch_size = start_step, total_steps, batch_size
        self.checkpoint_every, self.sample_every = checkpoint_every, sample_every
        self.sample_batch, self.keep, self.log_every = sample_batch, keep_checkpoints, log_every
        self.allow_non_finite = allow_non_finite
        # Only one worker of a multi-worker run writes; the others still check the state
        # (the same on every worker) so that all of them stop at the same step.
        self.write = write
        self.header = header or {}
        self.failed_step: int | None = None
        self.failure = ""  # what went non-finite at failed_step
        self.skipped_steps = 0
        self.last_checkpoint: Path | None = None
        self.history: list[tuple[int, dict]] = []
        self._writer = None
        self._window_start = None
        self._window_steps = 0
        self.images_per_second = float("nan")

    # TensorBoard through tf.summary; a machine without TensorFlow (JAX or torch alone, with
    # --data synthetic_memory) trains without logs/.
    def _summary(self):
        if self._writer is None:
            try:
                import tensorflow as tf
            except ImportError:
                self._writer = False  # no TensorFlow: do not look again
            else:
                self._writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        return self._writer or None

    def on_train_begin(self, logs=None):
        self._window_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs if logs is not None else {}
        self.step += 1
        self._window_steps += 1
        values = {k: _float(v) for k, v in logs.items()}
        if not all(math.isfinite(values.get(k, 0.0)) for k in ("d_loss", "g_loss")):
            if self.allow_non_finite:  # fp16: the loss scaler skipped this step
                self.skipped_steps += 1
            else:
                self.failed_step, self.failure = self.step, "non-finite loss"
                self.model.stop_training = True
                return
        now = time.perf_counter()
        if self.step == self.start_step + 1:  # the first step compiles: keep it out of speed
            self._window_start, self._window_steps = now, 0
        elif self.step % self.log_every == 0 or self.step == self.total_steps:
            self.images_per_second = self._window_steps * self.batch_size / (
                now - self._window_start)
            self._window_start, self._window_steps = now, 0
            values["images_per_s"] = self.images_per_second
            self.history.append((self.step, values))
            if self.write and self._summary() is not None:
                with self._summary().as_default(step=self.step):
                    for name, value in values.items():
                        _summary("scalars", f"train/{name}", np.float32(value))
        speed = self.images_per_second
        if not math.isfinite(speed) and self._window_steps:  # before the first log_every
            speed = self._window_steps * self.batch_size / (now - self._window_start)
        if math.isfinite(speed):  # the first (compiling) step has none: no nan in the bar
            logs["images_per_s"] = speed
        # Checkpoint first: it refuses a non-finite state, and then no sample is drawn from it.
        if self.step % self.checkpoint_every == 0 or self.step == self.total_steps:
            try:
                self.write_checkpoint()
            except checkpoints.NonFiniteStateError as error:
                self.failed_step = self.step
                self.failure = f"non-finite weights ({error.variable_path} holds NaN or inf)"
                self.model.stop_training = True
                return
        if self.write and (self.step % self.sample_every == 0 or self.step == self.total_steps):
            self.write_samples()

    def write_samples(self) -> Path:
        grid = sample_grid(self.model.ema_model(), self.sample_batch["images"],
                           self.sample_batch["labels"])
        path = write_png(grid, self.run_dir / "samples" / f"step-{self.step:08d}.png")
        if self._summary() is not None:
            with self._summary().as_default(step=self.step):
                _summary("images", "samples", grid)
            self._summary().flush()
        return path

    def write_checkpoint(self) -> Path | None:
        current_trainer().sync_state(self.model)  # the variables are read below
        if not self.write:
            checkpoints.check_finite(self.step, self.model)
            return None
        self.last_checkpoint = checkpoints.save_checkpoint(
            self.run_dir / "checkpoints", self.step, self.model, self.header, keep=self.keep)
        # The inference bundle (EMA weights) that export and edit read.
        save_bundle(self.model.ema_model(), self.run_dir / "model")
        return self.last_checkpoint

    def on_train_end(self, logs=None):
        if self._writer:
            self._writer.flush()


def _summary(plugin: str, tag: str, value) -> None:
    """A TensorBoard scalar or image summary written with TensorFlow alone (tf.summary.scalar
    and .image need the tensorboard package, which TensorFlow no longer pulls in)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    if plugin == "images":
        height, width = value.shape[:2]
        value = tf.stack([tf.as_string(width), tf.as_string(height), tf.image.encode_png(value)])
    tf.summary.write(tag, value, metadata=metadata)

"""Dynamic batching: concurrent requests to one signature run as one batch.

Like TF Serving's batcher: the first request of a batch waits at most ``timeout_s`` for others;
a batch closes when it reaches ``max_batch_size`` images. Requests are grouped only with requests
whose inputs match in dtype and in every dimension but the first.

Isolation rests on one rule: a request enters a batch only if every one of its inputs has the
same leading size. Merged outputs are split by those sizes, so a request whose inputs disagree
(one image, two labels) could shift every later request's rows onto its neighbours; such a
request is refused here, whatever the server checked before.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import numpy as np

Arrays = dict[str, np.ndarray]
DEFAULT_MAX_BATCH_SIZE = 8  # without a batching_parameters.txt, as in saved_models/'s


def read_batching_parameters(path: str | Path) -> dict[str, int | list[int]]:
    """The fields of a TF Serving batching_parameters.txt (text proto) that the server and
    export use: max_batch_size and batch_timeout_micros (``name { value: N }``) when set, and
    allowed_batch_sizes (``allowed_batch_sizes: N`` repeated, or ``[N, M]``) when given."""
    text = Path(path).read_text()
    parameters: dict[str, int | list[int]] = {}
    for name in ("max_batch_size", "batch_timeout_micros"):
        match = re.search(rf"{name}\s*{{\s*value\s*:\s*(\d+)\s*}}", text)
        if match:
            parameters[name] = int(match.group(1))
    allowed = [int(size) for group in re.findall(r"allowed_batch_sizes\s*:\s*\[?([\d,\s]+)",
                                                 text) for size in re.findall(r"\d+", group)]
    if allowed:
        parameters["allowed_batch_sizes"] = allowed
    return parameters


class BatchSizeMismatch(ValueError):
    """The inputs of one request disagree on their leading (batch) size."""


def request_batch_size(inputs: Arrays) -> int:
    """The one leading size every input shares; BatchSizeMismatch naming them if they differ."""
    sizes = {name: (int(array.shape[0]) if array.ndim else None)
             for name, array in inputs.items()}
    if len(set(sizes.values())) > 1 or None in sizes.values():
        listed = ", ".join(f"{name} has {'no batch dimension' if size is None else size}"
                           for name, size in sorted(sizes.items()))
        raise BatchSizeMismatch(f"inputs disagree on the batch size ({listed}); every input "
                                "needs one entry per image")
    return next(iter(sizes.values()), 0)


def _group_key(inputs: Arrays) -> tuple:
    return tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))


class DynamicBatcher:
    """Queue requests for ``run(inputs) -> outputs`` and run them in batches on one thread."""

    def __init__(self, run: Callable[[Arrays], Arrays], max_batch_size: int = 8,
                 timeout_s: float = 0.002, name: str = "batcher"):
        if max_batch_size < 1:
            raise ValueError(f"max batch size must be >= 1, got {max_batch_size}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self._pending: list[tuple[Arrays, int, Future, float]] = []
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, inputs: Arrays) -> Arrays:
        """Run one request (arrays with a leading batch dim); blocks until its batch is done."""
        size = request_batch_size(inputs)
        if size == 0 or size >= self.max_batch_size:
            return self._run(inputs)  # nothing to gain from waiting for company
        future: Future = Future()
        with self._condition:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._pending.append((inputs, size, future, time.monotonic()))
            self._condition.notify_all()
        return future.result()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _take_batch(self) -> list[tuple[Arrays, int, Future, float]]:
        """Wait for a batch: full, or the oldest request waited timeout_s. Under the lock."""
        while not self._pending and not self._closed:
            self._condition.wait()
        if not self._pending:
            return []
        deadline = self._pending[0][3] + self.timeout_s
        while not self._closed:
            key = _group_key(self._pending[0][0])
            total = sum(size for inputs, size, _, _ in self._pending
                        if _group_key(inputs) == key)
            remaining = deadline - time.monotonic()
            if total >= self.max_batch_size or remaining <= 0:
                break
            self._condition.wait(remaining)
        key = _group_key(self._pending[0][0])
        batch, rest, total = [], [], 0
        for item in self._pending:
            if _group_key(item[0]) == key and total + item[1] <= self.max_batch_size:
                batch.append(item)
                total += item[1]
            else:
                rest.append(item)
        self._pending = rest
        return batch

    def _loop(self) -> None:
        while True:
            with self._condition:
                batch = self._take_batch()
            if not batch:
                return
            self._execute(batch)

    def _execute(self, batch) -> None:
        if len(batch) == 1:
            inputs, _, future, _ = batch[0]
            self._settle(future, inputs)
            return
        names = list(batch[0][0])
        merged = {name: np.concatenate([item[0][name] for item in batch]) for name in names}
        try:
            outputs = self._run(merged)
        except Exception:
            # One bad request (say, an out-of-range label) must not fail its neighbours.
            for inputs, _, future, _ in batch:
                self._settle(future, inputs)
            return
        total = sum(size for _, size, _, _ in batch)
        if any(value.ndim == 0 or value.shape[0] != total for value in outputs.values()):
            # Outputs that are not one row per image cannot be split safely: run each alone.
            for inputs, _, future, _ in batch:
                self._settle(future, inputs)
            return
        start = 0
        for _, size, future, _ in batch:
            future.set_result({k: v[start:start + size] for k, v in outputs.items()})
            start += size

    def _settle(self, future: Future, inputs: Arrays) -> None:
        try:
            future.set_result(self._run(inputs))
        except Exception as error:  # handed to the waiting request thread
            future.set_exception(error)

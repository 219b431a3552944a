"""The side-by-side benchmark times our train step itself, not fit()'s setup and teardown
(benchmarks/side_by_side.py `_step_timer`): on every backend the call returns the step's
seconds, measured after its losses were read back, and that is less than the call's wall time."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from side_by_side import _ours_call  # noqa: E402


@pytest.mark.slow  # JAX compiles the tiny step for ~60 s
def test_train_call_returns_its_own_step_seconds():
    try:
        train_step = _ours_call({"kind": "train", "preset": "tiny_32", "batch": 2,
                                 "precision": "float32", "jit": False})
        for _ in range(2):  # the first call builds and traces
            start = time.perf_counter()
            seconds = train_step()
            wall = time.perf_counter() - start
        assert isinstance(seconds, float)
        assert 0.0 < seconds < wall
    finally:
        keras.config.set_dtype_policy("float32")

"""Shared test setup. The suite runs once per Keras backend (see tests/run_all_backends.sh);
KERAS_BACKEND decides which one this process uses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def current_backend() -> str:
    import keras

    return keras.backend.backend()


# Markers by what a test needs, applied here and nowhere else. Both kinds below run in the
# tensorflow pass only; the names say why, so a reader knows whether a test could move to
# another pass (backend_independent) or never can (needs_tensorflow).
RUN_ONCE_MARKERS = {
    "backend_independent": "what it checks does not depend on this process's Keras backend "
    "(plain Python and NumPy, files, the CLI's parsing, TensorFlow or tf.data as a library, "
    "or each backend started in its own subprocess): run once, in the tensorflow pass",
    "needs_tensorflow": "needs Keras's TensorFlow backend in this process (tf.GradientTape on "
    "a model, tf.function graphs, SavedModel export or loading, TF Serving)",
}
SKIP_REASONS = {
    "backend_independent": "backend-independent: runs once, in the tensorflow pass",
    "needs_tensorflow": "needs the TensorFlow backend: runs in the tensorflow pass",
}


def pytest_configure(config):
    for name, meaning in RUN_ONCE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    # `slow` is declared in pyproject.toml: a test over ~30 s alone on a quiet 2-core machine.
    # CI runs it; `-m "not slow"` leaves those out for a quick local pass.


def pytest_collection_modifyitems(config, items):
    if current_backend() == "tensorflow":
        return
    for item in items:
        marker = next((m for m in RUN_ONCE_MARKERS if m in item.keywords), None)
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASONS[marker]))


@pytest.fixture
def backend() -> str:
    return current_backend()


def run_python(code: str, backend: str, cwd: Path | None = None, timeout: int = 300):
    """Run Python code in a fresh process with KERAS_BACKEND set; return the CompletedProcess."""
    import subprocess

    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd or REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def invoke_l2m(*args):
    """`l2m ARGS` in this process through click's runner; never a traceback in its output."""
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def one_error_line(result) -> str:
    """The single `Error: ...` line of a refused command."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output + result.stderr[-2000:]
    return lines[0]

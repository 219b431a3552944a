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


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "tensorflow_only: backend-independent or TF-bound tests, run only in the tensorflow pass",
    )


def pytest_collection_modifyitems(config, items):
    if current_backend() == "tensorflow":
        return
    skip = pytest.mark.skip(reason="runs in the tensorflow pass only")
    for item in items:
        if "tensorflow_only" in item.keywords:
            item.add_marker(skip)


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

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

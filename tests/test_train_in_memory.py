"""tools/train_in_memory.py: the TensorFlow-free trainer used on the borrowed GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]

# Runs the tool with TensorFlow made unimportable, as on the GPU machine where it is absent. Only
# under JAX: torch probes module names with importlib's find_spec when it loads and cannot take a
# finder that raises, so on torch the tool runs as installed.
WITHOUT_TF = """
import runpy, sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ImportError("TensorFlow is blocked in this test")
if __import__("os").environ["KERAS_BACKEND"] == "jax":
    sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the tool is for backends that run without TensorFlow")
def test_trains_and_writes_a_bundle(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    command = [sys.executable, "-c", WITHOUT_TF, str(ROOT / "tools" / "train_in_memory.py"),
               "--preset", "tiny_32", "--num-train", "64", "--max-steps", "3",
               "--batch-size", "4", "--workers", "1", "--cache", str(tmp_path / "cache"),
               "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["step"] == 3
    assert 0.0 <= history[-1]["edit_mean_all_attrs"] <= 1.0
    assert (out / "model" / "model.weights.h5").is_file() and (out / "samples.png").is_file()

    from keras_l2mgan.bundle import load_bundle

    assert load_bundle(out / "model").config.names == ("not_smiling", "smiling")

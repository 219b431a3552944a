"""tools/background_probe.py: its held-out R^2, and a run on an untrained smiling+male model."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from keras_l2mgan.bundle import save_bundle
from keras_l2mgan.data.domains import domain_names
from keras_l2mgan.model import L2MGAN

SPEC = importlib.util.spec_from_file_location("background_probe",
                                              REPO_ROOT / "tools" / "background_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)


def test_held_out_r2_tells_a_linear_relation_from_noise():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((400, 8))
    linear = features @ rng.standard_normal((8, 3)) + 0.01 * rng.standard_normal((400, 3))
    assert probe.held_out_r2(features, linear) > 0.99
    assert probe.held_out_r2(features, rng.standard_normal((400, 3))) < 0.1


@pytest.mark.backend_independent  # a tool run in its own process, on TensorFlow
def test_probe_reports_both_edits_of_a_smiling_male_model(tmp_path):
    names = tuple(domain_names(["smiling", "male"]))
    model = L2MGAN.from_preset("tiny_32", domain_names=names, num_domains=len(names))
    save_bundle(model, tmp_path / "model")
    result = subprocess.run(
        [sys.executable, "tools/background_probe.py", str(tmp_path / "model"), "--faces", "100"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if " flipped | " in line]
    assert [row.split("|")[1].strip() for row in rows] == ["smiling flipped", "male flipped"]
    border_change = float(rows[0].split("|")[2])
    assert 0 <= border_change <= 255

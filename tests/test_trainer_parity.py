"""The three backends' train steps agree on one fixed batch (tools/compare_trainers.py).

Each backend runs in its own process from the same weights and batch, with SGD so the step's
weight change is the gradient: D's gradient, G+E's gradient of the full loss, the logged losses
and the EMA after two steps must match TensorFlow's. Per-term gradients (the tool's default)
are left to the tool; a missing or mis-signed term moves these numbers by O(1).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

# The tool starts each backend in its own process, each building and tracing the train step.
pytestmark = [pytest.mark.backend_independent, pytest.mark.slow]


def test_backends_compute_the_same_step():
    result = subprocess.run(
        [sys.executable, "tools/compare_trainers.py", "--terms", "all", "--json"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    rows = json.loads(result.stdout)
    assert [row["backend"] for row in rows] == ["jax", "torch"]
    for row in rows:
        for key, value in row.items():
            if key != "backend":
                # Measured: at most 1.6e-3 (L1 terms); a wrong term is O(1).
                assert value < 1e-2, (row["backend"], key, value)

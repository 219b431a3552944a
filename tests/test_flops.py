"""FLOP counting of benchmarks/flops.py (benchmarks only; it traces a TensorFlow graph)."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.needs_tensorflow  # counts ops of a tf.function graph


def test_flop_count_matches_hand_count_for_conv_and_dense(monkeypatch):
    import keras
    import tensorflow as tf

    monkeypatch.syspath_prepend(str(REPO_ROOT))  # benchmarks/ is not an installed package
    from benchmarks.flops import graph_flops

    conv = keras.layers.Conv2D(8, 3, padding="same")
    dense = keras.layers.Dense(5)
    spec = tf.TensorSpec([2, 16, 16, 4], tf.float32)
    # 2 x MACs: conv 2*16*16 outputs x 8 channels x 3*3*4 taps; dense the same positions x 8 x 5.
    expected = 2 * (2 * 16 * 16 * 8 * 36) + 2 * (2 * 16 * 16 * 5 * 8)
    assert graph_flops(lambda x: dense(conv(x)), spec) == expected

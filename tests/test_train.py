"""The train step on the current backend: a short fit on tiny_32 (batch 4, 2 steps)."""

from __future__ import annotations

import numpy as np
import pytest


def _batch_data(n=8, size=32, seed=0, target=False):
    rng = np.random.default_rng(seed)
    data = {"images": rng.uniform(-1, 1, (n, size, size, 3)).astype("float32"),
            "labels": rng.integers(0, 2, n).astype("int32")}
    if target:
        data["target_labels"] = rng.integers(0, 2, n).astype("int32")
    return data


def _numpy(values):
    from keras import ops

    return [np.array(ops.convert_to_numpy(v)) for v in values]


@pytest.fixture(scope="module")
def trained():
    """A tiny model before and after 2 fit() steps (labels drawn inside the step)."""
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.utils.set_random_seed(0)
    model = L2MGAN(get_preset("tiny_32"))
    # XLA on JAX (its eager stateless step is slower than compiling); plain graphs elsewhere.
    model.compile(seed=3, jit_compile=keras.backend.backend() == "jax")
    before = _numpy(model.trainable_variables)
    seed_before = _numpy([model.seed_generator.state])[0]
    history = model.fit(_batch_data(), batch_size=4, epochs=1, verbose=0)
    return model, before, seed_before, history.history


def test_losses_are_finite(trained):
    _, _, _, history = trained
    for name in ("d_loss", "d_real", "d_fake", "r1", "g_loss", "g_adv", "g_style", "g_cycle",
                 "g_ortho"):
        assert np.isfinite(history[name]).all(), name
    assert "g_diversity" not in history  # off by default


def test_both_optimizers_stepped_and_every_weight_moved(trained):
    model, before, _, _ = trained
    optimizers = model.optimizer
    assert int(_numpy([optimizers.g_optimizer.iterations])[0]) == 2
    assert int(_numpy([optimizers.d_optimizer.iterations])[0]) == 2
    after = _numpy(model.trainable_variables)
    unchanged = [v.path for v, a, b in zip(model.trainable_variables, before, after, strict=True)
                 if np.array_equal(a, b)]
    assert not unchanged
    assert len(optimizers.g_variables) + len(optimizers.d_variables) == len(after)


def test_target_labels_drawn_in_step_advance_the_seed(trained):
    model, _, seed_before, _ = trained
    assert not np.array_equal(seed_before, _numpy([model.seed_generator.state])[0])


def test_ema_differs_from_raw_and_feeds_the_ema_model(trained):
    model, _, _, _ = trained
    pairs = model.optimizer.ema_pairs()
    assert len(pairs) == len(model.generator.trainable_variables) + len(
        model.style_encoder.trainable_variables)
    raw, ema = _numpy([p[0] for p in pairs]), _numpy([p[1] for p in pairs])
    assert max(float(np.abs(r - e).max()) for r, e in zip(raw, ema, strict=True)) > 0
    copy = model.ema_model()
    ema_by_path = {p[0].path: e for p, e in zip(pairs, ema, strict=True)}
    first = model.generator.trainable_variables[0]
    np.testing.assert_array_equal(_numpy([copy.generator.trainable_variables[0]])[0],
                                  ema_by_path[first.path])
    edited = copy.edit(_batch_data(2)["images"], 0, 1)
    assert np.isfinite(_numpy([edited])[0]).all()

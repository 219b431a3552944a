"""The training fixes of issue 11: the reconstruction and style-size terms, the EMA warm-up,
gradient clipping."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops


def _loss_with_and_without_term(seed: int, target: list[int], weights, term: str):
    """A tiny_32 model's generator loss with the official weights and with `weights`: the model,
    its inputs, both totals and the logged value of `term` (checked absent without it)."""
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.losses import LossWeights, generator_loss
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(get_preset("tiny_32"))
    x = np.random.default_rng(seed).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    source, target = np.array([0, 1], "int32"), np.array(target, "int32")
    without, logs = generator_loss(model, x, source, target, LossWeights())
    assert term not in logs  # off by default: the official losses
    with_term, logs = generator_loss(model, x, source, target, weights)
    totals = (float(ops.convert_to_numpy(without)), float(ops.convert_to_numpy(with_term)))
    return model, (x, source, target), totals, float(ops.convert_to_numpy(logs[term]))


def test_reconstruction_term_is_l1_of_the_alpha_zero_edit():
    from keras_l2mgan.losses import LossWeights, l1_loss

    model, (x, source, _), (without, with_rec), logged = _loss_with_and_without_term(
        0, [1, 1], LossWeights(reconstruction=2.0), "g_rec")
    expected = float(ops.convert_to_numpy(l1_loss(model.edit(x, source, source, 0.0), x)))
    assert logged == pytest.approx(expected, rel=1e-4)
    assert with_rec == pytest.approx(without + 2.0 * expected, rel=1e-4)


def test_style_size_term_is_the_mean_square_of_both_codes():
    from keras_l2mgan.losses import LossWeights, edited_style

    model, (x, source, target), (without, with_size), logged = _loss_with_and_without_term(
        1, [1, 0], LossWeights(style_size=0.5), "g_size")
    s, *_, s_tilde = (ops.convert_to_numpy(code)
                      for code in edited_style(model.style_encoder, x, source, target))
    expected = float(np.mean(s**2) + np.mean(s_tilde**2))
    assert expected > 0.01
    assert logged == pytest.approx(expected, rel=1e-4)
    assert with_size == pytest.approx(without + 0.5 * expected, rel=1e-4)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_momentum_ramps_up_from_the_first_step(warmup):
    import keras

    from keras_l2mgan.training.optimizers import adam

    optimizer = adam(learning_rate=0.1, weight_decay=0.0, ema_decay=0.999, ema_warmup=warmup)
    weight = keras.Variable(np.full(3, 2.0, "float32"))  # not 0: the averages start at 0
    optimizer.build([weight])
    expected_ema, values = np.zeros(3), []
    for step in range(5):
        optimizer.apply([ops.ones(3)], [weight])
        value = np.array(ops.convert_to_numpy(weight), np.float64)
        values.append(value)
        if step == 0:  # the average starts at the weights after the first step
            momentum = 0.0
        elif warmup:
            momentum = min(0.999, (1 + step) / (10 + step))
        else:
            momentum = 0.999
        expected_ema = momentum * expected_ema + (1 - momentum) * value
    ema = np.array(ops.convert_to_numpy(optimizer._model_variables_moving_average[0]))
    np.testing.assert_allclose(ema, expected_ema, rtol=1e-5)
    moved, lag = abs(values[-1][0] - values[0][0]), abs(values[-1][0] - ema[0])
    if warmup:  # after 5 steps the EMA follows the weights; a plain 0.999 stays at step 1's
        assert lag < 0.5 * moved
    else:
        assert lag > 0.99 * moved
    restored = type(optimizer).from_config(optimizer.get_config())
    assert restored.ema_warmup is warmup


@pytest.mark.parametrize("ema", [False, True])
def test_adam_updates_as_keras_adam_on_every_backend(ema):
    """WarmupEmaAdam takes Keras' own Adam step (fused on torch, where Keras fuses it only for
    keras.optimizers.Adam itself), weight decay included; its EMA follows the raw weights."""
    import keras

    from keras_l2mgan.training.optimizers import adam

    rng = np.random.default_rng(0)
    start = [rng.standard_normal(shape).astype("float32") for shape in ((3, 4), (4,), (2, 2, 3))]
    ours = adam(learning_rate=0.01, weight_decay=1e-2, ema_decay=0.9 if ema else None)
    keras_adam = keras.optimizers.Adam(learning_rate=0.01, beta_1=0.0, beta_2=0.99, epsilon=1e-8,
                                       weight_decay=1e-2)
    results = []
    for optimizer in (ours, keras_adam):
        weights = [keras.Variable(value) for value in start]
        optimizer.build(weights)
        for step in range(4):
            grads = [ops.convert_to_tensor(np.sin(value * (step + 1)).astype("float32"))
                     for value in start]
            optimizer.apply(grads, weights)
        results.append([ops.convert_to_numpy(w) for w in weights])
    for mine, theirs, first in zip(*results, start, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
        assert np.abs(mine - first).min() > 1e-3  # every weight moved
    if ema:
        averages = [ops.convert_to_numpy(a) for a in ours._model_variables_moving_average]
        for average, weight, first in zip(averages, results[0], start, strict=True):
            # The EMA lies between the weights after step 1 and now: closer to now than start.
            assert np.abs(average - weight).mean() < np.abs(first - weight).mean()


def test_clip_norm_bounds_a_spike_and_reaches_both_optimizers():
    """With clip_norm, a gradient spike after a quiet history moves the weight by one learning
    rate; without it, Adam (beta_1 0, beta_2 0.99) moves it by several. compile() hands the cap
    to the G+E and the D optimizer alike."""
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training.optimizers import adam

    moves = {}
    for clip_norm in (None, 0.01):
        optimizer = adam(learning_rate=0.1, weight_decay=0.0, clip_norm=clip_norm)
        weight = keras.Variable(np.zeros(1, "float32"))
        optimizer.build([weight])
        for _ in range(50):  # a quiet history: gradients of 0.01
            optimizer.apply([ops.full((1,), 0.01)], [weight])
        before = float(ops.convert_to_numpy(weight)[0])
        optimizer.apply([ops.full((1,), 100.0)], [weight])  # the spike
        moves[clip_norm] = abs(float(ops.convert_to_numpy(weight)[0]) - before)
    # Unclipped, the spike dominates v: 100 / sqrt(0.01 * 100^2 / (1 - 0.99^51)) = 6.3 learning
    # rates (10 once the bias correction has faded). Clipped to the history's size: one.
    assert moves[None] > 0.5
    assert moves[0.01] < 0.11

    model = L2MGAN(get_preset("tiny_32"))
    model.compile(learning_rate=1e-3, clip_norm=2.5, jit_compile=False)
    assert model.optimizer.g_optimizer.global_clipnorm == 2.5
    assert model.optimizer.d_optimizer.global_clipnorm == 2.5
    assert model.get_compile_config()["g_optimizer"]["config"]["global_clipnorm"] == 2.5

"""The loss terms: values on hand-made inputs, on every backend (keras.ops only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras import ops

from keras_l2mgan.losses import (
    LossWeights,
    adversarial_loss,
    l1_loss,
    orthogonality_loss,
    r1_from_gradients,
)


def _value(x) -> float:
    return float(ops.convert_to_numpy(x))


def test_adversarial_loss_is_binary_cross_entropy_on_logits():
    logits = np.array([0.0, 2.0, -1.0], np.float32)
    sigmoid = 1 / (1 + np.exp(-logits))
    assert _value(adversarial_loss(logits, 1)) == pytest.approx(-np.log(sigmoid).mean(), rel=1e-5)
    assert _value(adversarial_loss(logits, 0)) == pytest.approx(-np.log(1 - sigmoid).mean(),
                                                                rel=1e-5)


def test_r1_is_half_batch_mean_of_per_sample_squared_norm():
    grads = np.ones((2, 4, 4, 3), np.float32)
    grads[1] *= 2.0
    expected = 0.5 * np.mean([48.0, 192.0])
    assert _value(r1_from_gradients(grads)) == pytest.approx(expected)
    assert _value(l1_loss(grads, np.zeros_like(grads))) == pytest.approx(1.5)


@pytest.mark.parametrize("form", ["cosine", "abs_dot", "abs_product"])
def test_orthogonality_is_zero_for_orthogonal_codes(form):
    a = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0]], np.float32)
    b = np.array([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]], np.float32)
    assert _value(orthogonality_loss(a, b, form)) == pytest.approx(0.0, abs=1e-7)
    assert _value(orthogonality_loss(a, a, form)) > 0


def test_cosine_form_ignores_scale_and_abs_dot_does_not():
    a = np.array([[1.0, 1.0]], np.float32)
    b = np.array([[1.0, 0.0]], np.float32)
    cos = _value(orthogonality_loss(a, b, "cosine"))
    assert cos == pytest.approx(1 / math.sqrt(2), rel=1e-5)
    assert _value(orthogonality_loss(10 * a, b, "cosine")) == pytest.approx(cos, rel=1e-5)
    assert _value(orthogonality_loss(10 * a, b, "abs_dot")) == pytest.approx(10.0)


def test_loss_weights_validate():
    assert LossWeights().orthogonality_form == "cosine"
    assert LossWeights().diversity == 0.0
    with pytest.raises(ValueError, match="orthogonality_form"):
        LossWeights(orthogonality_form="dot")
    with pytest.raises(ValueError, match="r1"):
        LossWeights(r1=-1.0)


def test_detached_style_target_changes_gradients_not_the_loss():
    """Detaching s~ removes the target side's gradient path (into E's heads, decomposer and
    transformer) but leaves the loss value as it is."""
    from backend_gradients import loss_gradients

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.losses import LossWeights, generator_loss
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(get_preset("tiny_32"))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    source, target = np.array([0, 1]), np.array([1, 0])
    variables = model.style_encoder.transformers[1].trainable_variables
    results = []
    for detach in (False, True):
        weights = LossWeights(adversarial=0, cycle=0, orthogonality=0, detach_style_target=detach)
        assert LossWeights.from_dict(weights.to_dict()) == weights
        loss, grads, _ = loss_gradients(
            lambda images, w=weights: generator_loss(model, images, source, target, w)[0],
            variables, x)
        results.append((loss, np.concatenate([g.ravel() for g in grads])))
    (loss_through, grad_through), (loss_detached, grad_detached) = results
    assert loss_through == pytest.approx(loss_detached, rel=1e-6)
    assert np.abs(grad_through - grad_detached).max() > 1e-6

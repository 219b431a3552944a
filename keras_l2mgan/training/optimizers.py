"""The two GAN optimizers behind the single ``model.optimizer`` slot that fit() knows.

Keras' trainers thread exactly one optimizer's state through a step (the JAX trainer passes
``model.optimizer.variables`` in and out of its jitted function). ``GANOptimizers`` exposes the
variables of both children (G+E and D) as one list, so the JAX step can split and re-join them,
while the TensorFlow and torch steps call the children directly.

EMA of G and E is Keras' own optimizer EMA on the G+E optimizer (``use_ema=True``,
``ema_momentum=0.999``: ema = 0.999 * ema + 0.001 * param after every applied step). It lives in
the optimizer state, so it is checkpointed with it, updates the same way on all three backends
and under tf.distribute (Keras handles the cross-replica update), and a step skipped by the loss
scaler leaves it untouched. With warm-up (the default) the momentum at step t is
min(0.999, (1 + t) / (10 + t)), as TF1's ExponentialMovingAverage with num_updates: a plain
0.999 EMA after 300 steps still holds 74 % of the random initial weights, and samples and
exports of a short run were noise.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE
from keras_l2mgan.trainers import current_trainer


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class WarmupEmaAdam(keras.optimizers.Adam):
    """Adam whose EMA momentum ramps up: min(ema_momentum, (1 + t) / (10 + t)) at step t > 0;
    the first step copies the weights, as Keras' own EMA does.

    The ramp reaches 0.99 at step 891 and 0.999 at step 8,991, so the EMA follows the raw
    weights early on and averages over ~1,000 steps only once training has run that long.
    """

    def __init__(self, *args, ema_warmup: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema_warmup = ema_warmup

    def _backend_update_step(self, grads, trainable_variables, learning_rate) -> None:
        # Keras runs its fused torch Adam only for keras.optimizers.Adam itself, not subclasses.
        fused = current_trainer().fused_adam_step
        if fused is None:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        fused(self, grads, trainable_variables, learning_rate)

    def _update_model_variables_moving_average(self, trainable_variables) -> None:
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")  # applied steps before this one
        if self.ema_warmup:
            # The averages start at zero (Keras creates them so): the first step copies the
            # weights, as Keras' own EMA does.
            ramp = ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step))
        else:
            ramp = ops.convert_to_tensor(self.ema_momentum, "float32")
        momentum = ops.where(step > 0, ramp, 0.0)
        pairs = [(average, var) for var, average in
                 zip(trainable_variables, self._model_variables_moving_average, strict=True)
                 if average is not None]
        fused = current_trainer().fused_moving_average
        if fused is not None:
            fused([a for a, _ in pairs], [v for _, v in pairs], momentum)
            return
        for average, var in pairs:
            m = ops.cast(momentum, var.dtype)
            average.assign(m * average + (1.0 - m) * var)

    def get_config(self):
        return {**super().get_config(), "ema_warmup": self.ema_warmup}


def adam(learning_rate: float = 1e-4, weight_decay: float = 1e-4, ema_decay: float | None = None,
         ema_warmup: bool = True, clip_norm: float | None = None):
    """Adam(beta_1 0, beta_2 0.99) with Keras' decoupled weight decay (AdamW semantics); with
    ``ema_decay``, an EMA of the weights (ramped up when ``ema_warmup``); with ``clip_norm`` > 0,
    gradients scaled to at most that global norm before Adam sees them.

    Why clip at all: with beta_1 0 a sudden gradient k times its recent size moves every weight
    by up to 1 / sqrt(1 - beta_2) = 10 learning rates in one step; at lr 2e-3 such kicks made
    the style codes explode (README, Keeping the face). Clipped, one step cannot dwarf the
    history Adam divides by."""
    return WarmupEmaAdam(
        learning_rate=learning_rate, beta_1=0.0, beta_2=0.99, epsilon=1e-8,
        weight_decay=weight_decay or None, use_ema=ema_decay is not None,
        ema_momentum=ema_decay if ema_decay is not None else 0.99, ema_warmup=ema_warmup,
        global_clipnorm=clip_norm or None,  # 0 is off, as None
    )


def inner(optimizer):
    """The optimizer under a LossScaleOptimizer, or the optimizer itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class GANOptimizers(keras.optimizers.Optimizer):
    """G+E optimizer and D optimizer as one; build() splits the variables by network.

    The config holds both children, so a .keras file rebuilds them; ``d_variables`` belong to
    a model and are not in it: ``L2MGAN.compile`` passes them (``compile_from_config`` too).
    """

    def __init__(self, g_optimizer, d_optimizer, d_variables=(), name: str = "gan_optimizers"):
        super().__init__(learning_rate=0.0, name=name)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self._d_variable_ids = {id(v) for v in d_variables}
        self._set_untracked("g_variables", [])
        self._set_untracked("d_variables", [])

    def _set_untracked(self, name: str, value) -> None:
        # A list of variables set as an attribute would be tracked as this optimizer's own
        # state, and fit() would then thread the model weights twice.
        object.__setattr__(self, name, value)

    def build(self, var_list) -> None:
        if self.built:
            return
        self._set_untracked("g_variables",
                            [v for v in var_list if id(v) not in self._d_variable_ids])
        self._set_untracked("d_variables", [v for v in var_list if id(v) in self._d_variable_ids])
        self.g_optimizer.build(self.g_variables)
        self.d_optimizer.build(self.d_variables)
        self.built = True

    @property
    def variables(self):
        return self._variables[:] + self.g_optimizer.variables + self.d_optimizer.variables

    def split_values(self, values):
        """Split a list aligned with ``variables`` into (own, G+E optimizer, D optimizer)."""
        own, g = len(self._variables), len(self.g_optimizer.variables)
        return values[:own], values[own:own + g], values[own + g:]

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("the L2MGAN train step applies the G and D optimizers itself")

    def finalize_variable_values(self, var_list) -> None:
        # fit() would copy the EMA over the raw weights here; the raw weights must survive
        # (resuming continues from them), and samples/export read the EMA explicitly.
        return None

    def ema_pairs(self):
        """(raw variable, EMA variable) for every G and E weight."""
        g = inner(self.g_optimizer)
        if not g.use_ema:
            raise ValueError("the G+E optimizer was built without use_ema; no EMA to read")
        return list(zip(g._trainable_variables, g._model_variables_moving_average, strict=True))

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name,
                "g_optimizer": keras.optimizers.serialize(self.g_optimizer),
                "d_optimizer": keras.optimizers.serialize(self.d_optimizer)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> GANOptimizers:
        config = dict(config)
        for key in ("g_optimizer", "d_optimizer"):
            config[key] = keras.optimizers.deserialize(config[key],
                                                       custom_objects=custom_objects)
        return cls(**config)

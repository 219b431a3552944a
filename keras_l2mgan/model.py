"""L2MGAN: the three networks under one config, and the edit itself.

The edit moves only the attribute-related part of the style code:
    s~ = s_un + s_re + alpha * (s~_re - s_re);   x~ = G(x, s~)
alpha = 0 reconstructs, 1 is the full edit, > 1 extrapolates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import ops

from keras_l2mgan.config import PRESETS, L2MConfig, get_preset
from keras_l2mgan.layers.common import SERIALIZATION_PACKAGE
from keras_l2mgan.networks import Discriminator, Generator, StyleEncoder
from keras_l2mgan.networks.common import check_labels
from keras_l2mgan.trainers import current_trainer


def _as_column(alpha, dtype):
    """alpha as a scalar or an (N, 1) column, so it broadcasts over the style code."""
    alpha = ops.cast(ops.convert_to_tensor(alpha), dtype)
    return ops.reshape(alpha, (-1, 1)) if len(alpha.shape) == 1 else alpha


def moved_style(s_un, s_re, new_s_re, alpha=None):
    """The edit formula, written once: s~ = s_un + s_re + alpha * (new_s_re - s_re), the style
    code with its attribute-related part moved towards new_s_re (s~_re, or a reference's s_re).

    alpha None is the full move the losses train on, computed as s_un + new_s_re like the
    official trainer (equal to alpha 1 up to float rounding; kept so training stays the same).
    """
    if alpha is None:
        return s_un + new_s_re
    return s_un + s_re + _as_column(alpha, s_re.dtype) * (new_s_re - s_re)


def edit_style(style_encoder: StyleEncoder, x, source, target, alpha=1.0):
    """The edited style code s~ of images x moved from `source` to `target` with strength alpha."""
    return _edited_and_own_style(style_encoder, x, source, target, alpha)[0]


def _edited_and_own_style(style_encoder: StyleEncoder, x, source, target, alpha=1.0):
    """(s~, s): the edited code and x's own code s = E(x, source), from one encoder pass."""
    s, s_un, s_re, s_tilde_re = style_encoder(x, source, target)
    return moved_style(s_un, s_re, s_tilde_re, alpha), s


def like_style(style_encoder: StyleEncoder, x, source, reference, reference_domain,
               alpha=1.0):
    """The style code of x with its attribute-related part moved towards a reference face's:
    s~ = s_un(x) + s_re(x) + alpha * (s_re(ref) - s_re(x)). Each image's code is read in its
    own domain (source for x, reference_domain for the reference)."""
    return _liked_and_own_style(style_encoder, x, source, reference, reference_domain, alpha)[0]


def _liked_and_own_style(style_encoder: StyleEncoder, x, source, reference, reference_domain,
                         alpha=1.0):
    """(s~, s) of :func:`like_style`, with x's own code s = E(x, source)."""
    s = style_encoder.encode(x, source)
    s_un, s_re = style_encoder.decompose(s)
    _, s_re_ref = style_encoder.decompose(style_encoder.encode(reference, reference_domain))
    return moved_style(s_un, s_re, s_re_ref, alpha), s


def edit(generator: Generator, style_encoder: StyleEncoder, x, source, target, alpha=1.0,
         masks=None):
    """Edit images x (N, S, S, 3 in [-1, 1]) from domain `source` to `target`.

    source and target are (N,) integer labels; alpha is a float or an (N,) array.
    """
    return generator(x, edit_style(style_encoder, x, source, target, alpha), masks)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class L2MGAN(keras.Model):
    """Generator, style encoder (with the style transformer) and discriminator of one config."""

    def __init__(self, config: L2MConfig | dict[str, Any] | None = None, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = L2MConfig()
        if isinstance(config, dict):
            config = L2MConfig.from_dict(config)
        self.config = config
        c = config
        self.generator = Generator(c.img_size, c.style_dim, c.w_hpf, c.dim_in, c.max_conv_dim,
                                   name="generator")
        self.style_encoder = StyleEncoder(c.img_size, c.style_dim, c.num_domains, c.dim_in,
                                          c.max_conv_dim, name="style_encoder")
        self.discriminator = Discriminator(c.img_size, c.num_domains, c.dim_in, c.max_conv_dim,
                                           name="discriminator")
        self.fan = None
        if c.fan:
            from keras_l2mgan.networks.fan import FAN

            self.fan = FAN(name="fan")
            self.fan.trainable = False  # pretrained and frozen, as in the official training
        self.built = True

    @classmethod
    def from_preset(cls, name_or_dir: str | Path, **overrides: Any) -> L2MGAN:
        """A preset, as keras-hub names them: a preset NAME (config.PRESETS, `overrides` allowed)
        gives fresh random weights of that config; a preset DIRECTORY (a bundle, as
        `save_to_preset` or training writes it) gives its config and trained weights.

        A name wins over a same-named folder in the current directory, so `tiny_32` means
        the same everywhere."""
        from keras_l2mgan.bundle import load_bundle

        if isinstance(name_or_dir, str) and name_or_dir in PRESETS:
            model = cls(get_preset(name_or_dir, **overrides))
            model.preset_source = f"preset {name_or_dir} (random weights)"
            return model
        directory = Path(name_or_dir)
        if not directory.is_dir():  # neither: today's unknown-preset error, which lists names
            get_preset(str(name_or_dir))
        if overrides:
            raise ValueError(f"from_preset({str(directory)!r}): a preset directory's config "
                             f"is fixed by its weights; overrides ({', '.join(overrides)}) "
                             "apply to preset names only")
        model = load_bundle(directory)
        model.preset_source = str(directory.resolve())
        return model

    def save_to_preset(self, preset_dir: str | Path, source: str | None = None) -> Path:
        """Write this model as a preset directory that `from_preset` loads: config.json,
        model.weights.h5 (this model's weights as they are: after training, call it on
        `ema_model()` for the EMA weights) and metadata.json; all or nothing, as save_bundle.

        `source` (where the weights came from) defaults to where from_preset loaded them."""
        from keras_l2mgan.bundle import bundle_metadata, save_bundle

        source = source if source is not None else getattr(self, "preset_source", None)
        return save_bundle(self, preset_dir, metadata=bundle_metadata(source))

    def edit(self, x, source, target, alpha=1.0, masks=None):
        """See :func:`edit`. Labels may be ints (one domain for the whole batch) or (N,) arrays.

        With w_hpf > 0 and a FAN, masks default to :meth:`face_masks` of x, as the official
        code always computes them; without a FAN the mask injection is skipped. With
        ``config.blend_changes`` the edit is kept only where it changes the reconstruction.
        """
        x = ops.convert_to_tensor(x)
        batch = x.shape[0]
        source = self._labels(source, batch, "source")
        target = self._labels(target, batch, "target")
        if masks is None:
            masks = self.generator_masks(x)
        style, own_style = _edited_and_own_style(self.style_encoder, x, source, target, alpha)
        return self._draw(x, style, own_style, masks)

    def edit_like(self, x, reference, alpha=1.0, source=None, reference_domain=None,
                  masks=None):
        """Reference-guided edit: x keeps its attribute-unrelated code and takes the
        attribute-related code of ``reference`` (see :func:`like_style`); alpha 0
        reconstructs x, 1 takes the reference's attributes. ``reference`` is one image per
        x, or one image (1, S, S, 3) for the whole batch. Domains left as None are guessed by
        the discriminator, as `l2m edit` guesses them.
        """
        x = ops.convert_to_tensor(x)
        reference = ops.convert_to_tensor(reference, dtype=x.dtype)
        batch = x.shape[0]
        if reference.shape[0] == 1 and batch != 1:
            reference = ops.repeat(reference, ops.shape(x)[0], axis=0)
        source = (self.guess_domain(x) if source is None
                  else self._labels(source, batch, "source"))
        reference_domain = (self.guess_domain(reference) if reference_domain is None
                            else self._labels(reference_domain, batch, "reference_domain"))
        if masks is None:
            masks = self.generator_masks(x)
        style, own_style = _liked_and_own_style(self.style_encoder, x, source, reference,
                                                reference_domain, alpha)
        return self._draw(x, style, own_style, masks)

    def _draw(self, x, style, own_style, masks):
        """G(x, style); with ``config.blend_changes``, blended into x where it differs from
        the reconstruction G(x, own_style), own_style being E(x, source) (see
        keras_l2mgan.blend)."""
        edited = self.generator(x, style, masks)
        if not self.config.blend_changes:
            return edited
        from keras_l2mgan.blend import blend_changes

        reconstruction = self.generator(x, own_style, masks)
        return blend_changes(x, edited, reconstruction, *self.config.blend_grey_levels)

    def guess_domain(self, x):
        """(N,) int32: the discriminator's guess of each image's domain (its largest logit)."""
        return ops.cast(ops.argmax(self.discriminator.domain_logits(x), axis=-1), "int32")

    def generator_masks(self, x):
        """The masks G uses for input x: :meth:`face_masks` when w_hpf > 0 and a FAN is
        present, else None (the generator then skips its high-pass injection)."""
        if self.fan is None or self.config.w_hpf <= 0:
            return None
        return self.face_masks(x)

    def face_masks(self, x):
        """(coarse, fine) face masks of [-1, 1] images x, each (N, 256, 256, 1) float32."""
        if self.fan is None:
            raise ValueError("this model has no FAN (config fan=false): pass masks explicitly "
                             "or use a bundle with one (l2m import --wing wing.ckpt)")
        from keras_l2mgan.masks import heatmaps_to_masks

        return heatmaps_to_masks(self.fan(ops.convert_to_tensor(x)))

    def _labels(self, labels, batch, argument):
        check_labels(labels, self.config.num_domains, argument)
        labels = ops.convert_to_tensor(labels, dtype="int32")
        if len(labels.shape) == 0 and batch is not None:
            labels = ops.full((batch,), labels, dtype="int32")
        return labels

    def call(self, inputs):
        """An image batch alone reconstructs it in domain 0 (what fit() calls while building);
        a dict with images, source_domain, target_domain and alpha edits; a training batch
        (images, labels) reconstructs the images in their own domain."""
        if isinstance(inputs, dict) and "source_domain" in inputs:
            return self.edit(inputs["images"], inputs["source_domain"],
                             inputs["target_domain"], inputs.get("alpha", 1.0))
        if isinstance(inputs, dict):
            images = inputs["images"]
            labels = inputs.get("labels")
            if labels is None:
                labels = ops.zeros((ops.shape(images)[0],), dtype="int32")
            return self.generator(images, self.style_encoder.encode(images, labels))
        zeros = ops.zeros((ops.shape(inputs)[0],), dtype="int32")
        return self.generator(inputs, self.style_encoder.encode(inputs, zeros))

    # Training. The losses live in keras_l2mgan.losses (keras.ops only); the step itself is one
    # small module per backend in keras_l2mgan.trainers, picked here as Keras picks its trainers.

    def compile(self, g_optimizer=None, d_optimizer=None, loss_weights=None,
                learning_rate: float = 1e-4, weight_decay: float = 1e-4,
                ema_decay: float = 0.999, seed: int = 0, jit_compile="auto",
                steps_per_execution: int = 1, ema_warmup: bool = True,
                clip_norm: float | None = None) -> None:
        """Set up training: Adam(lr, 0.0, 0.99, weight decay) for G+E (with EMA) and for D,
        each clipping its gradients to global norm ``clip_norm`` when given.

        Under a ``mixed_float16`` policy both optimizers are wrapped in a LossScaleOptimizer
        (dynamic loss scaling; a step with non-finite gradients is skipped). On a backend whose
        trainer has SUPPORTS_JIT False (torch: torch.compile cannot take R1's double backward)
        the step always runs eagerly.
        """
        from keras_l2mgan.losses import LossWeights
        from keras_l2mgan.training.optimizers import GANOptimizers, adam, inner

        if isinstance(loss_weights, dict) or loss_weights is None:
            loss_weights = LossWeights.from_dict(loss_weights)
        self.loss_weights = loss_weights
        g_optimizer = g_optimizer or adam(learning_rate, weight_decay, ema_decay, ema_warmup,
                                          clip_norm)
        d_optimizer = d_optimizer or adam(learning_rate, weight_decay, clip_norm=clip_norm)
        if not inner(g_optimizer).use_ema:
            raise ValueError("g_optimizer must keep an EMA of G and E: pass use_ema=True")
        if self.dtype_policy.name == "mixed_float16":
            LSO = keras.optimizers.LossScaleOptimizer
            g_optimizer = g_optimizer if isinstance(g_optimizer, LSO) else LSO(g_optimizer)
            d_optimizer = d_optimizer if isinstance(d_optimizer, LSO) else LSO(d_optimizer)
        # As given (before the backend may turn jit off), so a .keras file loads as compiled.
        self._compile_settings = {"seed": seed, "jit_compile": jit_compile}
        trainer = current_trainer()
        if not trainer.SUPPORTS_JIT:
            jit_compile = False
        if getattr(self, "seed_generator", None) is None:
            self.seed_generator = keras.random.SeedGenerator(seed, name="target_labels")
        else:
            self.seed_generator.state.assign(ops.convert_to_tensor([seed, 0], "uint32"))
        optimizers = GANOptimizers(g_optimizer, d_optimizer,
                                   d_variables=self.discriminator.trainable_variables)
        super().compile(optimizer=optimizers, jit_compile=jit_compile,
                        steps_per_execution=steps_per_execution)
        # compile() wraps self.optimizer for mixed_float16; the children are already wrapped.
        self.optimizer = optimizers
        # Build now (fit() does not on every backend): checkpoints can then load into it.
        optimizers.build(self.trainable_variables)
        self._train_step_fn = trainer.train_step

    def get_compile_config(self) -> dict[str, Any]:
        """compile()'s arguments, which a .keras file keeps and `compile_from_config` replays.

        Keras' own would hold the GANOptimizers, which only compile() can wire to this model's
        D variables; the children are saved as they are now (a changed learning rate too) and
        their variables are restored by `keras.saving.load_model` after this compile."""
        if not self.compiled:
            return {}
        return {"g_optimizer": keras.optimizers.serialize(self.optimizer.g_optimizer),
                "d_optimizer": keras.optimizers.serialize(self.optimizer.d_optimizer),
                "loss_weights": self.loss_weights.to_dict(),
                "steps_per_execution": self.steps_per_execution,
                **self._compile_settings}

    def compile_from_config(self, config: dict[str, Any]) -> None:
        config = dict(config)
        for key in ("g_optimizer", "d_optimizer"):
            config[key] = keras.optimizers.deserialize(config[key])
        self.compile(**config)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras' TensorFlow trainer calls this before the first step; the backend's trainer
        # may change what it builds from (trainers/tensorflow.py: keras-team/keras#20329).
        iterator, data_batch = current_trainer().symbolic_build_inputs(self, iterator,
                                                                       data_batch)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, *args):
        # TF and torch call train_step(data); JAX calls train_step(state, data).
        return self._train_step_fn(self, *args)

    def unpack_batch(self, data):
        """(images, source labels, target labels, unchanged masks) of a training batch.

        Target labels come from the batch when it has them (the data pipeline draws them, so
        a distributed run sees the same ones as a single-device run); otherwise they are drawn
        here with the model's seeded generator. They may equal the source labels. The
        unchanged masks (the unchanged-region term's) are None unless the batch has them.
        """
        if isinstance(data, (tuple, list)):
            data = data[0]
        images = ops.convert_to_tensor(data["images"])  # train_on_batch on torch passes numpy
        source = ops.cast(data["labels"], "int32")
        target = data.get("target_labels")
        if target is None:
            target = keras.random.randint(ops.shape(source), 0, self.config.num_domains,
                                          seed=self.seed_generator, dtype="int32")
        unchanged = data.get("unchanged_masks")
        if unchanged is not None:
            unchanged = ops.convert_to_tensor(unchanged)
        return images, source, ops.cast(target, "int32"), unchanged

    def ema_model(self) -> L2MGAN:
        """A float32 L2MGAN whose generator and style encoder hold the EMA weights (D, FAN: raw).

        This is what samples, evaluation and export use. Built once, refreshed on each call.
        """
        current_trainer().sync_state(self)
        copy = getattr(self, "_ema_copy", None)
        if copy is None:
            policy = keras.config.dtype_policy()
            keras.config.set_dtype_policy("float32")
            try:
                copy = L2MGAN(self.config)
            finally:
                keras.config.set_dtype_policy(policy)
            object.__setattr__(self, "_ema_copy", copy)  # not tracked: not part of this model
        ema = {id(raw): avg for raw, avg in self.optimizer.ema_pairs()}
        pairs = [(self.generator, copy.generator), (self.style_encoder, copy.style_encoder),
                 (self.discriminator, copy.discriminator)]
        if self.fan is not None:
            pairs.append((self.fan, copy.fan))
        for net, net_copy in pairs:
            for raw, target in zip(net.weights, net_copy.weights, strict=True):
                target.assign(ops.convert_to_numpy(ema.get(id(raw), raw)))
        return copy

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("config"), **config)

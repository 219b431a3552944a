"""L2M-GAN training losses, in keras.ops only (the same code runs on every backend).

One iteration is a discriminator step, then a generator step that updates G and E:

    D: BCE(D(x, y), 1) + BCE(D(G(x, s~), y~), 0) + w_r1 * R1          (fakes without grad into G)
    G: BCE(D(x~, y~), 1) + w_sty * |E(x~, y~) - s~| + w_cyc * |G(x~, s) - x|
       + w_ortho * [ortho(s_un, s_re) + ortho(s_un, s~_re)] + w_rec * |G(x, s) - x|
       + w_unch * |x~ - G(x, s)| on the region no attribute changes   (off by default)
       (- w_ds * diversity, off by default)

with s = E(x, y), s~ = s_un + s~_re, x~ = G(x, s~). With w_hpf > 0 and a FAN, every generator
call also gets the face masks of its own input, from the frozen FAN and without gradient, as
StarGAN v2's solver does: masks(x) for G(x, .), masks(x~) for the cycle G(x~, s). Every term
is computed in float32, whatever the mixed-precision policy, so loss values and the R1 penalty
never round to bf16/fp16.

The only backend-specific piece is the gradient of D with respect to its input (R1): the
trainer passes it in as ``r1_fn(x, labels) -> (real_logits, r1_penalty)``.
"""

from __future__ import annotations

from keras import ops

from keras_l2mgan.loss_weights import ORTHOGONALITY_FORMS, LossWeights  # noqa: F401 (re-exported)
from keras_l2mgan.model import moved_style


def _f32(x):
    return ops.cast(x, "float32")


def adversarial_loss(logits, target: float):
    """Non-saturating GAN loss: binary cross-entropy on logits against a constant 0 or 1."""
    logits = _f32(logits)
    # BCE(logits, 1) = softplus(-logits); BCE(logits, 0) = softplus(logits).
    return ops.mean(ops.softplus(-logits if target == 1 else logits))


def r1_from_gradients(gradients):
    """R1: 0.5 * batch mean of the per-sample sum of squared dD/dx (float32)."""
    gradients = _f32(gradients)
    per_sample = ops.sum(ops.square(gradients), axis=tuple(range(1, len(gradients.shape))))
    return 0.5 * ops.mean(per_sample)


def l1_loss(a, b):
    return ops.mean(ops.abs(_f32(a) - _f32(b)))


def masked_l1_loss(a, b, mask):
    """Mean |a - b| over the pixels where `mask` (B, H, W, 1), in [0, 1], is on."""
    mask = _f32(mask)
    channels = ops.shape(a)[-1]
    covered = ops.sum(mask) * ops.cast(channels, "float32")
    return ops.sum(mask * ops.abs(_f32(a) - _f32(b))) / ops.maximum(covered, 1.0)


def orthogonality_loss(a, b, form: str = "cosine"):
    """How far the rows of a and b are from orthogonal; 0 when every pair is orthogonal."""
    a, b = _f32(a), _f32(b)
    if form == "cosine":
        dot = ops.sum(a * b, axis=-1)
        norms = ops.sqrt(ops.sum(a * a, axis=-1) * ops.sum(b * b, axis=-1) + 1e-12)
        return ops.mean(ops.abs(dot) / norms)
    if form == "abs_dot":
        return ops.mean(ops.abs(ops.sum(a * b, axis=-1)))
    if form == "abs_product":
        return ops.mean(ops.abs(a * b))
    raise ValueError(f"unknown orthogonality form {form!r}; choose one of {ORTHOGONALITY_FORMS}")


def edited_style(style_encoder, x, source, target):
    """(s, s_un, s_re, s~_re, s~): the codes of x and its full (alpha = 1) edit towards target."""
    s, s_un, s_re, s_tilde_re = style_encoder(x, source, target)
    return s, s_un, s_re, s_tilde_re, moved_style(s_un, s_re, s_tilde_re)


def generator_masks(model, x):
    """The (coarse, fine) face masks G gets for input x: None without a FAN or when w_hpf is 0.

    FAN is frozen (in no optimizer) and its masks are constants of the step, as the official
    ``get_heatmap`` runs under ``torch.no_grad``: stopping the gradient at FAN's input also
    keeps autograd from recording FAN's forward pass on torch.
    """
    if model.fan is None:  # the common case: no tensor work at all
        return None
    return model.generator_masks(ops.stop_gradient(ops.convert_to_tensor(x)))


def make_fakes(model, x, source, target, masks=None):
    """Edited images for the D step (masks: ``generator_masks(model, x)``). Callers run it
    without gradient tracking."""
    *_, s_tilde = edited_style(model.style_encoder, x, source, target)
    return ops.stop_gradient(model.generator(x, s_tilde, masks))


def discriminator_loss(model, x, x_fake, source, target, weights: LossWeights, r1_fn):
    """D loss and its parts. ``r1_fn(x, labels) -> (logits, r1)`` is the backend's R1."""
    real_logits, r1 = r1_fn(x, source)
    loss_real = adversarial_loss(real_logits, 1)
    loss_fake = adversarial_loss(model.discriminator(x_fake, target), 0)
    loss = loss_real + loss_fake + weights.r1 * r1
    return loss, {"d_loss": loss, "d_real": loss_real, "d_fake": loss_fake, "r1": r1}


def generator_loss(model, x, source, target, weights: LossWeights, masks=None,
                   unchanged_masks=None):
    """G+E loss and its parts (style reconstruction, cycle with the full s, orthogonality).

    `masks` are ``generator_masks(model, x)``; the cycle's masks are those of the fake image.
    `unchanged_masks` (B, H, W, 1), 1 where no trained attribute changes the face, are needed
    when ``weights.unchanged_region`` > 0 (the batch's `unchanged_masks`).
    """
    generator, encoder = model.generator, model.style_encoder
    s, s_un, s_re, s_tilde_re, s_tilde = edited_style(encoder, x, source, target)
    x_fake = generator(x, s_tilde, masks)
    loss_adv = adversarial_loss(model.discriminator(x_fake, target), 1)
    style_target = ops.stop_gradient(s_tilde) if weights.detach_style_target else s_tilde
    loss_style = l1_loss(encoder.encode(x_fake, target), style_target)
    fake_masks = None if masks is None else generator_masks(model, x_fake)
    loss_cycle = l1_loss(generator(x_fake, s, fake_masks), x)
    loss_ortho = (orthogonality_loss(s_un, s_re, weights.orthogonality_form)
                  + orthogonality_loss(s_un, s_tilde_re, weights.orthogonality_form))
    loss = (weights.adversarial * loss_adv + weights.style * loss_style
            + weights.cycle * loss_cycle + weights.orthogonality * loss_ortho)
    logs = {"g_loss": loss, "g_adv": loss_adv, "g_style": loss_style, "g_cycle": loss_cycle,
            "g_ortho": loss_ortho}
    if weights.style_size > 0:
        loss_size = ops.mean(ops.square(_f32(s))) + ops.mean(ops.square(_f32(s_tilde)))
        loss = loss + weights.style_size * loss_size
        logs.update(g_loss=loss, g_size=loss_size)
    x_rec = None
    if weights.reconstruction > 0:
        x_rec = generator(x, s, masks)
        loss_rec = l1_loss(x_rec, x)
        loss = loss + weights.reconstruction * loss_rec
        logs.update(g_loss=loss, g_rec=loss_rec)
    if weights.unchanged_region > 0:
        if unchanged_masks is None:
            raise ValueError("the unchanged-region term needs batches with unchanged_masks "
                             "(l2m train --data synthetic_memory)")
        if x_rec is None:
            x_rec = generator(x, s, masks)
        loss_unchanged = masked_l1_loss(x_fake, x_rec, unchanged_masks)
        loss = loss + weights.unchanged_region * loss_unchanged
        logs.update(g_loss=loss, g_unchanged=loss_unchanged)
    if weights.diversity > 0:
        # StarGAN v2's diversity-sensitive term, reference-guided: the same images edited with
        # the target code of another sample in the batch should look different.
        *_, s_other = edited_style(encoder, ops.roll(x, 1, axis=0), ops.roll(source, 1, axis=0),
                                   target)
        loss_div = l1_loss(x_fake, generator(x, s_other, masks))
        loss = loss - weights.diversity * loss_div
        logs.update(g_loss=loss, g_diversity=loss_div)
    return loss, logs

"""Where do exploding style codes come from? Read training checkpoints of a run and print, per
checkpoint, the style codes' sizes on 32 training faces, and, with --terms, which loss term's
descent direction would grow them.

    python tools/style_code_growth.py runs/RUN/checkpoints/ckpt-00000200.npz ... [--terms]

Sizes: mean L2 norm of s = E(x), s_un, s_re, s~_re (the transformer's output), E(x~) and the
style loss |E(x~) - s~|. --terms (TensorFlow only: tf.GradientTape) takes each G-step term alone
and prints cos(-grad, d|s|^2/dtheta) over E's weights: > 0 means descending that term grows the
codes. The faces are the first 32 of the synthetic train split, rendered at the run's size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

NUM_FACES = 32
TERMS = {"adversarial": {"adversarial": 1.0}, "cycle": {"cycle": 1.0},
         "reconstruction x10": {"reconstruction": 10.0}, "orthogonality": {"orthogonality": 1.0},
         "style": {"style": 1.0}}


def load_model(path: Path):
    """(an L2MGAN holding a checkpoint's weights, the checkpoint's header)."""
    from keras_l2mgan.config import L2MConfig
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training import checkpoints

    model = L2MGAN(L2MConfig.from_dict(checkpoints.read_header(path)["config"]))
    model.compile(jit_compile=False)  # the optimizer variables the checkpoint also holds
    return model, checkpoints.load_checkpoint(path, model)


def training_faces(attrs: str, img_size: int):
    """(images in [-1, 1], their domains): the first NUM_FACES faces of the train split."""
    from keras_l2mgan.data import domains
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.image_range import to_unit
    from keras_l2mgan.metrics import synthetic

    params = synthetic.split_params("train")[:NUM_FACES]
    names = domains.parse_attrs(attrs, renderer.ATTRIBUTES)
    labels = domains.labels_from_attributes(synthetic.attribute_values(params, names))
    return to_unit(synthetic.render(params, img_size)), labels.astype("int32")


def code_sizes(model, x, source, target) -> str:
    from keras import ops

    from keras_l2mgan.losses import edited_style

    s, s_un, s_re, s_tilde_re, s_tilde = (
        ops.convert_to_numpy(t) for t in edited_style(model.style_encoder, x, source, target))
    x_fake = model.generator(x, s_tilde)
    fake_code = ops.convert_to_numpy(model.style_encoder.encode(x_fake, target))

    def norm(a):
        return f"{float(np.linalg.norm(a, axis=-1).mean()):.3g}"

    return (f"|s| {norm(s)}  |s_un| {norm(s_un)}  |s_re| {norm(s_re)}  |s~_re| {norm(s_tilde_re)}"
            f"  |E(x~)| {norm(fake_code)}  style L1 {np.abs(fake_code - s_tilde).mean():.3g}")


def term_growth(model, x, source, target) -> list[str]:
    import tensorflow as tf
    from keras import ops

    from keras_l2mgan.losses import LossWeights, generator_loss

    encoder = model.style_encoder
    variables = encoder.trainable_variables

    def flat_gradient(fn) -> np.ndarray:
        with tf.GradientTape() as tape:
            value = fn()
        grads = tape.gradient(value, variables)
        return np.concatenate([np.zeros(v.shape).ravel() if g is None else g.numpy().ravel()
                               for v, g in zip(variables, grads, strict=True)])

    growth = flat_gradient(lambda: ops.mean(ops.sum(ops.square(encoder.encode(x, source)), -1)))
    off = dict(adversarial=0, style=0, cycle=0, orthogonality=0, reconstruction=0)
    lines = []
    for name, weights in TERMS.items():
        loss_weights = LossWeights(**{**off, **weights})
        descent = -flat_gradient(
            lambda w=loss_weights: generator_loss(model, x, source, target, w)[0])
        cosine = descent @ growth / (np.linalg.norm(descent) * np.linalg.norm(growth) + 1e-30)
        lines.append(f"  {name:20s} |grad| {np.linalg.norm(descent):.3g}  "
                     f"cos(descent, growth) {cosine:+.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--terms", action="store_true", help="also each term's pull on |s|")
    args = parser.parse_args()

    for path in args.checkpoints:
        model, header = load_model(path)
        x, source = training_faces(header["options"]["attrs"], model.config.img_size)
        target = ((source + 1) % model.config.num_domains).astype("int32")
        print(f"{path.name}: {code_sizes(model, x, source, target)}")
        if args.terms:
            print("\n".join(term_growth(model, x, source, target)))


if __name__ == "__main__":
    main()

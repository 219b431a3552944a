"""Give a model bundle the discriminator of another bundle of the same model, and measure how
well each discriminator guesses the domain of the synthetic test faces.

At inference the discriminator only guesses a photo's domain when `--from` is not given
(`L2MGAN.guess_domain`: the largest of its per-domain logits). Its heads are each trained on
their own domain's images, never against each other, so the guess drifts as training goes on,
and more under `--domain-weights` (the most drawn domain's head ends up highest on every face):

    python tools/take_discriminator.py runs/sm_dw1413_14000/model \\
        --discriminator-of runs/sm_ft_lr3e5_7000/model -o runs/smiling_male_ship/model

The edits themselves (G and E) are untouched: `l2m eval` scores them with the true domains.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def guess_accuracy(model, num_test: int = 800) -> float:
    """The share of synthetic test faces whose domain the model's discriminator guesses."""
    from keras_l2mgan.data import domains
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.image_range import to_unit
    from keras_l2mgan.metrics import synthetic

    params = synthetic.split_params("test", num_test)
    images = to_unit(synthetic.render(params, model.config.img_size))
    attrs = [name.removeprefix("not_") for name in model.config.names[-1].split("+")]
    labels = domains.labels_from_attributes(
        synthetic.attribute_values(params, domains.parse_attrs(attrs, renderer.ATTRIBUTES)))
    return float(np.mean(np.asarray(model.guess_domain(images)) == labels))


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--discriminator-of", "donor", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="The bundle whose discriminator the new bundle gets.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="The new bundle's directory (must not exist).")
def main(bundle: str, donor: str, output: str) -> None:
    from keras_l2mgan.bundle import load_bundle, save_bundle

    if Path(output).exists():
        raise click.UsageError(f"{output} exists; pass a new directory")
    model, other = load_bundle(bundle), load_bundle(donor)
    if model.config.names != other.config.names:
        raise click.UsageError(f"the bundles' domains differ: {model.config.names} vs "
                               f"{other.config.names}")
    before = guess_accuracy(model)
    for mine, theirs in zip(model.discriminator.weights, other.discriminator.weights,
                            strict=True):
        if mine.path != theirs.path or mine.shape != theirs.shape:
            raise click.UsageError(f"the discriminators differ ({mine.path} {mine.shape} vs "
                                   f"{theirs.path} {theirs.shape})")
        mine.assign(theirs.numpy())
    after = guess_accuracy(model)
    save_bundle(model, output)
    click.echo(f"{output}: {bundle}'s G and E, {donor}'s discriminator; domain guessed on "
               f"synthetic test faces: {100 * before:.1f} % -> {100 * after:.1f} %")


if __name__ == "__main__":
    main()

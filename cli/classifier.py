"""`l2m classifier train`: the independent attribute classifier `l2m eval` judges edits with."""

from __future__ import annotations

import click

from cli.common import backend_option

DEFAULT_DIR = "classifiers/synthetic_faces_{img_size}px"


@click.group()
def classifier() -> None:
    """The attribute classifier used by `l2m eval` (trained on synthetic faces)."""


@classifier.command("train")
@backend_option
@click.option("--attrs", default=None,
              help="Comma-separated attributes (default: all six synthetic attributes: "
              "Smiling, Male, Young, Eyeglasses, Bangs, Blond_Hair).")
@click.option("--img-size", type=click.IntRange(min=16), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate "
              "(cosine decay to 0).")
@click.option("--num-train", type=click.IntRange(min=1), default=None,
              help="Faces of the train split to use (default: the whole split, 20000).")
@click.option("--num-test", type=click.IntRange(min=1), default=None,
              help="Faces of the test split to report accuracy on (default: all 2000).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", default=None,
              help=f"Output directory (default: {DEFAULT_DIR.format(img_size='SIZE')}).")
def train(attrs: str | None, img_size: int, steps: int, batch_size: int, lr: float,
          num_train: int | None, num_test: int | None, seed: int, output: str | None) -> None:
    """Train the classifier on the synthetic train split; report test-split accuracy."""
    from keras_l2mgan.atomic import check_replaceable
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.metrics.classifier import (
        CLASSIFIER_FILES,
        CLASSIFIER_KIND,
        train_classifier,
    )

    names = [a for a in attrs.split(",") if a.strip()] if attrs else None
    if names is not None:
        for name in names:
            renderer.attribute_index(name)  # fails early, naming the valid attributes
    output = output or DEFAULT_DIR.format(img_size=img_size)
    # Before minutes of training: -o must be new, empty or a classifier dir (never a home dir).
    check_replaceable(output, CLASSIFIER_KIND, CLASSIFIER_FILES)
    model = train_classifier(names, img_size, steps, batch_size, lr, num_train, num_test, seed,
                             log=click.echo)
    model.save(output)
    click.echo(f"saved {output}")
    click.echo("test-split accuracy (real synthetic test images):")
    for attr, value in model.info["test_accuracy"].items():
        flag = "" if value >= 0.99 else "   (below 99%: train longer, e.g. --steps 8000)"
        click.echo(f"  {attr:<12} {100 * value:6.2f} %{flag}")

"""`l2m classifier train`: the independent attribute classifier `l2m eval` judges edits with."""

from __future__ import annotations

import click

from .common import backend_option

DEFAULT_DIR = "classifiers/synthetic_faces_{img_size}px"


@click.group()
def classifier() -> None:
    """The attribute classifier used by `l2m eval` (trained on synthetic faces)."""


@classifier.command("train")
@backend_option
@click.option("--attrs", default=None,
              show_default="all six: Smiling, Male, Young, Eyeglasses, Bangs, Blond_Hair",
              help="Comma-separated synthetic-face attributes to classify.")
@click.option("--img-size", type=click.IntRange(16, 1024), default=64, show_default=True,
              help="Image size in pixels; `l2m eval` needs the model's size.")
@click.option("--steps", type=click.IntRange(min=1), default=4000, show_default=True,
              help="Training steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Faces per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True, help="Peak learning rate (cosine decay to 0).")
@click.option("--num-train", type=click.IntRange(min=1), default=None,
              show_default="the whole split, 20000", help="Faces of the train split to use.")
@click.option("--num-test", type=click.IntRange(min=1), default=None,
              show_default="all 2000", help="Faces of the test split to report accuracy on.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed of the weights and the order of the faces.")
@click.option("-o", "--output", default=None,
              show_default=DEFAULT_DIR.format(img_size="SIZE"),
              help="Output directory (new, empty, or a classifier directory).")
def train(attrs: str | None, img_size: int, steps: int, batch_size: int, lr: float,
          num_train: int | None, num_test: int | None, seed: int, output: str | None) -> None:
    """Train the classifier on the synthetic train split; report test-split accuracy.

    Progress goes to stderr; the accuracy table to stdout."""
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
                             log=lambda message: click.echo(message, err=True))
    model.save(output)
    click.echo(f"saved {output}")
    click.echo("test-split accuracy (real synthetic test images):")
    for attr, value in model.info["test_accuracy"].items():
        flag = "" if value >= 0.99 else "   (below 99%: train longer, e.g. --steps 8000)"
        click.echo(f"  {attr:<12} {100 * value:6.2f} %{flag}")

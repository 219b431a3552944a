"""`l2m data preview` (a labelled image grid) and `l2m data stats` (images per domain and split)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import DataSource, backend_option


def _dataset_options(func):
    options = [
        click.option("--data", "source", type=DataSource(), default="synthetic",
                     show_default=True,
                     help="Dataset: synthetic, celeba, celeba_hq, or a folder "
                          "(root/{train,val}/<domain>/*, or images + a CelebA-format attribute "
                          "file)."),
        # The old spelling: `l2m train` and `l2m eval` say --data.
        click.option("--dataset", "dataset_alias", type=DataSource(), default=None,
                     hidden=True, help="Old name of --data."),
        click.option("--attrs", default="smiling", show_default=True,
                     help="Comma-separated attributes; every combination is a domain "
                          "(ignored for domain folders)."),
        click.option("--img-size", default=64, show_default=True, type=click.IntRange(8, 1024),
                     help="Image size in pixels."),
        click.option("--data-dir", default=None, type=click.Path(file_okay=False),
                     show_default="$L2M_DATA_DIR, else ~/tensorflow_datasets",
                     help="TFDS data directory / CelebA-HQ location."),
        click.option("--num-examples", default=None, type=click.IntRange(min=1),
                     show_default="the whole dataset",
                     help="Synthetic: generate a dataset of this size; others: cap the images."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _source(ctx: click.Context, source: str, alias: str | None) -> str:
    """--data, or its old spelling --dataset; both at once must agree."""
    if alias is None:
        return source
    given = ctx.get_parameter_source("source") != click.core.ParameterSource.DEFAULT
    if given and alias != source:
        raise click.UsageError(f"--data {source} and --dataset {alias} disagree; --dataset is "
                               "the old name of --data: pass one")
    return alias


@click.group()
def data() -> None:
    """Inspect datasets: preview grids and per-domain counts."""


@data.command()
@backend_option
@_dataset_options
@click.option("--split", default="train", show_default=True,
              help="Split to draw from (train, test, val: what the dataset has).")
@click.option("-n", "--per-domain", default=8, show_default=True, type=click.IntRange(min=1),
              help="Images per domain (row).")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Show the training augmentation.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the shuffle (and of the augmentation).")
@click.option("-o", "--output", default="data_preview.png", show_default=True,
              type=click.Path(dir_okay=False), help="PNG to write.")
@click.pass_context
def preview(ctx, source, dataset_alias, attrs, img_size, data_dir, num_examples, split,
            per_domain, augment, seed, output) -> None:
    """Write a PNG grid: one row per domain, labelled with the domain name."""
    source = _source(ctx, source, dataset_alias)
    import numpy as np

    from keras_l2mgan.data import build_dataset
    from keras_l2mgan.grid import image_grid
    from keras_l2mgan.image_range import to_uint8

    info = build_dataset(source, attrs=attrs, img_size=img_size, batch_size=1, split=split,
                         data_dir=data_dir, seed=seed, augment=augment, repeat=True,
                         num_examples=num_examples)
    rows: list[list[np.ndarray]] = [[] for _ in info.domain_names]
    for draws, batch in enumerate(info.dataset.as_numpy_iterator()):
        row = rows[int(batch["labels"][0])]
        if len(row) < per_domain:
            row.append(to_uint8(batch["images"][0]))
        if all(len(r) == per_domain for r in rows) or draws > 200 * per_domain * len(rows):
            break
    # Small images are shown enlarged, pixel for pixel.
    grid = image_grid(rows, labels=info.domain_names, scale=max(1, 96 // img_size), gap=2)
    _save_png(grid, output)
    click.echo(f"wrote {output}: {len(rows)} domains x {per_domain} images at {img_size} px"
               + (f" ({len(info.skipped_files)} unreadable files skipped)"
                  if info.skipped_files else ""))


def _save_png(image, output: str) -> None:
    """Write whole or not at all (never half a PNG), whatever the suffix says."""
    from keras_l2mgan.photo import save_atomic

    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(image, target, image_format="PNG")


@data.command()
@backend_option
@_dataset_options
@click.option("--split", "splits", multiple=True, show_default="all the dataset has",
              help="Split to count (repeat the option for several).")
@click.pass_context
def stats(ctx, source, dataset_alias, attrs, img_size, data_dir, num_examples, splits) -> None:
    """Print the number of images per domain and split."""
    source = _source(ctx, source, dataset_alias)
    from keras_l2mgan.data import build_dataset
    from keras_l2mgan.data.pipeline import available_splits


    splits = splits or available_splits(source, attrs, img_size, data_dir, num_examples)
    click.echo(f"dataset {source}  img_size {img_size}")
    for split in splits:
        info = build_dataset(source, attrs=attrs, img_size=img_size, batch_size=1, split=split,
                             data_dir=data_dir, augment=False, repeat=False,
                             num_examples=num_examples)
        width = max(len(n) for n in info.domain_names)
        click.echo(f"{split}: {info.num_examples} images in {len(info.domain_names)} domains"
                   + (f"  ({len(info.skipped_files)} unreadable files skipped, first: "
                      f"{info.skipped_files[0]})" if info.skipped_files else ""))
        for name, count in info.images_per_domain.items():
            click.echo(f"  {name:<{width}}  {count:>7}")

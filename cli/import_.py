"""`l2m import`: the authors' PyTorch checkpoints (L2M-GAN, StarGAN v2) -> a model bundle."""

from __future__ import annotations

import click

from keras_l2mgan.importers.checkpoint import FORMATS

from .common import backend_option


def _domain_names(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(","))
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"--domains {value!r}: give distinct comma-separated names, e.g. "
                         "not_smiling,smiling")
    return names


@click.command("import")
@backend_option
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Bundle directory to write (new, empty, or an earlier bundle).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="l2mgan (style encoder with transform1/transform2) or stargan-v2 (none: "
                   "the style transformer starts fresh); auto tells them apart.")
@click.option("--img-size", type=click.IntRange(min=8), default=None,
              show_default="read from the style encoder's depth", help="Image size.")
@click.option("--w-hpf", type=click.FloatRange(min=0), default=None,
              show_default="from generator.hpf.filter, else 1 when the generator has the extra "
              "high-pass blocks, else 0", help="High-pass weight.")
@click.option("--domains", default=None, show_default="domain_0, domain_1, ...",
              help="Comma-separated domain names in label order, e.g. not_smiling,smiling.")
@click.option("--wing", type=click.Path(dir_okay=False, path_type=str), default=None,
              show_default="the checkpoint's 'fan' entry, if any", help="StarGAN v2's FAN "
              "(wing.ckpt): the face masks of w_hpf > 0 models and the landmarks of alignment.")
@click.option("--landmarks-mean", type=click.Path(dir_okay=False, path_type=str), default=None,
              show_default="none", help="StarGAN v2's celeba_lm_mean.npz (mean CelebA-HQ "
              "landmarks), kept in the bundle for face alignment.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the parts the file lacks (D, or a StarGAN v2 style transformer).")
def import_command(checkpoint: str, output: str, fmt: str, img_size: int | None,
                   w_hpf: float | None, domains: str | None, wing: str | None,
                   landmarks_mean: str | None, seed: int) -> None:
    """Turn an official *_nets_ema.ckpt / *_nets.ckpt into a bundle for edit, export, train.

    The file is read with torch.load(weights_only=True), or without torch by a restricted
    reader of its zip format: nothing in it runs. Any misfit is one error line naming the
    key, the expected and the found shape; nothing is written then.
    """
    from keras_l2mgan.importers.official import describe, import_checkpoint, save_imported

    result = import_checkpoint(checkpoint, fmt=fmt, img_size=img_size,
                               domain_names=_domain_names(domains), w_hpf=w_hpf, seed=seed,
                               wing=wing, landmarks_mean=landmarks_mean)
    source = result.source
    click.echo(f"read {source['file']} ({source['format']}, sha256 {source['sha256'][:12]}...): "
               f"{describe(result.model.config)}")
    fan = source["fan"]
    wing_file = f" from {fan['file']}" if fan is not None and fan["from"] == "--wing" else ""
    imported = ", ".join(f"{entry}{wing_file if entry == 'fan' else ''} ({count} tensors)"
                         for entry, count in source["imported"].items())
    click.echo(f"imported: {imported}")
    if source["landmarks_mean"] is not None:
        click.echo(f"kept: landmark mean of {source['landmarks_mean']['file']} "
                   f"({source['landmarks_mean']['points']} points) for face alignment")
    for line in source["fresh"]:
        click.echo(f"fresh: {line}")
    for entry, why in source["not_imported"].items():
        click.echo(f"not imported: {entry}: {why}")
    for line in result.notes:
        click.echo(f"note: {line}")
    if source["extra_keys"]:
        click.echo(f"extra keys, not imported ({len(source['extra_keys'])}): "
                   + ", ".join(source["extra_keys"]))
    target = save_imported(result, output)
    click.echo(f"wrote {target}")

"""`l2m info`: backend, library versions, devices and presets with parameter counts."""

from __future__ import annotations

import importlib.metadata
import platform

import click

from .common import backend_option

_LIBRARIES = ("keras", "tensorflow", "tensorflow-datasets", "jax", "torch", "numpy")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@click.command()
@backend_option
@click.option("--no-counts", is_flag=True, help="Skip building each preset to count parameters.")
def info(no_counts: bool) -> None:
    """Show the backend, library versions, devices and presets."""
    import keras

    from keras_l2mgan import __version__
    from keras_l2mgan.config import PRESET_DESCRIPTIONS, PRESETS
    from keras_l2mgan.trainers import current_trainer

    click.echo(f"keras-l2mgan {__version__}  (Python {platform.python_version()})")
    click.echo(f"backend: {keras.backend.backend()}")
    click.echo("libraries: " + ", ".join(f"{p} {_version(p)}" for p in _LIBRARIES))
    # The same list `l2m train --devices` picks from.
    click.echo("devices: " + ", ".join(current_trainer().list_devices()))
    click.echo("presets:")
    for name, config in PRESETS.items():
        line = (f"  {name:<14} {config.img_size:>3} px  domains {config.num_domains}  "
                f"w_hpf {config.w_hpf:g}  dim_in {config.base_dim:>3}  max {config.max_conv_dim}")
        if not no_counts:
            from keras_l2mgan.model import L2MGAN

            model = L2MGAN(config)
            line += (f"  G {model.generator.count_params():,}"
                     f"  E {model.style_encoder.count_params():,}"
                     f"  D {model.discriminator.count_params():,}")
            del model
            keras.backend.clear_session()
        click.echo(line + f"  - {PRESET_DESCRIPTIONS[name]}")

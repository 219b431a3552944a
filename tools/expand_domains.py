"""Write a model bundle for more attributes, started from a bundle trained on fewer, for
`l2m train --init-from` (see keras_l2mgan/expand_domains.py):

    python tools/expand_domains.py runs/smiling/model --attrs smiling,male runs/smiling_male_init
    l2m train --attrs smiling,male --init-from runs/smiling_male_init ...
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path())
@click.option("--attrs", required=True, help="The new model's attributes, comma-separated.")
def main(bundle: str, output: str, attrs: str) -> None:
    from keras_l2mgan.bundle import load_bundle, save_bundle
    from keras_l2mgan.data.domains import domain_names
    from keras_l2mgan.expand_domains import expand_domains

    if Path(output).exists():
        raise click.UsageError(f"{output} already exists: name a new directory")
    names = domain_names([a.strip() for a in attrs.split(",")])
    try:
        expanded = expand_domains(load_bundle(bundle), names)
    except ValueError as error:  # domains that do not extend the bundle's
        raise click.UsageError(str(error)) from None
    save_bundle(expanded, output)
    click.echo(f"{output}: {len(names)} domains ({', '.join(names)}) from {bundle}")


if __name__ == "__main__":
    main()

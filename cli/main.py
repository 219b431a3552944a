"""The `l2m` console script. Commands import keras inside themselves, after --backend is set."""

from __future__ import annotations

import click

from cli.classifier import classifier
from cli.common import UserErrorGroup, backend_option
from cli.data import data
from cli.edit import edit
from cli.eval import eval_command
from cli.export import export
from cli.import_ import import_command
from cli.info import info
from cli.serve import serve
from cli.train import train
from keras_l2mgan import __version__


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="l2m")
@backend_option
def main() -> None:
    """L2M-GAN facial attribute editing: train, edit, export and serve."""


main.add_command(info)
main.add_command(data)
main.add_command(export)
main.add_command(serve)
main.add_command(edit)
main.add_command(train)
main.add_command(classifier)
main.add_command(eval_command)
main.add_command(import_command)

if __name__ == "__main__":
    main()

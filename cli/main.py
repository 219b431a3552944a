"""The `l2m` console script. Commands import keras inside themselves, after --backend is set.

Installed as `keras_l2mgan.cli` (pyproject maps this folder there); in a source checkout it
also runs as `python -m cli.main`, hence the relative imports.
"""

from __future__ import annotations

import click

from keras_l2mgan import __version__

from .classifier import classifier
from .common import L2MGroup, backend_option
from .data import data
from .demo import demo
from .edit import edit
from .eval import eval_command
from .export import export
from .import_ import import_command
from .info import info
from .serve import serve
from .train import train


@click.group(cls=L2MGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="l2m")
@backend_option
def main() -> None:
    """L2M-GAN facial attribute editing: train, edit, export and serve.

    Exit codes: 0 done; 2 usage errors and bad input; 1 failures while running (training
    diverged, server unreachable, photos that failed) and internal errors (-v for the
    traceback). Results go to stdout, progress and logs to stderr.
    """


main.add_command(info)
main.add_command(data)
main.add_command(export)
main.add_command(serve)
main.add_command(demo)
main.add_command(edit)
main.add_command(train)
main.add_command(classifier)
main.add_command(eval_command)
main.add_command(import_command)

if __name__ == "__main__":
    main()

"""Pieces every `l2m` command shares: backend selection and user-error handling."""

from __future__ import annotations

import os
import sys

import click

BACKENDS = ("tensorflow", "jax", "torch")


def _set_backend(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Set KERAS_BACKEND before anything imports keras (keras fixes its backend at import)."""
    if value is None:
        return None
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", value) != value:
        raise click.UsageError(
            f"--backend {value}: keras is already imported with another backend; "
            "pass --backend before anything else runs"
        )
    os.environ["KERAS_BACKEND"] = value
    return value


def backend_option(func):
    """`--backend tensorflow|jax|torch`; without it the usual KERAS_BACKEND / keras.json rules."""
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_backend,
        help="Keras backend to run on (default: $KERAS_BACKEND or ~/.keras/keras.json).",
    )(func)


class UserErrorGroup(click.Group):
    """A click group that turns library ValueErrors into a one-line error and exit code 2.

    Set L2M_DEBUG=1 to see the full traceback instead.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError, NotADirectoryError) as error:
            if os.environ.get("L2M_DEBUG"):
                raise
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            click.echo(f"Error: {message}", err=True)
            ctx.exit(2)

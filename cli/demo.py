"""`l2m demo`: the editing page on a model dir, through the REST API only."""

from __future__ import annotations

import os

import click

from keras_l2mgan.serving.limits import ServingLimits, check_port_free

from .common import verbose_option
from .serve import url


def _has_display() -> bool:
    """Whether a browser can open a window here (a desktop session, macOS or Windows); on a
    headless machine webbrowser would start a text browser in this terminal instead."""
    import sys

    return (sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY"))
            or bool(os.environ.get("WAYLAND_DISPLAY")))


@click.command()
@verbose_option
@click.argument("model_dir", required=False, type=click.Path(path_type=str))
@click.option("--port", type=click.IntRange(0, 65535), default=8501, show_default=True,
              help="Port of the page and its REST API (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 lets other machines edit with your CPU).")
@click.option("--open/--no-open", "open_browser", default=None,
              show_default="open when there is a display",
              help="Open the page in the default browser.")
def demo(model_dir: str | None, port: int, host: str, open_browser: bool | None) -> None:
    """Serve the editing page for the models in MODEL_DIR and print its URL.

    MODEL_DIR is a model base dir (NAME/<version>/), one model's dir (<version>/), like
    `l2m serve`'s; without it, the demo models shipped with the package. The page (pick a
    photo, a model and target attributes or a reference face, move the strength slider,
    download the edit) calls TF Serving's REST API on the same port; nothing is fetched from
    anywhere else. Stop with Ctrl-C.
    """
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if model_dir is None:
        from keras_l2mgan.shipped import shipped_dir

        model_dir = str(shipped_dir("models"))
    check_port_free(host, port)  # one line before TensorFlow loads
    from keras_l2mgan.serving.server import serve_forever, start_servers

    servers = start_servers(model_dir, host, None, port, limits=ServingLimits())
    for entry in servers.repository.models.values():
        click.echo(f"model {entry.name}: versions {sorted(entry.servables)} "
                   f"from {entry.base_path}", err=True)
    address = url(host, servers.rest_port)
    # Tests and scripts wait for this line (with --port 0 it is the only way to learn the port).
    click.echo(f"editing page: {address}")
    sys.stdout.flush()
    if open_browser or (open_browser is None and _has_display()):
        import webbrowser

        webbrowser.open(address)
    serve_forever(servers)

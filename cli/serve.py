"""`l2m serve`: TF Serving's gRPC and REST APIs over a model base dir, from Python."""

from __future__ import annotations

import click

from keras_l2mgan.serving.batching import DEFAULT_MAX_BATCH_SIZE
from keras_l2mgan.serving.limits import (
    MAX_CONCURRENT_REQUESTS,
    MAX_IMAGES_PER_REQUEST,
    MAX_MESSAGE_BYTES,
    ServingLimits,
    check_port_free,
)

from .common import verbose_option

REST_FREE_PORT = -1  # --rest-api-port left out with --port 0: a free port


@click.command()
@verbose_option
@click.argument("model_base_dir", type=click.Path(path_type=str))
@click.option("--port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="gRPC port (0 picks a free one; the bound port is printed).")
@click.option("--rest-api-port", type=click.IntRange(0, 65535), default=None,
              show_default="8501; with --port 0 a free port too",
              help="TF Serving's REST/JSON API and the editing page (http://HOST:PORT/); 0 "
              "disables it, as in tensorflow_model_server. The bound port is printed.")
@click.option("--rest-api-timeout-in-ms", type=click.IntRange(min=1), default=30000,
              show_default=True,
              help="How long a REST request may wait for the decoded-pixel budget.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--model-config-file", type=click.Path(exists=True, dir_okay=False), default=None,
              show_default="every model under MODEL_BASE_DIR, latest version",
              help="A TF Serving models.config (ModelServerConfig text proto): names, version "
              "policies and labels.")
@click.option("--enable-batching", is_flag=True, help="Batch concurrent requests together.")
@click.option("--batching-parameters-file", type=click.Path(exists=True, dir_okay=False),
              default=None, show_default="none",
              help="TF Serving batching_parameters.txt (implies batching).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=None,
              show_default=str(DEFAULT_MAX_BATCH_SIZE),
              help="Largest batch.")
@click.option("--batch-timeout-micros", type=click.IntRange(min=0), default=None,
              show_default="2000",
              help="How long the first request of a batch waits for others.")
@click.option("--max-images-per-request", type=click.IntRange(min=1),
              default=MAX_IMAGES_PER_REQUEST, show_default=True,
              help="Largest batch one request may send; larger ones are refused "
              "(INVALID_ARGUMENT).")
@click.option("--max-concurrent-requests", type=click.IntRange(min=1),
              default=MAX_CONCURRENT_REQUESTS, show_default=True,
              help="RPCs handled at once (one thread each); more are refused "
              "(RESOURCE_EXHAUSTED).")
@click.option("--max-request-mb", type=click.IntRange(1, 2047),
              default=MAX_MESSAGE_BYTES // 2**20, show_default=True,
              help="Largest request message in MiB (RESOURCE_EXHAUSTED above it).")
@click.option("--max-decoded-pixels", type=click.IntRange(min=1), default=None,
              show_default="89,478,485: one photo at the per-image limit of `l2m edit`",
              help="edit_encoded: pixels of the images decoding at once across all requests "
              "(~16 bytes each while they decode); requests wait for room, and one over the "
              "whole budget is refused. Each image may have at most `l2m edit`'s limit.")
def serve(model_base_dir: str, port: int, rest_api_port: int | None,
          rest_api_timeout_in_ms: int,
          host: str, model_config_file: str | None,
          enable_batching: bool, batching_parameters_file: str | None,
          max_batch_size: int | None, batch_timeout_micros: int | None,
          max_images_per_request: int, max_concurrent_requests: int, max_request_mb: int,
          max_decoded_pixels: int | None) -> None:
    """Serve the SavedModels under MODEL_BASE_DIR (NAME/<version>/ or <version>/) over gRPC
    and REST.

    Answers PredictionService.Predict / GetModelMetadata and ModelService.GetModelStatus as
    tensorflow_model_server does, and its REST API on --rest-api-port (GET /v1/models/NAME,
    .../metadata, POST .../NAME:predict), with the editing page at /. Stop with Ctrl-C.
    """
    import os
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    limits = ServingLimits(max_images_per_request, max_concurrent_requests,
                           max_request_mb * 2**20, max_decoded_pixels)
    if rest_api_port is None:
        # A server on free ports (tests, scripts running several) never claims 8501.
        rest_api_port = 8501 if port != 0 else REST_FREE_PORT
    rest_port = rest_api_port or None  # 0 disables REST, as in tensorflow_model_server
    if rest_port == REST_FREE_PORT:
        rest_port = 0
    elif rest_port is not None and rest_port == port:
        raise ValueError(f"--port and --rest-api-port are both {port}; pick two ports")
    # Before TensorFlow loads (and logs): a taken port is one line.
    check_port_free(host, port)
    if rest_port:
        check_port_free(host, rest_port)
    from keras_l2mgan.serving.server import BatchingOptions, serve_forever, start_servers

    batching = (BatchingOptions.from_file(batching_parameters_file) if batching_parameters_file
                else BatchingOptions(enabled=enable_batching))
    if max_batch_size is not None:
        batching.max_batch_size = max_batch_size
    if batch_timeout_micros is not None:
        batching.batch_timeout_micros = batch_timeout_micros
    servers = start_servers(model_base_dir, host, port, rest_port, model_config_file, batching,
                            limits, rest_api_timeout_in_ms / 1000)
    for entry in servers.repository.models.values():
        click.echo(f"model {entry.name}: versions {sorted(entry.servables)} "
                   f"from {entry.base_path}")
    if batching.enabled:
        click.echo(f"batching: max batch {batching.max_batch_size}, "
                   f"timeout {batching.batch_timeout_micros} us")
    click.echo(f"limits: {limits.max_images_per_request} images per request, "
               f"{limits.max_concurrent_requests} concurrent requests, "
               f"{limits.max_message_bytes // 2**20} MiB per request, "
               f"{limits.max_decoded_pixels:,} decoded pixels in flight")
    if servers.rest is not None:
        click.echo(f"REST API on {url(host, servers.rest_port)} (editing page at /)")
    # Tests and scripts wait for this line (with --port 0 it is the only way to learn the port).
    click.echo(f"serving on {host}:{servers.grpc_port}")
    sys.stdout.flush()
    serve_forever(servers)


def url(host: str, port: int) -> str:
    """http://HOST:PORT/ for a listening address (IPv6 in brackets; 0.0.0.0 as localhost)."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

"""`l2m serve` under hostile requests: every bound is checked before anything is allocated,
memory stays within a stated bound, honest clients are answered right throughout, one server
per port, and TensorFlow errors reach the client as their reason."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import zlib

import grpc
import numpy as np
import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.needs_tensorflow  # TF Serving's protocol and TensorFlow's errors

# The hostile requests and the memory readings are the benchmark's own, so CI and the published
# numbers measure the same thing.
_spec = importlib.util.spec_from_file_location(
    "bench_serving_memory", REPO_ROOT / "benchmarks" / "bench_serving_memory.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MiB = 2**20
CONCURRENT = 8  # --max-concurrent-requests
MESSAGE_MIB = 8  # --max-request-mb
PIXEL_BUDGET = 20_000_000  # --max-decoded-pixels
CLIENTS = 6  # client threads, under CONCURRENT: a reply can reach the client before the server
# counts its RPC as done, so CONCURRENT clients could be refused as over the limit.
# The bound asserted on the server's peak RSS over its idle peak: each admitted request holds up
# to ~5 copies of its message (gRPC's buffer, the parsed proto, numpy, the TF tensor, map_fn's
# TensorArray; 6 allowed), the images decoding at once take ~15 bytes per pixel (uint8 + the
# float32 copy resize reads; 16 allowed), and 300 MiB for allocator and kernel slack.
MARGIN_MIB = CONCURRENT * 6 * MESSAGE_MIB + PIXEL_BUDGET * 16 / MiB + 300


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(process, port, stub, Honest, base dir) for `l2m serve` with small limits."""
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN

    root = tmp_path_factory.mktemp("serving_limits")
    save_bundle(L2MGAN(get_preset("tiny_32", domain_names=("smiling", "not_smiling"))),
                root / "model")
    base = root / "saved_models"
    export_saved_model(root / "model", "faces", output_dir=base)
    process, port = bench.start_server(
        base, "--max-concurrent-requests", str(CONCURRENT), "--max-request-mb", str(MESSAGE_MIB),
        "--max-decoded-pixels", str(PIXEL_BUDGET))
    channel, stub = bench.stub_for(port)
    honest = bench.Honest(base / "faces" / "1", 32)
    yield process, port, stub, honest, base
    channel.close()
    process.terminate()
    process.wait(timeout=30)


def test_hostile_mix_keeps_memory_bounded_and_honest_clients_served(server):
    """The attacks of the report (a 37837x37837 image declared in 135 bytes, 5M strings, 2048
    images from one value, four 12000x12000 PNGs) and more, sent concurrently twice, beside
    photos just under the decoded-pixel budget and messages just under the size limit."""
    from keras_l2mgan.photo import MAX_PIXELS

    process, _, stub, honest, _ = server
    for _ in range(2):
        honest.check(stub)  # warm-up: first-call allocations are not the attacks' doing
    bench.reset_peak(process.pid)
    idle_peak = bench.memory_mib(process.pid)["VmHWM"]

    attacks = [dict(job) for _ in range(2) for job in bench.attacks(32, 32, MAX_PIXELS)]
    near = bench.predict_request(  # two photos of 9.9 M pixels: the whole budget
        "edit_encoded", image_bytes=np.array([bench.grey_png(3000, 3300)] * 2, object),
        **bench.labels(2))
    full = bench.full_message_request(32, MESSAGE_MIB * MiB - 64 * 1024)
    jobs = attacks + [{"name": "near_budget", "code": "OK", "message": "", "request": near}
                      for _ in range(3)]
    jobs += [{"name": "full_message", "code": "OK", "message": "", "request": full}
             for _ in range(CONCURRENT)]
    row = bench.run_phase("mixed", process.pid, stub, jobs, honest, CLIENTS)

    assert row["wrong_answers"] == []
    assert row["honest_failures"] == []
    for job in attacks:  # the reason, not TensorFlow's wrapping
        assert "Graph execution error" not in job["got"][1]
        assert "[[{{node" not in job["got"][1]
    assert process.poll() is None
    assert row["peak_mib"] <= idle_peak + MARGIN_MIB, (row, idle_peak, MARGIN_MIB)


def _png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR, then an IDAT of nothing: enough for any header reader."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + (zlib.crc32(kind + data) & 0xFFFFFFFF).to_bytes(4, "big"))

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"")


@pytest.mark.parametrize("make, code, message", [
    (lambda: bench.grey_png(6000, 5000), "INVALID_ARGUMENT",
     "decodes to 30,002,745 pixels, over the server's budget of 20,000,000"),
    (lambda: b"II*\0" + b"\0" * 64, "INVALID_ARGUMENT", "image_bytes[1] is not a JPEG, PNG"),
    (lambda: _png_header(20000, 5000), "INVALID_ARGUMENT",
     "image_bytes[1] is 20000x5000 = 100,000,000 pixels, over the 89,478,485 pixels limit"),
])
def test_encoded_images_are_checked_by_their_headers(server, make, code, message):
    _, _, stub, honest, _ = server
    images = np.array([bench.photo_png(3), make()], object)
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(bench.predict_request("edit_encoded", image_bytes=images,
                                           **bench.labels(2)), timeout=120)
    assert error.value.code().name == code
    assert message in error.value.details()
    honest.check(stub)


def test_oversized_message_is_refused_and_server_lives_on(server):
    process, _, stub, honest, _ = server
    request = bench.full_message_request(4, MESSAGE_MIB * MiB + MiB)
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=120)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.value.details()
    honest.check(stub)
    assert process.poll() is None


def test_second_server_on_the_same_port_exits_with_one_error_line(server):
    process, port, stub, honest, base = server
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    second = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", str(base), "--port", str(port)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert "pick another --port" in lines[0]
    honest.check(stub)  # every connection still reaches the first server
    assert process.poll() is None


# In-process checks of the parts (real protos, real TensorFlow errors).

def _signature_input(dtype: int, shape: list[int]):
    from tensorflow.core.protobuf import meta_graph_pb2

    info = meta_graph_pb2.TensorInfo(dtype=dtype)
    for size in shape:
        info.tensor_shape.dim.add(size=size)
    return info


@pytest.mark.parametrize("proto, message", [
    (lambda: bench.raw_tensor(4, [1, -1, 4, 3], int_val=[0]), "negative dimension"),
    (lambda: bench.raw_tensor(4, [2, 4, 4, 3], int_val=[1, 2]),
     "declares shape [2, 4, 4, 3] (96 values) but sends 2 in int_val"),
    (lambda: bench.raw_tensor(4, [1, 4, 4, 3], tensor_content=b"\0" * 49),
     "(48 bytes) but sends 49 bytes"),
    (lambda: bench.raw_tensor(1, [1, 4, 4, 3], float_val=[0.0]), "to be uint8 but float"),
    (lambda: bench.raw_tensor(4, [33, 4, 4, 3], tensor_content=b"\0" * 33 * 48),
     "has 33 entries, over the server's limit of 32 images per request"),
])
def test_tensor_bounds_are_checked_before_allocation(proto, message):
    from keras_l2mgan.serving.limits import ServingError, ServingLimits, check_tensor

    with pytest.raises(ServingError) as error:
        check_tensor("images", proto(), _signature_input(4, [-1, 4, 4, 3]), ServingLimits())
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(error.value)


def test_well_formed_tensors_pass_the_bounds():
    import tensorflow as tf

    from keras_l2mgan.serving.limits import ServingLimits, check_tensor

    limits = ServingLimits()
    for value in (np.zeros((32, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8),
                  np.zeros((0, 4, 4, 3), np.uint8)):
        check_tensor("images", tf.make_tensor_proto(value), _signature_input(4, [-1, 4, 4, 3]),
                     limits)
    check_tensor("image_bytes", tf.make_tensor_proto(np.array([b"a", b"bc"], object)),
                 _signature_input(7, [-1]), limits)


def _encoded(image, kind: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def test_image_headers_give_sizes_without_decoding():
    from PIL import Image

    from keras_l2mgan.serving.limits import ServingError, ServingLimits, encoded_pixels

    photo = Image.new("RGB", (70, 45), (10, 20, 30))
    limits = ServingLimits()
    for kind, options in [("PNG", {}), ("JPEG", {}), ("GIF", {}), ("BMP", {}),
                          ("WEBP", {"lossless": True}), ("WEBP", {"quality": 80})]:
        assert encoded_pixels("image_bytes", [_encoded(photo, kind, **options)], limits) \
            == 70 * 45, kind
    # An extended WebP (VP8X: alpha) and the sum over a request.
    translucent = _encoded(Image.new("RGBA", (70, 45)), "WEBP", quality=80)
    assert encoded_pixels("image_bytes", [translucent, _encoded(photo, "PNG")], limits) \
        == 2 * 70 * 45
    frames = [photo, Image.new("RGB", (70, 45), (200, 0, 0))]
    for kind in ("GIF", "WEBP"):
        animation = _encoded(frames[0], kind, save_all=True, append_images=frames[1:])
        with pytest.raises(ServingError, match=rf"image_bytes\[0\] is an animated {kind}"):
            encoded_pixels("image_bytes", [animation], limits)
    with pytest.raises(ServingError, match=r"image_bytes\[0\] is not a JPEG"):
        encoded_pixels("image_bytes", [_encoded(photo, "TIFF")], limits)


def test_pixel_budget_is_first_come_first_served_and_bounded_by_the_deadline():
    import threading

    from keras_l2mgan.serving.limits import PixelBudget, ServingError

    budget = PixelBudget(100)
    order = []
    with budget.reserve(80):
        with pytest.raises(ServingError) as error:
            with budget.reserve(30, timeout_s=0.01):
                pass
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED

        def take(name, pixels):
            with budget.reserve(pixels):
                order.append(name)

        # 95 + 10 > 100: once the first gets its pixels, the second still waits for them.
        waiting = threading.Thread(target=take, args=("first", 95))
        waiting.start()
        while not budget._queue:  # the first waiter is queued before the second comes
            waiting.join(0.001)
        later = threading.Thread(target=take, args=("second", 10))
        later.start()
        while len(budget._queue) < 2:
            later.join(0.001)
        assert order == []  # 10 would fit now, but the first come waits ahead of it
    waiting.join()
    later.join()
    assert order == ["first", "second"]
    assert budget.used == 0


def test_tensorflow_errors_give_their_reason():
    import tensorflow as tf

    from keras_l2mgan.serving.server import _first_line

    @tf.function
    def check(x):
        tf.debugging.assert_less(x, 2, message="target_domain must be < 2")
        return x

    @tf.function
    def decode(data):
        return tf.io.decode_png(data)

    with pytest.raises(tf.errors.InvalidArgumentError) as assertion:
        check(tf.constant([5]))
    assert _first_line(assertion.value).startswith("assertion failed: [target_domain must be < 2]")
    with pytest.raises(tf.errors.InvalidArgumentError) as decode_error:
        decode(tf.constant(b"\x89PNG\r\n\x1a\nnot a png"))
    reason = _first_line(decode_error.value)
    assert "Graph execution error" not in reason and "{{node" not in reason
    assert "PNG" in reason


def test_serve_help_shows_the_limits():
    from click.testing import CliRunner

    from cli.main import main
    from keras_l2mgan.photo import MAX_PIXELS

    result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--max-images-per-request", "--max-concurrent-requests", "--max-request-mb",
                   "--max-decoded-pixels"):
        assert option in result.output
    assert f"{MAX_PIXELS:,}" in result.output  # the decoded-pixel default, l2m edit's limit

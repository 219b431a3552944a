"""`l2m serve` answered through the official TF Serving stubs: a JAX-trained model, exported
with two versions, served with a models.config and batching on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import REPO_ROOT, run_python

pytestmark = pytest.mark.needs_tensorflow  # TF Serving's protocol; SavedModels written here

MODELS_CONFIG = """model_config_list {
  config {
    name: "faces"
    base_path: "/models/faces"
    model_platform: "tensorflow"
    model_version_policy { all {} }
    version_labels { key: "stable" value: 1 }
  }
}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client, base dir) for a server running `l2m serve` in a subprocess."""
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.serving.client import ServingClient

    root = tmp_path_factory.mktemp("serving")
    write = ("from keras_l2mgan.bundle import save_bundle\n"
             "from keras_l2mgan.config import get_preset\n"
             "from keras_l2mgan.model import L2MGAN\n"
             "save_bundle(L2MGAN(get_preset('tiny_32', domain_names=('smiling', "
             f"'not_smiling'))), r'{root}/run/model')")
    written = run_python(write, "jax")
    assert written.returncode == 0, written.stderr[-2000:]
    base = root / "saved_models"
    export_saved_model(root / "run", "faces", output_dir=base)
    shutil.copytree(base / "faces" / "1", base / "faces" / "2")
    (base / "models.config").write_text(MODELS_CONFIG)

    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(base), "--port", "0",
         "--model-config-file", str(base / "models.config"), "--enable-batching",
         "--max-batch-size", "4", "--batch-timeout-micros", "20000"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port, seen = None, []
    deadline = time.monotonic() + 120
    while port is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if line:
            seen.append(line)
        if line.startswith("serving on "):
            port = int(line.rsplit(":", 1)[1])
    if port is None:
        process.kill()
        pytest.fail("server did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    client = ServingClient(f"127.0.0.1:{port}", timeout_s=60)
    yield client, base, process
    client.close()
    process.terminate()
    process.wait(timeout=30)


def _request(name="faces", signature="", version=None, **inputs):
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    spec = model_pb2.ModelSpec(name=name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    request = predict_pb2.PredictRequest(model_spec=spec)
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def _edit_inputs(batch=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
            "source_domain": np.zeros(batch, np.int32),
            "target_domain": np.ones(batch, np.int32),
            "alpha": np.linspace(0.0, 1.0, batch).astype(np.float32)}


def test_predict_matches_the_saved_model(served):
    import tensorflow as tf

    client, base, _ = served
    inputs = _edit_inputs()
    response = client.prediction.Predict(_request(**inputs), timeout=60)
    assert response.model_spec.name == "faces"
    assert response.model_spec.version.value == 2  # the latest by default
    assert response.model_spec.signature_name == "serving_default"
    served_images = tf.make_ndarray(response.outputs["images"])
    local = tf.saved_model.load(str(base / "faces" / "2")).signatures["serving_default"]
    expected = local(**{k: tf.constant(v) for k, v in inputs.items()})["images"].numpy()
    assert served_images.dtype == np.uint8 and served_images.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(served_images, expected)


def test_versions_and_labels(served):
    client, _, _ = served
    response = client.prediction.Predict(_request(version=1, **_edit_inputs(1)), timeout=60)
    assert response.model_spec.version.value == 1
    labelled = _request(**_edit_inputs(1))
    labelled.model_spec.version_label = "stable"
    assert client.prediction.Predict(labelled, timeout=60).model_spec.version.value == 1


def test_metadata_and_status(served):
    from keras_l2mgan.export import SIGNATURES

    client, _, _ = served
    signatures = client.signature_defs("faces")
    # Every signature of the one list (guess_domain, no classify), plus the init op
    # tf.saved_model.save always adds.
    assert set(signatures) == set(SIGNATURES) | {"__saved_model_init_op"}
    images = signatures["serving_default"].inputs["images"]
    assert images.dtype == 4  # DT_UINT8
    assert [d.size for d in images.tensor_shape.dim] == [-1, 32, 32, 3]
    assert client.status("faces") == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert client.status("faces", version=2) == [(2, "AVAILABLE")]
    info = client.model_info("faces")
    assert info["domain_names"] == ["smiling", "not_smiling"] and info["img_size"] == 32


def test_encoded_images(served):
    import tensorflow as tf

    client, _, _ = served
    png = tf.io.encode_png(np.full((45, 61, 3), 200, np.uint8)).numpy()
    outputs = client.predict("faces", {
        "image_bytes": np.array([png], dtype=object), "source_domain": np.array([0], np.int32),
        "target_domain": np.array([1], np.int32), "alpha": np.array([1.0], np.float32)},
        signature="edit_encoded")
    decoded = tf.io.decode_png(outputs["images"][0]).numpy()
    assert decoded.shape == (32, 32, 3)


@pytest.mark.parametrize("request_kwargs, code, message", [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found"),
    ({"version": 7}, grpc.StatusCode.NOT_FOUND, "Specific(faces, 7)"),
    ({"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, 'signature key "nope"'),
    ({"images": np.zeros((1, 32, 32, 3), np.float32)}, grpc.StatusCode.INVALID_ARGUMENT,
     "uint8"),
    ({"images": np.zeros((1, 64, 64, 3), np.uint8)}, grpc.StatusCode.INVALID_ARGUMENT,
     "shape"),
    ({"target_domain": np.array([5], np.int32)}, grpc.StatusCode.INVALID_ARGUMENT,
     "target_domain must be < 2"),
    ({"alpha": None}, grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {alpha}"),
])
def test_bad_requests_get_tf_serving_status_codes(served, request_kwargs, code, message):
    client, _, _ = served
    inputs = _edit_inputs(1)
    spec = {k: request_kwargs.pop(k) for k in ("name", "signature", "version")
            if k in request_kwargs}
    inputs.update(request_kwargs)
    inputs = {k: v for k, v in inputs.items() if v is not None}
    with pytest.raises(grpc.RpcError) as error:
        client.prediction.Predict(_request(**spec, **inputs), timeout=60)
    assert error.value.code() == code
    assert message in error.value.details()


def test_status_and_metadata_errors(served):
    client, _, _ = served
    with pytest.raises(grpc.RpcError) as error:
        client.status("nope")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as error:
        client.signature_defs("faces", version=9)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_concurrent_requests_are_batched_correctly_and_server_survives(served):
    """Eight concurrent single-image requests (batched in fours) each get their own edit."""
    import tensorflow as tf

    client, base, process = served
    requests = [_edit_inputs(1, seed=seed) for seed in range(8)]
    results = [None] * 8

    def call(i):
        results[i] = client.edit("faces", **{
            "images": requests[i]["images"], "source": requests[i]["source_domain"],
            "target": requests[i]["target_domain"], "alpha": np.array([0.25 * i], np.float32)})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    local = tf.saved_model.load(str(base / "faces" / "2")).signatures["serving_default"]
    for i, inputs in enumerate(requests):
        expected = local(images=tf.constant(inputs["images"]),
                         source_domain=tf.constant(inputs["source_domain"]),
                         target_domain=tf.constant(inputs["target_domain"]),
                         alpha=tf.constant([0.25 * i]))["images"].numpy()
        # Batch size can change the float summation order: allow one grey level.
        assert np.abs(results[i].astype(int) - expected.astype(int)).max() <= 1
    assert process.poll() is None
    assert client.status("faces", version=1) == [(1, "AVAILABLE")]


def test_l2m_edit_through_the_server(served, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    client, _, _ = served
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((45, 70, 3), 120, np.uint8)).save(photo)
    result = CliRunner().invoke(main, ["edit", str(photo), "--to", "not_smiling", "--from",
                                       "smiling", "--server", client.target, "--model", "faces",
                                       "--alpha", "0,1", "--detector", "center"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "photo_not_smiling_strip.png").size == (140, 45)


def test_batching_never_splices_one_clients_rows_into_anothers(served):
    """The splice attack: A1 (1 image, 2 labels), an honest V, A2 (2 images, 1 label), sent at
    once so they share a batch. Each inconsistent request is refused before it is batched; V
    gets the edit of its own photo."""
    import tensorflow as tf

    client, base, process = served
    honest = _edit_inputs(1, seed=11)
    attack_1 = {**_edit_inputs(2, seed=12), "images": _edit_inputs(1, seed=13)["images"]}
    attack_2 = {**_edit_inputs(1, seed=14), "images": _edit_inputs(2, seed=15)["images"]}
    order = [attack_1, honest, attack_2]
    results: list = [None] * 3
    start = threading.Barrier(3)

    def call(i):
        start.wait()
        time.sleep(0.002 * i)  # A1 first, then V, then A2: well inside the 20 ms window
        try:
            response = client.prediction.Predict(_request(**order[i]), timeout=60)
            results[i] = tf.make_ndarray(response.outputs["images"])
        except grpc.RpcError as error:
            results[i] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for refused in (results[0], results[2]):
        assert isinstance(refused, grpc.RpcError), refused
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "disagree on the batch size" in refused.details()
        assert "images has" in refused.details()
    local = tf.saved_model.load(str(base / "faces" / "2")).signatures["serving_default"]
    expected = local(**{k: tf.constant(v) for k, v in honest.items()})["images"].numpy()
    assert not isinstance(results[1], Exception), results[1]
    assert np.abs(results[1].astype(int) - expected.astype(int)).max() <= 1
    assert process.poll() is None


def test_l2m_edit_reports_a_refused_server_request_in_one_line(served, tmp_path):
    """33 frames in one request exceed the server's 32 images per request: one line, no
    traceback, nothing written."""
    from click.testing import CliRunner
    from PIL import Image

    from cli.main import main

    client, _, _ = served
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(photo)
    result = CliRunner().invoke(main, ["edit", str(photo), "--to", "not_smiling", "--from",
                                       "smiling", "--server", client.target, "--model", "faces",
                                       "--sweep", "0:1:33", "--batch-size", "40",
                                       "--detector", "center"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "INVALID_ARGUMENT" in errors[0], result.stderr
    assert "lower --batch-size" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]

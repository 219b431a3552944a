"""`l2m serve`'s REST API against TF Serving's conventions, on the real server (a subprocess
serving the shipped demo models with their models.config, batching on): status, metadata,
predict in the row and columnar formats, {"b64": ...}, error codes, the body limit, still
serving after bad requests, one client's rows never in another's answer, the same answers as
gRPC, and the editing page's files."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.needs_tensorflow  # TF Serving's REST API, served by `l2m serve`

MAX_REQUEST_MB = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM (the server stops gracefully), then SIGKILL if a loaded machine makes it slow."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def start_server(*args: str, timeout_s: float = 600):
    """`l2m serve ARGS` in a subprocess -> (process, gRPC port, output lines so far)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", *args],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    seen, port = [], None
    deadline = time.monotonic() + timeout_s
    while port is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("serving on "):
            port = int(line.rsplit(":", 1)[1])
    if port is None:
        process.kill()
        pytest.fail("server did not start:\n" + "".join(seen[-20:]))
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    return process, port, seen


@pytest.fixture(scope="module")
def server():
    """(REST port, gRPC port, startup lines) of the shipped models served with batching."""
    rest_port = free_port()
    process, grpc_port, lines = start_server(
        "saved_models", "--port", "0", "--rest-api-port", str(rest_port),
        "--model-config-file", "saved_models/models.config", "--enable-batching",
        "--max-batch-size", "8", "--batch-timeout-micros", "20000",
        "--max-request-mb", str(MAX_REQUEST_MB))
    yield rest_port, grpc_port, lines
    stop(process)


def call(port: int, method: str, path: str, body=None, headers=None, raw: bytes | None = None):
    """(status, decoded JSON or bytes, headers) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection.request(method, path, body=data, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    kind = response.getheader("Content-Type", "")
    return (response.status, json.loads(payload) if kind == "application/json" else payload,
            response)


def faces(n: int, seed: int = 0) -> np.ndarray:
    from keras_l2mgan.metrics import synthetic

    return synthetic.render(synthetic.split_params("test", n, seed), 64)


def edit_body(images, source, target, alpha, row: bool):
    inputs = {"images": np.asarray(images).tolist(), "source_domain": list(source),
              "target_domain": list(target), "alpha": list(alpha)}
    if not row:
        return {"inputs": inputs}
    return {"instances": [{k: v[i] for k, v in inputs.items()} for i in range(len(images))]}


def test_startup_names_the_rest_address(server):
    rest_port, _, lines = server
    assert f"REST API on http://127.0.0.1:{rest_port}/ (editing page at /)\n" in lines


def test_model_status(server):
    port = server[0]
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}
    for path in ("/v1/models/smiling", "/v1/models/smiling/versions/1",
                 "/v1/models/smiling/labels/stable"):
        status, answer, _ = call(port, "GET", path)
        assert (status, answer) == (200, expected), path
    status, answer, _ = call(port, "GET", "/v1/models/nope")
    assert status == 404 and answer == {"error": "Could not find any versions of model nope"}
    status, answer, _ = call(port, "GET", "/v1/models/smiling/versions/7")
    assert status == 404 and "version 7" in answer["error"]
    status, answer, _ = call(port, "GET", "/v1/models/smiling/labels/canary")
    assert status == 400 and "label: canary" in answer["error"]


def test_metadata_is_the_grpc_signature_def_map(server):
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    from keras_l2mgan.serving.client import ServingClient

    rest_port, grpc_port, _ = server
    status, answer, _ = call(rest_port, "GET", "/v1/models/smiling_male/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "smiling_male", "signature_name": "",
                                    "version": "1"}
    signature_map = json_format.ParseDict(answer["metadata"]["signature_def"],
                                          get_model_metadata_pb2.SignatureDefMap())
    with ServingClient(f"127.0.0.1:{grpc_port}") as client:
        assert dict(signature_map.signature_def) == client.signature_defs("smiling_male")
    images = answer["metadata"]["signature_def"]["signature_def"]["edit_like"]["inputs"]
    assert images["reference"]["dtype"] == "DT_UINT8"
    status, answer, _ = call(rest_port, "GET", "/v1/models/nope/versions/1/metadata")
    assert status == 404 and "Servable not found" in answer["error"]


def test_predict_row_and_columnar_agree_with_grpc(server):
    from keras_l2mgan.serving.client import ServingClient

    rest_port, grpc_port, _ = server
    x = faces(3)
    source, target, alpha = [0, 1, 0], [1, 0, 1], [1.0, 0.5, 1.25]
    status, rows, _ = call(rest_port, "POST", "/v1/models/smiling:predict",
                           edit_body(x, source, target, alpha, row=True))
    assert status == 200, rows
    status, columns, _ = call(rest_port, "POST", "/v1/models/smiling/versions/1:predict",
                              edit_body(x, source, target, alpha, row=False))
    assert status == 200, columns
    # One output: predictions are the values themselves, outputs the bare tensor.
    rows, columns = np.asarray(rows["predictions"]), np.asarray(columns["outputs"])
    with ServingClient(f"127.0.0.1:{grpc_port}") as client:
        expected = client.edit("smiling", x, source, target, alpha)
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(columns, expected)
    # Several outputs: one object per row, or one list per output.
    status, answer, _ = call(rest_port, "POST", "/v1/models/smiling/labels/stable:predict",
                             {"signature_name": "guess_domain", "instances": x.tolist()})
    assert status == 200 and set(answer["predictions"][0]) == {"domain_logits",
                                                               "source_domain"}
    status, answer, _ = call(rest_port, "POST", "/v1/models/smiling:predict",
                             {"signature_name": "metadata", "inputs": {}})
    assert status == 200
    assert answer["outputs"]["domain_names"] == ["not_smiling", "smiling"]
    assert answer["outputs"]["img_size"] == 64


def test_b64_in_and_out(server):
    from PIL import Image

    port = server[0]
    encoded = []
    for face in faces(2):
        buffer = io.BytesIO()
        Image.fromarray(face).resize((100, 100)).save(buffer, "PNG")
        encoded.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict", {
        "signature_name": "edit_encoded", "instances": [
            {"image_bytes": data, "source_domain": 0, "target_domain": 1, "alpha": 1.0}
            for data in encoded]})
    assert status == 200, answer
    for item in answer["predictions"]:
        assert Image.open(io.BytesIO(base64.b64decode(item["b64"]))).size == (64, 64)


def test_edit_like_over_rest(server):
    port = server[0]
    x = faces(2)
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict", {
        "signature_name": "edit_like", "inputs": {
            "images": x.tolist(), "reference": x[::-1].tolist(), "source_domain": [-1, -1],
            "reference_domain": [-1, 1], "alpha": [1.0, 1.0]}})
    assert status == 200, answer
    assert np.asarray(answer["outputs"]["images"]).shape == (2, 64, 64, 3)
    assert answer["outputs"]["reference_domain"][1] == 1


BAD_REQUESTS = [
    # (body, status, words in the error)
    (b"{not json", 400, "JSON Parse error"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"instances": [1], "inputs": {}}', 400, "exactly one of"),
    (b'{"instances": []}', 400, "non-empty"),
    (b'{"instances": [1]}', 400, "each instance must be an object"),
    (b'{"inputs": {"images": [[1, 2], [3]], "source_domain": [0], "target_domain": [1], '
     b'"alpha": [1]}}', 400, "ragged"),
    (b'{"inputs": {"images": "x", "source_domain": [0], "target_domain": [1], '
     b'"alpha": [1]}}', 400, "send numbers"),
    (b'{"inputs": {"images": [[[[300, 0, 0]]]], "source_domain": [0], "target_domain": [1], '
     b'"alpha": [1]}}', 400, "values must be in [0, 255]"),
    (b'{"inputs": {"images": [[[[1, 0, 0]]]], "source_domain": [0], "target_domain": [1], '
     b'"alpha": [1]}}', 400, "incompatible with the signature"),
    (b'{"inputs": {"images": [[[[1.5, 0, 0]]]], "source_domain": [0], "target_domain": [1], '
     b'"alpha": [1]}}', 400, "decimal numbers"),
    (b'{"signature_name": "nope", "inputs": {}}', 400, 'signature key "nope" not found'),
    (b'{"signature_name": "edit_encoded", "inputs": {"image_bytes": [{"b64": "@@@"}], '
     b'"source_domain": [0], "target_domain": [1], "alpha": [1]}}', 400, "invalid base64"),
    (b'{"signature_name": "edit_encoded", "inputs": {"image_bytes": [{"b64": "AAAA"}], '
     b'"source_domain": [0], "target_domain": [1], "alpha": [1]}}', 400, "image_bytes[0]"),
    (b'{"inputs": {}, "extra": 1}', 400, "unknown key"),
]


@pytest.mark.parametrize("body, status, words", BAD_REQUESTS,
                         ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_requests_are_400_and_named(server, body, status, words):
    code, answer, _ = call(server[0], "POST", "/v1/models/smiling:predict", raw=body)
    assert code == status and words in answer["error"], answer


def test_checks_shared_with_grpc(server):
    port = server[0]
    x = faces(2)
    # Inputs that disagree on the batch size never reach the batcher.
    body = edit_body(x, [0, 1], [1, 0], [1.0], row=False)
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict", body)
    assert status == 400 and "disagree on the batch size" in answer["error"]
    # Over the images-per-request limit (32).
    many = np.repeat(x[:1], 33, axis=0)
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict",
                             edit_body(many, [0] * 33, [1] * 33, [1.0] * 33, row=False))
    assert status == 400 and "images per request" in answer["error"]
    # A domain the model does not have: the graph's own check.
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict",
                             edit_body(x, [0, 5], [1, 0], [1.0, 1.0], row=False))
    assert status == 400 and "source_domain must be < 2" in answer["error"]


def test_http_errors(server):
    port = server[0]
    status, answer, _ = call(port, "GET", "/v1/models/smiling:predict")
    assert status == 405 and "POST" in answer["error"]
    status, answer, _ = call(port, "POST", "/v1/models/smiling:classify", {"instances": [1]})
    assert status == 501
    status, answer, _ = call(port, "GET", "/v1/models/smiling/versions/x")
    assert status == 400 and "Malformed request" in answer["error"]
    status, answer, _ = call(port, "GET", "/v1/nothing")
    assert status == 400 and "Malformed request" in answer["error"]
    status, answer, _ = call(port, "DELETE", "/v1/models/smiling")
    assert status == 405
    for path in ("/../../etc/passwd", "/web/index.html", "/rest.py", "/nope"):
        status, answer, _ = call(port, "GET", path)
        assert status == 404, path


def read_all(conn: socket.socket) -> str:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_body_limit_is_checked_before_reading(server):
    port = server[0]
    limit = MAX_REQUEST_MB * 2**20
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        # Declares a body over the limit and sends none of it: answered at once.
        conn.sendall(f"POST /v1/models/smiling:predict HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {limit + 1}\r\n\r\n".encode())
        reply = read_all(conn)
    assert reply.startswith("HTTP/1.1 413"), reply
    assert f"over the server's limit of {limit:,}" in reply
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"POST /v1/models/smiling:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        assert read_all(conn).startswith("HTTP/1.1 411")


def test_concurrent_clients_get_their_own_rows(server):
    """Batching merges concurrent requests; every answer must be the one its request gets
    alone (different images, domains and alphas per client, row and columnar mixed)."""
    port = server[0]
    jobs = []
    for k in range(12):
        n = 1 + k % 3
        x = faces(n, seed=k)
        jobs.append((x, [k % 2] * n, [1 - k % 2] * n, [0.25 * (k % 5)] * n, k % 2 == 0))

    def run(job):
        x, source, target, alpha, row = job
        status, answer, _ = call(port, "POST", "/v1/models/smiling:predict",
                                 edit_body(x, source, target, alpha, row))
        assert status == 200, answer
        return np.asarray(answer["predictions" if row else "outputs"])

    alone = [run(job) for job in jobs]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(run, jobs))
    for a, b in zip(alone, together, strict=True):
        # A merged batch may round one pixel the other way (oneDNN picks kernels by batch
        # size); another client's face would differ everywhere.
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1


def test_still_serving_after_everything(server):
    port = server[0]
    status, answer, _ = call(port, "POST", "/v1/models/smiling:predict",
                             edit_body(faces(1), [0], [1], [1.0], row=True))
    assert status == 200 and np.asarray(answer["predictions"]).shape == (1, 64, 64, 3)


def test_rest_client_matches_grpc_client(server):
    from keras_l2mgan.serving.client import RestClient, RestError, ServingClient, open_client

    rest_port, grpc_port, _ = server
    x = faces(2, seed=3)
    rest = open_client(f"http://127.0.0.1:{rest_port}")
    assert isinstance(rest, RestClient)
    with ServingClient(f"127.0.0.1:{grpc_port}") as grpc_client:
        assert rest.model_info("smiling") == grpc_client.model_info("smiling")
        assert rest.status("smiling") == grpc_client.status("smiling")
        np.testing.assert_array_equal(rest.guess_domain("smiling", x),
                                      grpc_client.guess_domain("smiling", x))
        np.testing.assert_array_equal(rest.edit_like("smiling", x, x[::-1], [-1, -1], [-1, -1],
                                                     [1.0, 1.0]),
                                      grpc_client.edit_like("smiling", x, x[::-1], [-1, -1],
                                                            [-1, -1], [1.0, 1.0]))
    with pytest.raises(RestError) as error:
        rest.status("nope")
    assert error.value.status == 404
    rest.close()


def test_page_and_its_files_come_from_the_server(server):
    port = server[0]
    status, page, response = call(port, "GET", "/")
    assert status == 200 and b"<title>" in page
    policy = response.getheader("Content-Security-Policy")
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    # No asset from anywhere else: every src/href in the page is local.
    text = page.decode()
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, body, response = call(port, "GET", f"/{name}")
        assert status == 200 and response.getheader("Content-Type") == kind and body
        assert b"https://" not in body
    status, answer, _ = call(port, "GET", "/l2m/models")
    assert [m["name"] for m in answer["models"]] == ["smiling", "smiling_male"]


def test_rest_disabled_with_port_zero():
    process, _, lines = start_server("saved_models/smiling", "--port", "0",
                                     "--rest-api-port", "0")
    stop(process)
    assert not any(line.startswith("REST API") for line in lines)


def test_free_grpc_port_means_a_free_rest_port():
    """--port 0 without --rest-api-port never claims 8501 (servers side by side in tests)."""
    process, _, lines = start_server("saved_models/smiling", "--port", "0")
    try:
        line = next(line for line in lines if line.startswith("REST API on http://127.0.0.1:"))
        port = int(line.split(":")[2].split("/")[0])
        status, answer, _ = call(port, "GET", "/v1/models/smiling")
        assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        stop(process)


def test_l2m_edit_over_rest_equals_grpc(server, tmp_path):
    from conftest import invoke_l2m
    from PIL import Image

    rest_port, grpc_port, _ = server
    Image.fromarray(faces(1, seed=4)[0]).save(tmp_path / "face.png")
    Image.fromarray(faces(1, seed=5)[0]).save(tmp_path / "ref.png")
    outputs = {}
    for name, address in (("rest", f"http://127.0.0.1:{rest_port}"),
                          ("grpc", f"127.0.0.1:{grpc_port}")):
        for args in (["--to", "smiling"], ["--like", tmp_path / "ref.png"]):
            out = tmp_path / f"{name}_{args[0][2:]}.png"
            result = invoke_l2m("edit", tmp_path / "face.png", *args, "--server", address,
                                "--model", "smiling", "--detector", "center", "-o", out)
            assert result.exit_code == 0, result.output + result.stderr
            outputs[name, args[0]] = np.asarray(Image.open(out))
    for kind in ("--to", "--like"):
        np.testing.assert_array_equal(outputs["rest", kind], outputs["grpc", kind])
    missing = invoke_l2m("edit", tmp_path / "face.png", "--to", "smiling", "--server",
                         f"http://127.0.0.1:{rest_port}", "--model", "nope", "--detector",
                         "center", "-o", tmp_path / "x.png")
    assert missing.exit_code == 2 and "HTTP 404" in missing.stderr

"""TF Serving's REST API (tensorflow_model_server --rest_api_port) over the gRPC server's models.

Routes, as TF Serving answers them:

- ``GET /v1/models/NAME[/versions/N|/labels/L]``: model status (``model_version_status``)
- ``GET /v1/models/NAME[/versions/N|/labels/L]/metadata``: the signature_def map as JSON
- ``POST /v1/models/NAME[/versions/N|/labels/L]:predict``: ``{"signature_name": ...,
  "instances": [...]}`` (row format, answered with ``predictions``) or ``{"inputs": ...}``
  (columnar, answered with ``outputs``); string tensors take ``{"b64": "..."}`` values and
  come back that way when their alias ends in ``_bytes`` (or are not UTF-8, such as PNGs)
- errors: ``{"error": "message"}`` with the HTTP status of the gRPC code (400 for bad
  requests, 404 for unknown models or versions, 413 for a body over the limit, 429 when too
  many requests are in flight)

and, for the editing page, ``GET /`` (keras_l2mgan/serving/web/) and ``GET /l2m/models``.

Every request runs through the same code as a gRPC Predict (``PredictionServicer.predict``):
the JSON becomes a PredictRequest checked by limits.check_tensor, the batch-size rule and the
pixel budget, then the dynamic batcher. The body's declared length is checked before it is
read; JSON arrays are built by NumPy and must be rectangular.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import numpy as np

from keras_l2mgan.serving.client import nested_json
from keras_l2mgan.serving.limits import ServingError, ServingLimits

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
# The page's files: name -> content type. Nothing else under web/ (or anywhere) is served.
WEB_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript",
             "style.css": "text/css"}
# Everything the page needs comes from this server (no CDN); data: and blob: images are the
# edits it draws itself.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                           "script-src 'self'; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'")
REST_TIMEOUT_S = 30.0  # tensorflow_model_server's --rest_api_timeout_in_ms default
CONNECTIONS_PER_REQUEST_SLOT = 4  # open connections allowed per request admitted at once

# gRPC code -> HTTP status, as Google's APIs map them (google/rpc/code.proto).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$")


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


class Reply:
    """One HTTP answer: status, content type, body."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        self.status, self.body, self.content_type = status, body, content_type

    @classmethod
    def json(cls, value, status: int = 200) -> Reply:
        return cls(status, json.dumps(value, separators=(",", ":")).encode())

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        return cls.json({"error": message}, status)


class RestApi:
    """The routes above, independent of the HTTP plumbing: ``handle(method, path, body)``."""

    def __init__(self, prediction, models, limits: ServingLimits | None = None,
                 timeout_s: float = REST_TIMEOUT_S):
        self.prediction = prediction  # server.PredictionServicer
        self.models = models  # server.ModelServicer
        self.repository = prediction.repository
        self.limits = limits or prediction.limits
        self.timeout_s = timeout_s
        self.web = {name: (WEB_DIR / name).read_bytes() for name in WEB_FILES
                    if (WEB_DIR / name).is_file()}

    def handle(self, method: str, path: str, body: bytes = b"") -> Reply:
        """Answer one request; never raises."""
        path = path.split("?", 1)[0]
        try:
            if path.startswith("/v1/"):
                return self._model_api(method, path, body)
            if method not in ("GET", "HEAD"):
                return Reply.error(405, f"{method} is not allowed on {path}")
            name = "index.html" if path == "/" else path.lstrip("/")
            if name in self.web:
                return Reply(200, self.web[name], WEB_FILES[name])
            if path == "/l2m/models":
                return Reply.json({"models": [
                    {"name": entry.name, "versions": sorted(entry.servables),
                     "labels": entry.labels}
                    for entry in self.repository.models.values() if entry.servables]})
            return Reply.error(404, f"not found: {path}")
        except ServingError as error:
            return Reply.error(HTTP_STATUS.get(error.code, 500), str(error))
        except Exception as error:  # never let a request take the server down
            from keras_l2mgan.serving.server import _first_line

            log.exception("REST %s %s failed", method, path)
            return Reply.error(500, _first_line(error))

    def _model_api(self, method: str, path: str, body: bytes) -> Reply:
        match = _MODEL_URL.match(path)
        if match is None:
            raise _invalid(f"Malformed request: {method} {path}")
        spec = _model_spec(match)
        if match["verb"] is not None:
            if method != "POST":
                return Reply.error(405, f"{method} is not allowed on :{match['verb']} (POST)")
            if match["verb"] != "predict":
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f":{match['verb']} is not served: the models have no "
                                   "classification or regression signature; use :predict")
            return self._predict(spec, body)
        if method not in ("GET", "HEAD"):
            return Reply.error(405, f"{method} is not allowed on {path} (GET)")
        if match["metadata"]:
            return self._metadata(spec)
        return self._status(spec)

    def _status(self, spec) -> Reply:
        from tensorflow_serving.apis import get_model_status_pb2

        response = self.models.status(get_model_status_pb2.GetModelStatusRequest(
            model_spec=spec))
        state = get_model_status_pb2.ModelVersionStatus.State.Name
        return Reply.json({"model_version_status": [
            {"version": str(s.version), "state": state(s.state),
             "status": {"error_code": grpc.StatusCode.OK.name, "error_message": ""}}
            for s in response.model_version_status]})

    def _metadata(self, spec) -> Reply:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self.prediction.metadata(get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=["signature_def"]))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return Reply.json({
            "model_spec": {"name": response.model_spec.name, "signature_name": "",
                           "version": str(response.model_spec.version.value)},
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True)}})

    def _predict(self, spec, body: bytes) -> Reply:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _invalid(f"JSON Parse error: {error}") from None
        if not isinstance(request, dict):
            raise _invalid("the request body must be a JSON object with \"instances\" or "
                           "\"inputs\"")
        unknown = set(request) - {"signature_name", "instances", "inputs"}
        if unknown:
            raise _invalid(f"unknown key(s) in the request: {', '.join(sorted(unknown))}")
        if ("instances" in request) == ("inputs" in request):
            raise _invalid('the request needs exactly one of "instances" (row format) or '
                           '"inputs" (columnar format)')
        key = request.get("signature_name") or "serving_default"
        if not isinstance(key, str):
            raise _invalid("signature_name must be a string")
        servable = self.repository.find(spec)
        signature = servable.signature_defs.get(key)
        if signature is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found.')
        row = "instances" in request
        values = (_from_rows(request["instances"], signature) if row
                  else _from_columns(request["inputs"], signature))
        proto = predict_pb2.PredictRequest()
        # The version found above, so the dtypes read from its signature are the ones it runs.
        proto.model_spec.name = servable.name
        proto.model_spec.version.value = servable.version
        proto.model_spec.signature_name = key
        for alias, value in values.items():
            proto.inputs[alias].CopyFrom(
                tf.make_tensor_proto(_to_array(alias, value, signature.inputs[alias])))
        response = self.prediction.predict(proto, self.timeout_s)
        outputs = {alias: tf.make_ndarray(tensor) for alias, tensor in response.outputs.items()}
        order = [alias for alias in signature.outputs if alias in outputs]
        if row:
            return Reply.json({"predictions": _to_rows(outputs, order)})
        if len(order) == 1:
            return Reply.json({"outputs": _to_json(order[0], outputs[order[0]])})
        return Reply.json({"outputs": {alias: _to_json(alias, outputs[alias])
                                       for alias in order}})


def _model_spec(match):
    from tensorflow_serving.apis import model_pb2

    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"] is not None:
        version = match["version"]
        if not (version.isascii() and version.isdigit()) or len(version) > 18:
            raise _invalid(f"Malformed request: version {version!r} is not a number")
        spec.version.value = int(version)
    elif match["label"] is not None:
        spec.version_label = match["label"]
    return spec


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _from_rows(instances, signature) -> dict:
    """Row format: one entry per example, a dict of inputs or (one input) the value itself."""
    if not isinstance(instances, list) or not instances:
        raise _invalid('"instances" must be a non-empty list (one entry per example)')
    aliases = sorted(signature.inputs)
    named = [isinstance(item, dict) and not _is_b64(item) for item in instances]
    if all(named):
        columns: dict[str, list] = {alias: [] for alias in aliases}
        for index, item in enumerate(instances):
            if set(item) != set(aliases):
                missing, extra = set(aliases) - set(item), set(item) - set(aliases)
                raise _invalid(f"instances[{index}] has inputs {{{','.join(sorted(item))}}}; "
                               f"the signature takes {{{','.join(aliases)}}}"
                               + (f" (missing: {', '.join(sorted(missing))})" if missing else "")
                               + (f" (unknown: {', '.join(sorted(extra))})" if extra else ""))
            for alias in aliases:
                columns[alias].append(item[alias])
        return columns
    if any(named):
        raise _invalid("instances mix named inputs (objects) and bare values")
    if len(aliases) != 1:
        raise _invalid(f"the signature takes {len(aliases)} inputs ({', '.join(aliases)}): "
                       "each instance must be an object naming them")
    return {aliases[0]: instances}


def _from_columns(inputs, signature) -> dict:
    """Columnar format: an object of named inputs, or (one input) the value itself."""
    aliases = sorted(signature.inputs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return inputs  # names are checked against the signature by the shared predict path
    if len(aliases) != 1:
        raise _invalid(f"the signature takes {len(aliases)} inputs ({', '.join(aliases)}): "
                       '"inputs" must be an object naming them')
    return {aliases[0]: inputs}


def _shape(value, where: str) -> list[int]:
    """The shape of nested JSON lists (rectangular), leaves anything but a list."""
    if not isinstance(value, list):
        return []
    if not value:
        return [0]
    shapes = [_shape(item, where) for item in value]
    if any(shape != shapes[0] for shape in shapes):
        raise _invalid(f"input {where} is ragged: every list at one depth must have the same "
                       "length")
    return [len(value), *shapes[0]]


def _leaves(value):
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _to_array(alias: str, value, info) -> np.ndarray:
    """A JSON value as a NumPy array of the signature's dtype, refusing what TF Serving's
    parser refuses (strings for numbers, out-of-range integers, ragged lists)."""
    import tensorflow as tf

    dtype = tf.dtypes.as_dtype(info.dtype)
    if dtype == tf.string:
        shape = _shape(value, alias)
        data = []
        for leaf in _leaves(value):
            if isinstance(leaf, str):
                data.append(leaf.encode())
            elif _is_b64(leaf) and isinstance(leaf["b64"], str):
                try:
                    data.append(base64.b64decode(leaf["b64"], validate=True))
                except (binascii.Error, ValueError):
                    raise _invalid(f"input {alias}: invalid base64 in a {{\"b64\": ...}} "
                                   "value") from None
            else:
                raise _invalid(f"input {alias} is a string tensor: send strings or "
                               '{"b64": "..."} values')
        array = np.empty(len(data), object)
        array[:] = data
        return array.reshape(shape)
    try:
        raw = np.asarray(value)  # NumPy walks the lists in C; strings or objects show in .kind
    except (ValueError, OverflowError, TypeError):
        raise _invalid(f"input {alias} is ragged or out of range: send a rectangular list of "
                       "numbers") from None
    target = dtype.as_numpy_dtype
    kinds = "biu" if dtype.is_bool or dtype.is_integer else "biuf"
    if raw.dtype.kind in "USO":
        raise _invalid(f"input {alias} is {dtype.name}: send numbers, not strings or objects")
    if raw.dtype.kind not in kinds or (dtype.is_bool and raw.dtype.kind != "b"):
        kind = {"f": "decimal numbers", "b": "booleans"}.get(raw.dtype.kind,
                                                              f"values of type {raw.dtype}")
        raise _invalid(f"input {alias} is {dtype.name} but the request sends {kind}")
    if dtype.is_integer and raw.size:
        limits = np.iinfo(target)
        if raw.min() < limits.min or raw.max() > limits.max:
            raise _invalid(f"input {alias} is {dtype.name}: values must be in [{limits.min}, "
                           f"{limits.max}]")
    return raw.astype(target)


def _string(alias: str, data: bytes):
    if not alias.endswith("_bytes"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # binary data (a PNG): as TF Serving's _bytes outputs
    return {"b64": base64.b64encode(data).decode("ascii")}


def _to_json(alias: str, array: np.ndarray):
    if array.dtype == object:
        return nested_json(array, lambda item: _string(alias, bytes(item)))
    return array.tolist()


def _to_rows(outputs: dict, order: list[str]) -> list:
    sizes = {alias: (outputs[alias].shape[0] if outputs[alias].ndim else None) for alias in order}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise _invalid("the outputs do not share a batch dimension, so they cannot be answered "
                       'row by row: send "inputs" (columnar format) instead of "instances"')
    columns = {alias: _to_json(alias, outputs[alias]) for alias in order}
    size = next(iter(sizes.values()))
    if len(order) == 1:
        return columns[order[0]]
    return [{alias: columns[alias][i] for alias in order} for i in range(size)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    server_version = "l2m-serve"
    timeout = 60  # seconds a connection may sit idle or trickle its request
    disable_nagle_algorithm = True  # small answers leave at once (no 40 ms delayed-ACK stall)

    def do_GET(self) -> None:  # noqa: N802 (http.server's method names)
        self._answer(self.server.api.handle("GET", self.path))

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(self.server.api.handle("HEAD", self.path), head=True)

    def do_POST(self) -> None:  # noqa: N802
        server = self.server
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return self._answer(Reply.error(411, "send the body with a Content-Length"))
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            return self._answer(Reply.error(411, "a POST needs a Content-Length header"))
        limit = server.api.limits.max_message_bytes
        if length < 0 or length > limit:
            # Refused before reading: the body stays unread and the connection closes.
            self.close_connection = True
            return self._answer(Reply.error(
                413, f"the request body has {length:,} bytes, over the server's limit of "
                f"{limit:,} (--max-request-mb)"))
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        if not server.in_flight.acquire(blocking=False):
            return self._answer(Reply.error(
                429, f"the server is handling {server.api.limits.max_concurrent_requests} "
                "requests (--max-concurrent-requests); retry later"))
        try:
            reply = server.api.handle("POST", self.path, body)
        finally:
            server.in_flight.release()
        self._answer(reply)

    def _other(self) -> None:
        self.close_connection = True
        self._answer(Reply.error(405, f"{self.command} is not allowed"))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other  # noqa: N815

    def _answer(self, reply: Reply, head: bool = False) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if reply.content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on open connections (each holds a thread); one over it
    gets a 503 and is closed at once."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: RestApi):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.api = api
        limit = api.limits.max_concurrent_requests
        self.in_flight = threading.BoundedSemaphore(limit)
        self.connections = threading.BoundedSemaphore(limit * CONNECTIONS_PER_REQUEST_SLOT)
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def process_request(self, request, client_address) -> None:
        if not self.connections.acquire(blocking=False):
            body = json.dumps({"error": "too many open connections; retry later"}).encode()
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nConnection: close\r\nContent-Length: "
                                + str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def start(self) -> RestServer:
        threading.Thread(target=self.serve_forever, name="l2m-rest", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def create_rest_server(prediction, models, host: str = "127.0.0.1", port: int = 8501,
                       timeout_s: float = REST_TIMEOUT_S) -> RestServer:
    """Bind host:port (0: a free port) and start answering in a background thread."""
    api = RestApi(prediction, models, prediction.limits, timeout_s)
    try:
        server = RestServer((host, port), api)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}:{port}: {error.strerror} (another server "
                         "on this port?); pick another --rest-api-port") from None
    return server.start()

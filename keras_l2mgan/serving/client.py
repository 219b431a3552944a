"""Clients for TF Serving's gRPC and REST APIs (tensorflow_model_server or `l2m serve`).

``ServingClient`` speaks gRPC: the official PredictionServiceStub / ModelServiceStub with a large
message limit, a deadline per call and gRPC's own retry policy for UNAVAILABLE (server starting
or restarting). ``RestClient`` speaks the REST/JSON API (port 8501) with the same methods;
``open_client("http://host:8501")`` or ``open_client("host:8500")`` picks one by the address.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

from keras_l2mgan.export import signature_inputs

MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def _service_config(attempts: int) -> str:
    retry = {
        "maxAttempts": max(2, min(attempts, 5)),  # gRPC caps attempts at 5
        "initialBackoff": "0.2s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps({"methodConfig": [{
        "name": [{"service": "tensorflow.serving.PredictionService"},
                 {"service": "tensorflow.serving.ModelService"}],
        "retryPolicy": retry,
        "waitForReady": True,
    }]})


class _EditMethods:
    """The L2M-GAN calls on top of ``predict`` (signatures written by keras_l2mgan.export)."""

    def predict(self, name: str, inputs: dict[str, np.ndarray], signature: str = "",
                version: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def model_info(self, name: str, version: int | None = None) -> dict:
        """The exported config (img_size, domain_names, ...) from the `metadata` signature."""
        outputs = self.predict(name, {}, signature="metadata", version=version)
        config = json.loads(outputs["config_json"].item())
        config["domain_names"] = [n.decode() for n in outputs["domain_names"]]
        return config

    def edit(self, name: str, images: np.ndarray, source: np.ndarray, target: np.ndarray,
             alpha: np.ndarray, version: int | None = None) -> np.ndarray:
        """uint8 (N, S, S, 3) images -> edited uint8 images, through serving_default."""
        outputs = self.predict(name, signature_inputs(
            images=images, source_domain=source, target_domain=target, alpha=alpha),
            version=version)
        return outputs["images"]

    def edit_like(self, name: str, images: np.ndarray, references: np.ndarray,
                  source: np.ndarray, reference_domain: np.ndarray, alpha: np.ndarray,
                  version: int | None = None) -> np.ndarray:
        """Reference-guided edit through the edit_like signature (domains -1: guessed)."""
        outputs = self.predict(name, signature_inputs(
            images=images, reference=references, source_domain=source,
            reference_domain=reference_domain, alpha=alpha), signature="edit_like",
            version=version)
        return outputs["images"]

    def guess_domain(self, name: str, images: np.ndarray,
                     version: int | None = None) -> np.ndarray:
        """(N,) int32: the discriminator's guess of each image's domain (guess_domain)."""
        outputs = self.predict(name, signature_inputs(images=images), signature="guess_domain",
                               version=version)
        return outputs["source_domain"]


class ServingClient(_EditMethods):
    """gRPC: Predict / metadata / status calls plus the L2M-GAN edit on top of them."""

    def __init__(self, target: str, timeout_s: float = 60.0, retries: int = 4,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if ":" not in target:
            raise ValueError(f"server address must be HOST:PORT, got {target!r}")
        self.target = target
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", _service_config(retries + 1)),
        ])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def model_spec(name: str, version: int | None = None, signature: str = "",
                   label: str | None = None):
        from tensorflow_serving.apis import model_pb2

        spec = model_pb2.ModelSpec(name=name, signature_name=signature)
        if version is not None:
            spec.version.value = version
        elif label is not None:
            spec.version_label = label
        return spec

    def predict(self, name: str, inputs: dict[str, np.ndarray], signature: str = "",
                version: int | None = None, output_filter: list[str] | None = None
                ) -> dict[str, np.ndarray]:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest(
            model_spec=self.model_spec(name, version, signature),
            output_filter=output_filter or [])
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self.prediction.Predict(request, timeout=self.timeout_s)
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}

    def signature_defs(self, name: str, version: int | None = None) -> dict:
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(name, version), metadata_field=["signature_def"])
        response = self.prediction.GetModelMetadata(request, timeout=self.timeout_s)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def status(self, name: str, version: int | None = None) -> list[tuple[int, str]]:
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=self.model_spec(name, version))
        response = self.models.GetModelStatus(request, timeout=self.timeout_s)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [(s.version, state_name(s.state)) for s in response.model_version_status]


class RestError(Exception):
    """A REST request the server refused or failed: its HTTP status and {"error": ...}."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


class RestClient(_EditMethods):
    """TF Serving's REST API (``http://host:8501``): the same calls as ServingClient, in
    JSON. One keep-alive connection per thread; output dtypes come from the model's
    signature_def (read once per model version)."""

    def __init__(self, url: str, timeout_s: float = 60.0):
        from urllib.parse import urlsplit

        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"REST address must be http://HOST:PORT, got {url!r}")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.timeout_s = timeout_s
        self._parts = parts
        self._local = threading.local()
        self._signatures: dict[tuple[str, int | None], dict] = {}

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _connection(self):
        import http.client

        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = (http.client.HTTPSConnection if self._parts.scheme == "https"
                    else http.client.HTTPConnection)
            connection = kind(self._parts.hostname, self._parts.port, timeout=self.timeout_s)
            connection.connect()
            # Small requests leave at once (no delayed-ACK stall between headers and body).
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        return connection

    def request(self, method: str, path: str, body=None) -> dict:
        """One call; the decoded JSON answer, or RestError with the server's message."""
        import http.client

        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):  # a kept-alive connection the server closed: once more
            connection = self._connection()
            connection.timeout = self.timeout_s
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
            except BaseException:
                self.close()
                raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = {"error": payload[:200].decode("utf-8", "replace")}
        if response.status != 200:
            message = answer.get("error", "") if isinstance(answer, dict) else str(answer)
            raise RestError(response.status, message)
        return answer

    @staticmethod
    def _path(name: str, version: int | None = None, label: str | None = None) -> str:
        from urllib.parse import quote

        path = f"/v1/models/{quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{quote(label, safe='')}"
        return path

    def status(self, name: str, version: int | None = None) -> list[tuple[int, str]]:
        answer = self.request("GET", self._path(name, version))
        return [(int(s["version"]), s["state"]) for s in answer["model_version_status"]]

    def signature_defs(self, name: str, version: int | None = None) -> dict:
        """SignatureDef protos by key, as ServingClient.signature_defs returns them."""
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        answer = self.request("GET", self._path(name, version) + "/metadata")
        signature_map = json_format.ParseDict(answer["metadata"]["signature_def"],
                                              get_model_metadata_pb2.SignatureDefMap())
        return dict(signature_map.signature_def)

    def _signature(self, name: str, version: int | None, key: str):
        cached = self._signatures.get((name, version))
        if cached is None:
            cached = self._signatures[name, version] = self.signature_defs(name, version)
        if key not in cached:
            raise RestError(400, f'Serving signature key "{key}" not found.')
        return cached[key]

    def predict(self, name: str, inputs: dict[str, np.ndarray], signature: str = "",
                version: int | None = None) -> dict[str, np.ndarray]:
        """Columnar ("inputs") request; outputs as NumPy arrays of the signature's dtypes."""
        from tensorflow.python.framework import dtypes

        key = signature or "serving_default"
        answer = self.request("POST", self._path(name, version) + ":predict", {
            "signature_name": key,
            "inputs": {alias: _json_value(np.asarray(value)) for alias, value in inputs.items()}})
        outputs_info = self._signature(name, version, key).outputs
        outputs = answer["outputs"]
        if len(outputs_info) == 1:
            outputs = {next(iter(outputs_info)): outputs}
        arrays = {}
        for alias, value in outputs.items():
            dtype = dtypes.as_dtype(outputs_info[alias].dtype)
            if dtype == dtypes.string:
                arrays[alias] = _bytes_array(value)
            else:
                arrays[alias] = np.asarray(value, dtype.as_numpy_dtype)
        return arrays


def _json_value(array: np.ndarray):
    """A NumPy array as TF Serving's JSON: bytes as {"b64": ...}, numbers as lists."""
    if array.dtype.kind in "OSU":
        def encode(item):
            data = item.encode() if isinstance(item, str) else bytes(item)
            return {"b64": base64.b64encode(data).decode("ascii")}
        return nested_json(array, encode)
    return array.tolist()


def nested_json(array: np.ndarray, encode: Callable[[Any], Any]) -> Any:
    """encode(item) of every item of a string array, nested in the array's shape (a 0-d array:
    the item alone), as TF Serving's JSON writes string tensors (client and REST server)."""
    flat = [encode(item) for item in array.reshape(-1).tolist()]
    if array.ndim == 0:
        return flat[0]
    nested = np.empty(len(flat), object)
    nested[:] = flat
    return nested.reshape(array.shape).tolist()


def _bytes_array(value) -> np.ndarray:
    """TF Serving's JSON strings (nested lists of str or {"b64": ...}) as an object array."""
    leaves: list[bytes] = []
    shape: list[int] = []

    def walk(item, depth: int) -> None:
        if isinstance(item, list):
            if len(shape) <= depth:
                shape.append(len(item))
            for inner in item:
                walk(inner, depth + 1)
        else:
            leaves.append(base64.b64decode(item["b64"]) if isinstance(item, dict)
                          else item.encode())

    walk(value, 0)
    array = np.empty(len(leaves), object)
    array[:] = leaves
    return array.reshape(shape)


def open_client(address: str, timeout_s: float = 60.0):
    """``http(s)://HOST:PORT`` -> RestClient; ``HOST:PORT`` -> ServingClient (gRPC)."""
    if address.startswith(("http://", "https://")):
        return RestClient(address, timeout_s)
    return ServingClient(address, timeout_s)

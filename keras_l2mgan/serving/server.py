"""An embedded TF Serving: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus) from the tensorflow-serving-api protos, over TF Serving's directory layout,
and its REST API (keras_l2mgan.serving.rest) on the same loaded models: both transports call
``PredictionServicer.predict`` / ``.metadata`` and ``ModelServicer.status``.

Status codes and messages follow tensorflow_model_server: unknown model or version NOT_FOUND,
unknown signature FAILED_PRECONDITION, malformed inputs INVALID_ARGUMENT. Like TF Serving's
default version policy, only the latest version of each model is served unless a models.config
says otherwise (``model_version_policy { all {} }`` or ``specific { versions: ... }``).

Unlike tensorflow_model_server, every request is bounded before anything is built from it
(keras_l2mgan.serving.limits): declared shapes against the bytes sent, images per request,
encoded images by their headers, decoded pixels and RPCs in flight, message size.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from keras_l2mgan.export import version_dirs
from keras_l2mgan.serving.batching import (
    DEFAULT_MAX_BATCH_SIZE,
    BatchSizeMismatch,
    DynamicBatcher,
    read_batching_parameters,
    request_batch_size,
)
from keras_l2mgan.serving.limits import (
    MAX_MESSAGE_BYTES,
    PixelBudget,
    ServingError,
    ServingLimits,
    check_port_free,
    check_tensor,
    encoded_pixels,
)

log = logging.getLogger(__name__)

__all__ = ["MAX_MESSAGE_BYTES", "BatchingOptions", "ModelRepository", "Servers", "ServingError",
           "ServingLimits", "create_server", "serve_forever", "start_servers"]
ENCODED_INPUT = "image_bytes"  # edit_encoded's input: checked by header, decoded in the graph


@dataclass
class BatchingOptions:
    enabled: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    batch_timeout_micros: int = 2000

    @classmethod
    def from_file(cls, path: str | Path) -> BatchingOptions:
        """Read max_batch_size / batch_timeout_micros from a TF Serving batching_parameters.txt."""
        parameters = read_batching_parameters(path)
        return cls(enabled=True, **{name: parameters[name] for name in
                                    ("max_batch_size", "batch_timeout_micros")
                                    if name in parameters})


@dataclass
class Servable:
    """One loaded version of one model."""

    name: str
    version: int
    path: Path
    batching: BatchingOptions
    loaded: object = None
    signature_defs: dict = field(default_factory=dict)  # name -> SignatureDef proto
    _batchers: dict = field(default_factory=dict)

    def load(self) -> Servable:
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.loaded = tf.saved_model.load(str(self.path))
        saved_model = saved_model_pb2.SavedModel.FromString(
            (self.path / "saved_model.pb").read_bytes())
        self.signature_defs = dict(saved_model.meta_graphs[0].signature_def)
        if self.batching.enabled:
            for key in self.loaded.signatures:
                if _batchable(self.signature_defs[key]):
                    self._batchers[key] = DynamicBatcher(
                        self._runner(key), self.batching.max_batch_size,
                        self.batching.batch_timeout_micros / 1e6, name=f"{self.name}/{key}")
        return self

    def _runner(self, key: str):
        import tensorflow as tf

        function = self.loaded.signatures[key]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in outputs.items()}

        return run

    def run(self, key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batcher = self._batchers.get(key)
        return batcher.submit(inputs) if batcher else self._runner(key)(inputs)

    def close(self) -> None:
        for batcher in self._batchers.values():
            batcher.close()


def _batchable(signature) -> bool:
    """Every input and output has an unknown leading (batch) dimension."""
    tensors = list(signature.inputs.values()) + list(signature.outputs.values())
    return bool(signature.inputs) and all(
        not t.tensor_shape.unknown_rank and t.tensor_shape.dim
        and t.tensor_shape.dim[0].size == -1 for t in tensors)


@dataclass
class ModelEntry:
    name: str
    base_path: Path
    policy: str = "latest"  # latest | all | specific
    specific_versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)
    servables: dict[int, Servable] = field(default_factory=dict)


class ModelRepository:
    """The models of a base dir, as tensorflow_model_server would load them."""

    def __init__(self, base_dir: str | Path, config_file: str | Path | None = None,
                 batching: BatchingOptions | None = None):
        self.base_dir = Path(base_dir)
        self.batching = batching or BatchingOptions()
        if not self.base_dir.is_dir():
            raise FileNotFoundError(f"model base dir {self.base_dir} does not exist")
        self.models: dict[str, ModelEntry] = {}
        entries = (self._entries_from_config(config_file) if config_file
                   else self._entries_from_layout())
        if not entries:
            raise FileNotFoundError(
                f"no SavedModels under {self.base_dir}: expected NAME/<version>/saved_model.pb "
                "or <version>/saved_model.pb (run `l2m export` first)")
        for entry in entries:
            self._load(entry)
            self.models[entry.name] = entry

    def _entries_from_layout(self) -> list[ModelEntry]:
        if version_dirs(self.base_dir):  # the base dir is one model's dir
            return [ModelEntry(self.base_dir.name, self.base_dir)]
        return [ModelEntry(p.name, p) for p in sorted(self.base_dir.iterdir())
                if p.is_dir() and version_dirs(p)]

    def _entries_from_config(self, config_file: str | Path) -> list[ModelEntry]:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        config = model_server_config_pb2.ModelServerConfig()
        try:
            text_format.Parse(Path(config_file).read_text(), config)
        except text_format.ParseError as error:
            raise ValueError(f"cannot parse model config {config_file}: {error}") from None
        entries = []
        for model in config.model_config_list.config:
            base = Path(model.base_path)
            if not base.is_absolute():
                base = self.base_dir / base
            if not version_dirs(base) and version_dirs(self.base_dir / model.name):
                base = self.base_dir / model.name  # /models/NAME in docker, a local dir here
            policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
            entries.append(ModelEntry(
                model.name, base, policy,
                tuple(model.model_version_policy.specific.versions),
                dict(model.version_labels)))
        return entries

    def _load(self, entry: ModelEntry) -> None:
        available = version_dirs(entry.base_path)
        if entry.policy == "all":
            chosen = sorted(available)
        elif entry.policy == "specific":
            chosen = [v for v in entry.specific_versions if v in available]
        else:
            chosen = sorted(available)[-1:]
        for version in chosen:
            log.info("loading %s version %d from %s", entry.name, version, available[version])
            entry.servables[version] = Servable(
                entry.name, version, available[version], self.batching).load()

    def close(self) -> None:
        for entry in self.models.values():
            for servable in entry.servables.values():
                servable.close()

    def find(self, spec) -> Servable:
        """The servable a ModelSpec asks for, or a ServingError as TF Serving would raise."""
        if not spec.name:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        choice = spec.WhichOneof("version_choice")
        entry = self.models.get(spec.name)
        if choice == "version_label":
            label = spec.version_label
            if entry is None or label not in entry.labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {label}")
            version = entry.labels[label]
        elif choice == "version":
            version = spec.version.value
        else:
            version = None
        if entry is None or not entry.servables or (
                version is not None and version not in entry.servables):
            request = (f"Latest({spec.name})" if version is None
                       else f"Specific({spec.name}, {version})")
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: {request}")
        return entry.servables[version if version is not None else max(entry.servables)]


def _check_inputs(signature, request, limits: ServingLimits
                  ) -> tuple[dict[str, np.ndarray], int]:
    """Check request.inputs against a SignatureDef (TF Serving's messages), then decode them;
    returns (arrays, pixels the graph will decode). Every bound is checked on the TensorProto
    and on image headers first: nothing is built from a declared shape."""
    import tensorflow as tf

    expected, sent = set(signature.inputs), set(request.inputs)
    if expected != sent:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    for alias in sorted(request.inputs):
        check_tensor(alias, request.inputs[alias], signature.inputs[alias], limits)
    pixels = 0
    encoded = request.inputs.get(ENCODED_INPUT)
    if encoded is not None and encoded.dtype == tf.string.as_datatype_enum:
        pixels = encoded_pixels(ENCODED_INPUT, encoded.string_val, limits)
    arrays = {}
    for alias, proto in request.inputs.items():
        try:
            arrays[alias] = tf.make_ndarray(proto)
        except Exception:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"tensor parsing error: {alias}") from None
    return arrays, pixels


def _grpc_code(error: Exception) -> grpc.StatusCode:
    """TensorFlow error codes share gRPC's numbering."""
    code = getattr(error, "error_code", None)
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return grpc.StatusCode.INTERNAL


# TensorFlow wraps an op's error in context: "Graph execution error:", "Detected at node ...
# defined at (most recent call last):", a stack trace (or "<stack traces unavailable>"), and
# "[[{{node ...}}]] [Op:...]" after the message. The client wants the message itself.
_TF_NOISE = re.compile(r"^(Graph execution error:|Detected at node |<stack traces? unavailable>"
                       r"|\d+ root error\(s\) found\.|\s|\[\[)")
_TF_SUFFIX = re.compile(r"\s*(\[\[\{\{node [^}]*\}\}\]\])?\s*(\[Op:[^\]]*\])?\s*$")
_ROOT_ERROR = re.compile(r"^\s*\(\d+\) [A-Z_]+: ")


def _answer(context, method: str, run: Callable[[], Any]) -> Any:
    """The body of every gRPC method: a ServingError aborts with its own code, any other error
    with INTERNAL and its first line (logged in full), so no request takes the server down."""
    try:
        return run()
    except ServingError as error:
        context.abort(error.code, str(error))
    except Exception as error:
        log.exception("%s failed", method)
        context.abort(grpc.StatusCode.INTERNAL, _first_line(error))


def _first_line(error: Exception) -> str:
    """The reason inside a TensorFlow error message, without TensorFlow's wrapping."""
    message = str(getattr(error, "message", None) or error)
    lines = message.splitlines()
    for line in lines:  # TF assertion messages carry the useful part after the node name
        if "assertion failed" in line:
            return _TF_SUFFIX.sub("", _ROOT_ERROR.sub("", line.strip()))
    for line in lines:
        if _ROOT_ERROR.match(line):  # "  (0) INVALID_ARGUMENT: reason" of several root errors
            return _TF_SUFFIX.sub("", _ROOT_ERROR.sub("", line))
        if line.strip() and not _TF_NOISE.match(line):
            return _TF_SUFFIX.sub("", line.strip()) or line.strip()
    stripped = [line.strip() for line in lines if line.strip()]
    return stripped[0] if stripped else type(error).__name__


def _base(module: str, name: str):
    """A generated servicer base class (its other methods answer UNIMPLEMENTED)."""
    import importlib

    return getattr(importlib.import_module(f"tensorflow_serving.apis.{module}"), name)


class PredictionServicer(_base("prediction_service_pb2_grpc", "PredictionServiceServicer")):
    """PredictionService.Predict and GetModelMetadata (Classify, Regress, ... are
    UNIMPLEMENTED: the model has no classification or regression signature)."""

    def __init__(self, repository: ModelRepository, limits: ServingLimits | None = None):
        self.repository = repository
        self.limits = limits or ServingLimits()
        self.pixel_budget = PixelBudget(self.limits.max_decoded_pixels)

    def predict(self, request, time_remaining: float | None = None):
        """A PredictRequest -> PredictResponse, or a ServingError (TF Serving's code and
        message). Both transports run this: gRPC's Predict and the REST API's :predict."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        servable = self.repository.find(request.model_spec)
        key = request.model_spec.signature_name or "serving_default"
        signature = servable.signature_defs.get(key)
        if signature is None or key not in servable.loaded.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                               f'Serving signature key "{key}" not found.')
        inputs, pixels = _check_inputs(signature, request, self.limits)
        if _batchable(signature):
            # One leading size for every input, checked before the batcher merges it with
            # other clients' requests (it splits the merged outputs by this size).
            try:
                request_batch_size(inputs)
            except BatchSizeMismatch as error:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        wanted = list(request.output_filter) or list(signature.outputs)
        for alias in wanted:
            if alias not in signature.outputs:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
        try:
            # The decoded images of all running requests stay within the budget.
            with self.pixel_budget.reserve(pixels, time_remaining):
                outputs = servable.run(key, inputs)
        except tf.errors.OpError as error:
            raise ServingError(_grpc_code(error), _first_line(error)) from None
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias in wanted:
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(outputs[alias]))
        return response

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        return _answer(context, "Predict", lambda: self.predict(request, context.time_remaining()))

    def metadata(self, request):
        """A GetModelMetadataRequest -> GetModelMetadataResponse, or a ServingError."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        servable = self.repository.find(request.model_spec)
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "GetModelMetadataRequest must specify at least one "
                               "metadata_field")
        for name in request.metadata_field:
            if name != "signature_def":
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Metadata field {name} is not supported")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _answer(context, "GetModelMetadata", lambda: self.metadata(request))


class ModelServicer(_base("model_service_pb2_grpc", "ModelServiceServicer")):
    """ModelService.GetModelStatus (HandleReloadConfigRequest answers UNIMPLEMENTED)."""

    def __init__(self, repository: ModelRepository):
        self.repository = repository

    def status(self, request):
        """A GetModelStatusRequest -> GetModelStatusResponse, or a ServingError."""
        from tensorflow_serving.apis import get_model_status_pb2

        spec = request.model_spec
        if not spec.name:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing model name in request.")
        entry = self.repository.models.get(spec.name)
        if entry is None or not entry.servables:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {spec.name}")
        versions = sorted(entry.servables)
        choice = spec.WhichOneof("version_choice")
        if choice == "version":
            if spec.version.value not in entry.servables:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model {spec.name}")
            versions = [spec.version.value]
        elif choice == "version_label":
            if spec.version_label not in entry.labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"Unrecognized servable version label: {spec.version_label}")
            versions = [entry.labels[spec.version_label]]
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in versions:
            status = response.model_version_status.add()
            status.version = version
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            status.status.error_code = 0
        return response

    def GetModelStatus(self, request, context):  # noqa: N802
        return _answer(context, "GetModelStatus", lambda: self.status(request))


@dataclass
class Servers:
    """What `start_servers` started: the gRPC server and/or the REST server, over one
    repository (the same loaded models, batchers and pixel budget)."""

    repository: ModelRepository
    grpc: grpc.Server | None = None
    grpc_port: int | None = None
    rest: object = None  # keras_l2mgan.serving.rest.RestServer
    rest_port: int | None = None

    def stop(self, grace: float = 2.0) -> None:
        if self.rest is not None:
            self.rest.stop()
        if self.grpc is not None:
            self.grpc.stop(grace=grace).wait()
        self.repository.close()


def start_servers(base_dir: str | Path, host: str = "127.0.0.1", port: int | None = 8500,
                  rest_api_port: int | None = None, config_file: str | Path | None = None,
                  batching: BatchingOptions | None = None, limits: ServingLimits | None = None,
                  rest_timeout_s: float | None = None) -> Servers:
    """Load the models once and serve them over gRPC (``port``; None: no gRPC) and TF
    Serving's REST API (``rest_api_port``; None: no REST). Port 0 picks a free one (see
    Servers' ports). A port another process listens on is a ValueError, before any model
    loads."""
    import warnings

    from PIL import Image
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    from keras_l2mgan.serving.rest import REST_TIMEOUT_S, create_rest_server

    limits = limits or ServingLimits()
    # Headers of images over PIL's threshold are refused with their size; no warning per image.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    for probe in (port, rest_api_port):
        if probe is not None:
            check_port_free(host, probe)
    server, bound = None, None
    if port is not None:
        server, bound = _bind_grpc(host, port, limits)
    try:
        repository = ModelRepository(base_dir, config_file, batching)
    except BaseException:
        if server is not None:
            server.stop(None)
        raise
    prediction, models = PredictionServicer(repository, limits), ModelServicer(repository)
    servers = Servers(repository, server, bound)
    try:
        if rest_api_port is not None:
            servers.rest = create_rest_server(prediction, models, host, rest_api_port,
                                              rest_timeout_s or REST_TIMEOUT_S)
            servers.rest_port = servers.rest.port
    except BaseException:
        servers.grpc = None
        if server is not None:
            server.stop(None)
        repository.close()
        raise
    if server is not None:
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
        server.start()
    return servers


def _bind_grpc(host: str, port: int, limits: ServingLimits) -> tuple[grpc.Server, int]:
    server = grpc.server(
        # One thread per admitted RPC: more would only queue work the limit already refused.
        futures.ThreadPoolExecutor(max_workers=limits.max_concurrent_requests,
                                   thread_name_prefix="l2m-serve"),
        maximum_concurrent_rpcs=limits.max_concurrent_requests,
        options=[("grpc.max_receive_message_length", limits.max_message_bytes),
                 # Responses are bounded by the request limits (images per request).
                 ("grpc.max_send_message_length", -1),
                 # gRPC's default SO_REUSEPORT lets a second server share the port and take
                 # half the connections; one server per port.
                 ("grpc.so_reuseport", 0)])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise ValueError(f"cannot listen on {address}: {error}") from None
    if bound == 0:
        raise ValueError(f"cannot listen on {address} (port in use?); pick another --port")
    return server, bound


def create_server(base_dir: str | Path, host: str = "127.0.0.1", port: int = 8500,
                  config_file: str | Path | None = None,
                  batching: BatchingOptions | None = None,
                  limits: ServingLimits | None = None
                  ) -> tuple[grpc.Server, int, ModelRepository]:
    """gRPC only (see `start_servers`): returns (server, bound port, repository)."""
    servers = start_servers(base_dir, host, port, None, config_file, batching, limits)
    return servers.grpc, servers.grpc_port, servers.repository


def serve_forever(servers: Servers) -> None:
    """Block until SIGINT/SIGTERM, then stop gracefully."""
    import signal

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    servers.stop()

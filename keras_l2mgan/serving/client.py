"""A client for TF Serving's gRPC API (tensorflow_model_server or `l2m serve`).

Built on the official PredictionServiceStub / ModelServiceStub with a large message limit,
a deadline per call and gRPC's own retry policy for UNAVAILABLE (server starting or restarting).
"""

from __future__ import annotations

import json

import grpc
import numpy as np

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


class ServingClient:
    """Predict / metadata / status calls plus the L2M-GAN edit on top of them."""

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

    # L2M-GAN on top of the signatures written by keras_l2mgan.export.

    def model_info(self, name: str, version: int | None = None) -> dict:
        """The exported config (img_size, domain_names, ...) from the `metadata` signature."""
        outputs = self.predict(name, {}, signature="metadata", version=version)
        config = json.loads(outputs["config_json"].item())
        config["domain_names"] = [n.decode() for n in outputs["domain_names"]]
        return config

    def edit(self, name: str, images: np.ndarray, source: np.ndarray, target: np.ndarray,
             alpha: np.ndarray, version: int | None = None) -> np.ndarray:
        """uint8 (N, S, S, 3) images -> edited uint8 images, through serving_default."""
        outputs = self.predict(name, {
            "images": np.asarray(images, np.uint8),
            "source_domain": np.asarray(source, np.int32),
            "target_domain": np.asarray(target, np.int32),
            "alpha": np.asarray(alpha, np.float32)}, version=version)
        return outputs["images"]

    def edit_like(self, name: str, images: np.ndarray, references: np.ndarray,
                  source: np.ndarray, reference_domain: np.ndarray, alpha: np.ndarray,
                  version: int | None = None) -> np.ndarray:
        """Reference-guided edit through the edit_like signature (domains -1: guessed)."""
        outputs = self.predict(name, {
            "images": np.asarray(images, np.uint8),
            "reference": np.asarray(references, np.uint8),
            "source_domain": np.asarray(source, np.int32),
            "reference_domain": np.asarray(reference_domain, np.int32),
            "alpha": np.asarray(alpha, np.float32)}, signature="edit_like", version=version)
        return outputs["images"]

    def classify(self, name: str, images: np.ndarray, version: int | None = None) -> np.ndarray:
        outputs = self.predict(name, {"images": np.asarray(images, np.uint8)},
                               signature="classify", version=version)
        return outputs["source_domain"]

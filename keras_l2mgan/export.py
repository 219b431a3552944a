"""Export an inference bundle as a TensorFlow SavedModel in TF Serving's layout.

``saved_models/NAME/VERSION/`` holds ``saved_model.pb``, ``variables/`` and
``assets.extra/tf_serving_warmup_requests``. The export always runs on the TensorFlow backend:
from a JAX or torch process it re-runs itself in a subprocess with KERAS_BACKEND=tensorflow,
rebuilding the model from the bundle (weights are backend-neutral).

Signatures (every batched input has a leading batch dimension of any size):

- ``serving_default``: images uint8 (N, S, S, 3), source_domain int32 (N,),
  target_domain int32 (N,), alpha float32 (N,) -> images uint8 (N, S, S, 3)
- ``edit_float``: the same with images float32 in [-1, 1] in and the raw (unclipped) generator
  output out; the exact Keras computation, for checks and float pipelines
- ``edit_encoded``: image_bytes string (N,) JPEG/PNG/... of any size (resized to S), plus the
  domains and alpha -> images string (N,) PNG at S x S; for thin clients
- ``edit_like``: images uint8 (N, S, S, 3), reference uint8 (N, S, S, 3), source_domain int32
  (N,), reference_domain int32 (N,), alpha float32 (N,) -> images uint8 (N, S, S, 3) and the
  source_domain / reference_domain used (N,): the reference-guided edit ``L2MGAN.edit_like``;
  a domain of -1 is guessed by the discriminator
- ``classify``: images uint8 -> domain_logits float32 (N, D) and source_domain int32 (N,), the
  discriminator's guess of each image's domain (used when the user gives no source domain)
- ``metadata``: no inputs -> domain_names string (D,), config_json string (), img_size int32 ();
  plus landmarks_mean float32 (98, 2) when the bundle has the mean CelebA-HQ landmarks, and
  training_data string () when the run trained on a known dataset (e.g. "synthetic")
- ``landmarks`` (only when the bundle holds a FAN): images uint8 (N, 256, 256, 3) -> landmarks
  float32 (N, 98, 2), FAN's 98 (x, y) points in those pixels (what face alignment needs)

When the bundle holds a FAN (config ``fan``) and w_hpf > 0, the edit signatures compute the
face masks inside the graph from the images, as ``L2MGAN.edit`` does: clients send the crop only.
``assets.extra`` also holds ``landmarks_mean.npy`` and ``training.json`` when known, so
`l2m edit` reads them without running the model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_l2mgan.atomic import atomic_directory, check_replaceable
from keras_l2mgan.bundle import CONFIG_FILE, find_bundle_dir
from keras_l2mgan.config import L2MConfig
from keras_l2mgan.image_range import to_uint8_tf, to_unit_tf

if TYPE_CHECKING:
    import numpy as np

USER_ERROR_EXIT = 2  # the export subprocess's exit code for bad input (one line on stderr)
VERSION_NAME = re.compile(r"[0-9]+")
SIGNATURES = ("serving_default", "edit_float", "edit_encoded", "edit_like", "classify",
              "metadata")
# The inputs of the signatures that take pixels (edit_float takes float32 "images" instead) and
# their dtypes: the SavedModel declares them, clients and editors send them.
INPUT_DTYPES = {"images": "uint8", "reference": "uint8", "source_domain": "int32",
                "target_domain": "int32", "reference_domain": "int32", "alpha": "float32"}
GUESS_DOMAIN = -1  # edit_like's source_domain / reference_domain: the discriminator's guess
WARMUP_FILE = "tf_serving_warmup_requests"
COMPUTE_DTYPES = ("float32", "bfloat16")
# What tf.saved_model.save and this module write into a version dir: `--overwrite` replaces a
# version dir only when it holds nothing else.
SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", "variables", "assets", "assets.extra")
SAVED_MODEL_KIND = "SavedModel version directory"


def version_dirs(model_dir: str | Path) -> dict[int, Path]:
    """The numeric version subdirectories of saved_models/NAME, as TF Serving sees them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    # ASCII digits only, as TF Serving reads them: str.isdigit() also accepts "٢" (2).
    return {int(p.name): p for p in model_dir.iterdir()
            if p.is_dir() and VERSION_NAME.fullmatch(p.name) and (p / "saved_model.pb").is_file()}


def next_version(model_dir: str | Path) -> int:
    versions = version_dirs(model_dir)
    return max(versions) + 1 if versions else 1


def export_saved_model(source: str | Path, name: str, version: int | None = None,
                       output_dir: str | Path = "saved_models",
                       compute_dtype: str = "float32", overwrite: bool = False) -> Path:
    """Export the bundle at `source` (run dir or bundle dir) to output_dir/name/version/."""
    bundle_dir = find_bundle_dir(source)
    L2MConfig.load(bundle_dir / CONFIG_FILE)  # a damaged config is one line before any work
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"model name must be letters, digits, '-' or '_', got {name!r}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    model_dir = Path(output_dir) / name
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    target = model_dir / str(version)
    if target.exists() and not overwrite:
        raise ValueError(f"{target} already exists; pick another --version or pass --overwrite")
    check_replaceable(target, SAVED_MODEL_KIND, SAVED_MODEL_FILES)

    import keras

    if keras.backend.backend() != "tensorflow":
        _export_in_subprocess(bundle_dir, target, name, compute_dtype)
    else:
        _export_here(bundle_dir, target, name, compute_dtype)
    return target


def _export_in_subprocess(bundle_dir: Path, target: Path, name: str, compute_dtype: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "keras_l2mgan.export", str(bundle_dir), str(target),
               "--name", name, "--compute-dtype", compute_dtype]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if result.returncode == USER_ERROR_EXIT and lines:  # a bad bundle, not a failed export
            raise ValueError(lines[-1])
        raise RuntimeError("export in a TensorFlow subprocess failed: "
                           + (lines[-1] if lines else f"exit code {result.returncode}"))


def signature_inputs(**values: Any) -> dict[str, np.ndarray]:
    """Inputs for the exported signatures as NumPy arrays in the dtypes they declare."""
    import numpy as np

    return {name: np.asarray(value, INPUT_DTYPES[name]) for name, value in values.items()}


def build_module(model, compute_dtype: str = "float32", landmarks_mean=None,
                 training_data: str | None = None):
    """A tf.Module with the signature functions around a loaded L2MGAN (TF backend)."""
    import tensorflow as tf

    config = model.config
    size, num_domains = config.img_size, config.num_domains
    names = list(config.names)
    config_json = json.dumps(config.to_dict(), sort_keys=True)

    def spec(name, shape):
        return tf.TensorSpec(shape, INPUT_DTYPES[name], name=name)

    images_u8 = spec("images", [None, size, size, 3])
    images_f32 = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
    encoded = tf.TensorSpec([None], tf.string, name="image_bytes")
    source, target, alpha = spec("source_domain", [None]), spec("target_domain", [None]), spec(
        "alpha", [None])

    def check_labels(x, labels, argument):
        batch = tf.shape(x)[0]
        return [
            tf.debugging.assert_equal(tf.shape(labels)[0], batch,
                                      message=f"{argument} needs one value per image"),
            tf.debugging.assert_non_negative(labels, message=f"{argument} must be >= 0"),
            tf.debugging.assert_less(labels, num_domains,
                                     message=f"{argument} must be < {num_domains}"),
        ]

    def run_edit(x, source_domain, target_domain, strength):
        checks = (check_labels(x, source_domain, "source_domain")
                  + check_labels(x, target_domain, "target_domain")
                  + [tf.debugging.assert_equal(tf.shape(strength)[0], tf.shape(x)[0],
                                               message="alpha needs one value per image")])
        with tf.control_dependencies(checks):
            x = tf.cast(x, compute_dtype)
            strength = tf.cast(strength, compute_dtype)
        return tf.cast(model.edit(x, source_domain, target_domain, strength), tf.float32)

    module = tf.Module()
    module.model = model  # tracks the variables

    @tf.function(input_signature=[images_u8, source, target, alpha])
    def serving_default(images, source_domain, target_domain, alpha):
        edited = run_edit(to_unit_tf(images), source_domain, target_domain, alpha)
        return {"images": to_uint8_tf(edited)}

    @tf.function(input_signature=[images_f32, source, target, alpha])
    def edit_float(images, source_domain, target_domain, alpha):
        return {"images": run_edit(images, source_domain, target_domain, alpha)}

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
        return to_unit_tf(image)

    @tf.function(input_signature=[encoded, source, target, alpha])
    def edit_encoded(image_bytes, source_domain, target_domain, alpha):
        x = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            [size, size, 3], tf.float32))
        edited = to_uint8_tf(run_edit(x, source_domain, target_domain, alpha))
        pngs = tf.map_fn(tf.io.encode_png, edited, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": pngs}

    reference_u8 = spec("reference", [None, size, size, 3])
    reference_domain = spec("reference_domain", [None])

    def domain_or_guess(x, labels, argument):
        batch = tf.shape(x)[0]
        checks = [
            tf.debugging.assert_equal(tf.shape(labels)[0], batch,
                                      message=f"{argument} needs one value per image"),
            tf.debugging.assert_greater_equal(
                labels, GUESS_DOMAIN, message=f"{argument} must be >= {GUESS_DOMAIN} (-1: guess)"),
            tf.debugging.assert_less(labels, num_domains,
                                     message=f"{argument} must be < {num_domains}"),
        ]
        with tf.control_dependencies(checks):
            guess = model.guess_domain(tf.cast(x, compute_dtype))
            return tf.where(labels < 0, guess, labels)

    @tf.function(input_signature=[images_u8, reference_u8, source, reference_domain, alpha])
    def edit_like(images, reference, source_domain, reference_domain, alpha):
        x, ref = to_unit_tf(images), to_unit_tf(reference)
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(reference)[0], tf.shape(images)[0],
                message="reference needs one image per image"),
                tf.debugging.assert_equal(tf.shape(alpha)[0], tf.shape(images)[0],
                                          message="alpha needs one value per image")]):
            source_domain = domain_or_guess(x, source_domain, "source_domain")
            reference_domain = domain_or_guess(ref, reference_domain, "reference_domain")
        edited = model.edit_like(tf.cast(x, compute_dtype), tf.cast(ref, compute_dtype),
                                 tf.cast(alpha, compute_dtype), source_domain, reference_domain)
        return {"images": to_uint8_tf(tf.cast(edited, tf.float32)),
                "source_domain": source_domain, "reference_domain": reference_domain}

    @tf.function(input_signature=[images_u8])
    def classify(images):
        logits = tf.cast(model.discriminator.domain_logits(
            tf.cast(to_unit_tf(images), compute_dtype)), tf.float32)
        return {"domain_logits": logits,
                "source_domain": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    @tf.function(input_signature=[])
    def metadata():
        outputs = {"domain_names": tf.constant(names, tf.string),
                   "config_json": tf.constant(config_json, tf.string),
                   "img_size": tf.constant(size, tf.int32)}
        if landmarks_mean is not None:
            outputs["landmarks_mean"] = tf.constant(landmarks_mean, tf.float32)
        if training_data is not None:
            outputs["training_data"] = tf.constant(training_data, tf.string)
        return outputs

    signatures = {
        "serving_default": serving_default.get_concrete_function(),
        "edit_float": edit_float.get_concrete_function(),
        "edit_encoded": edit_encoded.get_concrete_function(),
        "edit_like": edit_like.get_concrete_function(),
        "classify": classify.get_concrete_function(),
        "metadata": metadata.get_concrete_function(),
    }
    if model.fan is not None:
        from keras_l2mgan.align import FAN_SIZE, landmarks_from_heatmaps_tf

        @tf.function(input_signature=[tf.TensorSpec([None, FAN_SIZE, FAN_SIZE, 3], tf.uint8,
                                                    name="images")])
        def landmarks(images):
            heatmaps = model.fan(to_unit_tf(images))
            return {"landmarks": landmarks_from_heatmaps_tf(heatmaps, FAN_SIZE)}

        signatures["landmarks"] = landmarks.get_concrete_function()
    return module, signatures


def load_model_for_export(bundle_dir: str | Path, compute_dtype: str = "float32"):
    """Load a bundle on the TF backend; bfloat16 computes in bf16 with float32 weights."""
    import keras

    from keras_l2mgan.bundle import load_bundle

    if compute_dtype == "bfloat16":
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            return load_bundle(bundle_dir)
        finally:
            keras.config.set_dtype_policy(previous)
    return load_bundle(bundle_dir)


def _export_here(bundle_dir: Path, target: Path, name: str, compute_dtype: str) -> None:
    import numpy as np
    import tensorflow as tf

    from keras_l2mgan.bundle import LANDMARKS_FILE, load_landmarks_mean
    from keras_l2mgan.editors import TRAINING_FILE, run_training_data

    model = load_model_for_export(bundle_dir, compute_dtype)
    landmarks_mean = load_landmarks_mean(bundle_dir)
    training_data = run_training_data(bundle_dir)
    module, signatures = build_module(model, compute_dtype, landmarks_mean, training_data)
    # TF Serving only loads numeric dirs, so the dot-named temp dir is invisible until the rename.
    with atomic_directory(target, SAVED_MODEL_KIND, SAVED_MODEL_FILES) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        write_warmup_requests(tmp, name, model.config.img_size)
        # The same config as the metadata signature, readable without loading TensorFlow
        # (`l2m edit` picks a default model by its domains). TF Serving ignores assets.extra.
        model.config.save(tmp / "assets.extra" / CONFIG_FILE)
        if landmarks_mean is not None:  # the target of `l2m edit`'s face alignment
            np.save(tmp / "assets.extra" / LANDMARKS_FILE, landmarks_mean)
        if training_data is not None:  # `l2m edit` notes a model trained on synthetic faces
            (tmp / "assets.extra" / TRAINING_FILE).write_text(
                json.dumps({"data": training_data}) + "\n")


def bundle_from_saved_model(version_dir: str | Path, run_dir: str | Path) -> Path:
    """Recover the bundle an `l2m export` was made from: the model config from assets.extra,
    the weights from the SavedModel's variables (the export tracks the L2MGAN as ``model``),
    written as run_dir/model/ with run_dir/training_options.json when the export says it was
    trained on synthetic faces, so `l2m export run_dir` writes an equivalent export with
    today's signatures. TensorFlow backend only. Returns the bundle dir."""
    import keras
    import tensorflow as tf

    from keras_l2mgan.atomic import write_file_atomic
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.editors import saved_training_data
    from keras_l2mgan.model import L2MGAN

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("bundle_from_saved_model runs on the TensorFlow backend")
    version_dir, run_dir = Path(version_dir), Path(run_dir)
    config_path = version_dir / "assets.extra" / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{version_dir} has no assets.extra/{CONFIG_FILE}: not an `l2m export`")
    model = L2MGAN(L2MConfig.load(config_path))
    # By checkpoint key (the export tracks the L2MGAN as `model`): a fresh model's own keys
    # are learnt by saving it the way export does, with every variable set to its index
    # (Keras tracks its layer lists for SavedModels only, so tf.train.Checkpoint cannot read
    # them back). Every variable must come back.
    import tempfile

    import numpy as np

    saved = tf.train.load_checkpoint(str(version_dir / "variables" / "variables"))
    with tempfile.TemporaryDirectory() as tmp:
        for i, variable in enumerate(model.weights):
            variable.assign(np.full(variable.shape, i, variable.dtype))
        module = tf.Module()
        module.model = model
        tf.saved_model.save(module, tmp)
        written = str(Path(tmp) / "variables" / "variables")
        probe = tf.train.load_checkpoint(written)
        keys = {}
        for key, _ in tf.train.list_variables(written):
            if key.startswith("model/"):
                keys[int(np.asarray(probe.get_tensor(key)).flat[0])] = key
    missing = [w.path for i, w in enumerate(model.weights) if i not in keys
               or not saved.has_tensor(keys[i])]
    if missing:
        raise ValueError(f"{version_dir} lacks weights of this model ({', '.join(missing[:3])}"
                         f"{', ...' if len(missing) > 3 else ''}): not this config's export")
    for i, variable in enumerate(model.weights):
        variable.assign(saved.get_tensor(keys[i]))
    bundle = save_bundle(model, run_dir / "model")
    if saved_training_data(version_dir) is not None:
        write_file_atomic(run_dir / "training_options.json", json.dumps(
            {"options": {"data": saved_training_data(version_dir)}}) + "\n")
    landmarks = version_dir / "assets.extra" / "landmarks_mean.npy"
    if landmarks.is_file():
        import shutil

        shutil.copyfile(landmarks, Path(bundle) / landmarks.name)
    return Path(bundle)


def write_warmup_requests(version_dir: str | Path, name: str, img_size: int,
                          batch_sizes: tuple[int, ...] = (1,)) -> Path:
    """assets.extra/tf_serving_warmup_requests: a TFRecord of PredictionLog protos that
    TF Serving replays at load so the first real request does not pay for graph setup."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = Path(version_dir) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batch_sizes:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name="serving_default"))
            inputs = {
                "images": np.full((batch, img_size, img_size, 3), 128, np.uint8),
                "source_domain": np.zeros((batch,), np.int32),
                "target_domain": np.ones((batch,), np.int32),
                "alpha": np.ones((batch,), np.float32),
            }
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def _main(argv: list[str] | None = None) -> None:
    """Entry point of the TensorFlow subprocess: export one bundle to one version dir."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle_dir")
    parser.add_argument("target")
    parser.add_argument("--name", required=True)
    parser.add_argument("--compute-dtype", default="float32", choices=COMPUTE_DTYPES)
    args = parser.parse_args(argv)
    try:
        _export_here(Path(args.bundle_dir), Path(args.target), args.name, args.compute_dtype)
    except ValueError as error:  # damaged bundle, foreign target: the parent reports one line
        print(str(error).splitlines()[0] if str(error) else type(error).__name__,
              file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


if __name__ == "__main__":
    _main()

"""Export an inference bundle as a TensorFlow SavedModel in TF Serving's layout.

``saved_models/NAME/VERSION/`` holds ``saved_model.pb``, ``variables/`` and
``assets.extra/tf_serving_warmup_requests``. The SavedModel is written by Keras's own
``keras.export.ExportArchive``: the model is tracked, each signature below is one
``add_endpoint(name, function, input_signature)``, and ``write_out`` saves them all.

The export always runs on the TensorFlow backend: from a JAX or torch process it re-runs itself
in a subprocess with KERAS_BACKEND=tensorflow, rebuilding the model from the bundle (weights are
backend-neutral). ExportArchive exists on JAX too, but there each endpoint is converted with
jax2tf as one JAX computation, and the signatures around the model are TensorFlow programs:
edit_encoded decodes and encodes images with ``tf.io`` (strings have no JAX type), metadata
returns string constants, and every edit checks its labels with ``tf.debugging`` asserts; the
JAX lowering would also fix the platform the SavedModel runs on. So JAX keeps the subprocess.

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
- ``guess_domain``: images uint8 -> domain_logits float32 (N, D) and source_domain int32 (N,),
  the discriminator's guess of each image's domain (used when the user gives no source domain);
  named ``classify`` before ExportArchive (not TF Serving's Classify RPC, which it never served)
- ``metadata``: no inputs -> domain_names string (D,), config_json string (), img_size int32 ();
  plus landmarks_mean float32 (98, 2) when the bundle has the mean CelebA-HQ landmarks, and
  training_data string () when the run trained on a known dataset (e.g. "synthetic")
- ``landmarks`` (only when the bundle holds a FAN): images uint8 (N, 256, 256, 3) -> landmarks
  float32 (N, 98, 2), FAN's 98 (x, y) points in those pixels (what face alignment needs)

When the bundle holds a FAN (config ``fan``) and w_hpf > 0, the edit signatures compute the
face masks inside the graph from the images, as ``L2MGAN.edit`` does: clients send the crop only.
The warmup file holds one request per signature at the batch sizes the server runs it at
(``warmup_batch_sizes`` of ``batching_parameters.txt`` beside the model dirs: its allowed sizes,
or powers of two up to max_batch_size, at most 64: 1, 2, 4, 8 for saved_models/).
``assets.extra`` also holds ``config.json``, ``variable_paths.json`` (the path of each saved
variable, for ``bundle_from_saved_model``), and ``landmarks_mean.npy`` and ``training.json``
when known, so `l2m edit` reads them without running the model.
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
    import keras
    import numpy as np

    from keras_l2mgan.model import L2MGAN

USER_ERROR_EXIT = 2  # the export subprocess's exit code for bad input (one line on stderr)
VERSION_NAME = re.compile(r"[0-9]+")
# The signatures of every export, in the order they are added (one list: the archive, the
# warmup file, `l2m export`'s message and the tests read it); FAN_SIGNATURE is added after them
# when the bundle holds a FAN.
SIGNATURES = ("serving_default", "edit_float", "edit_encoded", "edit_like", "guess_domain",
              "metadata")
FAN_SIGNATURE = "landmarks"
# The inputs of the signatures that take pixels (edit_float takes float32 "images" instead) and
# their dtypes: the SavedModel declares them, clients and editors send them.
INPUT_DTYPES = {"images": "uint8", "reference": "uint8", "source_domain": "int32",
                "target_domain": "int32", "reference_domain": "int32", "alpha": "float32"}
GUESS_DOMAIN = -1  # edit_like's source_domain / reference_domain: the discriminator's guess
WARMUP_FILE = "tf_serving_warmup_requests"
# assets.extra/variable_paths.json: the path of each variable in the archive's MODEL_VARIABLES
# list (ExportArchive saves variables as lists), so bundle_from_saved_model restores by path.
VARIABLE_PATHS_FILE = "variable_paths.json"
MODEL_VARIABLES = "model_variables"  # that list, an attribute of the loaded SavedModel
BATCHING_FILE = "batching_parameters.txt"  # TF Serving's, beside the model dirs (output_dir)
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


def signature_names(has_fan: bool) -> tuple[str, ...]:
    """The signatures an export of a model holds, in the order the archive adds them."""
    return SIGNATURES + ((FAN_SIGNATURE,) if has_fan else ())


def exported_signatures(version_dir: str | Path) -> tuple[str, ...]:
    """The signatures an `l2m export` wrote into version_dir (its config says if a FAN came)."""
    config = L2MConfig.load(Path(version_dir) / "assets.extra" / CONFIG_FILE)
    return signature_names(config.fan)


def build_archive(model: L2MGAN, compute_dtype: str = "float32",
                  landmarks_mean: np.ndarray | None = None,
                  training_data: str | None = None) -> keras.export.ExportArchive:
    """A keras.export.ExportArchive holding the signatures of `signature_names` around a
    loaded L2MGAN (TF backend); `archive.write_out(dir)` writes the SavedModel."""
    import keras
    import tensorflow as tf

    from keras_l2mgan.align import FAN_SIZE, landmarks_from_heatmaps_tf

    config = model.config
    size, num_domains = config.img_size, config.num_domains
    names = list(config.names)
    config_json = json.dumps(config.to_dict(), sort_keys=True)

    # The TensorSpec names become the signatures' input names, which clients send.
    def spec(name, shape):
        return tf.TensorSpec(shape, INPUT_DTYPES[name], name=name)

    images_u8 = spec("images", [None, size, size, 3])
    images_f32 = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
    encoded = tf.TensorSpec([None], tf.string, name="image_bytes")
    source, target, alpha = spec("source_domain", [None]), spec("target_domain", [None]), spec(
        "alpha", [None])
    reference_u8 = spec("reference", [None, size, size, 3])
    reference_domain = spec("reference_domain", [None])

    # Bad labels become InvalidArgument errors with a message, not an out-of-range gather.
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

    def serving_default(images, source_domain, target_domain, alpha):
        edited = run_edit(to_unit_tf(images), source_domain, target_domain, alpha)
        return {"images": to_uint8_tf(edited)}

    def edit_float(images, source_domain, target_domain, alpha):
        return {"images": run_edit(images, source_domain, target_domain, alpha)}

    def decode(data):
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size), antialias=True)
        return to_unit_tf(image)

    def edit_encoded(image_bytes, source_domain, target_domain, alpha):
        x = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec(
            [size, size, 3], tf.float32))
        edited = to_uint8_tf(run_edit(x, source_domain, target_domain, alpha))
        pngs = tf.map_fn(tf.io.encode_png, edited, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"images": pngs}

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

    def guess_domain(images):
        logits = tf.cast(model.discriminator.domain_logits(
            tf.cast(to_unit_tf(images), compute_dtype)), tf.float32)
        return {"domain_logits": logits,
                "source_domain": tf.argmax(logits, axis=-1, output_type=tf.int32)}

    def metadata():
        outputs = {"domain_names": tf.constant(names, tf.string),
                   "config_json": tf.constant(config_json, tf.string),
                   "img_size": tf.constant(size, tf.int32)}
        if landmarks_mean is not None:
            outputs["landmarks_mean"] = tf.constant(landmarks_mean, tf.float32)
        if training_data is not None:
            outputs["training_data"] = tf.constant(training_data, tf.string)
        return outputs

    def landmarks(images):
        heatmaps = model.fan(to_unit_tf(images))
        return {"landmarks": landmarks_from_heatmaps_tf(heatmaps, FAN_SIZE)}

    endpoints = {  # name: (function, input signature)
        "serving_default": (serving_default, [images_u8, source, target, alpha]),
        "edit_float": (edit_float, [images_f32, source, target, alpha]),
        "edit_encoded": (edit_encoded, [encoded, source, target, alpha]),
        "edit_like": (edit_like, [images_u8, reference_u8, source, reference_domain, alpha]),
        "guess_domain": (guess_domain, [images_u8]),
        "metadata": (metadata, []),
        FAN_SIGNATURE: (landmarks, [tf.TensorSpec([None, FAN_SIZE, FAN_SIZE, 3], tf.uint8,
                                                  name="images")]),
    }
    archive = keras.export.ExportArchive()
    # The archive saves the variables its endpoints use. All of the model's are also saved as
    # one list in model.variables order (bundle_from_saved_model reads them back by path). It
    # holds the TensorFlow variables themselves: `archive.track(model)` would list the Keras
    # wrappers, which the SavedModel stores as a second copy of every weight.
    archive.add_variable_collection(
        MODEL_VARIABLES, [variable.value for variable in model.variables])
    for name in signature_names(model.fan is not None):
        function, input_signature = endpoints[name]
        # Each endpoint becomes a tf.function (autograph off: the functions above use tf ops,
        # not Python control flow on tensors) and a SavedModel signature of that name.
        archive.add_endpoint(name, function, input_signature)
    return archive


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

    from keras_l2mgan.bundle import LANDMARKS_FILE, load_landmarks_mean
    from keras_l2mgan.editors import TRAINING_FILE, run_training_data

    model = load_model_for_export(bundle_dir, compute_dtype)
    landmarks_mean = load_landmarks_mean(bundle_dir)
    training_data = run_training_data(bundle_dir)
    archive = build_archive(model, compute_dtype, landmarks_mean, training_data)
    # The batching file beside the model dirs says which batch sizes the server will run.
    batch_sizes = warmup_batch_sizes(served_batch_sizes(target.parent.parent / BATCHING_FILE))
    # TF Serving only loads numeric dirs, so the dot-named temp dir is invisible until the rename.
    with atomic_directory(target, SAVED_MODEL_KIND, SAVED_MODEL_FILES) as tmp:
        archive.write_out(str(tmp), verbose=False)
        extra = tmp / "assets.extra"  # TF Serving reads only the warmup file in it
        write_warmup_requests(tmp, name, model.config.img_size,
                              signature_names(model.fan is not None), batch_sizes)
        (extra / VARIABLE_PATHS_FILE).write_text(
            json.dumps([variable.path for variable in model.variables], indent=0) + "\n")
        # The same config as the metadata signature, readable without loading TensorFlow
        # (`l2m edit` picks a default model by its domains).
        model.config.save(extra / CONFIG_FILE)
        if landmarks_mean is not None:  # the target of `l2m edit`'s face alignment
            np.save(extra / LANDMARKS_FILE, landmarks_mean)
        if training_data is not None:  # `l2m edit` notes a model trained on synthetic faces
            (extra / TRAINING_FILE).write_text(json.dumps({"data": training_data}) + "\n")


def bundle_from_saved_model(version_dir: str | Path, run_dir: str | Path) -> Path:
    """Recover the bundle an `l2m export` was made from: the model config from assets.extra,
    the weights from the SavedModel's variables, each by its Keras path (exports before
    ExportArchive: by checkpoint key), written as run_dir/model/ with
    run_dir/training_options.json when the export says it was trained on synthetic faces, so
    `l2m export run_dir` writes an equivalent export with today's signatures. TensorFlow
    backend only. run_dir must be new or empty. Returns the bundle dir."""
    import keras

    from keras_l2mgan.atomic import write_file_atomic
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.editors import saved_training_data
    from keras_l2mgan.model import L2MGAN

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("bundle_from_saved_model runs on the TensorFlow backend")
    version_dir, run_dir = Path(version_dir), Path(run_dir)
    # The run dir receives model/ and training_options.json: never write them over a user's run.
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ValueError(f"{run_dir} already exists and is not empty: name a new run directory")
    config_path = version_dir / "assets.extra" / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{version_dir} has no assets.extra/{CONFIG_FILE}: not an `l2m export`")
    model = L2MGAN(L2MConfig.load(config_path))
    if (version_dir / "assets.extra" / VARIABLE_PATHS_FILE).is_file():
        values = _saved_values_by_path(version_dir, model)
    else:
        values = _saved_values_by_checkpoint_key(version_dir, model)
    for variable, value in zip(model.weights, values, strict=True):
        variable.assign(value)
    bundle = save_bundle(model, run_dir / "model")
    if saved_training_data(version_dir) is not None:
        write_file_atomic(run_dir / "training_options.json", json.dumps(
            {"options": {"data": saved_training_data(version_dir)}}) + "\n")
    landmarks = version_dir / "assets.extra" / "landmarks_mean.npy"
    if landmarks.is_file():
        import shutil

        shutil.copyfile(landmarks, Path(bundle) / landmarks.name)
    return Path(bundle)


def _saved_values_by_path(version_dir: Path, model) -> list:
    """The saved value of each of model.weights, found by path: the archive's MODEL_VARIABLES
    list holds them in the order variable_paths.json names them."""
    import tensorflow as tf

    paths = json.loads((version_dir / "assets.extra" / VARIABLE_PATHS_FILE).read_text())
    saved = getattr(tf.saved_model.load(str(version_dir)), MODEL_VARIABLES)
    if len(paths) != len(saved):
        raise ValueError(f"{version_dir}: {VARIABLE_PATHS_FILE} names {len(paths)} variables, "
                         f"the SavedModel holds {len(saved)}")
    by_path = dict(zip(paths, saved, strict=True))
    values = []
    for variable in model.weights:
        value = by_path.get(variable.path)
        if value is None or tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{version_dir} lacks {variable.path} {tuple(variable.shape)} of "
                             "this model: not this config's export")
        values.append(value.numpy())
    return values


def _saved_values_by_checkpoint_key(version_dir: Path, model) -> list:
    """The saved value of each of model.weights in an export from before ExportArchive, which
    tracked the L2MGAN as ``model``: by checkpoint key."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    # A fresh model's own keys are learnt by saving it the way that export did, with every
    # variable set to its index (Keras tracks its layer lists for SavedModels only, so
    # tf.train.Checkpoint cannot read them back). Every variable must come back.
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
    return [saved.get_tensor(keys[i]) for i in range(len(model.weights))]


def served_batch_sizes(batching_file: str | Path) -> tuple[int, ...]:
    """The batch sizes a server with this TF Serving batching_parameters.txt runs a signature
    at: its allowed_batch_sizes (batches are padded up to one), else every size from 1 to
    max_batch_size (a batch closes at any size). Without the file: 1 to the default maximum."""
    from keras_l2mgan.serving.batching import DEFAULT_MAX_BATCH_SIZE, read_batching_parameters

    if not Path(batching_file).is_file():
        return tuple(range(1, DEFAULT_MAX_BATCH_SIZE + 1))
    parameters = read_batching_parameters(batching_file)
    if parameters.get("allowed_batch_sizes"):
        return tuple(parameters["allowed_batch_sizes"])
    return tuple(range(1, parameters.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE) + 1))


# The largest warmup request: each is replayed at load, so a server told to batch 256 images at
# 256 px must not allocate 256-image requests for every signature before it serves anything.
MAX_WARMUP_BATCH = 64


def warmup_batch_sizes(served: tuple[int, ...]) -> tuple[int, ...]:
    """The batch sizes to warm up, of those a server runs (`served_batch_sizes`): its
    allowed_batch_sizes as listed, or, where a batch closes at any size from 1 to N, the
    powers of two and N (the signatures take any batch, so a few sizes prepare the kernels
    for all); none above MAX_WARMUP_BATCH."""
    if served and served == tuple(range(1, len(served) + 1)):
        largest = served[-1]
        served = tuple(sorted({1 << k for k in range(largest.bit_length())} | {largest}))
    return tuple(size for size in served if size <= MAX_WARMUP_BATCH) or (1,)


def warmup_inputs(signature: str, batch: int, img_size: int) -> dict[str, Any]:
    """One request's inputs for `signature` at `batch` images, as TensorProtos: a grey face
    crop edited from domain 0 to 1 (every domain index below 2 exists in any model). Each
    proto holds one value that TF Serving repeats to fill the shape, so the file stays small."""
    import tensorflow as tf

    from keras_l2mgan.align import FAN_SIZE

    def filled(value, dtype, shape):
        return tf.make_tensor_proto(value, dtype, shape=shape)

    images = filled(128, tf.uint8, [batch, img_size, img_size, 3])
    labels = {"source_domain": filled(0, tf.int32, [batch]),
              "target_domain": filled(1, tf.int32, [batch]),
              "alpha": filled(1.0, tf.float32, [batch])}
    if signature == "serving_default":
        return {"images": images, **labels}
    if signature == "edit_float":
        return {"images": filled(0.0, tf.float32, [batch, img_size, img_size, 3]), **labels}
    if signature == "edit_encoded":
        png = tf.io.encode_png(tf.fill([img_size, img_size, 3], tf.constant(128, tf.uint8)))
        return {"image_bytes": filled(png.numpy(), tf.string, [batch]), **labels}
    if signature == "edit_like":  # the reference's domain guessed, as the editing page asks
        return {"images": images, "reference": images,
                "source_domain": labels["source_domain"],
                "reference_domain": filled(GUESS_DOMAIN, tf.int32, [batch]),
                "alpha": labels["alpha"]}
    if signature == "guess_domain":
        return {"images": images}
    if signature == "metadata":
        return {}
    if signature == FAN_SIGNATURE:
        return {"images": filled(128, tf.uint8, [batch, FAN_SIZE, FAN_SIZE, 3])}
    raise ValueError(f"no warmup inputs for signature {signature!r}")


def write_warmup_requests(version_dir: str | Path, name: str, img_size: int,
                          signatures: tuple[str, ...] = SIGNATURES,
                          batch_sizes: tuple[int, ...] = (1,)) -> Path:
    """assets.extra/tf_serving_warmup_requests: a TFRecord of PredictionLog protos that
    TF Serving replays at load, one per signature and batch size (metadata, which takes no
    inputs, once), so no first request pays for setting up a graph at its batch size."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = Path(version_dir) / "assets.extra" / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature in signatures:
            for batch in batch_sizes[:1] if signature == "metadata" else batch_sizes:
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
                for key, proto in warmup_inputs(signature, batch, img_size).items():
                    request.inputs[key].CopyFrom(proto)
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

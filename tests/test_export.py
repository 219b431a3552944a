"""`l2m export`: TF Serving layout, signatures, numerics against Keras, other backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_python

pytestmark = pytest.mark.needs_tensorflow  # SavedModels written and read in this process

DOMAINS = ("smiling", "not_smiling")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model saved as a run dir, exported through the CLI; (keras model, version dir)."""
    from cli.main import main
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    root = tmp_path_factory.mktemp("export")
    model = L2MGAN(get_preset("tiny_32", domain_names=DOMAINS))
    save_bundle(model, root / "run" / "model")
    result = CliRunner().invoke(main, ["export", str(root / "run"), "--name", "tiny",
                                       "--output-dir", str(root / "saved_models")])
    assert result.exit_code == 0, result.output
    return model, root / "saved_models" / "tiny" / "1"


def test_layout_and_signatures(exported):
    import tensorflow as tf

    _, version_dir = exported
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == {"serving_default", "edit_float", "edit_encoded",
                                      "edit_like", "guess_domain", "metadata"}
    assert "classify" not in loaded.signatures  # renamed for what it returns
    labels = {"source_domain": ([None], tf.int32), "target_domain": ([None], tf.int32),
              "alpha": ([None], tf.float32)}
    expected = {
        "serving_default": ({"images": ([None, 32, 32, 3], tf.uint8), **labels},
                            {"images": ([None, 32, 32, 3], tf.uint8)}),
        "edit_float": ({"images": ([None, 32, 32, 3], tf.float32), **labels},
                       {"images": ([None, 32, 32, 3], tf.float32)}),
        "edit_encoded": ({"image_bytes": ([None], tf.string), **labels},
                         {"images": ([None], tf.string)}),
        "edit_like": ({"images": ([None, 32, 32, 3], tf.uint8),
                       "reference": ([None, 32, 32, 3], tf.uint8),
                       "source_domain": ([None], tf.int32),
                       "reference_domain": ([None], tf.int32), "alpha": ([None], tf.float32)},
                      {"images": ([None, 32, 32, 3], tf.uint8),
                       "source_domain": ([None], tf.int32),
                       "reference_domain": ([None], tf.int32)}),
        "guess_domain": ({"images": ([None, 32, 32, 3], tf.uint8)},
                     {"domain_logits": ([None, 2], tf.float32),
                      "source_domain": ([None], tf.int32)}),
        "metadata": ({}, {"domain_names": ([2], tf.string), "config_json": ([], tf.string),
                          "img_size": ([], tf.int32)}),
    }
    for name, (inputs, outputs) in expected.items():
        function = loaded.signatures[name]
        got_inputs = function.structured_input_signature[1]
        assert {k: (v.shape.as_list(), v.dtype) for k, v in got_inputs.items()} == inputs, name
        got_outputs = function.structured_outputs
        assert {k: (v.shape.as_list(), v.dtype) for k, v in got_outputs.items()} == outputs, name

    metadata = loaded.signatures["metadata"]()
    assert [n.decode() for n in metadata["domain_names"].numpy()] == list(DOMAINS)
    assert json.loads(metadata["config_json"].numpy())["img_size"] == 32


def test_written_by_export_archive_with_the_one_signature_list(exported):
    """Every endpoint of keras.export.ExportArchive is a signature and an attribute of the
    saved root; the hand-built tf.Module of old had neither and tracked the model as `model`."""
    import tensorflow as tf

    from keras_l2mgan.export import SIGNATURES, exported_signatures

    _, version_dir = exported
    assert exported_signatures(version_dir) == SIGNATURES
    loaded = tf.saved_model.load(str(version_dir))
    assert set(loaded.signatures) == set(SIGNATURES)
    assert all(callable(getattr(loaded, name, None)) for name in SIGNATURES)
    assert not hasattr(loaded, "model")
    # The model's variables as one collection, listed by path in assets.extra, and saved once.
    paths = json.loads((version_dir / "assets.extra" / "variable_paths.json").read_text())
    assert len(paths) == len(loaded.model_variables) == len(set(paths)) > 0
    keys = [key for key, _ in tf.train.list_variables(str(version_dir / "variables" /
                                                         "variables"))]
    assert len(keys) == len(paths) + 1  # and the object graph


def test_warmup_requests_cover_every_signature_at_the_warmed_batch_sizes(exported):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from keras_l2mgan.export import SIGNATURES

    _, version_dir = exported
    records = list(tf.data.TFRecordDataset(
        str(version_dir / "assets.extra" / "tf_serving_warmup_requests")))
    loaded = tf.saved_model.load(str(version_dir))
    warmed = set()
    for record in records:
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        assert request.model_spec.name == "tiny"
        name = request.model_spec.signature_name
        inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        function = loaded.signatures[name]
        assert set(inputs) == set(function.structured_input_signature[1]), name
        sizes = {len(value) for value in inputs.values()}
        assert len(sizes) <= 1, name
        size = sizes.pop() if sizes else None
        warmed.add((name, size))
        if size in (None, 1, 8):  # the request runs, as TF Serving replays it at load
            function(**{key: tf.constant(value) for key, value in inputs.items()})
    # No batching_parameters.txt beside this export: powers of two to the default maximum, 8.
    expected = {(name, size) for name in SIGNATURES if name != "metadata"
                for size in (1, 2, 4, 8)} | {("metadata", None)}
    assert warmed == expected
    assert len(records) == len(expected)


def test_warmup_batch_sizes_are_few_and_bounded():
    from keras_l2mgan.export import MAX_WARMUP_BATCH, warmup_batch_sizes

    assert warmup_batch_sizes(tuple(range(1, 9))) == (1, 2, 4, 8)
    assert warmup_batch_sizes(tuple(range(1, 7))) == (1, 2, 4, 6)
    assert warmup_batch_sizes((1,)) == (1,)
    assert warmup_batch_sizes((2, 8, 100)) == (2, 8)  # allowed sizes as listed, capped
    big = warmup_batch_sizes(tuple(range(1, 257)))
    assert big == (1, 2, 4, 8, 16, 32, 64) and max(big) == MAX_WARMUP_BATCH
    assert warmup_batch_sizes((128, 256)) == (1,)
    assert warmup_batch_sizes(()) == (1,)  # no sizes listed: warm up one request


def test_served_batch_sizes_follow_the_batching_parameters(tmp_path):
    from keras_l2mgan.export import served_batch_sizes

    path = tmp_path / "batching_parameters.txt"
    assert served_batch_sizes(path) == tuple(range(1, 9))  # no file: the server's default
    path.write_text("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 5000 }\n")
    assert served_batch_sizes(path) == (1, 2, 3, 4)
    path.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 2\n"
                    "allowed_batch_sizes: 8\n")
    assert served_batch_sizes(path) == (2, 8)
    path.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: [1, 4, 8]\n")
    assert served_batch_sizes(path) == (1, 4, 8)


def test_bundle_from_saved_model_restores_every_weight(exported, tmp_path):
    from keras_l2mgan.bundle import load_bundle
    from keras_l2mgan.export import bundle_from_saved_model

    model, version_dir = exported
    recovered = load_bundle(bundle_from_saved_model(version_dir, tmp_path / "run"))
    assert [w.path for w in recovered.weights] == [w.path for w in model.weights]
    for ours, theirs in zip(recovered.weights, model.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_bundle_from_saved_model_refuses_an_existing_run(exported, tmp_path):
    from keras_l2mgan.export import bundle_from_saved_model

    _, version_dir = exported
    run_dir = tmp_path / "someone_elses_run"
    run_dir.mkdir()
    (run_dir / "training_options.json").write_text("{}\n")
    with pytest.raises(ValueError, match="not empty"):
        bundle_from_saved_model(version_dir, run_dir)
    assert (run_dir / "training_options.json").read_text() == "{}\n"
    assert not (run_dir / "model").exists()


def test_saved_model_matches_keras(exported):
    import tensorflow as tf

    model, version_dir = exported
    loaded = tf.saved_model.load(str(version_dir))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    x = pixels.astype(np.float32) / 127.5 - 1.0
    source = np.array([0, 1, 0], np.int32)
    target = np.array([1, 0, 1], np.int32)
    alpha = np.array([1.0, 0.5, 1.25], np.float32)
    reference = np.asarray(model.edit(x, source, target, alpha))
    raw = loaded.signatures["edit_float"](
        images=tf.constant(x), source_domain=tf.constant(source),
        target_domain=tf.constant(target), alpha=tf.constant(alpha))["images"].numpy()
    assert np.abs(raw - reference).max() <= 1e-5

    quantised = loaded.signatures["serving_default"](
        images=tf.constant(pixels), source_domain=tf.constant(source),
        target_domain=tf.constant(target), alpha=tf.constant(alpha))["images"].numpy()
    expected = np.clip(np.round((reference + 1.0) * 127.5), 0, 255)
    # Rounding may flip where the float sits within 1e-5 of a .5 boundary.
    assert np.abs(quantised.astype(np.int32) - expected).max() <= 1


def test_out_of_range_domain_is_an_invalid_argument(exported):
    import tensorflow as tf

    _, version_dir = exported
    loaded = tf.saved_model.load(str(version_dir))
    with pytest.raises(tf.errors.InvalidArgumentError, match="target_domain must be < 2"):
        loaded.signatures["serving_default"](
            images=tf.zeros([1, 32, 32, 3], tf.uint8), source_domain=tf.constant([0]),
            target_domain=tf.constant([2]), alpha=tf.constant([1.0]))


def test_export_errors(tmp_path):
    from cli.main import main

    missing = CliRunner().invoke(main, ["export", str(tmp_path / "nope"), "--name", "x"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    not_bundle = CliRunner().invoke(main, ["export", str(tmp_path / "empty"), "--name", "x"])
    assert not_bundle.exit_code == 2 and "config.json" in not_bundle.output


def test_torch_bundle_exports_from_a_jax_process(tmp_path):
    """Weights written on torch; `l2m export` started on JAX re-runs itself on TensorFlow."""
    import tensorflow as tf

    from keras_l2mgan.bundle import load_bundle

    write = ("from keras_l2mgan.bundle import save_bundle\n"
             "from keras_l2mgan.config import get_preset\n"
             "from keras_l2mgan.model import L2MGAN\n"
             f"save_bundle(L2MGAN(get_preset('tiny_32', num_domains=3)), r'{tmp_path}/run/model')")
    assert run_python(write, "torch").returncode == 0
    export = ("from cli.main import main\n"
              f"main(['export', r'{tmp_path}/run', '--name', 'cross', '--output-dir', "
              f"r'{tmp_path}/saved_models'])")
    result = run_python(export, "jax")
    assert result.returncode == 0, result.stderr[-2000:]

    model = load_bundle(tmp_path / "run" / "model")
    loaded = tf.saved_model.load(str(tmp_path / "saved_models" / "cross" / "1"))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    labels = np.array([0, 2], np.int32), np.array([1, 1], np.int32)
    reference = np.asarray(model.edit(x, *labels, 1.0))
    raw = loaded.signatures["edit_float"](
        images=tf.constant(x), source_domain=tf.constant(labels[0]),
        target_domain=tf.constant(labels[1]), alpha=tf.constant([1.0, 1.0]))["images"].numpy()
    assert np.abs(raw - reference).max() <= 1e-5

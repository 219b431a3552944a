"""Presets that load (issue 17): a bundle directory is a keras-hub style preset, so
`L2MGAN.from_preset` takes a preset name or a directory and `save_to_preset` writes one; a
`.keras` file keeps the same weights. Runs on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_l2mgan.atomic import ForeignDirectoryError
from keras_l2mgan.bundle import (
    CONFIG_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    find_bundle_dir,
    load_metadata,
    save_bundle,
)
from keras_l2mgan.config import get_preset
from keras_l2mgan.model import L2MGAN
from keras_l2mgan.training.optimizers import GANOptimizers


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(17)
    return L2MGAN.from_preset("tiny_32")


def _assert_same_weights(loaded, model):
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for ours, theirs in zip(loaded.weights, model.weights, strict=True):
        assert np.array_equal(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs)), ours.path


def test_save_to_preset_then_from_preset_gives_identical_weights(model, tmp_path):
    preset = model.save_to_preset(tmp_path / "preset")
    assert sorted(p.name for p in preset.iterdir()) == sorted(
        [CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE])
    metadata = load_metadata(preset)
    assert metadata["keras_version"] == keras.__version__
    assert metadata["backend"] == keras.backend.backend()
    assert {"keras_l2mgan_version", "date"} <= set(metadata)
    assert metadata["source"] == "preset tiny_32 (random weights)"

    for name_or_dir in (preset, str(preset)):
        loaded = L2MGAN.from_preset(name_or_dir)
        assert loaded.config == model.config
        _assert_same_weights(loaded, model)
    # A preset saved again records the directory it was loaded from.
    again = loaded.save_to_preset(tmp_path / "again")
    assert load_metadata(again)["source"] == str(preset.resolve())
    model.save_to_preset(preset)  # replacing a preset keeps one complete preset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "preset"]


def test_preset_name_still_builds_its_config():
    fresh = L2MGAN.from_preset("tiny_32", num_domains=3)
    assert fresh.config == get_preset("tiny_32", num_domains=3)
    with pytest.raises(ValueError, match="unknown preset 'no_such_preset'"):
        L2MGAN.from_preset("no_such_preset")


def test_preset_dir_takes_no_overrides_and_must_be_a_bundle(model, tmp_path):
    preset = model.save_to_preset(tmp_path / "preset")
    with pytest.raises(ValueError, match="overrides .num_domains. apply to preset names only"):
        L2MGAN.from_preset(preset, num_domains=3)
    with pytest.raises(FileNotFoundError, match="is not a model bundle: config.json is missing"):
        L2MGAN.from_preset(tmp_path)


def test_old_bundle_without_metadata_loads(model, tmp_path):
    old = save_bundle(model, tmp_path / "old")
    assert not (old / METADATA_FILE).exists() and load_metadata(old) is None
    _assert_same_weights(L2MGAN.from_preset(old), model)


def test_save_to_preset_leaves_a_foreign_directory_alone(model, tmp_path):
    (tmp_path / "thesis.txt").write_text("mine")
    with pytest.raises(ForeignDirectoryError, match="thesis.txt"):
        model.save_to_preset(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.txt"]


def test_find_bundle_dir_takes_a_bundle_or_a_run_dir(tmp_path):
    bundle = tmp_path / "run" / "model"
    bundle.mkdir(parents=True)
    (bundle / CONFIG_FILE).write_text("{}")
    with pytest.raises(FileNotFoundError, match="is neither a run dir nor a model bundle"):
        find_bundle_dir(tmp_path / "run")
    (bundle / WEIGHTS_FILE).write_bytes(b"")
    assert find_bundle_dir(tmp_path / "run") == bundle
    assert find_bundle_dir(bundle) == bundle
    with pytest.raises(FileNotFoundError, match="does not exist; pass a run dir or a bundle dir"):
        find_bundle_dir(tmp_path / "nowhere")


def test_keras_file_round_trip_gives_identical_weights(model, tmp_path):
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, L2MGAN) and loaded.config == model.config
    _assert_same_weights(loaded, model)


@pytest.mark.xfail(strict=True, reason="compile state does not round-trip through .keras yet: "
                   "load_model warns that compile() was not called (L2MGAN.compile is custom, "
                   "and GANOptimizers.from_config cannot rebuild its two optimizers), so the "
                   "loaded model has no optimizer")
def test_keras_file_round_trip_keeps_compile_state(tmp_path):
    keras.utils.set_random_seed(18)
    compiled = L2MGAN.from_preset("tiny_32")
    compiled.compile()
    compiled.save(tmp_path / "compiled.keras")
    loaded = keras.saving.load_model(tmp_path / "compiled.keras")
    _assert_same_weights(loaded, compiled)
    # Keras warns "compile() was not called" and leaves the model without its optimizers.
    assert isinstance(getattr(loaded, "optimizer", None), GANOptimizers)
    assert [v.path for v in loaded.optimizer.variables] == [
        v.path for v in compiled.optimizer.variables]

"""Presets that load (issue 17): a bundle directory is a keras-hub style preset, so
`L2MGAN.from_preset` takes a preset name or a directory and `save_to_preset` writes one; a
`.keras` file keeps the same weights and, once compiled, the compile state. Runs on every
backend."""

import warnings

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
from keras_l2mgan.training.optimizers import GANOptimizers, inner


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


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"images": rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"),
            "labels": rng.integers(0, 2, 4).astype("int32")}


def test_keras_file_round_trip_keeps_compile_state(tmp_path):
    keras.utils.set_random_seed(18)
    compiled = L2MGAN.from_preset("tiny_32")
    # Settings other than the defaults, so a loaded model compiled with defaults would differ;
    # XLA on JAX only, as in test_train (its eager step is slow, plain graphs elsewhere).
    jit = keras.backend.backend() == "jax"
    compiled.compile(learning_rate=2e-4, weight_decay=1e-3, ema_decay=0.99, ema_warmup=False,
                     loss_weights={"r1": 2.0, "reconstruction": 0.5}, seed=5, jit_compile=jit)
    compiled.train_on_batch(_batch())  # moments, EMA and step counts worth restoring
    compiled.save(tmp_path / "compiled.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.saving.load_model(tmp_path / "compiled.keras")
    # Neither "compile() was not called" nor "Skipping variable loading for optimizer".
    assert not [w for w in caught if "compile" in str(w.message) or "optimizer" in str(
        w.message)], [str(w.message) for w in caught]
    _assert_same_weights(loaded, compiled)

    assert isinstance(loaded.optimizer, GANOptimizers)
    assert loaded.get_compile_config() == compiled.get_compile_config()
    assert loaded.loss_weights == compiled.loss_weights
    assert loaded.loss_weights.r1 == 2.0 and loaded.loss_weights.reconstruction == 0.5
    assert loaded.jit_compile == compiled.jit_compile
    assert loaded.steps_per_execution == compiled.steps_per_execution
    g, d = inner(loaded.optimizer.g_optimizer), inner(loaded.optimizer.d_optimizer)
    assert g.get_config() == inner(compiled.optimizer.g_optimizer).get_config()
    assert d.get_config() == inner(compiled.optimizer.d_optimizer).get_config()
    assert np.isclose(float(ops.convert_to_numpy(g.learning_rate)), 2e-4)
    assert (g.weight_decay, g.beta_1, g.beta_2) == (1e-3, 0.0, 0.99)
    assert (g.use_ema, g.ema_momentum, g.ema_warmup) == (True, 0.99, False)
    assert not d.use_ema and d.weight_decay == 1e-3
    # D's variables go to the D optimizer again (compile wires them; the config cannot).
    assert [v.path for v in loaded.optimizer.d_variables] == [
        v.path for v in compiled.optimizer.d_variables]

    # The optimizer state itself (Keras restores it after compile_from_config).
    assert [v.path for v in loaded.optimizer.variables] == [
        v.path for v in compiled.optimizer.variables]
    for ours, theirs in zip(loaded.optimizer.variables, compiled.optimizer.variables,
                            strict=True):
        assert np.array_equal(ops.convert_to_numpy(ours), ops.convert_to_numpy(theirs)), ours.path
    assert int(ops.convert_to_numpy(g.iterations)) == 1

    logs = loaded.train_on_batch(_batch(1), return_dict=True)
    assert all(np.isfinite(value) for value in logs.values()), logs
    assert int(ops.convert_to_numpy(g.iterations)) == 2
    assert int(ops.convert_to_numpy(d.iterations)) == 2


def test_uncompiled_model_saves_no_compile_state(model, tmp_path):
    assert model.get_compile_config() == {}
    model.save(tmp_path / "model.keras")
    assert not getattr(keras.saving.load_model(tmp_path / "model.keras"), "compiled", False)

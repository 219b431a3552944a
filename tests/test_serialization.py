"""Saving and loading: .keras and .weights.h5 on each backend, bundles, and the same weights
giving the same outputs on TensorFlow, JAX and torch."""

import json
import textwrap

import keras
import numpy as np
import pytest
from conftest import run_python
from keras import ops

from keras_l2mgan.bundle import load_bundle, save_bundle
from keras_l2mgan.config import L2MConfig
from keras_l2mgan.model import L2MGAN

CONFIG = L2MConfig(img_size=64, num_domains=3, w_hpf=1.0, dim_in=8, max_conv_dim=32,
                   domain_names=("cat", "dog", "wild"))


def _outputs(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    src, tgt = np.array([0, 2]), np.array([1, 0])
    return np.concatenate([
        ops.convert_to_numpy(model.edit(x, src, tgt, alpha=0.7)).ravel(),
        ops.convert_to_numpy(model.discriminator(x, src)).ravel(),
    ])


def test_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(1)
    model = L2MGAN(CONFIG)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, L2MGAN) and loaded.config == CONFIG
    np.testing.assert_allclose(_outputs(loaded), _outputs(model), atol=1e-6)


def test_weights_file_round_trip(tmp_path):
    keras.utils.set_random_seed(2)
    model = L2MGAN(CONFIG)
    model.save_weights(tmp_path / "model.weights.h5")
    keras.utils.set_random_seed(3)
    other = L2MGAN(CONFIG)
    assert not np.allclose(_outputs(other), _outputs(model))
    other.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_allclose(_outputs(other), _outputs(model), atol=1e-6)


def test_bundle_round_trip_is_atomic(tmp_path):
    model = L2MGAN(CONFIG)
    save_bundle(model, tmp_path / "bundle")
    save_bundle(model, tmp_path / "bundle")  # overwriting keeps one complete bundle
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded.config.domain_names == ("cat", "dog", "wild")
    np.testing.assert_allclose(_outputs(loaded), _outputs(model), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_bundle(tmp_path)


_SCRIPT = textwrap.dedent("""
    import json, sys
    import keras, numpy as np
    sys.path.insert(0, "tests")
    from test_serialization import CONFIG, _outputs
    from keras_l2mgan.model import L2MGAN
    out_dir, mode, others = sys.argv[1], sys.argv[2], sys.argv[3:]
    backend = keras.backend.backend()
    if mode == "save":
        keras.utils.set_random_seed({"tensorflow": 1, "jax": 2, "torch": 3}[backend])
        model = L2MGAN(CONFIG)
        model.save_weights(f"{out_dir}/{backend}.weights.h5")
        np.save(f"{out_dir}/{backend}.npy", _outputs(model))
    diffs = {}
    for other in others:
        model = L2MGAN(CONFIG)
        model.load_weights(f"{out_dir}/{other}.weights.h5")
        diffs[other] = float(np.abs(_outputs(model) - np.load(f"{out_dir}/{other}.npy")).max())
    print("DIFFS" + json.dumps(diffs))
""")


def _run(tmp_path, backend, mode, *others):
    """Run _SCRIPT under `backend`; return its {other backend: max |output diff|}."""
    argv = f"import sys; sys.argv = ['x', {str(tmp_path)!r}, {mode!r}, *{list(others)!r}]\n"
    result = run_python(argv + _SCRIPT, backend)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("DIFFS")][-1]
    return json.loads(line[len("DIFFS"):])


@pytest.mark.backend_independent  # drives all three backends itself, in subprocesses
def test_same_weights_same_outputs_across_backends(tmp_path):
    """Each backend loads the others' weights and reproduces their outputs (max |diff| <= 1e-4)."""
    _run(tmp_path, "tensorflow", "save")
    diffs = {}
    for backend in ("jax", "torch"):
        diffs[backend] = _run(tmp_path, backend, "save", "tensorflow")
    diffs["tensorflow"] = _run(tmp_path, "tensorflow", "load", "jax", "torch")
    worst = max(d for per_backend in diffs.values() for d in per_backend.values())
    assert worst <= 1e-4, diffs

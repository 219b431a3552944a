"""Checkpoints restore each array into the variable whose path it was saved with."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_l2mgan.errors import CorruptFileError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of a compiled tiny model, and its values by variable path."""
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training import checkpoints

    keras.utils.set_random_seed(0)
    model = L2MGAN(get_preset("tiny_32"))
    model.compile(seed=1)
    path = checkpoints.save_checkpoint(tmp_path_factory.mktemp("ckpt"), 7, model)
    return path, _state(model)


def _state(model) -> dict[str, np.ndarray]:
    from keras import ops

    return {f"{prefix}:{i}": np.array(ops.convert_to_numpy(v.value))
            for prefix, variables in (("model", model.variables),
                                      ("optimizer", model.optimizer.variables))
            for i, v in enumerate(variables)}


def _fresh_model():
    """Another model of the same config with other weights; built later in the process, so its
    optimizers carry other auto-numbered names (warmup_ema_adam_3/... and so on)."""
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.utils.set_random_seed(5)
    model = L2MGAN(get_preset("tiny_32"))
    model.compile(seed=2)
    return model


def _rewrite(source, target, edit) -> None:
    """Copy a checkpoint with edit(header, arrays) applied."""
    with np.load(source) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays.pop("header")).decode())
    edit(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)


def _permute(header, arrays, prefix: str, order: np.ndarray) -> None:
    keys = sorted(k for k in arrays if k.startswith(prefix + "/"))
    values = [arrays.pop(k) for k in keys]
    paths = header[f"{prefix}_variables"]
    header[f"{prefix}_variables"] = [paths[j] for j in order]
    for i, j in enumerate(order):
        arrays[keys[i]] = values[j]


def test_permuted_variables_load_into_the_right_ones(saved, tmp_path):
    from keras_l2mgan.training import checkpoints

    path, expected = saved
    permuted = tmp_path / "ckpt-00000007.npz"
    rng = np.random.default_rng(0)

    def shuffle(header, arrays):
        _permute(header, arrays, "model", rng.permutation(len(header["model_variables"])))
        # Optimizers keep their order (their names are not stable: they are matched by rank),
        # the variables of each are shuffled.
        owners = [p.split("/")[0] for p in header["optimizer_variables"]]
        groups = [np.flatnonzero(np.array(owners) == o) for o in dict.fromkeys(owners)]
        _permute(header, arrays, "optimizer", np.concatenate([rng.permutation(g)
                                                              for g in groups]))
        # Named as older runs named them (adam, adam_1, ... before WarmupEmaAdam).
        rename = {o: f"adam_{i}" for i, o in enumerate(dict.fromkeys(owners))}
        header["optimizer_variables"] = [rename[o] + "/" + rest for o, _, rest in (
            p.partition("/") for p in header["optimizer_variables"])]

    _rewrite(path, permuted, shuffle)
    model = _fresh_model()
    assert any(not np.array_equal(v, expected[k]) for k, v in _state(model).items())
    saved_paths = checkpoints.read_header(path)["optimizer_variables"]
    assert [v.path for v in model.optimizer.variables] != saved_paths  # other numbering
    assert checkpoints.load_checkpoint(permuted, model)["step"] == 7
    state = _state(model)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_a_renamed_or_missing_path_is_refused_and_nothing_is_assigned(saved, tmp_path):
    from keras_l2mgan.training import checkpoints

    path, _ = saved
    model = _fresh_model()
    before = _state(model)
    renamed = tmp_path / "renamed.npz"

    def rename(header, arrays):
        header["model_variables"][3] = header["model_variables"][3].replace("/", "/old_", 1)

    _rewrite(path, renamed, rename)
    wanted = model.variables[3].path
    with pytest.raises(ValueError, match=(
            f"checkpoint {renamed} was written for other variables: its model variable "
            f"{wanted.replace('/', '/old_', 1)} is not in this model \\(this model has "
            f"{wanted} there\\); 1 missing, 1 unknown")):
        checkpoints.load_checkpoint(renamed, model)
    # A model with a variable the checkpoint lacks: the same refusal, naming it.
    dropped = tmp_path / "dropped.npz"

    def drop(header, arrays):
        last = sorted(k for k in arrays if k.startswith("model/"))[-1]
        del arrays[last]
        header["model_variables"].pop()

    _rewrite(path, dropped, drop)
    with pytest.raises(ValueError, match=f"this model's model variable "
                                         f"{model.variables[-1].path} is not in it"):
        checkpoints.load_checkpoint(dropped, model)
    # A header listing other variables than the file holds is damage, not another model.
    lying = tmp_path / "lying.npz"
    _rewrite(path, lying, lambda header, arrays: header["optimizer_variables"].pop())
    with pytest.raises(CorruptFileError, match="lists other optimizer variables"):
        checkpoints.load_checkpoint(lying, model)
    after = _state(model)
    assert all(np.array_equal(after[k], v) for k, v in before.items())


def test_a_checkpoint_without_paths_loads_by_position(saved, tmp_path):
    from keras_l2mgan.training import checkpoints

    path, expected = saved
    old = tmp_path / "old.npz"

    def forget_paths(header, arrays):
        del header["model_variables"], header["optimizer_variables"]

    _rewrite(path, old, forget_paths)
    model = _fresh_model()
    checkpoints.load_checkpoint(old, model)
    state = _state(model)
    assert all(np.array_equal(state[k], v) for k, v in expected.items())

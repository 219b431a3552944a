"""Every damaged or tampered file is one clear line (exit 2 from the CLI), never a traceback or
an allocation the size of the machine; damaged checkpoints are named and never trusted."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import REPO_ROOT, invoke_l2m, one_error_line

from keras_l2mgan.errors import CorruptFileError

_invoke, _error_line = invoke_l2m, one_error_line


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    return save_bundle(L2MGAN(get_preset("tiny_32")), tmp_path_factory.mktemp("b") / "bundle")


def _damaged_copy(bundle: Path, tmp_path: Path, config=None, weights=None) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(bundle, copy)
    if config is not None:
        (copy / "config.json").write_text(config)
    if weights is not None:
        (copy / "model.weights.h5").write_bytes(weights)
    return copy


def _config_with(bundle: Path, **changes) -> str:
    config = json.loads((bundle / "config.json").read_text())
    config.update(changes)
    return json.dumps(config)


@pytest.mark.parametrize("damage, message", [
    ({"weights": b"garbage" * 100}, "model.weights.h5 cannot be loaded"),
    ({"config": "{nope"}, "is not a valid model config"),
    ({"config": "[1, 2]"}, "must be a JSON object"),
    ({"style_dim": "64"}, "style_dim must be an integer from 1 to 1024, got '64'"),
    ({"max_conv_dim": 10**6, "dim_in": 10**6}, "must be an integer from 1 to 2048"),
    ({"domain_names": "ab"}, "domain_names must be a list of names"),
    ({"w_hpf": True}, "w_hpf must be a number"),
])
def test_damaged_bundle_is_one_line(bundle, tmp_path, damage, message):
    from keras_l2mgan.bundle import load_bundle

    changes = {k: v for k, v in damage.items() if k not in ("weights", "config")}
    config = _config_with(bundle, **changes) if changes else damage.get("config")
    damaged = _damaged_copy(bundle, tmp_path, config=config, weights=damage.get("weights"))
    with pytest.raises(CorruptFileError, match=message):
        load_bundle(damaged)
    result = _invoke("export", damaged, "--name", "x", "--output-dir", tmp_path / "saved")
    assert result.exit_code == 2
    assert message.split(",")[0] in _error_line(result)
    assert not (tmp_path / "saved" / "x" / "1").exists()


@pytest.mark.backend_independent
def test_export_subprocess_reports_a_damaged_bundle_as_one_user_error(bundle, tmp_path):
    """The JAX/torch route: the TensorFlow subprocess's one line becomes a ValueError."""
    from keras_l2mgan.export import _export_in_subprocess

    damaged = _damaged_copy(bundle, tmp_path, weights=b"\x89HDF garbage")
    with pytest.raises(ValueError, match="model.weights.h5 cannot be loaded"):
        _export_in_subprocess(damaged, tmp_path / "saved" / "x" / "1", "x", "float32")


@pytest.mark.backend_independent
@pytest.mark.parametrize("content", ['{"config": {}}', "not json", '{"options": [1]}',
                                     '{"options": {"steps": 1, "bogus_field_only": 1, '
                                     '"seed": "x", "run_dir": 5, "batch_size": {}}}'])
def test_resume_with_a_damaged_options_file_is_one_line(tmp_path, content):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "training_options.json").write_text(content)
    result = _invoke("train", "--resume", run_dir)
    assert result.exit_code == 2
    line = _error_line(result)
    assert "training_options.json" in line


@pytest.mark.backend_independent
def test_tampered_classifier_is_one_line(tmp_path):
    from keras_l2mgan.metrics.classifier import AttributeClassifier

    shipped = REPO_ROOT / "classifiers" / "synthetic_faces_64px"
    cases = {
        "info": ("classifier.json", b'{"attrs": "Smiling", "img_size": 64}', "is damaged"),
        "size": ("classifier.json", b'{"attrs": ["Smiling"], "img_size": 32}',
                 "do not belong together"),
        "model": ("classifier.keras", b"PK\x03\x04 not a keras file", "cannot be loaded"),
    }
    for name, (file, data, message) in cases.items():
        copy = tmp_path / name
        shutil.copytree(shipped, copy)
        (copy / file).write_bytes(data)
        with pytest.raises(CorruptFileError, match=message):
            AttributeClassifier.load(copy)


@pytest.fixture(scope="module")
def compiled_model():
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.utils.set_random_seed(0)
    model = L2MGAN(get_preset("tiny_32"))
    model.compile(seed=1)
    return model


def test_damaged_checkpoints_are_named_skipped_and_never_counted(compiled_model, tmp_path,
                                                                 caplog):
    from keras_l2mgan.training import checkpoints

    directory = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        checkpoints.save_checkpoint(directory, step, compiled_model, keep=3)
    newest = checkpoints.checkpoint_path(directory, 3)
    newest.write_bytes(newest.read_bytes()[: len(newest.read_bytes()) // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        header = checkpoints.restore_latest(directory, compiled_model)
    assert header["step"] == 2
    assert f"skipping damaged checkpoint {newest}" in caplog.text
    # Two more saves with keep=2: the healthy 4 and 5 stay, the damaged 3 does not count
    # toward keep (it would otherwise have pushed out a good checkpoint).
    for step in (4, 5):
        checkpoints.save_checkpoint(directory, step, compiled_model, keep=2)
    steps = [step for step, _ in checkpoints.list_checkpoints(directory)]
    assert steps == [3, 4, 5]


def test_checkpoint_with_a_damaged_array_falls_back_to_the_previous_one(compiled_model,
                                                                        tmp_path, caplog):
    """The header opens but an array's bytes are corrupt (the zip CRC catches it on load)."""
    from keras_l2mgan.training import checkpoints

    directory = tmp_path / "checkpoints"
    for step in (1, 2):
        checkpoints.save_checkpoint(directory, step, compiled_model, keep=3)
    newest = checkpoints.checkpoint_path(directory, 2)
    data = bytearray(newest.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = b"\xff" * 64  # inside some array's stored bytes
    newest.write_bytes(bytes(data))
    assert checkpoints.damage(newest) is None  # the header still reads
    with caplog.at_level(logging.WARNING):
        header = checkpoints.restore_latest(directory, compiled_model)
    assert header["step"] == 1
    assert "skipping damaged checkpoint" in caplog.text


@pytest.mark.backend_independent
def test_dataset_files_over_the_edit_pixel_limit_are_skipped(tmp_path):
    from PIL import Image

    from keras_l2mgan.data.folders import check_image
    from keras_l2mgan.photo import MAX_PIXELS

    big = tmp_path / "big.png"
    Image.new("1", (12000, 9000)).save(big)  # 108 MP: under PIL's 2x bomb limit, over 1x
    assert 12000 * 9000 > MAX_PIXELS
    assert check_image(big) is None
    small = tmp_path / "small.png"
    Image.new("RGB", (8, 8)).save(small)
    assert check_image(small) is False  # readable by TensorFlow itself


@pytest.mark.backend_independent
def test_only_ascii_digit_folders_are_versions(tmp_path):
    from keras_l2mgan.export import version_dirs

    for name in ("1", "\u0662", "3x", "04"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert sorted(version_dirs(tmp_path)) == [1, 4]


@pytest.mark.backend_independent
def test_tools_use_no_fixed_tmp_paths():
    offenders = [f"{path.relative_to(REPO_ROOT)}:{n}"
                 for path in (REPO_ROOT / "tools").rglob("*") if path.is_file()
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if '"/tmp/' in line or " /tmp/" in line or "=/tmp/" in line]
    assert not offenders, offenders



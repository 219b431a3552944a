"""`l2m edit` on photos: sizes kept, attribute mapping, sweeps, SavedModels, bad input."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from keras_l2mgan.editors import target_domain

COMBOS = ("smiling+male", "not_smiling+male", "smiling+not_male", "not_smiling+not_male")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    root = tmp_path_factory.mktemp("edit")
    save_bundle(L2MGAN(get_preset("tiny_32", num_domains=4, domain_names=COMBOS)),
                root / "run" / "model")
    # What `l2m train` records of the data (the rest of its options file does not matter here).
    (root / "run" / "training_options.json").write_text('{"options": {"data": "synthetic"}}')
    return root / "run"


def _photo(path, size=(123, 77), mode="RGB"):
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def _edit(*args):
    # Noise photos hold no face: the centred square, unless a test picks the detector.
    args = [str(arg) for arg in args]
    detector = [] if "--detector" in args else ["--detector", "center"]
    return CliRunner().invoke(main, ["edit", *args, *detector])


def test_odd_sized_photos_keep_their_size(run_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jpeg = _photo(tmp_path / "odd.jpg")
    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((51, 40), 40000, np.uint16)).save(grey16)
    cmyk = _photo(tmp_path / "cmyk.jpg", (64, 90), "CMYK")
    result = _edit(jpeg, grey16, cmyk, "--to", "smiling", "--from", "not_smiling+male",
                   "--model", run_dir, "-o", out)
    assert result.exit_code == 0, result.output
    assert "not_smiling+male -> smiling+male" in result.output  # the other attribute is kept
    assert Image.open(out / "odd_smiling.png").size == (123, 77)
    assert Image.open(out / "grey16_smiling.png").size == (40, 51)
    assert Image.open(out / "cmyk_smiling.png").size == (64, 90)


def test_sweep_writes_a_strip_and_a_gif(run_dir, tmp_path):
    photo = _photo(tmp_path / "face.png", (40, 40))
    result = _edit(photo, "--to", "not_smiling,not_male", "--sweep", "0:1.25:3", "--model",
                   run_dir)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "face_not_smiling+not_male_strip.png").size == (120, 40)
    assert Image.open(tmp_path / "face_not_smiling+not_male.gif").n_frames == 3


def test_attribute_mapping():
    assert target_domain(list(COMBOS), 3, ["smiling"]) == 2  # keeps not_male
    assert target_domain(list(COMBOS), 0, ["not_smiling", "not_male"]) == 3
    assert target_domain(["cat", "dog", "wild"], 0, ["wild"]) == 2
    with pytest.raises(ValueError, match="valid attributes: male, not_male, smiling"):
        target_domain(list(COMBOS), 0, ["young"])


def _bomb(path):
    """A valid PNG header claiming 30000 x 30000 pixels (900 MP) with almost no data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("case, message", [
    ("zero", "zero-byte"), ("text", "not an image"), ("truncated", "truncated"),
    ("bomb", "decompression bomb"), ("attribute", "valid attributes"), ("alpha", "--alpha"),
    ("model", "does not exist"), ("output", "not writable"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_dir, tmp_path, case, message):
    photo = _photo(tmp_path / "good.jpg")
    out = tmp_path / "out"
    out.mkdir()
    args = [photo, "--to", "smiling", "--model", run_dir, "-o", out]
    if case == "zero":
        (tmp_path / "zero.png").write_bytes(b"")
        args[0] = tmp_path / "zero.png"
    elif case == "text":
        (tmp_path / "notes.png").write_text("not a picture")
        args[0] = tmp_path / "notes.png"
    elif case == "truncated":
        (tmp_path / "cut.jpg").write_bytes(photo.read_bytes()[:400])
        args[0] = tmp_path / "cut.jpg"
    elif case == "bomb":
        args[0] = _bomb(tmp_path / "bomb.png")
    elif case == "attribute":
        args[2] = "smilingg"
    elif case == "alpha":
        args += ["--alpha", "strong"]
    elif case == "model":
        args[4] = tmp_path / "missing"
    elif case == "output":
        args[6] = "/proc/edited.png"
    result = _edit(*args)
    assert result.exit_code == 2, result.output
    # Click's usage errors (parse time) add its "Usage:" and "Try ... --help" lines.
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines
    assert list(out.iterdir()) == []


@pytest.mark.backend_independent  # reads one JSON file
@pytest.mark.parametrize("data, expected", [("synthetic", "synthetic"),
                                            ("synthetic_memory", "synthetic"),
                                            ("/home/me/faces", None)])
def test_runs_on_the_rendered_faces_are_marked_synthetic(tmp_path, data, expected):
    from keras_l2mgan.editors import run_training_data

    (tmp_path / "training_options.json").write_text(json.dumps({"options": {"data": data}}))
    assert run_training_data(tmp_path / "model") == expected


@pytest.mark.needs_tensorflow  # exports this process's model, compares it
def test_edit_through_an_exported_saved_model(run_dir, tmp_path):
    from keras_l2mgan.editors import KerasEditor, SavedModelEditor
    from keras_l2mgan.export import export_saved_model

    export_saved_model(run_dir, "faces", output_dir=tmp_path / "saved_models")
    photo = _photo(tmp_path / "p.png", (70, 50))
    result = _edit(photo, "--to", "male", "--from", "smiling+not_male", "--crop-only",
                   "--model", tmp_path / "saved_models" / "faces")  # the latest version
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "p_male.png").size == (32, 32)
    # The run trained on synthetic faces: the export says so, and so does every edit with it.
    extra = tmp_path / "saved_models" / "faces" / "1" / "assets.extra"
    assert json.loads((extra / "training.json").read_text()) == {"data": "synthetic"}
    assert "note: this model was trained on synthetic 32 px" in result.stderr
    assert not (extra / "landmarks_mean.npy").exists()  # no FAN, no landmarks

    crops = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 3]), np.array([1, 2]), np.array([1.0, 0.5])
    local = KerasEditor(run_dir / "model").edit(crops, *labels)
    exported = SavedModelEditor(tmp_path / "saved_models" / "faces" / "1").edit(crops, *labels)
    assert np.abs(local.astype(int) - exported.astype(int)).max() <= 1


@pytest.mark.backend_independent  # picks by the export's files
def test_default_model_is_the_one_whose_domains_fit_the_request(run_dir, tmp_path):
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.editors import default_model
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.model import L2MGAN

    smiling = tmp_path / "smiling_run" / "model"
    save_bundle(L2MGAN(get_preset("tiny_32", domain_names=("not_smiling", "smiling"))), smiling)
    base = tmp_path / "saved_models"
    export_saved_model(smiling, "a_smiling", output_dir=base)
    export_saved_model(run_dir, "b_smiling_male", output_dir=base)
    # Fewest domains first: --to smiling fits both, the one-attribute model wins.
    assert default_model(["smiling"], base).name == "a_smiling"
    assert default_model(["not_smiling"], base).name == "a_smiling"
    assert default_model(["male"], base).name == "b_smiling_male"
    assert default_model(["smiling", "not_male"], base).name == "b_smiling_male"
    with pytest.raises(ValueError, match="none has every attribute of --to eyeglasses"):
        default_model(["eyeglasses"], base)

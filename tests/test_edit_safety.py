"""`l2m edit` loses nothing and leaks nothing: distinct outputs that never replace an input,
nothing written when one photo fails, every good photo of a batch written, bounded frames and
memory, and models opened without running them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.edit import MAX_FRAMES, parse_alphas
from cli.main import main
from tests.conftest import REPO_ROOT

# Naming, staging and model trust do not depend on the Keras backend.
pytestmark = pytest.mark.backend_independent

COMBOS = ("smiling+male", "not_smiling+male", "smiling+not_male", "not_smiling+not_male")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    path = tmp_path_factory.mktemp("safety") / "model"
    save_bundle(L2MGAN(get_preset("tiny_32", num_domains=4, domain_names=COMBOS)), path)
    return path


def _photo(path, size=(48, 40), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _edit(*args):
    # Noise photos hold no face: the centred square, unless a test picks the detector.
    args = [str(arg) for arg in args]
    detector = [] if "--detector" in args else ["--detector", "center"]
    return CliRunner().invoke(main, ["edit", *args, *detector])


def _one_error_line(result, message):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_same_names_from_two_folders_are_mirrored_under_o(bundle, tmp_path):
    a, b = _photo(tmp_path / "in" / "a" / "face.png"), _photo(tmp_path / "in" / "b" / "face.png",
                                                                seed=1)
    solo = _photo(tmp_path / "in" / "b" / "solo.png")
    out = tmp_path / "out"
    out.mkdir()
    result = _edit(a, b, solo, "--to", "smiling", "--model", bundle, "-o", out)
    assert result.exit_code == 0, result.output
    assert _files(out) == ["a", "a/face_smiling.png", "b", "b/face_smiling.png",
                           "b/solo_smiling.png"]
    # Each output is the edit of its own photo, and each line says where it went.
    assert not np.array_equal(np.asarray(Image.open(out / "a" / "face_smiling.png")),
                              np.asarray(Image.open(out / "b" / "face_smiling.png")))
    assert f"{a}: " in result.output and str(out / "a" / "face_smiling.png") in result.output
    assert str(out / "b" / "face_smiling.png") in result.output


def test_same_stem_in_one_folder_keeps_the_extension(bundle, tmp_path):
    png, jpg = _photo(tmp_path / "face.png"), _photo(tmp_path / "face.jpg", seed=1)
    other = _photo(tmp_path / "other.png")
    result = _edit(png, jpg, other, "--to", "smiling", "--model", bundle)
    assert result.exit_code == 0, result.output
    assert _files(tmp_path) == ["face-jpg_smiling.png", "face-png_smiling.png", "face.jpg",
                                "face.png", "other.png", "other_smiling.png"]
    # A file named twice (directly and by a pattern) is edited once.
    result = _edit(png, str(tmp_path / "face.p*"), "--to", "male", "--model", bundle)
    assert result.exit_code == 0, result.output
    assert result.output.count(f"{png}: ") == 1 and (tmp_path / "face_male.png").is_file()


@pytest.mark.parametrize("case", ["o_is_the_input", "o_is_another_input", "o_via_symlink",
                                  "output_is_an_input", "written_twice"])
def test_an_output_never_replaces_an_input_nor_is_written_twice(bundle, tmp_path, case):
    face = _photo(tmp_path / "face.png")
    before = face.read_bytes()
    args = [face, "--to", "smiling", "--model", bundle]
    message = "would replace the input"
    if case == "o_is_the_input":
        args += ["-o", face]
    elif case == "o_is_another_input":  # one input; -o names the photo via another path
        args += ["-o", tmp_path / "." / ".." / tmp_path.name / "face.png"]
    elif case == "o_via_symlink":
        (tmp_path / "link").symlink_to(tmp_path)
        args += ["-o", tmp_path / "link" / "face.png"]
    elif case == "output_is_an_input":  # face.png's output is the second input
        args.insert(1, _photo(tmp_path / "face_smiling.png"))
    else:  # face.png and face.jpg -> face-png_...; face-png.jpg -> face-png_... as well
        args[1:1] = [_photo(tmp_path / "face.jpg"), _photo(tmp_path / "face-png.jpg")]
        message = "would both be written to"
    listing = _files(tmp_path)
    _one_error_line(_edit(*args), message)
    assert face.read_bytes() == before and _files(tmp_path) == listing


def test_one_photo_that_fails_late_leaves_nothing_written(bundle, tmp_path):
    """The header check passes, decoding fails: one line, exit 2, no output, no temp file, and
    the folder -o out/ would have created is not left behind."""
    data = _photo(tmp_path / "b" / "face.png", (64, 48), seed=1).read_bytes()
    (tmp_path / "b" / "face.png").write_bytes(data[:len(data) // 2])  # truncated pixel data
    result = _edit(tmp_path / "b" / "face.png", "--to", "smiling", "--model", bundle,
                   "-o", f"{tmp_path / 'out'}/")
    assert result.exit_code == 2, result.output
    assert [line for line in result.stdout.splitlines() if line.strip()] == []
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "truncated" in errors[0], result.stderr
    assert _files(tmp_path) == ["b", "b/face.png"]


def test_a_batch_goes_on_past_bad_photos(bundle, tmp_path):
    """Unreadable at the header (text, missing), at decoding (truncated, second batch): each is
    named in one line, every good photo is written, a summary ends the run, exit 1; -o DIR/ is
    created."""
    good = [_photo(tmp_path / "in" / f"good{i}.png", seed=i) for i in range(3)]
    (tmp_path / "in" / "notes.png").write_text("not a picture")
    data = _photo(tmp_path / "in" / "cut.png", (64, 48), seed=5).read_bytes()
    (tmp_path / "in" / "cut.png").write_bytes(data[:len(data) // 2])
    inputs = [good[0], tmp_path / "in" / "notes.png", good[1], tmp_path / "in" / "missing.png",
              tmp_path / "in" / "cut.png", good[2]]
    out = tmp_path / "new" / "edited"
    result = _edit(*inputs, "--to", "smiling", "--model", bundle, "-o", f"{out}/",
                   "--batch-size", "2")
    assert result.exit_code == 1, result.output
    assert _files(out) == [f"good{i}_smiling.png" for i in range(3)]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 3, result.stderr
    for error, name in zip(errors, ["notes.png", "missing.png", "cut.png"], strict=True):
        assert name in error
    assert result.stderr.strip().splitlines()[-1] == "3 edited, 3 failed"
    # Results on stdout: one line per written photo, nothing else.
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(p) for p in good]
    # Every input fine: exit 0, a folder named without a slash is created for several inputs.
    result = _edit(*good, "--to", "male", "--model", bundle, "-o", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines()[-1] == "3 edited, 0 failed"
    assert len(_files(tmp_path / "plain")) == 3


@pytest.mark.parametrize("output, message", [
    ("missing/face.png", "output directory"),  # a file under a missing folder
    ("newdir", "end it with a slash"),  # one input: a folder must be asked for
])
def test_o_creates_only_folders_asked_for(bundle, tmp_path, output, message):
    photo = _photo(tmp_path / "p.png")
    _one_error_line(_edit(photo, "--to", "smiling", "--model", bundle, "-o",
                          tmp_path / output), message)
    assert _files(tmp_path) == ["p.png"]


def test_frame_limits(tmp_path):
    assert len(parse_alphas("1", f"0:1:{MAX_FRAMES}")) == MAX_FRAMES
    with pytest.raises(ValueError, match="over the limit of 64 frames"):
        parse_alphas("1", f"0:1:{MAX_FRAMES + 1}")
    with pytest.raises(ValueError, match="over the limit of 64"):
        parse_alphas(",".join(["0.5"] * (MAX_FRAMES + 1)), None)
    with pytest.raises(ValueError, match="finite"):
        parse_alphas("1", "0:inf:3")
    photo = _photo(tmp_path / "p.png")
    _one_error_line(_edit(photo, "--to", "smiling", "--sweep", "0:1:100000000"), "64 frames")
    # A strip PIL could not open again: refused from the header, before any decoding.
    big = tmp_path / "big.png"
    Image.new("1", (10000, 8000), 1).save(big)
    _one_error_line(_edit(big, "--to", "smiling", "--sweep", "0:1:3"), "-pixel strip")
    assert _files(tmp_path) == ["big.png", "p.png"]


# Model trust.

@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    from keras_l2mgan.export import export_saved_model

    base = tmp_path_factory.mktemp("exported")
    export_saved_model(bundle, "faces", output_dir=base)
    return base / "faces" / "1"


def test_a_saved_model_without_its_config_is_refused(exported, tmp_path):
    old = tmp_path / "faces" / "1"
    shutil.copytree(exported, old)
    (old / "assets.extra" / "config.json").unlink()
    photo = _photo(tmp_path / "p.png")
    result = _edit(photo, "--to", "smiling", "--model", old.parent)
    _one_error_line(result, "exported by an older version of l2m; re-export it")
    assert not (tmp_path / "p_smiling.png").exists()
    # The untouched export opens and edits.
    result = _edit(photo, "--to", "smiling", "--model", exported.parent)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p_smiling.png").is_file()


def _crafted(path, marker, with_resource=False):
    """A SavedModel whose `metadata` signature writes `marker` (and optionally a resource
    whose initializer, run by tf.saved_model.load itself, writes it too)."""
    import tensorflow as tf

    from keras_l2mgan.config import get_preset

    class Planted(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self):
            return tf.raw_ops.VarHandleOp(dtype=tf.int32, shape=[])

        def _initialize(self):
            tf.io.write_file(str(marker), "written on load")
            return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1)

    module = tf.Module()
    if with_resource:
        module.planted = Planted()

    @tf.function(input_signature=[])
    def metadata():
        tf.io.write_file(str(marker), "written by metadata")
        return {"img_size": tf.constant(32), "domain_names": tf.constant(["a", "b"])}

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8)])
    def guess_domain(images):
        return {"source_domain": tf.zeros([tf.shape(images)[0]], tf.int32)}

    signatures = {"metadata": metadata, "guess_domain": guess_domain,
                  "serving_default": guess_domain}
    tf.saved_model.save(module, str(path), signatures=signatures)
    (path / "assets.extra").mkdir()
    get_preset("tiny_32").save(path / "assets.extra" / "config.json")
    return path


def test_opening_a_saved_model_runs_none_of_its_code(tmp_path):
    from keras_l2mgan.editors import SavedModelEditor

    marker = tmp_path / "marker.txt"
    editor = SavedModelEditor(_crafted(tmp_path / "meta" / "1", marker))
    assert editor.img_size == 32 and editor.domain_names == ["domain_0", "domain_1"]  # config
    assert not marker.exists()
    editor.loaded.signatures["metadata"]()  # control: the signature does write when run
    assert marker.read_text() == "written by metadata"
    marker.unlink()

    # A resource's initializer would run inside tf.saved_model.load: refused before loading.
    planted = _crafted(tmp_path / "planted" / "1", marker, with_resource=True)
    marker.unlink(missing_ok=True)  # saving may have run the initializer
    photo = _photo(tmp_path / "p.png")
    _one_error_line(_edit(photo, "--to", "domain_1", "--model", planted),
                    "loading it would run its own code")
    assert not marker.exists() and not (tmp_path / "p_domain_1.png").exists()


def test_no_model_or_classifier_is_taken_from_the_current_folder(tmp_path, monkeypatch):
    from cli.eval import default_classifier
    from keras_l2mgan.editors import default_model

    planted = tmp_path / "saved_models" / "planted" / "1"
    (planted / "assets.extra").mkdir(parents=True)
    (planted / "saved_model.pb").write_bytes(b"not a model")
    (planted / "assets.extra" / "config.json").write_text(json.dumps({"img_size": 32}))
    (tmp_path / "classifiers" / "synthetic_faces_64px").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    shipped = REPO_ROOT / "saved_models"
    assert default_model(["smiling"]) == shipped / "smiling"
    assert default_classifier(64) == REPO_ROOT / "classifiers" / "synthetic_faces_64px"
    photo = _photo(tmp_path / "p.png")
    result = _edit(photo, "--to", "male", "--from", "smiling+not_male", "--crop-only")
    assert result.exit_code == 0, result.output
    assert str(shipped / "smiling_male" / "1") in result.output
    assert Image.open(tmp_path / "p_male.png").size == (64, 64)


# Memory: bounded by the batch, not by the number or size of photos. Peak RSS of a fresh
# `l2m edit` process each (os.wait4 reports that child alone).

def _peak_rss_mb(inputs, bundle, out, *extra):
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from cli.main import main; sys.exit(main())",
         "edit", *map(str, inputs), "--to", "smiling", "--from", "not_smiling+male",
         "--model", str(bundle), "-o", str(out), "--detector", "center", *extra],
        env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, output[-2000:]
    assert len(list(out.iterdir())) == len(inputs)
    return usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def four_mp_photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    y, x = np.mgrid[0:1700, 0:2400]
    pixels = np.stack([x * 255 / 2400, y * 255 / 1700, (x + y) * 255 / 4100], -1)
    pixels += np.random.default_rng(0).normal(0, 6, pixels.shape)
    first = folder / "photo_00.jpg"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(first, quality=90)
    paths = [first]
    for i in range(1, 20):
        paths.append(folder / f"photo_{i:02d}.jpg")
        shutil.copyfile(first, paths[-1])
    return paths


def test_peak_memory_does_not_grow_with_the_number_of_photos(bundle, four_mp_photos, tmp_path):
    two = _peak_rss_mb(four_mp_photos[:2], bundle, tmp_path / "out", "--batch-size", "2")
    twenty = _peak_rss_mb(four_mp_photos, bundle, tmp_path / "out", "--batch-size", "2")
    # Holding every decoded photo would add 18 x 12 MB; streaming adds only noise.
    assert twenty - two < 80, (two, twenty)


def test_a_large_1bit_png_is_edited_without_full_size_floats(bundle, four_mp_photos, tmp_path):
    """A 30 MP 1-bit PNG (a few KB): full-size float64 blending took ~2.5 GB over the floor;
    uint8 copies of the photo and the box plus float32 bands take a few hundred MB."""
    big = tmp_path / "big.png"
    Image.new("1", (6000, 5000), 1).save(big)
    floor = _peak_rss_mb(four_mp_photos[:1], bundle, tmp_path / "out")
    peak = _peak_rss_mb([big], bundle, tmp_path / "out")
    assert peak - floor < 800, (floor, peak)
    assert Image.open(tmp_path / "out" / "big_smiling.png").size == (6000, 5000)

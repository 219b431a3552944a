"""`l2m edit` on real photos: faces found by default (all of them, or --face N), no face is one
line, pixels away from the faces never change, the synthetic-model note, and the aligned path
(FAN landmarks, StarGAN v2's alignment, feathered paste back) of a model with a FAN."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from PIL import Image

from cli.main import main

# The shipped models are SavedModels (TensorFlow whatever the backend); the FAN bundle's path
# costs a minute of JAX compiles and FAN itself is compared across backends in test_fan.
pytestmark = pytest.mark.backend_independent

# The real photograph: scikit-image's bundled astronaut.png (Eileen Collins, NASA, public
# domain), read from the installed package: nothing is downloaded.
ASTRONAUT_FACE = (177, 66, 95, 95)  # x, y, w, h of its face as the Haar cascade finds it


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(importlib.resources.files("skimage.data") / "astronaut.png").convert("RGB")


def _canvas(size, *placed) -> Image.Image:
    """A flat backdrop with photos pasted at (left, top) positions."""
    canvas = Image.new("RGB", size, (90, 120, 150))
    for photo, position in placed:
        canvas.paste(photo, position)
    return canvas


def _edit(*args):
    return CliRunner().invoke(main, ["edit", *map(str, args)])


def _changed(before: Path, after: Path) -> np.ndarray:
    a, b = np.asarray(Image.open(before)), np.asarray(Image.open(after))
    assert a.shape == b.shape  # the photo keeps its size
    return (a != b).any(-1)


def _inside(mask: np.ndarray, box, margin: int = 0) -> np.ndarray:
    left, top, right, bottom = box
    region = np.zeros_like(mask)
    region[max(0, top - margin):bottom + margin, max(0, left - margin):right + margin] = True
    return region


def _one_error_line(result, message):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines()
             if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], lines


def test_default_options_find_an_off_centre_face_and_change_nothing_else(astronaut, tmp_path):
    from keras_l2mgan.photo import face_boxes

    photo = tmp_path / "street.png"
    _canvas((1100, 800), (astronaut, (560, 240))).save(photo)
    (box,) = face_boxes(Image.open(photo))
    x, y, w, h = ASTRONAUT_FACE
    centre = (560 + x + w / 2, 240 + y + h / 2)
    assert abs((box[0] + box[2]) / 2 - centre[0]) < 20 and abs((box[1] + box[3]) / 2
                                                                - centre[1]) < 30
    result = _edit(photo, "--to", "smiling")  # the shipped demo model, default detector
    assert result.exit_code == 0, result.output
    assert "model: SavedModel" in result.stderr and "saved_models/smiling/1" in result.stderr
    assert "face path: detected box (no FAN in this model for alignment)" in result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "synthetic 64 px" in notes[0] and "l2m import" in notes[0]
    changed = _changed(photo, tmp_path / "street_smiling.png")
    assert not changed[~_inside(changed, box)].any()  # bit-identical away from the face
    assert changed[_inside(changed, box)].mean() > 0.5  # the face was edited


def test_every_face_by_default_or_face_n_and_no_face_is_a_failed_photo(astronaut, tmp_path):
    from keras_l2mgan.photo import face_boxes

    small = astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((400, 400))
    two = tmp_path / "two.png"
    _canvas((1300, 750), (astronaut, (40, 120)), (small, (820, 300))).save(two)
    left, right = face_boxes(Image.open(two))  # left to right
    assert left[2] < right[0] + (right[2] - right[0]) // 2
    empty = tmp_path / "wall.png"
    Image.new("RGB", (300, 200), (200, 190, 180)).save(empty)

    out = tmp_path / "all"
    result = _edit(two, empty, "--to", "smiling", "--from", "not_smiling", "-o", out)
    assert result.exit_code == 1, result.output  # one photo of two failed
    assert f"Error: no face found in {empty}" in result.stderr
    assert "1 edited, 1 failed" in result.stderr
    assert "two.png: 2 faces (not_smiling -> smiling, not_smiling -> smiling)" in result.stdout
    changed = _changed(two, out / "two_smiling.png")
    assert not changed[~(_inside(changed, left) | _inside(changed, right))].any()
    assert changed[_inside(changed, left)].mean() > 0.5
    assert changed[_inside(changed, right)].mean() > 0.5
    assert sorted(p.name for p in out.iterdir()) == ["two_smiling.png"]

    result = _edit(two, "--to", "smiling", "--from", "not_smiling", "--face", "1", "-o",
                   tmp_path / "right.png")
    assert result.exit_code == 0, result.output
    changed = _changed(two, tmp_path / "right.png")
    assert not changed[~_inside(changed, right)].any() and changed.any()

    result = _edit(two, "--to", "smiling", "--from", "not_smiling", "--crop-only", "-o",
                   tmp_path / "crops.png")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "crops.png").size == (128, 64)  # both faces, left to right

    _one_error_line(_edit(two, "--to", "smiling", "--face", "2"),
                    "has 2 face(s), so no --face 2")
    _one_error_line(_edit(empty, "--to", "smiling"), "no face found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all", "crops.png", "right.png",
                                                          "two.png", "wall.png"]


def _random_fan_model(seed: int = 0):
    """A tiny L2M-GAN (32 px, w_hpf 1) with a FAN of random weights: its landmarks are
    arbitrary but deterministic, which is all the aligned path needs to be exercised."""
    from keras_l2mgan.config import L2MConfig
    from keras_l2mgan.model import L2MGAN

    model = L2MGAN(L2MConfig(img_size=32, w_hpf=1.0, dim_in=8, max_conv_dim=16, fan=True,
                             domain_names=("not_smiling", "smiling")))
    rng = np.random.default_rng(seed)
    for weight in model.fan.weights:
        if weight.path.endswith("kernel"):
            scale = np.sqrt(2 / np.prod(weight.shape[:-1]))
            weight.assign(rng.normal(0, scale, weight.shape).astype(np.float32))
        elif weight.path.endswith(("bias", "beta")):
            weight.assign(rng.normal(0, 0.1, weight.shape).astype(np.float32))
    return model


@pytest.mark.slow  # ~60 s: a 24 MB FAN saved, loaded, exported and served
def test_a_model_with_fan_and_landmarks_mean_edits_aligned_faces(astronaut, tmp_path):
    from keras_l2mgan.align import alignment_matrix, face_window, transform_points
    from keras_l2mgan.bundle import LANDMARKS_FILE, save_bundle
    from keras_l2mgan.editors import KerasEditor, SavedModelEditor
    from keras_l2mgan.export import export_saved_model
    from keras_l2mgan.photo import face_boxes

    photo = tmp_path / "street.png"
    canvas = _canvas((900, 700), (astronaut.rotate(12, resample=Image.Resampling.BICUBIC),
                                  (330, 150)))
    canvas.save(photo)
    model = _random_fan_model()
    bundle = save_bundle(model, tmp_path / "run" / "model")
    # The mean landmarks: this face's own, turned 10 degrees and shrunk about the frame's
    # centre, so the aligned face is a known similarity of the photo's.
    (box,) = face_boxes(canvas)
    window = face_window(canvas, box, 32)
    points = KerasEditor(model).landmarks(window.fan_input[None])[0]
    turn = np.deg2rad(10)
    similarity = np.array([[np.cos(turn), -np.sin(turn), 0], [np.sin(turn), np.cos(turn), 0],
                           [0, 0, 1]]) * [[0.8], [0.8], [1]]
    similarity[:2, 2] = [128, 128] - similarity[:2, :2] @ [128, 128]
    mean = transform_points(similarity, points).astype(np.float32)
    np.save(bundle / LANDMARKS_FILE, mean)

    result = _edit(photo, "--to", "smiling", "--from", "not_smiling", "--model", bundle)
    assert result.exit_code == 0, result.output
    assert "face path: aligned with FAN landmarks to the CelebA-HQ framing" in result.stderr
    assert "note:" not in result.stderr  # not trained on synthetic faces, as far as we know
    changed = _changed(photo, tmp_path / "street_smiling.png")
    # Where the paste back may write: the circle of the aligned square, mapped into the photo.
    matrix = alignment_matrix(transform_points(window.from_fan, points), mean * 32 / 256)
    y, x = np.mgrid[0:canvas.height, 0:canvas.width]
    u, v = (transform_points(matrix, np.stack([x, y], -1)) - 15.5).transpose(2, 0, 1)
    radius = np.hypot(u, v) / 16
    assert not changed[radius >= 1].any()
    assert changed[radius < 0.8].mean() > 0.5

    # Exported: a `landmarks` signature and the mean in assets.extra give the same path.
    version = export_saved_model(bundle, "fan", output_dir=tmp_path / "saved_models")
    exported = SavedModelEditor(version)
    assert exported.aligns_faces
    np.testing.assert_array_equal(exported.landmarks_mean, mean)
    same = exported.landmarks(window.fan_input[None])[0] == points
    assert same.all(-1).mean() > 0.9  # random weights: a near-tie may flip an arg-max
    result = _edit(photo, "--to", "smiling", "--from", "not_smiling", "--model", version,
                   "-o", tmp_path / "exported.png")
    assert result.exit_code == 0, result.output
    assert "face path: aligned with FAN landmarks" in result.stderr
    a = np.asarray(Image.open(tmp_path / "street_smiling.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "exported.png"), np.int16)
    assert np.abs(a - b).max() <= 2

    # Served: `l2m serve` on the export, `l2m edit --server` reads the landmarks mean from the
    # metadata signature, aligns through the `landmarks` signature and edits over gRPC: the
    # same photo as the in-process SavedModel, within one grey level.
    with _serving(tmp_path / "saved_models") as address:
        result = _edit(photo, "--to", "smiling", "--from", "not_smiling", "--server", address,
                       "--model", "fan", "-o", tmp_path / "served.png")
    assert result.exit_code == 0, result.output
    assert "face path: aligned with FAN landmarks" in result.stderr
    served = np.asarray(Image.open(tmp_path / "served.png"), np.int16)
    assert served.shape == b.shape
    assert np.abs(served - b).max() <= 1


@contextlib.contextmanager
def _serving(base_dir: Path):
    """`l2m serve BASE_DIR` in a subprocess on a free port; yields its address."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", str(base_dir),
                                "--port", "0"], cwd=REPO_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("serving on "):
                break
        else:
            pytest.fail("server did not start:\n" + "".join(seen[-20:]))
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep it drained
        yield line.split("serving on ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_with_fan_but_no_landmarks_mean_says_so_and_edits_the_box(tmp_path):
    from keras_l2mgan.editors import KerasEditor

    editor = KerasEditor(_random_fan_model())
    assert editor.has_fan and not editor.aligns_faces
    from cli.edit import _face_path_line

    assert _face_path_line(editor, "haar") == (
        "face path: detected box (no landmarks mean in this model for alignment), blended "
        "back with feathered edges")

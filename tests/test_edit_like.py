"""Reference-guided edits: s~ = s_un(x) + s_re(x) + alpha (s_re(ref) - s_re(x)), in the
library (every backend), the SavedModel's edit_like signature and `l2m edit --like`."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import invoke_l2m, one_error_line

from keras_l2mgan.config import get_preset


def _model():
    import keras

    from keras_l2mgan.model import L2MGAN

    keras.utils.set_random_seed(3)
    return L2MGAN(get_preset("tiny_32", domain_names=("not_smiling", "smiling")))


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, 3)).astype(np.float32)


def test_like_itself_or_alpha_zero_reconstructs():
    from keras import ops

    model = _model()
    x, ref = _images(3), _images(3, seed=1)
    source = np.array([0, 1, 0], np.int32)
    reconstruction = ops.convert_to_numpy(model.edit(x, source, source, 0.0))
    like_itself = ops.convert_to_numpy(model.edit_like(x, x, 1.0, source, source))
    alpha_zero = ops.convert_to_numpy(model.edit_like(x, ref, 0.0, source, 1 - source))
    np.testing.assert_allclose(like_itself, reconstruction, atol=1e-5)
    np.testing.assert_allclose(alpha_zero, reconstruction, atol=1e-5)
    moved = ops.convert_to_numpy(model.edit_like(x, ref, 1.0, source, 1 - source))
    assert np.abs(moved - reconstruction).mean() > 1e-4


def test_like_is_the_formula_and_guesses_domains():
    from keras import ops

    from keras_l2mgan.model import like_style

    model = _model()
    x, ref = _images(2), _images(2, seed=5)
    guessed_x = ops.convert_to_numpy(model.guess_domain(x))
    guessed_ref = ops.convert_to_numpy(model.guess_domain(ref))
    encoder = model.style_encoder
    s_un, s_re = encoder.decompose(encoder.encode(x, guessed_x))
    _, s_re_ref = encoder.decompose(encoder.encode(ref, guessed_ref))
    expected = ops.convert_to_numpy(s_un + s_re + 0.5 * (s_re_ref - s_re))
    style = ops.convert_to_numpy(like_style(encoder, x, guessed_x, ref, guessed_ref, 0.5))
    np.testing.assert_allclose(style, expected, atol=1e-5)
    guessed = ops.convert_to_numpy(model.edit_like(x, ref, 0.5))
    given = ops.convert_to_numpy(model.edit_like(x, ref, 0.5, guessed_x, guessed_ref))
    np.testing.assert_allclose(guessed, given, atol=1e-5)
    # One reference for the whole batch.
    one = ops.convert_to_numpy(model.edit_like(x, ref[:1], 0.5, guessed_x, guessed_ref[:1]))
    both = ops.convert_to_numpy(model.edit_like(x, np.repeat(ref[:1], 2, 0), 0.5, guessed_x,
                                                np.repeat(guessed_ref[:1], 2)))
    np.testing.assert_allclose(one, both, atol=1e-5)


def test_like_refuses_bad_domains():
    model = _model()
    with pytest.raises(ValueError, match="reference_domain"):
        model.edit_like(_images(1), _images(1), 1.0, [0], [2])


@pytest.mark.needs_tensorflow  # exports a SavedModel of this process's model
def test_saved_model_edit_like_matches_the_library(tmp_path):
    import tensorflow as tf

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.editors import KerasEditor, SavedModelEditor
    from keras_l2mgan.export import export_saved_model

    model = _model()
    save_bundle(model, tmp_path / "run" / "model")
    target = export_saved_model(tmp_path / "run", "faces", output_dir=tmp_path / "saved")
    saved, keras_editor = SavedModelEditor(target), KerasEditor(model)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ref = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    guess = np.full(3, -1, np.int32)
    alpha = np.array([0.0, 0.5, 1.0], np.float32)
    ours = saved.edit_like(x, ref, guess, guess, alpha)
    theirs = keras_editor.edit_like(x, ref, guess, guess, alpha)
    assert ours.dtype == np.uint8 and ours.shape == x.shape
    assert np.abs(ours.astype(int) - theirs).max() <= 1
    outputs = saved.loaded.signatures["edit_like"](
        images=tf.constant(x), reference=tf.constant(ref), source_domain=tf.constant(guess),
        reference_domain=tf.constant(np.array([1, 0, -1], np.int32)),
        alpha=tf.constant(alpha))
    np.testing.assert_array_equal(outputs["source_domain"].numpy(), saved.guess_domain(x))
    assert outputs["reference_domain"].numpy()[:2].tolist() == [1, 0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="source_domain must be < 2"):
        saved.edit_like(x, ref, np.full(3, 2, np.int32), guess, alpha)


@pytest.mark.backend_independent  # reads SavedModels with TensorFlow as a library
def test_shipped_models_carry_edit_like():
    from keras_l2mgan.editors import SavedModelEditor
    from keras_l2mgan.export import SIGNATURES
    from keras_l2mgan.shipped import shipped_dir

    for name in ("smiling", "smiling_male"):
        editor = SavedModelEditor(shipped_dir("models") / name / "1")
        assert set(SIGNATURES) <= set(editor.loaded.signatures), name


@pytest.mark.backend_independent  # the shipped SavedModels: TensorFlow whatever the backend
def test_cli_edit_like(tmp_path):
    from PIL import Image

    from keras_l2mgan.metrics import synthetic

    faces = synthetic.render(synthetic.split_params("test", 2), 64)
    Image.fromarray(faces[0]).save(tmp_path / "face.png")
    Image.fromarray(faces[1]).save(tmp_path / "ref.png")
    result = invoke_l2m("edit", tmp_path / "face.png", "--like", tmp_path / "ref.png",
                        "--alpha", "0,1", "--detector", "center", "--model",
                        "saved_models/smiling")
    assert result.exit_code == 0, result.output + result.stderr
    strip = Image.open(tmp_path / "face_like-ref_strip.png")
    assert strip.size == (128, 64)
    assert "like ref.png" in result.stdout
    # --to and --like are two different edits.
    both = invoke_l2m("edit", tmp_path / "face.png", "--like", tmp_path / "ref.png", "--to",
                      "smiling", "--detector", "center")
    assert both.exit_code == 2
    assert "--like" in one_error_line(both)
    missing = invoke_l2m("edit", tmp_path / "face.png", "--like", tmp_path / "nope.png",
                         "--detector", "center")
    assert missing.exit_code == 2
    assert "nope.png" in one_error_line(missing)


@pytest.mark.backend_independent  # the shipped SavedModels
def test_cli_edit_like_default_model_and_reference_domain(tmp_path):
    from PIL import Image

    from keras_l2mgan.metrics import synthetic

    faces = synthetic.render(synthetic.split_params("test", 2), 64)
    Image.fromarray(faces[0]).save(tmp_path / "face.png")
    Image.fromarray(faces[1]).save(tmp_path / "ref.png")
    result = invoke_l2m("edit", tmp_path / "face.png", "--like", tmp_path / "ref.png",
                        "--like-from", "smiling+male", "--detector", "center", "-o",
                        tmp_path / "out.png")
    assert result.exit_code == 0, result.output + result.stderr
    assert "smiling_male" in result.stderr and "(smiling+male)" in result.stdout
    assert Image.open(tmp_path / "out.png").size == (64, 64)
    bad = invoke_l2m("edit", tmp_path / "face.png", "--like", tmp_path / "ref.png",
                     "--like-from", "cat", "--detector", "center", "-o", tmp_path / "bad.png")
    assert bad.exit_code == 2 and "--like-from" in one_error_line(bad)

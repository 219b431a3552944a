"""The change-mask blend: edits keep the input wherever they do not change the reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from keras_l2mgan.blend import change_mask


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_mask_is_off_where_nothing_changes_and_on_where_the_edit_does():
    reconstruction = np.zeros((1, 64, 64, 3), "float32")
    edited = reconstruction.copy()
    edited[0, 20:30, 20:30] = 0.5  # 64 grey levels: far above the high threshold
    edited[0, 50, 50] = 2 / 255  # one grey level: noise, below the low threshold
    mask = _np(change_mask(edited, reconstruction))[0, ..., 0]
    assert mask.shape == (64, 64)
    assert mask[20:30, 20:30].min() == pytest.approx(1.0)
    assert mask[:10].max() == 0.0 and mask[45:, 45:].max() == 0.0
    # Dilated and blurred: the mask reaches a pixel beyond the changed square, softly.
    assert 0.0 < mask[18, 25] <= 1.0 and mask[14, 25] == 0.0


def test_mask_scales_with_the_image_size():
    def width(size):
        rec = np.zeros((1, size, size, 3), "float32")
        edited = rec.copy()
        edited[0, size // 2, size // 2] = 1.0
        return int((_np(change_mask(edited, rec))[0, size // 2, :, 0] > 0).sum())

    assert width(128) > width(64)


@pytest.mark.parametrize("grey_levels", [(6.0, 16.0), (2.0, 40.0)])
def test_blended_model_keeps_the_input_at_alpha_zero_and_outside_the_change(grey_levels):
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    raw = L2MGAN(get_preset("tiny_32"))
    blended = L2MGAN(get_preset("tiny_32", blend_changes=True, blend_grey_levels=grey_levels))
    blended.set_weights(raw.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    source, target = np.array([0, 1], "int32"), np.array([1, 0], "int32")
    np.testing.assert_allclose(_np(blended.edit(x, source, target, 0.0)), x, atol=1e-6)
    np.testing.assert_allclose(_np(blended.edit_like(x, x[::-1], 0.0, source, target)), x,
                               atol=1e-6)
    edited, raw_edit = _np(blended.edit(x, source, target, 1.0)), _np(raw.edit(x, source, target))
    reconstruction = _np(raw.edit(x, source, source, 0.0))
    mask = _np(change_mask(raw_edit, reconstruction, *grey_levels))  # the model's own levels
    np.testing.assert_allclose(edited, x + mask * (raw_edit - x), atol=1e-5)
    assert mask.max() > 0.0  # a random model's edit changes the image


def test_the_setting_travels_with_the_config():
    from keras_l2mgan.config import L2MConfig, get_preset

    config = get_preset("tiny_32", blend_changes=True)
    assert L2MConfig.from_json(config.to_json()).blend_changes is True
    assert L2MConfig.from_dict({k: v for k, v in config.to_dict().items()
                                if k != "blend_changes"}).blend_changes is False
    with pytest.raises(ValueError, match="blend_changes must be true or false"):
        config.replace(blend_changes="yes")


def test_the_thresholds_travel_with_the_config_and_default_to_6_16():
    from keras_l2mgan.config import L2MConfig, get_preset

    config = get_preset("tiny_32", blend_changes=True, blend_grey_levels=[8, 20])
    assert config.blend_grey_levels == (8.0, 20.0)
    assert config.to_dict()["blend_grey_levels"] == [8.0, 20.0]  # JSON: a list
    assert L2MConfig.from_json(config.to_json()) == config
    # A config.json from before the field (every shipped bundle until 2026-12-03) keeps 6-16.
    older = {k: v for k, v in config.to_dict().items() if k != "blend_grey_levels"}
    assert L2MConfig.from_dict(older).blend_grey_levels == (6.0, 16.0)
    for bad in ([20, 8], [8], [8, 20, 30], [-1, 5], [5, 300], ["8", "20"], [True, 20], "8,20"):
        with pytest.raises(ValueError, match="blend_grey_levels must be two numbers"):
            config.replace(blend_grey_levels=bad)


def test_train_options_check_the_thresholds():
    from keras_l2mgan.training.run import TrainOptions, validate_options

    validate_options(TrainOptions(blend_grey_levels=(8.0, 20.0)))
    with pytest.raises(ValueError, match="--blend-grey-levels must be two grey levels LOW HIGH"
                                         ".*got 20 8"):
        validate_options(TrainOptions(blend_grey_levels=(20.0, 8.0)))

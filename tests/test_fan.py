"""FAN and the face masks: parity with a PyTorch reference (tests/torch_fan_reference.py), the
official state-dict names, the loader's errors, and the model's use of the masks."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_fan_reference as ref
from keras import ops

from keras_l2mgan.bundle import load_bundle, save_bundle
from keras_l2mgan.config import L2MConfig
from keras_l2mgan.masks import heatmaps_to_masks
from keras_l2mgan.model import L2MGAN, edit
from keras_l2mgan.networks.fan import FAN, fan_input, load_fan_state_dict

HEATMAP_TOL = 1e-3
MASK_TOL = 1e-3


def _np(x):
    return ops.convert_to_numpy(x)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _nhwc(x):
    return x.permute(0, 2, 3, 1).numpy()


def _images(batch, size, seed):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def reference():
    """A seeded torch FAN (BatchNorm statistics randomised) and its state dict as NumPy."""
    torch.manual_seed(0)
    model = ref.FanReference()
    ref.randomize(model, seed=0, calibration=_nchw(_images(1, 256, seed=1)) * 0.5 + 0.5)
    state = {key: value.numpy() for key, value in model.state_dict().items()}
    return model, state


@pytest.fixture(scope="module")
def keras_fan(reference):
    fan = FAN()
    load_fan_state_dict(fan, reference[1])
    return fan


# --- names and the loader -----------------------------------------------------------------------

@pytest.mark.backend_independent
def test_reference_and_keras_names_are_the_official_ones(keras_fan):
    official = {}
    for line in (Path(__file__).parent / "data" / "fan_keys.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            official[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    with torch.device("meta"):
        reference_keys = {k: tuple(v.shape) for k, v in ref.FanReference().state_dict().items()}
    assert reference_keys == official
    # The loader reads every official tensor but the int64 batch counters.
    expected = {k: v for k, v in official.items() if not k.endswith("num_batches_tracked")}
    assert set(keras_fan.torch_variables()) == set(expected)
    # ~24M parameters at fixed widths, all of them non-trainable in a model.
    assert sum(int(np.prod(v)) for k, v in expected.items() if "running" not in k) == sum(
        int(np.prod(w.shape)) for w in keras_fan.weights if "moving" not in w.path)


def test_loader_errors_name_the_key_and_assign_nothing(keras_fan, reference):
    state = dict(reference[1])
    before = _np(keras_fan.l0.bias).copy()
    bad = {**state, "l0.bias": np.full(99, 5.0, np.float32)}  # valid, listed first
    bad["conv2.downsample.2.weight"] = np.zeros((128, 64, 3, 3), np.float32)
    with pytest.raises(ValueError) as error:
        load_fan_state_dict(keras_fan, bad)
    message = str(error.value)
    assert message == ("FAN weights: conv2.downsample.2.weight has shape (128, 64, 3, 3), "
                       "expected (128, 64, 1, 1)")
    missing = {k: v for k, v in state.items() if k != "bn_end0.running_var"}
    with pytest.raises(ValueError, match=r"^FAN weights: bn_end0.running_var is missing "
                                         r"\(expected shape \(256,\)\)$"):
        load_fan_state_dict(keras_fan, missing)
    np.testing.assert_array_equal(_np(keras_fan.l0.bias), before)
    # Keys of larger FANs in wing.ckpt are ignored; the official ones are all used.
    used = load_fan_state_dict(keras_fan, {**state, "m1.b1_4.bn1.weight": np.ones(3)})
    assert len(used) == len(keras_fan.torch_variables())


@pytest.mark.backend_independent
def test_fan_computes_in_float32_under_mixed_precision():
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        fan = FAN()
    finally:
        keras.config.set_dtype_policy(previous)
    assert {layer.compute_dtype for layer in fan.torch_layers().values()} == {"float32"}
    assert fan.compute_dtype == "float32"


# --- parity with the PyTorch reference ----------------------------------------------------------

@pytest.mark.parametrize("size", [128, 512])
def test_fan_input_resize_matches_torch(size):
    x = _images(1, size, seed=size)
    expected = F.interpolate(_nchw(x), size=256, mode="bilinear", align_corners=False) * 0.5 + 0.5
    diff = np.abs(_np(fan_input(x)) - _nhwc(expected)).max()
    assert diff <= 1e-5, diff


def _synthetic_heatmaps(batch=2, seed=0):
    """One Gaussian peak per landmark (some below the 0.1 truncation) on low noise."""
    rng = np.random.default_rng(seed)
    grid = np.arange(64, dtype=np.float32)
    maps = np.empty((batch, 64, 64, 98), np.float32)
    for n in range(batch):
        for c in range(98):
            row, col = rng.uniform(0, 63, 2)
            sigma = rng.uniform(1.5, 4.0)
            peak = np.exp(-((grid[:, None] - row) ** 2 + (grid[None, :] - col) ** 2)
                          / (2 * sigma**2))
            maps[n, :, :, c] = rng.uniform(0.05, 1.5) * peak
    return maps + rng.normal(0, 0.02, maps.shape).astype(np.float32)


def test_heatmaps_to_masks_matches_reference():
    heatmaps = _synthetic_heatmaps()
    expected = ref.heatmaps_to_masks(_nchw(heatmaps))
    masks = heatmaps_to_masks(heatmaps)
    for name, mask, want in zip(("coarse", "fine"), masks, expected, strict=True):
        assert tuple(mask.shape) == (2, 256, 256, 1)
        diff = np.abs(_np(mask) - _nhwc(want)).max()
        print(f"PARITY masks from synthetic heatmaps, {name}: {diff:.2e}")
        assert diff <= MASK_TOL, (name, diff)
    coarse, fine = _nhwc(expected[0]), _nhwc(expected[1])
    # Masks that test something: partly on, partly off, not saturated, fine within coarse.
    for mask in (coarse, fine):
        assert 0.02 < (mask > 0).mean() < 0.9 and ((mask > 0) & (mask < 1)).mean() > 0.01
    assert (fine <= coarse + 1e-6).all() and (fine < coarse - 0.01).any()


def test_fan_heatmaps_and_masks_match_reference(reference, keras_fan):
    model, _ = reference
    x = _images(1, 256, seed=2)
    expected = model.heatmaps(_nchw(x))
    heatmaps = _np(keras_fan(x))
    assert heatmaps.shape == (1, 64, 64, 98)
    heat_diff = np.abs(heatmaps - _nhwc(expected)).max()
    print(f"PARITY FAN heatmaps: {heat_diff:.2e} (range {heatmaps.min():.2f} to "
          f"{heatmaps.max():.2f})")
    assert heat_diff <= HEATMAP_TOL, heat_diff

    # The recipe zeroes heatmap values below 0.1: a value within float error of 0.1 may land on
    # either side and change its own mask pixel. Those (rare) pixels are allowed to differ.
    margin = max(10 * heat_diff, 1e-6)
    upsampled = F.interpolate(expected, scale_factor=4, mode="bilinear", align_corners=True)
    ties = int((torch.abs(upsampled - 0.1) < margin).sum())
    for name, mask, want in zip(("coarse", "fine"), heatmaps_to_masks(heatmaps),
                                ref.heatmaps_to_masks(expected), strict=True):
        diff = np.abs(_np(mask) - _nhwc(want))
        off = int((diff > MASK_TOL).sum())
        print(f"PARITY FAN masks, {name}: max {diff.max():.2e}, {off} pixels over {MASK_TOL} "
              f"({ties} heatmap values within {margin:.1e} of the 0.1 threshold)")
        assert off <= ties, (name, off, ties)
        assert 0.01 < (_nhwc(want) > 0).mean() < 0.9  # the masks are not trivial


# --- the model ---------------------------------------------------------------------------------

@pytest.mark.backend_independent
def test_config_fan_field():
    assert L2MConfig().fan is False and L2MConfig.from_dict({"img_size": 64}).fan is False
    config = L2MConfig(fan=True)
    assert L2MConfig.from_json(config.to_json()) == config
    for bad in (1, "true", None):
        with pytest.raises(ValueError, match="fan must be true or false"):
            L2MConfig.from_dict({"fan": bad})


def test_model_with_fan_edits_with_masks_and_round_trips(reference, tmp_path):
    config = L2MConfig(img_size=32, w_hpf=1.0, dim_in=8, max_conv_dim=16, fan=True)
    model = L2MGAN(config)
    assert L2MGAN(config.replace(fan=False)).fan is None
    load_fan_state_dict(model.fan, reference[1])
    assert not any(v.path.startswith("fan") for v in model.trainable_variables)

    # A 32 px crop of the image the reference FAN was calibrated on.
    x = _np(ops.image.resize(_images(1, 256, seed=2), (32, 32), interpolation="bilinear"))
    coarse, fine = model.face_masks(x)
    assert tuple(coarse.shape) == tuple(fine.shape) == (1, 256, 256, 1)
    assert 0.0 < float(_np(coarse).mean()) < 1.0

    edited = _np(model.edit(x, 0, 1))
    with_masks = _np(model.edit(x, 0, 1, masks=(coarse, fine)))
    source, target = np.zeros(1, "int32"), np.ones(1, "int32")
    without = _np(edit(model.generator, model.style_encoder, x, source, target))
    np.testing.assert_allclose(edited, with_masks, atol=1e-6)
    assert np.abs(edited - without).max() > 1e-3

    loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    assert loaded.config.fan and loaded.fan is not None
    for ours, theirs in zip(model.fan.weights, loaded.fan.weights, strict=True):
        np.testing.assert_array_equal(_np(ours), _np(theirs))
    np.testing.assert_allclose(_np(loaded.edit(x, 0, 1, masks=(coarse, fine))), edited,
                               atol=1e-5)


# --- training with a frozen FAN -------------------------------------------------------------------

def test_training_uses_frozen_fan_masks(reference):
    """A step at w_hpf 1 with a FAN: G gets the masks of each call's input, FAN never moves.

    g_cycle and g_style depend on G and E only, which the G step updates after computing
    them: the logged values are those of the masked generator, not of the unmasked one.
    """
    import keras

    from keras_l2mgan.losses import LossWeights, generator_loss, generator_masks

    keras.utils.set_random_seed(0)
    model = L2MGAN(L2MConfig(img_size=32, w_hpf=1.0, dim_in=8, max_conv_dim=16, fan=True))
    load_fan_state_dict(model.fan, reference[1])
    model.compile(jit_compile=False)
    optimized = {id(v) for v in model.optimizer.g_variables + model.optimizer.d_variables}
    assert not any(id(v) in optimized for v in model.fan.weights)

    # Batch 1, the calibration image at 32 px: on JAX, the eager FAN and G kernels compiled
    # for the tests above are reused.
    x = _np(ops.image.resize(_images(1, 256, seed=1), (32, 32), interpolation="bilinear"))
    source, target = np.array([0], "int32"), np.array([1], "int32")
    weights = LossWeights()
    masks = generator_masks(model, x)
    expected = {k: float(_np(v)) for k, v in
                generator_loss(model, x, source, target, weights, masks)[1].items()}
    unmasked = {k: float(_np(v)) for k, v in
                generator_loss(model, x, source, target, weights, None)[1].items()}
    fan_before = [_np(w).copy() for w in model.fan.weights]

    # Tensors: on torch train_on_batch hands the batch to the step as it is.
    batch = {"images": ops.convert_to_tensor(x), "labels": ops.convert_to_tensor(source),
             "target_labels": ops.convert_to_tensor(target)}
    logs = model.train_on_batch(batch, return_dict=True)
    logs = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in logs.items()}
    print("masked", {k: expected[k] for k in ("g_cycle", "g_style")}, "unmasked",
          {k: unmasked[k] for k in ("g_cycle", "g_style")}, "logged", logs)
    assert all(np.isfinite(v) for v in logs.values()), logs
    for name in ("g_cycle", "g_style"):
        assert abs(logs[name] - expected[name]) <= 1e-5, (name, logs[name], expected[name])
    # The cycle runs G twice (masks of x, then of the fake): without masks it is far off.
    assert abs(unmasked["g_cycle"] - expected["g_cycle"]) > 1e-3, (unmasked, expected)
    for before, after in zip(fan_before, model.fan.weights, strict=True):
        np.testing.assert_array_equal(before, _np(after))


# --- export ------------------------------------------------------------------------------------

@pytest.mark.needs_tensorflow
def test_saved_model_of_a_fan_bundle_computes_the_masks(reference, tmp_path):
    """TF Serving clients send the crop only: edit_float runs FAN and the mask recipe inside
    the graph and equals model.edit (which computes the masks itself)."""
    import tensorflow as tf

    from keras_l2mgan.export import export_saved_model

    model = L2MGAN(L2MConfig(img_size=32, w_hpf=1.0, dim_in=8, max_conv_dim=16, fan=True))
    load_fan_state_dict(model.fan, reference[1])
    version_dir = export_saved_model(save_bundle(model, tmp_path / "bundle"), "faces", 1,
                                     tmp_path / "saved")
    image = _np(ops.image.resize(_images(1, 256, seed=2), (32, 32), interpolation="bilinear"))
    x = np.concatenate([image, image[:, :, ::-1]])
    source, target = np.array([0, 1], "int32"), np.array([1, 0], "int32")
    alpha = np.array([1.0, 0.5], "float32")
    expected = _np(model.edit(x, source, target, alpha))
    unmasked = _np(edit(model.generator, model.style_encoder, x, source, target, alpha))
    assert np.abs(expected - unmasked).max() > 1e-3  # the masks matter for this input

    signature = tf.saved_model.load(str(version_dir)).signatures["edit_float"]
    got = signature(images=tf.constant(x), source_domain=tf.constant(source),
                    target_domain=tf.constant(target), alpha=tf.constant(alpha))["images"]
    diff = np.abs(got.numpy() - expected).max()
    print(f"PARITY SavedModel edit_float vs model.edit with FAN masks: {diff:.2e}")
    assert diff <= 1e-4

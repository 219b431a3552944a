"""PSNR, SSIM, FID and KID against known values and properties; synthetic ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_l2mgan.metrics import distribution, image, synthetic

pytestmark = pytest.mark.backend_independent  # numpy/scipy only: one backend is enough


def _faces(n: int = 2, size: int = 32) -> np.ndarray:
    return synthetic.render(synthetic.split_params("test", n), size)


def test_psnr_known_values_and_mask():
    a = np.zeros((2, 16, 16, 3))
    b = a + 10.0  # MSE 100
    assert image.psnr(a, b) == pytest.approx([10 * np.log10(255**2 / 100)] * 2)
    assert image.psnr(a, a)[0] == image.MAX_PSNR
    b[:, :, :8] = 0.0  # differences only in the right half
    left = np.zeros((16, 16), bool)
    left[:, :8] = True
    assert image.psnr(a, b, left)[0] == image.MAX_PSNR
    assert image.psnr(a, b, ~left)[0] == pytest.approx(10 * np.log10(255**2 / 100))


def test_ssim_matches_tensorflow_and_masks_whole_windows():
    import tensorflow as tf

    faces = _faces(2).astype(np.float64)
    noisy = np.clip(faces + np.random.default_rng(0).normal(0, 12, faces.shape), 0, 255)
    expected = tf.image.ssim(tf.constant(faces), tf.constant(noisy), max_val=255.0).numpy()
    np.testing.assert_allclose(image.ssim(faces, noisy), expected, atol=1e-4)
    assert image.ssim(faces, faces) == pytest.approx([1.0, 1.0])
    # A change in columns 0-7 reaches window centres up to column 12 only.
    changed = faces.copy()
    changed[:, :, :8] = 255 - changed[:, :, :8]
    right = np.zeros((32, 32), bool)
    right[:, 13:] = True
    assert image.ssim(changed, faces, right) == pytest.approx([1.0, 1.0])
    assert (image.ssim(changed, faces) < 0.9).all()


def test_fid_identical_shifted_and_scaled_gaussians():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    assert distribution.fid(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8) / 4.0
    # Same sample covariance, means apart by `shift`: exactly ||shift||^2.
    assert distribution.fid(x, x + shift) == pytest.approx(shift @ shift, rel=1e-6)
    # N(0, I) vs N(0, 4I) in 8-d: tr(I + 4I - 2 * 2I) = 8, up to sampling error.
    y = 2.0 * rng.normal(size=(20000, 8))
    assert distribution.fid(rng.normal(size=(20000, 8)), y) == pytest.approx(8.0, rel=0.05)
    with pytest.raises(ValueError, match="feature sizes differ"):
        distribution.fid(x, x[:, :4])


def test_kid_is_unbiased_near_zero_and_grows_with_shift():
    rng = np.random.default_rng(1)
    same = [distribution.kid(rng.normal(size=(200, 16)), rng.normal(size=(200, 16)))[0]
            for _ in range(20)]
    shifted, _ = distribution.kid(rng.normal(size=(200, 16)), rng.normal(1.0, 1.0, (200, 16)))
    assert abs(np.mean(same)) < 0.01  # unbiased: centred on 0, not positive
    assert min(same) < 0 < max(same)
    assert shifted > 0.5
    mean, std = distribution.kid(rng.normal(size=(300, 4)), rng.normal(size=(500, 4)),
                                 num_subsets=10, subset_size=100)
    assert std > 0 and abs(mean) < 0.05


def test_ground_truth_changes_only_inside_the_mask():
    params = synthetic.split_params("test", 3)
    before = synthetic.render(params, 32)
    for flips in (["Smiling"], ["Smiling", "Male"]):
        truth, masks = synthetic.ground_truth(params, flips, 32)
        changed = (truth != before).any(axis=-1)
        assert changed.any(axis=(1, 2)).all()
        assert not (changed & ~masks).any()
    values = synthetic.attribute_values(synthetic.split_params("test", 64), ["Smiling", "Male"])
    assert values.mean(axis=0) == pytest.approx([0.5, 0.5])  # balanced split


def test_synthetic_split_is_the_tfds_split(tmp_path):
    import tensorflow_datasets as tfds

    from keras_l2mgan.data.synthetic_faces import builder

    config = builder.synthetic_config(32, num_train=4, num_test=4)
    faces = builder.SyntheticFaces(config=config, data_dir=str(tmp_path))
    faces.download_and_prepare()
    stored = sorted(tfds.as_numpy(faces.as_dataset(split="test")), key=lambda ex: ex["index"])
    ours = synthetic.split_params("test", 4)
    np.testing.assert_array_equal(np.stack([ex["params"] for ex in stored]), ours)
    np.testing.assert_array_equal(np.stack([ex["image"] for ex in stored]),
                                  synthetic.render(ours, 32))


def test_inception_features_come_from_a_local_weights_file_only(tmp_path, monkeypatch):
    import keras

    from keras_l2mgan.metrics import features

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        features.feature_extractor("inception")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        features.feature_extractor("auto", tmp_path / "missing.h5")
    cache = tmp_path / "keras_home" / "models" / features.INCEPTION_FILE
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"")
    assert features.cached_inception_weights() == cache  # found where keras.applications keeps it
    # Random weights stand in for the ImageNet ones.
    weights = tmp_path / "random_inception.weights.h5"
    keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                   input_shape=(299, 299, 3)).save_weights(weights)
    extractor = features.feature_extractor("auto", weights)
    assert isinstance(extractor, features.InceptionFeatures) and extractor.label == "FID"
    assert extractor(_faces(2, 64)).shape == (2, 2048)
    fallback = features.feature_extractor("classifier", classifier=object())
    assert fallback.label == "FID (classifier features)"


def test_metric_registry_names_parse_and_append(tmp_path):
    from keras_l2mgan.metrics import registry

    assert registry.list_valid_metrics() == ["accuracy", "ground_truth", "outside_mask",
                                             "fid_kid", "alpha_response"]
    assert registry.list_valid_metrics("stargan_v2") == ["fid_kid"]
    assert registry.parse_metrics(None, "synthetic") == registry.list_valid_metrics("synthetic")
    assert registry.parse_metrics(" fid_kid, accuracy,fid_kid", "synthetic") == [
        "fid_kid", "accuracy"]
    with pytest.raises(ValueError, match=r"unknown metric 'fid'; valid metrics: accuracy, "):
        registry.parse_metrics("fid", "synthetic")
    with pytest.raises(ValueError, match="not measured by the stargan_v2 protocol"):
        registry.parse_metrics("alpha_response", "stargan_v2")
    with pytest.raises(ValueError, match="registered twice"):
        def accuracy(context, data):
            return {}

        registry.register_metric(["synthetic"])(accuracy)
    # Means over the finite values the protocol returned; NaN (JSON null) when none.
    metric = registry.get_metric("fid_kid")
    rows = [{"fid": 2.0, "kid": float("nan")}, {"fid": 4.0, "kid": float("nan")}]
    summary = metric.summarise(rows)
    assert summary["fid"] == 3.0 and np.isnan(summary["kid"]) and "identity_fid" not in summary
    results = {"protocol": "synthetic", "model": "m", "tasks": [], "mean": {}}
    for fid in (1.5, float("inf")):
        registry.report_metrics(tmp_path, results, {"fid_kid": {"mean": {"fid": fid}}}, 2.0)
    lines = (tmp_path / "metric-fid_kid.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["metric"] == "fid_kid" and first["model"] == "m"
    assert first["results"] == {"mean": {"fid": 1.5}} and second["results"]["mean"]["fid"] is None
    assert first["settings"] == {"protocol": "synthetic", "model": "m"}
    assert first["timestamp"] <= second["timestamp"] and first["time"].endswith("+00:00")

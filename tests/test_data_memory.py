"""`l2m train --data synthetic_memory`: synthetic faces in memory, a run without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_l2mgan.data.memory import MemoryBatches, build_memory_dataset, held_out_faces

ROOT = Path(__file__).resolve().parents[1]


def _stream(seed=0, augment=True):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0] * 30 + [1] * 10)
    return MemoryBatches(images, labels, num_domains=2, batch_size=8, seed=seed,
                         augment=augment)


@pytest.mark.backend_independent  # NumPy batches
def test_batches_are_a_function_of_seed_and_index():
    stream = _stream()
    first = [next(iter(stream)) for _ in range(2)]
    np.testing.assert_array_equal(first[0]["images"], first[1]["images"])
    resumed = next(iter(stream.skip(3)))
    batches = iter(stream)
    for _ in range(3):
        next(batches)
    fourth = next(batches)
    for key in ("images", "labels", "target_labels"):
        np.testing.assert_array_equal(resumed[key], fourth[key])
    other_seed = next(iter(_stream(seed=1)))
    assert not np.array_equal(other_seed["images"], first[0]["images"])
    assert fourth["images"].dtype == np.float32 and fourth["images"].shape == (8, 16, 16, 3)
    assert -1.0 <= fourth["images"].min() and fourth["images"].max() <= 1.0


@pytest.mark.backend_independent  # NumPy batches
def test_domains_are_drawn_in_balance_and_augmentation_changes_pixels():
    stream = _stream()
    labels = np.concatenate([stream.batch(i)["labels"] for i in range(200)])
    assert abs(labels.mean() - 0.5) < 0.05  # 30 vs 10 images, drawn 1:1
    plain = _stream(augment=False).batch(0)
    augmented = stream.batch(0)
    np.testing.assert_array_equal(plain["labels"], augmented["labels"])
    assert not np.array_equal(plain["images"], augmented["images"])


@pytest.mark.backend_independent  # NumPy batches
def test_domain_weights_draw_sources_in_their_ratio():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0] * 30 + [1] * 10)
    weighted = MemoryBatches(images, labels, num_domains=2, batch_size=8, domain_weights=(1, 3))
    drawn = np.concatenate([weighted.batch(i)["labels"] for i in range(200)])
    assert abs(drawn.mean() - 0.75) < 0.05  # 1:3, whatever the 30 vs 10 images
    # Equal weights draw exactly the default stream.
    equal = MemoryBatches(images, labels, num_domains=2, batch_size=8, domain_weights=(2, 2))
    np.testing.assert_array_equal(equal.batch(5)["images"], _stream().batch(5)["images"])
    only_second = MemoryBatches(images, labels, 2, 8, domain_weights=(0, 1)).batch(0)["labels"]
    assert set(only_second) == {1}
    with pytest.raises(ValueError, match="weight 0 to every domain"):
        MemoryBatches(images, labels, 2, 8, domain_weights=(0, 0))


@pytest.mark.backend_independent  # option checks
def test_domain_weights_must_be_one_per_domain():
    from keras_l2mgan.data.domains import check_domain_weights

    names = ["not_smiling", "smiling"]
    check_domain_weights(None, names)
    check_domain_weights((1.0, 0.0), names)
    for bad in ((1.0,), (1.0, 2.0, 3.0), (0.0, 0.0), (-1.0, 2.0), (float("nan"), 1.0)):
        with pytest.raises(ValueError, match="--domain-weights .*give 2 weights >= 0, one per "
                                             "domain in the order not_smiling, smiling"):
            check_domain_weights(bad, names)


@pytest.mark.backend_independent  # rendered faces and a cache file
def test_faces_are_the_synthetic_split_and_cached(tmp_path):
    from keras_l2mgan.metrics import synthetic

    info = build_memory_dataset("smiling", img_size=32, batch_size=4, data_dir=str(tmp_path),
                                num_examples=24)
    assert info.domain_names == ["not_smiling", "smiling"]
    assert sum(info.images_per_domain.values()) == 24
    expected = synthetic.render(synthetic.split_params("train", 24), 32)
    np.testing.assert_array_equal(info.dataset.images, expected)
    cached = list((tmp_path / "synthetic_memory").iterdir())
    assert [p.name for p in cached] == ["train_24_32px.npz"]
    with np.load(cached[0]) as stored:  # the parameters are read back, not recomputed
        np.testing.assert_array_equal(stored["params"], synthetic.split_params("train", 24))
    # A cache file of the pixels only (as written by earlier versions) still loads.
    np.savez(cached[0], images=expected)
    again = build_memory_dataset("smiling", img_size=32, batch_size=4, data_dir=str(tmp_path),
                                 num_examples=24)
    np.testing.assert_array_equal(again.dataset.labels, info.dataset.labels)
    samples = held_out_faces("smiling", 32, 4)
    assert list(samples["labels"]) == [0, 1, 0, 1]


# TensorFlow made unimportable, as on a GPU machine that has JAX alone. Only under JAX: torch
# probes module names with importlib's find_spec when it loads and cannot take a finder that
# raises, so on torch the run goes as installed.
WITHOUT_TF = """
import sys
class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
            raise ImportError("TensorFlow is blocked in this test")
if __import__("os").environ["KERAS_BACKEND"] == "jax":
    sys.meta_path.insert(0, NoTensorFlow())
from keras_l2mgan.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow  # two trainings (a run and its resume) in fresh processes
@pytest.mark.skipif(keras.backend.backend() == "tensorflow",
                    reason="the in-memory source is for machines without TensorFlow")
def test_l2m_train_runs_and_resumes_without_tensorflow(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(),
           "L2M_DATA_DIR": str(tmp_path / "data")}
    for args in (["--data", "synthetic_memory", "--preset", "tiny_32", "--batch-size", "4",
                  "--num-examples", "32", "--run-dir", str(run), "--steps", "2",
                  "--sample-every", "1", "--checkpoint-every", "1"],
                 ["--resume", str(run), "--steps", "3", "--domain-weights", "1,3"]):
        command = [sys.executable, "-c", WITHOUT_TF, "train", *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "model" / "model.weights.h5").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir())[-1] == "step-00000003.png"
    if keras.backend.backend() == "jax":  # TensorFlow was blocked: no TensorBoard logs
        assert not (run / "logs").exists()
    from keras_l2mgan.bundle import load_bundle

    assert load_bundle(run / "model").config.names == ("not_smiling", "smiling")

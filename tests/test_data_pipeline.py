"""The TFDS builder and the tf.data pipeline on a small synthetic dataset built by the tests."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_python

pytestmark = pytest.mark.backend_independent

SIZE = 32
NUM = 64


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    from keras_l2mgan.data.pipeline import prepare_synthetic

    path = str(tmp_path_factory.mktemp("tfds"))
    prepare_synthetic(SIZE, path, num_examples=NUM)
    return path


def test_tfds_load_offline_with_params_and_ground_truth(data_dir):
    import tensorflow_datasets as tfds

    from keras_l2mgan.data import synthetic_config
    from keras_l2mgan.data.synthetic_faces import ATTRIBUTES, flip, render

    config = synthetic_config(SIZE, NUM, NUM)
    ds, info = tfds.load("synthetic_faces", split="test", data_dir=data_dir, with_info=True,
                         download=False, builder_kwargs={"config": config})
    assert info.splits["train"].num_examples == NUM and info.splits["test"].num_examples == NUM
    examples = list(ds.take(4).as_numpy_iterator())
    for ex in examples:
        # The stored parameters re-render the stored image exactly, and carry the attributes.
        np.testing.assert_array_equal(ex["image"], render(ex["params"], SIZE))
        for i, name in enumerate(ATTRIBUTES):
            assert ex["attributes"][name] == (ex["params"][i] >= 0.5)
        edit = render(flip(ex["params"], "Smiling"), SIZE)
        assert (edit != ex["image"]).any()
    train = next(iter(tfds.load("synthetic_faces", split="train", data_dir=data_dir,
                                download=False, builder_kwargs={"config": config})))
    assert not any(np.array_equal(train["image"].numpy(), ex["image"]) for ex in examples)


def test_generation_is_deterministic_by_seed(tmp_path):
    from keras_l2mgan.data.synthetic_faces.builder import _encode_chunk, balanced_attributes

    attrs = balanced_attributes(4, 3, "train")
    first = _encode_chunk((3, "train", 0, attrs, SIZE))
    again = _encode_chunk((3, "train", 0, attrs, SIZE))
    other = _encode_chunk((4, "train", 0, attrs, SIZE))
    assert [p.tobytes() for p, _ in first] == [p.tobytes() for p, _ in again]
    assert [png for _, png in first] == [png for _, png in again]
    assert first[0][0].tobytes() != other[0][0].tobytes()


def test_interrupted_generation_leaves_nothing_loadable(tmp_path):
    """A build that dies half-way leaves only TFDS's incomplete.* folder; a retry succeeds."""
    from keras_l2mgan.data import SyntheticFaces, synthetic_config

    class Interrupted(SyntheticFaces, skip_registration=True):
        name = "synthetic_faces"  # same folder as the real builder

        def _generate_examples(self, split, num):
            for count, item in enumerate(super()._generate_examples(split, num)):
                if count == 5:
                    raise KeyboardInterrupt
                yield item

    config = synthetic_config(SIZE, 12, 4, seed=9)
    with pytest.raises(KeyboardInterrupt):
        Interrupted(config=config, data_dir=str(tmp_path)).download_and_prepare()
    config_dir = tmp_path / "synthetic_faces" / config.name
    assert all(p.name.startswith("incomplete") for p in config_dir.iterdir())
    builder = SyntheticFaces(config=config, data_dir=str(tmp_path))
    assert not builder.is_prepared()
    builder.download_and_prepare()
    assert builder.info.splits["train"].num_examples == 12


def test_pipeline_shapes_ranges_labels_and_balance(data_dir):
    from keras_l2mgan.data import build_dataset

    info = build_dataset("synthetic", attrs="Smiling,male", img_size=SIZE, batch_size=8,
                         data_dir=data_dir, num_examples=NUM, seed=1)
    assert info.domain_names == ["not_smiling+not_male", "not_smiling+male",
                                 "smiling+not_male", "smiling+male"]
    assert info.num_examples == NUM and sum(info.images_per_domain.values()) == NUM
    assert info.attrs == ["Smiling", "Male"]
    labels, targets = [], []
    for step, batch in enumerate(info.dataset.as_numpy_iterator()):
        assert batch["images"].shape == (8, SIZE, SIZE, 3) and batch["images"].dtype == np.float32
        assert batch["labels"].dtype == np.int32 and batch["target_labels"].dtype == np.int32
        assert -1.0 <= batch["images"].min() and batch["images"].max() <= 1.0
        labels.append(batch["labels"])
        targets.append(batch["target_labels"])
        if step == 40:  # endless with repeat=True
            break
    counts = np.bincount(np.concatenate(labels), minlength=4)
    assert counts.min() > 0.15 * counts.sum()  # balanced: ~0.25 each
    assert set(np.concatenate(targets).tolist()) == {0, 1, 2, 3}
    assert batch["images"].std() > 0.2


def test_pipeline_draws_sources_by_domain_weights(data_dir):
    from keras_l2mgan.data import build_dataset

    info = build_dataset("synthetic", attrs="smiling,male", img_size=SIZE, batch_size=8,
                         data_dir=data_dir, num_examples=NUM, seed=1,
                         domain_weights=(0.0, 3.0, 0.0, 1.0))
    labels = np.concatenate([batch["labels"] for batch in info.dataset.take(40)])
    assert set(labels.tolist()) <= {1, 3}
    assert abs(np.mean(labels == 1) - 0.75) < 0.08


def test_pipeline_labels_match_attributes_and_one_pass(data_dir):
    """Without augmentation every image is a stored face whose attribute matches its label."""
    import tensorflow_datasets as tfds

    from keras_l2mgan.data import build_dataset, synthetic_config

    info = build_dataset("synthetic", attrs="young", img_size=SIZE, batch_size=4, split="test",
                         data_dir=data_dir, num_examples=NUM, augment=False, repeat=False)
    stored = tfds.load("synthetic_faces", split="test", data_dir=data_dir, download=False,
                       builder_kwargs={"config": synthetic_config(SIZE, NUM, NUM)})
    young = {ex["image"].tobytes(): bool(ex["attributes"]["Young"])
             for ex in stored.as_numpy_iterator()}
    seen = 0
    for batch in info.dataset.as_numpy_iterator():
        for image, label in zip(batch["images"], batch["labels"], strict=True):
            pixels = np.round((image + 1) * 127.5).astype(np.uint8).tobytes()
            assert young[pixels] == bool(label == 1)
            seen += 1
    assert seen == NUM  # one pass over all of them, in whole batches


def test_same_seed_same_stream(data_dir):
    from keras_l2mgan.data import build_dataset

    def first(seed):
        info = build_dataset("synthetic", img_size=SIZE, batch_size=4, data_dir=data_dir,
                             num_examples=NUM, seed=seed)
        return next(info.dataset.as_numpy_iterator())

    a, b, c = first(0), first(0), first(1)
    np.testing.assert_array_equal(a["images"], b["images"])
    np.testing.assert_array_equal(a["target_labels"], b["target_labels"])
    assert not np.array_equal(a["images"], c["images"])


def test_numpy_iterator(data_dir):
    from keras_l2mgan.data import build_dataset, to_numpy_iterator

    info = build_dataset("synthetic", img_size=SIZE, batch_size=2, data_dir=data_dir,
                         num_examples=NUM)
    batch = next(to_numpy_iterator(info.dataset))
    assert isinstance(batch["images"], np.ndarray) and batch["images"].shape == (2, SIZE, SIZE, 3)


def test_bad_arguments(data_dir):
    from keras_l2mgan.data import build_dataset

    with pytest.raises(ValueError, match="unknown attribute 'wings'.*Smiling, Male"):
        build_dataset("synthetic", attrs="wings", img_size=SIZE, data_dir=data_dir,
                      num_examples=NUM)
    with pytest.raises(ValueError, match="no split 'holdout'.*train, test"):
        build_dataset("synthetic", split="holdout", img_size=SIZE, data_dir=data_dir,
                      num_examples=NUM)
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        build_dataset("imagenet", data_dir=data_dir)
    with pytest.raises(FileNotFoundError, match="CelebA-HQ-img/.*CelebAMask-HQ-attribute-anno"):
        build_dataset("celeba_hq", data_dir=data_dir)
    with pytest.raises(FileNotFoundError, match="tfds build celeb_a"):
        build_dataset("celeba", data_dir=data_dir)


def test_distributed_sharding(data_dir):
    """MirroredStrategy over two logical CPUs splits each global batch across replicas."""
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_l2mgan.data import build_dataset
info = build_dataset("synthetic", img_size={SIZE}, batch_size=8, data_dir={data_dir!r},
                     num_examples={NUM})
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
batch = next(iter(strategy.experimental_distribute_dataset(info.dataset)))
shapes = [tuple(t.shape) for t in strategy.experimental_local_results(batch["images"])]
print("SHAPES", shapes)
"""
    result = run_python(code, "tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"SHAPES [(4, {SIZE}, {SIZE}, 3), (4, {SIZE}, {SIZE}, 3)]" in result.stdout

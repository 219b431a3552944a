"""The one tf.data pipeline every backend trains on.

    info = build_dataset("synthetic", attrs="smiling,male", img_size=64, batch_size=8)
    batch = next(iter(info.dataset))  # images (8, 64, 64, 3) in [-1, 1], labels, target_labels

Per domain: shuffle the (small) keys, repeat; domains are drawn with equal weight; then
decode, centre-crop to a square, resize, augment (p 0.5 random resized crop with scale
0.8-1.0 and aspect 0.9-1.1, horizontal flip), scale to [-1, 1]; batch with drop_remainder;
draw target labels uniformly (they may equal the source, as in the reference); prefetch.
Every random draw is stateless and seeded, so a seed fixes the stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from keras_l2mgan.data import default_data_dir, domains, folders
from keras_l2mgan.data.synthetic_faces import builder as synthetic
from keras_l2mgan.data.synthetic_faces import renderer
from keras_l2mgan.image_range import to_unit_tf

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
# synthetic_memory: the same synthetic faces; `l2m train` renders them into memory (data/memory.py)
SOURCES = ("synthetic", "synthetic_memory", "celeba", "celeba_hq")
CELEBA_HQ_FOLDER = "CelebAMask-HQ"


@dataclasses.dataclass
class DatasetInfo:
    """A batched, prefetched dataset and what it holds.

    ``dataset`` yields {"images": float32 (B, S, S, 3) in [-1, 1], "labels": int32 (B,),
    "target_labels": int32 (B,)}; label i is ``domain_names[i]``.
    """

    dataset: tf.data.Dataset
    domain_names: list[str]
    num_examples: int
    images_per_domain: dict[str, int]
    source: str = "synthetic"
    split: str = "train"
    img_size: int = 64
    batch_size: int = 8
    attrs: list[str] = dataclasses.field(default_factory=list)
    skipped_files: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Source:
    """Per-domain datasets of small keys and the function that turns a key into a uint8 image."""

    domain_names: list[str]
    keys: list[tf.data.Dataset]
    decode: Callable[[tf.Tensor], tf.Tensor]
    counts: list[int]
    shuffle_buffer: int
    attrs: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)


def build_dataset(
    source: str = "synthetic",
    attrs: str | list[str] = "smiling",
    img_size: int = 64,
    batch_size: int = 8,
    split: str = "train",
    data_dir: str | None = None,
    seed: int = 0,
    augment: bool = True,
    repeat: bool = True,
    num_examples: int | None = None,
    domain_weights: tuple[float, ...] | None = None,
) -> DatasetInfo:
    """Build the training/evaluation stream for a dataset.

    source: "synthetic" (generated on first use), "celeba" (TFDS celeb_a), "celeba_hq"
    (CelebAMask-HQ folder under data_dir), or a folder path (root/{train,val}/<domain>/*, or
    images plus a CelebA-format attribute file). ``attrs`` picks the attribute domains (not
    used for domain folders). With ``repeat`` the stream is endless and domain-balanced;
    without it, one pass over every example. ``num_examples`` makes a synthetic dataset of
    that size, or caps a real one. ``domain_weights`` (one per domain) draws some domains
    more often than others.
    """
    if img_size < 8 or batch_size < 1:
        raise ValueError(f"img_size must be >= 8 and batch_size >= 1, got {img_size}, {batch_size}")
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"num_examples must be >= 1 or None, got {num_examples}")
    data_dir = data_dir or default_data_dir()
    src = _open_source(source, attrs, img_size, split, data_dir, seed, num_examples)
    num_domains = len(src.domain_names)
    total = int(sum(src.counts))
    if src.skipped:
        log.warning("skipped %d unreadable or non-image files (first: %s)",
                    len(src.skipped), src.skipped[0])
    if not repeat and total < batch_size:
        raise ValueError(
            f"split {split!r} has {total} images, fewer than one batch of {batch_size}"
        )

    labelled = [
        keys.map(lambda key, label=label: (key, tf.constant(label, tf.int32)))
        for label, keys in enumerate(src.keys)
    ]
    if repeat:
        labelled = [
            ds.shuffle(min(src.shuffle_buffer, max(count, 1)), seed=seed + i).repeat()
            for i, (ds, count) in enumerate(zip(labelled, src.counts, strict=True))
        ]
    # Equal weights by default: every domain as often, whatever its size (reference: 1 / class
    # count). An empty domain's dataset never yields, so its weight passes to the others.
    domains.check_domain_weights(domain_weights, src.domain_names)
    weights = [1.0] * num_domains if domain_weights is None else list(map(float, domain_weights))
    total_weight = sum(weights)
    mixed = tf.data.Dataset.sample_from_datasets(
        labelled, weights=[w / total_weight for w in weights], seed=seed,
        stop_on_empty_dataset=False,
    )
    pair_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    images = tf.data.Dataset.zip((mixed, pair_seeds)).map(
        lambda item, rng: {
            "images": _prepare(src.decode(item[0]), img_size, augment, rng),
            "labels": item[1],
        },
        num_parallel_calls=AUTOTUNE,
    )
    # Last line of defence: a file that passed the check but fails to decode is dropped.
    images = images.ignore_errors(log_warning=True)
    batches = images.batch(batch_size, drop_remainder=True)
    target_seeds = tf.data.Dataset.random(seed=seed + 1).batch(2)
    batches = tf.data.Dataset.zip((batches, target_seeds)).map(
        lambda batch, rng: {
            **batch,
            "target_labels": tf.random.stateless_uniform(
                [batch_size], rng, minval=0, maxval=num_domains, dtype=tf.int32
            ),
        }
    )
    options = tf.data.Options()
    # Shard by element under tf.distribute: a small dataset may have a single file.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = batches.with_options(options).prefetch(AUTOTUNE)
    return DatasetInfo(
        dataset=batches,
        domain_names=list(src.domain_names),
        num_examples=total,
        images_per_domain=dict(zip(src.domain_names, (int(c) for c in src.counts), strict=True)),
        source=source,
        split=split,
        img_size=img_size,
        batch_size=batch_size,
        attrs=list(src.attrs),
        skipped_files=list(src.skipped),
    )


def available_splits(
    source: str = "synthetic",
    attrs: str | list[str] = "smiling",
    img_size: int = 64,
    data_dir: str | None = None,
    num_examples: int | None = None,
) -> list[str]:
    """The split names a dataset has (building a synthetic one if needed)."""
    data_dir = data_dir or default_data_dir()
    key = source.strip().lower().replace("-", "_")
    if key in ("synthetic", "synthetic_memory"):  # the same faces
        return list(prepare_synthetic(img_size, data_dir, 0, num_examples).info.splits)
    if key == "celeba":
        builder = tfds.builder("celeb_a", data_dir=data_dir)
        return list(builder.info.splits) if builder.is_prepared() else ["train"]
    root = _celeba_hq_root(data_dir) if key == "celeba_hq" else Path(source).expanduser()
    if root.is_dir() and folders.find_attribute_file(root) is not None:
        has_partition = (root / folders.PARTITION_FILE).is_file()
        return ["train", "val", "test"] if has_partition else ["train", "test"]
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    return folders.folder_splits(root)


def to_numpy_iterator(dataset: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
    """Batches as dicts of numpy arrays, for the JAX and torch trainers."""
    return dataset.as_numpy_iterator()


# Image preparation ------------------------------------------------------------------------


def _prepare(image: tf.Tensor, img_size: int, augment: bool, rng: tf.Tensor) -> tf.Tensor:
    """uint8 (H, W, 3) -> float32 (S, S, 3) in [-1, 1]: square crop, resize, augment."""
    image = _center_square(image)
    if image.shape[0] != img_size or image.shape[1] != img_size:
        image = tf.image.resize(image, [img_size, img_size], antialias=True)
    image = tf.cast(image, tf.float32)
    if augment:
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(rng, 2))
        image = _random_resized_crop(image, img_size, crop_seed)
        flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        image = tf.where(flip, tf.reverse(image, axis=[1]), image)
    image = to_unit_tf(image)
    image.set_shape([img_size, img_size, 3])
    return image


def _center_square(image: tf.Tensor) -> tf.Tensor:
    if image.shape[0] is not None and image.shape[0] == image.shape[1]:
        return image
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    return tf.image.crop_to_bounding_box(
        image, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side
    )


def _random_resized_crop(image: tf.Tensor, img_size: int, rng: tf.Tensor) -> tf.Tensor:
    """With p 0.5: a crop of 80-100 % of the area, aspect 0.9-1.1, resized back to img_size."""
    u = tf.random.stateless_uniform([5], rng)
    scale = 0.8 + 0.2 * u[1]
    aspect = tf.exp(math.log(0.9) + (math.log(1.1) - math.log(0.9)) * u[2])
    height = tf.minimum(tf.sqrt(scale / aspect), 1.0)
    width = tf.minimum(tf.sqrt(scale * aspect), 1.0)
    top = (1.0 - height) * u[3]
    left = (1.0 - width) * u[4]
    box = tf.where(u[0] < 0.5, tf.stack([top, left, top + height, left + width]),
                   tf.constant([0.0, 0.0, 1.0, 1.0]))
    return tf.image.crop_and_resize(image[None], box[None], [0], [img_size, img_size])[0]


def _decode_bytes(encoded: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _pil_decode(path) -> np.ndarray:
    path = np.asarray(path).item()
    with Image.open(path.decode() if isinstance(path, bytes) else path) as image:
        return np.asarray(image.convert("RGB"), np.uint8)


def _decode_file(key: dict[str, tf.Tensor]) -> tf.Tensor:
    """{"path", "needs_pil"} -> uint8 image; PIL only for formats TF cannot read (TIFF, ...)."""
    path, needs_pil = key["path"], key["needs_pil"]
    image = tf.cond(
        needs_pil,
        lambda: tf.numpy_function(_pil_decode, [path], tf.uint8, stateful=False),
        lambda: tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image


# Sources -----------------------------------------------------------------------------------


def _open_source(
    source: str, attrs, img_size: int, split: str, data_dir: str, seed: int, num_examples
) -> _Source:
    key = source.strip().lower().replace("-", "_")
    if key in ("synthetic", "synthetic_memory"):  # the same faces
        return _synthetic(attrs, img_size, split, data_dir, seed, num_examples)
    if key == "celeba":
        return _celeba(attrs, split, data_dir, num_examples)
    if key == "celeba_hq":
        return _folder(_celeba_hq_root(data_dir), attrs, split, num_examples)
    path = Path(source).expanduser()
    if path.exists() or os.sep in source or source.startswith("."):
        return _folder(path, attrs, split, num_examples)
    raise ValueError(
        f"unknown dataset {source!r}: use one of {', '.join(SOURCES)} or a folder path"
    )


def _tfds_split(split: str, available: list[str], name: str) -> str:
    split = {"val": "validation", "valid": "validation"}.get(split, split)
    if split == "validation" and split not in available and "test" in available:
        split = "test"
    if split not in available:
        raise ValueError(f"no split {split!r} in {name}: available {', '.join(available)}")
    return split


def prepare_synthetic(
    img_size: int, data_dir: str, seed: int = 0, num_examples: int | None = None
) -> synthetic.SyntheticFaces:
    """The synthetic_faces builder for these settings, generated into data_dir if needed."""
    if num_examples is None:
        config = synthetic.synthetic_config(img_size, seed=seed)
    else:
        config = synthetic.synthetic_config(img_size, num_examples, num_examples, seed)
    predefined = {c.name for c in synthetic.SyntheticFaces.BUILDER_CONFIGS}
    # TFDS refuses a custom config object that reuses a predefined config's name.
    builder = synthetic.SyntheticFaces(
        config=config.name if config.name in predefined else config, data_dir=data_dir)
    if not builder.is_prepared():
        log.warning("generating synthetic faces %s in %s (once)", config.name, data_dir)
        # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout (where our
        # results go) and shuffling bars of temporary files: the line above says it all.
        tfds.display_progress_bar(False)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                builder.download_and_prepare()
        finally:
            tfds.display_progress_bar(True)
    return builder


def _synthetic(attrs, img_size, split, data_dir, seed, num_examples) -> _Source:
    chosen = domains.parse_attrs(attrs, renderer.ATTRIBUTES)
    builder = prepare_synthetic(img_size, data_dir, seed, num_examples)
    split = _tfds_split(split, list(builder.info.splits), "synthetic_faces")
    config = builder.builder_config
    # The attributes are a function of (size, seed, split): count domains without reading.
    values = synthetic.balanced_attributes(
        builder.info.splits[split].num_examples, config.seed, split
    )
    labels = domains.labels_from_attributes(
        values[:, [renderer.ATTRIBUTES.index(a) for a in chosen]]
    )
    counts = np.bincount(labels, minlength=2 ** len(chosen)).tolist()
    base = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return _Source(
        domain_names=domains.domain_names(chosen),
        keys=_filter_by_label(base, chosen, len(counts)),
        decode=_decode_bytes,
        counts=counts,
        shuffle_buffer=2048 if img_size <= 128 else 512,
        attrs=chosen,
    )


def _filter_by_label(base: tf.data.Dataset, chosen: list[str], num_domains: int):
    def label_of(example):
        bits = [tf.cast(example["attributes"][a], tf.int32) for a in chosen]
        return tf.add_n([b * 2 ** (len(bits) - 1 - i) for i, b in enumerate(bits)])

    return [
        base.filter(lambda ex, d=d: tf.equal(label_of(ex), d)).map(lambda ex: ex["image"])
        for d in range(num_domains)
    ]


def _celeba(attrs, split, data_dir, num_examples) -> _Source:
    chosen = domains.parse_attrs(attrs, domains.CELEBA_ATTRIBUTES)
    builder = tfds.builder("celeb_a", data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"CelebA is not prepared in {data_dir}: run `tfds build celeb_a --data_dir "
            f"{data_dir}` once on a machine with internet (about 1.4 GB from Google Drive), or "
            "pass --data-dir / L2M_DATA_DIR pointing to a directory that holds celeb_a/"
        )
    split = _tfds_split(split, list(builder.info.splits), "celeb_a")
    base = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    if num_examples is not None:
        base = base.take(num_examples)
    bits = base.map(lambda ex: tf.stack([ex["attributes"][a] for a in chosen])).batch(4096)
    values = np.concatenate(list(bits.as_numpy_iterator()))
    counts = np.bincount(domains.labels_from_attributes(values), minlength=2 ** len(chosen))
    return _Source(
        domain_names=domains.domain_names(chosen),
        keys=_filter_by_label(base, chosen, len(counts)),
        decode=_decode_bytes,
        counts=counts.tolist(),
        shuffle_buffer=4096,
        attrs=chosen,
    )


def _celeba_hq_root(data_dir: str) -> Path:
    """data_dir itself or data_dir/CelebAMask-HQ, holding CelebA-HQ-img/ and the attributes."""
    for root in (Path(data_dir).expanduser(), Path(data_dir).expanduser() / CELEBA_HQ_FOLDER):
        if (root / "CelebAMask-HQ-attribute-anno.txt").is_file():
            return root
    raise FileNotFoundError(
        f"CelebA-HQ not found: put CelebAMask-HQ's CelebA-HQ-img/ (0.jpg ... 29999.jpg) and "
        f"CelebAMask-HQ-attribute-anno.txt in {Path(data_dir).expanduser() / CELEBA_HQ_FOLDER}/ "
        "(or pass --data-dir pointing to the folder that holds them)"
    )


def _folder(root: Path, attrs, split, num_examples) -> _Source:
    root = Path(root).expanduser()
    if root.is_dir() and folders.find_attribute_file(root) is not None:
        files = folders.load_attribute_folder(root, attrs, split)
    else:
        files = folders.load_domain_folders(root, split)
    files = files.limit(num_examples)
    keys = []
    for d in range(len(files.domain_names)):
        rows = np.flatnonzero(files.labels == d)
        keys.append(tf.data.Dataset.from_tensor_slices(
            {"path": np.array([files.paths[i] for i in rows]), "needs_pil": files.needs_pil[rows]}
        ))
    return _Source(
        domain_names=files.domain_names,
        keys=keys,
        decode=_decode_file,
        counts=list(files.per_domain().values()),
        shuffle_buffer=20_000,
        attrs=files.attrs,
        skipped=files.skipped,
    )

"""Synthetic faces rendered into memory: the `l2m train --data synthetic_memory` source.

It needs numpy and PIL only, so `l2m train` also runs where TensorFlow is not installed (a GPU
machine with JAX or PyTorch alone). The faces are those of the `synthetic` TFDS dataset (same
split parameters, see metrics/synthetic.py), rendered once and cached as an .npz under the data
dir. Batches follow the tf.data pipeline's recipe: domains drawn with equal weight, the random
resized crop (p 0.5, scale 0.8-1.0, aspect 0.9-1.1) and the horizontal flip, target labels
drawn uniformly. Batch i is a pure function of (seed, i), so a resumed run skips the batches it
trained on by starting at its step.

Asked for (`--unchanged-region-weight`), batches also carry `unchanged_masks`: 1 where no
trained attribute can change the face (the renderer's own geometry, see ``unchanged_masks``),
cropped and flipped with their images.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from keras_l2mgan.data import default_data_dir, domains
from keras_l2mgan.data.synthetic_faces import renderer
from keras_l2mgan.image_range import to_unit

CHUNK = 500  # faces per rendering job


def _render_chunk(job: tuple[np.ndarray, int]) -> np.ndarray:
    params, img_size = job
    return renderer.render_batch(params, img_size)


def _in_chunks(job, jobs: list, workers: int | None) -> np.ndarray:
    """`job` over `jobs` (a process pool when several workers), results concatenated."""
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        with Pool(workers) as pool:
            return np.concatenate(pool.map(job, jobs))
    return np.concatenate([job(one) for one in jobs])


def _cached_arrays(path: Path, compute: Callable[[], dict[str, np.ndarray]]
                   ) -> dict[str, np.ndarray]:
    """The arrays stored at `path`, or else `compute()`'s, written there atomically first."""
    from keras_l2mgan.atomic import write_file_atomic

    if path.is_file():
        with np.load(path) as stored:
            return dict(stored)
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda handle: np.savez(handle, **arrays))
    return arrays


def rendered_faces(num: int, img_size: int, cache_dir: Path, workers: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (num, S, S, 3) train faces and their parameters, rendered once and cached."""
    from keras_l2mgan.metrics import synthetic

    def render() -> dict[str, np.ndarray]:
        params = synthetic.split_params("train", num)
        jobs = [(params[i:i + CHUNK], img_size) for i in range(0, num, CHUNK)]
        return {"images": _in_chunks(_render_chunk, jobs, workers), "params": params}

    stored = _cached_arrays(cache_dir / f"train_{num}_{img_size}px.npz", render)
    if "params" not in stored:  # cache files written by e1eea17..5ce54ff hold the pixels only
        stored["params"] = synthetic.split_params("train", num)
    return stored["images"], stored["params"]


def _mask_job(job: tuple[np.ndarray, tuple[str, ...], int]) -> np.ndarray:
    params, attrs, img_size = job
    changeable = np.zeros((len(params), img_size, img_size), bool)
    for i, face in enumerate(params):
        for attr in attrs:
            changeable[i] |= renderer.attribute_mask(face, attr, img_size)
    # 1 px of slack around what may change: a 64 px generator's edges are soft.
    grown = ndimage.binary_dilation(changeable, structure=np.ones((1, 3, 3), bool))
    return (~grown).astype(np.uint8)


def unchanged_masks(params: np.ndarray, attrs: list[str], img_size: int, cache_dir: Path,
                    workers: int | None = None) -> np.ndarray:
    """uint8 (N, S, S): 1 where flipping none of `attrs` changes the rendered face (the
    complement of the union of ``renderer.attribute_mask``, grown by 1 px), cached as .npz."""
    path = cache_dir / f"unchanged_{len(params)}_{img_size}px_{'_'.join(attrs).lower()}.npz"
    jobs = [(params[i:i + CHUNK], tuple(attrs), img_size) for i in range(0, len(params), CHUNK)]
    return _cached_arrays(path, lambda: {"masks": _in_chunks(_mask_job, jobs, workers)})["masks"]


def random_crop_box(size: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A box of 80-100 % of the area with aspect 0.9-1.1 (left, top, right, bottom)."""
    area = rng.uniform(0.8, 1.0) * size * size
    aspect = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    width = min(size, math.sqrt(area * aspect))
    height = min(size, math.sqrt(area / aspect))
    left = rng.uniform(0, size - width)
    top = rng.uniform(0, size - height)
    return (left, top, left + width, top + height)


def resize_box(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The box of a uint8 (S, S[, C]) image, resized back to S x S (bilinear)."""
    size = image.shape[0]
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box))


def source_probabilities(weights, present: list[int]) -> np.ndarray | None:
    """The chance of each present domain to be drawn as a source; None when all are equal, so
    equal weights draw exactly the default stream."""
    if weights is None:
        return None
    chosen = np.array([float(weights[d]) for d in present])
    if not chosen.sum() > 0:
        raise ValueError("--domain-weights gives weight 0 to every domain that has images")
    return None if np.all(chosen == chosen[0]) else chosen / chosen.sum()


@dataclasses.dataclass
class MemoryBatches:
    """Endless domain-balanced batches {images, labels, target_labels} from uint8 faces, plus
    {unchanged_masks} (float32 (B, S, S, 1)) when the faces' masks are given."""

    images: np.ndarray
    labels: np.ndarray
    num_domains: int
    batch_size: int
    seed: int = 0
    augment: bool = True
    start: int = 0
    masks: np.ndarray | None = None  # uint8 (N, S, S), 1 where no trained attribute changes
    domain_weights: tuple[float, ...] | None = None  # source-domain draw weights (None: equal)

    def __post_init__(self) -> None:
        self.by_domain = [np.flatnonzero(self.labels == d) for d in range(self.num_domains)]
        self.present = [d for d in range(self.num_domains) if len(self.by_domain[d])]
        self.source_probabilities = source_probabilities(self.domain_weights, self.present)

    def skip(self, steps: int) -> MemoryBatches:
        """The same stream, starting `steps` batches later (tf.data's skip, for resuming)."""
        return dataclasses.replace(self, start=self.start + steps)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        domain = rng.choice(self.present, self.batch_size, p=self.source_probabilities)
        picks = np.array([rng.choice(self.by_domain[d]) for d in domain])
        images, masks = [], []
        for i in picks:
            image = self.images[i]
            mask = None if self.masks is None else self.masks[i] * np.uint8(255)
            if self.augment and rng.random() < 0.5:
                box = random_crop_box(image.shape[0], rng)
                image = resize_box(image, box)
                mask = None if mask is None else resize_box(mask, box)
            if self.augment and rng.random() < 0.5:
                image = image[:, ::-1]
                mask = None if mask is None else mask[:, ::-1]
            images.append(image)
            masks.append(mask)
        batch = {"images": to_unit(np.stack(images)),
                 "labels": domain.astype(np.int32),
                 "target_labels": rng.integers(0, self.num_domains, self.batch_size
                                               ).astype(np.int32)}
        if self.masks is not None:
            batch["unchanged_masks"] = (np.stack(masks)[..., None] / 255).astype(np.float32)
        return batch

    def __iter__(self):
        index = self.start
        while True:
            yield self.batch(index)
            index += 1

    def as_tf_dataset(self):
        """The stream as a tf.data.Dataset of batch dicts with static shapes, for fit() on
        TensorFlow: batch i drawn by ``batch(i)`` in a numpy_function.

        Measured on a mini_64 step (2 cores): a plain generator (Keras wraps it with
        tf.data's from_generator) took 2.73 s a step, this 1.37 s, the same batches held as
        tensors 1.36 s."""
        import tensorflow as tf

        first = self.batch(self.start)
        keys = list(first)

        def draw(index):
            batch = self.batch(int(index))
            return [batch[key] for key in keys]

        def as_dict(index):
            values = tf.numpy_function(draw, [index],
                                       [tf.as_dtype(first[key].dtype) for key in keys])
            return {key: tf.ensure_shape(value, first[key].shape)
                    for key, value in zip(keys, values, strict=True)}

        return tf.data.Dataset.range(self.start, 2**62).map(as_dict).prefetch(2)


@dataclasses.dataclass
class MemoryDatasetInfo:
    """What ``build_memory_dataset`` returns: the fields `l2m train` reads of DatasetInfo."""

    dataset: MemoryBatches
    domain_names: list[str]
    num_examples: int
    images_per_domain: dict[str, int]
    source: str = "synthetic_memory"
    img_size: int = 64
    batch_size: int = 8
    attrs: list[str] = dataclasses.field(default_factory=list)


def build_memory_dataset(attrs: str | list[str] = "smiling", img_size: int = 64,
                         batch_size: int = 8, seed: int = 0, data_dir: str | None = None,
                         num_examples: int | None = None, unchanged_regions: bool = False,
                         domain_weights: tuple[float, ...] | None = None
                         ) -> MemoryDatasetInfo:
    """The synthetic training faces in memory, as endless batches, domains drawn equally or by
    `domain_weights` (with `unchanged_regions`, each batch also has the faces'
    `unchanged_masks`)."""
    from keras_l2mgan.metrics import synthetic

    attrs = domains.parse_attrs(attrs, renderer.ATTRIBUTES)
    names = domains.domain_names(attrs)
    domains.check_domain_weights(domain_weights, names)  # before the faces are rendered
    data_dir = data_dir or default_data_dir()
    num = num_examples or renderer.DEFAULT_NUM_TRAIN
    cache_dir = Path(data_dir) / "synthetic_memory"
    images, params = rendered_faces(num, img_size, cache_dir)
    labels = domains.labels_from_attributes(synthetic.attribute_values(params, attrs))
    counts = np.bincount(labels, minlength=len(names))
    masks = unchanged_masks(params, list(attrs), img_size, cache_dir) if unchanged_regions else None
    return MemoryDatasetInfo(
        dataset=MemoryBatches(images, labels, len(names), batch_size, seed, masks=masks,
                              domain_weights=domain_weights),
        domain_names=list(names), num_examples=num,
        images_per_domain={n: int(c) for n, c in zip(names, counts, strict=True)},
        img_size=img_size, batch_size=batch_size, attrs=list(attrs))


def held_out_faces(attrs: str | list[str], img_size: int, count: int) -> dict[str, np.ndarray]:
    """`count` held-out faces {images in [-1, 1], labels}, the domains taking turns."""
    from keras_l2mgan.metrics import synthetic

    attrs = domains.parse_attrs(attrs, renderer.ATTRIBUTES)
    params = synthetic.split_params("test", 64)
    labels = domains.labels_from_attributes(synthetic.attribute_values(params, attrs))
    num_domains = 2 ** len(attrs)
    by_domain = [list(np.flatnonzero(labels == d)) for d in range(num_domains)]
    picks = [by_domain[i % num_domains][i // num_domains] for i in range(count)]
    images = synthetic.render(params[picks], img_size)
    return {"images": to_unit(images),
            "labels": labels[picks].astype(np.int32)}

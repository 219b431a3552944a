"""Synthetic faces rendered into memory: the `l2m train --data synthetic_memory` source.

It needs numpy and PIL only, so `l2m train` also runs where TensorFlow is not installed (a GPU
machine with JAX or PyTorch alone). The faces are those of the `synthetic` TFDS dataset (same
split parameters, see metrics/synthetic.py), rendered once and cached as an .npz under the data
dir. Batches follow the tf.data pipeline's recipe: domains drawn with equal weight, the random
resized crop (p 0.5, scale 0.8-1.0, aspect 0.9-1.1) and the horizontal flip, target labels
drawn uniformly. Batch i is a pure function of (seed, i), so a resumed run skips the batches it
trained on by starting at its step.
"""

from __future__ import annotations

import dataclasses
import math
import os
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from keras_l2mgan.data import default_data_dir, domains
from keras_l2mgan.data.synthetic_faces import renderer
from keras_l2mgan.image_range import to_unit

CHUNK = 500  # faces per rendering job


def _render_chunk(job: tuple[np.ndarray, int]) -> np.ndarray:
    params, img_size = job
    return renderer.render_batch(params, img_size)


def rendered_faces(num: int, img_size: int, cache_dir: Path, workers: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (num, S, S, 3) train faces and their parameters, rendered once and cached."""
    from keras_l2mgan.atomic import write_file_atomic
    from keras_l2mgan.metrics import synthetic

    path = cache_dir / f"train_{num}_{img_size}px.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["images"], stored["params"]
    params = synthetic.split_params("train", num)
    jobs = [(params[i:i + CHUNK], img_size) for i in range(0, num, CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers > 1:
        with Pool(workers) as pool:
            images = np.concatenate(pool.map(_render_chunk, jobs))
    else:
        images = np.concatenate([_render_chunk(job) for job in jobs])
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda handle: np.savez(handle, images=images, params=params))
    return images, params


def random_resized_crop(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of 80-100 % of the area with aspect 0.9-1.1, resized back (bilinear)."""
    size = image.shape[0]
    area = rng.uniform(0.8, 1.0) * size * size
    aspect = math.exp(rng.uniform(math.log(0.9), math.log(1.1)))
    width = min(size, math.sqrt(area * aspect))
    height = min(size, math.sqrt(area / aspect))
    left = rng.uniform(0, size - width)
    top = rng.uniform(0, size - height)
    box = (left, top, left + width, top + height)
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=box))


@dataclasses.dataclass
class MemoryBatches:
    """Endless domain-balanced batches {images, labels, target_labels} from uint8 faces."""

    images: np.ndarray
    labels: np.ndarray
    num_domains: int
    batch_size: int
    seed: int = 0
    augment: bool = True
    start: int = 0

    def __post_init__(self) -> None:
        self.by_domain = [np.flatnonzero(self.labels == d) for d in range(self.num_domains)]

    def skip(self, steps: int) -> MemoryBatches:
        """The same stream, starting `steps` batches later (tf.data's skip, for resuming)."""
        return dataclasses.replace(self, start=self.start + steps)

    def batch(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, index])
        present = [d for d in range(self.num_domains) if len(self.by_domain[d])]
        domain = rng.choice(present, self.batch_size)
        picks = np.array([rng.choice(self.by_domain[d]) for d in domain])
        images = []
        for i in picks:
            image = self.images[i]
            if self.augment and rng.random() < 0.5:
                image = random_resized_crop(image, rng)
            if self.augment and rng.random() < 0.5:
                image = image[:, ::-1]
            images.append(image)
        return {"images": to_unit(np.stack(images)),
                "labels": domain.astype(np.int32),
                "target_labels": rng.integers(0, self.num_domains, self.batch_size
                                              ).astype(np.int32)}

    def __iter__(self):
        index = self.start
        while True:
            yield self.batch(index)
            index += 1


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
                         num_examples: int | None = None) -> MemoryDatasetInfo:
    """The synthetic training faces in memory, as endless balanced batches."""
    from keras_l2mgan.metrics import synthetic

    attrs = domains.parse_attrs(attrs, renderer.ATTRIBUTES)
    names = domains.domain_names(attrs)
    data_dir = data_dir or default_data_dir()
    num = num_examples or renderer.DEFAULT_NUM_TRAIN
    images, params = rendered_faces(num, img_size, Path(data_dir) / "synthetic_memory")
    labels = domains.labels_from_attributes(synthetic.attribute_values(params, attrs))
    counts = np.bincount(labels, minlength=len(names))
    return MemoryDatasetInfo(
        dataset=MemoryBatches(images, labels, len(names), batch_size, seed),
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

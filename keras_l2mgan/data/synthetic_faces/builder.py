"""TFDS builder `synthetic_faces`: procedural faces with CelebA-style attributes, built offline.

    import keras_l2mgan.data  # registers the builder
    tfds.load("synthetic_faces/64px", split="train", data_dir=...)

Every example stores its render parameters, so its ground-truth edit can be re-rendered:
``render(flip(example["params"], "Smiling"))``. TFDS writes into a temporary directory and
renames it when the split files are complete, so an interrupted build leaves nothing that
loads as a dataset.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from keras_l2mgan.data.synthetic_faces import renderer as faces
from keras_l2mgan.data.synthetic_faces.renderer import (  # noqa: F401  (re-exported)
    DEFAULT_NUM_TEST,
    DEFAULT_NUM_TRAIN,
    balanced_attributes,
    example_params,
)

_CHUNK = 500
_PARALLEL_FROM = 2_000  # below this, worker start-up costs more than it saves


@dataclasses.dataclass(eq=False)
class SyntheticFacesConfig(tfds.core.BuilderConfig):
    """Image size, split sizes and the seed that fixes every face."""

    img_size: int = 64
    num_train: int = DEFAULT_NUM_TRAIN
    num_test: int = DEFAULT_NUM_TEST
    seed: int = 0


def synthetic_config(
    img_size: int = 64,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_test: int = DEFAULT_NUM_TEST,
    seed: int = 0,
) -> SyntheticFacesConfig:
    """The named config for these settings: `64px` for the defaults, else `64px_n200_t20_s0`."""
    if img_size < 8 or num_train < 1 or num_test < 1:
        raise ValueError(
            f"synthetic faces need img_size >= 8 and at least one example per split, got "
            f"img_size={img_size}, num_train={num_train}, num_test={num_test}"
        )
    name = f"{img_size}px"
    if (num_train, num_test, seed) != (DEFAULT_NUM_TRAIN, DEFAULT_NUM_TEST, 0):
        name += f"_n{num_train}_t{num_test}_s{seed}"
    return SyntheticFacesConfig(
        name=name,
        description=f"{img_size} px faces, {num_train} train / {num_test} test, seed {seed}",
        img_size=img_size,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
    )


def _encode_chunk(job: tuple[int, str, int, np.ndarray, int]) -> list[tuple[np.ndarray, bytes]]:
    """Render and PNG-encode one chunk (runs in a worker process: numpy + PIL only)."""
    seed, split, start, attributes, img_size = job
    out = []
    for offset, attrs in enumerate(attributes):
        params = example_params(seed, split, start + offset, attrs)
        buffer = io.BytesIO()
        Image.fromarray(faces.render(params, img_size)).save(buffer, format="PNG", compress_level=1)
        out.append((params, buffer.getvalue()))
    return out


class SyntheticFaces(tfds.core.GeneratorBasedBuilder):
    """Procedural faces with Smiling, Male, Young, Eyeglasses, Bangs and Blond_Hair labels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [synthetic_config(size) for size in (64, 128, 256)]

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.img_size
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(size, size, 3), encoding_format="png"),
                    "attributes": tfds.features.FeaturesDict(
                        {name: tfds.features.Tensor(shape=(), dtype=np.bool_)
                         for name in faces.ATTRIBUTES}
                    ),
                    "params": tfds.features.Tensor(shape=(faces.NUM_PARAMS,), dtype=np.float32),
                    "index": tfds.features.Tensor(shape=(), dtype=np.int64),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, num: int) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        attributes = balanced_attributes(num, config.seed, split)
        jobs = [
            (config.seed, split, start, attributes[start : start + _CHUNK], config.img_size)
            for start in range(0, num, _CHUNK)
        ]
        workers = min(os.cpu_count() or 1, len(jobs))
        if num < _PARALLEL_FROM or workers < 2:
            yield from _numbered(map(_encode_chunk, jobs))
            return
        # spawn, not fork: this process already runs TensorFlow's threads.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            yield from _numbered(pool.map(_encode_chunk, jobs))


def _numbered(chunks) -> Iterator[tuple[int, dict]]:
    index = 0
    for chunk in chunks:
        for params, png in chunk:
            yield index, {
                "image": io.BytesIO(png),
                "attributes": {
                    name: bool(params[i] >= 0.5) for i, name in enumerate(faces.ATTRIBUTES)
                },
                "params": params,
                "index": index,
            }
            index += 1

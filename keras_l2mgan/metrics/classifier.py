"""An independent attribute classifier for synthetic faces: a small Keras CNN.

It judges edits (does the edit show the target attribute?) and gives the features for
"FID (classifier features)" when InceptionV3 weights are not available. It shares nothing with
the GAN. Built from stock Keras layers, so it trains and loads on any backend.

A classifier directory holds ``classifier.keras`` and ``classifier.json`` (attributes, image
size, training settings and the accuracy on the synthetic test split).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from keras_l2mgan.atomic import atomic_directory
from keras_l2mgan.data.synthetic_faces import renderer
from keras_l2mgan.errors import CorruptFileError
from keras_l2mgan.image_range import SCALE
from keras_l2mgan.metrics import synthetic

MODEL_FILE = "classifier.keras"
INFO_FILE = "classifier.json"
CLASSIFIER_FILES = (MODEL_FILE, INFO_FILE)
CLASSIFIER_KIND = "classifier directory"
FEATURES_LAYER = "features"


def build_classifier(img_size: int, num_attrs: int, width: int = 16):
    """uint8-range images (N, S, S, 3) -> attribute logits (N, num_attrs).

    Four stride-2 stages of two 3x3 convolutions with batch norm, then a 128-wide feature
    layer on the flattened map (the penultimate features), one logit per attribute.
    """
    import keras
    from keras import layers

    inputs = keras.Input((img_size, img_size, 3), name="images")
    x = layers.Rescaling(1 / SCALE, offset=-1.0)(inputs)  # image_range.to_unit, as a layer
    x = layers.RandomFlip("horizontal")(x)
    for stage, channels in enumerate((width, width * 2, width * 4, width * 4)):
        for name, stride in (("down", 2), ("conv", 1)):
            x = layers.Conv2D(channels, 3, strides=stride, padding="same", use_bias=False,
                              name=f"stage{stage}_{name}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"stage{stage}_{name}_bn")(x)
            x = layers.ReLU()(x)
    # Flatten, not global pooling: where a shape sits (mouth, eyes, hairline) matters.
    x = layers.Flatten()(x)
    features = layers.Dense(128, activation="relu", name=FEATURES_LAYER)(x)
    logits = layers.Dense(num_attrs, name="logits")(features)
    return keras.Model(inputs, logits, name="attribute_classifier")


class AttributeClassifier:
    """A trained classifier: attribute probabilities, accuracy and penultimate features."""

    def __init__(self, model, attrs: list[str], img_size: int, info: dict | None = None):
        import keras

        self.model = model
        self.attrs = list(attrs)
        self.img_size = img_size
        self.info = dict(info or {})
        self.feature_model = keras.Model(model.input, model.get_layer(FEATURES_LAYER).output)

    @classmethod
    def load(cls, directory: str | Path) -> AttributeClassifier:
        import keras

        directory = Path(directory)
        for name in (MODEL_FILE, INFO_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"{directory} is not an attribute classifier ({name} is missing); train one "
                    f"with `l2m classifier train -o {directory}`")
        try:
            info = json.loads((directory / INFO_FILE).read_text())
            attrs, img_size = info["attrs"], info["img_size"]
            if (not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs)
                    or isinstance(img_size, bool) or not isinstance(img_size, int)
                    or not 16 <= img_size <= 1024):
                raise ValueError("attrs must be a list of names and img_size 16 to 1024")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise CorruptFileError(f"{directory / INFO_FILE} is damaged ({error}); retrain with "
                                   f"`l2m classifier train -o DIR`") from None
        try:  # safe mode (the default): a tampered file cannot run code, only fail to load
            model = keras.saving.load_model(directory / MODEL_FILE, compile=False)
        except Exception as error:  # noqa: BLE001 - zip, h5, config and safe-mode errors alike
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise CorruptFileError(f"{directory / MODEL_FILE} cannot be loaded ({reason}); "
                                   "retrain with `l2m classifier train -o DIR`") from None
        shape = tuple(getattr(model, "input_shape", ()) or ())
        outputs = tuple(getattr(model, "output_shape", ()) or ())
        if shape[1:] != (img_size, img_size, 3) or outputs[-1:] != (len(attrs),):
            raise CorruptFileError(
                f"{directory / MODEL_FILE} takes {shape[1:]} and gives {outputs[1:]}, but "
                f"{INFO_FILE} says {img_size}x{img_size}x3 images and {len(attrs)} attributes: "
                "the two files do not belong together; retrain the classifier")
        try:
            return cls(model, attrs, img_size, info)
        except ValueError as error:  # the features layer is missing
            raise CorruptFileError(f"{directory / MODEL_FILE} is not an attribute classifier "
                                   f"({str(error).splitlines()[0]})") from None

    def save(self, directory: str | Path) -> Path:
        """Write the model and info to `directory` atomically (temp dir, then rename)."""
        with atomic_directory(directory, CLASSIFIER_KIND, CLASSIFIER_FILES) as tmp:
            self._without_optimizer().save(tmp / MODEL_FILE)
            info = {**self.info, "attrs": self.attrs, "img_size": self.img_size}
            (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        return Path(directory)

    def _without_optimizer(self):
        """A copy with the same weights and no optimizer state (a third of the file size)."""
        import keras

        if getattr(self.model, "optimizer", None) is None:
            return self.model
        clean = keras.models.clone_model(self.model)
        clean.set_weights(self.model.get_weights())
        return clean

    def _resized(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got shape {images.shape}")
        if images.shape[1:3] == (self.img_size, self.img_size):
            return images.astype(np.float32)
        from PIL import Image

        size = (self.img_size, self.img_size)
        return np.stack([np.asarray(Image.fromarray(np.asarray(im, np.uint8)).resize(
            size, Image.Resampling.BILINEAR)) for im in images]).astype(np.float32)

    def _run(self, model, images, batch_size: int) -> np.ndarray:
        from keras import ops

        x = self._resized(images)
        outputs = [ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
                   for i in range(0, len(x), batch_size)]
        return np.concatenate(outputs).astype(np.float64)

    def probabilities(self, images, batch_size: int = 256) -> np.ndarray:
        """P(attribute present), (N, len(attrs)), for uint8-range images of any square size."""
        logits = self._run(self.model, images, batch_size)
        return 1.0 / (1.0 + np.exp(-logits))

    def features(self, images, batch_size: int = 256) -> np.ndarray:
        """Penultimate-layer features (N, 128)."""
        return self._run(self.feature_model, images, batch_size)

    def accuracy(self, images, values) -> dict[str, float]:
        """Per-attribute accuracy against 0/1 values (N, len(attrs))."""
        predicted = self.probabilities(images) >= 0.5
        correct = predicted == (np.asarray(values) > 0)
        return {a: float(c) for a, c in zip(self.attrs, correct.mean(axis=0), strict=True)}


def train_classifier(attrs: list[str] | None = None, img_size: int = 64, steps: int = 4000,
                     batch_size: int = 64, learning_rate: float = 1e-3,
                     num_train: int | None = None, num_test: int | None = None, seed: int = 0,
                     log=print) -> AttributeClassifier:
    """Train on the synthetic train split; evaluate on the real synthetic test images.

    attrs default to all synthetic attributes. Each step draws a random batch; the learning
    rate falls along a cosine to zero.
    """
    import keras

    attrs = [renderer.ATTRIBUTES[renderer.attribute_index(a)] for a in
             (attrs or renderer.ATTRIBUTES)]
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch size must be >= 1, got {steps}, {batch_size}")
    start = time.time()
    train_params = synthetic.split_params("train", num_train, seed)
    train_images = synthetic.render(train_params, img_size)
    train_values = synthetic.attribute_values(train_params, attrs).astype(np.float32)
    log(f"rendered {len(train_images)} training faces at {img_size} px "
        f"in {time.time() - start:.0f} s")

    keras.utils.set_random_seed(seed)
    model = build_classifier(img_size, len(attrs))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    rng = np.random.default_rng(seed)
    report_every = max(1, steps // 10)
    start = time.time()
    for step in range(1, steps + 1):
        index = rng.choice(len(train_images), min(batch_size, len(train_images)), replace=False)
        if step % report_every == 1:
            model.reset_metrics()
        loss, accuracy = model.train_on_batch(train_images[index], train_values[index])
        if step % report_every == 0 or step == steps:
            log(f"step {step}/{steps}: loss {float(loss):.4f}, "
                f"train accuracy {float(accuracy):.4f} ({time.time() - start:.0f} s)")
    train_seconds = time.time() - start

    classifier = AttributeClassifier(model, attrs, img_size)
    test_params = synthetic.split_params("test", num_test, seed)
    test_images = synthetic.render(test_params, img_size)
    test_accuracy = classifier.accuracy(test_images,
                                        synthetic.attribute_values(test_params, attrs))
    classifier.info = {
        "attrs": attrs, "img_size": img_size, "steps": steps, "batch_size": batch_size,
        "learning_rate": learning_rate, "num_train": len(train_images),
        "num_test": len(test_params), "seed": seed, "train_seconds": round(train_seconds, 1),
        "backend": keras.backend.backend(), "test_accuracy": test_accuracy,
        "min_test_accuracy": min(test_accuracy.values()),
        "feature_scale": feature_scale(classifier.features(test_images)),
    }
    return classifier



def feature_scale(features: np.ndarray) -> float:
    """1 / RMS of real faces' features: FID/KID on scaled features have Inception-like
    magnitudes (KID's cubic kernel is not scale-free)."""
    return float(1.0 / max(np.sqrt(np.mean(np.square(features))), 1e-12))

"""Does a model keep the face, or swap it for another and back? Apply the alpha-0 edit (the
reconstruction G(x, E(x))) one, two and three times to synthetic test faces.

    python tools/alpha0_repeat.py saved_models/smiling_male/1

A generator that keeps the face converges (each pass changes less); one that meets the cycle loss
by swapping faces oscillates: twice comes back closer to the input than once, and the per-image
brightness of the reconstruction no longer follows the input's. TensorFlow only (it runs the
export's serving_default signature).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))))


def main(argv: list[str]) -> int:
    import tensorflow as tf

    from keras_l2mgan.data import domains
    from keras_l2mgan.metrics import synthetic

    version_dir = Path(argv[0])
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    config = json.loads((version_dir / "assets.extra" / "config.json").read_text())
    names = config.get("domain_names") or config["config"]["domain_names"]
    attrs = [a.removeprefix("not_") for a in names[0].split("+")]
    params = synthetic.split_params("test", 64)
    faces = synthetic.render(params, config.get("img_size", 64))
    source = domains.labels_from_attributes(synthetic.attribute_values(params, attrs))

    def alpha0(images: np.ndarray) -> np.ndarray:
        labels = tf.constant(source.astype("int32"))
        return signature(images=tf.constant(images), source_domain=labels, target_domain=labels,
                         alpha=tf.zeros(len(images)))["images"].numpy()

    once = alpha0(faces)
    twice = alpha0(once)
    thrice = alpha0(twice)
    brightness = faces.mean(axis=(1, 2, 3))
    print(f"once vs input:   {psnr(once, faces):.2f} dB")
    print(f"twice vs input:  {psnr(twice, faces):.2f} dB   (twice vs once {psnr(twice, once):.2f})")
    print(f"thrice vs once:  {psnr(thrice, once):.2f} dB")
    print("brightness correlation with the input: once "
          f"{np.corrcoef(brightness, once.mean(axis=(1, 2, 3)))[0, 1]:.3f}, twice "
          f"{np.corrcoef(brightness, twice.mean(axis=(1, 2, 3)))[0, 1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

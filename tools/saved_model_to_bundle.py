"""Recover a model bundle (config.json + model.weights.h5) from a SavedModel of `l2m export`.

    python tools/saved_model_to_bundle.py saved_models/smiling/1 /tmp/smiling_bundle

The export tracks the L2MGAN as the attribute `model` of its root module, so the SavedModel's
variables are a TensorFlow checkpoint whose keys are attribute paths from the model
(`model/discriminator/blocks/0/conv1/_kernel/.ATTRIBUTES/VARIABLE_VALUE`). A fresh L2MGAN built
from `assets.extra/config.json` gets every variable back by following its key's path (not by
position; `tf.train.Checkpoint.read` does not restore Keras 3 variables); every variable of the
model must be found exactly once. The tool then checks the recovered model against
the SavedModel's own `edit_float` signature on random faces, and writes the bundle atomically.

What it cannot recover: the training-time (non-EMA) generator and style encoder and both
optimizers' state; the SavedModel holds the EMA networks and the discriminator only. A run resumed
from the bundle (`l2m train --init-from BUNDLE`) starts those fresh.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _follow(root, attribute_path: list[str]):
    node = root
    for part in attribute_path:
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def assign_from_checkpoint(model, checkpoint_prefix: Path) -> None:
    """Assign each variable of `model` the value saved under its attribute path."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint_prefix))
    suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
    assigned = set()
    for key in sorted(reader.get_variable_to_shape_map()):
        if not key.startswith("model/") or not key.endswith(suffix):
            continue
        variable = _follow(model, key[len("model/"):-len(suffix)].split("/"))
        value = reader.get_tensor(key)
        if tuple(variable.shape) != value.shape:
            raise SystemExit(f"{key}: saved {value.shape}, model {tuple(variable.shape)}")
        variable.assign(value)
        assigned.add(id(variable))
    missing = [v.path for v in model.variables if id(v) not in assigned]
    if missing:
        raise SystemExit(f"{len(missing)} model variables not in the SavedModel, e.g. {missing[0]}")


def recover(saved_model_dir: Path, bundle_dir: Path, check_batch: int = 4) -> float:
    """Write the bundle; return the max abs difference of edit_float against the SavedModel."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_l2mgan.bundle import bundle_metadata, save_bundle
    from keras_l2mgan.config import L2MConfig
    from keras_l2mgan.model import L2MGAN

    if keras.backend.backend() != "tensorflow":
        raise SystemExit("run with KERAS_BACKEND=tensorflow (the SavedModel is a TF checkpoint)")
    config = L2MConfig.load(saved_model_dir / "assets.extra" / "config.json")
    model = L2MGAN(config)
    assign_from_checkpoint(model, saved_model_dir / "variables" / "variables")

    rng = np.random.default_rng(0)
    size, domains = config.img_size, config.num_domains
    x = rng.uniform(-1, 1, (check_batch, size, size, 3)).astype("float32")
    source = rng.integers(0, domains, check_batch).astype("int32")
    target = rng.integers(0, domains, check_batch).astype("int32")
    alpha = rng.uniform(0, 1.25, check_batch).astype("float32")
    served = tf.saved_model.load(str(saved_model_dir)).signatures["edit_float"](
        images=tf.constant(x), source_domain=tf.constant(source),
        target_domain=tf.constant(target), alpha=tf.constant(alpha))["images"].numpy()
    ours = keras.ops.convert_to_numpy(model.edit(x, source, target, alpha))
    difference = float(np.abs(served - ours).max())
    if difference > 1e-4:
        raise SystemExit(f"recovered model differs from the SavedModel by {difference:.2e}")
    save_bundle(model, bundle_dir, metadata=bundle_metadata(source=f"SavedModel {saved_model_dir}"))
    return difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model_dir", type=Path, help="e.g. saved_models/smiling/1")
    parser.add_argument("bundle_dir", type=Path, help="where to write the bundle (must not exist)")
    args = parser.parse_args(argv)
    if args.bundle_dir.exists():
        parser.error(f"{args.bundle_dir} exists; pick a new directory")
    difference = recover(args.saved_model_dir, args.bundle_dir)
    print(f"wrote {args.bundle_dir} (edit_float max abs difference {difference:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train L2M-GAN on synthetic faces held in memory, for a wall-clock budget, without TensorFlow.

Why this exists: `l2m train` feeds batches through tf.data and logs through tf.summary, so it
needs TensorFlow. The GPU machine we borrow for demo models has JAX and PyTorch but no
TensorFlow (and no internet to install it). This script keeps everything else the same - the
L2MGAN model, its losses, the JAX/torch trainers, EMA, the bundle format - and replaces only the
data pipeline: faces are rendered once into a numpy array, and batches are drawn from it
domain-balanced with random horizontal flips (the pipeline's random crop is left out).

Every `--report-every` seconds it writes a sample grid, a bundle of the EMA weights and a quick
edit score: the shipped attribute classifier's accuracy on the target attributes of alpha-1
edits of 256 test faces.

    KERAS_BACKEND=jax python tools/train_in_memory.py --attrs smiling --seconds 400 --out runs/x
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("KERAS_BACKEND", "jax")

CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "classifiers" / "synthetic_faces_64px"


def _render_chunk(job):
    from keras_l2mgan.metrics import synthetic

    params, img_size = job
    return synthetic.render(params, img_size)


def render_split(split: str, num: int, img_size: int, workers: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and params of the first `num` faces of a synthetic split (seed 0)."""
    from keras_l2mgan.metrics import synthetic

    params = synthetic.split_params(split, num)
    chunks = [(params[i:i + 500], img_size) for i in range(0, num, 500)]
    with Pool(workers) as pool:
        images = np.concatenate(pool.map(_render_chunk, chunks))
    return images, params


def cached_faces(cache: Path, split: str, num: int, img_size: int, workers: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """render_split, cached as an .npz (written to a temp file, then renamed)."""
    path = cache / f"{split}_{num}_{img_size}px.npz"
    if path.is_file():
        stored = np.load(path)
        return stored["images"], stored["params"]
    images, params = render_split(split, num, img_size, workers)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, images=images, params=params)
    tmp.replace(path)
    return images, params


class BalancedBatches:
    """Endless batches {images, labels, target_labels}: each domain equally often."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_domains: int,
                 batch_size: int, seed: int):
        self.images, self.labels = images, labels
        self.by_domain = [np.flatnonzero(labels == d) for d in range(num_domains)]
        self.num_domains, self.batch_size = num_domains, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rng = self.rng
        domains = rng.integers(0, self.num_domains, self.batch_size)
        index = np.array([rng.choice(self.by_domain[d]) for d in domains])
        x = self.images[index].astype(np.float32) / 127.5 - 1.0
        flips = rng.random(self.batch_size) < 0.5
        x[flips] = x[flips, :, ::-1]
        target = rng.integers(0, self.num_domains, self.batch_size)
        return {"images": x, "labels": domains.astype(np.int32),
                "target_labels": target.astype(np.int32)}


def edit_score(model, classifier, images, params, attrs) -> dict[str, float]:
    """Classifier accuracy of the target attributes of alpha-1 edits to every other domain."""
    from keras_l2mgan.data import domains
    from keras_l2mgan.editors import KerasEditor
    from keras_l2mgan.metrics import synthetic

    editor = KerasEditor(model)  # uint8 in and out, as `l2m eval` edits
    source = domains.labels_from_attributes(synthetic.attribute_values(params, attrs))
    num_domains = 2 ** len(attrs)
    column = [classifier.attrs.index(a) for a in attrs]
    alpha = np.ones(len(images), np.float32)
    scores = {}
    for shift in range(1, num_domains):
        target = (source + shift) % num_domains
        edited = editor.edit(images, source, target, alpha)
        predicted = classifier.probabilities(edited)[:, column] >= 0.5
        wanted = np.array([domains.label_bits(int(t), len(attrs)) for t in target]) > 0
        scores[f"shift{shift}_all_attrs"] = float((predicted == wanted).all(axis=1).mean())
        for i, a in enumerate(attrs):
            scores[f"shift{shift}_{a}"] = float((predicted[:, i] == wanted[:, i]).mean())
    scores["mean_all_attrs"] = float(np.mean(
        [v for k, v in scores.items() if k.endswith("_all_attrs")]))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attrs", default="smiling", help="comma-separated attributes")
    parser.add_argument("--preset", default="mini_64")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--detach-style-target", action=argparse.BooleanOptionalAction,
                        default=True)
    parser.add_argument("--seconds", type=float, default=400.0, help="training wall-time budget")
    parser.add_argument("--max-steps", type=int, default=10**9)
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--num-train", type=int, default=20_000)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "keras_l2mgan" / "faces"),
                        help="rendered-face cache (per user: never a fixed path in shared /tmp)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", help="bundle to start from (fresh optimizer state)")
    parser.add_argument("--out", help="run directory (required unless --prepare-only)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="render the face caches and exit (before starting parallel runs)")
    args = parser.parse_args(argv)

    import keras

    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.data import domains
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.losses import LossWeights
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.synthetic import attribute_values
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training.samples import sample_grid, write_png

    attrs = domains.parse_attrs(args.attrs, renderer.ATTRIBUTES)
    names = domains.domain_names(attrs)
    base = get_preset(args.preset)
    cache = Path(args.cache)
    train_x, train_p = cached_faces(cache, "train", args.num_train, base.img_size, args.workers)
    test_x, test_p = cached_faces(cache, "test", 256, base.img_size, args.workers)
    if args.prepare_only:
        return 0
    if not args.out:
        parser.error("--out is required")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_labels = domains.labels_from_attributes(attribute_values(train_p, attrs))
    batches = BalancedBatches(train_x, train_labels, len(names), args.batch_size, args.seed)
    test_labels = domains.labels_from_attributes(attribute_values(test_p, attrs))
    grid_rows = np.concatenate([np.flatnonzero(test_labels == d)[:2] for d in range(len(names))])

    keras.utils.set_random_seed(args.seed)
    config = base.replace(num_domains=len(names), domain_names=tuple(names))
    model = L2MGAN(config)
    weights = LossWeights(detach_style_target=args.detach_style_target)
    model.compile(learning_rate=args.lr, ema_decay=args.ema_decay, seed=args.seed,
                  loss_weights=weights)
    if args.init_from:
        model.load_weights(str(Path(args.init_from) / "model.weights.h5"))
        for raw, average in model.optimizer.ema_pairs():  # the EMA starts at the loaded weights
            average.assign(keras.ops.convert_to_numpy(raw))  # a copy: JAX donates buffers
    classifier = AttributeClassifier.load(CLASSIFIER_DIR)
    options = dict(vars(args))
    options.update(backend=keras.backend.backend(), config=config.to_dict())
    (out / "options.json").write_text(json.dumps(options, indent=2) + "\n")
    history: list[dict] = []

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step, self.started, self.last_report = 0, None, None

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            now = time.perf_counter()
            if self.step == 1:  # the first step compiles; keep it out of the clock
                self.started = self.last_report = now
                print(f"[{out.name}] compiled; training", flush=True)
                return
            elapsed = now - self.started
            done = elapsed >= args.seconds or self.step >= args.max_steps
            if done or now - self.last_report >= args.report_every:
                self.last_report = now
                self.report(elapsed, logs or {})
            if done:
                self.model.stop_training = True

        def report(self, elapsed, logs):
            ema = self.model.ema_model()
            score = edit_score(ema, classifier, test_x, test_p, attrs)
            entry = {"step": self.step, "seconds": round(elapsed, 1),
                     "steps_per_s": round((self.step - 1) / max(elapsed, 1e-9), 2),
                     **{k: round(float(np.asarray(v)), 4) for k, v in logs.items()},
                     **{f"edit_{k}": round(v, 4) for k, v in score.items()}}
            history.append(entry)
            print(f"[{out.name}] " + json.dumps(entry), flush=True)
            x = test_x[grid_rows].astype(np.float32) / 127.5 - 1.0
            write_png(sample_grid(ema, x, test_labels[grid_rows]), out / "samples.png")
            save_bundle(ema, out / "model")
            (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")

    # fit takes generators (not iterators) of tuples: (inputs,)
    stream = ((next(batches),) for _ in iter(int, 1))
    model.fit(stream, steps_per_epoch=args.max_steps, epochs=1, callbacks=[Budget()],
              verbose=0)
    print(f"[{out.name}] done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

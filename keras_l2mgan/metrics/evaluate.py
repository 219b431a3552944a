"""The evaluation protocols behind `l2m eval`.

Synthetic faces (`evaluate_synthetic`): for every source -> target domain pair, the test faces
of the source domain are edited and scored against their rendered ground truth, their input
outside the attribute's mask, the attribute classifier, an alpha sweep, and (FID/KID) the real
test faces of the target domain.

Folder / CelebA datasets (`evaluate_dataset`): the StarGAN v2 protocol; held-out images of each
source domain edited to every other domain, FID/KID against real training images of the
target domain, per task and averaged.

An editor is anything with ``img_size``, ``domain_names`` and ``edit(uint8 images, source,
target, alpha) -> uint8`` (keras_l2mgan.editors: a bundle, a run dir or a SavedModel).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_l2mgan.metrics import distribution, image, synthetic

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
MONOTONIC_TOLERANCE = 1e-3  # probabilities saturate near 0/1; ignore dips smaller than this


@dataclasses.dataclass(frozen=True)
class Task:
    source: int
    target: int
    name: str
    flips: tuple[str, ...]  # synthetic attributes that differ between the two domains


def synthetic_domains(domain_names: list[str]) -> tuple[list[str], np.ndarray]:
    """The model's domains as synthetic attributes: (attrs, 0/1 table (domains, attrs))."""
    from keras_l2mgan.data.synthetic_faces import renderer
    from keras_l2mgan.editors import attribute_table

    table = attribute_table(list(domain_names))
    if table is None:
        raise ValueError(f"the model's domains ({', '.join(domain_names)}) are not synthetic-face "
                         "attribute combinations; evaluate it with --data PATH/celeba instead")
    keys = list(table[0])
    attrs = [renderer.ATTRIBUTES[renderer.attribute_index(k)] for k in keys]
    values = np.array([[int(row[k]) for k in keys] for row in table], np.int32)
    return attrs, values


def all_tasks(domain_names: list[str], attrs: list[str] | None = None,
              values: np.ndarray | None = None) -> list[Task]:
    tasks = []
    for s, source in enumerate(domain_names):
        for t, target in enumerate(domain_names):
            if s == t:
                continue
            flips = () if values is None else tuple(
                a for a, before, after in zip(attrs, values[s], values[t], strict=True)
                if before != after)
            tasks.append(Task(s, t, f"{source} → {target}", flips))
    return tasks


def edit_all(editor, images: np.ndarray, source: int, target: int, alpha: float = 1.0,
             batch_size: int = 16) -> np.ndarray:
    """Edit uint8 images in batches with one (source, target, alpha) for all."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size]
        n = len(batch)
        out.append(np.asarray(editor.edit(batch, np.full(n, source, np.int32),
                                          np.full(n, target, np.int32),
                                          np.full(n, alpha, np.float32)), np.uint8))
    return np.concatenate(out)


def _fid_kid(features_edit: np.ndarray, features_real: np.ndarray) -> tuple[float, float]:
    if len(features_edit) < 2 or len(features_real) < 2:
        return float("nan"), float("nan")
    kid, _ = distribution.kid(features_edit, features_real)
    return distribution.fid(features_edit, features_real), kid


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def evaluate_synthetic(editor, classifier, features, num_test: int | None = None,
                       limit: int | None = None, alpha_images: int = 32,
                       alphas: tuple[float, ...] = ALPHAS, batch_size: int = 16, seed: int = 0,
                       grid_examples: int = 2, log=print):
    """Score every task on the synthetic test split. Returns (results dict, grid rows)."""
    attrs, domain_values = synthetic_domains(editor.domain_names)
    missing = [a for a in attrs if a not in classifier.attrs]
    if missing:
        raise ValueError(f"the classifier does not know {', '.join(missing)}; train one with "
                         f"`l2m classifier train --attrs {','.join(attrs)}`")
    columns = [classifier.attrs.index(a) for a in attrs]
    size = editor.img_size
    params = synthetic.split_params("test", num_test, seed)
    values = synthetic.attribute_values(params, attrs)
    domain_of = {tuple(v): d for d, v in enumerate(domain_values.tolist())}
    labels = np.array([domain_of[tuple(v)] for v in values.tolist()])
    log(f"rendering {len(params)} test faces at {size} px")
    images = synthetic.render(params, size)
    real_correct = (classifier.probabilities(images)[:, columns] >= 0.5) == (values > 0)
    real_accuracy = dict(zip(attrs, real_correct.mean(axis=0).tolist(), strict=True))
    real_features = features(images)

    task_rows, grid_rows = [], []
    for task in all_tasks(editor.domain_names, attrs, domain_values):
        index = np.flatnonzero(labels == task.source)[:limit]
        inputs, task_params = images[index], params[index]
        log(f"{task.name}: editing {len(index)} faces")
        truth, masks = synthetic.ground_truth(task_params, list(task.flips), size)
        edits = edit_all(editor, inputs, task.source, task.target, 1.0, batch_size)
        target = domain_values[task.target]
        predicted = classifier.probabilities(edits)[:, columns] >= 0.5
        correct = predicted == (target > 0)
        flipped = [attrs.index(a) for a in task.flips]
        kept = [i for i in range(len(attrs)) if i not in flipped]
        target_features = real_features[labels == task.target]
        fid, kid = _fid_kid(features(edits), target_features)
        identity_fid, _ = _fid_kid(real_features[index], target_features)
        row = {
            "task": task.name, "source": int(task.source), "target": int(task.target),
            "flipped_attributes": list(task.flips), "n": int(len(index)),
            "accuracy": float(correct.all(axis=1).mean()),
            "flipped_accuracy": float(correct[:, flipped].mean()),
            "kept_accuracy": float(correct[:, kept].mean()) if kept else None,
            "psnr_gt": float(image.psnr(edits, truth).mean()),
            "ssim_gt": float(image.ssim(edits, truth).mean()),
            "identity_psnr_gt": float(image.psnr(inputs, truth).mean()),
            "identity_ssim_gt": float(image.ssim(inputs, truth).mean()),
            "psnr_outside": float(image.psnr(edits, inputs, ~masks).mean()),
            "ssim_outside": float(image.ssim(edits, inputs, ~masks).mean()),
            "mask_fraction": float(masks.mean()),
            "fid": fid, "kid": kid, "identity_fid": identity_fid,
            "n_real": int((labels == task.target).sum()),
        }
        sweep = inputs[:alpha_images]
        curve, strips = [], []
        for alpha in alphas:
            edited = edit_all(editor, sweep, task.source, task.target, alpha, batch_size)
            strips.append(edited[:grid_examples])
            p = classifier.probabilities(edited)[:, [columns[i] for i in flipped]]
            curve.append(float(np.where(target[flipped] > 0, p, 1 - p).mean()))
        row["alpha_response"] = {
            "alphas": list(alphas), "probability": curve, "n": int(len(sweep)),
            "monotonic": bool(np.all(np.diff(curve) >= -MONOTONIC_TOLERANCE)),
        }
        task_rows.append(row)
        for k in range(min(grid_examples, len(index), len(sweep))):  # rows with a sweep
            grid_rows.append((task.name, [inputs[k], truth[k], *[s[k] for s in strips]]))

    keys = ["accuracy", "psnr_gt", "ssim_gt", "identity_psnr_gt", "identity_ssim_gt",
            "psnr_outside", "ssim_outside", "fid", "kid", "identity_fid"]
    mean = {k: _mean(task_rows, k) for k in keys}
    monotonic = sum(r["alpha_response"]["monotonic"] for r in task_rows)
    mean["alpha_monotonic_tasks"] = f"{monotonic}/{len(task_rows)}"
    mean["n"] = int(sum(r["n"] for r in task_rows))
    results = {
        "protocol": "synthetic", "img_size": size, "domain_names": list(editor.domain_names),
        "attributes": attrs, "num_test": int(len(params)), "seed": seed,
        "classifier_accuracy_on_real": float(min(real_accuracy.values())),
        "classifier_accuracy_per_attribute": real_accuracy,
        "features": features.name, "fid_label": features.label,
        "tasks": task_rows, "mean": mean,
    }
    columns_titles = ["input", "truth", *[f"a={a:g}" for a in alphas]]
    return results, (grid_rows, columns_titles)


def _stream_batches(dataset, num_domains: int, cap: int | None, batch_size: int):
    """(domain, uint8 batch) from a one-pass pipeline of single images, grouped per domain, at
    most `cap` images per domain: only one batch per domain is held in memory."""
    buffers: list[list[np.ndarray]] = [[] for _ in range(num_domains)]
    counts = [0] * num_domains
    for item in dataset.as_numpy_iterator():
        label = int(item["labels"][0])
        if cap is not None and counts[label] >= cap:
            if all(c >= cap for c in counts):
                break
            continue
        counts[label] += 1
        pixels = np.clip(np.round((item["images"][0] + 1.0) * 127.5), 0, 255)
        buffers[label].append(pixels.astype(np.uint8))
        if len(buffers[label]) == batch_size:
            yield label, np.stack(buffers[label])
            buffers[label] = []
    for label, buffer in enumerate(buffers):
        if buffer:
            yield label, np.stack(buffer)


def evaluate_dataset(editor, data: str, features, split: str = "val", limit: int | None = None,
                     max_real: int | None = None, batch_size: int = 16,
                     data_dir: str | None = None, log=print):
    """StarGAN v2 protocol on a folder / CelebA / CelebA-HQ dataset. Returns (results, grid).

    Images stream through in batches; only features are kept, so the whole training split of
    a large dataset can serve as the real set.
    """
    from keras_l2mgan.data.pipeline import build_dataset
    from keras_l2mgan.editors import attribute_table

    names = list(editor.domain_names)
    table = attribute_table(names)
    attrs = list(table[0]) if table is not None else "smiling"

    def open_split(which: str):
        # Batches of 1: the pipeline drops incomplete batches, evaluation must see every image.
        info = build_dataset(data, attrs, editor.img_size, 1, split=which, data_dir=data_dir,
                             augment=False, repeat=False)
        if list(info.domain_names) != names:
            raise ValueError(f"the dataset's domains ({', '.join(info.domain_names)}) differ "
                             f"from the model's ({', '.join(names)})")
        log(f"reading {data} {which} images ({info.num_examples})")
        return info.dataset

    tasks = all_tasks(names)
    edited: dict[tuple[int, int], list[np.ndarray]] = {(t.source, t.target): [] for t in tasks}
    grid_rows = []
    for source, batch in _stream_batches(open_split(split), len(names), limit, batch_size):
        for task in tasks:
            if task.source != source:
                continue
            edits = edit_all(editor, batch, source, task.target, 1.0, batch_size)
            if not edited[(source, task.target)]:
                grid_rows += [(task.name, [batch[k], edits[k]]) for k in range(min(2, len(batch)))]
            edited[(source, task.target)].append(features(edits))
    real: list[list[np.ndarray]] = [[] for _ in names]
    for label, batch in _stream_batches(open_split("train"), len(names), max_real, batch_size):
        real[label].append(features(batch))
    real_features = [np.concatenate(r) if r else np.zeros((0, 1)) for r in real]

    rows = []
    for task in tasks:
        parts = edited[(task.source, task.target)]
        if not parts:
            continue
        fake = np.concatenate(parts)
        fid, kid = _fid_kid(fake, real_features[task.target])
        rows.append({"task": task.name, "source": task.source, "target": task.target,
                     "n": int(len(fake)), "n_real": int(len(real_features[task.target])),
                     "fid": fid, "kid": kid})
    if not rows:
        raise ValueError(f"no {split!r} images found in {data}; pass --split with a held-out "
                         "split the dataset has")
    results = {
        "protocol": "stargan_v2", "data": data, "split": split, "img_size": editor.img_size,
        "domain_names": names, "features": features.name, "fid_label": features.label,
        "tasks": rows, "mean": {"fid": _mean(rows, "fid"), "kid": _mean(rows, "kid")},
    }
    grid_rows.sort(key=lambda row: row[0])
    return results, (grid_rows, ["input", "edit"])

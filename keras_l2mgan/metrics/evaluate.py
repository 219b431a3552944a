"""The evaluation protocols behind `l2m eval`.

Synthetic faces (`evaluate_synthetic`): for every source -> target domain pair, the test faces
of the source domain are edited and scored against their rendered ground truth, their input
outside the attribute's mask, the attribute classifier, an alpha sweep, and (FID/KID) the real
test faces of the target domain.

Folder / CelebA datasets (`evaluate_dataset`): the StarGAN v2 protocol; held-out images of each
source domain edited to every other domain, FID/KID against real training images of the
target domain, per task and averaged.

Each protocol runs the registered metrics (keras_l2mgan.metrics.registry) task by task: the
full report runs all of a protocol's metrics, `l2m eval --metrics` a chosen few.

An editor is anything with ``img_size``, ``domain_names`` and ``edit(uint8 images, source,
target, alpha) -> uint8`` (keras_l2mgan.editors: a bundle, a run dir or a SavedModel).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from keras_l2mgan.image_range import to_uint8
from keras_l2mgan.metrics import distribution, image, registry, synthetic
from keras_l2mgan.training.samples import ALPHAS  # eval sweeps the strip the samples show

SYNTHETIC, STARGAN_V2 = "synthetic", "stargan_v2"  # the protocols
GRID_EXAMPLES = 2  # faces per task in eval_grid.png
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


def synthetic_labels(values: np.ndarray, domain_values: np.ndarray) -> np.ndarray:
    """The domain index of each row of 0/1 attribute values (rows of `synthetic_domains`' table)."""
    domain_of = {tuple(v): d for d, v in enumerate(domain_values.tolist())}
    return np.array([domain_of[tuple(v)] for v in values.tolist()], np.int32)


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


class Evaluation(NamedTuple):
    results: dict  # what eval.json holds
    grid: tuple[list, list[str]]  # (rows of (task name, images), column titles)
    by_metric: dict[str, dict]  # metric name -> {"tasks": [...], "mean": {...}} (the JSONL)


def _run_metrics(names: Sequence[str] | None, protocol: str, context, task_data: list):
    """Each metric on each task, in registry order. Returns (task rows with the base fields
    followed by every metric's values, {metric: {"tasks", "mean"}})."""
    metrics = registry.select(names if names is not None
                              else registry.list_valid_metrics(protocol))
    rows = []
    per_metric: dict[str, list[dict]] = {m.name: [] for m in metrics}
    for data in task_data:
        if data.start_message:
            context.log(data.start_message)
        row = dict(data.base_row)
        for metric in metrics:
            values = metric.fn(context, data)
            row.update(values)
            per_metric[metric.name].append({"task": data.task.name, **values})
        rows.append(row)
    by_metric = {m.name: {"tasks": per_metric[m.name], "mean": m.summarise(per_metric[m.name])}
                 for m in metrics}
    return rows, by_metric


class _SyntheticTask:
    """One task's faces on the synthetic test split; what several metrics share (the edits,
    the ground truth) is computed on first use."""

    def __init__(self, context: _SyntheticContext, task: Task):
        self.context, self.task = context, task
        self.index = np.flatnonzero(context.labels == task.source)[:context.limit]
        self.inputs, self.params = context.images[self.index], context.params[self.index]
        self.target_values = context.domain_values[task.target]
        self.flipped = [context.attrs.index(a) for a in task.flips]
        self.kept = [i for i in range(len(context.attrs)) if i not in self.flipped]
        self.strips: list[np.ndarray] = []  # alpha sweep examples for the grid
        self.start_message = f"{task.name}: editing {len(self.index)} faces"
        self.base_row = {"task": task.name, "source": int(task.source),
                         "target": int(task.target), "flipped_attributes": list(task.flips),
                         "n": int(len(self.index))}

    @functools.cached_property
    def truth_and_masks(self) -> tuple[np.ndarray, np.ndarray]:
        return synthetic.ground_truth(self.params, list(self.task.flips),
                                      self.context.editor.img_size)

    @functools.cached_property
    def edits(self) -> np.ndarray:
        return edit_all(self.context.editor, self.inputs, self.task.source, self.task.target,
                        1.0, self.context.batch_size)

    @functools.cached_property
    def edit_features(self) -> np.ndarray:
        return self.context.features(self.edits)

    @property
    def source_features(self) -> np.ndarray:
        return self.context.real_features[self.index]


class _SyntheticContext:
    protocol = SYNTHETIC

    def __init__(self, editor, classifier, features, attrs, domain_values, columns, params,
                 images, labels, limit, alpha_images, alphas, batch_size, log):
        self.editor, self.classifier, self.features = editor, classifier, features
        self.attrs, self.domain_values, self.columns = attrs, domain_values, columns
        self.params, self.images, self.labels = params, images, labels
        self.limit, self.alpha_images, self.alphas = limit, alpha_images, alphas
        self.batch_size, self.log = batch_size, log

    @functools.cached_property
    def real_features(self) -> np.ndarray:
        return self.features(self.images)

    def real_features_of(self, domain: int) -> np.ndarray:
        return self.real_features[self.labels == domain]


@registry.register_metric(protocols=[SYNTHETIC], mean=["accuracy"])
def accuracy(context: _SyntheticContext, data: _SyntheticTask) -> dict:
    """Edits the classifier reads as the target domain: all attributes, flipped, kept."""
    predicted = context.classifier.probabilities(data.edits)[:, context.columns] >= 0.5
    correct = predicted == (data.target_values > 0)
    return {"accuracy": float(correct.all(axis=1).mean()),
            "flipped_accuracy": float(correct[:, data.flipped].mean()),
            "kept_accuracy": float(correct[:, data.kept].mean()) if data.kept else None}


@registry.register_metric(protocols=[SYNTHETIC],
                          mean=["psnr_gt", "ssim_gt", "identity_psnr_gt", "identity_ssim_gt"])
def ground_truth(context: _SyntheticContext, data: _SyntheticTask) -> dict:
    """PSNR / SSIM of the edit, and of the unedited input, against the re-rendered face."""
    truth, _ = data.truth_and_masks
    return {"psnr_gt": float(image.psnr(data.edits, truth).mean()),
            "ssim_gt": float(image.ssim(data.edits, truth).mean()),
            "identity_psnr_gt": float(image.psnr(data.inputs, truth).mean()),
            "identity_ssim_gt": float(image.ssim(data.inputs, truth).mean())}


@registry.register_metric(protocols=[SYNTHETIC],
                          mean=["psnr_outside", "ssim_outside"])
def outside_mask(context: _SyntheticContext, data: _SyntheticTask) -> dict:
    """PSNR / SSIM of the edit against its input where the attribute changes nothing."""
    _, masks = data.truth_and_masks
    return {"psnr_outside": float(image.psnr(data.edits, data.inputs, ~masks).mean()),
            "ssim_outside": float(image.ssim(data.edits, data.inputs, ~masks).mean()),
            "mask_fraction": float(masks.mean())}


@registry.register_metric(protocols=[SYNTHETIC, STARGAN_V2],
                          mean=["fid", "kid", "identity_fid"])
def fid_kid(context, data) -> dict:
    """FID / KID of the edits against real images of the target domain; on synthetic faces
    also the unedited source faces' FID (the baseline)."""
    real = context.real_features_of(data.task.target)
    fid, kid = _fid_kid(data.edit_features, real)
    values = {"fid": fid, "kid": kid}
    if data.source_features is not None:
        values["identity_fid"] = _fid_kid(data.source_features, real)[0]
    values["n_real"] = int(len(real))
    return values


def _monotonic_tasks(rows: list[dict]) -> dict:
    monotonic = sum(r["alpha_response"]["monotonic"] for r in rows)
    return {"alpha_monotonic_tasks": f"{monotonic}/{len(rows)}"}


@registry.register_metric(protocols=[SYNTHETIC], summary=_monotonic_tasks)
def alpha_response(context: _SyntheticContext, data: _SyntheticTask) -> dict:
    """Mean classifier probability of the target attribute values along the alpha sweep."""
    sweep = data.inputs[:context.alpha_images]
    columns = [context.columns[i] for i in data.flipped]
    target = data.target_values[data.flipped]
    curve = []
    for alpha in context.alphas:
        edited = edit_all(context.editor, sweep, data.task.source, data.task.target, alpha,
                          context.batch_size)
        data.strips.append(edited[:GRID_EXAMPLES])
        p = context.classifier.probabilities(edited)[:, columns]
        curve.append(float(np.where(target > 0, p, 1 - p).mean()))
    return {"alpha_response": {
        "alphas": list(context.alphas), "probability": curve, "n": int(len(sweep)),
        "monotonic": bool(np.all(np.diff(curve) >= -MONOTONIC_TOLERANCE)),
    }}


def evaluate_synthetic(editor, classifier, features, num_test: int | None = None,
                       limit: int | None = None, alpha_images: int = 32,
                       alphas: tuple[float, ...] = ALPHAS, batch_size: int = 16, seed: int = 0,
                       metrics: Sequence[str] | None = None, log=print) -> Evaluation:
    """Score every task on the synthetic test split with `metrics` (None: all of the
    protocol's, the full report)."""
    attrs, domain_values = synthetic_domains(editor.domain_names)
    missing = [a for a in attrs if a not in classifier.attrs]
    if missing:
        raise ValueError(f"the classifier does not know {', '.join(missing)}; train one with "
                         f"`l2m classifier train --attrs {','.join(attrs)}`")
    columns = [classifier.attrs.index(a) for a in attrs]
    size = editor.img_size
    params = synthetic.split_params("test", num_test, seed)
    values = synthetic.attribute_values(params, attrs)
    labels = synthetic_labels(values, domain_values)
    log(f"rendering {len(params)} test faces at {size} px")
    images = synthetic.render(params, size)
    real_correct = (classifier.probabilities(images)[:, columns] >= 0.5) == (values > 0)
    real_accuracy = dict(zip(attrs, real_correct.mean(axis=0).tolist(), strict=True))

    context = _SyntheticContext(editor, classifier, features, attrs, domain_values, columns,
                                params, images, labels, limit, alpha_images, alphas,
                                batch_size, log)
    tasks = [_SyntheticTask(context, t) for t in all_tasks(editor.domain_names, attrs,
                                                          domain_values)]
    task_rows, by_metric = _run_metrics(metrics, SYNTHETIC, context, tasks)
    grid_rows = []
    for data in tasks:
        truth, _ = data.truth_and_masks
        examples = min(GRID_EXAMPLES, len(data.index), alpha_images)  # rows with a sweep
        grid_rows += [(data.task.name, [data.inputs[k], truth[k], *[s[k] for s in data.strips]])
                      for k in range(examples)]

    mean = {k: v for m in by_metric.values() for k, v in m["mean"].items()}
    mean["n"] = int(sum(r["n"] for r in task_rows))
    results = {
        "protocol": SYNTHETIC, "img_size": size, "domain_names": list(editor.domain_names),
        "attributes": attrs, "num_test": int(len(params)), "seed": seed,
        "classifier_accuracy_on_real": float(min(real_accuracy.values())),
        "classifier_accuracy_per_attribute": real_accuracy,
        "features": features.name, "fid_label": features.label,
        "tasks": task_rows, "mean": mean,
    }
    swept = alphas if "alpha_response" in by_metric else ()
    columns_titles = ["input", "truth", *[f"a={a:g}" for a in swept]]
    return Evaluation(results, (grid_rows, columns_titles), by_metric)


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
        buffers[label].append(to_uint8(item["images"][0]))
        if len(buffers[label]) == batch_size:
            yield label, np.stack(buffers[label])
            buffers[label] = []
    for label, buffer in enumerate(buffers):
        if buffer:
            yield label, np.stack(buffer)


def evaluate_dataset(editor, data: str, features, split: str = "val", limit: int | None = None,
                     max_real: int | None = None, batch_size: int = 16,
                     data_dir: str | None = None, metrics: Sequence[str] | None = None,
                     log=print) -> Evaluation:
    """StarGAN v2 protocol on a folder / CelebA / CelebA-HQ dataset (its one metric: fid_kid).

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
                grid_rows += [(task.name, [batch[k], edits[k]])
                              for k in range(min(GRID_EXAMPLES, len(batch)))]
            edited[(source, task.target)].append(features(edits))
    real: list[list[np.ndarray]] = [[] for _ in names]
    for label, batch in _stream_batches(open_split("train"), len(names), max_real, batch_size):
        real[label].append(features(batch))
    context = _DatasetContext([np.concatenate(r) if r else np.zeros((0, 1)) for r in real], log)
    task_data = [_DatasetTask(task, np.concatenate(edited[(task.source, task.target)]),
                              context.real_features[task.target])
                 for task in tasks if edited[(task.source, task.target)]]
    if not task_data:
        raise ValueError(f"no {split!r} images found in {data}; pass --split with a held-out "
                         "split the dataset has")
    rows, by_metric = _run_metrics(metrics, STARGAN_V2, context, task_data)
    results = {
        "protocol": STARGAN_V2, "data": data, "split": split, "img_size": editor.img_size,
        "domain_names": names, "features": features.name, "fid_label": features.label,
        "tasks": rows, "mean": {k: v for m in by_metric.values() for k, v in m["mean"].items()},
    }
    grid_rows.sort(key=lambda row: row[0])
    return Evaluation(results, (grid_rows, ["input", "edit"]), by_metric)


class _DatasetContext:
    protocol = STARGAN_V2

    def __init__(self, real_features: list[np.ndarray], log):
        self.real_features, self.log = real_features, log

    def real_features_of(self, domain: int) -> np.ndarray:
        return self.real_features[domain]


class _DatasetTask:
    """One task's features of the edited held-out images (all that streaming keeps)."""

    source_features = None  # no unedited baseline: real images of two domains differ anyway

    def __init__(self, task: Task, edit_features: np.ndarray, real_features: np.ndarray):
        self.task, self.edit_features = task, edit_features
        self.start_message = None  # the edits were made (and logged) while streaming
        self.base_row = {"task": task.name, "source": task.source, "target": task.target,
                         "n": int(len(edit_features)), "n_real": int(len(real_features))}

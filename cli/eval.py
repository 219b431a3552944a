"""`l2m eval`: measure edit quality (accuracy, PSNR/SSIM, alpha response, FID/KID) with the
metrics of keras_l2mgan.metrics.registry."""

from __future__ import annotations

from pathlib import Path

import click

from .common import DataSource, backend_option

EVAL_FILES = ("eval.json", "eval.md", "eval_grid.png")


def default_classifier(img_size: int) -> Path:
    """synthetic_faces_<size>px among the classifiers shipped with the package (see
    keras_l2mgan.shipped). Never the working directory's: a classifier is a model, and a model
    is a program, so only one named explicitly (--classifier) or shipped is opened."""
    from keras_l2mgan.shipped import shipped_dir

    return shipped_dir("classifiers") / f"synthetic_faces_{img_size}px"


def default_output(model: str) -> Path:
    path = Path(model).resolve()
    is_version = path.name.isascii() and path.name.isdigit()  # only ASCII digits: a version
    name = path.parent.name if is_version else path.name
    return Path("eval_results") / name


@click.command("eval")
@backend_option
@click.argument("model")
@click.option("--data", type=DataSource(), default="synthetic", show_default=True,
              help="synthetic (the synthetic-faces protocol) or, for the StarGAN v2 FID "
              "protocol, celeba, celeba_hq or a dataset folder.")
@click.option("--classifier", "classifier_dir", default=None,
              show_default="the shipped synthetic_faces_SIZEpx for the model's size",
              help="Attribute classifier dir from `l2m classifier train`; its image size must "
              "be the model's. The default is never taken from the current folder.")
@click.option("--features", type=click.Choice(["auto", "inception", "classifier"]),
              default="auto", show_default=True,
              help="FID/KID features: InceptionV3 when its weights are found (auto), or the "
              "classifier's penultimate layer.")
@click.option("--inception-weights", default=None, show_default="~/.keras/models/'s, if any",
              help="Path to Keras's inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 "
              "(never downloaded).")
@click.option("--limit", type=click.IntRange(min=1), default=None, show_default="all",
              help="At most this many source images per task.")
@click.option("--num-test", type=click.IntRange(min=2), default=None,
              show_default="2000, the dataset's", help="Size of the synthetic test split.")
@click.option("--alpha-images", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per task for the alpha sweep 0, 0.25, ..., 1.25.")
@click.option("--split", default="val", show_default=True,
              help="Held-out split for --data other than synthetic.")
@click.option("--max-real", type=click.IntRange(min=2), default=None, show_default="all",
              help="At most this many real training images per domain (other --data).")
@click.option("--data-dir", default=None,
              show_default="$L2M_DATA_DIR, else ~/tensorflow_datasets", help="Dataset root.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images edited and classified at a time.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the synthetic test faces (0 is the dataset's own test split).")
@click.option("--metrics", "metric_names", default=None, metavar="NAME[,NAME...]",
              show_default="all, as the full report",
              help="Only these registered metrics (accuracy, ground_truth, ...; a wrong name "
              "lists the valid ones): each appends a line to metric-NAME.jsonl in the output "
              "directory and prints it; eval.json, eval.md and eval_grid.png are left alone.")
@click.option("-o", "--output", default=None, show_default="eval_results/MODEL_NAME",
              help="Output directory (new, empty, or an earlier eval's).")
def eval_command(model: str, data: str, classifier_dir: str | None, features: str,
                 inception_weights: str | None, limit: int | None, num_test: int | None,
                 alpha_images: int, split: str, max_real: int | None, data_dir: str | None,
                 batch_size: int, seed: int, metric_names: str | None,
                 output: str | None) -> None:
    """Evaluate MODEL (run dir, bundle dir, saved_models/NAME or a version dir).

    Writes eval.json, eval.md and eval_grid.png to the output directory and prints the
    Markdown report on stdout (progress goes to stderr: `l2m eval MODEL > report.md`).
    Every evaluation also appends one line per metric to metric-NAME.jsonl there.
    """
    import json
    import time

    from keras_l2mgan.atomic import check_replaceable
    from keras_l2mgan.editors import open_editor
    from keras_l2mgan.grid import image_grid
    from keras_l2mgan.metrics import registry, report
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.evaluate import (
        STARGAN_V2,
        SYNTHETIC,
        evaluate_dataset,
        evaluate_synthetic,
    )
    from keras_l2mgan.metrics.features import feature_extractor

    synthetic = data.strip().lower() == "synthetic"
    # Checked before the model is opened: a typo costs nothing.
    metrics = registry.parse_metrics(metric_names, SYNTHETIC if synthetic else STARGAN_V2)
    if not Path(model).exists():
        raise FileNotFoundError(f"model {model} does not exist; pass a run dir, a bundle dir, "
                                "saved_models/NAME or a SavedModel version dir")
    out = Path(output) if output else default_output(model)
    # Before minutes of evaluation: -o must be new, empty or an earlier eval's results dir.
    check_replaceable(out, "eval results directory", EVAL_FILES + registry.metric_files())
    editor = open_editor(model)
    if classifier_dir is None:
        candidate = default_classifier(editor.img_size)
        if candidate.is_dir():
            classifier_dir = str(candidate)
        elif synthetic:
            raise FileNotFoundError(
                f"no attribute classifier at {candidate}: train one with `l2m classifier train "
                f"--img-size {editor.img_size}` or pass --classifier DIR")
    classifier = AttributeClassifier.load(classifier_dir) if classifier_dir else None
    if classifier is not None and classifier.img_size != editor.img_size:
        raise ValueError(f"--classifier {classifier_dir} reads {classifier.img_size} px images "
                         f"but the model edits {editor.img_size} px ones; pass a classifier "
                         f"trained with `l2m classifier train --img-size {editor.img_size}`")
    extractor = feature_extractor(features, inception_weights, classifier)
    log(f"model: {editor.description}; classifier: {classifier_dir or 'none'}; FID/KID "
        f"features: {extractor.name}")
    full_report = metric_names is None
    start = time.perf_counter()
    if synthetic:
        results, (rows, columns), by_metric = evaluate_synthetic(
            editor, classifier, extractor, num_test, limit, alpha_images,
            batch_size=batch_size, seed=seed, metrics=metrics, log=log)
    else:
        results, (rows, columns), by_metric = evaluate_dataset(
            editor, data, extractor, split, limit, max_real, batch_size, data_dir,
            metrics=metrics, log=log)
    results.update(model=model, classifier=classifier_dir)
    records = registry.report_metrics(out, results, by_metric, time.perf_counter() - start)
    jsonl = ", ".join(str(out / registry.metric_file(name)) for name in by_metric)
    if not full_report:
        for record in records:  # stdout: one JSON line per metric, as appended
            click.echo(json.dumps(report.clean_json(record), ensure_ascii=False))
        log(f"appended to {jsonl}")
        return
    markdown = (report.synthetic_markdown if synthetic else report.dataset_markdown)(results)
    report.write_atomic(out / "eval.json", report.to_json(results))
    report.write_atomic(out / "eval.md", markdown)
    labels, tiles = zip(*rows, strict=True)
    report.write_atomic(out / "eval_grid.png",
                        image_grid(tiles, labels=labels, titles=columns, label_width=170))
    click.echo(markdown)
    log(f"wrote {out / 'eval.json'}, {out / 'eval.md'} and {out / 'eval_grid.png'}; "
        f"appended to {jsonl}")


def log(message: str) -> None:
    """Progress on stderr: stdout holds the report alone."""
    click.echo(message, err=True)

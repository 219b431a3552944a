"""How the change-mask blend (keras_l2mgan.blend) trades edit accuracy for preservation.

Scores one bundle's edits on the synthetic test faces with the blend off and at several
(low, high, dilate, blur) settings, through the same metrics as `l2m eval`:

    python tools/blend_sweep.py runs/ft_smiling_rec10/model --limit 300 \
        --setting 6,16,1,1 --setting 8,20,1,1 -o docs/eval/blend_sweep.md

Each setting: low and high thresholds in grey levels, dilation radius and blur sigma in pixels
at 64 px. The model's own ``blend_changes`` is ignored; "off" is the generator's raw output.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = ("accuracy", "ground_truth", "outside_mask", "alpha_response")


class _BlendedEditor:
    """Edits of an in-memory L2MGAN, blended with the given change-mask setting (or raw)."""

    def __init__(self, model, setting: tuple[float, float, int, float] | None):
        self.model, self.setting = model, setting
        self.img_size, self.domain_names = model.config.img_size, list(model.config.names)

    def edit(self, images, source, target, alpha) -> np.ndarray:
        from keras import ops

        from keras_l2mgan.blend import change_mask
        from keras_l2mgan.image_range import to_uint8, to_unit
        from keras_l2mgan.model import edit_style

        x = to_unit(images)
        source, target = np.asarray(source, np.int32), np.asarray(target, np.int32)
        encoder, generator = self.model.style_encoder, self.model.generator
        edited = generator(x, edit_style(encoder, x, source, target,
                                         np.asarray(alpha, np.float32)))
        if self.setting is not None:
            low, high, dilate, blur = self.setting
            reconstruction = generator(x, encoder.encode(x, source))
            mask = change_mask(edited, reconstruction, low, high, int(dilate), blur)
            edited = x + mask * (edited - x)
        return to_uint8(ops.convert_to_numpy(edited))


@click.command()
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--limit", type=int, default=300, show_default=True)
@click.option("--setting", "settings", multiple=True, default=("6,16,1,1",),
              show_default=True, help="low,high,dilate,blur (repeatable)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None)
def main(bundle: str, limit: int, settings: tuple[str, ...], output: str | None) -> None:
    from cli.eval import default_classifier
    from keras_l2mgan.bundle import load_bundle
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.evaluate import evaluate_synthetic
    from keras_l2mgan.metrics.features import feature_extractor

    model = load_bundle(bundle)
    model.config = dataclasses.replace(model.config, blend_changes=False)
    classifier = AttributeClassifier.load(str(default_classifier(model.config.img_size)))
    features = feature_extractor("classifier", None, classifier)
    rows = ["| blend (low, high, dilate, blur) | accuracy | weakest task | PSNR vs GT (identity) | "
            "PSNR outside | alpha monotonic |", "|---|---:|---:|---:|---:|---|"]
    for spec in ("off", *settings):
        setting = None if spec == "off" else tuple(float(v) for v in spec.split(","))
        results = evaluate_synthetic(_BlendedEditor(model, setting), classifier, features,
                                     limit=limit, metrics=METRICS, log=lambda *_: None)[0]
        mean = results["mean"]
        weakest = min(task["accuracy"] for task in results["tasks"])  # smiling_male's goal
        rows.append(f"| {spec} | {100 * mean['accuracy']:.1f} % | {100 * weakest:.1f} % | "
                    f"{mean['psnr_gt']:.2f} "
                    f"({mean['identity_psnr_gt']:.2f}) | {mean['psnr_outside']:.2f} | "
                    f"{mean['alpha_monotonic_tasks']} |")
        per_task = {task["task"]: task["accuracy"] for task in results["tasks"]}
        print(rows[-1], json.dumps({"setting": spec, **mean, "task_accuracy": per_task}),
              flush=True)
    table = f"Blend sweep of `{bundle}` ({limit} test faces per task)\n\n" + "\n".join(rows)
    print(table)
    if output:
        from keras_l2mgan.atomic import write_file_atomic

        write_file_atomic(output, table + "\n")


if __name__ == "__main__":
    main()

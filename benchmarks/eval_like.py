"""Reference-guided edits (`l2m edit --like`) against label-guided ones on the synthetic faces.

For every source -> target task of the model, each test face of the source domain gets a
reference: another test face of the target domain (a different person, drawn with --seed). The
ground truth is the source face re-rendered with the reference's attribute values, the same
truth as the label-guided edit's (source face, target domain's attributes), so the two edits are
scored against one truth by the shipped attribute classifier (accuracy: every attribute read as
the target's) and PSNR / SSIM; identity is the unedited input against that truth.

    python benchmarks/eval_like.py saved_models/smiling saved_models/smiling_male \\
        --limit 200 -o docs/eval/like

writes like.json and like.md (and a grid per model: input | reference | truth | label | like).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def evaluate(model: str, limit: int, seed: int, batch_size: int, log=print):
    from keras_l2mgan.editors import open_editor
    from keras_l2mgan.metrics import image, synthetic
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.evaluate import all_tasks, edit_all, synthetic_domains
    from keras_l2mgan.shipped import shipped_dir

    editor = open_editor(model)
    classifier = AttributeClassifier.load(
        shipped_dir("classifiers") / f"synthetic_faces_{editor.img_size}px")
    attrs, domain_values = synthetic_domains(editor.domain_names)
    columns = [classifier.attrs.index(a) for a in attrs]
    params = synthetic.split_params("test")
    values = synthetic.attribute_values(params, attrs)
    domain_of = {tuple(v): d for d, v in enumerate(domain_values.tolist())}
    labels = np.array([domain_of[tuple(v)] for v in values.tolist()])
    images = synthetic.render(params, editor.img_size)
    rng = np.random.default_rng(seed)
    rows, grid = [], []
    for task in all_tasks(editor.domain_names, attrs, domain_values):
        index = np.flatnonzero(labels == task.source)[:limit]
        pool = np.flatnonzero(labels == task.target)
        reference = rng.choice(pool, size=len(index), replace=len(pool) < len(index))
        inputs, refs = images[index], images[reference]
        truth, _ = synthetic.ground_truth(params[index], list(task.flips), editor.img_size)
        # The reference's attribute values are the target domain's, so its truth is this one.
        assert (values[reference] == domain_values[task.target]).all()
        log(f"{model}: {task.name}, {len(index)} faces")
        started = time.perf_counter()
        label_edits = edit_all(editor, inputs, task.source, task.target, 1.0, batch_size)
        label_s = time.perf_counter() - started
        variants = {"label": label_edits}
        for name, given in (("like_guessed", False), ("like_given", True)):
            out = []
            for i in range(0, len(index), batch_size):
                n = len(inputs[i:i + batch_size])
                source = np.full(n, task.source if given else -1, np.int32)
                ref_domain = np.full(n, task.target if given else -1, np.int32)
                out.append(editor.edit_like(inputs[i:i + batch_size], refs[i:i + batch_size],
                                            source, ref_domain, np.ones(n, np.float32)))
            variants[name] = np.concatenate(out)
        target = domain_values[task.target] > 0
        row = {"task": task.name, "n": int(len(index)),
               "identity_psnr_gt": float(image.psnr(inputs, truth).mean()),
               "identity_ssim_gt": float(image.ssim(inputs, truth).mean()),
               "label_seconds": label_s}
        for name, edits in variants.items():
            correct = (classifier.probabilities(edits)[:, columns] >= 0.5) == target
            row[f"{name}_accuracy"] = float(correct.all(axis=1).mean())
            row[f"{name}_psnr_gt"] = float(image.psnr(edits, truth).mean())
            row[f"{name}_ssim_gt"] = float(image.ssim(edits, truth).mean())
        rows.append(row)
        for k in range(min(2, len(index))):
            grid.append((task.name, [inputs[k], refs[k], truth[k], variants["label"][k],
                                     variants["like_guessed"][k]]))
    keys = [k for k in rows[0] if k not in ("task", "n")]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean["n"] = int(sum(r["n"] for r in rows))
    return {"model": model, "domains": list(editor.domain_names), "limit": limit, "seed": seed,
            "tasks": rows, "mean": mean}, grid


def markdown(results: list[dict], command: str) -> str:
    lines = [
        "### Reference-guided (`--like`) vs label-guided edits on synthetic faces (test split)",
        "",
        f"`{command}`",
        "",
        "| model | task | n | label: accuracy / PSNR / SSIM vs GT | like (domains guessed): "
        "accuracy / PSNR / SSIM | like (domains given) | identity PSNR / SSIM |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(row, name):
        return (f"{100 * row[f'{name}_accuracy']:.1f} % / {row[f'{name}_psnr_gt']:.2f} dB / "
                f"{row[f'{name}_ssim_gt']:.3f}")

    for result in results:
        name = Path(result["model"]).name
        for row in [*result["tasks"], {**result["mean"], "task": "**mean**"}]:
            lines.append(f"| `{name}` | {row['task']} | {row['n']} | {cell(row, 'label')} | "
                         f"{cell(row, 'like_guessed')} | {cell(row, 'like_given')} | "
                         f"{row['identity_psnr_gt']:.2f} / {row['identity_ssim_gt']:.3f} |")
    lines += ["", "GT: the source face re-rendered with the reference's (= the target domain's) "
              "attribute values; accuracy: the shipped classifier reads every attribute of the "
              "edit as the target's; alpha 1 for both edits; each reference is a different "
              "test face of the target domain."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="saved_models/NAME, run dirs or bundles")
    parser.add_argument("--limit", type=int, default=200, help="faces per task")
    parser.add_argument("--seed", type=int, default=0, help="reference draw")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("-o", "--output", default="docs/eval/like")
    args = parser.parse_args(argv)
    from keras_l2mgan.atomic import write_file_atomic
    from keras_l2mgan.grid import image_grid

    command = "python benchmarks/eval_like.py " + " ".join(sys.argv[1:] if argv is None
                                                           else argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        result, grid = evaluate(model, args.limit, args.seed, args.batch_size,
                                log=lambda m: print(m, file=sys.stderr))
        results.append(result)
        labels, tiles = zip(*grid, strict=True)
        picture = image_grid(tiles, labels=labels, label_width=170,
                             titles=["input", "reference", "truth", "label", "like"])
        png = io.BytesIO()
        picture.save(png, "PNG")
        write_file_atomic(out / f"grid_{Path(model).name}.png", png.getvalue())
    info = {"command": command, "machine": platform.processor() or platform.machine(),
            "results": results}
    write_file_atomic(out / "like.json", json.dumps(info, indent=2) + "\n")
    text = markdown(results, command)
    write_file_atomic(out / "like.md", text)
    print(text)


if __name__ == "__main__":
    main()

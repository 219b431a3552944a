"""Writing evaluation results atomically: JSON, a Markdown table and the grid image (drawn by
keras_l2mgan.grid)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from keras_l2mgan.atomic import write_file_atomic
from keras_l2mgan.photo import save_atomic


def write_atomic(path: str | Path, data: str | bytes | Image.Image) -> Path:
    """Write text, bytes or a PNG to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, Image.Image):
        return save_atomic(data, path, image_format="PNG")
    return write_file_atomic(path, data)


def clean_json(value: object) -> object:
    """JSON-safe: numpy scalars to Python, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json(results: dict) -> str:
    return json.dumps(clean_json(results), indent=2) + "\n"


def _fmt(value, digits: int = 2, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.{digits}f}"


def _kid(value) -> str:
    """KID x 1000, three significant digits (it spans orders of magnitude)."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{1000 * value:.3g}"


def synthetic_markdown(results: dict) -> str:
    """The synthetic-protocol table: one row per task, then the mean."""
    fid_label = results["fid_label"]
    lines = [
        f"### Edit quality of `{results['model']}` on synthetic faces "
        f"({results['img_size']} px, test split)",
        "",
        f"Classifier accuracy on the real test images (lowest attribute): "
        f"{_fmt(results['classifier_accuracy_on_real'], percent=True)}. "
        f"{fid_label} / KID use {results['features']}.",
        "",
        "| task | n | accuracy | PSNR vs GT (dB) | SSIM vs GT | identity PSNR / SSIM vs GT "
        f"| PSNR / SSIM outside mask | {fid_label} (identity) | KID ×1000 "
        "| alpha 0 → 1.25 (monotonic) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*results["tasks"], {**results["mean"], "task": "**mean**"}]
    for row in rows:
        alpha = row.get("alpha_response")
        if alpha:
            curve = " ".join(f"{p:.2f}" for p in alpha["probability"])
            alpha_text = f"{curve} ({'yes' if alpha['monotonic'] else 'no'})"
        else:
            alpha_text = f"{row['alpha_monotonic_tasks']} monotonic" \
                if "alpha_monotonic_tasks" in row else "–"
        lines.append(
            f"| {row['task']} | {row.get('n', '–')} | {_fmt(row['accuracy'], percent=True)} "
            f"| {_fmt(row['psnr_gt'])} | {_fmt(row['ssim_gt'], 3)} "
            f"| {_fmt(row['identity_psnr_gt'])} / {_fmt(row['identity_ssim_gt'], 3)} "
            f"| {_fmt(row['psnr_outside'])} / {_fmt(row['ssim_outside'], 3)} "
            f"| {_fmt(row['fid'])} ({_fmt(row['identity_fid'])}) | {_kid(row['kid'])} "
            f"| {alpha_text} |")
    lines += [
        "",
        "accuracy: edits whose every attribute the classifier reads as the target domain's; "
        "GT: the face re-rendered with the attribute flipped; identity: the unedited input "
        "scored against GT (the baseline an edit must beat); outside mask: the edit against "
        "its input where the attribute cannot change anything; FID (identity): the unedited "
        "source faces against the target domain's; alpha: mean classifier "
        "probability of the target attribute values at alpha 0, 0.25, …, 1.25.",
        "",
    ]
    return "\n".join(lines)


def dataset_markdown(results: dict) -> str:
    """The StarGAN v2 protocol table: FID/KID per source → target task, then the mean."""
    lines = [
        f"### {results['fid_label']} of `{results['model']}` on {results['data']} "
        f"(StarGAN v2 protocol)",
        "",
        f"Held-out `{results['split']}` images of each source domain edited to each other "
        f"domain (alpha 1), against real `train` images of the target domain; "
        f"features: {results['features']}.",
        "",
        f"| task | edited | real | {results['fid_label']} | KID ×1000 |",
        "|---|---|---|---|---|",
    ]
    for row in results["tasks"]:
        lines.append(f"| {row['task']} | {row['n']} | {row['n_real']} | {_fmt(row['fid'])} "
                     f"| {_kid(row['kid'])} |")
    mean = results["mean"]
    lines += [f"| **mean** | | | {_fmt(mean['fid'])} | {_kid(mean['kid'])} |", ""]
    return "\n".join(lines)


"""`l2m edit`: edit the faces in photos with a trained or exported model, locally or on a server."""

from __future__ import annotations

import glob
from pathlib import Path

import click

from cli.common import backend_option

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def parse_alphas(alpha: str, sweep: str | None) -> list[float]:
    """'0.7' or '0,0.5,1' or a sweep 'start:stop:count' -> the list of edit strengths."""
    import numpy as np

    if sweep:
        parts = sweep.split(":")
        try:
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise ValueError(f"--sweep must be START:STOP:COUNT like 0:1.25:6, got {sweep!r}")\
                from None
        if len(parts) != 3 or count < 2:
            raise ValueError(f"--sweep must be START:STOP:COUNT with COUNT >= 2, got {sweep!r}")
        return [round(float(a), 6) for a in np.linspace(start, stop, count)]
    values = []
    for item in alpha.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--alpha must be a number or a comma-separated list of numbers "
                             f"(like 0.7 or 0,0.5,1), got {item.strip()!r}") from None
        if not np.isfinite(value):
            raise ValueError(f"--alpha must be finite, got {item.strip()!r}")
        values.append(value)
    return values


def expand_inputs(images: tuple[str, ...]) -> list[Path]:
    """Paths as given, with glob patterns the shell did not expand (quoted) expanded here."""
    paths = []
    for item in images:
        if not Path(item).exists() and any(c in item for c in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"no image matches {item!r}")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(item))
    return paths


def output_paths(inputs: list[Path], tag: str, sweeping: bool, output: str | None
                 ) -> list[tuple[Path, Path | None]]:
    """(image or strip path, gif path or None) per input."""
    from keras_l2mgan.photo import check_writable

    target = Path(output) if output else None
    if target is not None and target.suffix.lower() in IMAGE_SUFFIXES:
        if len(inputs) > 1:
            raise ValueError(f"-o {output} is a file but there are {len(inputs)} images; "
                             "pass a directory")
        if sweeping and target.suffix.lower() != ".png":
            raise ValueError("with several alphas -o must end in .png (a GIF is written beside)")
        check_writable(target.parent)
        return [(target, target.with_suffix(".gif") if sweeping else None)]
    if target is not None and target.suffix:
        raise ValueError(f"-o {output}: unsupported image type {target.suffix!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)} or a directory")
    paths = []
    for path in inputs:
        directory = target if target is not None else path.parent
        check_writable(directory)
        stem = f"{path.stem}_{tag}"
        paths.append((directory / f"{stem}_strip.png", directory / f"{stem}.gif") if sweeping
                     else (directory / f"{stem}.png", None))
    return paths


@click.command()
@backend_option
@click.argument("images", nargs=-1, required=True)
@click.option("--to", "to", required=True,
              help="Target attribute(s) or domain: smiling, not_smiling, smiling,male, or a "
              "domain name (cat, dog, ...). Other attributes keep the source's values.")
@click.option("--alpha", default="1.0", show_default=True,
              help="Edit strength: 0 reconstructs, 1 is the full edit, >1 extrapolates; "
              "several comma-separated values write a strip and a GIF.")
@click.option("--sweep", default=None, help="START:STOP:COUNT alphas, e.g. 0:1.25:6 "
              "(a PNG strip and an animated GIF).")
@click.option("-o", "--output", default=None,
              help="Output file (one image) or directory (default: beside each input).")
@click.option("--model", default=None,
              help="saved_models/NAME (latest version), a version dir, a run dir or a bundle "
              "dir; with --server the served model's name. Default: the only model under "
              "./saved_models.")
@click.option("--from", "source", default=None,
              help="Source domain name or index (default: guessed per photo by the "
              "discriminator).")
@click.option("--server", default=None, help="HOST:PORT of TF Serving / `l2m serve`: edit "
              "there instead of locally.")
@click.option("--crop-only", is_flag=True, help="Write the edited face crop only (model size).")
@click.option("--detector", type=click.Choice(["center", "haar"]), default="center",
              show_default=True, help="Face region: the centred square, or OpenCV's Haar "
              "detector (needs opencv-python-headless).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
def edit(images: tuple[str, ...], to: str, alpha: str, sweep: str | None, output: str | None,
         model: str | None, source: str | None, server: str | None, crop_only: bool,
         detector: str, batch_size: int) -> None:
    """Edit the face in each IMAGE (files or glob patterns); the output keeps the photo's size."""
    import numpy as np
    from PIL import Image

    from keras_l2mgan.editors import domain_index, open_editor, target_domain
    from keras_l2mgan.photo import crop, face_box, load_photo, paste_back, save_atomic, strip

    alphas = parse_alphas(alpha, sweep)
    request = [item.strip() for item in to.split(",") if item.strip()]
    if not request:
        raise ValueError("--to needs at least one attribute or domain name")
    inputs = expand_inputs(images)
    photos = [load_photo(path) for path in inputs]  # every read error before any work
    sweeping = len(alphas) > 1
    destinations = output_paths(inputs, "+".join(request), sweeping, output)
    editor = open_editor(model, server, request)

    size = editor.img_size
    boxes = [face_box(photo, detector) for photo in photos]
    crops = np.stack([crop(photo, box, size) for photo, box in zip(photos, boxes, strict=True)])
    if source is not None:
        sources = np.full(len(photos), domain_index(editor.domain_names, source), np.int32)
    else:
        sources = np.concatenate([editor.classify(crops[i:i + batch_size])
                                  for i in range(0, len(crops), batch_size)]).astype(np.int32)
    targets = np.array([target_domain(editor.domain_names, int(s), request) for s in sources],
                       np.int32)
    # After every check on the request: a bad --to still gives a single line.
    click.echo(f"model: {editor.description} (domains: {', '.join(editor.domain_names)})")

    # One job per (photo, alpha), run in batches.
    jobs = [(i, a) for i in range(len(photos)) for a in alphas]
    edited = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        index = np.array([i for i, _ in chunk])
        edited.append(editor.edit(crops[index], sources[index], targets[index],
                                  np.array([a for _, a in chunk], np.float32)))
    edited = np.concatenate(edited)

    for n, (photo, box, (path, gif)) in enumerate(zip(photos, boxes, destinations, strict=True)):
        frames = []
        for k in range(len(alphas)):
            face = edited[n * len(alphas) + k]
            frames.append(Image.fromarray(face) if crop_only else paste_back(photo, face, box))
        if gif is None:
            save_atomic(frames[0], path)
        else:
            save_atomic(strip(frames), path)
            save_atomic(frames, gif)
        names = editor.domain_names
        click.echo(f"{inputs[n]}: {names[sources[n]]} -> {names[targets[n]]}, alpha "
                   f"{', '.join(f'{a:g}' for a in alphas)} -> {path}"
                   + (f" and {gif}" if gif else ""))

"""`l2m edit`: edit the faces in photos with a trained or exported model, locally or on a server."""

from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path

import click

from cli.common import backend_option

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


# More frames than this is a mistake (a typo'd COUNT), not a sweep anyone wants to watch.
MAX_FRAMES = 64


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
        if len(parts) != 3 or count < 2 or not np.isfinite([start, stop]).all():
            raise ValueError(f"--sweep must be START:STOP:COUNT with finite START and STOP and "
                             f"COUNT >= 2, got {sweep!r}")
        if count > MAX_FRAMES:
            raise ValueError(f"--sweep COUNT is {count}, over the limit of {MAX_FRAMES} frames")
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
    if len(values) > MAX_FRAMES:
        raise ValueError(f"--alpha has {len(values)} values, over the limit of {MAX_FRAMES}")
    return values


def expand_inputs(images: tuple[str, ...]) -> list[Path]:
    """Paths as given, with glob patterns the shell did not expand (quoted) expanded here; a
    file named twice (a name and a pattern that matches it) is edited once."""
    paths, seen = [], set()
    for item in images:
        if not Path(item).exists() and any(c in item for c in "*?["):
            matches = sorted(glob.glob(item))
            if not matches:
                raise FileNotFoundError(f"no image matches {item!r}")
        else:
            matches = [item]
        for match in matches:
            key = Path(match).resolve()
            if key not in seen:
                seen.add(key)
                paths.append(Path(match))
    return paths


def _resolved(folder: Path) -> Path:
    return Path(os.path.abspath(folder)).resolve()


def _entry(path: Path) -> Path:
    """The directory entry a path names: its folder resolved (symlinks followed), its own name
    kept (replacing a symlink replaces the link, not its target)."""
    return _resolved(path.parent) / path.name


def output_paths(inputs: list[Path], tag: str, sweeping: bool, output: str | None
                 ) -> list[tuple[Path, Path | None]]:
    """(image or strip path, gif path or None) per input, all distinct and none an input.

    Outputs are named STEM_TAG.png (a sweep: STEM_TAG_strip.png and STEM_TAG.gif) beside each
    input or in the -o folder. With -o FOLDER, inputs from different folders that share a stem
    keep their folders relative to the inputs' common parent; inputs that still share a stem in
    one folder (face.png, face.jpg) get their extension too: face-png_TAG.png, face-jpg_TAG.png.
    """
    from keras_l2mgan.photo import check_writable

    target = Path(output) if output else None
    if target is not None and target.suffix.lower() in IMAGE_SUFFIXES and not target.is_dir():
        if len(inputs) > 1:
            raise ValueError(f"-o {output} is a file but there are {len(inputs)} images; "
                             "pass a directory")
        if sweeping and target.suffix.lower() != ".png":
            raise ValueError("with several alphas -o must end in .png (a GIF is written beside)")
        check_writable(target.parent)
        paths = [(target, target.with_suffix(".gif") if sweeping else None)]
        _check_outputs(inputs, paths)
        return paths
    if target is not None and target.suffix and not target.is_dir():
        raise ValueError(f"-o {output}: unsupported image type {target.suffix!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)} or a directory")
    if target is not None:
        check_writable(target)
        folders = _mirrored_folders(inputs, target)
    else:
        folders = [path.parent for path in inputs]
    # Stems compared case-insensitively: on macOS / Windows Face.png and face.png are one file.
    shared = Counter((_resolved(folder), path.stem.casefold())
                     for folder, path in zip(folders, inputs, strict=True))
    paths = []
    for folder, path in zip(folders, inputs, strict=True):
        stem = path.stem
        if shared[_resolved(folder), stem.casefold()] > 1 and path.suffix:
            stem = f"{stem}-{path.suffix[1:]}"
        stem = f"{stem}_{tag}"
        paths.append((folder / f"{stem}_strip.png", folder / f"{stem}.gif") if sweeping
                     else (folder / f"{stem}.png", None))
    for folder in {_resolved(folder): folder for folder in folders}.values():
        # A mirrored folder is created under -o when the outputs are committed.
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        if not existing.is_dir():
            raise ValueError(f"cannot write to {folder}: {existing} is a file")
        check_writable(existing)
    _check_outputs(inputs, paths)
    return paths


def _mirrored_folders(inputs: list[Path], target: Path) -> list[Path]:
    """-o FOLDER: FOLDER for every input, or, when inputs from different folders share a stem,
    FOLDER/<input's folder relative to the inputs' common parent>."""
    parents = [Path(os.path.abspath(path.parent)) for path in inputs]
    folders_by_stem: dict[str, set[Path]] = {}
    for parent, path in zip(parents, inputs, strict=True):
        folders_by_stem.setdefault(path.stem.casefold(), set()).add(parent)
    if all(len(folders) == 1 for folders in folders_by_stem.values()):
        return [target] * len(inputs)
    common = Path(os.path.commonpath(parents))
    return [target / parent.relative_to(common) for parent in parents]


def _check_outputs(inputs: list[Path], paths: list[tuple[Path, Path | None]]) -> None:
    """No output replaces an input, none is written twice, none is a folder."""
    sources = {}
    for path in inputs:
        sources[_entry(path)] = path
        sources[path.resolve()] = path
    written: dict[Path, Path] = {}
    for source, pair in zip(inputs, paths, strict=True):
        for path in filter(None, pair):
            entry = _entry(path)
            clash = sources.get(entry) or next(
                (p for p in inputs if path.is_file() and os.path.samefile(path, p)), None)
            if clash is not None:
                raise ValueError(f"the output {path} would replace the input {clash}; "
                                 "pick another -o")
            if entry in written:
                raise ValueError(f"{written[entry]} and {source} would both be written to "
                                 f"{path}; pick another -o or rename one")
            if path.is_dir():
                raise ValueError(f"the output {path} is an existing folder")
            written[entry] = source


@click.command()
@backend_option
@click.argument("images", nargs=-1, required=True)
@click.option("--to", "to", required=True,
              help="Target attribute(s) or domain: smiling, not_smiling, smiling,male, or a "
              "domain name (cat, dog, ...). Other attributes keep the source's values.")
@click.option("--alpha", default="1.0", show_default=True,
              help="Edit strength: 0 reconstructs, 1 is the full edit, >1 extrapolates; "
              f"several comma-separated values (at most {MAX_FRAMES}) write a strip and a GIF.")
@click.option("--sweep", default=None, help="START:STOP:COUNT alphas, e.g. 0:1.25:6 "
              f"(a PNG strip and an animated GIF; COUNT at most {MAX_FRAMES}).")
@click.option("-o", "--output", default=None,
              help="Output file (one image) or existing folder (default: beside each input). "
              "Outputs are named STEM_TO.png (several alphas: STEM_TO_strip.png and "
              "STEM_TO.gif). Inputs that share a stem keep their extension "
              "(face.jpg -> face-jpg_smiling.png); with -o FOLDER, same-named inputs from "
              "different folders keep their folders relative to their common parent. An "
              "output never replaces an input.")
@click.option("--model", default=None,
              help="saved_models/NAME (latest version), a version dir, a run dir or a bundle "
              "dir; with --server the served model's name. Default: the demo model that fits "
              "--to from the saved_models/ shipped beside the package (never the current "
              "folder's). A model is a program: open only models you trust.")
@click.option("--from", "source", default=None,
              help="Source domain name or index (default: guessed per photo by the "
              "discriminator).")
@click.option("--server", default=None, help="HOST:PORT of TF Serving / `l2m serve`: edit "
              "there instead of locally.")
@click.option("--crop-only", is_flag=True, help="Write the edited face crop only (model size).")
@click.option("--detector", type=click.Choice(["center", "haar"]), default="center",
              show_default=True, help="Face region: the centred square, or OpenCV's Haar "
              "detector (needs opencv-python-headless).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Photos decoded and edited at a time (memory grows with it, not with the "
              "number of photos).")
def edit(images: tuple[str, ...], to: str, alpha: str, sweep: str | None, output: str | None,
         model: str | None, source: str | None, server: str | None, crop_only: bool,
         detector: str, batch_size: int) -> None:
    """Edit the face in each IMAGE (files or glob patterns); the output keeps the photo's size.

    Every file's header is checked before any work; the outputs appear only once every photo
    is edited, so a bad photo leaves nothing written.
    """
    import numpy as np
    from PIL import Image

    from keras_l2mgan.editors import domain_index, open_editor
    from keras_l2mgan.photo import (
        StagedOutputs,
        crop,
        face_box,
        load_photo,
        paste_back,
        probe_photo,
        strip,
    )

    alphas = parse_alphas(alpha, sweep)
    request = [item.strip() for item in to.split(",") if item.strip()]
    if not request:
        raise ValueError("--to needs at least one attribute or domain name")
    inputs = expand_inputs(images)
    sizes = [probe_photo(path) for path in inputs]  # a bad header fails before any work
    sweeping = len(alphas) > 1
    if sweeping and not crop_only:
        _check_strips(inputs, sizes, len(alphas))
    destinations = output_paths(inputs, "+".join(request), sweeping, output)
    editor = open_editor(model, server, request)
    names = editor.domain_names
    fixed = domain_index(names, source) if source is not None else None
    targets = _targets(names, request, fixed)
    # After every check on the request: a bad --to still gives a single line.
    click.echo(f"model: {editor.description} (domains: {', '.join(names)})")

    report = []
    with StagedOutputs() as staged:
        for start in range(0, len(inputs), batch_size):
            batch = list(range(start, min(len(inputs), start + batch_size)))
            photos = [load_photo(inputs[n]) for n in batch]
            boxes = [face_box(photo, detector) for photo in photos]
            crops = np.stack([crop(photo, box, editor.img_size)
                              for photo, box in zip(photos, boxes, strict=True)])
            sources = (np.full(len(batch), fixed, np.int32) if fixed is not None
                       else np.asarray(editor.classify(crops), np.int32))
            goals = np.array([_target(targets, int(s), names, inputs[n])
                              for s, n in zip(sources, batch, strict=True)], np.int32)
            edited = _edit_all(editor, crops, sources, goals, alphas, batch_size)
            for k, n in enumerate(batch):
                photo, frames = photos[k], []
                photos[k] = None  # its memory goes once its frames are written
                for j in range(len(alphas)):
                    frames.append(Image.fromarray(edited[k, j]) if crop_only else paste_back(
                        photo, edited[k, j], boxes[k], in_place=j == len(alphas) - 1))
                path, gif = destinations[n]
                if gif is None:
                    staged.add(frames[0], path)
                else:
                    staged.add(strip(frames), path)
                    staged.add(frames, gif)
                del photo, frames
                report.append(f"{inputs[n]}: {names[sources[k]]} -> {names[goals[k]]}, alpha "
                              f"{', '.join(f'{a:g}' for a in alphas)} -> {path}"
                              + (f" and {gif}" if gif else ""))
        staged.commit()
    for line in report:
        click.echo(line)


def _check_strips(inputs: list[Path], sizes: list[tuple[int, int]], frames: int) -> None:
    """A sweep's strip holds every frame at full size: refuse one PIL could not open again."""
    from keras_l2mgan.photo import MAX_PIXELS

    limit = 2 * MAX_PIXELS  # PIL's DecompressionBombError threshold
    for path, (width, height) in zip(inputs, sizes, strict=True):
        if frames * width * height > limit:
            raise ValueError(f"{frames} frames of {path} ({width}x{height}) make a "
                             f"{frames * width * height:,}-pixel strip, over the {limit:,} "
                             "limit; use fewer alphas, --crop-only or a smaller photo")


def _targets(names: list[str], request: list[str], fixed: int | None) -> dict[int, object]:
    """Target domain per possible source (or the error for that source); raises now when no
    source can serve the request, so a bad --to fails before any photo is read."""
    from keras_l2mgan.editors import target_domain

    outcomes: dict[int, object] = {}
    for source in range(len(names)) if fixed is None else [fixed]:
        try:
            outcomes[source] = target_domain(names, source, request)
        except ValueError as error:
            outcomes[source] = error
    if all(isinstance(value, ValueError) for value in outcomes.values()):
        raise next(iter(outcomes.values()))
    return outcomes


def _target(targets: dict[int, object], source: int, names: list[str], path: Path) -> int:
    outcome = targets.get(source)
    if outcome is None:
        raise ValueError(f"{path}: the model classified it as domain {source}, which is not "
                         f"one of its {len(names)} domains")
    if isinstance(outcome, ValueError):
        raise ValueError(f"{path} ({names[source]}): {outcome}")
    return int(outcome)


def _edit_all(editor, crops, sources, targets, alphas: list[float], batch_size: int):
    """Edits of every crop at every alpha, batch_size jobs per call: (N, alphas, S, S, 3)."""
    import numpy as np

    jobs = [(i, a) for i in range(len(crops)) for a in alphas]
    edited = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        index = np.array([i for i, _ in chunk])
        edited.append(editor.edit(crops[index], sources[index], targets[index],
                                  np.array([a for _, a in chunk], np.float32)))
    edited = np.concatenate(edited)
    return edited.reshape(len(crops), len(alphas), *edited.shape[1:])

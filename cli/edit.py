"""`l2m edit`: edit the faces in photos with a trained or exported model, locally or on a server."""

from __future__ import annotations

import contextlib
import glob
import math
import os
from collections import Counter
from pathlib import Path

import click

from .common import ALPHA_RANGE, backend_option, raised_in_our_code

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


# More frames than this is a mistake (a typo'd COUNT), not a sweep anyone wants to watch.
MAX_FRAMES = 64


def _check_range(value: float, text: str) -> float:
    low, high = ALPHA_RANGE
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {text.strip()!r}")
    if not low <= value <= high:
        raise ValueError(f"{value:g} is outside {low:g} to {high:g} (0 reconstructs, 1 is the "
                         "full edit, above 1 extrapolates)")
    return value


def alpha_list(text: str) -> list[float]:
    """'0.7' or '0,0.5,1' -> the edit strengths (ValueError without the option's name)."""
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"must be a number or a comma-separated list of numbers (like 0.7 "
                             f"or 0,0.5,1), got {item.strip()!r}") from None
        values.append(_check_range(value, item))
    if len(values) > MAX_FRAMES:
        raise ValueError(f"has {len(values)} values, over the limit of {MAX_FRAMES}")
    return values


def sweep_alphas(text: str) -> list[float]:
    """'START:STOP:COUNT' -> COUNT evenly spaced edit strengths."""
    import numpy as np

    parts = text.split(":")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise ValueError(f"must be START:STOP:COUNT like 0:1.25:6, got {text!r}") from None
    if len(parts) != 3 or count < 2:
        raise ValueError(f"must be START:STOP:COUNT with COUNT >= 2, got {text!r}")
    _check_range(start, parts[0])
    _check_range(stop, parts[1])
    if count > MAX_FRAMES:
        raise ValueError(f"COUNT is {count}, over the limit of {MAX_FRAMES} frames")
    return [round(float(a), 6) for a in np.linspace(start, stop, count)]


def parse_alphas(alpha: str, sweep: str | None) -> list[float]:
    """'0.7' or '0,0.5,1' or a sweep 'start:stop:count' -> the list of edit strengths."""
    try:
        return sweep_alphas(sweep) if sweep else alpha_list(alpha)
    except ValueError as error:
        raise ValueError(f"{'--sweep' if sweep else '--alpha'} {error}") from None


def _parsed(parse):
    """A click callback: the option's text parsed at parse time, errors naming the option."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None):
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as error:
            raise click.BadParameter(str(error), ctx, param) from None
    return callback


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
    -o FOLDER/ (a trailing slash) or -o FOLDER with several inputs is a folder, created when
    the outputs are written if it is missing; an image file's folder must exist.
    """
    from keras_l2mgan.photo import check_writable

    target = Path(output) if output else None
    folder_wanted = output is not None and (output.endswith(("/", os.sep)) or len(inputs) > 1)
    if target is not None and target.suffix.lower() in IMAGE_SUFFIXES and not target.is_dir() \
            and not output.endswith(("/", os.sep)):
        if len(inputs) > 1:
            raise ValueError(f"-o {output} is a file but there are {len(inputs)} images; "
                             "pass a folder (-o FOLDER/)")
        if sweeping and target.suffix.lower() != ".png":
            raise ValueError("with several alphas -o must end in .png (a GIF is written beside)")
        check_writable(target.parent)
        paths = [(target, target.with_suffix(".gif") if sweeping else None)]
        _check_outputs(inputs, paths)
        return paths
    if target is not None and target.exists() and not target.is_dir():
        raise ValueError(f"-o {output} is an existing file that is not an image; pass an image "
                         "file name or a folder")
    if target is not None and not target.exists() and not folder_wanted:
        if target.suffix:
            raise ValueError(f"-o {output}: unsupported image type {target.suffix!r}; use one of "
                             f"{', '.join(IMAGE_SUFFIXES)} or a folder (-o FOLDER/)")
        raise ValueError(f"-o {output}: no such folder; end it with a slash (-o {output}/) to "
                         "create it, or name an image file (.png, .jpg, ...)")
    if target is not None:
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
        # A missing folder (-o FOLDER/, or one mirrored under it) is created when the outputs
        # are written, and removed again if the run fails.
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
@click.option("--to", "to", default=None, show_default="none: --like instead",
              help="Target attribute(s) or domain: smiling, not_smiling, smiling,male, or a "
              "domain name (cat, dog, ...). Other attributes keep the source's values. "
              "Required unless --like is given.")
@click.option("--like", "like", default=None, metavar="REF", show_default="none: --to instead",
              help="Reference-guided edit instead of --to: each face takes the "
              "attribute-related style of the face in photo REF (its largest face), keeping "
              "everything else: s~ = s_un(x) + s_re(x) + alpha (s_re(ref) - s_re(x)).")
@click.option("--like-from", "like_source", default=None,
              show_default="guessed by the discriminator",
              help="--like: the reference face's domain name or index.")
@click.option("--alpha", default="1.0", show_default=True, callback=_parsed(alpha_list),
              help=f"Edit strength, {ALPHA_RANGE[0]:g} to {ALPHA_RANGE[1]:g}: 0 reconstructs, 1 "
              "is the full edit, above 1 extrapolates; several comma-separated values (at most "
              f"{MAX_FRAMES}) write a strip and a GIF.")
@click.option("--sweep", default=None, callback=_parsed(sweep_alphas), show_default="none",
              help="START:STOP:COUNT evenly spaced alphas instead of --alpha, e.g. 0:1.25:6 "
              f"(a PNG strip and an animated GIF; COUNT 2 to {MAX_FRAMES}; START and STOP in "
              "--alpha's range).")
@click.option("-o", "--output", default=None, show_default="beside each input",
              help="Output image file (one input) or folder. A folder is created if missing "
              "when named with a trailing slash (-o edited/) or when there are several inputs. "
              "Outputs are named STEM_TO.png (several alphas: STEM_TO_strip.png and "
              "STEM_TO.gif). Inputs that share a stem keep their extension "
              "(face.jpg -> face-jpg_smiling.png); with -o FOLDER, same-named inputs from "
              "different folders keep their folders relative to their common parent. An "
              "output never replaces an input.")
@click.option("--model", default=None,
              show_default="the shipped demo model that fits --to",
              help="saved_models/NAME (latest version), a version dir, a run dir or a bundle "
              "dir; with --server the served model's name. Without it, the demo models shipped "
              "with the package (never the current folder's). A model is a program: open only "
              "models you trust.")
@click.option("--from", "source", default=None, show_default="guessed by the discriminator",
              help="Source domain name or index of every photo.")
@click.option("--server", default=None, metavar="HOST:PORT", show_default="edit locally",
              help="TF Serving / `l2m serve` address: edit there instead of locally; HOST:PORT "
              "speaks gRPC, http://HOST:PORT the REST API.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True,
              help="--server: seconds to wait for the server to connect and describe the model "
              "(edit requests then wait up to 120 s, or this if longer).")
@click.option("--crop-only", is_flag=True, help="Write the edited face crops only (model size; "
              "several faces side by side, left to right).")
@click.option("--detector", type=click.Choice(["haar", "center"]), default="haar",
              show_default=True, help="How faces are found: OpenCV's Haar cascade (every face "
              "in the photo; none found is an error), or the centred square (a portrait "
              "already framed like CelebA-HQ).")
@click.option("--face", "face_index", type=click.IntRange(min=0), default=None,
              show_default="every face", help="Edit only face N of each photo: 0-based, left to "
              "right (by the face's centre).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Photos decoded and edited at a time (memory grows with it, not with the "
              "number of photos).")
@click.pass_context
def edit(ctx: click.Context, images: tuple[str, ...], to: str | None, like: str | None,
         like_source: str | None, alpha: list[float],
         sweep: list[float] | None, output: str | None, model: str | None, source: str | None,
         server: str | None, timeout: float, crop_only: bool, detector: str,
         face_index: int | None, batch_size: int) -> None:
    """Edit the faces in each IMAGE (files or glob patterns); the output keeps the photo's size.

    Faces are found with OpenCV's Haar cascade (--detector center: the centred square). With a
    model that has a FAN and the mean CelebA-HQ landmarks (an `l2m import`ed one), each face is
    aligned to the CelebA-HQ framing from its landmarks, edited, and warped back with a
    feathered face mask; otherwise its box is edited and blended back. Either way pixels away
    from the faces keep their values.

    --like REF edits by example instead of --to: each face keeps its attribute-unrelated
    style and takes the attribute-related style of REF's face, scaled by --alpha (without
    --model: the shipped model with the most attributes, smiling_male).

    Every file's header is checked before any work. One photo: any error (no face found
    included) leaves nothing written (exit 2). Several: each photo that cannot be read or
    edited is named in one line, the others are written, a summary line ends the run and the
    exit code is 1 if any failed.
    """
    from keras_l2mgan.editors import SYNTHETIC, domain_index, open_editor
    from keras_l2mgan.photo import StagedOutputs, haar_available, probe_photo

    if sweep is not None and \
            ctx.get_parameter_source("alpha") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--sweep and --alpha both set the edit strengths; pass one "
                               "(--alpha 0,0.5,1 lists them, --sweep 0:1:3 spaces them evenly)")
    alphas = sweep or alpha
    if (to is None) == (like is None):
        raise click.UsageError("pass --to ATTRIBUTES (a label-guided edit) or --like REF (take "
                               "the attributes of a reference face), not both" if to else
                               "missing --to ATTRIBUTES or --like REF: what should the edit do?")
    if like_source is not None and like is None:
        raise click.UsageError("--like-from names the --like reference's domain; pass --like")
    request = [item.strip() for item in (to or "").split(",") if item.strip()]
    if to is not None and not request:
        raise ValueError("--to needs at least one attribute or domain name")
    if detector == "haar" and not haar_available():
        raise ValueError("face detection needs OpenCV 4: pip install 'opencv-python-headless<5' "
                         "(or pass --detector center)")
    inputs = expand_inputs(images)
    if like is not None:
        probe_photo(like)  # a missing or unreadable reference is one line before any work
    failures = _Failures(several=len(inputs) > 1)
    sweeping = len(alphas) > 1
    for n, path in enumerate(inputs):  # a bad header fails before any work
        with failures.guard(n, path):
            size = probe_photo(path)
            if sweeping and not crop_only:
                _check_strip(path, size, len(alphas))
    tag = f"like-{Path(like).stem}" if like is not None else "+".join(request)
    destinations = output_paths(inputs, tag, sweeping, output)
    todo = [n for n in range(len(inputs)) if n not in failures.failed]
    if not todo:
        failures.finish(ctx, [])
        return
    if like is not None and model is None and server is None:
        from keras_l2mgan.editors import default_like_model

        model = str(default_like_model())
    editor = open_editor(model, server, request or None, timeout_s=timeout)
    names = editor.domain_names
    fixed = domain_index(names, source) if source is not None else None
    if like is not None:
        targets = _reference(editor, Path(like), like_source, detector, batch_size)
    else:
        targets = _targets(names, request, fixed)
    # Once the first faces are found: after every check on the request (a bad --to is one
    # line), and a single photo without a face is one line too.
    header = [f"model: {editor.description} (domains: {', '.join(names)})",
              _face_path_line(editor, detector)]
    if editor.training_data == SYNTHETIC:
        header.append(synthetic_note(editor.img_size))

    report = []
    with StagedOutputs() as staged:
        for start in range(0, len(todo), batch_size):
            _edit_batch(editor, todo[start:start + batch_size], inputs, destinations, detector,
                        face_index, fixed, targets, alphas, crop_only, batch_size, failures,
                        staged, report, header)
        staged.commit()
    failures.finish(ctx, report)


# What a model trained on the synthetic faces does to a real photo, and what does better.
IMPORT_COMMAND = ("l2m import 100000_nets_ema.ckpt -o models/l2mgan_smiling "
                  "--domains not_smiling,smiling --landmarks-mean celeba_lm_mean.npz")


def synthetic_note(img_size: int) -> str:
    return (f"note: this model was trained on synthetic {img_size} px cartoon faces, so a real "
            "face comes back as a blurry synthetic repaint; for real-photo quality import the "
            f"authors' CelebA-HQ model: {IMPORT_COMMAND} (README: \"Use the authors' pretrained "
            "models\")")


def _face_path_line(editor, detector: str) -> str:
    found = "Haar-detected faces" if detector == "haar" else "the centred square"
    if editor.aligns_faces:
        return (f"face path: aligned with FAN landmarks to the CelebA-HQ framing ({found}), "
                "pasted back with a feathered face mask")
    missing = "no FAN" if not editor.has_fan else "no landmarks mean"
    return (f"face path: {'detected box' if detector == 'haar' else 'centred square'} "
            f"({missing} in this model for alignment), blended back with feathered edges")


def _edit_batch(editor, batch, inputs, destinations, detector, face_index, fixed, targets,
                alphas, crop_only, batch_size, failures, staged, report, header) -> None:
    """Find, edit and stage the faces of one batch of photos; failed photos are dropped. The
    header lines are printed (and emptied) before the first faces are edited."""
    import numpy as np

    names = editor.domain_names
    batch, photos, boxes = _load_batch(batch, inputs, detector, face_index, failures)
    if not batch:
        return
    for line in header:
        click.echo(line, err=True)
    header.clear()
    jobs = [(k, box) for k, photo_boxes in enumerate(boxes) for box in photo_boxes]
    crops, places = _face_crops(editor, batch, photos, jobs, inputs, failures, batch_size)
    if fixed is not None:
        sources = np.full(len(jobs), fixed, np.int32)
    else:
        sources = np.concatenate([
            np.asarray(editor.guess_domain(crops[i:i + batch_size]), np.int32)
            for i in range(0, len(jobs), batch_size)])
    like = targets if isinstance(targets, _Reference) else None
    goals = np.full(len(jobs), -1, np.int32)
    for k, n in enumerate(batch):
        with failures.guard(n, inputs[n]):
            for i in [i for i, (owner, _) in enumerate(jobs) if owner == k]:
                if places[i] is None:
                    break  # the photo failed while its faces were aligned
                if like is None:
                    goals[i] = _target(targets, int(sources[i]), names, inputs[n])
    keep = [i for i in range(len(jobs)) if batch[jobs[i][0]] not in failures.failed]
    if not keep:
        return
    if like is None:
        edited = _edit_all(editor, crops[keep], sources[keep], goals[keep], alphas, batch_size)
    else:
        edited = _edit_all_like(editor, crops[keep], sources[keep], like, alphas, batch_size)
    by_photo: dict[int, list[int]] = {}
    for j, i in enumerate(keep):
        by_photo.setdefault(jobs[i][0], []).append(j)
    for k, faces in by_photo.items():
        n = batch[k]
        written = _write(staged, photos[k], [places[keep[j]] for j in faces],
                         [edited[j] for j in faces], crop_only, destinations[n], alphas)
        photos[k] = None  # its memory goes once its frames are staged
        changes = [f"{names[sources[keep[j]]]} -> {names[goals[keep[j]]]}" if like is None
                   else f"{names[sources[keep[j]]]} like {like.path.name} "
                   f"({names[like.domain]})" for j in faces]
        what = changes[0] if len(faces) == 1 else f"{len(faces)} faces ({', '.join(changes)})"
        report.append(f"{inputs[n]}: {what}, {written}")


def _face_crops(editor, batch, photos, jobs, inputs, failures, batch_size):
    """The model-size crop of every face, and how each goes back: its box, or (aligned path)
    its photo -> aligned-face matrix. A photo whose face cannot be aligned fails whole (its
    places are None)."""
    import numpy as np

    from keras_l2mgan.photo import crop

    size = editor.img_size
    if not editor.aligns_faces:
        crops = np.stack([crop(photos[k], box, size) for k, box in jobs])
        return crops, [("box", box) for _, box in jobs]
    from keras_l2mgan.align import align_windows, face_window

    windows = [face_window(photos[k], box, size) for k, box in jobs]
    fan_inputs = np.stack([window.fan_input for window in windows])
    landmarks = np.concatenate([editor.landmarks(fan_inputs[i:i + batch_size])
                                for i in range(0, len(jobs), batch_size)])
    crops = np.zeros((len(jobs), size, size, 3), np.uint8)
    places: list = [None] * len(jobs)
    for k, n in enumerate(batch):
        with failures.guard(n, inputs[n]):
            mine = [i for i, (owner, _) in enumerate(jobs) if owner == k]
            faces, matrices = align_windows([windows[i] for i in mine], landmarks[mine],
                                            editor.landmarks_mean, size)
            for i, face, matrix in zip(mine, faces, matrices, strict=True):
                crops[i], places[i] = face, ("aligned", matrix)
    return crops, places


class _Failures:
    """Per-photo errors: with one input they propagate (exit 2, nothing written); with several
    each is named in one line and the run goes on."""

    def __init__(self, several: bool):
        self.several = several
        self.failed: dict[int, str] = {}

    @contextlib.contextmanager
    def guard(self, n: int, path: Path):
        try:
            yield
        except (ValueError, FileNotFoundError) as error:
            # Bugs (the same types raised inside a library) are never filed as a bad photo.
            if not self.several or not raised_in_our_code(error):
                raise
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            self.failed[n] = message if str(path) in message else f"{path}: {message}"
            click.echo(f"Error: {self.failed[n]}", err=True)

    def finish(self, ctx: click.Context, report: list[str]) -> None:
        for line in report:
            click.echo(line)
        if self.several:
            click.echo(f"{len(report)} edited, {len(self.failed)} failed", err=True)
        if self.failed:
            ctx.exit(1)


def _load_batch(batch: list[int], inputs: list[Path], detector: str, face_index: int | None,
                failures: _Failures):
    """Decode a batch of photos and find their faces (each photo's boxes, left to right); the
    photos that fail, or have no face (or no face N), are dropped."""
    from keras_l2mgan.photo import face_boxes, load_photo

    kept, photos, boxes = [], [], []
    for n in batch:
        with failures.guard(n, inputs[n]):
            photo = load_photo(inputs[n])
            found = face_boxes(photo, detector)
            if not found:
                raise ValueError(f"no face found in {inputs[n]}; if it is a portrait framed "
                                 "like CelebA-HQ, pass --detector center")
            if face_index is not None:
                if face_index >= len(found):
                    raise ValueError(f"{inputs[n]} has {len(found)} face(s), so no --face "
                                     f"{face_index} (faces count from 0, left to right)")
                found = [found[face_index]]
            boxes.append(found)
            photos.append(photo)
            kept.append(n)
    return kept, photos, boxes


def _write(staged, photo, places, edited, crop_only: bool, destination,
           alphas: list[float]) -> str:
    """Stage one photo's frames: every face pasted back (how its place says), or with
    --crop-only the edited faces side by side; the report's tail."""
    from PIL import Image

    from keras_l2mgan.align import paste_aligned
    from keras_l2mgan.photo import paste_back, strip

    frames = []
    for j in range(len(alphas)):
        if crop_only:
            faces = [Image.fromarray(face[j]) for face in edited]
            frames.append(faces[0] if len(faces) == 1 else strip(faces))
            continue
        # The last frame is pasted into the photo itself: no full-size copy.
        frame = photo if j == len(alphas) - 1 else photo.copy()
        for (kind, where), face in zip(places, edited, strict=True):
            paste = paste_aligned if kind == "aligned" else paste_back
            paste(frame, face[j], where, in_place=True)
        frames.append(frame)
    path, gif = destination
    if gif is None:
        staged.add(frames[0], path)
    else:
        staged.add(strip(frames), path)
        staged.add(frames, gif)
    return (f"alpha {', '.join(f'{a:g}' for a in alphas)} -> {path}"
            + (f" and {gif}" if gif else ""))


def _check_strip(path: Path, size: tuple[int, int], frames: int) -> None:
    """A sweep's strip holds every frame at full size: refuse one PIL could not open again."""
    from keras_l2mgan.photo import MAX_PIXELS

    limit = 2 * MAX_PIXELS  # PIL's DecompressionBombError threshold
    width, height = size
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


class _Reference:
    """The --like reference: its face crop (model size) and its domain."""

    def __init__(self, path: Path, crop, domain: int):
        self.path, self.crop, self.domain = path, crop, domain


def _reference(editor, path: Path, like_source: str | None, detector: str,
               batch_size: int) -> _Reference:
    """The reference photo's largest face, cropped (or aligned) as the photos' faces are, and
    its domain (--like-from, else the discriminator's guess). Any problem is one line."""
    from keras_l2mgan.editors import domain_index
    from keras_l2mgan.photo import face_boxes, load_photo

    photo = load_photo(path)
    boxes = face_boxes(photo, detector)
    if not boxes:
        raise ValueError(f"no face found in the --like reference {path}; if it is a portrait "
                         "framed like CelebA-HQ, pass --detector center")
    box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    crops, places = _face_crops(editor, [0], [photo], [(0, box)], [path],
                                _Failures(several=False), batch_size)
    if like_source is not None:
        domain = domain_index(editor.domain_names, like_source, "--like-from")
    else:
        domain = int(editor.guess_domain(crops[:1])[0])
    return _Reference(path, crops[0], domain)


def _edit_all_like(editor, crops, sources, like: _Reference, alphas: list[float],
                   batch_size: int):
    """Reference-guided edits of every crop at every alpha: (N, alphas, S, S, 3)."""
    import numpy as np

    jobs = [(i, a) for i in range(len(crops)) for a in alphas]
    edited = []
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        index = np.array([i for i, _ in chunk])
        references = np.repeat(like.crop[None], len(chunk), axis=0)
        edited.append(editor.edit_like(crops[index], references, sources[index],
                                       np.full(len(chunk), like.domain, np.int32),
                                       np.array([a for _, a in chunk], np.float32)))
    edited = np.concatenate(edited)
    return edited.reshape(len(crops), len(alphas), *edited.shape[1:])


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

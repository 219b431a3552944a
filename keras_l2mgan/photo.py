"""Photo input/output for editing: safe decoding, the face crop, and the soft paste-back.

Every read error becomes a one-line ValueError naming the file; writes go to a temp file that
is renamed into place, so a failed run leaves no half-written output.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_l2mgan.atomic import publish, stage_file, write_file_atomic
from keras_l2mgan.grid import image_grid
from keras_l2mgan.image_range import round_to_uint8

# PIL's own warning threshold (~89 megapixels): larger files are refused, not decoded.
MAX_PIXELS = 89_478_485
Box = tuple[int, int, int, int]  # left, top, right, bottom


def probe_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file's header alone (PIL opens lazily): the cheap check that
    the file exists, is an image PIL knows and is under the pixel limit, run on every input
    before any is decoded."""
    path = Path(path)
    with _opened(path, max_pixels) as image:
        return image.size


def load_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode any PIL-readable photo as 8-bit RGB, upright per its EXIF orientation."""
    path = Path(path)
    with _opened(path, max_pixels) as image:
        try:
            image.load()
            # Transpose before the RGB conversion: cheaper on 1-bit / palette / grey data.
            return to_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError) as error:
            raise ValueError(f"image {path} is corrupt or truncated: {error}") from None


@contextmanager
def _opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """The lazily opened image, every read error a one-line ValueError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"image {path} is an empty (zero-byte) file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise ValueError(f"image {path} is too large to decode safely (decompression bomb); "
                         "downscale it first") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read (or it is corrupt)") from None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"image {path} is corrupt or truncated: {error}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ValueError(
                f"image {path} is {width}x{height} = {width * height:,} pixels, over "
                f"the {max_pixels:,} limit (a decompression bomb?); downscale it first")
        yield image


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16/32-bit and float greys scaled, transparency over white.
    Wide greys are scaled in float32 row bands, so nothing full-size is held in floats."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image)
        peak = float(values.max(initial=0))
        if mode == "F" and peak <= 1.0:
            scale = 255.0
        else:  # 16-bit data: full range is 65535 whatever PIL's container mode
            scale = 255.0 / 65535.0 if peak > 255 else 1.0
        grey = np.empty(values.shape, np.uint8)
        for rows in _row_bands(*values.shape):
            band = np.nan_to_num(values[rows].astype(np.float32)) * np.float32(scale)
            grey[rows] = np.clip(np.round(band), 0, 255)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


# Float work on photos runs in row bands of about this many pixels (~12 MB per float32 RGB band).
BAND_PIXELS = 1 << 20


def _row_bands(height: int, width: int) -> Iterator[slice]:
    rows = max(1, BAND_PIXELS // max(1, width))
    for start in range(0, height, rows):
        yield slice(start, min(height, start + rows))


def haar_available() -> bool:
    """The face detector: OpenCV's bundled Haar cascade (opencv-python-headless < 5, a
    dependency; OpenCV 5 dropped CascadeClassifier from the main package)."""
    try:
        import cv2
    except ImportError:
        return False
    return hasattr(cv2, "CascadeClassifier")


DETECTORS = ("haar", "center")
# Haar runs on a copy at most this many pixels across: as good for faces a model can edit
# (the smallest found is then ~1/70 of the photo) and seconds faster on large photos.
DETECT_SIDE = 1600


def face_boxes(image: Image.Image, detector: str = "haar") -> list[Box]:
    """Square boxes around the faces, left to right (by their centres): OpenCV's Haar
    detector's faces, each widened to CelebA-HQ's framing and kept inside the photo; or, with
    detector "center", the centred square (aligned portraits, as in CelebA-HQ). No face: []."""
    width, height = image.size
    side = min(width, height)
    if detector == "center":
        left, top = (width - side) // 2, (height - side) // 2
        return [(left, top, left + side, top + side)]
    if detector != "haar":
        raise ValueError(f"unknown face detector {detector!r}; use one of {', '.join(DETECTORS)}")
    if not haar_available():
        raise ValueError("face detection needs OpenCV 4: pip install 'opencv-python-headless<5' "
                         "(or pass --detector center)")
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades
                                    + "haarcascade_frontalface_default.xml")
    grey = image.convert("L")
    shrink = max(1.0, max(width, height) / DETECT_SIDE)
    if shrink > 1:
        grey = grey.resize((round(width / shrink), round(height / shrink)),
                           Image.Resampling.BILINEAR)
    min_face = max(24, round(side / shrink) // 20)
    faces = [tuple(float(v) * shrink for v in face) for face in cascade.detectMultiScale(
        np.asarray(grey), scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))]
    boxes = []
    for x, y, w, h in _outermost(faces):
        box_side = min(int(max(w, h) * 2.0), side)  # hair and chin, like the aligned datasets
        cx, cy = x + w / 2, y + h / 2 - 0.1 * h
        left = int(np.clip(cx - box_side / 2, 0, width - box_side))
        top = int(np.clip(cy - box_side / 2, 0, height - box_side))
        boxes.append((left, top, left + box_side, top + box_side))
    return boxes


def _outermost(faces: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Detections left to right, without those whose centre lies inside a larger one (the
    cascade sometimes finds a face within a face)."""
    kept = []
    for face in sorted(faces, key=lambda f: -f[2] * f[3]):
        x, y, w, h = face
        cx, cy = x + w / 2, y + h / 2
        if not any(a <= cx <= a + c and b <= cy <= b + d for a, b, c, d in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: f[0] + f[2] / 2)


def crop(image: Image.Image, box: Box, size: int) -> np.ndarray:
    """The box resized to size x size, uint8 (size, size, 3). (resize(box=...) would skip the
    copy of the box but filters across its edges, which changes what the model sees.)"""
    return np.asarray(image.crop(box).resize((size, size), Image.Resampling.LANCZOS), np.uint8)


def paste_back(image: Image.Image, edited: np.ndarray, box: Box, feather: float = 0.08,
               in_place: bool = False) -> Image.Image:
    """Blend the edited crop into the photo: a linear ramp `feather` x box side wide on every
    box edge that lies inside the photo, so no seam shows; edges on the border stay sharp.

    Only the feathered margins are blended, in float32 row bands; the rest of the box takes
    the resized crop as is. in_place=True pastes into `image` itself (no full-size copy)."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    patch = Image.fromarray(np.asarray(edited, np.uint8)).resize(
        (width, height), Image.Resampling.LANCZOS)
    ramp = max(1.0, feather * min(width, height))
    weight_x = _edge_weights(width, left > 0, right < image.width, ramp)
    weight_y = _edge_weights(height, top > 0, bottom < image.height, ramp)
    # The soft columns are a prefix and a suffix of the box (the ramps of its left and right).
    soft_left = int(np.argmax(weight_x >= 1)) if (weight_x >= 1).any() else width
    soft_right = int(np.argmax(weight_x[::-1] >= 1)) if soft_left < width else 0
    result = image if in_place else image.copy()

    def blend(rows: slice, start: int, stop: int) -> None:
        area = (left + start, top + rows.start, left + stop, top + rows.stop)
        original = np.asarray(image.crop(area), np.float32)
        new = np.asarray(patch.crop((start, rows.start, stop, rows.stop)), np.float32)
        weight = np.minimum(weight_y[rows, None], weight_x[None, start:stop])[..., None]
        new -= original
        new *= weight
        new += original
        result.paste(Image.fromarray(round_to_uint8(new)), area[:2])

    for rows in _row_bands(height, width):
        if (weight_y[rows] >= 1).all():  # only the left and right ramps are soft here
            if soft_left + soft_right < width:
                result.paste(patch.crop((soft_left, rows.start, width - soft_right, rows.stop)),
                             (left + soft_left, top + rows.start))
            for start, stop in ((0, soft_left), (width - soft_right, width)):
                if stop > start:
                    blend(rows, start, stop)
        else:
            blend(rows, 0, width)
    return result


def _edge_weights(length: int, soft_start: bool, soft_end: bool, ramp: float) -> np.ndarray:
    """Per-pixel blend weight along one axis of the box: 0 -> 1 over `ramp` pixels from each
    soft edge, 1 everywhere else (float32)."""
    centres = np.arange(length, dtype=np.float32) + np.float32(0.5)
    distance = np.full(length, np.inf, np.float32)
    if soft_start:
        distance = np.minimum(distance, centres)
    if soft_end:
        distance = np.minimum(distance, np.float32(length) - centres)
    return np.clip(distance / np.float32(ramp), 0, 1).astype(np.float32)


def strip(frames: list[Image.Image]) -> Image.Image:
    """Frames side by side (one alpha each)."""
    return image_grid([frames])


def check_writable(directory: str | Path) -> None:
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"output directory {directory} does not exist; create it first")
    try:  # os.access says yes to root everywhere; only a real write tells
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError:
        raise ValueError(f"output directory {directory} is not writable; "
                         "pick another with -o") from None


def save_atomic(image: Image.Image | list[Image.Image], path: str | Path, frame_ms: int = 400,
                image_format: str | None = None) -> Path:
    """Write an image (a list: an animated GIF) whole or not at all (keras_l2mgan.atomic).

    The format follows the suffix (PNG when unknown) unless `image_format` names one."""
    return write_file_atomic(path, _encoder(image, Path(path), frame_ms, image_format))


def write_temp(image: Image.Image | list[Image.Image], path: Path, frame_ms: int = 400) -> Path:
    """The image encoded for `path` into a hidden temp file beside it, ready to publish."""
    return stage_file(path, _encoder(image, path, frame_ms))


def _encoder(image: Image.Image | list[Image.Image], path: Path, frame_ms: int,
             image_format: str | None = None) -> Callable[[BinaryIO], None]:
    """A function writing the image to a binary handle, in the format `path`'s suffix says."""
    image_format = image_format or Image.registered_extensions().get(path.suffix.lower(), "PNG")

    def encode(handle: BinaryIO) -> None:
        if isinstance(image, list):
            image[0].save(handle, save_all=True, append_images=image[1:], duration=frame_ms,
                          loop=0, format="GIF")
        else:
            image.save(handle, format=image_format)

    return encode


class StagedOutputs:
    """Outputs written to temp files beside their destinations and renamed into place only by
    commit(), once every one is ready: a run that fails part-way leaves no output, while
    memory holds one batch of photos at a time. Used as a context manager, an exception
    discards the temp files and the folders it created."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []
        self.created: list[Path] = []

    def add(self, image: Image.Image | list[Image.Image], path: Path) -> None:
        missing = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            self.created.append(directory)
        self.pending.append((write_temp(image, path), path))

    def commit(self) -> None:
        for tmp, path in self.pending:
            publish(tmp, path)
        self.pending.clear()
        self.created.clear()

    def discard(self) -> None:
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)
        for directory in reversed(self.created):
            try:
                directory.rmdir()
            except OSError:  # something else wrote there meanwhile: leave it
                pass
        self.pending.clear()
        self.created.clear()

    def __enter__(self) -> StagedOutputs:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.discard()  # after commit() there is nothing left to discard

"""Photo input/output for editing: safe decoding, the face crop, and the soft paste-back.

Every read error becomes a one-line ValueError naming the file; writes go to a temp file that
is renamed into place, so a failed run leaves no half-written output.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL's own warning threshold (~89 megapixels): larger files are refused, not decoded.
MAX_PIXELS = 89_478_485
Box = tuple[int, int, int, int]  # left, top, right, bottom


def load_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode any PIL-readable photo as 8-bit RGB, upright per its EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"image {path} is an empty (zero-byte) file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ValueError(
                        f"image {path} is {width}x{height} = {width * height:,} pixels, over "
                        f"the {max_pixels:,} limit (a decompression bomb?); downscale it first")
                image.load()
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except Image.DecompressionBombError:
        raise ValueError(f"image {path} is too large to decode safely (decompression bomb); "
                         "downscale it first") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image PIL can read (or it is corrupt)") from None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"image {path} is corrupt or truncated: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16/32-bit and float greys scaled, transparency over white."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode == "F" and values.max(initial=0) <= 1.0:
            scale = 255.0
        else:  # 16-bit data: full range is 65535 whatever PIL's container mode
            scale = 255.0 / 65535.0 if values.max(initial=0) > 255 else 1.0
        grey = np.clip(np.round(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


def haar_available() -> bool:
    """The optional face detector: OpenCV's bundled Haar cascade (opencv-python-headless)."""
    try:
        import cv2
    except ImportError:
        return False
    # OpenCV 5 dropped CascadeClassifier from the main package; the `faces` extra pins 4.x.
    return hasattr(cv2, "CascadeClassifier")


def face_box(image: Image.Image, detector: str = "center") -> Box:
    """A square box around the face: the centred square by default (aligned portraits, as in
    CelebA-HQ), or OpenCV's Haar detector's largest face, widened to CelebA-HQ's framing."""
    width, height = image.size
    side = min(width, height)
    centre = ((width - side) // 2, (height - side) // 2)
    fallback = (centre[0], centre[1], centre[0] + side, centre[1] + side)
    if detector == "center":
        return fallback
    if detector != "haar":
        raise ValueError(f"unknown face detector {detector!r}; use 'center' or 'haar'")
    if not haar_available():
        raise ValueError("the haar detector needs OpenCV 4: pip install 'keras-l2mgan[faces]'")
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades
                                    + "haarcascade_frontalface_default.xml")
    grey = np.asarray(image.convert("L"))
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(24, side // 20),) * 2)
    if len(faces) == 0:
        return fallback
    x, y, w, h = max(faces, key=lambda f: f[2] * f[3])
    box_side = min(int(max(w, h) * 2.0), side)  # hair and chin, like the aligned datasets
    cx, cy = x + w / 2, y + h / 2 - 0.1 * h
    left = int(np.clip(cx - box_side / 2, 0, width - box_side))
    top = int(np.clip(cy - box_side / 2, 0, height - box_side))
    return left, top, left + box_side, top + box_side


def crop(image: Image.Image, box: Box, size: int) -> np.ndarray:
    """The box resized to size x size, uint8 (size, size, 3)."""
    return np.asarray(image.crop(box).resize((size, size), Image.Resampling.LANCZOS), np.uint8)


def paste_back(image: Image.Image, edited: np.ndarray, box: Box,
               feather: float = 0.08) -> Image.Image:
    """Blend the edited crop into the photo: a linear ramp `feather` x box side wide on every
    box edge that lies inside the photo, so no seam shows; edges on the border stay sharp."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    patch = Image.fromarray(np.asarray(edited, np.uint8)).resize(
        (width, height), Image.Resampling.LANCZOS)
    ramp = max(1.0, feather * min(width, height))
    ys, xs = np.arange(height) + 0.5, np.arange(width) + 0.5
    inf = np.full(1, np.inf)
    dist_x = np.minimum(xs if left > 0 else inf, width - xs if right < image.width else inf)
    dist_y = np.minimum(ys if top > 0 else inf, height - ys if bottom < image.height else inf)
    weight = np.clip(np.minimum(dist_y[:, None], dist_x[None, :]) / ramp, 0.0, 1.0)
    original = np.asarray(image.crop(box), np.float32)
    blended = weight[..., None] * np.asarray(patch, np.float32) + (1 - weight[..., None]) * original
    result = image.copy()
    result.paste(Image.fromarray(np.clip(np.round(blended), 0, 255).astype(np.uint8)), box)
    return result


def strip(frames: list[Image.Image]) -> Image.Image:
    """Frames side by side (one alpha each)."""
    width = sum(frame.width for frame in frames)
    height = max(frame.height for frame in frames)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for frame in frames:
        canvas.paste(frame, (x, 0))
        x += frame.width
    return canvas


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


def save_atomic(image: Image.Image | list[Image.Image], path: str | Path,
                frame_ms: int = 400) -> Path:
    """Write an image (a list: an animated GIF) via a temp file in the same directory."""
    path = Path(path)
    suffix = path.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if isinstance(image, list):
            image[0].save(tmp, save_all=True, append_images=image[1:], duration=frame_ms,
                          loop=0, format="GIF")
        else:
            image.save(tmp, format=Image.registered_extensions().get(suffix, "PNG"))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

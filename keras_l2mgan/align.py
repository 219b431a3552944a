"""Face alignment with FAN landmarks (StarGAN v2's recipe), and the way back into the photo.

StarGAN v2 (core/wing.py, ``align_faces``) aligns a photo to the CelebA-HQ framing before
editing: FAN's 98 landmarks, one similarity transform onto the mean CelebA-HQ landmarks, the
photo reflect-padded by half its size with the padding blended towards a blurred copy, and a
Lanczos warp. The facts: ../shared/docs/fan-masks-and-alignment.md. ``paste_aligned`` is the
way back the official code does not have: the inverse warp, blended in with a feathered face
mask so nothing outside the face changes.

Coordinates are (x, y) = (column, row) as OpenCV's warps take them. Matrices are 3x3 and map
the coordinates of one image onto another's (``alignment_matrix``: photo -> aligned face).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# FAN's landmark groups used by the alignment (98-point WFLW layout).
EYE_LEFT = [*range(60, 68), 96]
EYE_RIGHT = [*range(68, 76), 97]
MOUTH_ENDS = (76, 82)
SCALE_POINTS = [96, 97, 76, 82]  # eye centres and mouth ends: the scale's reference points
MEAN_SIZE = 256  # the mean CelebA-HQ landmarks are given at 256 px
FAN_SIZE = 256  # FAN's input size: face crops are resized to this before the landmarks


def landmarks_from_heatmaps(heatmaps, image_size: float) -> np.ndarray:
    """FAN's raw heatmaps (N, h, w, 98), channels last, -> landmarks (N, 98, 2) float32 (x, y)
    in pixels of an image_size x image_size image: per map the arg-max pixel (1-based), nudged
    0.25 px towards the larger neighbour on each axis unless on the border, minus 0.5, times
    image_size / w (StarGAN v2's get_preds_fromhm)."""
    maps = np.moveaxis(np.asarray(heatmaps, np.float32), -1, 1)  # (N, 98, h, w)
    if maps.ndim != 4:
        raise ValueError(f"heatmaps must be (N, h, w, landmarks), got {np.shape(heatmaps)}")
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    row, col = np.divmod(flat.argmax(-1), w)
    # Neighbours of border peaks are read at clipped positions and then ignored.
    r, k = np.clip(row, 1, h - 2), np.clip(col, 1, w - 2)

    def at(rows, cols):
        return np.take_along_axis(flat, (rows * w + cols)[..., None], -1)[..., 0]

    inner = (row > 0) & (row < h - 1) & (col > 0) & (col < w - 1)
    dx = np.where(inner, 0.25 * np.sign(at(r, k + 1) - at(r, k - 1)), 0.0)
    dy = np.where(inner, 0.25 * np.sign(at(r + 1, k) - at(r - 1, k)), 0.0)
    points = np.stack([col + 1 + dx - 0.5, row + 1 + dy - 0.5], -1)
    return (points * (image_size / w)).astype(np.float32)


def landmarks_from_heatmaps_tf(heatmaps, image_size: float):
    """``landmarks_from_heatmaps`` in TensorFlow ops, for the exported `landmarks` signature
    (so a TF Serving client gets 98 points per face, not 1.6 MB of heatmaps)."""
    import tensorflow as tf

    maps = tf.transpose(tf.cast(heatmaps, tf.float32), [0, 3, 1, 2])
    shape = tf.shape(maps)
    h, w = shape[2], shape[3]
    flat = tf.reshape(maps, [shape[0], shape[1], h * w])
    index = tf.argmax(flat, axis=-1, output_type=tf.int32)
    row, col = index // w, index % w
    r, k = tf.clip_by_value(row, 1, h - 2), tf.clip_by_value(col, 1, w - 2)

    def at(rows, cols):
        return tf.gather(flat, rows * w + cols, batch_dims=2)

    inner = (row > 0) & (row < h - 1) & (col > 0) & (col < w - 1)
    zero = tf.zeros_like(flat[..., 0])
    dx = tf.where(inner, 0.25 * tf.sign(at(r, k + 1) - at(r, k - 1)), zero)
    dy = tf.where(inner, 0.25 * tf.sign(at(r + 1, k) - at(r - 1, k)), zero)
    points = tf.stack([tf.cast(col, tf.float32) + 0.5 + dx, tf.cast(row, tf.float32) + 0.5 + dy],
                      -1)
    return points * (float(image_size) / tf.cast(w, tf.float32))


def _x_axis(points: np.ndarray) -> np.ndarray:
    """The face's x-axis as in the PGGAN CelebA-HQ recipe: eye to eye, corrected by the
    perpendicular of eyes-to-mouth, normalised."""
    left, right = points[EYE_LEFT].mean(0), points[EYE_RIGHT].mean(0)
    mouth = (points[MOUTH_ENDS[0]] + points[MOUTH_ENDS[1]]) / 2
    up = (left + right) / 2 - mouth
    axis = (right - left) - np.array([up[1], -up[0]])
    return axis / np.linalg.norm(axis)


def _translation(offset) -> np.ndarray:
    matrix = np.eye(3)
    matrix[:2, 2] = offset
    return matrix


def alignment_matrix(landmarks, mean_landmarks) -> np.ndarray:
    """The 3x3 similarity taking a face's landmarks (98, 2) onto the mean landmarks (98, 2):
    the landmarks' mean to the origin, the face's x-axis rotated onto the mean's, scaled by the
    mean ratio of distances from the centre to the eyes and mouth ends (mean / face), then to
    the mean's centre. A degenerate set of landmarks (no axis, zero scale) is a ValueError."""
    points = np.asarray(landmarks, np.float64)
    reference = np.asarray(mean_landmarks, np.float64)
    for name, array in (("landmarks", points), ("mean landmarks", reference)):
        if array.shape != (98, 2):
            raise ValueError(f"{name} must be (98, 2), got {array.shape}")
    centre, reference_centre = points.mean(0), reference.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        source_axis, target_axis = _x_axis(points), _x_axis(reference)
        # atan2 rather than the official sqrt(1 - c^2) * sign(cross): the same rotation,
        # without a NaN when rounding puts c a hair above 1.
        angle = np.arctan2(source_axis[0] * target_axis[1] - source_axis[1] * target_axis[0],
                           source_axis @ target_axis)
        distances = np.linalg.norm(points - centre, axis=1)[SCALE_POINTS]
        scale = (np.linalg.norm(reference - reference_centre, axis=1)[SCALE_POINTS]
                 / distances).mean()
    if not (np.isfinite(angle) and np.isfinite(scale) and scale > 0):
        raise ValueError("the face's landmarks are degenerate (the eyes and mouth coincide); "
                         "no alignment is possible")
    cos, sin = np.cos(angle), np.sin(angle)
    rotate_scale = np.array([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]) * [[scale], [scale], [1]]
    return _translation(reference_centre) @ rotate_scale @ _translation(-centre)


def matrix_scale(matrix) -> float:
    """How many output pixels one input pixel spans under a similarity matrix."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:2, :2]))))


def resize_matrix(old_size: tuple[int, int], new_size: tuple[int, int]) -> np.ndarray:
    """3x3 taking pixel coordinates of an image of old_size (w, h) to the same point after
    PIL's resize to new_size (pixel centres stay centres)."""
    fx, fy = new_size[0] / old_size[0], new_size[1] / old_size[1]
    return np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])


def _pad_mirror(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """StarGAN v2's pad_mirror: reflect-pad by half the size on each side and blend the
    padding towards a blurred copy (weight ramps over a quarter of the padded height, to the
    4th power), so the warp shows no mirror seams. float32 (H', W', 3) and the (x, y) shift."""
    import cv2
    from scipy.ndimage import gaussian_filter

    height, width = image.shape[:2]
    padded = np.pad(image, ((height // 2,) * 2, (width // 2,) * 2, (0, 0)), mode="reflect")
    # The blur: at half resolution, sigma H // 100, as skimage's gaussian (mode nearest,
    # truncate 4) after OpenCV's linear resize; then back to the padded size.
    small = cv2.resize(padded, (width, height)).astype(np.float32)
    sigma = height // 100
    if sigma > 0:
        small = gaussian_filter(small, (sigma, sigma, 0), mode="nearest", truncate=4.0)
    tall, wide = padded.shape[:2]
    blurred = cv2.resize(small, (wide, tall))
    ramp = max(1, tall // 4)  # the official code ramps both axes over the height's quarter

    def edge(length: int) -> np.ndarray:
        weight = np.clip(np.arange(length, dtype=np.float32) / ramp, 0, 1)
        return np.minimum(weight, weight[::-1])

    weight = np.minimum(edge(tall)[:, None], edge(wide)[None, :])[..., None] ** 4
    result = padded.astype(np.float32)
    result -= blurred
    result *= weight
    result += blurred
    return result, (width // 2, height // 2)


def align_face(photo, matrix, output_size: int) -> np.ndarray:
    """The aligned face, uint8 (output_size, output_size, 3): `photo` (PIL image or uint8
    array, ideally a window around one face) warped by `matrix` (photo -> aligned pixels) as
    StarGAN v2 does: mirror padding blended to a blur, then a Lanczos warp.

    A warp that would shrink the photo (more photo pixels than output pixels) first resizes
    it with PIL's antialiased Lanczos, as the official code works on a photo already resized
    to the model size; this also bounds the memory to a few times the output's."""
    import cv2

    image = np.asarray(photo.convert("RGB") if isinstance(photo, Image.Image) else photo,
                       np.uint8)
    matrix = np.asarray(matrix, np.float64)
    scale = matrix_scale(matrix)
    if scale < 1:
        height, width = image.shape[:2]
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        matrix = matrix @ np.linalg.inv(resize_matrix((width, height), size))
    padded, (dx, dy) = _pad_mirror(image)
    warped = cv2.warpPerspective(padded, matrix @ _translation((-dx, -dy)),
                                 (output_size, output_size), flags=cv2.INTER_LANCZOS4)
    return np.clip(np.round(warped), 0, 255).astype(np.uint8)


def face_mask_weights(u: np.ndarray, v: np.ndarray, size: int, feather: float) -> np.ndarray:
    """The paste-back weight at aligned-face coordinates (u, v): 1 inside the circle inscribed
    in the aligned square, falling linearly to 0 at its edge over `feather` x its radius. The
    aligned square is the CelebA-HQ framing, so this covers the face, the hairline and a little
    background, never the square's corners (where the generator repaints background)."""
    radius = size / 2
    centre = (size - 1) / 2
    distance = np.sqrt((u - centre) ** 2 + (v - centre) ** 2) / radius
    return np.clip((1 - distance) / feather, 0, 1).astype(np.float32)


def paste_aligned(photo: Image.Image, edited_face: np.ndarray, matrix, feather: float = 0.15,
                  in_place: bool = False) -> Image.Image:
    """Carry an edited aligned face back into the photo: the inverse of `matrix` (photo ->
    aligned pixels), Lanczos, blended with ``face_mask_weights``. Pixels the mask gives 0
    (everything outside the face's circle) keep their exact values; the photo keeps its size.

    Works in float32 row bands over the face's bounding box only, so memory does not grow
    with the photo. in_place=True pastes into `photo` itself (no full-size copy)."""
    import cv2

    from keras_l2mgan.photo import _row_bands

    face = np.asarray(edited_face, np.uint8)
    size = face.shape[0]
    if face.shape != (size, size, 3):
        raise ValueError(f"the edited face must be (S, S, 3), got {face.shape}")
    matrix = np.asarray(matrix, np.float64)
    inverse = np.linalg.inv(matrix)
    corners = np.array([[-1, -1, 1], [size, -1, 1], [-1, size, 1], [size, size, 1]], float)
    mapped = corners @ inverse.T
    mapped = mapped[:, :2] / mapped[:, 2:]
    left, top = np.floor(mapped.min(0)).astype(int) - 1
    right, bottom = np.ceil(mapped.max(0)).astype(int) + 2
    left, top = max(0, left), max(0, top)
    right, bottom = min(photo.width, right), min(photo.height, bottom)
    result = photo if in_place else photo.copy()
    if right <= left or bottom <= top:
        return result
    # Going back shrinks the face when the photo holds it at fewer pixels than the model size:
    # resize it first (antialiased), as Lanczos alone would alias.
    source, to_source = face.astype(np.float32), matrix
    scale = matrix_scale(matrix)
    if scale > 1:
        small = (max(2, round(size / scale)),) * 2
        source = np.asarray(Image.fromarray(face).resize(small, Image.Resampling.LANCZOS),
                            np.float32)
        to_source = resize_matrix((size, size), small) @ matrix
    width = right - left
    for rows in _row_bands(bottom - top, width):
        y0 = top + rows.start
        height = rows.stop - rows.start
        xs, ys = np.meshgrid(np.arange(left, right, dtype=np.float64),
                             np.arange(y0, y0 + height, dtype=np.float64))
        u = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
        v = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
        weight = face_mask_weights(u, v, size, feather)
        if not weight.any():
            continue
        new = cv2.warpPerspective(source, to_source @ _translation((left, y0)), (width, height),
                                  flags=cv2.INTER_LANCZOS4 | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
        area = (left, y0, right, y0 + height)
        original = np.asarray(photo.crop(area), np.float32)
        new -= original
        new *= weight[..., None]
        new += original
        result.paste(Image.fromarray(np.clip(np.round(new), 0, 255).astype(np.uint8)), area[:2])
    return result


@dataclass
class FaceWindow:
    """A window of the photo around one detected face, ready for the aligned path.

    fan_input: the detection box at FAN's input size (uint8 256 x 256 x 3); from_fan: 3x3 from
    its pixels to the photo's. image: the photo inside a margin around the box (clipped to the
    photo; the alignment's mirror padding stands in for what lies outside), resized so it holds
    no more pixels than the aligned face needs; to_image: 3x3 from the photo to it."""

    fan_input: np.ndarray
    from_fan: np.ndarray
    image: np.ndarray
    to_image: np.ndarray


def face_window(photo: Image.Image, box: tuple[int, int, int, int], output_size: int,
                margin: float = 1.5) -> FaceWindow:
    """The FaceWindow of `box` (a square at about the CelebA-HQ framing, as face detection
    gives): FAN sees the box itself; the window is `margin` times the box, so a tilted face's
    aligned square still falls inside it."""
    from keras_l2mgan.photo import crop

    left, top, right, bottom = box
    side = right - left
    fan_input = crop(photo, box, FAN_SIZE)
    from_fan = _translation((left, top)) @ np.linalg.inv(
        resize_matrix((side, side), (FAN_SIZE, FAN_SIZE)))
    half = side * margin / 2
    cx, cy = (left + right) / 2, (top + bottom) / 2
    window = (max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half))),
              min(photo.width, int(np.ceil(cx + half))), min(photo.height, int(np.ceil(cy + half))))
    width, height = window[2] - window[0], window[3] - window[1]
    # The aligned square spans about the box: keep up to twice the output size across it.
    factor = min(1.0, 2 * output_size / side)
    size = (max(2, round(width * factor)), max(2, round(height * factor)))
    # resize(box=) reads the window straight from the photo: no full-resolution copy of it.
    image = (photo.resize(size, Image.Resampling.LANCZOS, box=window)
             if size != (width, height) else photo.crop(window))
    to_image = resize_matrix((width, height), size) @ _translation((-window[0], -window[1]))
    return FaceWindow(fan_input, from_fan, np.asarray(image, np.uint8), to_image)


def transform_points(matrix, points) -> np.ndarray:
    """(..., 2) points through a 3x3 matrix."""
    points = np.asarray(points, np.float64)
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    mapped = homogeneous @ np.asarray(matrix, np.float64).T
    return mapped[..., :2] / mapped[..., 2:]


def align_windows(windows: list[FaceWindow], landmarks_fan: np.ndarray, mean_landmarks,
                  output_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Aligned faces (F, S, S, 3) of the windows, from their FAN landmarks (F, 98, 2) at FAN's
    input size, and the photo -> aligned matrices that paste them back."""
    reference = np.asarray(mean_landmarks, np.float64) * (output_size / MEAN_SIZE)
    faces, matrices = [], []
    for window, points in zip(windows, landmarks_fan, strict=True):
        to_face = alignment_matrix(transform_points(window.from_fan, points), reference)
        faces.append(align_face(window.image, to_face @ np.linalg.inv(window.to_image),
                                output_size))
        matrices.append(to_face)
    return np.stack(faces), matrices

"""Face alignment: FAN heatmaps -> landmarks, the similarity onto the mean landmarks, and the
aligned warp and its way back (pixels away from the face never change)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_l2mgan.align import (
    align_face,
    alignment_matrix,
    landmarks_from_heatmaps,
    landmarks_from_heatmaps_tf,
    paste_aligned,
    transform_points,
)

# NumPy and OpenCV only (the TF twin of the landmarks runs on TensorFlow whatever the backend).
pytestmark = pytest.mark.backend_independent


def _gaussian_heatmaps(centres: np.ndarray, size: int = 64, sigma: float = 1.5) -> np.ndarray:
    """(N, size, size, L) heatmaps with one Gaussian per landmark at `centres` (N, L, 2), in
    heatmap pixels (x = column, y = row, pixel centres at integers)."""
    grid = np.arange(size, dtype=np.float32)
    dx = grid[None, None, :] - centres[..., 0, None]  # (N, L, size) over columns
    dy = grid[None, None, :] - centres[..., 1, None]
    maps = np.exp(-(dy[..., :, None] ** 2 + dx[..., None, :] ** 2) / (2 * sigma**2))
    return np.moveaxis(maps, 1, -1).astype(np.float32)


def test_landmarks_recover_gaussian_peaks_to_a_quarter_pixel():
    centres = np.random.default_rng(0).uniform(3, 60, (2, 98, 2)).astype(np.float32)
    heatmaps = _gaussian_heatmaps(centres)
    # At image_size 64 one heatmap pixel is one image pixel; the estimate's pixel-centre
    # convention is the official one (a peak at pixel k reads k + 0.5).
    found = landmarks_from_heatmaps(heatmaps, 64) - 0.5
    assert found.shape == (2, 98, 2) and found.dtype == np.float32
    assert np.abs(found - centres).max() < 0.3
    np.testing.assert_allclose(landmarks_from_heatmaps(heatmaps, 256), (found + 0.5) * 4,
                               rtol=1e-6)


def test_landmarks_nudge_and_border_rules_are_the_official_ones():
    # Peaks exactly on pixels, a quarter off towards +x and -y, and on the border.
    centres = np.array([[[10, 20], [10.3, 19.6], [0, 30], [40, 63]]], np.float32)
    found = landmarks_from_heatmaps(_gaussian_heatmaps(centres), 64)
    expected = [[10.5, 20.5], [10.75, 20.25], [0.5, 30.5], [40.5, 63.5]]  # border: no nudge
    np.testing.assert_array_equal(found[0], expected)


def test_the_tensorflow_landmarks_equal_the_numpy_ones():
    rng = np.random.default_rng(1)
    heatmaps = np.concatenate([rng.normal(size=(2, 64, 64, 98)),
                               _gaussian_heatmaps(rng.uniform(0, 63, (1, 98, 2)))]
                              ).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(landmarks_from_heatmaps_tf(heatmaps, 256)),
                                  landmarks_from_heatmaps(heatmaps, 256))


def _mean_face() -> np.ndarray:
    """A stand-in for the mean CelebA-HQ landmarks at 256 px: random points, with the eyes
    and mouth ends where a face has them."""
    points = np.random.default_rng(2).uniform(60, 200, (98, 2))
    points[60:68] = [95, 120] + np.random.default_rng(3).normal(0, 4, (8, 2))
    points[68:76] = [161, 120] + np.random.default_rng(4).normal(0, 4, (8, 2))
    points[96], points[97] = [95, 120], [161, 120]
    points[76], points[82] = [104, 180], [152, 180]
    return points


def _similarity(angle_deg: float, scale: float, shift) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]],
                     [scale * np.sin(a), scale * np.cos(a), shift[1]], [0, 0, 1]])


def test_alignment_matrix_undoes_a_similarity():
    mean = _mean_face()
    moved = _similarity(23, 1.7, (310, -45))
    landmarks = transform_points(moved, mean)
    matrix = alignment_matrix(landmarks, mean)
    np.testing.assert_allclose(matrix, np.linalg.inv(moved), atol=1e-9)
    np.testing.assert_allclose(transform_points(matrix, landmarks), mean, atol=1e-9)
    with pytest.raises(ValueError, match="degenerate"):
        alignment_matrix(np.zeros((98, 2)), mean)


def _photo(width: int = 300, height: int = 240) -> Image.Image:
    """Smooth colour gradients plus fine noise: any misplaced or changed pixel shows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = 30 + np.stack([x / width, y / height, (x + y) / (width + height)], -1) * 200
    rgb += np.random.default_rng(5).normal(0, 3, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def test_align_and_paste_back_change_only_the_face():
    photo = _photo()
    size = 64
    # A face of about 90 px at (120, 110), tilted 15 degrees, to a 64 px aligned square.
    matrix = _similarity(15, size / 90, (0, 0))
    matrix[:2, 2] = size / 2 - transform_points(matrix, [120, 110])
    face = align_face(photo, matrix, size)
    assert face.shape == (size, size, 3) and face.dtype == np.uint8
    # The aligned face is the photo's content: its centre pixel is the photo's at (120, 110).
    assert np.abs(face[32, 32].astype(int) - np.asarray(photo)[110, 120]).max() <= 12

    edited = np.full_like(face, 255)
    result = paste_aligned(photo, edited, matrix)
    assert result.size == photo.size
    before, after = np.asarray(photo), np.asarray(result)
    y, x = np.mgrid[0:photo.height, 0:photo.width]
    u, v = (transform_points(matrix, np.stack([x, y], -1)) - (size - 1) / 2).transpose(2, 0, 1)
    radius = np.hypot(u, v) / (size / 2)
    np.testing.assert_array_equal(after[radius >= 1], before[radius >= 1])  # bit-identical
    assert (after[radius < 0.8] == 255).all()  # the face itself is the edit
    changed = (after != before).any(-1)
    assert 0.05 < changed.mean() < 0.2

    # Pasting the unedited aligned face back is close to the photo (the warps are inverses).
    same = np.asarray(paste_aligned(photo, face, matrix), np.int16)
    assert np.abs(same - before)[radius < 0.8].mean() < 4
    # in_place pastes into the photo itself.
    copy = photo.copy()
    assert paste_aligned(copy, edited, matrix, in_place=True) is copy


def test_align_face_pads_a_face_at_the_border_with_its_mirror_blended_to_a_blur():
    photo = _photo()
    size = 64
    matrix = _similarity(0, 1.0, (0, 0))  # the photo's top-left 64 px, half of it outside
    matrix[:2, 2] = (32, 32)
    face = align_face(photo, matrix, size).astype(int)
    inside = np.asarray(photo, int)[:32, :32]
    assert np.abs(face[32:, 32:] - inside).max() <= 2  # Lanczos at scale 1: the pixels
    # The padding mirrors the photo near its edge (blend weight ~1 there), never black.
    assert face[:32, :32].min() > 10
    assert np.abs(face[31, 40] - np.asarray(photo, int)[1, 8]).max() <= 12

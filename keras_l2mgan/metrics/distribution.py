"""Distances between image distributions, from feature vectors: FID and KID.

FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two feature
sets, ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the matrix root by scipy.linalg.sqrtm.
KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def _features(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be (N, D) features with N >= 2, got shape {x.shape}")
    return x


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) features."""
    x = _features(features, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            root = linalg.sqrtm(sigma1 @ sigma2)
        except linalg.LinAlgWarning:
            root = np.full_like(sigma1, np.nan)
    if not np.isfinite(root).all():
        # Singular product (fewer samples than dimensions): regularise, as the reference does.
        offset = np.eye(len(sigma1)) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    root = np.real(root)  # numerical noise leaves tiny imaginary parts
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root)
    return float(max(value, 0.0))


def fid(features_a, features_b) -> float:
    """FID between two (N, D) feature sets."""
    mu1, s1 = gaussian_stats(_features(features_a, "features_a"))
    mu2, s2 = gaussian_stats(_features(features_b, "features_b"))
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


def polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally sized samples, cubic polynomial kernel."""
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    m = len(x)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.mean())


def kid(features_a, features_b, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of the subset MMD^2 estimates.

    subset_size is capped at the smaller set; with both sets no larger than it, one subset (all
    of both, equal sizes) is used.
    """
    x = _features(features_a, "features_a")
    y = _features(features_b, "features_b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    m = min(subset_size, len(x), len(y))
    if m == len(x) == len(y):
        return polynomial_mmd2(x, y), 0.0
    rng = np.random.default_rng(seed)
    values = [polynomial_mmd2(x[rng.choice(len(x), m, replace=False)],
                              y[rng.choice(len(y), m, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))

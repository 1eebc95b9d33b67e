"""Random smooth fields and rotations shared by the synthetic data sets (phantom, anatomy)."""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_noise", "rotation_matrix", "add_rician_noise", "check_grid_shape"]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], wavelength: float) -> np.ndarray:
    """Unit-variance smooth random field (float32) with correlation length ~``wavelength`` voxels.

    A coarse normal grid interpolated with separable Gaussian radial basis functions: three small
    matrix products instead of a full-volume convolution, so large grids stay cheap. Each basis
    row is normalised to unit norm, which makes the variance exactly 1 at every voxel.
    """
    wl = max(float(wavelength), 1.0)
    mats = []
    for n in shape:
        m = int(np.ceil((n - 1) / wl)) + 3
        centres = (np.arange(m) - 1.0) * wl  # control points cover the grid with one spare each side
        w = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None, :]) / (0.6 * wl)) ** 2)
        w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
        mats.append(w.astype(np.float32))
    coarse = rng.standard_normal(tuple(w.shape[1] for w in mats)).astype(np.float32)
    f = np.tensordot(mats[0], coarse, axes=(1, 0))  # (X, mb, mc)
    f = np.tensordot(f, mats[1], axes=(1, 1))  # (X, mc, Y)
    f = np.tensordot(f, mats[2], axes=(1, 1))  # (X, Y, Z)
    return np.ascontiguousarray(f, dtype=np.float32)


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """3x3 rotation: about x, then y, then z, by ``angles_deg`` (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def add_rician_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """In place: ``img <- |img + sigma (n1 + i n2)|``, the magnitude of a complex Gaussian signal
    (Rician noise, as magnitude MR images have). Two standard normals per voxel, in a fixed order."""
    sigma = np.float32(sigma)
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= sigma
    img += n
    np.square(img, out=img)
    rng.standard_normal(img.shape, dtype=np.float32, out=n)
    n *= sigma
    np.square(n, out=n)
    img += n
    np.sqrt(img, out=img)
    return img


def check_grid_shape(shape: object, min_side: int, error: type[Exception], example: str) -> tuple[int, int, int]:
    """``shape`` as 3 ints >= ``min_side``, or ``error`` naming the rule and an ``example``."""
    as_tuple = tuple(shape) if isinstance(shape, (list, tuple)) else shape
    if (
        not isinstance(as_tuple, tuple)
        or len(as_tuple) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in as_tuple)
        or min(as_tuple) < min_side
    ):
        raise error(f"shape must be 3 integers >= {min_side}, got {shape!r}; {example}")
    return tuple(int(v) for v in as_tuple)  # type: ignore[return-value]

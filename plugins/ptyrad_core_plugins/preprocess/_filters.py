"""Pieces shared by the preprocessing steps (not a plugin itself: no entry point).

- :func:`gaussian_filter`: a NumPy Gaussian filter with the numerics of
  ``scipy.ndimage.gaussian_filter`` as PtyRAD calls it (``mode="reflect"``, ``truncate=4.0``),
  used by ``add_source_size`` and ``add_detector_blur``.
"""

from __future__ import annotations

import numpy as np


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter1d``'s taps: ``exp(-x^2 / (2 sigma^2))`` on
    ``|x| <= int(truncate sigma + 0.5)``, sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def gaussian_filter1d(x: np.ndarray, sigma: float, axis: int, truncate: float = 4.0) -> np.ndarray:
    """1-D Gaussian filter of ``x`` (float64 result) along ``axis``, boundary as scipy's ``mode="reflect"``.

    scipy's ``reflect`` extends the data by mirroring about the outer pixel *edge* (``d c b a |
    a b c d | d c b a``, the edge pixel repeated), which is NumPy's ``np.pad(mode="symmetric")``,
    also for kernels wider than the axis (both repeat the reflection periodically). (torch's and
    ``ptyrad_core.kernel.ops``' ``"reflect"`` is scipy's ``"mirror"``, which does not repeat the edge
    pixel: hence NumPy here.)
    """
    w = gaussian_weights(sigma, truncate)
    r = (len(w) - 1) // 2
    x = np.asarray(x, dtype=np.float64)
    if r == 0:
        return x.copy()
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)], mode="symmetric")
    out = w[0] * padded[..., 0:n]
    for k in range(1, len(w)):
        out += w[k] * padded[..., k : k + n]
    return np.moveaxis(out, -1, axis)


def gaussian_filter(x: np.ndarray, sigma: float, axes: tuple[int, ...], truncate: float = 4.0) -> np.ndarray:
    """Separable Gaussian filter (same ``sigma`` on every axis in ``axes``), float64 result.

    ``scipy.ndimage.gaussian_filter(x, sigma, axes=axes, mode="reflect", truncate=truncate)``
    up to rounding: scipy rounds to the input dtype (float32) between the axes, this stays in
    float64 (differences ~1e-7 relative).
    """
    out = np.asarray(x, dtype=np.float64)
    for axis in axes:
        out = gaussian_filter1d(out, sigma, axis, truncate)
    return out

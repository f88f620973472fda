"""Quality metrics against ground truth.

The projected phase of a reconstruction is the occupancy-weighted mean over object modes of the
sum over slices. Ptychography fixes the phase only up to a constant, so the error removes each
image's mean over the compared region before comparing.
"""

from __future__ import annotations

import numpy as np


def projected_phase(phase: np.ndarray, occupancy: np.ndarray | None = None) -> np.ndarray:
    """``(omode, Nz, NY, NX)`` phase -> ``(NY, NX)`` projected phase (radians)."""
    phase = np.asarray(phase, dtype=np.float64)
    occ = np.full(phase.shape[0], 1.0 / phase.shape[0]) if occupancy is None else np.asarray(occupancy, float)
    return np.tensordot(occ / occ.sum(), phase.sum(axis=1), axes=1)


def scanned_region(positions_px: np.ndarray, window: tuple[int, int]) -> tuple[slice, slice]:
    """The box (object pixels) spanned by the probe-window centres: what the scan illuminated best."""
    centres = np.floor(positions_px) + np.asarray(window) // 2
    (y0, x0), (y1, x1) = centres.min(0).astype(int), centres.max(0).astype(int)
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def phase_error(recon: np.ndarray, truth: np.ndarray, region: tuple[slice, slice]) -> float:
    """Relative RMS error ``||r - t|| / ||t||`` over ``region`` after removing each image's mean there."""
    r = np.asarray(recon, dtype=np.float64)[region]
    t = np.asarray(truth, dtype=np.float64)[region]
    if r.shape != t.shape or r.size == 0:
        raise ValueError(f"phase_error: region gives shapes {r.shape} (reconstruction) and {t.shape} (truth)")
    r = r - r.mean()
    t = t - t.mean()
    return float(np.linalg.norm(r - t) / np.linalg.norm(t))

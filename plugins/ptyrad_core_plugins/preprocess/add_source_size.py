"""Simulate a finite source size (partial spatial coherence): PtyRAD's ``meas_add_source_size``.

For simulated, perfectly coherent data: each pattern becomes a Gaussian-weighted average of the
patterns at neighbouring scan positions,

    I'(r, c, k) = sum_{r', c'} g(r - r') g(c - c') I(r', c', k),    g(t) ~ exp(-t^2 / (2 s^2))

over the ``(n_slow, n_fast)`` scan grid, with ``s = std_A / scan.step_A`` in scan steps: the
incoherent mixing that a demagnified source of Gaussian profile (std ``std_A`` at the sample)
produces. Typical ``std_A`` 0.2 - 0.6 Angstrom for a cold FEG / Schottky source; 0 does
nothing (as PtyRAD).

Numerics as PtyRAD's ``scipy.ndimage.gaussian_filter(meas, s, axes=(0, 1))``: taps on
``|t| <= int(4 s + 0.5)`` (``truncate = 4``), normalised to 1, and ``mode = "reflect"`` at the scan
edges (mirrored about the outer edge, the edge pattern repeated). Computed with NumPy in float64
(scipy rounds to float32 between the two axes; ~1e-7 relative difference); no scipy needed.

Needs the measurements in memory (it mixes patterns), the scan shape (``scan.n_slow`` /
``scan.n_fast`` or 4-D data) and the raster step ``scan.step_A``.
"""

from __future__ import annotations

import numpy as np

from ptyrad_core.plugin import DataError, Field, Measurements, PluginOptions, Preprocessor, hookimpl

from ._filters import gaussian_filter


def blur_scan(array: np.ndarray, scan_shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian filter of ``(N, ky, kx)`` patterns over the ``scan_shape`` axes, float32, in
    detector-pixel chunks."""
    n_slow, n_fast = scan_shape
    flat = array.reshape(n_slow, n_fast, -1)
    out = np.empty(flat.shape, dtype=np.float32)
    per = max(1, Measurements.CHUNK_BYTES // (8 * n_slow * n_fast))
    for start in range(0, flat.shape[-1], per):
        out[..., start : start + per] = gaussian_filter(flat[..., start : start + per], sigma, axes=(0, 1))
    return out.reshape(array.shape)


class AddSourceSize(Preprocessor):
    """Gaussian blur of the patterns across neighbouring scan positions (std in Angstrom)."""

    class Options(PluginOptions):
        std_A: float = Field(
            ge=0, description="Source size: Gaussian std at the sample in Angstrom (0: nothing)."
        )

    def transform(self, measurements, context) -> None:
        std = self.options.std_A
        if std == 0:
            return
        measurements.as_patterns()
        if context.scan_step_A is None:
            raise DataError("std_A needs the scan step to convert Angstrom to scan steps; set scan.step_A")
        scan_shape = context.scan_shape or measurements.scan_shape
        if scan_shape is None:
            raise DataError(
                "std_A needs the scan shape (n_slow, n_fast); set scan.n_slow and scan.n_fast "
                "(or load 4-D data)"
            )
        array = measurements.require_memory("add_source_size")
        n_slow, n_fast = (int(s) for s in scan_shape)
        if n_slow * n_fast != measurements.n:
            raise DataError(
                f"the scan shape {n_slow} x {n_fast} does not match the {measurements.n} patterns"
            )
        sigma = std / context.scan_step_A
        measurements.set_array(blur_scan(array, (n_slow, n_fast), sigma))
        context.notes.append(f"add_source_size: std {std:.4g} A = {sigma:.4g} scan steps")


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("add_source_size", AddSourceSize)

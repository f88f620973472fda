"""Simulate counting (shot) noise: PtyRAD's ``meas_add_poisson_noise``.

For simulated data, with ``n_e`` electrons per pattern:

    c  = sum_{j,k} I_j(k) / N                     (mean total intensity per pattern)
    I' = Poisson(n_e I / c) c / n_e

i.e. the patterns are normalised to ~1 electron in total, drawn as Poisson counts at the dose,
and scaled back to the original intensity level (the mean is kept; the relative noise of a pixel
with ``n`` expected counts is ``1 / sqrt(n)``). ``unit``:

- ``total_e_per_pattern``: ``n_e = value`` (electrons per pattern, e.g. 1e4 - 1e7);
- ``e_per_A2``: a dose, ``n_e = value * scan.step_A^2`` (e.g. 1e3 - 1e6 e/A^2; PtyRAD's
  ``e_per_Ang2``).

As PtyRAD, negative values are an error unless they are rounding noise (``min / mean > -1e-5``),
which is clipped to 0. The noise is reproducible: drawn from ``numpy.random.default_rng([recon.seed,
SALT])`` (a fixed salt of this step), pattern blocks in order. PtyRAD draws with the legacy global
``np.random.poisson`` after ``set_random_seed``, so the realisations differ (same statistics);
``c`` is accumulated in float64 here (PtyRAD: float32).

Needs the measurements in memory (the noise must be the same on every read of a pattern).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ptyrad_core.plugin import DataError, Field, Measurements, PluginOptions, Preprocessor, hookimpl

SALT = 0x5049  # fixed: the noise depends only on recon.seed and the data


def poisson_noise(array: np.ndarray, total_electrons: float, rng: np.random.Generator) -> np.ndarray:
    """``Poisson(n_e I / c) c / n_e`` with ``c`` the mean total intensity per pattern, float32, drawn in
    pattern blocks."""
    c = float(array.sum(dtype=np.float64)) / len(array)
    out = np.empty(array.shape, dtype=np.float32)
    per = max(1, Measurements.CHUNK_BYTES // (8 * max(1, int(np.prod(array.shape[1:])))))
    for start in range(0, len(array), per):
        lam = np.asarray(array[start : start + per], dtype=np.float64) * (total_electrons / c)
        out[start : start + per] = rng.poisson(lam) * (c / total_electrons)
    return out


class AddPoissonNoise(Preprocessor):
    """Replace the intensities by Poisson counts at a given dose, on the original scale."""

    class Options(PluginOptions):
        unit: Literal["total_e_per_pattern", "e_per_A2"] = Field(
            description="How `value` is given: electrons per pattern, "
            "or a dose in e/A^2 (times scan.step_A^2)."
        )
        value: float = Field(
            gt=0, description="Electrons per pattern (e.g. 1e4 - 1e7) or dose in e/A^2 (e.g. 1e3 - 1e6)."
        )

    def total_electrons(self, context) -> float:
        o = self.options
        if o.unit == "total_e_per_pattern":
            return o.value
        if context.scan_step_A is None:
            raise DataError("unit 'e_per_A2' needs the scan step; set scan.step_A")
        return o.value * context.scan_step_A**2

    def transform(self, measurements, context) -> None:
        measurements.as_patterns()
        total = self.total_electrons(context)
        array = measurements.require_memory("add_poisson_noise")
        low, mean = float(array.min()), float(array.mean(dtype=np.float64))
        if low < 0:
            if low / abs(mean + 1e-12) > -1e-5:
                array = np.maximum(array, np.float32(0))
            else:
                raise DataError(
                    f"the measurements must be non-negative, min = {low:.4g} (mean {mean:.4g}); "
                    "add a 'negative' step before it"
                )
        if mean <= 0:
            raise DataError("the measurements are all zero")
        measurements.set_array(poisson_noise(array, total, context.rng(SALT)))
        context.notes.append(f"add_poisson_noise: {total:.4g} electrons per pattern")


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("add_poisson_noise", AddPoissonNoise)

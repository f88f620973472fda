"""Scale all intensities by one constant: PtyRAD's ``meas_normalization``.

    I'_j(k) = I_j(k) / c

with ``c`` from the mean pattern ``P(k) = mean_j I_j(k)`` (``mode``):

- ``max_at_one`` (PtyRAD's default): ``c = max_k P(k)``: the brightest pixel of the mean
  pattern becomes 1 (typically the bright-field disk).
- ``mean_at_one``: ``c = mean_k P(k)``: the mean pattern averages 1 per pixel.
- ``sum_to_one``: ``c = sum_k P(k)``: the patterns sum to 1 on average (probe intensity 1).
- ``divide_const``: ``c = value``.

Dimensionless afterwards (except ``divide_const``). The scale does not change the
reconstruction except through the losses' absolute terms and the padded background levels
(``pad``'s ``value`` is in these units: normalise first, as PtyRAD does). Per pattern with
one global statistic (the mean pattern, read in chunks): works on streamed data.

Differences from PtyRAD: the mean pattern is accumulated in float64 (PtyRAD: float32; the
constants agree to ~1e-7 relative); PtyRAD runs this step by default, here only when listed.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl

Mode = Literal["max_at_one", "mean_at_one", "sum_to_one", "divide_const"]


def normalization_constant(mean_pattern: np.ndarray, mode: str, value: float | None = None) -> float:
    """PtyRAD's ``normalization_const`` from the mean pattern."""
    if mode == "max_at_one":
        return float(np.max(mean_pattern))
    if mode == "mean_at_one":
        return float(np.mean(mean_pattern))
    if mode == "sum_to_one":
        return float(np.sum(mean_pattern))
    if mode == "divide_const":
        return float(value)
    raise ValueError(f"unknown mode {mode!r}")


class Normalize(Preprocessor):
    """Divide every pattern by one constant taken from the mean pattern (or given)."""

    class Options(PluginOptions):
        mode: Mode = Field(
            "max_at_one",
            description="Constant c (I' = I / c): 'max_at_one' max of the mean pattern, "
            "'mean_at_one' its mean, 'sum_to_one' its sum, 'divide_const' `value`.",
        )
        value: float | None = Field(
            None, gt=0, validate_default=True, description="The constant c for 'divide_const' (data units)."
        )

        @field_validator("value")
        @classmethod
        def _needs_value(cls, v, info: ValidationInfo):
            if v is None and info.data.get("mode") == "divide_const":
                raise ValueError("mode 'divide_const' needs a value")
            return v

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        mean = None if o.mode == "divide_const" else measurements.mean_pattern()
        c = normalization_constant(mean, o.mode, o.value)
        if not (math.isfinite(c) and c > 0):
            raise DataError(
                f"mode '{o.mode}' gives the constant {c!r} from the mean pattern; need a positive number"
            )
        c32 = np.float32(c)
        measurements.map(lambda b: np.asarray(b, dtype=np.float32) / c32)
        context.notes.append(f"normalize: divided by {c:.8g} ({o.mode})")


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("normalize", Normalize)

"""Resample the patterns bilinearly, precomputed: PtyRAD's ``meas_resample`` (``mode: precompute``).

Every ``M x M`` pattern is resampled to ``M' = floor(M scale)`` pixels over the same angular
range (kMax fixed), so

    dk' = dk M / M',     dx = 1 / (M' dk') = 1 / (M dk)      (unchanged, as PtyRAD)

(:meth:`Resample.sampling` reports ``dk'`` to the kernel, whose calibration refers to the
patterns before this step). ``scale > 1`` upsamples, giving the probe a larger real-space window
at the same ``dx``; ``scale < 1`` downsamples oversampled data, which makes the forward model
cheaper. Typical ``scale`` 0.5 - 2. The intensities are divided by ``scale^2`` so that the
total of a smooth pattern is kept:

    I'[i, j] = scale^-2 sum_{p,q} W[i, p] I[p, q] W[j, q]

with the bilinear weights ``W`` of output pixel ``i`` at input coordinate ``x_i`` (clamped to the
pattern), ``M / M'`` input pixels apart, and ``align``:

- ``zero_frequency`` (default): ``x_i = M // 2 + (i - M' // 2) M / M'``: the zero frequency stays
  on pixel ``M' // 2``, as the simulation assumes.
- ``edges``: ``x_i = (i + 1/2) M / M' - 1/2``, ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)``, as PtyRAD's on-the-fly resampling; for even sizes the zero frequency
  then sits ``(scale - 1) / 2`` output pixels past ``M' // 2``.

This is the computation of the on-the-fly detector stage ``resample_measurements`` (the same
``BilinearResampler``), done once instead of per batch: the two give the same patterns.

Deliberate differences from PtyRAD's ``precompute`` mode, which calls
``scipy.ndimage.zoom(meas, (1, s, s), order=1)``: that uses ``round(M s)`` pixels, the grid of
``align_corners=True`` (``x_i = i (M - 1) / (M' - 1)``: the corner pixels coincide, so the
zero frequency generally moves off ``M' // 2`` and the pixel ratio is ``(M - 1) / (M' - 1)``
rather than ``M / M'``), and keeps the intensities unscaled (PtyRAD's on-the-fly
mode divides by ``s^2`` as here). To reproduce PtyRAD's intensity level, follow this step with
``normalize: {mode: divide_const, value: <1 / scale^2>}``. PtyRAD takes two factors and uses the
smaller for both axes; this step takes the one factor. Per pattern: works on streamed data.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl

from ..detectors.resample_simulation import Align, BilinearResampler


class Resample(Preprocessor):
    """Bilinear resampling of every pattern by ``scale`` (kMax fixed), intensities / scale^2."""

    class Options(PluginOptions):
        scale: float = Field(
            gt=0, description="Resampling factor: the patterns get floor(M scale) pixels over the same kMax."
        )
        align: Align = Field(
            "zero_frequency",
            description="'zero_frequency' keeps k = 0 on pixel M' // 2; 'edges' is PtyRAD's interpolate "
            "(align_corners=False), off by (scale - 1) / 2 px.",
        )

    def output_size(self, n: int) -> int:
        return math.floor(
            n * self.options.scale
        )  # torch's interpolate(scale_factor=...) rounding, as the detector stage

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        shape = tuple(measurements.pattern_shape)
        if shape[0] != shape[1]:
            raise DataError(f"needs square patterns (one dk for both axes), got {shape[0]} x {shape[1]}")
        out = tuple(self.output_size(n) for n in shape)
        if min(out) < 2:
            raise DataError(
                f"scale = {o.scale} leaves {out[0]} x {out[1]} pixels of the {shape[0]} x {shape[1]} patterns"
            )
        resampler = BilinearResampler(shape, out, (shape[0] / out[0], shape[1] / out[1]), o.align)

        def resample(block: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))
                return (resampler(x) / o.scale**2).numpy()

        measurements.map(resample)

    def sampling(self, shape_before, shape_after, dk):
        return dk * shape_before[0] / shape_after[0]


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("resample", Resample)

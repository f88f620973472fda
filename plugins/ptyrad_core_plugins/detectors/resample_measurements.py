"""Resample the measured patterns bilinearly: PtyRAD's ``meas_resample`` (``on_the_fly``).

Each batch of measured ``M x M`` patterns is resampled to ``M' = floor(M scale)`` pixels over
the same angular range (kMax fixed), so

    dk' = dk M / M',     dx = 1 / (M' dk') = 1 / (M dk) = dx_meas      (unchanged, as PtyRAD)

and the simulation window gets ``M'`` pixels (``scale > 1`` upsamples, giving the probe a larger
real-space window at the same ``dx``; ``scale < 1`` downsamples oversampled data, which makes
the forward model cheaper). The intensities are divided by ``scale^2`` as PtyRAD does, so the
total of a smooth pattern is kept:

    I'[i, j] = scale^-2 sum_{p,q} W[i, p] I[p, q] W[j, q]

with bilinear weights ``W`` of output pixel ``i`` at input coordinate ``x_i`` (clamped to the
pattern), samples ``M / M'`` input pixels apart, and ``align``:

- ``zero_frequency`` (default): ``x_i = M // 2 + (i - M' // 2) M / M'``: zero frequency stays on
  pixel ``M' // 2``, as the simulation assumes.
- ``edges``: ``x_i = (i + 1/2) M / M' - 1/2``, i.e. ``torch.nn.functional.interpolate(
  mode="bilinear", align_corners=False)`` as PtyRAD's loader calls it (identical to PtyRAD's
  ``scale_factor`` call whenever ``M scale`` is an integer). For even sizes the measured zero
  frequency then sits ``(scale - 1) / 2`` output pixels past ``M' // 2`` (1/4 px for 64 -> 96).

PtyRAD takes one uniform factor (the smaller of two); so does this stage. Typical ``scale``
0.5 - 2. Put it after ``pad_measurements``. The predicted patterns are unchanged by this stage.
"""

from __future__ import annotations

import math

from ptyrad_core.plugin import ConfigError, DetectorModel, Field, PluginOptions, hookimpl

from .resample_simulation import Align, BilinearResampler


class ResampleMeasurements(DetectorModel):
    """Bilinear resampling of each measured batch by ``scale`` (kMax fixed), intensities / scale^2."""

    class Options(PluginOptions):
        scale: float = Field(
            gt=0, description="Resampling factor: the patterns get floor(M scale) pixels over the same kMax."
        )
        align: Align = Field(
            "zero_frequency",
            description="'zero_frequency' keeps k = 0 on pixel M' // 2; 'edges' is PtyRAD's interpolate "
            "(align_corners=False), off by (scale - 1) / 2 px.",
        )

    def __init__(self, options: Options):
        super().__init__(options)
        self._resample: BilinearResampler | None = None

    def output_size(self, n: int) -> int:
        return math.floor(n * self.options.scale)  # the rounding of torch's interpolate(scale_factor=...)

    def measurement_grid(self, shape, dk):
        if shape[0] != shape[1]:
            raise ConfigError(
                f"detector resample_measurements: needs square patterns, got {shape[0]} x {shape[1]}"
            )
        out = tuple(self.output_size(n) for n in shape)
        if min(out) < 2:
            raise ConfigError(
                f"detector resample_measurements: scale {self.options.scale} leaves "
                f"{out[0]} x {out[1]} pixels"
            )
        self._resample = BilinearResampler(
            shape, out, (shape[0] / out[0], shape[1] / out[1]), self.options.align
        )
        return out, dk * shape[0] / out[0]

    def measurements(self, meas, batch):
        if self._resample is None:
            raise RuntimeError(
                "resample_measurements: measurement_grid() has not been called "
                "(the kernel calls it in initialize.sampling)"
            )
        return self._resample(meas) / self.options.scale**2


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("resample_measurements", ResampleMeasurements)

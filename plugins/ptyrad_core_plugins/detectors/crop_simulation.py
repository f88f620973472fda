"""Simulate on a larger detector and crop: PtyRAD's ``simu_Npix`` with ``simu_match_mode: crop``.

The forward model simulates ``npix x npix`` patterns with the *same* detector pixel ``dk`` as
the measurements, so the real-space pixel shrinks,

    dx = 1 / (npix dk) = dx_meas * M / npix          (M = measured size),

and the patterns reach higher scattering angles (kMax grows by ``npix / M``). The stage keeps
the central ``M x M`` pixels:

    I_det[i, j] = I_sim[i + s, j + s],     s = npix // 2 - M // 2,

so the zero frequency at simulated pixel ``npix // 2`` lands on measured pixel ``M // 2`` for
every parity. PtyRAD's ``center_crop`` starts at ``(npix - M) // 2``, which is the same except
for an even ``npix`` with an odd ``M``, where PtyRAD's zero frequency ends one pixel off.

Use it when the probe's real-space extent or the object's fine features need a smaller ``dx``
than the measured patterns give, i.e. when intensity scatters beyond the detector edge.
Typical ``npix`` 1.1 - 1.5 x the measured size. The intensity outside the crop is discarded
(it was not measured), so predicted totals are slightly smaller than the probe intensity.
"""

from __future__ import annotations

from ptyrad_core.plugin import ConfigError, DetectorModel, Field, PluginOptions, hookimpl


def centre_start(n: int, m: int) -> int:
    """First index of the ``m`` central pixels of ``n`` that keeps pixel ``n // 2`` at ``m // 2``."""
    return n // 2 - m // 2


class CropSimulation(DetectorModel):
    """Centre-crop a larger simulated pattern (same dk) to the measured size."""

    class Options(PluginOptions):
        npix: int = Field(
            gt=0, description="Simulated pattern size in pixels (>= the measured size), same dk as measured."
        )

    def __init__(self, options: Options):
        super().__init__(options)
        self.output_shape: tuple[int, int] | None = None

    def simulation_grid(self, shape, dk):
        n = self.options.npix
        if n < max(shape):
            raise ConfigError(
                f"detector crop_simulation: npix = {n} is smaller than the {shape[0]} x {shape[1]} "
                "patterns it must produce; use resample_simulation to simulate fewer pixels"
            )
        self.output_shape = tuple(shape)
        return (n, n), dk

    def forward(self, patterns, batch):
        if self.output_shape is None:
            raise RuntimeError(
                "crop_simulation: simulation_grid() has not been called "
                "(the kernel calls it in initialize.sampling)"
            )
        my, mx = self.output_shape
        ny, nx = patterns.shape[-2:]
        y0, x0 = centre_start(ny, my), centre_start(nx, mx)
        return patterns[..., y0 : y0 + my, x0 : x0 + mx]


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("crop_simulation", CropSimulation)

"""Smooth per-position tilts over the scan: PtyRAD's ``tilt_smooth``.

    t' = G_std *_(slow, fast) t

a 2-D Gaussian (std in scan positions, typical 1 - 3; reflected edges) over the scan grid of each
tilt component, for local tilts (``model.tilts.mode: per_position``): neighbouring positions see
nearly the same crystal orientation. Needs a raster scan (``scan.n_slow x scan.n_fast``).
"""

from __future__ import annotations

from ptyrad_core.plugin import ConfigError, Constraint, Field, hookimpl, ops

from .._common import OddKernelOptions


class TiltSmooth(Constraint):
    """Gaussian smoothing of local tilts over the scan grid."""

    class Options(OddKernelOptions):
        std: float = Field(2.0, gt=0, description="Standard deviation in scan positions.")
        kernel_size: int = Field(5, ge=1, description="Kernel size in scan positions.")

    def setup(self, model):
        if model.tilts.shape[0] == 1:
            raise ConfigError(
                "constraint 'tilt_smooth' needs per-position tilts: set model.tilts.mode: per_position"
            )
        if model.scan_shape is None or model.scan_shape[0] * model.scan_shape[1] != model.tilts.shape[0]:
            raise ConfigError(
                f"constraint 'tilt_smooth' needs a scan grid matching the {model.tilts.shape[0]} tilts"
            )

    def enforce(self, model, iteration):
        o = self.options
        grid = model.tilts.reshape(*model.scan_shape, 2).permute(2, 0, 1)
        model.tilts.copy_(ops.gaussian_blur(grid, o.std, o.kernel_size).permute(1, 2, 0).reshape(-1, 2))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("tilt_smooth", TiltSmooth)

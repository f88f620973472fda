"""The r_z filter: Gaussian blur of the object along depth, PtyRAD's ``obj_zblur``.

    x'(z) = sum_s G_std(s) x(clamp(z - s, 0, Nz - 1))

a 1-D Gaussian (std in slices, typical 0.5 - 2; ``kernel_size`` taps) along z with replicated
edge slices. It couples neighbouring slices only, so unlike the Fourier ``kz_filter`` it never
mixes the entrance and exit surfaces (no periodic wrap-around): the regulariser of choice for
objects whose top and bottom differ (interfaces, twisted bilayers, tilted crystals).
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, Field, hookimpl, ops

from .._common import ObjType, OddKernelOptions, obj_type_field, transform_object


class ObjZblur(Constraint):
    """Depth Gaussian blur (r_z filter) of amplitude and/or phase."""

    class Options(OddKernelOptions):
        obj_type: ObjType = obj_type_field()
        kernel_size: int = Field(5, ge=1, description="Kernel size in slices.")
        std: float = Field(1.0, gt=0, description="Standard deviation in slices.")

    def enforce(self, model, iteration):
        o = self.options

        def blur(x, _):
            kernel = ops.gaussian_kernel(o.kernel_size, o.std, x.dtype, x.device)
            return ops.convolve_along(x, kernel, dim=1, padding="replicate")

        transform_object(model, o.obj_type, blur)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("obj_zblur", ObjZblur)

"""The r_z filter: Gaussian blur of the object along depth, PtyRAD's ``obj_zblur``.

    x'(z) = sum_s G_std(s) x(clamp(z - s, 0, Nz - 1))

a 1-D Gaussian (std in slices, typical 0.5 - 2; ``kernel_size`` taps) along z with replicated
edge slices. It couples neighbouring slices only, so unlike the Fourier ``kz_filter`` it never
mixes the entrance and exit surfaces (no periodic wrap-around): the regulariser of choice for
objects whose top and bottom differ (interfaces, twisted bilayers, tilted crystals).
"""

from __future__ import annotations

from pydantic import Field

from ptyrad_core import hookimpl
from ptyrad_core.kernel.ops import convolve_along, gaussian_kernel

from ._common import ObjType, Options, obj_type_field, transform_object


class ObjZblur:
    """Depth Gaussian blur (r_z filter) of amplitude and/or phase."""

    class Options(Options):
        obj_type: ObjType = obj_type_field()
        kernel_size: int = Field(5, ge=1, description="Kernel size in slices.")
        std: float = Field(1.0, gt=0, description="Standard deviation in slices.")

    def __init__(self, options: Options):
        self.options = options

    def apply(self, model, iteration):
        o = self.options

        def blur(x, _):
            kernel = gaussian_kernel(o.kernel_size, o.std, x.dtype, x.device)
            return convolve_along(x, kernel, dim=1, padding="replicate")

        transform_object(model, o.obj_type, blur)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("obj_zblur", ObjZblur)

"""Lateral Gaussian blur of the object: PtyRAD's ``obj_rblur``.

    x' = G_std *_(y,x) x

a 2-D Gaussian (std in object pixels, typical 0.3 - 1; kernel ``kernel_size`` pixels, at least
6 std + 1 to decay) applied to the amplitude and/or phase of every slice and mode, with
reflected edges (as torchvision's ``ops.gaussian_blur``). Smooths high-frequency noise.
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, Field, hookimpl, ops

from .._common import ObjType, OddKernelOptions, obj_type_field, transform_object


class ObjRblur(Constraint):
    """Lateral Gaussian blur of amplitude and/or phase."""

    class Options(OddKernelOptions):
        obj_type: ObjType = obj_type_field()
        kernel_size: int = Field(5, ge=1, description="Kernel size in pixels (odd, >= 6 std + 1).")
        std: float = Field(0.4, gt=0, description="Standard deviation in object pixels.")

    def enforce(self, model, iteration):
        o = self.options
        transform_object(
            model,
            o.obj_type,
            lambda x, _: ops.gaussian_blur(x, o.std, o.kernel_size, dims=(-2, -1), padding="reflect"),
        )


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("obj_rblur", ObjRblur)

"""Lateral Fourier low-pass of the object: PtyRAD's ``kr_filter``.

    x' = Re F^-1_(y,x)[ M(k) F_(y,x)[x] ],  M = 1 / (1 + exp(5 (|k| / k_max - radius) / width))

a sigmoid cut-off at ``radius`` (relative to the object's Nyquist frequency per axis; 0.5 at the
radius, edge about ``width`` wide) applied to each slice and mode.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl, ops

from .._common import ObjType, obj_type_field, transform_object


class KrFilter(Constraint):
    """Sigmoid low-pass of amplitude and/or phase in lateral Fourier space."""

    class Options(PluginOptions):
        obj_type: ObjType = obj_type_field()
        radius: float = Field(0.15, gt=0, description="Cut-off relative to k_max of the object grid.")
        width: float = Field(0.05, gt=0, description="Width of the sigmoid edge relative to k_max.")

    def enforce(self, model, iteration):
        o = self.options
        rho = ops.relative_frequency_radius(
            model.object_shape, model.fy.device, model.fy.dtype, centred=False
        )
        mask = ops.sigmoid_mask(rho, o.radius, o.width)
        transform_object(model, o.obj_type, lambda x, _: torch.fft.ifft2(torch.fft.fft2(x) * mask).real)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("kr_filter", KrFilter)

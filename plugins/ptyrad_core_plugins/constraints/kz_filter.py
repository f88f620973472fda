"""The k_z filter: missing-wedge arctan filter of the object, PtyRAD's ``kz_filter``.

    W(k)  = 1 - (2 / pi) atan( beta^2 kz^2 / (kx^2 + ky^2 + 1e-3) )
    W_a   = W exp(-alpha (kx^2 + ky^2))
    x'    = Re F^-1_(z,y,x)[ W_a F_(z,y,x)[x] ]          (amplitude: 1 + 0.9 (x' - 1))

with ``k`` in cycles per voxel along (z, y, x) (PtychoShelves' ``regulation_multilayers``).
It damps the depth frequencies that the data cannot resolve (the missing wedge), with strength
``beta`` (0 - 1 typical); ``alpha`` adds a weak lateral Gaussian low-pass (1 as in
PtychoShelves); the amplitude additionally gets a soft pull towards 1. The 3-D FFT makes the
object periodic along z: the entrance and exit slices leak into each other. Prefer
``obj_zblur`` (the r_z filter) when they differ.
"""

from __future__ import annotations

import math

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl

from .._common import ObjType, obj_type_field, transform_object

DIMS = (-3, -2, -1)


def kz_weights(shape, beta: float, alpha: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """The filter ``W_a`` on the FFT grid of ``shape = (Nz, Ny, Nx)``."""
    kz, ky, kx = (torch.fft.fftfreq(n, device=device, dtype=dtype) for n in shape)
    kz, ky, kx = kz[:, None, None], ky[None, :, None], kx[None, None, :]
    lateral = kx**2 + ky**2
    w = 1 - torch.atan(beta**2 * kz**2 / (lateral + 1e-3)) / (math.pi / 2)
    return w * torch.exp(-alpha * lateral)


class KzFilter(Constraint):
    """Arctan missing-wedge filter in 3-D Fourier space."""

    class Options(PluginOptions):
        obj_type: ObjType = obj_type_field()
        beta: float = Field(1.0, ge=0, description="Strength of the arctan depth filter (0 - 1 typical).")
        alpha: float = Field(1.0, ge=0, description="Lateral Gaussian low-pass constant (cycles/pixel)^-2.")

    def enforce(self, model, iteration):
        o = self.options
        shape = model.object_amplitude.shape[1:]
        w = kz_weights(shape, o.beta, o.alpha, model.fy.device, model.fy.dtype)

        def filt(x, part):
            out = torch.fft.ifftn(torch.fft.fftn(x, dim=DIMS) * w, dim=DIMS).real
            return 1 + 0.9 * (out - 1) if part == "amplitude" else out

        transform_object(model, o.obj_type, filt)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("kz_filter", KzFilter)

"""Recentre the object along depth, with the matching probe defocus: PtyRAD's ``obj_z_recenter``.

    w(z)  = mean_{n,y,x} phi+(n, z, y, x)     (phi+ : phase clipped at 0, values below the
                                               ``thresh`` percentile set to 0)
    s     = clamp( scale ((Nz - 1) / 2 - sum z w / sum w), -m, m ),  m = min(max_shift, (Nz - 1) / 2)
    O'    = F^-1_z[ exp(-2 pi i f_z s) F_z[O] ]   (the complex object moved by s slices)
    P'    = propagated by -s dz

Probe defocus and the object's depth position are ambiguous; this keeps the specimen centred in
its slices and moves the probe focus with it. The object's phase is re-wrapped into (-pi, pi].
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl

from .probe_mask_r import defocus_propagators

QUANTILE_SAMPLE = 1 << 24  # torch.quantile's input limit


def depth_shift(phase: torch.Tensor, thresh: float, scale: float, max_shift: float) -> float:
    """The shift ``s`` in slices (positive: towards larger z) that centres the phase's centre of mass."""
    nz = phase.shape[1]
    limit = min(max_shift, (nz - 1) / 2)
    p = phase.clamp(min=0)
    flat = p.reshape(-1)
    if flat.numel() > QUANTILE_SAMPLE:
        flat = flat[:: flat.numel() // QUANTILE_SAMPLE + 1]
    p = torch.where(p < torch.quantile(flat, thresh / 100), torch.zeros_like(p), p)
    w = p.mean(dim=(0, 2, 3))
    z = torch.arange(nz, dtype=p.dtype, device=p.device)
    com = (z * w).sum() / (w.sum() + 1e-8)
    return float(torch.clamp(scale * ((nz - 1) / 2 - com), -limit, limit))


def shift_along_z(obj: torch.Tensor, shift: float) -> torch.Tensor:
    """Fourier shift of a complex ``(omode, Nz, Ny, Nx)`` object by ``shift`` slices."""
    fz = torch.fft.fftfreq(obj.shape[1], device=obj.device, dtype=obj.real.dtype)
    ramp = torch.polar(torch.ones_like(fz), -2 * torch.pi * fz * shift)
    return torch.fft.ifft(torch.fft.fft(obj, dim=1) * ramp[None, :, None, None], dim=1)


class ObjZRecenter(Constraint):
    """Move the object's depth centre of mass to the middle slice, and the probe focus with it."""

    class Options(PluginOptions):
        thresh: float = Field(95.0, ge=0, le=100, description="Percentile below which the phase is ignored.")
        scale: float = Field(1.0, ge=0, le=1, description="Fraction of the measured shift applied.")
        max_shift: float = Field(10.0, ge=0, description="Largest shift applied, in slices.")

    def enforce(self, model, iteration):
        o = self.options
        shift = depth_shift(model.object_phase.clone(), o.thresh, o.scale, o.max_shift)
        if abs(shift) < 1e-3:
            return
        moved = shift_along_z(torch.polar(model.object_amplitude, model.object_phase), shift)
        model.object_amplitude.copy_(moved.abs())
        model.object_phase.copy_(moved.angle())
        dz = -shift * float(model.slice_thickness)
        h = defocus_propagators(model, torch.tensor([dz], dtype=model.fy.dtype, device=model.fy.device))
        model.assign("probe", torch.fft.ifft2(torch.fft.fft2(model.probe) * h))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("obj_z_recenter", ObjZRecenter)

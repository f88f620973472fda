"""Real-space probe window at focus: PtyRAD's ``probe_mask_r``.

    z* = argmax_z sum |F^-1[H_z F[P_0]]|^4      (sharpest plane of the strongest mode)
    P'_m = F^-1[ H_-z* F[ W(r) F^-1[H_z* F[P_m]] ] ]
    W(r) = exp(-0.5 (r / radius)^(2 order)),  r = -1 .. 1 across the window

The strongest modes (up to ``power_thresh`` of the intensity) are propagated to their focal
plane (searched over ``z_range`` in ``z_steps`` steps, Angstrom), multiplied by a flat-top
super-Gaussian window and propagated back, which suppresses intensity at the window's edges
and corners without cutting a defocused probe. ``H_z`` is the engine's Fresnel propagator. It
changes the total intensity: combine it with ``fix_probe_int``.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl, ops

from .probe_mask_k import modes_to_mask


def defocus_propagators(model, distances: torch.Tensor) -> torch.Tensor:
    """Propagators ``(Z, Ny, Nx)`` over each distance in Angstrom (no tilt)."""
    zeros = torch.zeros(1, 2, dtype=model.fy.dtype, device=model.fy.device)
    return ops.fresnel_propagator(
        model.fy, model.fx, model.dx, model.wavelength, distances.view(-1, 1, 1), zeros
    )


class ProbeMaskR(Constraint):
    """Super-Gaussian window on the strongest probe modes at their focal plane."""

    class Options(PluginOptions):
        radius: float = Field(0.95, gt=0, description="Window radius relative to half the probe window.")
        order: int = Field(6, ge=1, description="Super-Gaussian order (4 - 6: flat top, smooth edge).")
        power_thresh: float = Field(
            0.95, ge=0, le=1, description="Mask the strongest modes up to this cumulative power."
        )
        z_range: tuple[float, float] = Field(
            (-500.0, 500.0), description="Focal-plane search range, Angstrom."
        )
        z_steps: int = Field(101, ge=1, description="Number of planes searched.")

    def focus(self, model, mode: torch.Tensor) -> float:
        o = self.options
        z = torch.linspace(o.z_range[0], o.z_range[1], o.z_steps, device=mode.device, dtype=model.fy.dtype)
        stack = torch.fft.ifft2(torch.fft.fft2(mode) * defocus_propagators(model, z))
        return float(z[torch.argmax(stack.abs().pow(4).sum(dim=(-2, -1)))])

    def enforce(self, model, iteration):
        o = self.options
        probe = ops.sort_modes(model.probe)
        n = modes_to_mask(probe, o.power_thresh)
        z = self.focus(model, probe[0])
        h = defocus_propagators(model, torch.tensor([z], dtype=model.fy.dtype, device=probe.device))
        window = ops.super_gaussian_window(model.window, o.radius, o.order, probe.device, model.fy.dtype)
        focused = torch.fft.ifft2(torch.fft.fft2(probe[:n]) * h)
        masked = torch.fft.ifft2(torch.fft.fft2(focused * window) * h.conj())
        model.assign("probe", ops.sort_modes(torch.cat([masked, probe[n:]])))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("probe_mask_r", ProbeMaskR)

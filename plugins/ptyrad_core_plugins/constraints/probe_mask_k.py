"""Fourier-space probe aperture mask: PtyRAD's ``probe_mask_k``.

    P'_m = F^-1[ M(k) F[P_m] ],  M = 1 / (1 + exp(5 (|k| / k_max - radius) / width))

a sigmoid disk (0.5 at ``radius``, falling over about ``width``, both relative to the Nyquist
frequency ``k_max`` of the probe window) applied in Fourier space to the strongest modes that
together hold ``power_thresh`` of the intensity; the weaker modes stay free to absorb errors.
The modes are re-sorted by power afterwards. The radius must exceed the bright-field disk:
``radius > 2 R_BF / N`` (e.g. 0.22 for a 64 px window whose disk is 7 px wide). It changes the
total intensity: combine it with ``fix_probe_int``.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl, ops

FFT = (-2, -1)


def modes_to_mask(probe: torch.Tensor, power_thresh: float) -> int:
    """Number of leading modes whose cumulative power first exceeds ``power_thresh``."""
    powers = ops.mode_powers(probe)
    cumulative = torch.cumsum(powers / powers.sum(), 0)
    above = torch.nonzero(cumulative > power_thresh)
    return int(above[0]) + 1 if len(above) else probe.shape[0]


class ProbeMaskK(Constraint):
    """Sigmoid aperture on the strongest probe modes in Fourier space."""

    class Options(PluginOptions):
        radius: float = Field(0.22, gt=0, description="Mask radius relative to k_max of the probe window.")
        width: float = Field(0.05, gt=0, description="Width of the sigmoid edge relative to k_max.")
        power_thresh: float = Field(
            0.95, ge=0, le=1, description="Mask the strongest modes up to this cumulative power."
        )

    def enforce(self, model, iteration):
        o = self.options
        probe = model.probe
        n = modes_to_mask(probe, o.power_thresh)
        mask = ops.sigmoid_mask(ops.relative_frequency_radius(model.window, probe.device), o.radius, o.width)
        centred = torch.fft.fftshift(
            torch.fft.fft2(torch.fft.ifftshift(probe[:n], dim=FFT), norm="ortho"), dim=FFT
        )
        masked = torch.fft.fftshift(
            torch.fft.ifft2(torch.fft.ifftshift(centred * mask, dim=FFT), norm="ortho"), dim=FFT
        )
        model.assign("probe", ops.sort_modes(torch.cat([masked, probe[n:]])))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("probe_mask_k", ProbeMaskK)

"""Simulate on finer detector pixels and integrate them into the measured pixels (binning).

With an integer ``factor = f``, the forward model simulates ``(M f) x (M f)`` patterns with
detector pixel ``dk / f``, so

    dk_sim = dk / f,     dx = 1 / (M f dk_sim) = dx_meas      (unchanged, window f times larger),

and each measured pixel integrates the ``f x f`` simulated pixels that cover it. Measured pixel
``i`` is centred on the frequency ``(i - M // 2) dk``, i.e. on simulated pixel
``c_i = N // 2 + (i - M // 2) f`` (``N = M f``; zero frequency at ``N // 2`` and ``M // 2`` as
everywhere). Separably along each axis,

    I_det[i] = sum_t w_t I_sim[c_i + t]

- odd ``f``: ``t = -(f-1)/2 .. (f-1)/2``, ``w_t = 1``: a plain sum of the ``f`` pixels
  centred on ``c_i``; the zero frequency lands exactly on pixel ``M // 2``.
- even ``f`` (``even: trapezoid``, default): the detector pixel ``[-f/2, f/2]`` (simulated
  pixels) has its edges *on* simulated pixels, so ``t = -f/2 .. f/2`` with the two end pixels
  weighted 1/2 (the trapezoid rule): zero frequency lands exactly on pixel ``M // 2`` and every
  simulated pixel contributes a total weight 1 (totals are kept).
- even ``f`` with ``even: block``: plain ``f x f`` block sums (``avg_pool2d * f^2``) over
  ``t = -(f/2 - 1) .. f/2``. A block of an even number of pixels has no centre pixel, so each
  measured pixel is centred half a simulated pixel off: the binned pattern is shifted by
  ``1 / (2 f)`` measured pixels (1/4 px for ``f = 2``) towards lower indices relative to the
  measured one. Use it only if plain block sums are wanted.

Indices wrap around (circular): the simulated pattern is a discrete Fourier transform and is
periodic in k, so the few edge pixels that a centred block needs beyond the window are its
periodic images. The sums preserve the total intensity exactly. Typical ``factor``: 2 (a
detector that bins on readout, or to give the probe twice the real-space window at the same
``dx``). Everything is differentiable.
"""

from __future__ import annotations

from typing import Literal

import torch

from ptyrad_core.plugin import DetectorModel, Field, PluginOptions, hookimpl, ops


def binning_weights(factor: int, even: str) -> list[float]:
    """The taps ``w_t`` (odd length for odd factors and for ``trapezoid``)."""
    if factor % 2 == 1 or even == "block":
        return [1.0] * factor
    return [0.5] + [1.0] * (factor - 1) + [0.5]


def bin_axis(x: torch.Tensor, factor: int, dim: int, even: str = "trapezoid") -> torch.Tensor:
    """Integrate ``factor`` simulated pixels into one along ``dim``, keeping zero frequency centred."""
    n = x.shape[dim]
    if n % factor:
        raise ValueError(f"bin_simulation: {n} pixels along dim {dim} are not a multiple of factor {factor}")
    if factor == 1:
        return x
    m = n // factor
    kernel = torch.tensor(binning_weights(factor, even), dtype=x.dtype, device=x.device)
    # ops.convolve_along puts output n on taps n - (K-1)//2 .. n + K//2: centred for odd K,
    # -(f/2 - 1) .. f/2 for the even-length block kernel
    summed = ops.convolve_along(x, kernel, dim, padding="circular")
    centres = n // 2 + (torch.arange(m, device=x.device) - m // 2) * factor  # c_i
    return summed.index_select(dim, centres)


class BinSimulation(DetectorModel):
    """Sum ``factor x factor`` simulated pixels (dk / factor) into each measured pixel."""

    class Options(PluginOptions):
        factor: int = Field(
            ge=1, description="Simulated pixels per measured pixel along each axis (integer)."
        )
        even: Literal["trapezoid", "block"] = Field(
            "trapezoid",
            description="Even factors: 'trapezoid' centres each bin on its frequency "
            "(end pixels weighted 1/2); 'block' sums plain factor x factor blocks, "
            "shifted by 1 / (2 factor) px.",
        )

    def simulation_grid(self, shape, dk):
        f = self.options.factor
        return (shape[0] * f, shape[1] * f), dk / f

    def forward(self, patterns, batch):
        f = self.options.factor
        out = bin_axis(patterns, f, patterns.ndim - 2, self.options.even)
        return bin_axis(out, f, patterns.ndim - 1, self.options.even)


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("bin_simulation", BinSimulation)

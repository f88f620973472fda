"""Simulate on a different number of pixels over the same kMax: PtyRAD's ``simu_match_mode: resample``.

The forward model simulates ``npix x npix`` patterns spanning the measured angular range
(kMax fixed), so

    dk_sim = dk M / npix,     dx = 1 / (npix dk_sim) = 1 / (M dk) = dx_meas      (unchanged),

and the probe window has ``npix`` pixels of the measured ``dx``. The stage resamples each
pattern bilinearly to the measured ``M x M`` pixels and scales it by ``(npix / M)^2`` (PtyRAD
divides by ``scale_factor^2`` with ``scale_factor = M / npix``), so that the total intensity of
a smooth pattern is kept:

    I_det[i, j] = (npix / M)^2 sum_{p,q} W[i, p] I_sim[p, q] W[j, q]

``W`` holds the bilinear weights of measured pixel ``i`` at the simulated coordinate ``x_i``
(clamped to the pattern, i.e. edge values beyond it), with ``align``:

- ``zero_frequency`` (default): ``x_i = npix // 2 + (i - M // 2) npix / M``. Measured pixel
  ``i`` samples exactly the frequency ``(i - M // 2) dk``, and zero frequency stays on pixel
  ``M // 2``.
- ``edges``: ``x_i = (i + 1/2) npix / M - 1/2``, which is ``torch.nn.functional.interpolate(
  mode="bilinear", align_corners=False)`` exactly as PtyRAD calls it: the outer pixel edges of
  the two grids coincide. For even sizes the zero frequency then lands ``(1 - M / npix) / 2``
  measured pixels before pixel ``M // 2`` (1/6 px for 96 -> 64, 1/4 px for 128 -> 64): a
  systematic sub-pixel shift between predicted and measured patterns. Choose it only to
  reproduce PtyRAD.

Bilinear downsampling samples rather than integrates (for ``npix > M`` it aliases fine
structure); ``bin_simulation`` integrates when ``npix`` is an integer multiple of ``M``.
Typical ``npix``: 0.5 - 2 x the measured size (fewer pixels speed up the forward model when the
patterns are oversampled; more give the probe a larger real-space window).
"""

from __future__ import annotations

from typing import Literal

import torch

from ptyrad_core.plugin import ConfigError, DetectorModel, Field, PluginOptions, hookimpl

Align = Literal["zero_frequency", "edges"]


def bilinear_matrix(
    n_in: int, n_out: int, step: float, align: str, dtype=torch.float32, device=None
) -> torch.Tensor:
    """``(n_out, n_in)`` bilinear interpolation weights for output samples ``step`` input pixels apart.

    ``align="zero_frequency"`` puts output pixel ``n_out // 2`` on input pixel ``n_in // 2``;
    ``align="edges"`` is ``torch.nn.functional.interpolate(..., align_corners=False)`` with
    ``step = 1 / scale_factor``. Coordinates beyond the input are clamped (edge values).
    """
    i = torch.arange(n_out, dtype=torch.float64)
    if align == "zero_frequency":
        x = n_in // 2 + (i - n_out // 2) * step
    elif align == "edges":
        x = (i + 0.5) * step - 0.5
    else:
        raise ValueError(f"align must be 'zero_frequency' or 'edges', got {align!r}")
    x = x.clamp(0, n_in - 1)
    i0 = x.floor().long()
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w1 = x - i0
    rows = torch.arange(n_out)
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    w.index_put_((rows, i0), 1 - w1, accumulate=True)
    w.index_put_((rows, i1), w1, accumulate=True)
    return w.to(dtype=dtype, device=device)


class BilinearResampler:
    """Applies ``Wy @ I @ Wx^T`` over the last two dimensions, caching the weights per dtype and device."""

    def __init__(
        self, shape_in: tuple[int, int], shape_out: tuple[int, int], steps: tuple[float, float], align: str
    ):
        self.shape_in, self.shape_out, self.steps, self.align = (
            tuple(shape_in),
            tuple(shape_out),
            steps,
            align,
        )
        self._cache: dict = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape_in:
            raise ValueError(f"expected patterns of {self.shape_in}, got {tuple(x.shape[-2:])}")
        key = (x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = tuple(
                bilinear_matrix(n, m, s, self.align, x.dtype, x.device)
                for n, m, s in zip(self.shape_in, self.shape_out, self.steps)
            )
        wy, wx = self._cache[key]
        return wy @ x @ wx.T


class ResampleSimulation(DetectorModel):
    """Bilinear resampling of ``npix x npix`` simulated patterns to the measured size, kMax fixed."""

    class Options(PluginOptions):
        npix: int = Field(
            ge=2, description="Simulated pattern size in pixels over the measured kMax (dx unchanged)."
        )
        align: Align = Field(
            "zero_frequency",
            description="'zero_frequency' keeps k = 0 on pixel M // 2; 'edges' is PtyRAD's interpolate "
            "(align_corners=False), off by (1 - M / npix) / 2 px.",
        )

    def __init__(self, options: Options):
        super().__init__(options)
        self.output_shape: tuple[int, int] | None = None
        self._resample: BilinearResampler | None = None

    def simulation_grid(self, shape, dk):
        if shape[0] != shape[1]:
            raise ConfigError(
                f"detector resample_simulation: needs square patterns, got {shape[0]} x {shape[1]}"
            )
        n = self.options.npix
        self.output_shape = tuple(shape)
        self._resample = BilinearResampler((n, n), shape, (n / shape[0], n / shape[1]), self.options.align)
        return (n, n), dk * shape[0] / n

    def forward(self, patterns, batch):
        if self._resample is None:
            raise RuntimeError(
                "resample_simulation: simulation_grid() has not been called "
                "(the kernel calls it in initialize.sampling)"
            )
        n = patterns.shape[-1]
        m = self.output_shape[-1]
        return self._resample(patterns) * (n / m) ** 2


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("resample_simulation", ResampleSimulation)

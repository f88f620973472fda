"""Detector point-spread function: a Gaussian blur of the predicted patterns (PtyRAD's ``detector_blur_std``).

    I_det(k) = sum_q G(q) I(k - q),     G(q) = g(q_y) g(q_x),   g(t) = exp(-t^2 / (2 std^2)) / norm

on the detector pixels, with ``t = -(K-1)/2 .. (K-1)/2`` for a kernel of ``K = kernel_size``
taps (normalised to sum 1, so the total intensity is unchanged up to the edges) and reflect
padding at the pattern edges (mirror without repeating the edge pixel), exactly
``torchvision.transforms.functional.gaussian_blur`` as PtyRAD applies it. With ``kernel_size``
unset, ``K = max(5, 2 round(3 std) + 1)`` as PtyRAD.

Units: ``std`` in detector pixels *of the measured patterns*; put this stage after any stage
that brings the simulation to the measured sampling (``crop_simulation``,
``resample_simulation``, ``bin_simulation``). Typical values 0 - 1 px (the PSF of a pixelated
direct-electron detector, about 0.5 px); the blur is differentiable and adds no parameter.
"""

from __future__ import annotations

from ptyrad_core.plugin import ConfigError, DetectorModel, hookimpl, ops

from .._common import GaussianBlurOptions


class PSFBlur(DetectorModel):
    """Gaussian detector point-spread function at the measured sampling."""

    class Options(GaussianBlurOptions):
        """``std`` in detector pixels (typical 0 - 1)."""

    def __init__(self, options: Options):
        super().__init__(options)
        self.size = options.taps()

    def _check(self, shape) -> None:
        if self.size // 2 >= min(shape):
            raise ConfigError(
                f"detector psf_blur: a {self.size}-tap kernel needs patterns larger than "
                f"{self.size // 2} px for "
                f"reflect padding, got {shape[0]} x {shape[1]}"
            )

    def measurement_grid(self, shape, dk):
        self._check(shape)
        return shape, dk

    def forward(self, patterns, batch):
        return ops.gaussian_blur(patterns, self.options.std, self.size, padding="reflect")


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("psf_blur", PSFBlur)

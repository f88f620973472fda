"""Partial temporal coherence: an incoherent average over a Gaussian spread of defocus.

The chromatic aberration ``Cc`` turns the energy spread of the source (and instabilities of the
high tension and lens currents) into a spread of focus: the measured pattern is the incoherent
average of the patterns of probes focused at ``f0 + delta`` with ``delta ~ N(0, sigma^2)``::

    I(k) = integral  N(delta; 0, sigma^2)  I_delta(k)  d delta
         ~ sum_i w_i I_{delta_i}(k),        delta_i = sigma x_i,  w_i = W_i / sqrt(2 pi)

with ``(x_i, W_i)`` the ``n``-point Gauss-Hermite rule of weight ``exp(-x^2 / 2)``
(``numpy.polynomial.hermite_e.hermegauss``): exact for any ``I_delta`` polynomial in
``delta`` up to degree ``2n - 1``. In the conventions of ptyrad_core (``C10 = -defocus``, probe
``F^-1[A exp(-i chi)]``), an extra defocus ``delta`` multiplies the probe's Fourier transform by

    D_delta(k) = exp(i pi lambda |k|^2 delta)

so the extension ``defocus_spread`` replaces each probe mode ``P_m`` by the ``n`` modes
``sqrt(w_i) F^-1[ F[P_m] D_{delta_i} ]``; the engine's incoherent sum over probe modes then
computes the average above for every slice of the multislice (the modes stay inside autograd,
so the probe is still refined). Cost: ``n`` times the probe modes.

``focal_spread_A`` is the standard deviation ``sigma`` of the defocus in Angstrom, typically
``Cc * sigma_E / E``: 20 - 60 A for a Schottky or cold FEG at 60 - 300 kV without a
monochromator (e.g. ``Cc`` = 1.6 mm, ``sigma_E`` = 0.3 eV at 300 kV gives 16 A).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ptyrad_core.plugin import Field, ForwardExtension, PluginOptions, hookimpl


def defocus_samples(sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite defocus samples ``delta_i`` (Angstrom) and weights ``w_i`` (sum 1) of
    ``N(0, sigma^2)``."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return sigma * x, w / math.sqrt(2 * math.pi)


class DefocusSpread(ForwardExtension):
    """Partial temporal coherence: each probe mode becomes n defocused, weighted modes."""

    class Options(PluginOptions):
        focal_spread_A: float = Field(
            gt=0,
            description="Standard deviation sigma of the defocus, Angstrom (Cc * sigma_E / E; "
            "typically 20 - 60).",
        )
        n_samples: int = Field(
            5,
            ge=1,
            le=64,
            description="Gauss-Hermite defocus samples n (the probe modes are multiplied by n); "
            "odd n includes the nominal focus.",
        )

    def __init__(self, options: Options):
        super().__init__(options)
        delta, weights = defocus_samples(options.focal_spread_A, options.n_samples)
        self.delta = delta
        self.weights = weights
        self._cache: dict = {}

    def factors(self, model) -> torch.Tensor:
        """``sqrt(w_i) D_{delta_i}(k)`` ``(n, Ny, Nx)`` complex, FFT order, on the model's grid and device."""
        key = (model.fy.device, model.fy.dtype, tuple(model.window), model.dx, model.wavelength)
        if key not in self._cache:
            fy, fx = model.fy.to(torch.float64), model.fx.to(torch.float64)
            k2 = (fy * fy + fx * fx) / model.dx**2
            delta = torch.as_tensor(self.delta, dtype=torch.float64, device=fy.device)[:, None, None]
            amp = torch.as_tensor(np.sqrt(self.weights), dtype=torch.float64, device=fy.device)[:, None, None]
            factor = torch.polar(amp.expand(-1, *k2.shape), math.pi * model.wavelength * k2 * delta)
            cplx = torch.complex64 if model.fy.dtype == torch.float32 else torch.complex128
            self._cache = {key: factor.to(cplx)}
        return self._cache[key]

    def probe(self, probe, model):
        factors = self.factors(model)
        spectrum = torch.fft.fft2(probe)  # (pmode, Ny, Nx)
        modes = torch.fft.ifft2(spectrum[:, None] * factors[None])  # (pmode, n, Ny, Nx)
        return modes.reshape(-1, *probe.shape[-2:])


@hookimpl
def ptyrad_register_forward_extensions(registry):
    registry.add("defocus_spread", DefocusSpread)

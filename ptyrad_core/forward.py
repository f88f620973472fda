"""The forward engine: vectorised mixed-state multislice, as pure tensor functions.

For scan position ``j`` with window top-left corner ``p_j = c_j + f_j`` (integer crop ``c_j``,
sub-pixel remainder plus refinement ``f_j``), probe mode ``m`` and object mode ``n``::

    psi_1   = F^-1[ F[P_m] * exp(-2 pi i (fy f_y + fx f_x)) ]          (Fourier sub-pixel shift)
    psi_l+1 = F^-1[ M * F[ O_l^(n)(c_j) * psi_l ] ]                     (l = 1 .. Nz-1)
    I_j(k)  = sum_m sum_n w_n |F_ortho[ O_Nz^(n)(c_j) * psi_Nz ]|^2      (fftshifted: k = 0 at N/2)
    M(k)    = exp(-i pi lambda |k|^2 dz + 2 pi i dz (kx tan t_x + ky tan t_y))

``fy, fx`` are in cycles per pixel, ``k = f / dx`` in 1/Angstrom, tilts ``t`` in radians,
``w_n`` the object-mode occupancies. Batch, probe modes and object modes are broadcast; only
the slice loop is sequential. Wave fields are laid out ``(pmode, omode, B, Ny, Nx)`` and object
patches ``(Nz, omode, B, Ny, Nx)`` so that every slice is one contiguous block.

Everything is differentiable by autograd: object, probe, shifts, tilts and slice thickness.
The same code runs on CPU and CUDA, in complex64 (default) or complex128.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import BaseModel
from torch import Tensor

FFT_DIMS = (-2, -1)


def frequency_grid(shape: tuple[int, int], device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Spatial frequencies ``fy (Ny, 1)``, ``fx (1, Nx)`` in cycles per pixel, FFT order."""
    fy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype)[:, None]
    fx = torch.fft.fftfreq(shape[1], device=device, dtype=dtype)[None, :]
    return fy, fx


def shift_ramps(shifts: Tensor, fy: Tensor, fx: Tensor) -> Tensor:
    """Fourier phase ramps ``(B, Ny, Nx)`` that shift an image by ``shifts (B, 2)`` pixels (y, x).

    Multiplying ``F[img]`` by the ramp moves the image content by +shift (down / right).
    """
    sy = shifts[:, 0, None, None]
    sx = shifts[:, 1, None, None]
    phase = (-2.0 * math.pi) * (sy * fy + sx * fx)
    return torch.polar(torch.ones_like(phase), phase)


def fresnel_propagator(
    fy: Tensor, fx: Tensor, dx: float, wavelength: float, dz: Tensor, tilts_mrad: Tensor
) -> Tensor:
    """Tilted Fresnel propagator ``(T, Ny, Nx)`` over one slice of thickness ``dz`` (Angstrom).

    ``tilts_mrad`` is ``(T, 2)`` with (t_y, t_x) in mrad: ``T = 1`` for a global tilt, ``T = B``
    for one tilt per scan position. Zero frequency at index 0 (FFT order).
    """
    ky, kx = fy / dx, fx / dx
    ty = torch.tan(tilts_mrad[:, 0, None, None] * 1e-3)
    tx = torch.tan(tilts_mrad[:, 1, None, None] * 1e-3)
    phase = dz * ((-math.pi * wavelength) * (ky * ky + kx * kx) + (2.0 * math.pi) * (kx * tx + ky * ty))
    return torch.polar(torch.ones_like(phase), phase)


def window_indices(crop: Tensor, window: tuple[int, int], object_width: int) -> Tensor:
    """Flat object-pixel indices ``(B * Ny * Nx,)`` of the windows whose top-left corners are ``crop (B, 2)``."""
    ry = torch.arange(window[0], device=crop.device)[:, None] * object_width
    rx = torch.arange(window[1], device=crop.device)[None, :]
    start = crop[:, 0, None, None] * object_width + crop[:, 1, None, None]
    return (start + ry + rx).reshape(-1)


def gather_patches(obj: Tensor, flat_index: Tensor, batch: int, window: tuple[int, int]) -> Tensor:
    """Object patches ``(Nz, omode, B, Ny, Nx)`` from ``obj (omode, Nz, NY, NX)``.

    Patches are cut from the complex object (not from amplitude and phase separately): one
    ``gather`` (several times faster than ``index_select`` on complex tensors on CPU), whose
    backward is a single scatter-add into the object.
    """
    omode, nz = obj.shape[:2]
    flat = obj.transpose(0, 1).reshape(nz * omode, -1)
    return torch.gather(flat, 1, flat_index.expand(nz * omode, -1)).view(nz, omode, batch, *window)


def multislice(
    probe: Tensor,
    ramps: Tensor,
    patches: Tensor,
    propagators: Tensor,
    occupancy: Tensor | None = None,
) -> Tensor:
    """Far-field intensities ``(B, Ny, Nx)``, zero frequency centred, of a mixed-state multislice.

    :param probe: ``(pmode, Ny, Nx)`` complex probe modes in real space.
    :param ramps: ``(B, Ny, Nx)`` complex sub-pixel shift ramps (:func:`shift_ramps`).
    :param patches: ``(Nz, omode, B, Ny, Nx)`` complex object transmission patches.
    :param propagators: ``(T, Ny, Nx)`` complex slice propagators, ``T`` in ``{1, B}``.
    :param occupancy: ``(omode,)`` object-mode weights (sum 1); ``None`` for one object mode.
    :return: intensities with ``sum = sum over modes of |probe|^2 * |O|^2`` (orthonormal FFT).
    """
    # unbind: its backward stacks the slice gradients once; indexing patches[z] would
    # allocate and fill a zero tensor of all slices for every slice's gradient
    slices = torch.unbind(patches, dim=0)
    omode = patches.shape[1]
    psi = torch.fft.ifft2(torch.fft.fft2(probe)[:, None, None] * ramps)  # (pmode, 1, B, Ny, Nx)
    first = slices[0]
    if occupancy is not None and omode > 1:
        # |F[sqrt(w) psi]|^2 = w |F[psi]|^2: weighting the first slice weights the whole mode
        first = first * occupancy.sqrt().to(first.dtype)[:, None, None, None]
    psi = psi * first
    for transmission in slices[1:]:
        psi = torch.fft.ifft2(torch.fft.fft2(psi) * propagators) * transmission
    # |z|^2 as re^2 + im^2: the backward of abs() on complex tensors needs a costly sgn()
    intensity = torch.view_as_real(torch.fft.fft2(psi, norm="ortho")).square().sum(dim=(0, 1, -1))
    return torch.fft.fftshift(intensity, dim=FFT_DIMS)


class ForwardExtension(torch.nn.Module):
    """Base class of forward-model extensions (plugin family ``forward``).

    Override any of the methods below; the engine calls only the overridden ones, in the order
    of the config's ``forward`` list. Each receives and returns tensors inside the autograd graph.
    Subclasses define a nested pydantic ``Options`` model and take it as their only constructor
    argument (``self.options``); :meth:`setup` runs once the model exists.
    """

    Options: ClassVar[type[BaseModel]]
    HOOKS: ClassVar[tuple[str, ...]] = ("object", "probe", "propagator", "patterns")

    def __init__(self, options: BaseModel):
        super().__init__()
        self.options = options

    def setup(self, model) -> None:
        """Called once with the :class:`~ptyrad_core.model.PtychoModel` before the first iteration."""

    def object(self, amplitude: Tensor, phase: Tensor, model) -> tuple[Tensor, Tensor]:
        """Transform the whole object, amplitude and phase ``(omode, Nz, NY, NX)``."""
        return amplitude, phase

    def probe(self, probe: Tensor, model) -> Tensor:
        """Transform the probe modes ``(pmode, Ny, Nx)`` complex; may change ``pmode``."""
        return probe

    def propagator(self, propagator: Tensor, batch, model) -> Tensor:
        """Transform the slice propagators ``(T, Ny, Nx)``; may return ``(B, Ny, Nx)``."""
        return propagator

    def patterns(self, patterns: Tensor, batch, model) -> Tensor:
        """Transform the far-field intensities ``(B, Ky, Kx)`` before the detector model."""
        return patterns

    @classmethod
    def overrides(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(ForwardExtension, hook)

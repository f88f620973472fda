"""Generic tensor operations for plugin authors: blurs, masks, mode algebra, DCT.

All functions take and return torch tensors, work on any device, are differentiable where that
makes sense, and operate on the trailing dimensions so leading (mode, slice, batch) dimensions
broadcast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel(size: int, sigma: float, dtype=torch.float32, device=None) -> Tensor:
    """Normalised 1-D Gaussian ``exp(-x^2 / (2 sigma^2))`` on ``x = -(size-1)/2 .. (size-1)/2``.

    The same kernel as ``torchvision.transforms.functional.gaussian_blur`` and
    ``scipy.signal.windows.gaussian`` (normalised).
    """
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def convolve_along(x: Tensor, kernel: Tensor, dim: int, padding: str = "replicate") -> Tensor:
    """1-D convolution of ``x`` with ``kernel`` along ``dim``, output the same size.

    ``padding`` is ``"replicate"`` (edge values), ``"reflect"`` (mirror without the edge),
    ``"circular"`` (periodic) or ``"zeros"``. For even kernel sizes the extra pad goes to the end.
    """
    size = kernel.numel()
    moved = x.movedim(dim, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    front = (size - 1) // 2
    back = size - 1 - front
    if padding == "zeros":
        flat = F.pad(flat, (front, back))
    else:
        if padding == "reflect" and shape[-1] <= max(front, back):
            raise ValueError(
                f"reflect padding of {max(front, back)} needs more than {shape[-1]} samples along dim {dim}"
            )
        flat = F.pad(flat, (front, back), mode=padding)
    out = F.conv1d(flat, kernel.to(x.dtype).flip(0).view(1, 1, -1))
    return out.reshape(shape).movedim(-1, dim)


def gaussian_blur(x: Tensor, sigma: float, size: int, dims=(-2, -1), padding: str = "reflect") -> Tensor:
    """Separable Gaussian blur of ``x`` along ``dims`` (the last two by default), std in pixels."""
    kernel = gaussian_kernel(size, sigma, dtype=x.dtype, device=x.device)
    for d in dims:
        x = convolve_along(x, kernel, d, padding)
    return x


def relative_frequency_radius(
    shape: tuple[int, int], device=None, dtype=torch.float32, centred: bool = True
) -> Tensor:
    """Radial spatial frequency relative to the Nyquist frequency of each axis, ``(Ny, Nx)``.

    1.0 on the axes' edges (kMax). ``centred=True`` puts zero frequency at ``(Ny // 2, Nx // 2)``
    (fftshifted); ``False`` gives FFT order.
    """
    fy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype) * 2
    fx = torch.fft.fftfreq(shape[1], device=device, dtype=dtype) * 2
    rho = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return torch.fft.fftshift(rho) if centred else rho


def sigmoid_mask(rho: Tensor, radius: float, width: float) -> Tensor:
    """``1 / (1 + exp(5 (rho - radius) / width))``: 1 inside ``radius``, 0.5 at it, falling over ~``width``.

    With ``rho`` from :func:`relative_frequency_radius` this is PtyRAD's ``make_sigmoid_mask``
    (radius and width relative to kMax).
    """
    return torch.sigmoid(-5.0 * (rho - radius) / width)


def super_gaussian_window(
    shape: tuple[int, int], radius: float, order: int, device=None, dtype=torch.float32
) -> Tensor:
    """Flat-top window ``exp(-0.5 (r / radius)^(2 order))``, ``r`` from -1 to 1 across each axis."""
    y = torch.linspace(-1, 1, shape[0], device=device, dtype=dtype)
    x = torch.linspace(-1, 1, shape[1], device=device, dtype=dtype)
    r = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    return torch.exp(-0.5 * (r / radius) ** (2 * order))


def mode_powers(modes: Tensor) -> Tensor:
    """``sum |mode|^2`` over all but the first dimension, ``(M,)``."""
    return modes.abs().square().flatten(1).sum(1)


def sort_modes(modes: Tensor) -> Tensor:
    """Modes sorted by power, strongest first."""
    return modes[torch.argsort(mode_powers(modes), descending=True)]


def orthogonalize_modes(modes: Tensor) -> Tensor:
    """Orthogonal modes spanning the same mixed state, sorted by power.

    Eigendecomposition of the Gram matrix ``A = M M^H`` (in complex128), projection
    ``M' = V^H M``: the density matrix ``M^H M`` and so the total intensity are unchanged.
    """
    flat = modes.reshape(modes.shape[0], -1)
    wide = flat.to(torch.complex128)
    gram = wide @ wide.conj().T
    _, vecs = torch.linalg.eigh(0.5 * (gram + gram.conj().T))
    ortho = (vecs.conj().T @ wide).to(modes.dtype).reshape(modes.shape)
    return sort_modes(ortho)


def dct_matrix(n: int, dtype=torch.float64, device=None) -> Tensor:
    """Orthonormal DCT-II matrix ``C`` (``C @ x`` transforms, ``C.T @ X`` inverts)."""
    k = torch.arange(n, dtype=torch.float64, device=device)[:, None]
    i = torch.arange(n, dtype=torch.float64, device=device)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c.to(dtype)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions."""
    cy = dct_matrix(x.shape[-2], x.dtype, x.device)
    cx = dct_matrix(x.shape[-1], x.dtype, x.device)
    return cy @ x @ cx.T


def idct2(x: Tensor) -> Tensor:
    """Inverse of :func:`dct2`."""
    cy = dct_matrix(x.shape[-2], x.dtype, x.device)
    cx = dct_matrix(x.shape[-1], x.dtype, x.device)
    return cy.T @ x @ cx


# the forward model's slice propagator, for plugins that propagate the probe (probe_mask_r); imported
# last because the forward module is heavier than these helpers
from ptyrad_core.kernel.forward import fresnel_propagator  # noqa: E402, F401

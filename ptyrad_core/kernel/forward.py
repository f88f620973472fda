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

import torch
from torch import Tensor

# the family base lives in components.py with the other six; imported here for old imports
from ptyrad_core.kernel.components import ForwardExtension  # noqa: F401
from ptyrad_core.kernel.fft import FFTWBackend, TorchFFT

FFT_DIMS = (-2, -1)


def frequency_grid(shape: tuple[int, int], device=None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
    """Spatial frequencies ``fy (Ny, 1)``, ``fx (1, Nx)`` in cycles per pixel, FFT order."""
    fy = torch.fft.fftfreq(shape[0], device=device, dtype=dtype)[:, None]
    fx = torch.fft.fftfreq(shape[1], device=device, dtype=dtype)[None, :]
    return fy, fx


def shift_ramps(shifts: Tensor, fy: Tensor, fx: Tensor) -> Tensor:
    """Fourier phase ramps ``(B, Ny, Nx)`` that shift an image by ``shifts (B, 2)`` pixels (y, x).

    Multiplying ``F[img]`` by the ramp moves the image content by +shift (down / right).
    The ramp is separable, ``exp(-2 pi i sy fy) exp(-2 pi i sx fx)``: the phase factors are
    evaluated on ``B (Ny + Nx)`` points and multiplied out, not on ``B Ny Nx``.
    """
    phase_y = (-2.0 * math.pi) * shifts[:, 0, None, None] * fy  # (B, Ny, 1)
    phase_x = (-2.0 * math.pi) * shifts[:, 1, None, None] * fx  # (B, 1, Nx)
    return torch.polar(torch.ones_like(phase_y), phase_y) * torch.polar(torch.ones_like(phase_x), phase_x)


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


def transmission(amplitude: Tensor, phase: Tensor) -> Tensor:
    """``amplitude * exp(i phase)``, as :func:`torch.polar` (bit for bit), with a cheaper backward.

    Autograd's backward of ``polar`` normalises the result again (``sgn``: an absolute value and
    a division per pixel); :class:`PolarFunction` keeps the unit phasor instead.
    """
    return PolarFunction.apply(amplitude, phase)


class PolarFunction(torch.autograd.Function):
    """``z = A u``, ``u = exp(i phi)``, for real ``A``, ``phi`` of one shape. Backward (PyTorch's
    convention ``g_x = Re(conj(dz/dx) g)`` for real ``x``): ``g_A = Re(conj(u) g)``,
    ``g_phi = Re(conj(i z) g) = -A Im(u conj(g))``; computed as ``w = conj(g) u`` (one pass)."""

    @staticmethod
    def forward(ctx, amplitude, phase):
        phasor = torch.polar(torch.ones_like(phase), phase)
        ctx.save_for_backward(amplitude, phasor)
        return phasor * amplitude

    @staticmethod
    def backward(ctx, grad):
        amplitude, phasor = ctx.saved_tensors
        # a lazily conjugated gradient (MultisliceFunction's) holds conj(g) already: one product
        w = torch.mul(grad.conj(), phasor) if grad.is_conj() else torch.conj_physical(grad).mul_(phasor)
        grad_amplitude = w.real if ctx.needs_input_grad[0] else None
        grad_phase = w.imag.mul(amplitude).neg_() if ctx.needs_input_grad[1] else None
        return grad_amplitude, grad_phase


def window_rows(crop: Tensor, window: tuple[int, int], object_width: int) -> Tensor:
    """Flat object-pixel index ``(B * Ny,)`` of the first pixel of every row of the windows whose
    top-left corners are ``crop (B, 2)``, for an object ``object_width`` pixels wide."""
    start = crop[:, 0, None] * object_width + crop[:, 1, None]
    return (start + torch.arange(window[0], device=crop.device) * object_width).reshape(-1)


def gather_patches(obj: Tensor, rows: Tensor, batch: int, window: tuple[int, int]) -> Tensor:
    """Object patches ``(Nz, omode, B, Ny, Nx)`` from ``obj (omode, Nz, NY, NX)`` (real or complex).

    ``rows`` from :func:`window_rows`. A window row is ``Nx`` contiguous pixels of the flattened
    object, so the patches are rows of the object's sliding-window view, copied by one
    ``index_select`` (:class:`WindowGather`). The model cuts the complex object when the batch's
    windows cover more pixels than the object, else amplitude and phase, so that the complex
    transmission is built for the smaller of the two.
    """
    omode, nz = obj.shape[:2]
    flat = obj.transpose(0, 1).reshape(nz * omode, -1)
    return WindowGather.apply(flat, rows, window[1]).view(nz, omode, batch, *window)


class WindowGather(torch.autograd.Function):
    """``out[r, j, c] = flat[r, rows[j] + c]`` for ``flat (R, N)``, ``rows (M,)``, ``c < width``.

    Forward: one ``index_select`` on the sliding-window view ``flat.reshape(-1).unfold(0, width, 1)``
    (rows of ``R`` offset by ``N``), which copies whole window rows and reads an index of ``R M``
    entries, where ``gather`` would read ``R M width`` (several times faster on the CPU). Backward: the
    adjoint, a scatter-add
    of ``(R, M, width)`` into ``(R, N)``. A scatter-add runs in parallel over its outer rows only;
    with fewer rows than threads (one slice, one mode) and many more window pixels than object
    pixels (the whole scan in one batch), it scatters into one partial sum per thread and adds
    them.
    """

    @staticmethod
    def forward(ctx, flat, rows, width):
        ctx.save_for_backward(rows)
        n_rows, length = flat.shape
        ctx.width, ctx.length = width, length
        if n_rows > 1:  # one index over all rows: index_select along an inner dimension is slow
            rows = (rows + torch.arange(0, n_rows * length, length, device=rows.device)[:, None]).reshape(-1)
        return flat.reshape(-1).unfold(0, width, 1).index_select(0, rows).view(n_rows, -1, width)

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        lazy_conj = grad.is_conj()  # scatter the stored values, conjugate the (smaller) sum lazily
        grad = grad.conj() if lazy_conj else grad
        n_rows, length = grad.shape[0], ctx.length
        index = (rows[:, None] + torch.arange(ctx.width, device=rows.device)).reshape(-1)
        m = index.numel()
        threads = torch.get_num_threads() if grad.device.type == "cpu" else 1
        parts = max(1, min(threads // n_rows, m // (8 * length)))
        while m % parts:
            parts -= 1
        acc = grad.new_zeros(n_rows, parts, length)
        acc.scatter_add_(2, index.view(1, parts, -1).expand(n_rows, -1, -1), grad.reshape(n_rows, parts, -1))
        total = acc.sum(dim=1) if parts > 1 else acc[:, 0]
        return (total.conj() if lazy_conj else total), None, None


def multislice(
    probe: Tensor,
    ramps: Tensor,
    patches: Tensor,
    propagators: Tensor,
    occupancy: Tensor | None = None,
    fft: TorchFFT | FFTWBackend | None = None,
    centred_ramps: bool = False,
    chunk: int | None = None,
) -> Tensor:
    """Far-field intensities ``(B, Ny, Nx)``, zero frequency centred, of a mixed-state multislice.

    :param probe: ``(pmode, Ny, Nx)`` complex probe modes in real space.
    :param ramps: ``(B, Ny, Nx)`` complex sub-pixel shift ramps (:func:`shift_ramps`) in FFT
        order, or on the centred frequency grid if ``centred_ramps`` (:func:`centred`).
    :param patches: ``(Nz, omode, B, Ny, Nx)`` complex object transmission patches.
    :param propagators: ``(T, Ny, Nx)`` complex slice propagators in FFT order, ``T`` in ``{1, B}``.
    :param occupancy: ``(omode,)`` object-mode weights (sum 1); ``None`` for one object mode.
    :param fft: the FFT backend of the slice recursion (:mod:`ptyrad_core.kernel.fft`); default torch.
    :param chunk: scan positions carried through the slices at a time (``None``: the whole
        batch); the result does not depend on it (:class:`MultisliceFunction`).
    :return: intensities with ``sum = sum over modes of |probe|^2 * |O|^2`` (orthonormal FFT).

    The probe shift and the slice recursion run in :class:`MultisliceFunction`, whose backward
    pass is the exact adjoint of its forward pass written out (it is checked against autograd of
    :func:`multislice_autograd` and against finite differences in the tests). Gradients reach
    ``probe``, ``ramps`` (so positions), ``patches`` (so the object) and ``propagators`` (so
    slice thickness and tilts) through ordinary autograd around it.

    The recursion runs on centred spectra (probe spectrum, ramps and propagators rolled by
    ``N // 2``), which is the same as carrying the wave times ``exp(2 pi i (N // 2) x / N)``
    (per axis) through every slice: a phase the products with the transmission leave alone and
    whose effect on the far field is exactly the ``fftshift``. So the intensities come out
    centred without a shift of the patterns (forward) and of their gradient (backward); only the
    probe spectrum and the propagators, one each per mode or tilt, are rolled.
    """
    weights = None
    if occupancy is not None and patches.shape[1] > 1:
        # |F[sqrt(w) psi]|^2 = w |F[psi]|^2: weighting the first slice weights the whole mode
        weights = occupancy.sqrt().to(patches.dtype)[:, None, None, None]
    backend = fft if fft is not None else TorchFFT()
    spectrum = torch.fft.fftshift(torch.fft.fft2(probe), dim=FFT_DIMS)
    ramps = ramps if centred_ramps else torch.fft.fftshift(ramps, dim=FFT_DIMS)
    propagators = torch.fft.fftshift(propagators, dim=FFT_DIMS)
    return MultisliceFunction.apply(spectrum, ramps, patches, propagators, weights, backend, chunk)


def centred(fy: Tensor, fx: Tensor) -> tuple[Tensor, Tensor]:
    """The frequency grid of :func:`frequency_grid` rolled to zero frequency at ``N // 2``: ramps
    made on it by :func:`shift_ramps` are the ``fftshift`` of those in FFT order."""
    return torch.fft.fftshift(fy, dim=0), torch.fft.fftshift(fx, dim=1)


def _sum_of_products(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """``sum_i a[i] * b[i]`` over the first dimension (broadcasting the rest), into ``out`` if given.

    One pass over the operands with an accumulator the size of one term, instead of a product
    tensor the size of both that a reduction then reads again.
    """
    out = torch.mul(a[0], b[0], out=out) if out is not None else torch.mul(a[0], b[0])
    for i in range(1, a.shape[0]):
        out.addcmul_(a[i], b[i])
    return out


def _mode_intensity(wave: Tensor, out: Tensor | None = None) -> Tensor:
    """``sum over dims 0, 1 of |wave|^2`` for ``wave (m1, m2, B, Ny, Nx)`` complex: ``(B, Ny, Nx)`` real
    (into ``out`` if given)."""
    flat = torch.view_as_real(wave).flatten(0, 1)  # (m1 * m2, B, Ny, Nx, 2)
    squares = _sum_of_products(flat, flat)
    return torch.add(squares[..., 0], squares[..., 1], out=out)


def _times_real_conj(wave: Tensor, real: Tensor, factor: float) -> Tensor:
    """``conj(wave * real * factor)`` in place, ``real`` broadcast against ``wave``.

    Written on the real and imaginary parts: torch's product of a complex tensor with a real one
    is slow on the CPU, slower than the two real products and even than a complex-by-complex
    product (docs/benchmarks.md, "What made the difference").
    """
    scaled = real * factor
    parts = torch.view_as_real(wave)
    parts[..., 0].mul_(scaled)
    parts[..., 1].mul_(scaled.neg_())
    return wave


#: Bytes of one chunk of waves (pmode x omode x positions x Ny x Nx) that ``chunk_size`` aims at on
#: the CPU: the products and transforms of a slice then work within the cache instead of
#: streaming the whole batch from memory once per pass. The size suits a 32 MB L3 cache; large
#: batches gain, batches of 32 (one chunk) are unchanged (docs/benchmarks.md, "What made the
#: difference").
CPU_CHUNK_BYTES = 2 * 2**20


def chunk_size(setting: int | str, wave_bytes_per_position: int, device: torch.device | str) -> int | None:
    """Scan positions per chunk of the slice recursion (``recon.positions_per_pass``).

    ``"auto"``: on the CPU as many as make about :data:`CPU_CHUNK_BYTES` of waves (at least 1);
    elsewhere ``None``, the whole batch (a GPU has no such cache, and more launches cost time).
    An integer is taken as it is.
    """
    if setting != "auto":
        return int(setting)
    if torch.device(device).type != "cpu":
        return None
    return max(1, CPU_CHUNK_BYTES // max(1, wave_bytes_per_position))


def _chunks(batch: int, chunk: int | None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(batch)`` in pieces of ``chunk`` (``None``: one piece)."""
    if chunk is None or chunk >= batch:
        return [(0, batch)]
    step = max(1, int(chunk))
    return [(lo, min(lo + step, batch)) for lo in range(0, batch, step)]


class MultisliceFunction(torch.autograd.Function):
    """``I = sum_modes |F_ortho[O_Nz psi_Nz]|^2``, ``psi_z+1 = F^-1[H F[O_z psi_z]]``,
    ``psi_1 = F^-1[P_k R]``, with its adjoint.

    Inputs: ``probe_spectrum (pmode, Ny, Nx)`` (``F[P]``), ``ramps (B, Ny, Nx)`` (shift ramps
    ``R``), ``patches (Nz, omode, B, Ny, Nx)``, ``propagators (T, Ny, Nx)``, ``weights``
    (``(omode, 1, 1, 1)`` applied to the first slice, or None), the FFT backend, and ``chunk``,
    the number of scan positions carried through the slices at a time (``None``: all). Output:
    ``(B, Ny, Nx)`` intensities in the order of the spectra given (:func:`multislice` gives them
    centred, and the intensities come out centred).

    Written by hand rather than left to autograd because autograd, on the CPU, spends as much
    time as the FFTs themselves on temporaries: a conjugated copy for every product's gradient,
    a zero-filled tensor per slice for the slice gradients, a broadcast reduction per product.
    Here the backward pass updates one buffer in place and keeps only the wave entering each
    slice (the same memory autograd keeps). The transforms are unnormalised and may work in
    place (:mod:`ptyrad_core.kernel.fft`); every ``1/N`` is folded into a product that is made anyway.
    Positions are independent of one another until the sums over the batch (probe and shared
    propagator gradients), so the batch runs in chunks whose waves stay in the CPU's cache
    between the products and transforms of a slice, and the sums add up chunk by chunk.

    Backward, with PyTorch's convention for complex gradients (``g_z = conj(dy/dz) g_y``):
    ``g_Psi = 2 Psi g_I``; ``g_phi = F_ortho^-1 g_Psi``; per slice from the last,
    ``g_O = sum_pmode conj(psi_in) g_phi``, ``g_psi_in = conj(O) g_phi``, and through the
    propagation ``G = F[g_psi_in]``, ``g_H = sum conj(F[phi_prev]) G / N``,
    ``g_phi_prev = F^-1[conj(H) G]``; through the shift ``g_q = F[g_psi_1] / N``,
    ``g_P_k = sum_B conj(R) g_q``, ``g_R = sum_pmode conj(P_k) g_q``. The code carries
    ``h = conj(g_phi)`` instead, for which every step is a product with an unconjugated tensor
    (no conjugated copies): ``conj(g_q) = F^-1[h_1]``.
    """

    @staticmethod
    def forward(ctx, probe_spectrum, ramps, patches, propagators, weights, fft, chunk):
        nz, batch = patches.shape[0], patches.shape[2]
        n = patches.shape[-1] * patches.shape[-2]
        need_h, need_patches = ctx.needs_input_grad[3], ctx.needs_input_grad[2]
        spectrum = (probe_spectrum / n)[:, None, None]  # F^-1 = ifft_ / N
        scaled = propagators / n
        intensity = patches.new_empty(patches.shape[2:], dtype=patches.real.dtype)
        bounds = _chunks(batch, chunk)
        saved = []  # per chunk: the exit wave, the wave entering each slice, the spectra propagated
        for lo, hi in bounds:
            part = patches[:, :, lo:hi]
            props = scaled if scaled.shape[0] == 1 else scaled[lo:hi]
            inputs, spectra = [], []
            psi = fft.ifft_(spectrum * ramps[lo:hi])  # (pmode, 1, b, Ny, Nx)
            for z in range(nz):
                transmission = part[z] if z or weights is None else part[z] * weights
                if need_patches:  # psi is never written in place: keeping it costs no copy
                    inputs.append(psi)
                phi = psi * transmission
                if z < nz - 1:
                    spectrum_z = fft.fft_(phi)
                    if need_h:
                        spectra.append(spectrum_z)
                    psi = fft.ifft_(spectrum_z * props if need_h else spectrum_z.mul_(props))
            exit_wave = fft.fft_(phi)  # unnormalised: |F_ortho|^2 = |F|^2 / N
            _mode_intensity(exit_wave, out=intensity[lo:hi]).mul_(1.0 / n)
            saved += [exit_wave, *inputs, *spectra]
        ctx.save_for_backward(probe_spectrum, ramps, patches, propagators, weights, *saved)
        ctx.nz, ctx.fft, ctx.bounds = nz, fft, bounds
        return intensity

    @staticmethod
    def backward(ctx, grad_intensity):
        # The recursion runs on h = conj(g_phi), which needs no conjugated copy per slice:
        # conj(g O*) = h O, and conj(F^-1[H* F[g]]) = F[H F^-1[h]].
        probe_spectrum, ramps, patches, propagators, weights, *saved = ctx.saved_tensors
        nz, fft = ctx.nz, ctx.fft
        n = patches.shape[-1] * patches.shape[-2]
        need_probe, need_ramps, need_patches, need_h = ctx.needs_input_grad[:4]
        n_in = nz if need_patches else 0
        per_chunk = 1 + n_in + (nz - 1 if need_h else 0)
        scaled = propagators / n
        shared = propagators.shape[0] == 1
        grad_patches = torch.empty_like(patches) if need_patches else None
        grad_h = torch.zeros_like(propagators) if need_h else None
        grad_probe = torch.zeros_like(probe_spectrum) if need_probe else None
        grad_ramps = torch.empty_like(ramps) if need_ramps else None
        for c, (lo, hi) in enumerate(ctx.bounds):
            exit_wave, *rest = saved[c * per_chunk : (c + 1) * per_chunk]
            inputs, spectra = rest[:n_in], rest[n_in:]
            part = patches[:, :, lo:hi]
            props = scaled if shared else scaled[lo:hi]
            # h = F_ortho[conj(Psi_ortho 2 g)] = F[conj(Psi 2 g)] / N; the saved exit wave is not
            # needed again, so it is overwritten (a second backward through this graph would raise)
            h = fft.fft_(_times_real_conj(exit_wave, grad_intensity[lo:hi], 2.0 / n))
            for z in range(nz - 1, -1, -1):
                transmission = part[z] if z or weights is None else part[z] * weights
                if need_patches:
                    slot = grad_patches[
                        z, :, lo:hi
                    ]  # (omode, b, Ny, Nx) = sum_pmode psi_in h, conjugated on return
                    _sum_of_products(inputs[z], h, out=slot)
                    if z == 0 and weights is not None:
                        slot.mul_(weights)  # real weights: conj(w) = w
                if z == 0:
                    break
                u = fft.ifft_(h.mul_(transmission))  # = conj(F[g]) (unnormalised inverse: N times F^-1)
                if need_h:  # sum over the modes, and over the batch for a shared propagator
                    contribution = _sum_of_products(spectra[z - 1].flatten(0, 1), u.flatten(0, 1))
                    if shared:
                        grad_h += contribution.sum(dim=0, keepdim=True).conj_physical_().mul_(1.0 / n)
                    else:
                        grad_h[lo:hi] += contribution.conj_physical_().mul_(1.0 / n)
                h = fft.fft_(u.mul_(props))
            if need_probe or need_ramps:
                h = h.mul_(transmission)
                if h.shape[1] > 1:
                    h = h.sum(dim=1, keepdim=True)  # the first slice broadcasts psi over object modes
                u = fft.ifft_(h)[:, 0]  # N conj(g_q), (pmode, b, Ny, Nx)
                if need_probe:
                    grad_probe += (u * ramps[lo:hi]).sum(dim=1).conj_physical_().mul_(1.0 / n)
                if need_ramps:
                    _sum_of_products(u, probe_spectrum[:, None], out=grad_ramps[lo:hi])
        if grad_ramps is not None:
            grad_ramps = grad_ramps.conj_physical_().mul_(1.0 / n)
        if grad_patches is not None:
            # torch's lazy conjugate (a flag, no pass): the next function's pass resolves it
            grad_patches = grad_patches.conj()
        return grad_probe, grad_ramps, grad_patches, grad_h, None, None, None


def multislice_autograd(
    probe: Tensor, ramps: Tensor, patches: Tensor, propagators: Tensor, occupancy: Tensor | None = None
) -> Tensor:
    """The same as :func:`multislice`, differentiated by autograd alone (a reference for tests)."""
    slices = torch.unbind(patches, dim=0)
    psi = torch.fft.ifft2(torch.fft.fft2(probe)[:, None, None] * ramps)
    first = slices[0]
    if occupancy is not None and patches.shape[1] > 1:
        first = first * occupancy.sqrt().to(first.dtype)[:, None, None, None]
    psi = psi * first
    for transmission in slices[1:]:
        psi = torch.fft.ifft2(torch.fft.fft2(psi) * propagators) * transmission
    exit_wave = torch.fft.fft2(psi, norm="ortho")
    intensity = (exit_wave.real.square() + exit_wave.imag.square()).sum(dim=(0, 1))
    return torch.fft.fftshift(intensity, dim=FFT_DIMS)

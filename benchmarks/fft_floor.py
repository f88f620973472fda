"""The "FFT floor" of one iteration: the time of the FFTs alone (both drivers import it).

Per scan position, one iteration of a mixed-state multislice reconstruction with ``pmode``
probe modes, ``omode`` object modes and ``nz`` slices needs, counted in 2-D transforms of the
window size:

- forward: ``pmode`` (the sub-pixel shift of the probe: one inverse FFT per probe mode; the
  shifted probe is then shared by the object modes), ``2 (nz - 1) pmode omode`` (an FFT and an
  inverse FFT per propagation), ``pmode omode`` (the exit wave to the detector);
- backward: the same number again (the adjoint of every transform is one transform).

So ``2 pmode (1 + (2 nz - 1) omode)`` per position, ``= 4 nz pmode`` for one object mode. The
``pmode`` transforms of the unshifted probe per batch (and its adjoint) are left out: they do not
grow with the batch. The floor is that count times the number of positions times the time of
one transform, measured as one batched ``torch.fft.fft2`` of a ``(batch * pmode * omode, Ny, Nx)``
complex64 tensor (the size of the transforms of one batch) divided by its length: the median of
20 calls, in 5 blocks, of which the fastest block counts (a disturbance of the machine only ever
slows a block down; single medians spread by up to 30 % from process to process).

Where pyFFTW is importable (ptyrad_core's venv, not PtyRAD's) the same is timed for FFTW's
in-place transform with the plan ptyrad_core uses (``recon.fft: fftw``, ``FFTW_ESTIMATE``):
``s_per_transform_fftw`` and ``floor_fftw_s``, the floor of the library ptyrad_core runs on.
"""

from __future__ import annotations

import statistics
import time


def transforms_per_iteration(n_positions: int, pmode: int, omode: int, nz: int) -> int:
    """2-D FFTs of the window size that one forward + backward pass over all positions needs."""
    return 2 * n_positions * pmode * (1 + (2 * nz - 1) * omode)


def _lowest_median(call, repeats: int, blocks: int, sync=lambda: None) -> float:
    for _ in range(3):
        call()
    sync()
    medians = []
    for _ in range(blocks):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return min(medians)


def time_one_transform(
    batch: int,
    pmode: int,
    omode: int,
    window: tuple[int, int],
    repeats: int = 20,
    blocks: int = 5,
    library: str = "torch",
    device: str = "cpu",
) -> float:
    """Seconds per 2-D transform: one batched fft2 of the batch's size, the lowest of ``blocks``
    medians of ``repeats`` calls each, divided by the number of transforms in the batch.
    ``library``: ``torch`` (``torch.fft.fft2``, on ``device``; a GPU is synchronised around
    every call) or ``fftw`` (in place, ptyrad_core's plan, CPU)."""
    import torch

    n = batch * pmode * omode
    x = torch.randn(n, *window, dtype=torch.complex64, device=device if library == "torch" else "cpu")
    if library == "fftw":
        from ptyrad_core.kernel.fft import FFTWBackend

        backend = FFTWBackend()
        return _lowest_median(lambda: backend.fft_(x), repeats, blocks) / n
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)
    return _lowest_median(lambda: torch.fft.fft2(x), repeats, blocks, sync) / n


def fft_floor(
    n_positions: int,
    batch: int,
    pmode: int,
    omode: int,
    nz: int,
    window: tuple[int, int],
    device: str = "cpu",
) -> dict:
    """The floor of one iteration on ``device``, in seconds, with what it is made of."""
    batch = min(batch, n_positions)
    per = time_one_transform(batch, pmode, omode, window, device=device)
    count = transforms_per_iteration(n_positions, pmode, omode, nz)
    out = {"transforms": count, "s_per_transform": per, "floor_s": count * per}
    if device != "cpu":
        return out
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        return out
    per_fftw = time_one_transform(batch, pmode, omode, window, library="fftw")
    out.update(s_per_transform_fftw=per_fftw, floor_fftw_s=count * per_fftw)
    return out

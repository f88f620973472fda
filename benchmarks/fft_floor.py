"""The "FFT floor" of one iteration: the time of the FFTs alone. Torch only (both drivers import it).

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
"""

from __future__ import annotations

import statistics
import time


def transforms_per_iteration(n_positions: int, pmode: int, omode: int, nz: int) -> int:
    """2-D FFTs of the window size that one forward + backward pass over all positions needs."""
    return 2 * n_positions * pmode * (1 + (2 * nz - 1) * omode)


def time_one_transform(batch: int, pmode: int, omode: int, window: tuple[int, int], repeats: int = 20, blocks: int = 5) -> float:
    """Seconds per 2-D transform: one batched fft2 of the batch's size, the lowest of ``blocks``
    medians of ``repeats`` calls each, divided by the number of transforms in the batch."""
    import torch

    n = batch * pmode * omode
    x = torch.randn(n, *window, dtype=torch.complex64)
    for _ in range(3):
        torch.fft.fft2(x)
    medians = []
    for _ in range(blocks):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.fft.fft2(x)
            times.append(time.perf_counter() - t0)
        medians.append(statistics.median(times))
    return min(medians) / n


def fft_floor(n_positions: int, batch: int, pmode: int, omode: int, nz: int, window: tuple[int, int]) -> dict:
    """The floor of one iteration, in seconds, with what it is made of."""
    per = time_one_transform(min(batch, n_positions), pmode, omode, window)
    count = transforms_per_iteration(n_positions, pmode, omode, nz)
    return {"transforms": count, "s_per_transform": per, "floor_s": count * per}

"""2-D FFT backends of the multislice engine: ``torch.fft``, or FFTW (through pyFFTW) on the CPU.

Both compute *unnormalised* transforms over the last two dimensions of a complex tensor::

    fft_(x)[..., k]  = sum_r x[..., r] exp(-2 pi i k r / N)
    ifft_(x)[..., r] = sum_k x[..., k] exp(+2 pi i k r / N)      (no 1/N: the caller folds it in)

and may overwrite their argument: the caller treats ``x`` as consumed and uses the returned
tensor (which, for FFTW, is ``x`` itself, transformed in place; for torch a new tensor).

Why FFTW: PyTorch's CPU transforms call MKL, which on the project's AMD EPYC machines is slower
than FFTW in place on the same batches (``benchmarks/fft_backends.py``; figures in
docs/benchmarks.md, "FFT libraries"), and the FFTs are most of a reconstruction's time. Plans use
``FFTW_ESTIMATE``: they are made in microseconds and do not depend on timings, so that a run and
its resumed continuation compute bit-identical transforms (tested in tests/test_resume.py).

``recon.fft`` chooses: ``auto``, ``torch`` or ``fftw``. Which library is faster depends on the
CPU: MKL is the slower one on the AMD EPYC machines above and the faster one on Intel Xeons
(``benchmarks/fft_backends.py``; both measured in docs/benchmarks.md, "FFT libraries"). So
``auto`` on the CPU times both on the run's own transform shape when the model is built (a few
milliseconds, :func:`choose`) and takes FFTW only when it is clearly faster: with torch alone
there is one OpenMP thread pool, which degrades less beside other jobs (below). The choice is
kept per shape, dtype and thread count for the process, written to the result file and reused
by ``--resume``, so that a continued run computes the same transforms.

Threads. An FFTW plan runs on ``torch.get_num_threads()`` threads, read at each call, so FFTW
and torch's own operations use the same count, which :func:`ptyrad_core.setup.runtime.configure_threads`
sets to the CPUs the process may use unless the user chose one. The two never run at the same
time (FFTW is called from the thread that runs the torch operations, between them), but they are
two thread pools: pyFFTW's wheel brings its own copy of libgomp, beside torch's. Idle threads
that spin in one pool while the other works add to the busy threads, which is why
``configure_threads`` shortens OpenMP's spin before sleeping (``GOMP_SPINCOUNT``, read by both
copies when they are loaded).
"""

from __future__ import annotations

import threading
import time

import torch
from torch import Tensor

from ptyrad_core.kernel.errors import ConfigError

try:  # optional: the ``fftw`` extra
    import pyfftw
except ImportError:  # pragma: no cover - exercised where pyFFTW is not installed
    pyfftw = None

BACKENDS = ("auto", "torch", "fftw")


class TorchFFT:
    """``torch.fft.fft2`` / ``ifft2`` (any device); returns new tensors."""

    name = "torch"

    @staticmethod
    def fft_(x: Tensor) -> Tensor:
        return torch.fft.fft2(x)

    @staticmethod
    def ifft_(x: Tensor) -> Tensor:
        return torch.fft.ifft2(x, norm="forward")  # "forward" puts 1/N on the forward transform: none here

    def __repr__(self) -> str:
        return "TorchFFT()"


class FFTWBackend:
    """In-place FFTW transforms of contiguous CPU tensors, one cached plan per shape, type,
    direction and thread count (``torch.get_num_threads()`` at the call: the same count as
    torch's operations, never more threads than those; module docstring).

    A tensor FFTW cannot take as it is (not contiguous, not aligned, on another device, not
    complex64 / complex128) goes to ``torch.fft`` instead, with the same result.
    """

    name = "fftw"

    def __init__(self):
        if pyfftw is None:
            raise ImportError("recon.fft 'fftw' needs pyFFTW: pip install 'ptyrad_core[fftw]' (or pyfftw)")
        self._plans: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def _plan(self, x: Tensor, direction: str):
        threads = torch.get_num_threads()
        key = (tuple(x.shape), x.dtype, direction, threads)
        plan = self._plans.get(key)
        if plan is None:
            dtype = "complex64" if x.dtype == torch.complex64 else "complex128"
            scratch = pyfftw.empty_aligned(tuple(x.shape), dtype=dtype)
            plan = pyfftw.FFTW(
                scratch,
                scratch,
                axes=(-2, -1),
                direction=direction,
                threads=threads,
                flags=("FFTW_ESTIMATE",),
            )
            self._plans[key] = plan
        return plan

    def _usable(self, x: Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype in (torch.complex64, torch.complex128)
            and x.dim() >= 2
            and x.is_contiguous()
            and not x.is_conj()
            and not x.requires_grad
            and x.numel() > 0
            and x.data_ptr() % pyfftw.simd_alignment == 0
        )

    def _run(self, x: Tensor, direction: str) -> Tensor:
        array = x.numpy()
        with self._lock:  # a plan holds the arrays it last ran on: one caller at a time
            plan = self._plan(x, direction)
            plan.update_arrays(array, array)
            plan.execute()
        return x

    def fft_(self, x: Tensor) -> Tensor:
        return self._run(x, "FFTW_FORWARD") if self._usable(x) else TorchFFT.fft_(x)

    def ifft_(self, x: Tensor) -> Tensor:
        return self._run(x, "FFTW_BACKWARD") if self._usable(x) else TorchFFT.ifft_(x)

    def __repr__(self) -> str:
        return f"FFTWBackend({len(self._plans)} plans)"


_FFTW: FFTWBackend | None = None


def fftw_available() -> bool:
    return pyfftw is not None


#: ``auto`` takes FFTW only when its time is below this fraction of torch's: with torch alone there
#: is one thread pool, which costs much less beside another job (docs/benchmarks.md, "Under load"),
#: and timings this short, taken once, vary from call to call (docs/benchmarks.md, "FFT libraries").
FFTW_MARGIN = 0.8
_chosen: dict[tuple, str] = {}  # (shape, dtype, threads) -> "torch" | "fftw": one answer per process


def _seconds(backend, x: Tensor) -> float:
    """Time of one forward + inverse transform of ``x`` (consumed in place)."""
    t0 = time.perf_counter()
    backend.ifft_(backend.fft_(x))
    return time.perf_counter() - t0


def choose(shape: tuple[int, ...], dtype: torch.dtype = torch.complex64, repeats: int = 7) -> str:
    """``"fftw"`` or ``"torch"``: the faster library on a CPU batch of this shape, timed here.

    Both transform copies of one random batch, alternately (2 warm-up calls each, then
    ``repeats`` rounds; each library's least time counts); FFTW is taken when it needs under
    :data:`FFTW_MARGIN` of torch's time. The answer is kept for the process per shape, dtype and
    thread count. Without pyFFTW: ``"torch"``.
    """
    if pyfftw is None:
        return "torch"
    key = (tuple(int(n) for n in shape), dtype, torch.get_num_threads())
    if key not in _chosen:
        x = torch.randn(key[0], dtype=dtype)
        backends = (TorchFFT, _fftw())
        best = [float("inf"), float("inf")]
        for i in range(2 + repeats):
            for j, backend in enumerate(backends):
                t = _seconds(backend, x.clone())
                if i >= 2:
                    best[j] = min(best[j], t)
        _chosen[key] = "fftw" if best[1] < FFTW_MARGIN * best[0] else "torch"
    return _chosen[key]


def _fftw() -> FFTWBackend:
    global _FFTW
    if _FFTW is None:
        _FFTW = FFTWBackend()
    return _FFTW


def select(
    name: str,
    device: torch.device | str = "cpu",
    shape: tuple[int, ...] | None = None,
    dtype: torch.dtype = torch.complex64,
) -> TorchFFT | FFTWBackend:
    """The backend ``recon.fft`` names for a model on ``device``.

    ``auto``: torch on a GPU or without pyFFTW; on the CPU the faster of the two on transforms
    of ``shape`` (:func:`choose`; without a shape, FFTW). ``fftw`` on a GPU or without pyFFTW is
    an error that says so. The caller sizes the thread pools first (for a CPU model,
    :func:`ptyrad_core.setup.runtime.configure_threads` and ``tune_allocator``, as a run has them),
    so that torch and FFTW run, and :func:`choose` times them, on the usable CPUs.
    """
    device = torch.device(device)
    if name not in BACKENDS:
        raise ConfigError(f"recon.fft: {name!r} is not one of {', '.join(BACKENDS)}")
    if name == "auto" and device.type == "cpu" and pyfftw is not None and shape is not None:
        name = choose(shape, dtype)
    if name == "torch" or (name == "auto" and (device.type != "cpu" or pyfftw is None)):
        return TorchFFT()
    if device.type != "cpu":
        raise ConfigError(
            f"recon.fft: 'fftw' runs on the CPU, the model is on {device}; use 'auto' or 'torch'"
        )
    if pyfftw is None:
        raise ConfigError(
            "recon.fft: 'fftw' needs pyFFTW, which is not installed: pip install 'ptyrad_core[fftw]'"
        )
    return _fftw()

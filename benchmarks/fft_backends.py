"""torch.fft against FFTW (pyFFTW, in place, the plan ``recon.fft: fftw`` uses) on the batched 2-D
transforms of the benchmark cases, in this process, alternating the two.

    .venv/bin/python benchmarks/fft_backends.py [--threads N] [--repeats 30]

Prints, per shape ``(transforms, Ny, Nx)``, the lowest of 5 medians of ``--repeats`` calls of each
library (microseconds per batch and per transform) and the ratio FFTW / torch. The shapes are those
of one batch of the cases of ``compare_ptyrad.py``: probe modes x batch transforms of the window.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fft_floor import _lowest_median  # noqa: E402

from ptyrad_core.kernel.fft import FFTWBackend  # noqa: E402

SHAPES = [(32, 64, 64), (128, 64, 64), (576, 64, 64), (32, 128, 128), (128, 128, 128)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fftw = FFTWBackend()
    print(f"torch {torch.__version__}, {args.threads} threads")
    print(
        "| transforms x Ny x Nx | torch.fft us (per transform) | FFTW in place us (per transform) | "
        "FFTW / torch |"
    )
    print("| --- | --- | --- | --- |")
    for shape in SHAPES:
        x = torch.randn(*shape, dtype=torch.complex64)
        t_torch = _lowest_median(lambda x=x: torch.fft.fft2(x), args.repeats, 5)
        t_fftw = _lowest_median(lambda x=x: fftw.fft_(x), args.repeats, 5)
        n = shape[0]
        print(
            f"| {' x '.join(map(str, shape))} | {t_torch * 1e6:.0f} ({t_torch / n * 1e6:.2f}) | "
            f"{t_fftw * 1e6:.0f} ({t_fftw / n * 1e6:.2f}) | {t_fftw / t_torch:.2f} |"
        )


if __name__ == "__main__":
    main()

"""The two ways the model cuts object patches, timed alone (forward and backward, one batch).

    .venv/bin/python benchmarks/patch_paths.py

'whole': the complex transmission for the whole object (polar), then one complex gather;
'patch': amplitude and phase gathered under the windows, then polar on the patches. The model
takes 'patch' when the batch's windows hold fewer pixels than ``ptyrad_core.kernel.model.PATCH_FIRST``
times one object slice. Prints the best of two alternating rounds of 30 repetitions, in ms.
"""

from __future__ import annotations

import time

import torch

from ptyrad_core.kernel import forward as fwd
from ptyrad_core.setup import runtime  # noqa: F401  (the allocator settings a run uses)

WINDOW = (64, 64)


def bench(ny: int, batch: int, slices: int = 6, reps: int = 30) -> dict[str, float]:
    torch.manual_seed(0)
    a = torch.rand(1, slices, ny, ny, requires_grad=True)
    p = torch.rand(1, slices, ny, ny, requires_grad=True)
    idx = fwd.window_rows(torch.randint(0, ny - WINDOW[0], (batch, 2)), WINDOW, ny)

    def whole():
        x = fwd.gather_patches(torch.polar(a, p), idx, batch, WINDOW)
        (x.real.sum() + x.imag.sum()).backward()

    def patch():
        x = torch.polar(*(fwd.gather_patches(t, idx, batch, WINDOW) for t in (a, p)))
        (x.real.sum() + x.imag.sum()).backward()

    best: dict[str, float] = {}
    for name, f in (("whole", whole), ("patch", patch)) * 2:
        for _ in range(3):
            f()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / reps * 1e3)
    return best


if __name__ == "__main__":
    print("| object | batch | window px / object px | whole ms | patch ms |\n| --- | --- | --- | --- | --- |")
    for ny, batch in ((160, 32), (260, 8), (260, 16), (260, 32), (512, 32), (1024, 32)):
        r = bench(ny, batch)
        print(
            f"| {ny}^2 | {batch} | {batch * WINDOW[0] * WINDOW[1] / ny**2:.2f} | "
            f"{r['whole']:.1f} | {r['patch']:.1f} |"
        )

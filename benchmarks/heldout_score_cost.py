"""Time the held-out score alone: the whole-scan value and the 16 group values, the Poisson
deviance (the default score) against the Gaussian term (the loss stack of the cost cases), on
the ``(576, 205)`` held-out buffers of p1-s1-b576 (576 positions of 64 x 64, fraction 0.05),
the two alternating, 600 rounds, median, 2 threads:

    .venv/bin/python benchmarks/heldout_score_cost.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ptyrad_core.engine.heldout import CountDeviance, Scorer, Split
from ptyrad_core_plugins.losses.gaussian import GaussianLoss


def main() -> None:
    torch.set_num_threads(2)
    n, shape = 576, (64, 64)
    split = Split.make(0, 0.05, n, shape)
    g = torch.Generator().manual_seed(0)
    expected = torch.rand((n, *shape), generator=g) * 5
    meas, pred = torch.poisson(expected, generator=g), expected * 1.1
    idx = torch.arange(n)
    scorers = {
        "deviance": Scorer([("deviance", 1.0, CountDeviance())], split),
        "gaussian": Scorer([("gaussian", 1.0, GaussianLoss(GaussianLoss.Options()))], split),
    }
    whole: dict[str, list[float]] = {k: [] for k in scorers}
    groups: dict[str, list[float]] = {k: [] for k in scorers}
    for s in scorers.values():  # warm-up; the buffers are filled once
        s.start()
        s.add(pred, meas, idx, None, None)
        s.value(1, None)
        s.groups()
    for r in range(600):
        for name, s in scorers.items() if r % 2 else reversed(list(scorers.items())):
            t0 = time.perf_counter()
            s.value(1, None)
            t1 = time.perf_counter()
            s.groups()
            whole[name].append(t1 - t0)
            groups[name].append(time.perf_counter() - t1)
    for name in scorers:
        w, gr = (np.median(v[name]) * 1e3 for v in (whole, groups))
        print(f"{name}: whole scan {w:.3f} ms, groups {gr:.3f} ms")


if __name__ == "__main__":
    main()

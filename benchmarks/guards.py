"""What the finite-state guards cost per iteration: the same run with and without them.

    .venv/bin/python benchmarks/guards.py [--rounds 5] [--iterations 10] [--case p1-s6-b32]

The case is the harness's quick case on the shipped data (data/sto_small.h5: 24 x 24 positions,
64 px, 1 probe mode, 6 slices, batch 32; ``--case p4-s6-b32`` for 4 probe modes). In one
process, rounds alternate: guards on (as shipped) and off (``Reconstruction._check_finite`` and
the pre-write check replaced by no-ops), each a fresh reconstruction of ``--iterations``
iterations; the median time per iteration (first iteration dropped) is compared. The guard calls
are also timed alone, over the same parameters, to give their share without run-to-run noise.
Results: docs/benchmarks.md, "Guards".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def config(case: str, out: Path) -> dict:
    pmode = int(case.split("-")[0][1:])
    nz = int(case.split("-")[1][1:])
    batch = int(case.split("-")[2][1:])
    data = str(ROOT / "data" / "sto_small.h5")
    return {
        "data": {"path": data, "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "aberrations": {"defocus": 100},
        },
        "scan": {"source": "file", "path": data, "key": "positions_nominal_px", "n_slow": 24, "n_fast": 24},
        "model": {"probe": {"modes": pmode}, "object": {"slices": nz, "slice_thickness_A": 23.43 / nz}},
        "loss": [{"name": "gaussian", "options": {"dp_pow": 0.5}}],
        "recon": {"iterations": 1, "batch_size": batch},
        "output": {"dir": str(out), "figures": False, "log_file": False},
        "plugins": {"disable": ["core.progress", "core.convergence", "core.figures", "core.tiff"]},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--case", default="p1-s6-b32")
    args = p.parse_args(argv)

    from ptyrad_core.engine import results
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.kernel.config import build_config
    from ptyrad_core.setup import runtime

    runtime.configure_threads()
    shipped_check, shipped_require = Reconstruction._check_finite, results._require_finite
    times = {"on": [], "off": []}
    call_s = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                Reconstruction._check_finite = shipped_check if mode == "on" else (lambda *a, **k: None)
                results._require_finite = shipped_require if mode == "on" else (lambda run: None)
                cfg = config(args.case, Path(tmp) / f"{mode}{r}")
                cfg["recon"]["iterations"] = args.iterations
                run = Reconstruction(build_config(cfg), quiet=True)
                run.run()
                run.close()
                times[mode].append(statistics.median(run.history["time_s"][1:]))
                if mode == "on":  # the guard alone, over every parameter, as after a constraint
                    t0 = time.perf_counter()
                    for _ in range(50):
                        shipped_check(run, 0, run._guarded, "timing")
                    call_s.append((time.perf_counter() - t0) / 50)
        Reconstruction._check_finite, results._require_finite = shipped_check, shipped_require
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    batches = -(-576 // int(args.case.split("-")[2][1:]))
    share = statistics.median(call_s) * batches / on
    print(f"case {args.case}: {args.rounds} rounds x {args.iterations} iterations, alternating")
    print(
        f"  guards on : median {on * 1e3:.2f} ms/iteration "
        f"(rounds {', '.join(f'{t * 1e3:.1f}' for t in times['on'])})"
    )
    print(
        f"  guards off: median {off * 1e3:.2f} ms/iteration "
        f"(rounds {', '.join(f'{t * 1e3:.1f}' for t in times['off'])})"
    )
    print(f"  on / off  : {on / off:.4f}")
    print(
        f"  one check of every parameter: {statistics.median(call_s) * 1e6:.0f} us; x {batches} steps = "
        f"{100 * share:.2f} % of an iteration (upper bound: a step checks only the optimized parameters)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

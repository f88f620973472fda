"""Time per iteration with held-out validation on (the default fraction) and off, same process.

    .venv/bin/python benchmarks/heldout_cost.py [CASE ...] [--rounds 5] [--iterations 12]

CASE: cases of ``compare_ptyrad.py`` (default ``p1-s6-b32 p4-s6-b32 p1-s1-b576``), each built with
that harness's ptyrad_core config. Rounds alternate the order of the modes; each run is a fresh
reconstruction, observers as in the harness; the figure per run is the median time per iteration
without the first. Four modes: validation off; on (default); on with ``recon.stop.tolerance: 0``
(no per-group scoring); and on with ``recon.stop.min_delta: 1``, where no state after the first is
a new minimum, so every iteration is compared with the minimum and evaluates its per-group values
(what a run pays once its held-out loss has passed its minimum; while the loss falls, "on" is
the figure). Prints the medians over the rounds and each mode / off (docs/validation.md, "Time
per iteration"). Run it on a quiet machine: the difference measured is a few percent.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compare_ptyrad as cp  # noqa: E402

from ptyrad_core.engine import builder  # noqa: E402
from ptyrad_core.engine.loop import Reconstruction  # noqa: E402
from ptyrad_core.kernel.config import build_config  # noqa: E402

#: (recon.validation, recon.stop) per mode; "min": validation on with tolerance 0, i.e. without
#: the per-group evaluation that the tie test needs (docs/validation.md, "Which state is kept");
#: "compared": every state after the first compared with the minimum (its groups evaluated)
MODES = {
    "off": ({"fraction": 0.0}, {}),
    "on": ({}, {}),
    "min": ({}, {"tolerance": 0}),
    "compared": ({}, {"min_delta": 1.0}),
}


def time_case(name: str, rounds: int, iterations: int, tmp: Path) -> dict:
    case = cp.BY_NAME[name]
    path = cp.dataset(case.data)
    info = cp.file_info(path)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        items = list(MODES.items())
        order = items[r % len(items) :] + items[: r % len(items)]  # each mode first in turn
        if r % 2:
            order = order[::-1]
        for mode, (validation, stop) in order:
            out = tmp / f"{name}-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            config = cp.ours_config(case, path, info, iterations, out)
            config["recon"]["validation"] = validation
            config["recon"]["stop"] = stop
            cfg = build_config(config)
            run = Reconstruction(cfg, pm=builder.plugin_manager(cfg), quiet=True)
            run.run()
            run.close()
            times[mode].append(statistics.median(run.history["time_s"][1:]))
    on, off, tol0, compared = (statistics.median(times[m]) for m in ("on", "off", "min", "compared"))
    return {
        "case": name,
        "on_s": on,
        "off_s": off,
        "min_s": tol0,
        "compared_s": compared,
        "ratio": on / off,
        "ratio_min": tol0 / off,
        "ratio_compared": compared / off,
        "rounds": times,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=["p1-s6-b32", "p4-s6-b32", "p1-s1-b576"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=12)
    args = p.parse_args(argv)
    print(
        "| case | on ms / it. | on, tolerance 0 ms / it. | on, compared ms / it. | off ms / it. | on / off "
        "| on, tolerance 0 / off | on, compared / off |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            res = time_case(name, args.rounds, args.iterations, Path(tmp))
            print(
                f"| {name} | {res['on_s'] * 1e3:.1f} | {res['min_s'] * 1e3:.1f} "
                f"| {res['compared_s'] * 1e3:.1f} | {res['off_s'] * 1e3:.1f} "
                f"| {res['ratio']:.3f} | {res['ratio_min']:.3f} "
                f"| {res['ratio_compared']:.3f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

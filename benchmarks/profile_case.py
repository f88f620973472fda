"""Where one benchmark case spends its time: torch.profiler over a few iterations of either code.

    .venv/bin/python benchmarks/profile_case.py CASE [--iters 4] [--rows 25]
    /path/to/.venv-ptyrad/bin/python benchmarks/profile_case.py CASE --code ptyrad [--iters 4]

CASE is a case name of ``compare_ptyrad.py`` (same data and settings). ptyrad_core: the first
iteration runs unprofiled (warm-up), the next ``--iters`` under the profiler. PtyRAD: the whole
``solver.run()`` of ``1 + --iters`` iterations is profiled (its first iteration included).
Prints the operators sorted by self CPU time, and the total time per iteration they account for.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_ptyrad as cp  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=list(cp.BY_NAME))
    ap.add_argument("--code", choices=("ours", "ptyrad"), default="ours")
    ap.add_argument("--iters", type=int, default=4)
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--shapes", action="store_true", help="group the table by operator and input shapes")
    args = ap.parse_args()
    case = cp.BY_NAME[args.case]
    path = cp.dataset(case.data)
    info = cp.file_info(path)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.code == "ours":
            from ptyrad_core.engine.loop import Reconstruction
            from ptyrad_core.setup.config_file import load_config

            cfg = tmp / "ours.yaml"
            cfg.write_text(yaml.safe_dump(cp.ours_config(case, path, info, 1 + args.iters, tmp / "out")))
            run = Reconstruction(load_config(cfg), quiet=True)
            run.run(1)
            t0 = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                for it in range(2, 2 + args.iters):
                    run.run_iteration(it)
            wall = (time.perf_counter() - t0) / args.iters
        else:
            from ptyrad.params import load_params
            from ptyrad.solver import PtyRADSolver

            pp = tmp / "ptyrad.yaml"
            pp.write_text(yaml.safe_dump(cp.ptyrad_params(case, path, info, 1 + args.iters, tmp / "out")))
            solver = PtyRADSolver(load_params(str(pp)), device="cpu", seed=0)
            t0 = time.perf_counter()
            with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
                solver.run()
            wall = (time.perf_counter() - t0) / (1 + args.iters)
    print(f"{args.code} {case.name}: {wall:.3f} s per profiled iteration (profiler overhead included)")
    averages = prof.key_averages(group_by_input_shape=args.shapes)
    print(
        averages.table(
            sort_by="self_cpu_time_total",
            row_limit=args.rows,
            max_name_column_width=40,
            max_shapes_column_width=70,
        )
    )


if __name__ == "__main__":
    main()

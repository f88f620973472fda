"""Data-parallel scaling: time per iteration against the number of processes and of positions.

    python benchmarks/scaling.py [--sizes 8,16,24] [--procs 1,2] [--threads 1,2] [--iterations 5]
                                 [--device cpu|cuda] [--out benchmarks/results/scaling_cpu.json]

For every raster size ``n`` (``n x n`` positions) it writes a dataset whose patterns are those
of ``data/tiny.h5`` tiled over the raster (timing does not depend on what the patterns show),
then runs the same config (batch 32, 4 slices, 1 probe mode, 64 x 64 patterns, Adam on object
and probe) with ``ptyrad-core run`` in one process with each of ``--threads`` OpenMP threads
and with ``ptyrad-core run --nproc P`` (torchrun, gloo on CPU / NCCL on CUDA, one thread per
process) for each ``P > 1`` in ``--procs``. The time of an iteration is read from the result
file (``/history/time_s``); the first iteration is left out, the median of the rest reported.
The whole grid is repeated ``--rounds`` times, alternating, and the best median of the rounds
is kept (the machine may be shared). Prints a markdown table; writes every number as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def make_data(n: int, folder: Path) -> Path:
    with h5py.File(ROOT / "data" / "tiny.h5", "r") as f:
        tiny = f["measurements"][()]  # (8, 8, 64, 64)
    reps = -(-n // 8)
    path = folder / f"tiled_{n}.h5"
    with h5py.File(path, "w") as f:
        f["measurements"] = np.tile(tiny, (reps, reps, 1, 1))[:n, :n]
    return path


def make_config(data: Path, n: int, iterations: int, device: str, out: Path) -> dict:
    return {
        "data": {"path": str(data), "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "aberrations": {"defocus": 100},
        },
        "scan": {"source": "raster", "step_A": 0.4, "n_slow": n, "n_fast": n},
        "model": {"object": {"slices": 4, "slice_thickness_A": 1.9525}},
        "loss": [{"name": "gaussian"}],
        "recon": {"iterations": iterations, "batch_size": 32, "device": device},
        "output": {"dir": str(out), "figures": False, "log_file": False},
    }


def run_once(cfg_path: Path, procs: int, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "ptyrad_core.apps.cli", "run", str(cfg_path), "-q"]
    if procs > 1:
        cmd += ["--nproc", str(procs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    cfg = yaml.safe_load(cfg_path.read_text())
    with h5py.File(Path(cfg["output"]["dir"]) / "result.h5", "r") as f:
        times = f["history/time_s"][()].tolist()
        peak = float(f.attrs.get("peak_rss_MiB", float("nan")))
    return {
        "iter_times": times,
        "median_s": statistics.median(times[1:] or times),
        "wall_s": wall,
        "peak_rss_MiB": peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="8,16,24", help="raster sizes n (n x n positions)")
    ap.add_argument("--procs", default="1,2", help="process counts")
    ap.add_argument("--threads", default="1,2", help="OpenMP threads of the one-process runs")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scaling_cpu.json"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    procs = [int(p) for p in args.procs.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    cases = [(1, t) for t in threads] + [(p, 1) for p in procs if p > 1]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {}
        for n in sizes:
            data = make_data(n, tmp)
            for p, t in cases:
                cfg = make_config(data, n, args.iterations, args.device, tmp / f"out_{n}_{p}_{t}")
                paths[(n, p, t)] = tmp / f"cfg_{n}_{p}_{t}.yaml"
                paths[(n, p, t)].write_text(yaml.safe_dump(cfg))
        for r in range(args.rounds):
            for (n, p, t), path in paths.items():
                res = run_once(path, p, t)
                key = f"n{n * n}-p{p}-t{t}"
                results.setdefault(key, {"positions": n * n, "processes": p, "threads": t, "rounds": []})[
                    "rounds"
                ].append(res)
                print(f"round {r + 1}: {key}: {res['median_s']:.3f} s/iter", file=sys.stderr, flush=True)
    for entry in results.values():
        entry["best_median_s"] = min(x["median_s"] for x in entry["rounds"])
    meta = {
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "iterations": args.iterations,
        "batch_size": 32,
        "slices": 4,
        "pattern_px": 64,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    header = (
        "| positions | " + " | ".join(f"{p} proc x {t} thread{'s' if t > 1 else ''}" for p, t in cases) + " |"
    )
    print(header)
    print("|" + " --- |" * (len(cases) + 1))
    for n in sizes:
        row = [f"{results[f'n{n * n}-p{p}-t{t}']['best_median_s']:.3f} s" for p, t in cases]
        print(f"| {n * n} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

"""Per-iteration time of ptyrad_core against PtyRAD 1.0 on the same data and settings.

    python benchmarks/compare_ptyrad.py [--ptyrad-python .venv-ptyrad/bin/python] [--iters 8] [--rounds 2]

Both codes run sto_small.h5 (24 x 24 scan, 64 px patterns) with the same model size, the
Gaussian amplitude loss (dp_pow 0.5), Adam with the same learning rates, random grouping, no
constraints, one process each, alternating (PtyRAD, ours, PtyRAD, ours, ...) so that machine
load affects both alike. Reported: median per-iteration wall time after 2 warm-up iterations,
the ratio ours / PtyRAD, and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "data" / "sto_small.h5"

CASES = [  # (probe modes, slices, batch)
    (1, 6, 32),
    (4, 6, 32),
]


def ptyrad_params(pmode, nz, batch, iters, out) -> dict:
    off = {"start_iter": None, "step": 1, "end_iter": None}
    return {
        "init_params": {
            "probe_kv": 300, "probe_conv_angle": 21.4, "probe_aberrations": {"C10": -100},
            "meas_Npix": 64, "pos_N_scan_slow": 24, "pos_N_scan_fast": 24, "pos_scan_step_size": 0.4,
            "meas_calibration": {"mode": "dx", "value": 0.19525}, "probe_pmode_max": pmode,
            "obj_Nlayer": nz, "obj_slice_thickness": 23.43 / nz, "meas_flipT": None,
            "meas_reshape": [576, 64, 64], "meas_params": {"path": str(DATA), "key": "measurements"},
        },
        "model_params": {"update_params": {
            "obja": {"start_iter": 1, "lr": 5e-4, "end_iter": None},
            "objp": {"start_iter": 1, "lr": 5e-4, "end_iter": None},
            "probe": {"start_iter": 1, "lr": 1e-4, "end_iter": None},
            "probe_pos_shifts": {"start_iter": None, "lr": 0, "end_iter": None},
        }},
        "loss_params": {"loss_single": {"state": True, "weight": 1.0, "dp_pow": 0.5}},
        "constraint_params": {k: dict(off) for k in ("ortho_pmode", "fix_probe_int", "obj_rblur", "obj_zblur", "pos_recenter")},
        "recon_params": {"NITER": iters, "BATCH_SIZE": {"size": batch, "grad_accumulation": 1}, "SAVE_ITERS": None,
                         "output_dir": str(out), "selected_figs": [], "convergence_monitor": None,
                         "compiler_configs": {"enable": False}, "GROUP_MODE": "random"},
    }


def ours_overrides(pmode, nz, batch, iters, out) -> list[str]:
    return [f"model.probe.modes={pmode}", f"model.object.slices={nz}", f"model.object.slice_thickness_A={23.43 / nz}",
            f"recon.batch_size={batch}", f"recon.iterations={iters}", f"output.dir={out}", "output.log_file=false"]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptyrad-python", default=str(ROOT / ".venv-ptyrad" / "bin" / "python"),
                    help="python of the PtyRAD 1.0 venv made by ../shared/tools/install-ptyrad-reference.sh")
    ap.add_argument("--iters", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for pmode, nz, batch in CASES:
            times = {"ptyrad": [], "ours": []}
            rss = {"ptyrad": 0.0, "ours": 0.0}
            for _ in range(args.rounds):
                params = tmp / "ptyrad.yaml"
                params.write_text(yaml.safe_dump(ptyrad_params(pmode, nz, batch, args.iters, tmp / "pty")))
                proc = subprocess.run([args.ptyrad_python, str(HERE / "ptyrad_driver.py"), str(params)], capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                r = last_json(proc.stdout)
                times["ptyrad"] += r["iter_times"][2:]
                rss["ptyrad"] = max(rss["ptyrad"], r["peak_rss_MiB"])
                cmd = [sys.executable, str(HERE / "ptyrad_core_driver.py"), str(ROOT / "configs" / "demo.yaml"),
                       *ours_overrides(pmode, nz, batch, args.iters, tmp / "ours")]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr[-3000:])
                r = last_json(proc.stdout)
                times["ours"] += r["iter_times"][2:]
                rss["ours"] = max(rss["ours"], r["peak_rss_MiB"])
            t_p, t_o = statistics.median(times["ptyrad"]), statistics.median(times["ours"])
            rows.append((pmode, nz, batch, t_p, t_o, t_o / t_p, rss["ptyrad"], rss["ours"]))
            print(f"pmode {pmode} slices {nz} batch {batch}: PtyRAD {t_p:.3f} s/iter, ptyrad_core {t_o:.3f} s/iter, "
                  f"ratio {t_o / t_p:.2f}; peak RSS {rss['ptyrad']:.0f} / {rss['ours']:.0f} MiB", flush=True)
    print("\n| probe modes | slices | batch | PtyRAD 1.0 s/iter | ptyrad_core s/iter | ratio | peak RSS MiB (PtyRAD / ours) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p, n, b, tp, to, ratio, rp, ro in rows:
        print(f"| {p} | {n} | {b} | {tp:.3f} | {to:.3f} | {ratio:.2f} | {rp:.0f} / {ro:.0f} |")


if __name__ == "__main__":
    main()

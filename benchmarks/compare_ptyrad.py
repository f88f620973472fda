"""ptyrad_core against PtyRAD 1.0 on the same data with equivalent settings (issue 6).

    .venv/bin/python benchmarks/compare_ptyrad.py [--cases all|core|scaling|NAME,...]
        [--iters 7] [--warmup 2] [--rounds 2] [--slow-rounds 1] [--seed 0] [--ptyrad-python PATH]
        [--device cpu|cuda]
    .venv/bin/python benchmarks/compare_ptyrad.py --table [--cases ...] [--device ...]
        (re-print from results/)

Each case runs PtyRAD 1.0 (``ptyrad_driver.py``, in PtyRAD's own venv, public API, compiler off)
and ptyrad_core (``ptyrad_core_driver.py``) in fresh processes, alternating within the harness
run (round 1: PtyRAD then ours; round 2: ours then PtyRAD; ...), so that machine load affects
both alike. Per case it records, in ``benchmarks/results/<case>.json``, and prints as a table:

- the median per-iteration wall time over all rounds' iterations after ``--warmup``, and the
  ratio ours / PtyRAD;
- the FFT floor (``fft_floor.py``): the time that the 2-D FFTs of one iteration take alone,
  timed in ptyrad_core's process after its run, and ours as a multiple of it;
- peak resident memory (``ru_maxrss``) of each process;
- the projected-phase error against ``/ground_truth/phase_projected`` after the same number of
  iterations, computed here the same way for both codes (``ptyrad_core.apps.metrics``: registered
  sub-pixel onto the truth, relative RMS over the scanned region);
- the loss of iteration 1 of each code (the same normalised amplitude RMSE: a check that the
  two runs are equivalent).

Equivalence. Both codes get the same file, the same raster (PtyRAD simulates it from
``pos_scan_step_size`` with ``pos_scan_rand_std`` 0; ours reads ``/positions_nominal_px``; the
two differ only by PtyRAD's canvas offset, removed before the error is computed), the same
probe (simulated from the file's voltage, aperture and C10; 0.02 power per added mode;
normalised to the mean total pattern intensity), the same measurement normalisation (PtyRAD's
default ``max_at_one``, in ours the ``normalize`` preprocessing step), the Gaussian amplitude
loss (``dp_pow`` 0.5), Adam with PtyRAD's default learning rates (object amplitude and phase
5e-4, probe 1e-4; positions 5e-4 where refined), random grouping, seed 0, float32 / complex64.
Every constraint PtyRAD enables by default (``ortho_pmode``, ``fix_probe_int``, ``obj_rblur``,
``obj_zblur``, ``pos_recenter``) is off except in the ``standard`` case, which runs PtyRAD's
standard template stack (``ortho_pmode``, ``fix_probe_int``, ``obj_zblur`` std 1,
``obja_thresh`` [0.96, 1.04], position refinement with its default ``pos_recenter``) in both.
PtyRAD: ``SAVE_ITERS`` null, no figures, ``convergence_monitor`` null. Ours: ``recon.fft``
from ``--ours-fft`` (default ``auto``: FFTW, pyFFTW being in ptyrad_core's venv; PtyRAD and
``torch`` use ``torch.fft``, i.e. MKL),
``output.figures`` false, no log file, the result file written once after the last iteration
(outside the timed iterations). PtyRAD's random groups are drawn once, ours every iteration.

On a GPU (``--device cuda``) both codes run there with the same settings; each process also
reports its peak GPU memory (``torch.cuda.max_memory_allocated``), the FFT floor is
``torch.fft.fft2`` on the GPU, synchronised around every call (there is no FFTW floor), and the
results go to ``<case>-cuda.json`` and ``latest-cuda.json``, apart from the CPU's.

Synthetic datasets of the scaling cases are written once by ``ptyrad-core simulate`` from
``benchmarks/specs/*.yaml`` into ``output/benchmark-data/`` (same crystal recipe, dose, optics
and scan step; 24 x 24 to 96 x 96 positions; 64 px windows, and 128 px windows with half the
pixel size, so that the window covers the same area and the detector twice the angle).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SPECS = HERE / "specs"
SYNTH = ROOT / "output" / "benchmark-data"
STO = ROOT / "data" / "sto_small.h5"
THICKNESS_A = 23.43  # sto_small: 12 x 1.9525 A; the synthetic crystals: 6 x 3.905 A
LR = {"object": 5e-4, "probe": 1e-4, "positions": 5e-4}  # PtyRAD 1.0's defaults


@dataclass(frozen=True)
class Case:
    name: str
    data: str  # "sto_small" or the stem of a spec in benchmarks/specs
    pmode: int
    nz: int
    batch: int
    omode: int = 1
    standard: bool = False  # PtyRAD's standard constraint stack + position refinement
    slow: bool = False  # runs --slow-rounds rounds
    group: str = "core"
    note: str = ""
    iters: int | None = None  # overrides --iters


CASES = [
    Case("p1-s6-b32", "sto_small", 1, 6, 32),
    Case("p4-s6-b32", "sto_small", 4, 6, 32),
    Case("p4-s12-b32", "sto_small", 4, 12, 32),
    Case(
        "p1-s1-b576",
        "sto_small",
        1,
        1,
        576,
        iters=20,
        note="whole scan in one batch; 20 iterations: each is short",
    ),
    Case("o2-p1-s6-b32", "sto_small", 1, 6, 32, omode=2, note="2 object modes"),
    Case(
        "standard-p4-s6-b32",
        "sto_small",
        4,
        6,
        32,
        standard=True,
        note="PtyRAD's standard constraints + position refinement",
    ),
    Case("p1-s6-b32-60it", "sto_small", 1, 6, 32, slow=True, iters=60, note="error after 60 iterations"),
    Case("n576", "syn_24x24_k64", 1, 6, 32, group="scaling", note="synthetic 24 x 24 scan, 64 px"),
    Case(
        "n2304", "syn_48x48_k64", 1, 6, 32, group="scaling", slow=True, note="synthetic 48 x 48 scan, 64 px"
    ),
    Case(
        "n9216", "syn_96x96_k64", 1, 6, 32, group="scaling", slow=True, note="synthetic 96 x 96 scan, 64 px"
    ),
    Case(
        "k128",
        "syn_24x24_k128",
        1,
        6,
        32,
        group="scaling",
        slow=True,
        note="synthetic 24 x 24 scan, 128 px, dx / 2",
    ),
]
BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------


def dataset(name: str) -> Path:
    """The HDF5 file of a case; synthetic ones are simulated on first use."""
    if name == "sto_small":
        return STO
    out = SYNTH / f"{name}.h5"
    if not out.exists():
        SYNTH.mkdir(parents=True, exist_ok=True)
        cli = Path(sys.executable).with_name("ptyrad-core")
        cmd = [str(cli), "simulate", str(SPECS / f"{name}.yaml"), "-o", str(out)]
        print("$ " + " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"  simulated {out.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def file_info(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        a = f.attrs
        shape = f["measurements"].shape
        return {
            "energy_kV": float(a["energy_kV"]),
            "conv_angle_mrad": float(a["conv_angle_mrad"]),
            "C10_A": float(a["C10_A"]),
            "dx_A": float(a["dx_A"]),
            "step_A": float(a["scan_step_A"]),
            "n_slow": int(shape[0]),
            "n_fast": int(shape[1]),
            "k": int(shape[-1]),
        }


# ------------------------------------------------------------------------------------------
# the two configurations
# ------------------------------------------------------------------------------------------


def ptyrad_params(case: Case, path: Path, info: dict, iters: int, out: Path) -> dict:
    off = {"start_iter": None, "step": 1, "end_iter": None}
    n = info["n_slow"] * info["n_fast"]
    if case.standard:
        constraints = {
            "ortho_pmode": {"start_iter": 1, "step": 1, "end_iter": None},
            "fix_probe_int": {"start_iter": 1, "step": 1, "end_iter": None},
            "obj_rblur": dict(off),
            "obj_zblur": {
                "start_iter": 1,
                "step": 1,
                "end_iter": None,
                "obj_type": "both",
                "kernel_size": 5,
                "std": 1,
            },
            "obja_thresh": {"start_iter": 1, "step": 1, "end_iter": None, "relax": 0, "thresh": [0.96, 1.04]},
            "pos_recenter": {"start_iter": 1, "step": 1, "end_iter": None, "relax": 0},
        }
        pos_update = {"start_iter": 1, "lr": LR["positions"], "end_iter": None}
    else:
        constraints = {
            k: dict(off) for k in ("ortho_pmode", "fix_probe_int", "obj_rblur", "obj_zblur", "pos_recenter")
        }
        pos_update = {"start_iter": None, "lr": 0, "end_iter": None}
    return {
        "init_params": {
            "probe_kv": info["energy_kV"],
            "probe_conv_angle": info["conv_angle_mrad"],
            "probe_aberrations": {"C10": info["C10_A"]},
            "meas_Npix": info["k"],
            "pos_N_scan_slow": info["n_slow"],
            "pos_N_scan_fast": info["n_fast"],
            "pos_scan_step_size": info["step_A"],
            "pos_scan_rand_std": 0,
            "meas_calibration": {"mode": "dx", "value": info["dx_A"]},
            "probe_pmode_max": case.pmode,
            "obj_omode_max": case.omode,
            "obj_Nlayer": case.nz,
            "obj_slice_thickness": THICKNESS_A / case.nz,
            "meas_flipT": None,
            "meas_reshape": [n, info["k"], info["k"]],
            "meas_params": {"path": str(path), "key": "measurements"},
        },
        "model_params": {
            "update_params": {
                "obja": {"start_iter": 1, "lr": LR["object"], "end_iter": None},
                "objp": {"start_iter": 1, "lr": LR["object"], "end_iter": None},
                "probe": {"start_iter": 1, "lr": LR["probe"], "end_iter": None},
                "probe_pos_shifts": pos_update,
            }
        },
        "loss_params": {"loss_single": {"state": True, "weight": 1.0, "dp_pow": 0.5}},
        "constraint_params": constraints,
        "recon_params": {
            "NITER": iters,
            "BATCH_SIZE": {"size": case.batch, "grad_accumulation": 1},
            "GROUP_MODE": "random",
            "SAVE_ITERS": None,
            "output_dir": str(out),
            "selected_figs": [],
            "copy_params": False,
            "convergence_monitor": None,
            "compiler_configs": {"enable": False},
        },
    }


def ours_config(case: Case, path: Path, info: dict, iters: int, out: Path) -> dict:
    constraints = []
    update = {
        "object_amplitude": {"lr": LR["object"]},
        "object_phase": {"lr": LR["object"]},
        "probe": {"lr": LR["probe"]},
    }
    if case.standard:
        constraints = [
            {"name": "ortho_pmode", "start_iter": 1},
            {"name": "fix_probe_int", "start_iter": 1},
            {
                "name": "obj_zblur",
                "start_iter": 1,
                "options": {"obj_type": "both", "kernel_size": 5, "std": 1.0},
            },
            {"name": "obja_thresh", "start_iter": 1, "options": {"thresh": [0.96, 1.04], "relax": 0.0}},
            {"name": "pos_recenter", "start_iter": 1, "options": {"relax": 0.0}},
        ]
        update["positions"] = {"lr": LR["positions"]}
    return {
        "data": {
            "path": str(path),
            "loader": "hdf5",
            "options": {"key": "measurements"},
            "preprocess": [{"name": "normalize", "options": {"mode": "max_at_one"}}],
        },
        "experiment": {
            "energy_kV": info["energy_kV"],
            "conv_angle_mrad": info["conv_angle_mrad"],
            "dx_A": info["dx_A"],
            "aberrations": {"C10": info["C10_A"]},
        },
        "scan": {
            "source": "file",
            "path": str(path),
            "key": "positions_nominal_px",
            "n_slow": info["n_slow"],
            "n_fast": info["n_fast"],
        },
        "model": {
            "probe": {"modes": case.pmode, "mode_power": 0.02, "normalization": "mean_total_ints"},
            "object": {
                "modes": case.omode,
                "slices": case.nz,
                "slice_thickness_A": THICKNESS_A / case.nz,
                "phase_noise": 1e-8,
            },
        },
        "update": update,
        "optimizer": {"name": "Adam"},
        "loss": [{"name": "gaussian", "weight": 1.0, "options": {"dp_pow": 0.5}}],
        "constraints": constraints,
        "recon": {
            "iterations": iters,
            "batch_size": case.batch,
            "grouping": "random",
            "seed": 0,
            "device": "cpu",
        },
        "output": {"dir": str(out), "save_every": 0, "log_file": False, "figures": False},
    }


# ------------------------------------------------------------------------------------------
# running and scoring
# ------------------------------------------------------------------------------------------


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def run_driver(cmd: list[str], what: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{what} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return last_json(proc.stdout)


def phase_error(npz: Path, path: Path, window: int) -> dict:
    """Registered projected-phase error of a dumped object against the file's ground truth.

    The reconstruction's object pixel ``(y, x)`` sees the truth's pixel ``(y, x) - offset``,
    ``offset`` = the code's initial positions minus the file's nominal ones (0 for ours; PtyRAD's
    canvas places the raster elsewhere). The integer part of the offset is removed by cropping,
    the rest (and anything the reconstruction drifted by) by the sub-pixel registration.
    """
    from ptyrad_core.apps.metrics import projected_phase, registered_phase_error, scanned_region

    d = np.load(npz)
    proj = projected_phase(d["phase"], d["occupancy"])
    with h5py.File(path, "r") as f:
        truth = f["ground_truth/phase_projected"][()].astype(np.float64)
        nominal = f["positions_nominal_px"][()]
    offset = np.round(np.mean(d["positions"] - nominal, axis=0)).astype(int)
    on_truth = np.zeros_like(truth)
    ys = slice(max(0, -offset[0]), min(truth.shape[0], proj.shape[0] - offset[0]))
    xs = slice(max(0, -offset[1]), min(truth.shape[1], proj.shape[1] - offset[1]))
    on_truth[ys, xs] = proj[
        ys.start + offset[0] : ys.stop + offset[0], xs.start + offset[1] : xs.stop + offset[1]
    ]
    err, shift = registered_phase_error(on_truth, truth, scanned_region(nominal, (window, window)))
    return {"error": err, "shift_px": list(shift), "canvas_offset_px": offset.tolist()}


def summarize(runs: dict, warmup: int) -> dict:
    """The numbers of the table from the raw runs of one case.

    Times: median over every round's iterations after ``warmup``. Error, iteration-1 loss:
    from the first round (every round gives the same: both codes are seeded). FFT floor: the
    transform count times the median time per transform over all processes of the case (each
    process times it once after its run; process-to-process spread is about 10 %).
    """
    summary = {}
    for code, rs in runs.items():
        times = [t for r in rs for t in r["iter_times"][warmup:]]
        summary[code] = {
            "s_per_iter": statistics.median(times),
            "n_times": len(times),
            "peak_rss_MiB": max(r["peak_rss_MiB"] for r in rs),
            **({"peak_gpu_MiB": max(r["peak_gpu_MiB"] for r in rs)} if "peak_gpu_MiB" in rs[0] else {}),
            "loss_iter1": rs[0]["loss"][0],
            "loss_last": rs[0]["loss"][-1],
            "phase_error": rs[0]["phase"]["error"],
            "registration_shift_px": rs[0]["phase"]["shift_px"],
        }
    per = statistics.median(r["fft"]["s_per_transform"] for rs in runs.values() for r in rs)
    count = runs["ours"][0]["fft"]["transforms"]
    summary["fft_transforms"] = count
    summary["fft_s_per_transform"] = per
    summary["fft_floor_s"] = floor = count * per
    fftw = [r["fft"]["s_per_transform_fftw"] for r in runs["ours"] if "s_per_transform_fftw" in r["fft"]]
    if fftw:  # the floor of the FFT library ptyrad_core ran on (timed in its processes only)
        summary["fft_floor_fftw_s"] = count * statistics.median(fftw)
        summary["ours_over_fftw_floor"] = summary["ours"]["s_per_iter"] / summary["fft_floor_fftw_s"]
    summary["ratio"] = summary["ours"]["s_per_iter"] / summary["ptyrad"]["s_per_iter"]
    summary["ours_over_floor"] = summary["ours"]["s_per_iter"] / floor
    summary["ptyrad_over_floor"] = summary["ptyrad"]["s_per_iter"] / floor
    return summary


def machine(device: str = "cpu") -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        **({"gpu": torch.cuda.get_device_name(device)} if device.startswith("cuda") else {}),
    }


def run_case(case: Case, args, tmp: Path) -> dict:
    path = dataset(case.data)
    info = file_info(path)
    n = info["n_slow"] * info["n_fast"]
    rounds = args.slow_rounds if case.slow else args.rounds
    iters = case.iters or args.iters
    fft_arg = f"{case.batch},{case.pmode},{case.omode},{case.nz},{n},{info['k']}"
    runs = {"ptyrad": [], "ours": []}
    pp = tmp / f"{case.name}-ptyrad.yaml"
    pp.write_text(yaml.safe_dump(ptyrad_params(case, path, info, iters, tmp / "ptyrad-out")))
    oc = tmp / f"{case.name}-ours.yaml"
    config = ours_config(case, path, info, iters, tmp / "ours-out")
    config["recon"]["seed"] = args.seed
    config["recon"]["fft"] = args.ours_fft
    config["recon"]["device"] = args.device
    if args.ours_validation is not None:
        config["recon"]["validation"] = {"fraction": args.ours_validation}
    oc.write_text(yaml.safe_dump(config))
    for r in range(rounds):
        order = ("ptyrad", "ours") if r % 2 == 0 else ("ours", "ptyrad")
        for code in order:
            npz = tmp / f"{case.name}-{code}-{r}.npz"
            t0 = time.perf_counter()
            if code == "ptyrad":
                res = run_driver(
                    [
                        args.ptyrad_python,
                        str(HERE / "ptyrad_driver.py"),
                        str(pp),
                        str(npz),
                        "--seed",
                        str(args.seed),
                        "--device",
                        args.device,
                        "--fft",
                        fft_arg,
                    ],
                    f"PtyRAD ({case.name})",
                )
            else:
                res = run_driver(
                    [
                        sys.executable,
                        str(HERE / "ptyrad_core_driver.py"),
                        str(oc),
                        str(npz),
                        "--fft",
                        fft_arg,
                    ],
                    f"ptyrad_core ({case.name})",
                )
            res["wall_s"] = time.perf_counter() - t0
            res["phase"] = phase_error(npz, path, info["k"])
            runs[code].append(res)
            t = statistics.median(res["iter_times"][args.warmup :])
            gpu = f", peak GPU {res['peak_gpu_MiB']:.0f} MiB" if "peak_gpu_MiB" in res else ""
            print(
                f"  [{case.name}] round {r + 1}/{rounds} {code:6s}: {t:.3f} s/iter "
                f"(median of {len(res['iter_times']) - args.warmup}), "
                f"loss1 {res['loss'][0]:.4f}, error {res['phase']['error']:.4f}, "
                f"peak RSS {res['peak_rss_MiB']:.0f} MiB{gpu}, "
                f"process {res['wall_s']:.0f} s",
                flush=True,
            )
    summary = summarize(runs, args.warmup)
    return {
        "case": asdict(case),
        "data": {
            "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            **info,
            "positions": n,
        },
        "settings": {
            "iters": iters,
            "warmup": args.warmup,
            "rounds": rounds,
            "seed": args.seed,
            "learning_rates": LR,
            "ours_fft": args.ours_fft,
            "ours_validation": args.ours_validation,
            "device": args.device,
        },
        "machine": machine(args.device),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "summary": summary,
        "runs": runs,
        "ptyrad_params": yaml.safe_load(pp.read_text()),
        "ours_config": yaml.safe_load(oc.read_text()),
    }


# ------------------------------------------------------------------------------------------
# table
# ------------------------------------------------------------------------------------------

HEADER = (
    "| case | P / O / Nz / batch | positions, window | PtyRAD s/iter | ours s/iter | ratio | FFT floor s | "
    "ours / floor (PtyRAD / floor) | FFTW floor s (ours / it) | peak RSS MiB PtyRAD / ours | "
    "phase error PtyRAD / ours | "
    "loss it. 1 PtyRAD / ours |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def table_row(res: dict) -> str:
    c, d = res["case"], res["data"]
    s = summarize(res["runs"], res["settings"]["warmup"])
    seed = f" (seed {res['settings']['seed']})" if res["settings"].get("seed") else ""
    p, o = s["ptyrad"], s["ours"]
    fftw_floor = (
        f"{s['fft_floor_fftw_s']:.3f} ({s['ours_over_fftw_floor']:.2f})" if "fft_floor_fftw_s" in s else "-"
    )
    memory = f"{p['peak_rss_MiB']:.0f} / {o['peak_rss_MiB']:.0f}"
    if "peak_gpu_MiB" in o:
        memory += f" (GPU {p['peak_gpu_MiB']:.0f} / {o['peak_gpu_MiB']:.0f})"
    return (
        f"| {c['name']}{seed} | {c['pmode']} / {c['omode']} / {c['nz']} / {c['batch']} | "
        f"{d['positions']}, {d['k']} px | "
        f"{p['s_per_iter']:.3f} | {o['s_per_iter']:.3f} | {s['ratio']:.2f} | {s['fft_floor_s']:.3f} | "
        f"{s['ours_over_floor']:.2f} ({s['ptyrad_over_floor']:.2f}) | {fftw_floor} | {memory} | "
        f"{p['phase_error']:.4f} / {o['phase_error']:.4f} | {p['loss_iter1']:.4f} / {o['loss_iter1']:.4f} |"
    )


def result_name(case: str, seed: int, device: str = "cpu") -> str:
    """``CASE.json``; ``-seedN`` for a seed other than 0, ``-cuda`` for a GPU run (kept apart from the
    CPU's)."""
    kind = "" if device == "cpu" else "-" + device.split(":")[0]
    return f"{case}{kind}.json" if seed == 0 else f"{case}{kind}-seed{seed}.json"


def select(spec: str) -> list[Case]:
    if spec == "all":
        return CASES
    if spec in ("core", "scaling"):
        return [c for c in CASES if c.group == spec]
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [s for s in names if s not in BY_NAME]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; known: {', '.join(BY_NAME)} (or all, core, scaling)")
    return [BY_NAME[s] for s in names]


def latest_entry(res: dict) -> dict:
    s = summarize(res["runs"], res["settings"]["warmup"])
    return {
        "ptyrad_s_per_iter": s["ptyrad"]["s_per_iter"],
        "ours_s_per_iter": s["ours"]["s_per_iter"],
        "ratio": s["ratio"],
        "fft_floor_s": s["fft_floor_s"],
        "ours_over_floor": s["ours_over_floor"],
        "fft_floor_fftw_s": s.get("fft_floor_fftw_s"),
        "ours_over_fftw_floor": s.get("ours_over_fftw_floor"),
        "peak_rss_MiB": {"ptyrad": s["ptyrad"]["peak_rss_MiB"], "ours": s["ours"]["peak_rss_MiB"]},
        **(
            {"peak_gpu_MiB": {"ptyrad": s["ptyrad"]["peak_gpu_MiB"], "ours": s["ours"]["peak_gpu_MiB"]}}
            if "peak_gpu_MiB" in s["ours"]
            else {}
        ),
        "phase_error": {"ptyrad": s["ptyrad"]["phase_error"], "ours": s["ours"]["phase_error"]},
        "iterations": res["settings"]["iters"],
        "rounds": res["settings"]["rounds"],
        "date": res["date"],
    }


def write_latest(results: Path, cases: list[Case], seed: int, device: str = "cpu") -> None:
    """``results/latest.json`` (``latest-cuda.json`` for a GPU run): this run's figures per case, and
    how each ratio moved since the previous one."""
    path = results / result_name("latest", 0, device)
    previous = json.loads(path.read_text())["cases"] if path.exists() else {}
    entries = {}
    for case in cases:
        f = results / result_name(case.name, seed, device)
        if f.exists():
            entries[case.name] = latest_entry(json.loads(f.read_text()))
    for name, e in entries.items():
        if name in previous:
            print(
                f"  {name}: ratio {previous[name]['ratio']:.2f} ({previous[name]['date']}) "
                f"-> {e['ratio']:.2f}",
                flush=True,
            )
    path.write_text(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "machine": machine(device),
                "date": dt.datetime.now().isoformat(timespec="seconds"),
                "cases": {**previous, **entries},
            },
            indent=1,
        )
    )
    print(f"wrote {path}", flush=True)


def default_ptyrad_python() -> str:
    for venv in (ROOT / ".venv-ptyrad", ROOT.parent / ".venv-ptyrad"):
        if (venv / "bin" / "python").exists():
            return str(venv / "bin" / "python")
    return str(ROOT / ".venv-ptyrad" / "bin" / "python")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--cases", default="all", help="all, core, scaling, or comma-separated names: " + ", ".join(BY_NAME)
    )
    ap.add_argument("--iters", type=int, default=7, help="iterations per run (default 7)")
    ap.add_argument(
        "--warmup", type=int, default=2, help="leading iterations left out of the timing (default 2)"
    )
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per case (default 2)")
    ap.add_argument(
        "--slow-rounds", type=int, default=1, help="rounds for the slow scaling cases (default 1)"
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help=(
            "random seed of both codes (batches, initial noise); results of seed N > 0 go to CASE-seedN.json"
        ),
    )
    ap.add_argument(
        "--ptyrad-python",
        default=default_ptyrad_python(),
        help="python of the PtyRAD 1.0 venv made by ../shared/tools/install-ptyrad-reference.sh",
    )
    ap.add_argument(
        "--ours-fft",
        choices=("auto", "torch", "fftw"),
        default="auto",
        help="ptyrad_core's recon.fft (default auto: FFTW where pyFFTW is installed)",
    )
    ap.add_argument(
        "--ours-validation",
        type=float,
        default=None,
        metavar="FRACTION",
        help=(
            "ptyrad_core's recon.validation.fraction (default: the config default, held-out validation "
            "on as a user runs it; 0 trains on every pixel, the same work as PtyRAD)"
        ),
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help=(
            "where both codes run: cpu (default) or cuda[:N]; GPU results go to CASE-cuda.json, "
            "with peak GPU memory"
        ),
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the per-case JSON files")
    ap.add_argument(
        "--table", action="store_true", help="only print the table of the cases' existing results"
    )
    args = ap.parse_args()
    if args.iters - args.warmup < 1:
        sys.exit("--iters must exceed --warmup")
    if args.device != "cpu" and not args.table:
        import torch

        if not (args.device.startswith("cuda") and torch.cuda.is_available()):
            sys.exit(
                f"--device {args.device}: this torch ({torch.__version__}) sees no such GPU; "
                "use --device cpu, or run where torch.cuda.is_available()"
            )
    cases = select(args.cases)
    args.results.mkdir(parents=True, exist_ok=True)
    if not args.table:
        print(f"machine: {machine(args.device)}", flush=True)
        t_all = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for case in cases:
                t0 = time.perf_counter()
                print(f"case {case.name}: {case.note or ''}", flush=True)
                res = run_case(case, args, Path(tmp))
                (args.results / result_name(case.name, args.seed, args.device)).write_text(
                    json.dumps(res, indent=1)
                )
                s = res["summary"]
                print(
                    f"  => PtyRAD {s['ptyrad']['s_per_iter']:.3f} s/iter, "
                    f"ours {s['ours']['s_per_iter']:.3f} s/iter, "
                    f"ratio {s['ratio']:.2f}, FFT floor {s['fft_floor_s']:.3f} s "
                    f"(ours {s['ours_over_floor']:.2f}x)"
                    + (
                        f", FFTW floor {s['fft_floor_fftw_s']:.3f} s (ours {s['ours_over_fftw_floor']:.2f}x)"
                        if "fft_floor_fftw_s" in s
                        else ""
                    )
                    + "; "
                    f"case took {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
        print(f"harness time {time.perf_counter() - t_all:.0f} s", flush=True)
        write_latest(args.results, cases, args.seed, args.device)
    print()
    print(HEADER)
    for case in cases:
        kind = result_name(case.name, 0, args.device)[: -len(".json")]
        for f in [args.results / f"{kind}.json", *sorted(args.results.glob(f"{kind}-seed*.json"))]:
            if not f.exists():
                continue
            res = json.loads(f.read_text())
            summary = summarize(res["runs"], res["settings"]["warmup"])
            if summary != res["summary"]:  # results of an older harness: store the current summary
                res["summary"] = summary
                f.write_text(json.dumps(res, indent=1))
            print(table_row(res))


if __name__ == "__main__":
    main()

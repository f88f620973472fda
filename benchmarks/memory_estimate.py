"""The memory estimate (ptyrad_core.setup.memory) against the measured peak, per case.

    .venv/bin/python benchmarks/memory_estimate.py [CASE ...] [--device cpu|cuda]

Each case runs in its own process: a 2-iteration reconstruction on data/tiny.h5 or
data/sto_small.h5. Measured on the host: the peak resident size (``VmHWM``, reset through
``/proc/self/clear_refs`` before the run) minus the resident size when the first memory check
ran (the libraries imported before it are not part of the estimate); on a GPU: the most the
caching allocator reserved during the run. The estimate should be above the measurement
(ratio >= 1) and within a factor of about 2.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

TINY = {
    "data": {"path": str(DATA / "tiny.h5"), "loader": "hdf5", "options": {"key": "measurements"}},
    "experiment": {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "dx_A": 0.19525,
        "aberrations": {"defocus": 100},
    },
    "scan": {
        "source": "file",
        "path": str(DATA / "tiny.h5"),
        "key": "positions_nominal_px",
        "n_slow": 8,
        "n_fast": 8,
    },
    "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
    "loss": [{"name": "gaussian"}],
    "recon": {"iterations": 2, "batch_size": 16},
}
STO = {
    "data": {"path": str(DATA / "sto_small.h5"), "loader": "hdf5", "options": {"key": "measurements"}},
    "experiment": {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "dx_A": 0.19525,
        "aberrations": {"defocus": 100},
    },
    "scan": {
        "source": "file",
        "path": str(DATA / "sto_small.h5"),
        "key": "positions_nominal_px",
        "n_slow": 24,
        "n_fast": 24,
    },
    "model": {"probe": {"modes": 1}, "object": {"modes": 1, "slices": 6, "slice_thickness_A": 3.905}},
    "update": {"object_amplitude": {"lr": 2e-3}, "object_phase": {"lr": 2e-3}, "probe": {"lr": 2e-4}},
    "loss": [{"name": "gaussian", "options": {"dp_pow": 0.5}}],
    "recon": {"iterations": 2, "batch_size": 32},
}


def case(name: str) -> dict:
    cfg = copy.deepcopy(TINY if name.startswith("tiny") else STO)
    r, m, u = cfg["recon"], cfg["model"], cfg.setdefault("update", {})
    if name == "tiny_b64_p2":
        r["batch_size"], m["probe"] = 64, {"modes": 2}
    elif name == "sto_b576_p4":
        r["batch_size"], m["probe"]["modes"] = 576, 4
    elif name == "sto_obj1024":
        m["object"]["shape"] = [1024, 1024]
    elif name == "sto_obj1024_zblur":
        m["object"]["shape"] = [1024, 1024]
        cfg["constraints"] = [{"name": "obj_zblur", "options": {"std": 1.0}}]
    elif name == "sto_om2_z12_b128_tilts":
        m["object"].update(modes=2, slices=12, phase_noise=0.01)
        m["tilts"] = {"mode": "per_position"}
        r["batch_size"] = 128
        u["tilts"], u["slice_thickness"] = {"lr": 1e-3}, {"lr": 1e-3}
    elif name == "sto_streamed":
        cfg["data"]["memory_budget_MB"] = 1
    elif name == "sto_f64_b128":
        r["precision"], r["batch_size"] = "float64", 128
    elif name not in ("tiny", "sto"):
        raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")
    return cfg


CASES = [
    "tiny",
    "tiny_b64_p2",
    "sto",
    "sto_b576_p4",
    "sto_obj1024",
    "sto_obj1024_zblur",
    "sto_om2_z12_b128_tilts",
    "sto_streamed",
    "sto_f64_b128",
]

CHILD = r"""
import json, sys
import torch
from ptyrad_core.setup import memory
from ptyrad_core.kernel.config import build_config
from ptyrad_core.engine.loop import Reconstruction

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(key + ":"))

cfg = json.loads(sys.argv[1])
config = build_config(cfg)
cuda = cfg["recon"]["device"] == "cuda"
if cuda:
    torch.zeros(1, device="cuda")
at_check = []
for name in ("check_measurements", "check_run"):
    real = getattr(memory, name)
    setattr(memory, name, lambda *a, _real=real, **k: at_check.append(status("VmRSS")) or _real(*a, **k))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
run = Reconstruction(config, quiet=True)
run.run()
out = {}
for est in run.model.memory_estimate:
    measured = status("VmHWM") - at_check[0] if est.place == "host" else torch.cuda.max_memory_reserved()
    out[est.place] = {"estimate": est.total, "measured": measured, "items": est.items}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=CASES)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"{'case':26s} {'place':8s} {'estimate MiB':>12s} {'measured MiB':>12s} {'ratio':>6s}")
    for name in args.cases:
        cfg = case(name)
        cfg["recon"]["device"] = args.device
        with tempfile.TemporaryDirectory() as tmp:
            cfg["output"] = {"dir": tmp, "figures": False}
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True
            )
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        for place, row in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            est, meas = row["estimate"] / 2**20, row["measured"] / 2**20
            print(f"{name:26s} {place:8s} {est:12.1f} {meas:12.1f} {est / max(meas, 1e-9):6.2f}")


if __name__ == "__main__":
    main()

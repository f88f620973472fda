"""Run PtyRAD 1.0 on one params file; print its per-iteration times as JSON (last stdout line).

Runs inside PtyRAD's own virtual environment (../shared/tools/install-ptyrad-reference.sh):

    VENV/bin/python benchmarks/ptyrad_driver.py PARAMS.yaml OUT.npz [--seed 0] [--device cpu|cuda]
        [--fft BATCH,PMODE,OMODE,NZ,NPOS,K]

It uses PtyRAD's public API (ptyrad.params.load_params, ptyrad.solver.PtyRADSolver) on the CPU
or a GPU (compiler disabled in the params file, as PtyRAD's CPU default). OUT.npz receives the final
object phase ``(omode, Nz, NY, NX)``, the object-mode occupancies and the initial scan positions
``(N, 2)`` (window top-left corners in object pixels: PtyRAD's crop_pos + probe_pos_shifts
before the first iteration), so that the harness computes the error against ground truth the
same way for both codes. With ``--fft`` the FFT floor is timed in this process after the run.
"""

import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch
from ptyrad.params import load_params
from ptyrad.solver import PtyRADSolver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fft_floor import fft_floor  # noqa: E402

seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
device = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
params = load_params(sys.argv[1])
solver = PtyRADSolver(params, device=device, seed=seed)
init = solver.init.init_variables
positions = np.asarray(init["crop_pos"], dtype=np.float64) + np.asarray(
    init["probe_pos_shifts"], dtype=np.float64
)
solver.run()
model = solver.reconstruct_results
np.savez(
    sys.argv[2],
    phase=model.opt_objp.detach().cpu().numpy(),
    occupancy=model.omode_occu.detach().cpu().numpy(),
    positions=positions,
)
out = {
    "iter_times": [float(t) for t in model.iter_times],
    "loss": [float(v) for _, v in model.loss_iters],
    "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}
if device.startswith("cuda"):
    out["peak_gpu_MiB"] = torch.cuda.max_memory_allocated() / 2**20
if "--fft" in sys.argv:
    b, p, o, nz, n, k = (int(v) for v in sys.argv[sys.argv.index("--fft") + 1].split(","))
    out["fft"] = fft_floor(n, b, p, o, nz, (k, k), device=device)
print(json.dumps(out))

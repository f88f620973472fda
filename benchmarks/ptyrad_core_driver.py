"""Run ptyrad_core on one config; print its per-iteration times as JSON (last stdout line).

    python benchmarks/ptyrad_core_driver.py CONFIG.yaml OUT.npz [--fft BATCH,PMODE,OMODE,NZ,NPOS,K] [dotted.key=value ...]

OUT.npz receives the final object phase ``(omode, Nz, NY, NX)``, the object-mode occupancies
and the initial scan positions ``(N, 2)`` (window top-left corners in object pixels). With
``--fft`` the FFT floor (``fft_floor.py``) is timed in this process after the run, on the
config's device; on a GPU the peak GPU memory is reported too.
"""

import json
import resource
import sys
from pathlib import Path

import numpy as np
import torch

from ptyrad_core.config import load_config
from ptyrad_core.engine import Reconstruction

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fft_floor import fft_floor  # noqa: E402

args = sys.argv[3:]
fft = None
if "--fft" in args:
    i = args.index("--fft")
    fft = [int(v) for v in args[i + 1].split(",")]
    del args[i:i + 2]
run = Reconstruction(load_config(sys.argv[1], args), quiet=True)
model = run.model
positions = (model.crop.double() + model.frac.double()).cpu().numpy()
run.run()
np.savez(
    sys.argv[2],
    phase=model.object_phase.detach().cpu().numpy(),
    occupancy=model.occupancy.detach().cpu().numpy(),
    positions=positions,
)
out = {
    "iter_times": run.history["time_s"],
    "loss": run.history["loss"],
    "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}
device = next(model.parameters()).device
if device.type == "cuda":
    out["peak_gpu_MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
if fft is not None:
    b, p, o, nz, n, k = fft
    out["fft"] = fft_floor(n, b, p, o, nz, (k, k), device=str(device))
print(json.dumps(out))

"""Run ptyrad_core on one config; print its per-iteration times as JSON (last stdout line).

    python benchmarks/ptyrad_core_driver.py CONFIG.yaml OUT.npz [--fft BATCH,PMODE,OMODE,NZ,NPOS,K]
        [dotted.key=value ...]

OUT.npz receives the final object phase ``(omode, Nz, NY, NX)``, the object-mode occupancies
and the initial scan positions ``(N, 2)`` (window top-left corners in object pixels). With
``--fft`` the FFT floor (``fft_floor.py``) is timed in this process after the run, on the
config's device; on a GPU the peak GPU memory is reported too.

Threads are configured as ``ptyrad-core run`` configures them (``ptyrad_core.setup.runtime.configure_threads``
before torch is imported and again after; the plan is reported as ``threads``);
``PTYRAD_CORE_BENCH_ENV="NAME=VALUE ..."`` (``benchmarks/run.py --ours-env``) sets variables first.
The run overwrites an earlier result in the config's output folder (the harness's rounds reuse it).
"""

import inspect
import json
import os
import resource
import sys
from pathlib import Path

from ptyrad_core.setup import runtime

for item in os.environ.pop("PTYRAD_CORE_BENCH_ENV", "").split():  # benchmarks/run.py --ours-env NAME=VALUE
    os.environ[item.split("=", 1)[0]] = item.split("=", 1)[1]
runtime.configure_threads()  # before torch is imported, as ``ptyrad-core run`` does: OpenMP's wait policy

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ptyrad_core.engine.loop import Reconstruction  # noqa: E402
from ptyrad_core.setup.config_file import load_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fft_floor import fft_floor  # noqa: E402

args = sys.argv[3:]
fft = None
if "--fft" in args:
    i = args.index("--fft")
    fft = [int(v) for v in args[i + 1].split(",")]
    del args[i : i + 2]
threads = runtime.configure_threads()  # torch imported: the thread count a run gets
# rounds of the harness reuse one output folder
kwargs = {"overwrite": True} if "overwrite" in inspect.signature(Reconstruction).parameters else {}
run = Reconstruction(load_config(sys.argv[1], args), quiet=True, **kwargs)
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
    "threads": threads.describe(),
    "fft_library": getattr(model.fft, "name", "torch"),  # what recon.fft resolved to
}
device = next(model.parameters()).device
if device.type == "cuda":
    out["peak_gpu_MiB"] = torch.cuda.max_memory_allocated(device) / 2**20
if fft is not None:
    b, p, o, nz, n, k = fft
    out["fft"] = fft_floor(n, b, p, o, nz, (k, k), device=str(device))
print(json.dumps(out))

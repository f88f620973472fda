"""Run PtyRAD 1.0 on one params file and print its per-iteration times as JSON (last stdout line).

Runs inside PtyRAD's own virtual environment (../shared/tools/install-ptyrad-reference.sh):
    VENV/bin/python benchmarks/ptyrad_driver.py PARAMS.yaml
It uses PtyRAD's public API (ptyrad.params.load_params, ptyrad.solver.PtyRADSolver) on CPU with
the compiler disabled.
"""

import json
import resource
import sys

from ptyrad.params import load_params
from ptyrad.solver import PtyRADSolver

params = load_params(sys.argv[1])
solver = PtyRADSolver(params, device="cpu", seed=0)
solver.run()
model = solver.reconstruct_results
print(json.dumps({
    "iter_times": [float(t) for t in model.iter_times],
    "loss": [float(l) for _, l in model.loss_iters],
    "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))

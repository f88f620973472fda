"""Run ptyrad_core on one config and print its per-iteration times as JSON (last stdout line).

    python benchmarks/ptyrad_core_driver.py CONFIG.yaml [dotted.key=value ...]
"""

import json
import resource
import sys

from ptyrad_core.config import load_config
from ptyrad_core.engine import Reconstruction

run = Reconstruction(load_config(sys.argv[1], sys.argv[2:]), quiet=True).run()
print(json.dumps({
    "iter_times": run.history["time_s"],
    "loss": run.history["loss"],
    "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))

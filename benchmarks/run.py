"""One command for the PtyRAD 1.0 comparison (issue 6).

    .venv/bin/python benchmarks/run.py --quick      # one case (1 probe mode, 6 slices, batch 32), 1 round: ~1 min
    .venv/bin/python benchmarks/run.py              # every case of compare_ptyrad.py, 2 rounds: ~10 min
    .venv/bin/python benchmarks/run.py --cases p4-s6-b32,p1-s1-b576 [--rounds 3]
    .venv/bin/python benchmarks/run.py --quick --device cuda   # both codes on a GPU: results/<case>-cuda.json

Needs PtyRAD 1.0 in its own venv: ``../shared/tools/install-ptyrad-reference.sh .venv-ptyrad``
(found at ./.venv-ptyrad or ../.venv-ptyrad; else pass ``--ptyrad-python``). Every run writes
``benchmarks/results/<case>.json`` (all raw timings) and ``benchmarks/results/latest.json`` (per
case both times, the ratio, the FFT floor, peak memory and both errors) and prints how each
ratio moved since the previous ``latest.json``. Any other option goes to ``compare_ptyrad.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_ptyrad  # noqa: E402

QUICK = ["--cases", "p1-s6-b32", "--rounds", "1", "--iters", "7", "--warmup", "2"]

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--quick" in argv:
        argv.remove("--quick")
        argv = QUICK + argv  # later options win
    sys.argv = [sys.argv[0], *argv]
    compare_ptyrad.main()

"""A competing load for ``benchmarks/run.py --load``: CPU-bound processes started beside both
codes' timed runs, to see how each degrades on a shared node (issue 15: "under load it degrades
gracefully": ours should slow down no more than PtyRAD does).

Kinds (each load process is single-threaded and runs until stopped):

- ``spin``: a Python busy loop (``while True: n += 1``): one core's worth of demand, no memory traffic;
- ``matmul``: NumPy multiplying 256 x 256 float64 matrices in a loop with one BLAS thread: one
  core's demand plus cache and memory-bandwidth pressure.

The processes run at ``nice`` (default 10, what the ``nice`` command gives), i.e. as a
background job another user started; ``--load-nice 0`` makes them equal competitors. Each
process's CPU time is read from ``/proc/PID/stat`` when the load stops, so that a result also
says how much CPU the load got while both codes ran: a code that "degrades gracefully" by
starving its neighbour is not what the issue asks for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

KINDS = ("spin", "matmul")
_CODE = {
    "spin": "n = 0\nwhile True:\n    n += 1\n",
    "matmul": (
        "import numpy as np\na = np.random.default_rng(0).random((256, 256))\nb = a.copy()\n"
        "while True:\n    b = a @ b\n    b /= np.abs(b).max()\n"
    ),
}
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass(frozen=True)
class LoadSpec:
    procs: int = 1
    nice: int = 10
    kind: str = "spin"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"load kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.procs < 1:
            raise ValueError(f"load processes: at least 1, got {self.procs}")

    def describe(self) -> str:
        return f"{self.procs} x {self.kind}, nice {self.nice}"


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Load:
    """Context manager: the load processes run inside the ``with`` block; :attr:`record` then
    holds the spec, the wall time and the CPUs' worth the load got (its CPU time / wall time)."""

    def __init__(self, spec: LoadSpec):
        self.spec = spec
        self.procs: list[subprocess.Popen] = []
        self.record: dict = {}

    def __enter__(self) -> Load:
        nice = self.spec.nice
        env = {**os.environ, **_ONE_THREAD}
        for _ in range(self.spec.procs):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _CODE[self.spec.kind]],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=(lambda: os.nice(nice)) if nice and hasattr(os, "nice") else None,
                )
            )
        self._t0 = time.perf_counter()
        time.sleep(0.5)  # let them start (and NumPy import) before anything is timed
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._t0
        cpu = [_cpu_seconds(p.pid) for p in self.procs]
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        known = [c for c in cpu if c is not None]
        self.record = {
            **asdict(self.spec),
            "wall_s": wall,
            "load_cpu_s": sum(known) if known else None,
            "load_cpus": sum(known) / wall if known and wall > 0 else None,
        }

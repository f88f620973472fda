"""Process-level settings that make the engine faster on some platforms.

:func:`tune_allocator` keeps freed memory in glibc's heap instead of handing every large block
back to the kernel: the engine allocates and frees tensors of a few MB per FFT, and on Linux
each fresh block costs one page fault per 4 kB page when first written; keeping the blocks
removes most of those faults and some time per iteration (docs/benchmarks.md, "What made the
difference"). The process's resident memory then stays at its peak,
which for a reconstruction is what it needs anyway. Set ``PTYRAD_CORE_NO_MALLOPT=1`` to skip it.

:func:`configure_threads` sizes the CPU thread pools to the CPUs this process may use
(:func:`usable_cpus`) and keeps idle OpenMP threads from spinning for long; see its docstring for why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds (Linux / glibc only, once per process)."""
    global _done
    if _done or not sys.platform.startswith("linux") or os.environ.get("PTYRAD_CORE_NO_MALLOPT"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
    except (OSError, AttributeError):
        return False
    _done = bool(ok)
    return _done


def peak_memory_MiB(device=None) -> dict[str, float]:
    """Peak memory of this process so far, MiB: ``rss``, the resident set's high-water mark, and,
    on a CUDA device, ``device`` (the most the caching allocator held for tensors at once).

    On Linux ``rss`` is ``VmHWM`` from ``/proc/self/status``: ``getrusage``'s ``ru_maxrss``
    survives ``exec``, so a process started from a large one would report its parent's size.
    """
    out = {"rss": 0.0}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    out["rss"] = int(line.split()[1]) / 1024  # kB
                    break
    except OSError:
        try:
            import resource

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["rss"] = (
                maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024
            )  # bytes on macOS, kB elsewhere
        except (ImportError, OSError):  # Windows
            pass
    if device is not None and getattr(device, "type", str(device)) == "cuda":
        import torch

        out["device"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


# ------------------------------------------------------------------------------------------
# CPU threads
# ------------------------------------------------------------------------------------------

log = logging.getLogger(__name__)

#: How idle OpenMP threads wait: if the user set any of these, :func:`configure_threads` sets none.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: What :func:`configure_threads` puts in the environment when the user set none of
#: :data:`WAIT_VARIABLES` and torch is not imported yet (libgomp and Intel's OpenMP read them once,
#: when they are loaded). ``GOMP_SPINCOUNT``: an idle libgomp thread spins this many rounds
#: (about a tenth of a millisecond; libgomp's default is 300,000) before it sleeps;
#: ``KMP_BLOCKTIME``: the same for Intel's OpenMP, in milliseconds (its default is 200).
WAIT_DEFAULTS = {"GOMP_SPINCOUNT": "10000", "KMP_BLOCKTIME": "1"}
#: Thread counts the user chose: torch takes its default intra-op count from these.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Set to 1 to leave threads and the OpenMP environment entirely to torch's defaults.
OPT_OUT = "PTYRAD_CORE_NO_THREAD_CONFIG"

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _positive_int(value) -> int | None:
    """``'4'`` -> 4; ``'4,2'`` (OpenMP's nested list) -> 4; anything else (``''``, ``'0'``, ``'x'``)
    -> None."""
    try:
        n = int(str(value).split(",")[0].strip())
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> the process's cgroup path from ``/proc/self/cgroup``; ``''`` for the v2 hierarchy."""
    text = _read(proc_cgroup) or ""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                out[name] = parts[2]
    return out


def _along(base: Path, rel: str) -> list[Path]:
    """``base / rel`` and each of its ancestors up to ``base``: a quota on any of them applies.
    Inside a container the hierarchy is usually mounted at the process's own cgroup, so that
    ``rel`` names nothing below ``base``; ``base`` itself is always a candidate."""
    out = [base]
    rel_parts = [p for p in rel.strip("/").split("/") if p]
    for i in range(1, len(rel_parts) + 1):
        out.append(base.joinpath(*rel_parts[:i]))
    return out


def cgroup_cpu_quota(
    cgroup_root: Path | str = CGROUP_ROOT, proc_cgroup: Path | str = PROC_CGROUP
) -> float | None:
    """CPUs' worth of time per period the process's cgroup may use (``quota / period``), the
    smallest along its hierarchy; ``None`` when no quota is set or none can be read.

    cgroup v2: ``cpu.max`` holds ``"QUOTA PERIOD"`` or ``"max PERIOD"``. cgroup v1:
    ``cpu.cfs_quota_us`` (``-1``: none) and ``cpu.cfs_period_us`` under the ``cpu`` controller's
    mount (``cpu``, ``cpu,cpuacct`` or ``cpuacct,cpu``). Docker's ``--cpus``, Kubernetes' CPU
    limits and systemd's ``CPUQuota`` all end up here; the affinity mask does not show them.
    """
    root, paths = Path(cgroup_root), _cgroup_paths(Path(proc_cgroup))
    quotas = []
    for d in _along(root, paths.get("", "/")):  # v2
        text = _read(d / "cpu.max")
        if text:
            q, _, period = text.partition(" ")
            if q != "max" and _positive_int(q) and _positive_int(period or "100000"):
                quotas.append(int(q) / int(period or "100000"))
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1
        base = root / mount
        if not base.is_dir():
            continue
        for d in _along(base, paths.get("cpu", "/")):
            q, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            if q and period and _positive_int(q) and _positive_int(period):
                quotas.append(int(q) / int(period))
    return min(quotas) if quotas else None


@dataclass(frozen=True)
class CpuLimits:
    """What bounds the CPUs this process may use, each ``None`` where unknown or unbounded."""

    affinity: int | None  #: CPUs in the scheduler's affinity mask (``taskset``, cpusets, SLURM's binding)
    cgroup_quota: float | None  #: CPUs' worth of the cgroup's CPU quota (``quota / period``)
    slurm: int | None  #: ``SLURM_CPUS_PER_TASK``
    machine: int  #: ``os.cpu_count()``: the logical CPUs of the machine

    @property
    def usable(self) -> int:
        """The smallest bound, at least 1. A fractional quota rounds down: a thread beyond the
        quota is throttled in every period, and with it every parallel region it belongs to."""
        bounds = [self.machine]
        if self.affinity:
            bounds.append(self.affinity)
        if self.cgroup_quota:
            bounds.append(max(1, math.floor(self.cgroup_quota + 1e-9)))
        if self.slurm:
            bounds.append(self.slurm)
        return max(1, min(bounds))

    def describe(self) -> str:
        parts = [
            f"machine {self.machine}",
            f"affinity {self.affinity if self.affinity is not None else '?'}",
            f"cgroup quota {self.cgroup_quota:.3g}" if self.cgroup_quota else "no cgroup quota",
        ]
        if self.slurm:
            parts.append(f"SLURM_CPUS_PER_TASK {self.slurm}")
        return f"{self.usable} usable CPU(s) ({', '.join(parts)})"


def cpu_limits(
    *,
    environ: Mapping[str, str] | None = None,
    cgroup_root: Path | str = CGROUP_ROOT,
    proc_cgroup: Path | str = PROC_CGROUP,
    affinity: int | None = None,
    machine: int | None = None,
) -> CpuLimits:
    """The bounds of :class:`CpuLimits` for this process (the keyword arguments replace what is
    read from the system: tests, or a launcher that knows better)."""
    env = os.environ if environ is None else environ
    if affinity is None and hasattr(os, "sched_getaffinity"):
        try:
            affinity = len(os.sched_getaffinity(0))
        except OSError:
            affinity = None
    return CpuLimits(
        affinity=affinity,
        cgroup_quota=cgroup_cpu_quota(cgroup_root, proc_cgroup),
        slurm=_positive_int(env.get("SLURM_CPUS_PER_TASK")),
        machine=machine or os.cpu_count() or 1,
    )


def usable_cpus(**kwargs) -> int:
    """How many CPUs this process can keep busy at once: the smallest of the affinity mask
    (``os.sched_getaffinity``), the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, rounded down), ``SLURM_CPUS_PER_TASK`` and the machine's CPUs; at least 1.

    ``os.cpu_count()`` and torch's default (the machine's physical cores) see none of the first
    three: in a SLURM allotment of 4 CPUs on a 64-core node torch starts 32 or 64 threads, and
    each parallel region then waits for threads that share 4 CPUs. Keyword arguments as
    :func:`cpu_limits`.
    """
    return cpu_limits(**kwargs).usable


def explicit_threads(environ: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """The thread count the user set in the environment, and where: ``MKL_NUM_THREADS`` over
    ``OMP_NUM_THREADS``, as torch reads them; ``None`` when neither holds a positive number."""
    env = os.environ if environ is None else environ
    for name in reversed(THREAD_VARIABLES):  # torch: MKL_NUM_THREADS overrides OMP_NUM_THREADS
        n = _positive_int(env.get(name))
        if n:
            return n, f"{name}={env[name]}"
    return None


def torch_default_threads() -> set[int]:
    """The intra-op thread counts torch picks by itself when no variable is set: its default is
    the machine's physical cores (cpuinfo), or its logical CPUs where cores are not known; both,
    since which one a build takes is not visible from Python. A count outside this set was
    chosen by someone (``torch.set_num_threads``)."""
    logical = os.cpu_count() or 1
    cores = set()
    for d in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        package, core = _read(d / "physical_package_id"), _read(d / "core_id")
        if package is not None and core is not None:
            cores.add((package, core))
    return {logical, len(cores)} if cores else {logical}


@dataclass
class ThreadPlan:
    """What :func:`configure_threads` found and did."""

    threads: (
        int | None
    )  #: torch's intra-op threads after the call (FFTW plans use the same); None before torch is imported
    source: str  #: why that many: the user's variable or call, or the usable CPUs
    limits: CpuLimits
    wait_env: dict[str, str] = field(default_factory=dict)  #: variables this call put in the environment
    wait_note: str = ""  #: how idle OpenMP threads wait, and who chose it

    def describe(self) -> str:
        count = f"{self.threads} thread(s)" if self.threads else "threads: set when torch is imported"
        return f"{count} ({self.source}); {self.limits.describe()}; {self.wait_note}"


_applied: int | None = None  # the count this module gave torch, so that a second call knows it as its own
_wait_set: dict[str, str] = {}  # the wait variables this module put in the environment


def configure_threads(
    threads: int | None = None, *, environ: Mapping[str, str] | None = None, **limits
) -> ThreadPlan:
    """Size the CPU thread pools to the CPUs this process may use, and keep idle OpenMP threads
    from spinning for long. Call it first thing (the CLI does, before torch is imported) and again once
    torch is imported (a run does at its start); each call does what is possible at that point.

    Why. A reconstruction on the CPU runs two OpenMP thread pools one after the other: torch's
    (elementwise work, reductions, the scatter-add) and FFTW's (``ptyrad_core.kernel.fft``; pyFFTW's
    wheel ships its own copy of libgomp). Each pool has as many threads as torch's intra-op
    count, and the calls alternate every few tens of microseconds. By default libgomp lets a
    thread that has finished its share spin for 300,000 rounds (milliseconds) before it sleeps,
    so while one pool works the other pool's idle threads are still spinning: up to twice as many
    busy threads as CPUs, hidden on a quiet machine by the spare cycles of the spinning, but
    beside any other job on the same cores each parallel region waits for a thread that is
    queued behind spinners and the other job. A short spin (:data:`WAIT_DEFAULTS`) ends before
    the other pool's next call in most gaps. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) is
    the most robust beside other jobs, but then every parallel region (thousands per iteration)
    has to wake its threads, which on a quiet machine costs more than the spinning saved; a user
    on a node that is always shared can set it (docs/benchmarks.md, "Under load", has both
    measured). And the thread count should not exceed the CPUs the process may use, which
    torch's default (the machine's physical cores) ignores.

    What it does:

    - before torch is imported, unless the user set one of :data:`WAIT_VARIABLES`: puts
      :data:`WAIT_DEFAULTS` in ``os.environ`` (read by torch's libgomp, pyFFTW's libgomp, or
      Intel's OpenMP when they are loaded; inherited by child processes, which are ptyrad_core
      workers). Once torch is imported this is too late and the call leaves the environment alone;
    - once torch is imported: sets ``torch.set_num_threads`` to ``threads`` if given; else,
      unless the user chose a count (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or
      ``torch.set_num_threads`` with a value other than torch's default), lowers torch's default
      to :func:`usable_cpus`. It never raises torch's count and never overrides the user's
      choice. FFTW plans take ``torch.get_num_threads()`` at each call, so both pools follow.

    ``PTYRAD_CORE_NO_THREAD_CONFIG=1`` skips all of it. ``environ`` and the keyword arguments of
    :func:`cpu_limits` replace the process's environment and system files (tests).
    """
    global _applied, _wait_set
    env = os.environ if environ is None else environ
    lim = cpu_limits(environ=env, **limits)
    if env.get(OPT_OUT):
        return ThreadPlan(
            None, f"{OPT_OUT} is set: torch's defaults", lim, wait_note="OpenMP waits as its defaults say"
        )
    plan = ThreadPlan(None, "", lim)
    user_wait = {k: env[k] for k in WAIT_VARIABLES if k in env}
    torch = sys.modules.get("torch")
    if user_wait and user_wait == _wait_set:
        plan.wait_note = (
            "OpenMP wait: " + ", ".join(f"{k}={v}" for k, v in user_wait.items()) + " (set by ptyrad_core)"
        )
    elif user_wait:
        plan.wait_note = "OpenMP wait set by the user: " + ", ".join(f"{k}={v}" for k, v in user_wait.items())
    elif torch is None:
        for k, v in WAIT_DEFAULTS.items():
            env[k] = v  # type: ignore[index]
        plan.wait_env = dict(WAIT_DEFAULTS)
        if environ is None:
            _wait_set = dict(WAIT_DEFAULTS)
        plan.wait_note = (
            "OpenMP wait: "
            + ", ".join(f"{k}={v}" for k, v in WAIT_DEFAULTS.items())
            + " (set by ptyrad_core)"
        )
    else:
        plan.wait_note = (
            "OpenMP wait: library defaults (torch was imported before ptyrad_core could set them)"
        )
    user = explicit_threads(env)
    if torch is None:
        plan.source = user[1] if user else "the usable CPUs, once torch is imported"
        plan.threads = None
    else:
        current = torch.get_num_threads()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
            _applied = threads
            plan.source = "asked for"
        elif user:
            plan.source = user[1]
        elif current != _applied and current not in torch_default_threads():
            plan.source = "torch.set_num_threads by the caller"
        elif current > lim.usable:
            torch.set_num_threads(lim.usable)
            _applied = lim.usable
            plan.source = f"the usable CPUs (torch's default was {current})"
        else:
            plan.source = "torch's default, within the usable CPUs"
        plan.threads = torch.get_num_threads()
    log.debug("threads: %s", plan.describe())
    return plan

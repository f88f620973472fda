"""Thread counts follow the CPUs the process may use (ptyrad_core.setup.runtime; issue 15, "under load it
degrades gracefully"): affinity, the cgroup CPU quota (v1 and v2), SLURM_CPUS_PER_TASK, and an
explicit choice of the user, which is never overridden. No timing here: speed under load is
measured by ``benchmarks/run.py --load``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptyrad_core.setup import runtime

ROOT = Path(__file__).resolve().parents[1]


def fake_v2(tmp_path: Path, cpu_max: dict[str, str], own: str = "/") -> dict:
    """A cgroup v2 tree: ``cpu.max`` per relative folder; the process in ``own``."""
    root = tmp_path / "cgroup"
    for rel, text in cpu_max.items():
        d = root / rel.strip("/") if rel.strip("/") else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(text + "\n")
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"0::{own}\n")
    return {"cgroup_root": root, "proc_cgroup": proc}


def fake_v1(tmp_path: Path, quota: str, period: str = "100000", mount: str = "cpu,cpuacct") -> dict:
    root = tmp_path / "cgroup"
    d = root / mount
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(quota + "\n")
    (d / "cpu.cfs_period_us").write_text(period + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(f"4:{mount}:/\n3:memory:/\n")
    return {"cgroup_root": root, "proc_cgroup": proc}


def no_cgroup(tmp_path: Path) -> dict:
    (tmp_path / "empty").mkdir(exist_ok=True)
    return {"cgroup_root": tmp_path / "empty", "proc_cgroup": tmp_path / "absent"}


@pytest.mark.parametrize(
    "cpu_max, quota, usable",
    [
        ("max 100000", None, 8),
        ("200000 100000", 2.0, 2),
        ("150000 100000", 1.5, 1),  # a fractional quota rounds down
        ("50000 100000", 0.5, 1),  # at least one thread
        ("400000 50000", 8.0, 8),  # the period is read, not assumed
    ],
)
def test_cgroup_v2_cpu_max(tmp_path, cpu_max, quota, usable):
    paths = fake_v2(tmp_path, {"/": cpu_max})
    assert runtime.cgroup_cpu_quota(**paths) == quota
    assert runtime.usable_cpus(environ={}, affinity=8, machine=8, **paths) == usable


def test_cgroup_v2_nested_takes_the_smallest_quota_along_the_path(tmp_path):
    paths = fake_v2(
        tmp_path, {"/": "max 100000", "/job": "300000 100000", "/job/step": "max 100000"}, own="/job/step"
    )
    assert runtime.cgroup_cpu_quota(**paths) == 3.0
    assert runtime.usable_cpus(environ={}, affinity=16, machine=16, **paths) == 3


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
@pytest.mark.parametrize("quota, usable", [("-1", 4), ("300000", 3), ("100000", 1)])
def test_cgroup_v1_cfs_quota(tmp_path, mount, quota, usable):
    paths = fake_v1(tmp_path, quota, mount=mount)
    assert runtime.usable_cpus(environ={}, affinity=4, machine=4, **paths) == usable


def test_unreadable_or_garbled_cgroup_files_mean_no_quota(tmp_path):
    assert runtime.cgroup_cpu_quota(**no_cgroup(tmp_path)) is None
    paths = fake_v2(tmp_path, {"/": "garbage"})
    assert runtime.cgroup_cpu_quota(**paths) is None


def test_affinity_bounds_the_usable_cpus(tmp_path):
    assert runtime.usable_cpus(environ={}, affinity=3, machine=64, **no_cgroup(tmp_path)) == 3
    real = runtime.usable_cpus()  # this process: at most the machine's CPUs, at least one
    assert 1 <= real <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert real <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value, usable", [("2", 2), ("16", 8), ("x", 8), ("0", 8), ("", 8)])
def test_slurm_cpus_per_task(tmp_path, value, usable):
    limits = runtime.cpu_limits(
        environ={"SLURM_CPUS_PER_TASK": value}, affinity=8, machine=64, **no_cgroup(tmp_path)
    )
    assert limits.usable == usable
    assert "usable CPU" in limits.describe()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"OMP_NUM_THREADS": "3"}, 3),
        ({"OMP_NUM_THREADS": "4,2"}, 4),  # OpenMP's nested list: the outer level
        ({"OMP_NUM_THREADS": "0"}, None),
        ({"OMP_NUM_THREADS": "many"}, None),
        ({"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "5"}, 5),  # torch lets MKL_NUM_THREADS win
    ],
)
def test_explicit_thread_count(env, expected):
    got = runtime.explicit_threads(env)
    assert (got[0] if got else None) == expected


@pytest.fixture
def torch_threads():
    """Put torch's thread count back after the test, whatever it set."""
    before = torch.get_num_threads()
    applied = runtime._applied
    yield before
    torch.set_num_threads(before)
    runtime._applied = applied


def test_configure_lowers_torchs_default_to_the_usable_cpus(tmp_path, torch_threads, monkeypatch):
    default = max(runtime.torch_default_threads())
    if default < 2:
        pytest.skip("needs a machine where torch's default is at least 2 threads")
    torch.set_num_threads(default)  # as torch starts
    monkeypatch.setattr(runtime, "_applied", None)
    plan = runtime.configure_threads(environ={}, affinity=1, **no_cgroup(tmp_path))
    assert plan.threads == torch.get_num_threads() == 1
    assert "usable CPUs" in plan.source
    again = runtime.configure_threads(environ={}, affinity=1, **no_cgroup(tmp_path))  # idempotent
    assert again.threads == 1


def test_configure_never_overrides_an_explicit_omp_num_threads(tmp_path, torch_threads, monkeypatch):
    torch.set_num_threads(max(runtime.torch_default_threads()))
    monkeypatch.setattr(runtime, "_applied", None)
    plan = runtime.configure_threads(environ={"OMP_NUM_THREADS": "7"}, affinity=1, **no_cgroup(tmp_path))
    assert plan.threads == max(runtime.torch_default_threads())  # what torch was given, left alone
    assert plan.source == "OMP_NUM_THREADS=7"


def test_configure_never_overrides_torch_set_num_threads(tmp_path, torch_threads, monkeypatch):
    chosen = max(runtime.torch_default_threads()) + 3  # not a count torch picks by itself
    torch.set_num_threads(chosen)
    monkeypatch.setattr(runtime, "_applied", None)
    plan = runtime.configure_threads(environ={}, affinity=1, **no_cgroup(tmp_path))
    assert plan.threads == torch.get_num_threads() == chosen
    assert "set_num_threads" in plan.source


def test_configure_threads_argument_wins(tmp_path, torch_threads):
    plan = runtime.configure_threads(3, environ={"OMP_NUM_THREADS": "1"}, affinity=1, **no_cgroup(tmp_path))
    assert plan.threads == torch.get_num_threads() == 3
    with pytest.raises(ValueError):
        runtime.configure_threads(0, environ={}, **no_cgroup(tmp_path))


def test_opt_out_changes_nothing(tmp_path, torch_threads):
    env = {runtime.OPT_OUT: "1"}
    torch.set_num_threads(max(runtime.torch_default_threads()))
    plan = runtime.configure_threads(environ=env, affinity=1, **no_cgroup(tmp_path))
    assert torch.get_num_threads() == max(runtime.torch_default_threads())
    assert set(env) == {runtime.OPT_OUT} and plan.threads is None


@pytest.mark.parametrize(
    "machine, affinity, quota, slurm",
    list(itertools.product((2, 8, 64), (1, 2, 8), (None, "150000 100000", "400000 100000"), (None, "3"))),
)
def test_configure_never_oversubscribes(
    tmp_path, torch_threads, monkeypatch, machine, affinity, quota, slurm
):
    """Whatever bounds apply, torch's threads, and with them FFTW's, stay within the usable CPUs
    (unless the user asked for more, tested above)."""
    paths = fake_v2(tmp_path, {"/": quota}) if quota else no_cgroup(tmp_path)
    env = {"SLURM_CPUS_PER_TASK": slurm} if slurm else {}
    monkeypatch.setattr(runtime, "torch_default_threads", lambda: {machine})
    monkeypatch.setattr(runtime, "_applied", None)
    torch.set_num_threads(machine)  # torch's default on that machine: its cores
    plan = runtime.configure_threads(environ=env, affinity=min(affinity, machine), machine=machine, **paths)
    usable = runtime.usable_cpus(environ=env, affinity=min(affinity, machine), machine=machine, **paths)
    assert 1 <= plan.threads == torch.get_num_threads() <= usable


def test_fftw_plans_use_torchs_thread_count(torch_threads):
    fft = pytest.importorskip("ptyrad_core.kernel.fft")
    if not fft.fftw_available():
        pytest.skip("pyFFTW is not installed")
    backend = fft.FFTWBackend()
    x = torch.zeros(4, 16, 16, dtype=torch.complex64)
    for n in (1, 2):
        torch.set_num_threads(n)
        backend.fft_(x)
        assert {key[-1] for key in backend._plans} <= {1, 2} and any(key[-1] == n for key in backend._plans)


def test_wait_policy_set_before_torch_unless_the_user_chose(monkeypatch, tmp_path):
    """Before torch is imported: idle OpenMP threads spin only briefly (WAIT_DEFAULTS), unless the
    user set any of the wait variables, which are then all left as they are."""
    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh CLI process; monkeypatch puts it back
    env: dict[str, str] = {}
    plan = runtime.configure_threads(environ=env, **no_cgroup(tmp_path))
    assert env == runtime.WAIT_DEFAULTS == plan.wait_env and plan.threads is None
    for name, value in [
        ("OMP_WAIT_POLICY", "ACTIVE"),
        ("GOMP_SPINCOUNT", "100000"),
        ("KMP_BLOCKTIME", "200"),
    ]:
        env = {name: value}
        plan = runtime.configure_threads(environ=env, **no_cgroup(tmp_path))
        assert env == {name: value} and plan.wait_env == {}
        assert "set by the user" in plan.wait_note


def test_after_torch_is_imported_the_environment_is_left_alone(tmp_path, torch_threads):
    env: dict[str, str] = {}
    plan = runtime.configure_threads(environ=env, **no_cgroup(tmp_path))
    assert env == {} and plan.wait_env == {}


@pytest.mark.slow  # a fresh interpreter is the point
def test_fresh_process_with_one_cpu_gets_one_thread_and_a_short_spin():
    """End to end in a child process pinned to one CPU: the CLI's order (configure, then torch)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity API on this platform")
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = (
        "import json, os\n"
        "from ptyrad_core.setup import runtime\n"
        "first = runtime.configure_threads()\n"
        "import torch\n"
        "plan = runtime.configure_threads()\n"
        "print(json.dumps({'threads': torch.get_num_threads(), 'wait': os.environ.get('GOMP_SPINCOUNT'),\n"
        "                  'usable': runtime.usable_cpus(), 'note': plan.describe()}))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*runtime.WAIT_VARIABLES, *runtime.THREAD_VARIABLES, runtime.OPT_OUT)
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["usable"] == 1 and out["threads"] == 1, out
    assert out["wait"] == runtime.WAIT_DEFAULTS["GOMP_SPINCOUNT"], out
    assert "set by ptyrad_core" in out["note"]

"""The benchmark harness's own failure modes and its ``--load`` plumbing (issue 15), without
timing anything: ``benchmarks/run.py`` without PtyRAD's venv stops with one line naming the
install script (exit 2, no traceback); the load processes start, are measured and are stopped;
the quiet / loaded record and its table row are computed from the runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
RUN = BENCH / "run.py"


def harness(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert proc.stdout == ""  # nothing ran


@pytest.mark.parametrize("extra", [[], ["--load"], ["--quick", "--load", "--load-kind", "matmul"]])
def test_harness_without_ptyrad_venv_is_one_line_exit_2(tmp_path, extra):
    proc = harness("--ptyrad-python", str(tmp_path / "no-venv" / "bin" / "python"), *extra)
    assert_one_line_error(proc, "scripts/install-ptyrad-reference.sh", "--ptyrad-python")


def test_harness_with_a_python_that_lacks_ptyrad_is_one_line_exit_2():
    if subprocess.run([sys.executable, "-c", "import ptyrad"], capture_output=True).returncode == 0:
        pytest.skip("this interpreter has PtyRAD installed")
    proc = harness("--ptyrad-python", sys.executable, "--cases", "p1-s6-b32")
    assert_one_line_error(proc, "cannot import ptyrad", "scripts/install-ptyrad-reference.sh")


def test_table_only_needs_no_venv(tmp_path):
    proc = harness("--table", "--results", str(tmp_path), "--ptyrad-python", str(tmp_path / "none"))
    assert proc.returncode == 0, proc.stderr
    assert "| case |" in proc.stdout


def test_load_processes_run_inside_the_block_and_are_stopped(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from load import Load, LoadSpec

    with Load(LoadSpec(procs=2, nice=5, kind="spin")) as load:
        pids = [p.pid for p in load.procs]
        assert all(p.poll() is None for p in load.procs)
        time.sleep(0.3)
    assert all(p.poll() is not None for p in load.procs)  # stopped and reaped
    rec = load.record
    assert rec["procs"] == 2 and rec["kind"] == "spin" and rec["nice"] == 5 and rec["wall_s"] > 0
    assert not any(
        Path(f"/proc/{pid}/cmdline").exists() and p.returncode is None for pid, p in zip(pids, load.procs)
    )
    if sys.platform.startswith("linux"):  # CPU time read from /proc before the processes stopped
        assert rec["load_cpus"] is not None and rec["load_cpus"] >= 0
    with pytest.raises(ValueError):
        LoadSpec(kind="sleep")


def fake_summary(ptyrad: float, ours: float) -> dict:
    return {"ptyrad": {"s_per_iter": ptyrad}, "ours": {"s_per_iter": ours}}


def test_quiet_then_loaded_record_and_table(monkeypatch, tmp_path):
    """``--load`` runs each case quiet, then beside the load: the case's result keeps the quiet
    runs (the usual table) and gets a ``load`` entry with both codes' slowdowns."""
    monkeypatch.syspath_prepend(str(BENCH))
    import compare_ptyrad
    import run as harness_run
    from load import LoadSpec

    calls = []

    def fake_run_case(case, args, tmp):
        loaded = tmp.name.startswith("loaded")
        calls.append(tmp.name)
        s = fake_summary(0.5 * (5 if loaded else 1), 0.2 * (2 if loaded else 1))
        return {"summary": s, "runs": {"ptyrad": [{"loaded": loaded}], "ours": [{"loaded": loaded}]}}

    monkeypatch.setattr(compare_ptyrad, "run_case", fake_run_case)
    wrapped = harness_run.with_load(LoadSpec(procs=1, nice=19, kind="spin"))
    res = wrapped(compare_ptyrad.BY_NAME["p1-s6-b32"], None, tmp_path)
    assert calls == ["quiet0", "loaded0"]
    assert res["runs"]["ours"][0]["loaded"] is False and res["load"]["runs"]["ours"][0]["loaded"] is True
    lo = res["load"]
    assert lo["ptyrad"]["slowdown"] == pytest.approx(5) and lo["ours"]["slowdown"] == pytest.approx(2)
    assert lo["ours_over_ptyrad_slowdown"] == pytest.approx(0.4)
    assert lo["spec"]["kind"] == "spin" and lo["spec"]["nice"] == 19
    row = harness_run.load_row("p1-s6-b32", res)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == harness_run.LOAD_HEADER.splitlines()[0].count("|") - 1
    assert cells[0] == "p1-s6-b32" and cells[4] == "5.00" and cells[7] == "2.00" and cells[8] == "0.40"
    assert cells[9] == "0.40 / 0.16"  # ours / PtyRAD: 0.2 / 0.5 quiet, 0.4 / 2.5 loaded
    json.dumps(res)  # what the harness writes to <case>.json


def test_load_cycles_take_the_median_of_paired_slowdowns(monkeypatch, tmp_path):
    """``--load-cycles 3``: quiet and loaded phases alternate three times; each cycle's slowdowns
    are kept and the summary is their median (ours / PtyRAD paired within a cycle), with the range."""
    monkeypatch.syspath_prepend(str(BENCH))
    import compare_ptyrad
    import run as harness_run
    from load import LoadSpec

    # (PtyRAD loaded factor, ours loaded factor) per cycle; quiet times are 0.5 and 0.2 s
    factors = iter([(2.0, 1.0), (2.0, 3.0), (4.0, 2.0)])
    calls, current = [], {}

    def fake_run_case(case, args, tmp):
        calls.append(tmp.name)
        if tmp.name.startswith("quiet"):
            current["f"] = next(factors)
            s = fake_summary(0.5, 0.2)
        else:
            fp, fo = current["f"]
            s = fake_summary(0.5 * fp, 0.2 * fo)
        return {"summary": s, "runs": {"ptyrad": [], "ours": []}}

    monkeypatch.setattr(compare_ptyrad, "run_case", fake_run_case)
    res = harness_run.with_load(LoadSpec(), cycles=3)(compare_ptyrad.BY_NAME["p1-s6-b32"], None, tmp_path)
    assert calls == ["quiet0", "loaded0", "quiet1", "loaded1", "quiet2", "loaded2"]
    lo = res["load"]
    assert [c["ours_over_ptyrad_slowdown"] for c in lo["cycles"]] == pytest.approx([0.5, 1.5, 0.5])
    assert lo["ours_over_ptyrad_slowdown"] == pytest.approx(0.5)  # median of the paired ratios
    assert lo["ours_over_ptyrad_slowdown_range"] == pytest.approx([0.5, 1.5])
    assert lo["ptyrad"]["slowdown"] == pytest.approx(2.0) and lo["ours"]["slowdown"] == pytest.approx(2.0)
    cells = [c.strip() for c in harness_run.load_row("p1-s6-b32", res).strip("|").split("|")]
    assert cells[8] == "0.50"  # the table shows the median, not the first cycle's 0.50 by chance
    assert harness_run.latest_load(lo)["cycles"] == 3
    json.dumps(res)

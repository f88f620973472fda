"""One command for the PtyRAD 1.0 comparison (issue 6), quiet or beside a competing load (issue 15).

    .venv/bin/python benchmarks/run.py --quick      # one case (1 probe mode, 6 slices, batch 32),
                                                    # 1 round: ~1 min
    .venv/bin/python benchmarks/run.py              # every case of compare_ptyrad.py, 2 rounds: ~10 min
    .venv/bin/python benchmarks/run.py --cases p4-s6-b32,p1-s1-b576 [--rounds 3]
    .venv/bin/python benchmarks/run.py --quick --device cuda   # both codes on a GPU: results/<case>-cuda.json
    .venv/bin/python benchmarks/run.py --cases p1-s6-b32,p4-s6-b32,p1-s1-b576 --load [--load-procs 1]
        [--load-nice 10] [--load-kind spin|matmul] [--load-cycles 3]

Needs PtyRAD 1.0 in its own venv: ``scripts/install-ptyrad-reference.sh .venv-ptyrad`` (found at
./.venv-ptyrad or ../.venv-ptyrad; else pass ``--ptyrad-python``); without it the harness stops
at once with a one-line error (exit status 2). Every run writes
``benchmarks/results/<case>.json`` (all raw timings) and ``benchmarks/results/latest.json`` (per
case both times, the ratio, the FFT floor, peak memory and both errors) and prints how each
ratio moved since the previous ``latest.json``. Any other option goes to ``compare_ptyrad.py``.

``--load``: each case runs twice, first quiet (exactly as without ``--load``; its rounds make
the usual table), then with ``benchmarks/load.py``'s competing processes running throughout
both codes' loaded rounds (by default one niced busy-loop process). ``<case>.json`` gets a
``load`` entry (the load, every loaded run, the loaded summary, each code's slowdown loaded /
quiet, and how much CPU the load itself got), ``latest.json`` the same figures per case, and a
second table is printed: quiet and loaded seconds per iteration of both codes, the slowdowns,
ours / PtyRAD's slowdown (at most 1: ours degrades no more than PtyRAD does) and the ratio of
the times (ours / PtyRAD) quiet and loaded. A code that keeps more cores busy when quiet loses
more when a core is taken, so read the slowdowns beside the loaded ratio. The 1-minute
load average before and after each phase is kept too: a "quiet" phase on a busy machine shows.
``--load-cycles N`` repeats the quiet and loaded phases N times in turn and reports the median of
each cycle's slowdowns (with the range of ours / PtyRAD): on a VM the same loaded command varied
more from one run to the next than between the codes, so one pair decides nothing.

``--ours-env NAME=VALUE`` (repeatable) sets a variable for ptyrad_core's processes alone, before
they import torch: e.g. ``--ours-env GOMP_SPINCOUNT=10000`` or ``--ours-env OMP_WAIT_POLICY=ACTIVE``
to time another OpenMP wait policy than ``ptyrad_core.setup.runtime``'s default, or
``--ours-env PTYRAD_CORE_NO_THREAD_CONFIG=1`` for torch's and OpenMP's own defaults. PtyRAD's
processes keep the environment as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_ptyrad  # noqa: E402
from load import KINDS, Load, LoadSpec  # noqa: E402

QUICK = ["--cases", "p1-s6-b32", "--rounds", "1", "--iters", "7", "--warmup", "2"]
INSTALL = "scripts/install-ptyrad-reference.sh"
OURS_ENV = "PTYRAD_CORE_BENCH_ENV"  # NAME=VALUE ... for our driver alone (--ours-env)

LOAD_HEADER = (
    "| case | load | PtyRAD quiet s/iter | PtyRAD loaded s/iter | PtyRAD slowdown | ours quiet s/iter | "
    "ours loaded s/iter | ours slowdown | ours / PtyRAD slowdown | ratio quiet / loaded | "
    "CPUs the load got |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def fail(message: str) -> None:
    """One line on stderr, exit status 2, no traceback."""
    print(f"benchmarks/run.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_ptyrad_python(python: str) -> None:
    """Stop at once, before any case runs, when PtyRAD's interpreter is missing or lacks PtyRAD."""
    how = f"make it with {INSTALL} .venv-ptyrad, or pass --ptyrad-python PATH"
    if not Path(python).is_file():
        fail(
            f"PtyRAD 1.0's venv not found (no {python}; looked in ./.venv-ptyrad and ../.venv-ptyrad): {how}"
        )
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('ptyrad') is None)"
    try:
        ok = subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        fail(f"{python} cannot import ptyrad (PtyRAD 1.0): {how}")


def slowdowns(quiet: dict, loaded: dict) -> dict:
    """Each code's loaded / quiet median time per iteration, and ours / PtyRAD's slowdown."""
    out = {}
    for code in ("ptyrad", "ours"):
        q, l_ = quiet[code]["s_per_iter"], loaded[code]["s_per_iter"]
        out[code] = {"quiet_s_per_iter": q, "loaded_s_per_iter": l_, "slowdown": l_ / q}
    out["ours_over_ptyrad_slowdown"] = out["ours"]["slowdown"] / out["ptyrad"]["slowdown"]
    out["ratio_quiet"] = out["ours"]["quiet_s_per_iter"] / out["ptyrad"]["quiet_s_per_iter"]
    out["ratio_loaded"] = out["ours"]["loaded_s_per_iter"] / out["ptyrad"]["loaded_s_per_iter"]
    return out


def loadavg() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def over_cycles(cycles: list[dict]) -> dict:
    """The slowdowns of several quiet/loaded cycles in one: the median of each figure, and for
    ours / PtyRAD's slowdown also its range. Each cycle pairs a quiet and a loaded phase run minutes
    apart, so the per-cycle ratio is taken first and the median across cycles after (the spread
    between cycles, i.e. where the VM put the load, was larger than the effect measured)."""
    med = statistics.median
    out: dict = {}
    for code in ("ptyrad", "ours"):
        out[code] = {
            k: med(c[code][k] for c in cycles) for k in ("quiet_s_per_iter", "loaded_s_per_iter", "slowdown")
        }
    for k in ("ours_over_ptyrad_slowdown", "ratio_quiet", "ratio_loaded"):
        out[k] = med(c[k] for c in cycles)
    ratios = [c["ours_over_ptyrad_slowdown"] for c in cycles]
    out["ours_over_ptyrad_slowdown_range"] = [min(ratios), max(ratios)]
    return out


def with_load(spec: LoadSpec, cycles: int = 1):
    """``compare_ptyrad.run_case`` run quiet, then again beside the load, ``cycles`` times in turn;
    the loaded runs go under ``load``, with every cycle's figures and their medians."""
    run_case = compare_ptyrad.run_case

    def run_quiet_and_loaded(case, args, tmp: Path) -> dict:
        first, record, done = None, None, []
        for c in range(cycles):
            (tmp / f"quiet{c}").mkdir(exist_ok=True)
            (tmp / f"loaded{c}").mkdir(exist_ok=True)
            before = loadavg()
            if before is not None and before > 0.5:
                print(
                    f"  [{case.name}] warning: load average {before:.2f} before the quiet runs: "
                    "the machine is not quiet",
                    flush=True,
                )
            res = run_case(case, args, tmp / f"quiet{c}")
            first = first or res
            after_quiet = loadavg()
            print(
                f"  [{case.name}] again beside the load ({spec.describe()}), cycle {c + 1}/{cycles}",
                flush=True,
            )
            with Load(spec) as load:
                loaded = run_case(case, args, tmp / f"loaded{c}")
            record = load.record
            s = slowdowns(res["summary"], loaded["summary"])
            done.append(
                {
                    "quiet_summary": res["summary"],
                    "summary": loaded["summary"],
                    "runs": loaded["runs"],
                    "load_cpus": load.record["load_cpus"],
                    "loadavg_1min": {
                        "before_quiet": before,
                        "after_quiet": after_quiet,
                        "after_loaded": loadavg(),
                    },
                    **s,
                }
            )
            print(
                f"  => loaded: PtyRAD {s['ptyrad']['slowdown']:.2f}x slower, "
                f"ours {s['ours']['slowdown']:.2f}x (ours / PtyRAD {s['ours_over_ptyrad_slowdown']:.2f}); "
                "the load got "
                f"{load.record['load_cpus'] or float('nan'):.2f} CPUs",
                flush=True,
            )
        assert first is not None and record is not None
        first["load"] = {
            "spec": record,
            "summary": done[0]["summary"],
            "runs": done[0]["runs"],
            "loadavg_1min": done[0]["loadavg_1min"],
            "cycles": done,
            **over_cycles(done),
        }
        if cycles > 1:
            m = first["load"]
            lo, hi = m["ours_over_ptyrad_slowdown_range"]
            print(
                f"  => median of {cycles} cycles: PtyRAD {m['ptyrad']['slowdown']:.2f}x, ours "
                f"{m['ours']['slowdown']:.2f}x, ours / PtyRAD {m['ours_over_ptyrad_slowdown']:.2f} "
                f"(range {lo:.2f}-{hi:.2f})",
                flush=True,
            )
        return first

    return run_quiet_and_loaded


def load_row(name: str, res: dict) -> str:
    lo = res["load"]
    if "cycles" not in lo:  # an older harness's file: recomputed from its one quiet/loaded pair
        lo = {**lo, **slowdowns(res["summary"], lo["summary"])}
    spec = lo["spec"]
    cpus = f"{spec['load_cpus']:.2f}" if spec.get("load_cpus") is not None else "-"
    p, o = lo["ptyrad"], lo["ours"]
    ratio = f"{lo['ratio_quiet']:.2f} / {lo['ratio_loaded']:.2f}" if "ratio_loaded" in lo else "-"
    return (
        f"| {name} | {spec['procs']} x {spec['kind']}, nice {spec['nice']} | {p['quiet_s_per_iter']:.3f} | "
        f"{p['loaded_s_per_iter']:.3f} | {p['slowdown']:.2f} | {o['quiet_s_per_iter']:.3f} | "
        f"{o['loaded_s_per_iter']:.3f} | "
        f"{o['slowdown']:.2f} | {lo['ours_over_ptyrad_slowdown']:.2f} | {ratio} | {cpus} |"
    )


def latest_load(lo: dict) -> dict:
    return {
        "spec": lo["spec"],
        "ptyrad": lo["ptyrad"],
        "ours": lo["ours"],
        "ours_over_ptyrad_slowdown": lo["ours_over_ptyrad_slowdown"],
        "ours_over_ptyrad_slowdown_range": lo.get("ours_over_ptyrad_slowdown_range"),
        "cycles": len(lo.get("cycles", [])) or 1,
        "ratio_quiet": lo.get("ratio_quiet"),
        "ratio_loaded": lo.get("ratio_loaded"),
        "loadavg_1min": lo.get("loadavg_1min"),
    }


def report_load(peek, wrote: bool) -> None:
    """The load table of the selected cases that have loaded runs; with ``wrote``, their
    figures also go into ``latest.json`` (``compare_ptyrad`` wrote it without them)."""
    results: Path = peek.results
    cases = compare_ptyrad.select(peek.cases)
    rows, entries = [], {}
    for case in cases:
        f = results / compare_ptyrad.result_name(case.name, peek.seed, peek.device)
        if not f.exists():
            continue
        res = json.loads(f.read_text())
        if "load" in res:
            seed = f" (seed {peek.seed})" if peek.seed else ""
            rows.append(load_row(case.name + seed, res))
            lo = res["load"]
            if "cycles" not in lo:
                lo = {**lo, **slowdowns(res["summary"], lo["summary"])}
            entries[case.name] = latest_load(lo)
    if not rows:
        return
    if wrote:
        latest = results / compare_ptyrad.result_name("latest", 0, peek.device)
        if latest.exists():
            data = json.loads(latest.read_text())
            for name, entry in entries.items():
                if name in data.get("cases", {}):
                    data["cases"][name]["load"] = entry
            latest.write_text(json.dumps(data, indent=1))
    print()
    print(LOAD_HEADER)
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--quick" in argv:
        argv.remove("--quick")
        argv = QUICK + argv  # later options win
    own = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    own.add_argument("--load", action="store_true")
    own.add_argument("--load-procs", type=int, default=1)
    own.add_argument("--load-nice", type=int, default=10)
    own.add_argument("--load-kind", choices=KINDS, default="spin")
    own.add_argument("--load-cycles", type=int, default=1)
    own.add_argument("--ours-env", action="append", default=[], metavar="NAME=VALUE")
    opts, rest = own.parse_known_args(argv)
    for item in opts.ours_env:
        if "=" not in item or not item.split("=", 1)[0]:
            fail(f"--ours-env {item!r}: NAME=VALUE")
    if opts.ours_env:  # read by ptyrad_core_driver.py only: PtyRAD runs with the environment as it is
        os.environ[OURS_ENV] = " ".join(opts.ours_env)
    if "-h" in rest or "--help" in rest:
        print(__doc__)
        sys.argv = [sys.argv[0], *rest]
        compare_ptyrad.main()
        return
    peek = argparse.ArgumentParser(
        add_help=False, allow_abbrev=False
    )  # the options of compare_ptyrad this needs
    peek.add_argument("--cases", default="all")
    peek.add_argument("--seed", type=int, default=0)
    peek.add_argument("--device", default="cpu")
    peek.add_argument("--results", type=Path, default=compare_ptyrad.RESULTS)
    peek.add_argument("--table", action="store_true")
    peek.add_argument("--ptyrad-python", default=None)
    seen, _ = peek.parse_known_args(rest)
    if not seen.table:
        check_ptyrad_python(seen.ptyrad_python or compare_ptyrad.default_ptyrad_python())
    if opts.load:
        try:
            spec = LoadSpec(opts.load_procs, opts.load_nice, opts.load_kind)
        except ValueError as exc:
            fail(str(exc))
        if opts.load_cycles < 1:
            fail(f"--load-cycles {opts.load_cycles}: at least 1")
        compare_ptyrad.run_case = with_load(spec, opts.load_cycles)
    sys.argv = [sys.argv[0], *rest]
    compare_ptyrad.main()
    report_load(seen, wrote=opts.load and not seen.table)


if __name__ == "__main__":
    main()

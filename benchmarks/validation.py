"""Held-out validation against ground truth: does the held-out loss find the best state?

    .venv/bin/python benchmarks/validation.py [--iterations 300] [--out output/validation]
        [--only thick,tilt] [--skip-cost] [--skip-fraction] [--skip-tune] [--trials 6]

The conditions are in ``benchmarks/validation_conditions/conditions.yaml``: four scans
simulated with ``ptyrad-core simulate`` (a thick crystal, a tilted crystal, a partially coherent
source, scan-position errors), each at two doses, and the central 12 x 12 positions of the
shipped ``data/sto_small.h5``. Per condition and dose, in one process:

1. **The curves.** One reconstruction of ``--iterations`` iterations with held-out validation
   on (``recon.validation`` at its default fraction) and no early stopping. Every iteration it
   records the training loss, the held-out loss (``history["heldout_loss"]``) and the
   projected-phase error against the ground truth (an ``ptyrad_on_iter_end`` observer:
   occupancy-weighted sum over slices, registered sub-pixel, constant removed, over the box
   of the scanned window centres: :func:`ptyrad_core.apps.metrics.registered_phase_error`).
   From the curves: the iteration of the held-out minimum and of the error minimum; the state
   ``recon.stop`` would keep (``keep: best``, ``--patience`` evaluated iterations without an
   improvement, ``min_delta`` 0), computed from the held-out curve by the rule of the loop, and
   its error against the errors after a fixed 100 and ``--iterations`` iterations and the
   smallest error along the run.
2. **Quality at fraction 0** (``--skip-fraction`` leaves it out): the same run with
   ``recon.validation.fraction: 0`` (every pixel trains); errors after 100 and
   ``--iterations`` iterations and the smallest along the run.
3. **Cost** (``--skip-cost``): on one condition, rounds alternate validation on and off (a fresh
   reconstruction of ``--cost-iterations`` iterations each, observers off); the median time per
   iteration (first dropped) of each, as in ``benchmarks/guards.py``.
4. **Tuning** (``--skip-tune``): per simulated condition at the low dose, ``--trials`` trials
   over the object-phase learning rate, the ``obj_zblur`` standard deviation and the
   ``kz_filter`` beta, drawn at random with a fixed seed (what TPE does for its first 10
   trials), each run once; the trial the held-out loss picks (at its held-out best state)
   against the one the final training loss picks (at its last state): their ground-truth
   errors (:func:`tune_same_trials`).

Everything is written to ``OUT/validation.json``; the figure to ``docs/img/validation.png`` and
the tables are printed as markdown (docs/validation.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from ptyrad_core.plugin import hookimpl

ROOT = Path(__file__).resolve().parents[1]
CONDITIONS = ROOT / "benchmarks" / "validation_conditions"
FIGURE = ROOT / "docs" / "img" / "validation.png"


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


def load_conditions() -> dict:
    import yaml

    return yaml.safe_load((CONDITIONS / "conditions.yaml").read_text())


def add_source_size(path: Path, sigma_A: float) -> None:
    """Replace the patterns of a simulated scan by their incoherent average over a Gaussian
    source of standard deviation ``sigma_A`` (Angstrom): a 3 x 3 Gauss-Hermite rule over probe
    offsets (nodes 0, +-sqrt(3) sigma; weights 2/3, 1/6 per axis), each pattern simulated by
    the same float64 forward engine (:func:`ptyrad_core.apps.simulate.simulate_patterns`); shot
    noise is drawn again from the averaged expectation (seed: the spec's seed + 1)."""
    from ptyrad_core.apps.simulate import simulate_patterns

    with h5py.File(path, "r") as f:
        a = dict(f.attrs)
        phases = f["ground_truth/phase_slices"][()].astype(np.float64)
        probe = f["ground_truth/probe"][()].astype(np.complex128)
        true = f["positions_true_px"][()]
        shape = f["measurements"].shape
    nodes, weights = np.array([-math.sqrt(3.0), 0.0, math.sqrt(3.0)]), np.array([1 / 6, 2 / 3, 1 / 6])
    step = sigma_A / float(a["dx_A"])
    total = np.zeros((len(true), *probe.shape))
    for ny, wy in zip(nodes, weights):
        for nx, wx in zip(nodes, weights):
            total += (
                wy
                * wx
                * simulate_patterns(
                    phases,
                    probe,
                    true + step * np.array([ny, nx]),
                    dx=float(a["dx_A"]),
                    energy_kv=float(a["energy_kV"]),
                    slice_thickness=float(a["slice_thickness_A"]),
                    tilt_mrad=tuple(a["tilt_mrad_yx"]),
                )
            )
    noiseless = float(a["electrons_per_pattern"]) * total
    dose = float(a["dose_e_per_A2"])
    measured = np.random.default_rng(int(a["seed"]) + 1).poisson(noiseless) if dose > 0 else noiseless
    with h5py.File(path, "r+") as f:
        f["measurements"][...] = measured.reshape(shape).astype(np.float32)
        f["measurements_noiseless"][...] = noiseless.reshape(shape).astype(np.float32)
        f.attrs["source_size_sigma_A"] = float(sigma_A)


def make_cases(conds: dict, data_dir: Path, only: set[str] | None) -> list[dict]:
    """Simulate every condition at every dose (kept if already there: the file's spec and
    source size are compared) and list the cases: name, label, data file, settings."""
    from ptyrad_core.apps.simulate import load_spec, simulate

    cases = []
    for name, cond in conds["conditions"].items():
        if only and name not in only:
            continue
        for dose in conds["doses"]:
            spec = load_spec(CONDITIONS / cond["spec"])
            spec.dose_e_per_A2 = float(dose)
            out = data_dir.resolve() / f"{name}_{dose:.0e}.h5"
            sigma = float(cond.get("source_size_A", 0.0))
            fresh = False
            if out.exists():
                with h5py.File(out, "r") as f:
                    fresh = (
                        f.attrs.get("spec") == spec.model_dump_json()
                        and float(f.attrs.get("source_size_sigma_A", 0)) == sigma
                    )
            if not fresh:
                simulate(spec, out)
                if sigma > 0:
                    add_source_size(out, sigma)
            with h5py.File(out, "r") as f:
                n_slow, n_fast = int(f.attrs["N_scan_slow"]), int(f.attrs["N_scan_fast"])
            cases.append(
                {
                    "name": name,
                    "dose": float(dose),
                    "label": f"{name} {dose:.0e}",
                    "path": out,
                    "experiment": conds["common"]["experiment"],
                    "scan": {"n_slow": n_slow, "n_fast": n_fast},
                    "recon": cond["recon"],
                    "update": {**conds["common"]["update"], **cond.get("update", {})},
                }
            )
    shipped = conds.get("shipped")
    if shipped and (not only or "shipped" in only):
        cases.append(
            {
                "name": "shipped",
                "dose": 1e5,
                "label": "shipped 1e+05",
                "path": (CONDITIONS / shipped["data"]).resolve(),
                "experiment": shipped["experiment"],
                "scan": shipped["scan"],
                "indices": shipped.get("indices"),
                "recon": shipped["recon"],
                "update": conds["common"]["update"],
            }
        )
    return cases


# --------------------------------------------------------------------------------------------
# reconstructions
# --------------------------------------------------------------------------------------------


def config(
    case: dict, common: dict, out: Path, iterations: int, fraction: float | None, stop: dict | None = None
) -> dict:
    """The reconstruction config of one case (``fraction`` None: the default validation)."""
    data = str(case["path"])
    rc = case["recon"]
    recon = {**common["recon"], "iterations": iterations}
    if case.get("indices"):
        recon["indices"] = case["indices"]
    if fraction is not None:
        recon["validation"] = {"fraction": fraction}
    if stop is not None:
        recon["stop"] = stop
    return {
        "data": {"path": data, "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": copy.deepcopy(case["experiment"]),
        "scan": {"source": "file", "path": data, "key": "positions_nominal_px", **case["scan"]},
        "model": {
            "probe": {"modes": rc["probe_modes"]},
            "object": {"slices": rc["slices"], "slice_thickness_A": rc["slice_thickness_A"]},
        },
        "update": copy.deepcopy(case["update"]),
        "loss": copy.deepcopy(common["loss"]),
        "constraints": copy.deepcopy(case.get("constraints", [])),
        "recon": recon,
        "output": {"dir": str(out), "figures": False, "log_file": False},
        "plugins": {"disable": ["core.progress", "core.convergence", "core.figures", "core.tiff"]},
    }


class TruthError:
    """``ptyrad_on_iter_end`` observer: the projected-phase error against the ground truth every
    ``every`` iterations (registered sub-pixel, constant removed, over the box of the scanned
    window centres of the positions taking part)."""

    def __init__(self, truth_path: Path, every: int = 1):
        with h5py.File(truth_path, "r") as f:
            self.truth = f["ground_truth/phase_projected"][()].astype(np.float64)
            self.nominal = f["positions_nominal_px"][()]
        self.every = every
        self.errors: dict[int, float] = {}
        self.groups: dict[int, list[float]] = {}  # the held-out loss per group of positions
        self.offset = None

    def error(self, run) -> float:
        from ptyrad_core.apps.metrics import projected_phase, registered_phase_error, scanned_region

        m = run.model
        if self.offset is None:
            # the reconstruction's pixel (y, x) sees the truth's pixel (y, x) - offset
            start = (m.crop.double() + m.frac.double()).cpu().numpy()
            self.offset = np.round(np.mean(start - self.nominal, axis=0)).astype(int)
            used = np.unique(np.concatenate(run.plan.batches(np.random.default_rng(0))))
            self.region = scanned_region(self.nominal[used], m.window)
        proj = projected_phase(m.object_phase.detach().cpu().numpy(), m.occupancy.cpu().numpy())
        oy, ox = self.offset
        on_truth = np.zeros_like(self.truth)
        ys = slice(max(0, -oy), min(self.truth.shape[0], proj.shape[0] - oy))
        xs = slice(max(0, -ox), min(self.truth.shape[1], proj.shape[1] - ox))
        on_truth[ys, xs] = proj[ys.start + oy : ys.stop + oy, xs.start + ox : xs.stop + ox]
        return registered_phase_error(on_truth, self.truth, self.region)[0]

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        # a state's group values are evaluated where it is compared with the minimum: those of
        # an iteration that is not a new minimum (metrics) and those of the minimum compared with
        # (the tracker's), all that a replay at another tolerance needs (the minima are the same)
        if metrics.get("heldout_groups") is not None:
            self.groups[iteration] = [float(v) for v in metrics["heldout_groups"]]
        t = run.tracker
        if t.best_groups is not None:
            self.groups.setdefault(t.best_iteration, [float(v) for v in t.best_groups])
        if iteration % self.every == 0 or iteration == 1:
            self.errors[iteration] = self.error(run)


def reconstruct(
    case: dict,
    common: dict,
    out: Path,
    iterations: int,
    fraction: float | None = None,
    stop: dict | None = None,
    error_every: int | None = 1,
) -> dict:
    """One reconstruction; its curves (loss, held-out loss, error, time per iteration)."""
    from ptyrad_core.engine import builder
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.kernel.config import build_config

    cfg = build_config(config(case, common, out, iterations, fraction, stop))
    pm = builder.plugin_manager(cfg)
    tracker = None
    if error_every:
        tracker = TruthError(case["path"], error_every)
        pm.register(tracker, name="validation-benchmark-truth")
    run = Reconstruction(cfg, pm=pm, quiet=True)
    t0 = time.perf_counter()
    run.run()
    wall = time.perf_counter() - t0
    run.close()
    h = run.history
    its = list(h["iteration"])
    res = {
        "iteration": its,
        "loss": [float(v) for v in h["loss"]],
        "heldout": [float(v) for v in h.get("heldout_loss", [math.nan] * len(its))],
        "time_s": [float(v) for v in h["time_s"]],
        "wall_s": wall,
    }
    if tracker is not None:
        res["error"] = [tracker.errors.get(i, math.nan) for i in its]
        res["groups"] = [tracker.groups.get(i) for i in its]
        res["error_final_state"] = tracker.error(run)  # the state the run ended with (keep: best restores it)
        res["truth_offset_px"] = tracker.offset.tolist()
    with h5py.File(run.result_path, "r") as f:
        res["state_iteration"] = int(f.attrs.get("state_iteration", its[-1]))
        if "validation" in f:
            v = f["validation"].attrs
            res["file_best_iteration"] = int(v.get("best_iteration", -1))
            res["file_stopped_at"] = int(v.get("stopped_at", -1))
    return res


def early_stop(
    heldout: list[float], groups: list | None, patience: int, tolerance: float, min_delta: float = 0.0
) -> tuple[int, int, int]:
    """``recon.stop``'s rule replayed on a recorded held-out curve (index 0 = iteration 1) by the
    loop's own :class:`~ptyrad_core.engine.loop.Tracker`: ``groups`` the per-group values of each
    iteration (``None``: the plain minimum). :return: (iteration it stops at, iteration of the
    state kept, iteration of the held-out minimum)."""
    from ptyrad_core.engine.loop import Tracker

    t = Tracker()
    for i, v in enumerate(heldout, start=1):
        if not math.isfinite(v):
            continue
        g = np.asarray(groups[i - 1]) if groups and groups[i - 1] is not None else None
        t.update(i, v, min_delta, None, g, tolerance)
        if t.since_best >= patience:
            return i, t.kept_iteration, t.best_iteration
    return len(heldout), t.kept_iteration, t.best_iteration


def analyse(res: dict, patience: int, fixed: tuple[int, int], tolerance: float = 0.0) -> dict:
    err = np.array(res["error"])
    held = np.array(res["heldout"])
    its = np.array(res["iteration"])
    out = {
        "heldout_min_iteration": int(its[np.nanargmin(held)]) if np.isfinite(held).any() else None,
        "error_min_iteration": int(its[np.nanargmin(err)]),
        "error_min": float(np.nanmin(err)),
    }
    for n in fixed:
        out[f"error_{n}"] = float(err[min(n, len(err)) - 1])
    # the kept state by the given tolerance, and by the plain minimum (tolerance 0) beside it
    for key, tol in (("", tolerance), ("min_rule_", 0.0)):
        stop_it, kept_it, _ = early_stop(list(held), res.get("groups"), patience, tol)
        _, kept_all, _ = early_stop(list(held), res.get("groups"), len(held) + 1, tol)
        out[key + "stopped_at"] = stop_it
        out[key + "kept_iteration"] = kept_it
        out[key + "error_kept"] = float(err[kept_it - 1]) if kept_it > 0 else math.nan
        out[key + "kept_over_best"] = out[key + "error_kept"] / out["error_min"]
        out[key + "kept_no_patience"] = kept_all  # the state a run without patience keeps
    out["tolerance"] = tolerance
    out["loss_first_last"] = [res["loss"][0], res["loss"][-1]]
    return out


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------


def cost(case: dict, common: dict, tmp: Path, rounds: int, iterations: int) -> dict:
    """Median time per iteration with validation on (default fraction) and off, alternating."""
    times = {"on": [], "off": []}
    for r in range(rounds):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            res = reconstruct(
                case,
                common,
                tmp / f"cost-{mode}{r}",
                iterations,
                None if mode == "on" else 0.0,
                error_every=None,
            )
            times[mode].append(statistics.median(res["time_s"][1:]))
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    return {
        "case": case["label"],
        "rounds": rounds,
        "iterations": iterations,
        "on_s": on,
        "off_s": off,
        "ratio": on / off,
        "on_rounds": times["on"],
        "off_rounds": times["off"],
    }


# --------------------------------------------------------------------------------------------
# tuning
# --------------------------------------------------------------------------------------------

TUNE_PARAMS = {
    "update.object_phase.lr": {"type": "float", "low": 2.0e-4, "high": 5.0e-3, "log": True},
    "constraints.0.options.std": {"type": "float", "low": 0.1, "high": 2.0},
    "constraints.1.options.beta": {"type": "float", "low": 0.02, "high": 1.0, "log": True},
}


def tune_same_trials(
    case: dict, common: dict, out: Path, trials: int, iterations: int, seed: int = 0, tolerance: float = 0.0
) -> dict:
    """Held-out against training-loss tuning on the very same trials: ``trials`` parameter sets
    drawn at random (seeded; log-uniform where :data:`TUNE_PARAMS` says ``log``: what TPE does
    for its first 10 trials, so a ``ptyrad-core tune`` study of up to 10 trials with the same
    seed samples the same way for either objective), each reconstructed once with the default
    validation. The ``heldout`` choice is the trial with the lowest held-out loss, its state the
    one ``keep: best`` keeps (the latest tied with its minimum, ``tolerance``); the ``loss`` choice
    is the trial with the lowest final training loss, its error given at its last state and at its
    held-out best."""
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(trials):
        values = {}
        for path, spec in TUNE_PARAMS.items():
            lo, hi = spec["low"], spec["high"]
            values[path] = float(
                math.exp(rng.uniform(math.log(lo), math.log(hi))) if spec.get("log") else rng.uniform(lo, hi)
            )
        c = copy.deepcopy(case)
        c["update"]["object_phase"]["lr"] = values["update.object_phase.lr"]
        c["constraints"] = [
            {"name": "obj_zblur", "options": {"std": values["constraints.0.options.std"]}},
            {"name": "kz_filter", "options": {"beta": values["constraints.1.options.beta"]}},
        ]
        res = reconstruct(c, common, out / f"trial_{t:02d}", iterations)
        held = np.array(res["heldout"])
        best = int(np.nanargmin(held))
        _, kept, _ = early_stop(list(held), res.get("groups"), len(held) + 1, tolerance)
        rows.append(
            {
                "params": values,
                "heldout_min": float(held[best]),
                "heldout_best_iteration": best + 1,
                "kept_iteration": kept,
                "loss_last": res["loss"][-1],
                "error_kept": res["error"][kept - 1],
                "error_at_heldout_min": res["error"][best],
                "error_last": res["error"][-1],
                "error_min": float(np.nanmin(res["error"])),
            }
        )
    h = min(range(trials), key=lambda i: rows[i]["heldout_min"])
    lo = min(range(trials), key=lambda i: rows[i]["loss_last"])
    return {
        "trials": rows,
        "heldout_choice": h,
        "loss_choice": lo,
        "error_heldout_choice": rows[h]["error_kept"],
        "error_loss_choice_last": rows[lo]["error_last"],
        "error_loss_choice_kept": rows[lo]["error_kept"],
        "error_best_trial": min(r["error_min"] for r in rows),
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(runs)
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, label in zip(axes.ravel(), labels):
        r, a = runs[label]["curves"], runs[label]["summary"]
        its = np.array(r["iteration"])
        loss, held, err = (np.array(r[k]) for k in ("loss", "heldout", "error"))
        ax.plot(its, loss / loss[0], color="C0", lw=1, label="training loss")
        ax.plot(its, held / np.nanmax(held[:1]), color="C1", lw=1, label="held-out loss")
        ax.set_ylabel("loss / first")
        ax.set_xlabel("iteration")
        ax2 = ax.twinx()
        ax2.plot(its, err, color="C3", lw=1.2, label="phase error")
        ax2.set_ylabel("phase error", color="C3")
        ax.axvline(a["kept_iteration"], color="C1", ls="--", lw=0.8)
        ax.axvline(a["error_min_iteration"], color="C3", ls=":", lw=0.8)
        ax.set_title(label, fontsize=9)
        lo = np.nanmin(np.concatenate([loss / loss[0], held / np.nanmax(held[:1])]))
        ax.set_ylim(lo * 0.95, 1.02)
    for ax in axes.ravel()[len(labels) :]:
        ax.axis("off")
    handles = [
        plt.Line2D([], [], color=c, ls=s)
        for c, s in (("C0", "-"), ("C1", "-"), ("C3", "-"), ("C1", "--"), ("C3", ":"))
    ]
    fig.legend(
        handles,
        ["training loss", "held-out loss", "phase error (right axis)", "kept (early stop)", "error minimum"],
        loc="lower center",
        ncol=5,
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def table(runs: dict, fixed: tuple[int, int], patience: int) -> str:
    n1, n2 = fixed
    tol = next(iter(runs.values()))["summary"].get("tolerance", 0.0) if runs else 0.0
    lines = [
        f"| case | held-out min it. | error min it. | stops at (patience {patience}) | kept it. "
        f"| error kept | error min | error {n1} it. | error {n2} it. | kept / min | kept <= {n1} it. "
        f"| minimum rule: kept it. / kept / min / <= {n1} it. |",
        "| --- " * 12 + "|",
    ]
    for label, r in runs.items():
        a = r["summary"]
        m = a.get("min_rule_error_kept", math.nan)
        lines.append(
            f"| {label} | {a['heldout_min_iteration']} | {a['error_min_iteration']} | {a['stopped_at']} | "
            f"{a['kept_iteration']} | {a['error_kept']:.4f} | {a['error_min']:.4f} | "
            f"{a[f'error_{n1}']:.4f} | {a[f'error_{n2}']:.4f} | {a['kept_over_best']:.3f} | "
            f"{'yes' if a['error_kept'] <= a[f'error_{n1}'] else 'no'} | "
            f"{a.get('min_rule_kept_iteration')} / {a.get('min_rule_kept_over_best', math.nan):.3f} / "
            f"{'yes' if m <= a[f'error_{n1}'] else 'no'} |"
        )
    lines.append(f"\n(tolerance {tol:g} standard errors; the minimum rule is tolerance 0)")
    return "\n".join(lines)


def fraction_table(runs: dict, fixed: tuple[int, int]) -> str:
    n1, n2 = fixed
    lines = [
        f"| case | fraction 0: error {n1} it. / {n2} it. / min | default: error {n1} it. / {n2} it. / min |",
        "| --- | --- | --- |",
    ]
    for label, r in runs.items():
        if "fraction0" not in r:
            continue
        z, a = r["fraction0"], r["summary"]
        lines.append(
            f"| {label} | {z[f'error_{n1}']:.4f} / {z[f'error_{n2}']:.4f} / {z['error_min']:.4f} | "
            f"{a[f'error_{n1}']:.4f} / {a[f'error_{n2}']:.4f} / {a['error_min']:.4f} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--patience", type=int, default=20, help="recon.stop.patience assumed for the kept state")
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="recon.stop.tolerance assumed for the kept state (default: the config's default)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "output" / "validation")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated condition names (thick, tilt, coherence, positions, shipped)",
    )
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-fraction", action="store_true")
    p.add_argument("--skip-tune", action="store_true")
    p.add_argument("--cost-rounds", type=int, default=4)
    p.add_argument("--cost-iterations", type=int, default=15)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--tune-iterations", type=int, default=100)
    p.add_argument("--figure", type=Path, default=FIGURE)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    args = p.parse_args(argv)
    if args.tolerance is None:
        from ptyrad_core.kernel.config import StopSpec

        args.tolerance = StopSpec().tolerance

    import torch

    torch.set_num_threads(args.threads)
    conds = load_conditions()
    common = conds["common"]
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    fixed = (100, args.iterations)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    cases = make_cases(conds, args.out / "data", only)
    print(f"{len(cases)} cases simulated in {time.perf_counter() - t_start:.0f} s", flush=True)
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    runs = report["runs"]
    for case in cases:
        t0 = time.perf_counter()
        curves = reconstruct(
            case, common, args.out / "runs" / case["label"].replace(" ", "_"), args.iterations
        )
        runs[case["label"]] = {
            "curves": curves,
            "summary": analyse(curves, args.patience, fixed, args.tolerance),
        }
        a = runs[case["label"]]["summary"]
        print(
            f"{case['label']}: held-out min {a['heldout_min_iteration']}, "
            f"error min {a['error_min_iteration']} "
            f"({a['error_min']:.4f}), kept {a['kept_iteration']} ({a['error_kept']:.4f}), "
            f"{fixed[0]} it. {a[f'error_{fixed[0]}']:.4f}, {fixed[1]} it. {a[f'error_{fixed[1]}']:.4f} "
            f"[{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        if not args.skip_fraction:
            z = reconstruct(
                case,
                common,
                args.out / "runs" / (case["label"].replace(" ", "_") + "-f0"),
                args.iterations,
                0.0,
                error_every=10,
            )
            runs[case["label"]]["fraction0"] = analyse(
                {**z, "heldout": [math.nan] * len(z["iteration"])}, args.patience, fixed
            )
        (args.out / "validation.json").write_text(json.dumps(report, indent=1, default=str))
    if not args.skip_cost and cases:
        report["cost"] = cost(cases[0], common, args.out / "cost", args.cost_rounds, args.cost_iterations)
        c = report["cost"]
        print(
            f"cost ({c['case']}): on {c['on_s'] * 1e3:.1f} ms/it, off {c['off_s'] * 1e3:.1f} ms/it, "
            f"on/off {c['ratio']:.4f}"
        )
    if not args.skip_tune:
        report["tune"] = {}
        for case in cases:
            if case["name"] == "shipped" or case["dose"] != min(conds["doses"]):
                continue
            t0 = time.perf_counter()
            entry = tune_same_trials(
                case,
                common,
                args.out / "tune" / case["name"],
                args.trials,
                args.tune_iterations,
                tolerance=args.tolerance,
            )
            report["tune"][case["label"]] = entry
            print(
                f"tune {case['label']}: held-out choice {entry['error_heldout_choice']:.4f}, "
                f"training-loss choice {entry['error_loss_choice_last']:.4f} (last) / "
                f"{entry['error_loss_choice_kept']:.4f} (kept), "
                f"best trial {entry['error_best_trial']:.4f} [{time.perf_counter() - t0:.0f} s]",
                flush=True,
            )
            (args.out / "validation.json").write_text(json.dumps(report, indent=1, default=str))
    report["total_s"] = time.perf_counter() - t_start
    (args.out / "validation.json").write_text(json.dumps(report, indent=1, default=str))
    plot(runs, args.figure)
    print()
    print(table(runs, fixed, args.patience))
    print()
    print(fraction_table(runs, fixed))
    print(f"\ntotal {report['total_s']:.0f} s; {args.out / 'validation.json'}, {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

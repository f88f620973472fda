"""A readable summary of a result file (``ptyrad-core show RESULT.h5``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console, Group
from rich.table import Table

from ptyrad_core.engine.results import read_result, unexpected_content
from ptyrad_core.kernel.errors import DataError


def _fmt(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}g}"


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", expand=False)
    table.add_column("quantity", style="bold")
    table.add_column("value", overflow="fold")
    return table


def position_statistics(nominal_px: np.ndarray, refined_px: np.ndarray, dx: float) -> dict:
    """Refinement (refined - nominal) statistics in Angstrom: RMS and largest shift, mean (y, x)."""
    shift = (np.asarray(refined_px, float) - np.asarray(nominal_px, float)) * dx
    length = np.sqrt(np.sum(shift**2, axis=1))
    return {
        "n": len(shift),
        "rms_A": float(np.sqrt(np.mean(length**2))) if len(shift) else 0.0,
        "max_A": float(length.max()) if len(shift) else 0.0,
        "mean_yx_A": tuple(float(v) for v in shift.mean(axis=0)) if len(shift) else (0.0, 0.0),
    }


def _components(config: dict) -> list[tuple[str, str]]:
    """(section, names) of the components the run's config selected."""
    rows = []
    data = config.get("data", {})
    rows.append(("loader", str(data.get("loader"))))
    for section, entries in (
        ("preprocess", data.get("preprocess", [])),
        ("loss", config.get("loss", [])),
        ("constraints", config.get("constraints", [])),
        ("forward", config.get("forward", [])),
        ("detector", config.get("detector", [])),
    ):
        if not entries:
            continue
        names = []
        for e in entries:
            name = e.get("name", "?")
            if section == "loss" and e.get("weight", 1.0) != 1.0:
                name += f" (x{e['weight']:g})"
            names.append(name)
        rows.append((section, ", ".join(names)))
    return rows


def summary(result_path) -> Group:
    """A rich renderable (a group of tables) describing a ptyrad_core result file.

    Raises :class:`~ptyrad_core.kernel.errors.DataError` for a missing file or one that is not a result file.
    """
    path = Path(result_path)
    if not path.is_file() and not path.is_dir():
        raise DataError(f"{path}: file does not exist")
    from ptyrad_core.observers.figures import with_validation

    d = read_result(path)
    with unexpected_content(path):
        return _summary(with_validation(d, path), path)


def _heldout_rows(table: Table, d: dict) -> None:
    """The held-out validation rows: final and best held-out loss, the early stop, the state kept.
    Nothing for a file without a held-out loss (validation off, or a file from before it)."""
    from ptyrad_core.observers.figures import heldout_info, kept_label, stop_text

    held = heldout_info(d)
    if held is None:
        return
    best, stopped = held["best_iteration"], held["stopped_at"]
    text = _fmt(held["final"])
    if best is not None and held["best_heldout_loss"] is not None:
        text += f" (best {_fmt(held['best_heldout_loss'])} at iteration {best})"
    if held["fraction"] is not None:
        text += f"; {100 * float(held['fraction']):.3g}% of the pixels held out"
    table.add_row("held-out loss", text)
    if stopped is not None:
        table.add_row("early stop", stop_text(held))
    state = held["state_iteration"]
    if state is not None:
        table.add_row("state in the file", f"iteration {state} ({kept_label(held, state)})")


def _summary(d: dict, path: Path) -> Group:
    a = d["attrs"]
    cfg = a["config"]
    dx = float(a["dx_A"])

    run = _table(f"ptyrad_core result {path}")
    run.add_row("iteration", str(int(a["iteration"])))
    run.add_row("created", str(a.get("created", "?")))
    run.add_row("data file", str(a.get("data_file", "?")))
    run.add_row("data hash", str(a.get("data_sha256", "?")))
    run.add_row("seed", str(a.get("seed", "?")))
    recon = cfg.get("recon", {})
    run.add_row("precision, batch size", f"{recon.get('precision', '?')}, {recon.get('batch_size', '?')}")
    opt = cfg.get("optimizer", {})
    run.add_row(
        "optimizer",
        str(opt.get("name", "?")) + (f" + {opt['scheduler']['name']}" if opt.get("scheduler") else ""),
    )

    loss = _table("loss and time")
    iters = d.get("history/iteration", np.zeros(0))
    total = d.get("history/loss", np.zeros(0))
    if len(total):
        loss.add_row("final loss", f"{_fmt(total[-1])} (first iteration {_fmt(total[0])})")
    terms = sorted(k.removeprefix("history/loss_terms/") for k in d if k.startswith("history/loss_terms/"))
    for term in terms:
        values = d[f"history/loss_terms/{term}"]
        if len(values):
            loss.add_row(f"  {term}", _fmt(values[-1]))
    _heldout_rows(loss, d)
    times = np.asarray(d.get("history/time_s", np.zeros(0)), float)
    if len(times):
        steady = times[1:] if len(times) > 1 else times
        loss.add_row(
            "time / iteration",
            f"{np.median(steady):.4g} s median ({times.sum():.4g} s in {len(iters)} iterations)",
        )

    model = _table("model")
    amp = d["object/amplitude"]
    om, nz, ny, nx = amp.shape
    model.add_row(
        "object", f"{om} mode(s) x {nz} slice(s) x {ny} x {nx} px ({ny * dx:.4g} x {nx * dx:.4g} A)"
    )
    occ = d["object/occupancy"]
    if om > 1:
        model.add_row("object occupancy", ", ".join(f"{v:.4g}" for v in occ))
    phase = d["object/phase"]
    model.add_row(
        "object phase",
        f"{float(phase.min()):.4g} .. {float(phase.max()):.4g} rad; "
        f"amplitude {float(amp.min()):.4g} .. {float(amp.max()):.4g}",
    )
    probe = d["probe/modes"]
    model.add_row("probe", f"{probe.shape[0]} mode(s) of {probe.shape[1]} x {probe.shape[2]} px")
    model.add_row("probe mode powers", ", ".join(f"{100 * p:.3g} %" for p in d["probe/powers"]))
    model.add_row("dx, wavelength", f"{dx:.6g} A, {float(a['wavelength_A']):.6g} A")
    dz = float(d["slice_thickness_A"])
    dz_hist = d.get("history/slice_thickness_A", np.zeros(0))
    dz_text = f"{dz:.6g} A (total {dz * nz:.6g} A)"
    if len(dz_hist) > 1 and not np.isclose(dz_hist[0], dz_hist[-1]):
        dz_text += f"; {dz_hist[0]:.6g} A after iteration {int(iters[0])}"
    model.add_row("slice thickness", dz_text)
    stats = position_statistics(d["positions/nominal_px"], d["positions/refined_px"], dx)
    model.add_row(
        "positions",
        f"{stats['n']}, refinement RMS {stats['rms_A']:.4g} A, max {stats['max_A']:.4g} A, "
        f"mean (y, x) ({stats['mean_yx_A'][0]:+.4g}, {stats['mean_yx_A'][1]:+.4g}) A",
    )
    tilts = np.asarray(d["tilts_mrad"], float)
    if tilts.shape[0] == 1:
        model.add_row("tilt (y, x)", f"({tilts[0, 0]:+.4g}, {tilts[0, 1]:+.4g}) mrad, global")
    else:
        m, s = tilts.mean(axis=0), tilts.std(axis=0)
        model.add_row(
            "tilt (y, x)",
            f"mean ({m[0]:+.4g}, {m[1]:+.4g}) mrad, std ({s[0]:.4g}, {s[1]:.4g}) mrad, {len(tilts)} local",
        )

    software = _table("software and plugins")
    for name, version in a.get("versions", {}).items():
        software.add_row(name, str(version))
    for section, names in _components(cfg):
        software.add_row(f"uses {section}", names)
    plugins = a.get("plugins", [])
    by_source: dict[str, int] = {}
    for p in plugins:
        by_source[p.get("source", "?")] = by_source.get(p.get("source", "?"), 0) + 1
    software.add_row("plugins loaded", ", ".join(f"{n} {src}" for src, n in by_source.items()))
    for p in plugins:
        if p.get("source") not in ("core", "built-in"):
            dist = (
                f"{p.get('distribution')} {p.get('version')}"
                if p.get("distribution")
                else (p.get("version") or "-")
            )
            software.add_row(f"  {p.get('name')}", f"{p.get('source')} ({dist})")
    return Group(run, loss, model, software)


def truth_error(result_path, truth_path) -> tuple[float, tuple[float, float]]:
    """Projected-phase error of a result against a ground truth (a dataset with ``/ground_truth``
    or another result), after removing the constant offset and a sub-pixel registration, over the
    result's scanned region. Both must share the pixel size."""
    from ptyrad_core.apps.metrics import load_projected_phase, registered_phase_error
    from ptyrad_core.kernel.errors import DataError

    recon, truth = load_projected_phase(result_path), load_projected_phase(truth_path)
    if recon["dx_A"] and truth["dx_A"] and abs(recon["dx_A"] / truth["dx_A"] - 1) > 1e-4:
        raise DataError(
            f"--truth: {truth_path} has dx = {truth['dx_A']:.6g} A, the result {recon['dx_A']:.6g} A"
        )
    ny = min(recon["image"].shape[0], truth["image"].shape[0])
    nx = min(recon["image"].shape[1], truth["image"].shape[1])
    region = tuple(slice(s.start, min(s.stop, n)) for s, n in zip(recon["region"], (ny, nx)))
    return registered_phase_error(recon["image"][:ny, :nx], truth["image"][:ny, :nx], region)


def show_command(path, console: Console | None = None, truth=None) -> Group:
    """``ptyrad-core show RESULT.h5 [--truth DATA.h5]``: print :func:`summary` (and the error
    against a truth)."""
    renderable = summary(path)
    console = console or Console()
    console.print(renderable)
    if truth is not None:
        with unexpected_content(f"{path} or {truth}"):
            error, (dy, dx) = truth_error(path, truth)
        console.print(
            f"projected-phase error against {truth}: {error:.4f} "
            f"(offset removed, registered by ({dy:+.2f}, {dx:+.2f}) px)"
        )
    return renderable

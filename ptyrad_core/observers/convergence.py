"""Convergence monitor: how much the reconstruction still changes between snapshots.

A lifecycle observer after PtyRAD's ``ConvergenceMonitor`` (ptyrad.runtime.convergence). It
keeps a snapshot of the model at the start of a run and, every ``every`` iterations, compares
the current model with the previous snapshot:

============== ================================================================================
key            meaning
============== ================================================================================
obja_bg        mean ``|change|`` of ``1 - amplitude`` over the pixels of the scanned region whose
               current ``1 - amplitude`` lies below the ``percentiles[0]`` percentile (vacuum-like
               background)
obja_fg        the same over the pixels above the ``percentiles[1]`` percentile (the atoms)
objp_bg        mean ``|change|`` of the phase (radians) over the background pixels of the phase
objp_fg        the same over the foreground (highest-phase) pixels
probe          ``sum |I - I_prev| / sum I_prev`` of the mode-summed probe intensity
positions_A    RMS change of the refined positions, ``sqrt(mean_j |p_j - p_j,prev|^2)``, Angstrom
tilts_mrad     RMS change of the tilts, mrad
============== ================================================================================

The scanned region is the box of the nominal window centres (as PtyRAD's, one pixel larger at
the top and left), fixed at the start of the run; amplitude and phase percentiles are taken over
every mode and slice of the current snapshot. The history (one entry per monitored iteration) is
kept in :attr:`ConvergenceMonitor.history` and written to ``convergence.json`` in the run's
output folder at every save (atomically). A resumed run continues the history in that file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ptyrad_core.kernel.hookspecs import hookimpl

#: the name this observer is registered under (and disabled by)
PLUGIN_NAME = "core.convergence"
FILE_NAME = "convergence.json"
FORMAT = "ptyrad_core-convergence"

METRICS = {
    "obja_bg": (
        "mean |change| of 1 - amplitude over background pixels (below the low percentile) "
        "of the scanned region"
    ),
    "obja_fg": (
        "mean |change| of 1 - amplitude over foreground pixels (above the high percentile) "
        "of the scanned region"
    ),
    "objp_bg": (
        "mean |change| of the phase (rad) over background pixels (below the low percentile) "
        "of the scanned region"
    ),
    "objp_fg": (
        "mean |change| of the phase (rad) over foreground pixels (above the high percentile) "
        "of the scanned region"
    ),
    "probe": "sum |I - I_prev| / sum I_prev of the mode-summed probe intensity",
    "positions_A": "RMS change of the refined scan positions, Angstrom",
    "tilts_mrad": "RMS change of the tilts, mrad",
}


def bg_fg_change(
    current: np.ndarray, previous: np.ndarray, percentiles: tuple[float, float]
) -> tuple[float, float]:
    """Mean absolute change over the pixels of ``current`` below / above the two percentiles."""
    flat = current.ravel()
    lo, hi = np.percentile(flat, percentiles)
    diff = np.abs(current - previous).ravel()
    bg, fg = flat < lo, flat > hi
    return (float(diff[bg].mean()) if bg.any() else 0.0, float(diff[fg].mean()) if fg.any() else 0.0)


class ConvergenceMonitor:
    """Lifecycle observer: per-iteration changes of object, probe, positions and tilts.

    :param every: monitor every ``every``-th iteration (each monitored iteration is compared
        with the previous monitored one, or the start of the run).
    :param percentiles: (low, high) percentiles separating background and foreground pixels.
    :ivar history: ``{"iteration": [...], "obja_bg": [...], ...}``, one value per monitored
        iteration.
    """

    def __init__(self, every: int = 1, percentiles: tuple[float, float] = (15.0, 85.0)):
        if every < 1:
            raise ValueError(f"ConvergenceMonitor: every must be >= 1, got {every}")
        if not 0 <= percentiles[0] <= percentiles[1] <= 100:
            raise ValueError(
                f"ConvergenceMonitor: percentiles must be 0 <= low <= high <= 100, got {percentiles}"
            )
        self.every = int(every)
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.history: dict[str, list] = self._empty()
        self.roi: tuple[slice, slice] | None = None
        self.dx: float | None = None
        self._prev: dict[str, np.ndarray] | None = None
        self._run = None

    @staticmethod
    def _empty() -> dict[str, list]:
        return {"iteration": [], **{k: [] for k in METRICS}}

    # -- snapshots ---------------------------------------------------------------------------

    def _region(self, model) -> tuple[slice, slice]:
        nominal = (model.crop.to(model.frac.dtype) + model.frac).detach().cpu().numpy()
        centres = np.floor(nominal) + np.asarray(model.window) // 2
        (y0, x0), (y1, x1) = centres.min(0).astype(int).tolist(), centres.max(0).astype(int).tolist()
        return slice(max(y0 - 1, 0), y1 + 1), slice(max(x0 - 1, 0), x1 + 1)

    def _snapshot(self, model) -> dict[str, np.ndarray]:
        import torch

        ry, rx = self.roi
        with torch.no_grad():
            amp = model.object_amplitude.detach()[..., ry, rx]
            phase = model.object_phase.detach()[..., ry, rx]
            probe = model.probe.detach()
            snap = {
                "obja": (1.0 - amp).float(),
                "objp": phase.float(),
                "probe": probe.abs().square().sum(0).double(),
                "positions": model.refined_positions().detach().double(),
                "tilts": model.tilts.detach().double(),
            }
        # copies: a CPU tensor's numpy() shares memory with the parameter, which the optimizer updates
        # in place
        return {k: np.array(v.cpu().numpy(), copy=True) for k, v in snap.items()}

    def measure(self, model, iteration: int) -> dict[str, float]:
        """Compare the model with the previous snapshot, record the values, take a new snapshot."""
        current = self._snapshot(model)
        prev = self._prev
        values: dict[str, float] = {}
        values["obja_bg"], values["obja_fg"] = bg_fg_change(current["obja"], prev["obja"], self.percentiles)
        values["objp_bg"], values["objp_fg"] = bg_fg_change(current["objp"], prev["objp"], self.percentiles)
        values["probe"] = float(
            np.abs(current["probe"] - prev["probe"]).sum() / (prev["probe"].sum() + 1e-30)
        )
        d = current["positions"] - prev["positions"]
        values["positions_A"] = float(np.sqrt(np.mean(np.sum(d * d, axis=-1))) * self.dx)
        t = current["tilts"] - prev["tilts"]
        values["tilts_mrad"] = float(np.sqrt(np.mean(np.sum(t * t, axis=-1))))
        self.history["iteration"].append(int(iteration))
        for key, value in values.items():
            self.history[key].append(value)
        self._prev = current
        return values

    # -- the file ----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        roi = (
            None
            if self.roi is None
            else [[self.roi[0].start, self.roi[0].stop], [self.roi[1].start, self.roi[1].stop]]
        )
        return {
            "format": FORMAT,
            "format_version": 1,
            "every": self.every,
            "percentiles": list(self.percentiles),
            "roi_px": roi,
            "dx_A": self.dx,
            "metrics": METRICS,
            "history": self.history,
        }

    def write(self, folder: Path) -> Path:
        """Write ``convergence.json`` into ``folder`` atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE_NAME
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=1))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    def _trim(self, last_iteration: int) -> None:
        keep = [i for i, it in enumerate(self.history["iteration"]) if it <= last_iteration]
        self.history = {k: [v[i] for i in keep] for k, v in self.history.items()}

    # -- hooks -------------------------------------------------------------------------------

    @hookimpl
    def ptyrad_output_files(self, run):
        return [(Path(run.output_dir) / FILE_NAME, "ptyrad_core convergence record", is_convergence_record)]

    @hookimpl
    def ptyrad_on_run_start(self, run):
        if run is not self._run:
            self.history = self._empty()
            path = Path(run.output_dir) / FILE_NAME
            if run.iteration > 0 and path.is_file():  # resumed: continue the file's history
                try:
                    saved = json.loads(path.read_text())
                    if saved.get("format") == FORMAT:
                        self.history.update(
                            {k: list(v) for k, v in saved["history"].items() if k in self.history}
                        )
                except (OSError, ValueError, KeyError, TypeError):
                    self.history = self._empty()
        self._run = run
        self._trim(run.iteration)
        model = run.model
        self.dx = float(model.dx)
        self.roi = self._region(model)
        self._prev = self._snapshot(model)

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        if self._prev is None or run is not self._run:  # started without on_run_start
            self.ptyrad_on_run_start(run)
            return
        if iteration % self.every == 0:
            self.measure(run.model, iteration)

    @hookimpl
    def ptyrad_on_save(self, run, path, iteration):
        if run is not self._run:
            return
        self._trim(iteration)  # an interrupted iteration was undone before the save
        self.write(Path(run.output_dir))


def is_convergence_record(path: Path) -> bool:
    """Whether ``path`` is a ``convergence.json`` this observer wrote (its ``format`` key)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def make_plugin() -> ConvergenceMonitor:
    """A fresh monitor for one plugin manager (it keeps the run's snapshots and history)."""
    return ConvergenceMonitor()

"""A result file as a typed Python object, for notebooks and scripts: :func:`load_result`.

    >>> import ptyrad_core
    >>> r = ptyrad_core.load_result("output/demo/result.h5")
    >>> r.object_phase.shape            # (omode, Nz, NY, NX)
    >>> r.loss_terms                    # {term name: (n,) weighted loss per iteration}
    >>> r.heldout_loss, r.best_iteration  # held-out loss per iteration, its best iteration
    >>> fig = r.plot_phase()            # a matplotlib Figure; shown inline in Jupyter

Built on :func:`ptyrad_core.engine.results.read_result` (the reader),
:mod:`ptyrad_core.observers.figures` (the same figures a run draws) and
:func:`ptyrad_core.apps.show.summary` (the ``ptyrad-core show`` text).
The arrays are those of the file; docs/results.md describes each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptyrad_core.kernel.errors import DataError

_ARRAY = dict(repr=False)


@dataclass
class Result:
    """Everything a ``result.h5`` holds. Shapes: ``omode`` object modes, ``Nz`` slices,
    ``(NY, NX)`` object pixels, ``pmode`` probe modes of ``(Ny, Nx)`` pixels, ``N`` positions,
    ``n`` iterations recorded."""

    path: Path
    #: the iteration the file holds
    iteration: int
    #: real-space pixel size and electron wavelength, Angstrom
    dx_A: float
    wavelength_A: float
    #: (omode, Nz, NY, NX) transmission amplitude, per mode and slice
    object_amplitude: np.ndarray = field(**_ARRAY)
    #: (omode, Nz, NY, NX) transmission phase, radians
    object_phase: np.ndarray = field(**_ARRAY)
    #: (omode,) object-mode weights (sum 1)
    occupancy: np.ndarray = field(**_ARRAY)
    #: (pmode, Ny, Nx) complex probe modes in real space, centred in the window
    probe: np.ndarray = field(**_ARRAY)
    #: (pmode,) fraction of the probe intensity per mode
    probe_powers: np.ndarray = field(**_ARRAY)
    #: (N, 2) nominal and refined window corners (y, x), object pixels
    positions_nominal_px: np.ndarray = field(**_ARRAY)
    positions_refined_px: np.ndarray = field(**_ARRAY)
    #: (1 or N, 2) tilts (t_y, t_x), mrad
    tilts_mrad: np.ndarray = field(**_ARRAY)
    slice_thickness_A: float = 0.0
    #: (n,) iteration numbers of the history below
    history_iteration: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), **_ARRAY)
    #: (n,) total loss per iteration (mean over batches)
    loss: np.ndarray = field(default_factory=lambda: np.zeros(0), **_ARRAY)
    #: {term name: (n,)} each weighted loss term per iteration
    loss_terms: dict[str, np.ndarray] = field(default_factory=dict, **_ARRAY)
    #: (n,) wall time per iteration, seconds
    time_s: np.ndarray = field(default_factory=lambda: np.zeros(0), **_ARRAY)
    #: (n,) slice thickness after each iteration, Angstrom
    slice_thickness_history_A: np.ndarray = field(default_factory=lambda: np.zeros(0), **_ARRAY)
    #: (n,) held-out loss per iteration (the same weighted loss stack on the detector pixels the
    #: optimizer never saw; NaN on iterations it was not evaluated on); (0,) for a file without
    #: held-out validation
    heldout_loss: np.ndarray = field(default_factory=lambda: np.zeros(0), **_ARRAY)
    #: the iteration with the lowest held-out loss (as the run's early stopping counted it), its
    #: held-out loss, and the iteration an early stop ended the run at; ``None`` when there is none
    best_iteration: int | None = None
    best_heldout_loss: float | None = None
    stopped_at: int | None = None
    #: the iteration whose state the file's arrays hold: the best held-out iteration with
    #: ``recon.stop.keep: best``, else the last (= ``iteration``)
    state_iteration: int | None = None
    #: the attributes of the file's ``validation`` group (fraction, seed, every, keep, ...); ``{}`` without
    validation: dict[str, Any] = field(default_factory=dict, **_ARRAY)
    #: the resolved config of the run (every default filled in)
    config: dict = field(default_factory=dict, **_ARRAY)
    #: the plugins loaded (name, source, distribution, version)
    plugins: list[dict] = field(default_factory=list, **_ARRAY)
    #: software versions
    versions: dict = field(default_factory=dict, **_ARRAY)
    #: every root attribute of the file (created, seed, data_file, data_sha256, ...)
    attrs: dict[str, Any] = field(default_factory=dict, **_ARRAY)
    #: the dict of :func:`~ptyrad_core.engine.results.read_result` the fields come from
    raw: dict[str, Any] = field(default_factory=dict, **_ARRAY)

    # -- derived ----------------------------------------------------------------------------

    @property
    def object(self) -> np.ndarray:
        """Complex transmission ``amplitude * exp(i phase)``, (omode, Nz, NY, NX)."""
        return self.object_amplitude * np.exp(1j * self.object_phase)

    @property
    def projected_phase(self) -> np.ndarray:
        """(NY, NX) phase summed over slices, occupancy-weighted mean over object modes."""
        from ptyrad_core.apps.metrics import projected_phase

        return projected_phase(self.object_phase, self.occupancy)

    @property
    def scanned_region(self) -> tuple[slice, slice]:
        """The object pixels the scan illuminated (as the figures crop them): ``phase[..., ys, xs]``."""
        return self._ctx().region

    @property
    def position_shifts_A(self) -> np.ndarray:
        """(N, 2) refined - nominal positions, Angstrom."""
        return (self.positions_refined_px - self.positions_nominal_px) * self.dx_A

    def summary(self):
        """The ``ptyrad-core show`` tables (a rich renderable; ``rich.print(r.summary())``)."""
        from ptyrad_core.apps.show import summary

        return summary(self.path)

    def __repr__(self) -> str:
        om, nz, ny, nx = self.object_phase.shape
        final = f", final loss {self.loss[-1]:.6g}" if len(self.loss) else ""
        if self.best_iteration is not None and self.best_heldout_loss is not None:
            final += f", best held-out loss {self.best_heldout_loss:.6g} at iteration {self.best_iteration}"
        return (
            f"Result({str(self.path)!r}, iteration {self.iteration}{final}: object {om} mode(s) x {nz} "
            f"slice(s) x {ny} x {nx} px, probe {self.probe.shape[0]} mode(s) of {self.probe.shape[1]} x "
            f"{self.probe.shape[2]} px, "
            f"{len(self.positions_nominal_px)} positions, dx {self.dx_A:.5g} A)"
        )

    # -- figures ----------------------------------------------------------------------------

    def _ctx(self):
        from ptyrad_core.observers.figures import _Ctx

        return _Ctx(self.raw)

    def plot_phase(self, slice: int | None = None, mode: int | None = None, full: bool = False):
        """The object phase as a matplotlib Figure.

        :param slice: one slice; ``None`` sums over slices (the projected phase).
        :param mode: one object mode; ``None`` is the occupancy-weighted mean over modes.
        :param full: the whole object instead of the scanned region. With neither ``slice`` nor
            ``mode`` nor ``full``, it is the run's own ``object_phase_sum.png`` (full field and
            scanned region side by side).
        """
        from ptyrad_core.observers import figures

        ctx = self._ctx()
        if slice is None and mode is None and not full:
            return figures.fig_object_phase_sum(ctx)
        return self._single(ctx, self.object_phase, slice, mode, full, "Object phase", "phase (rad)", np.sum)

    def plot_amplitude(self, slice: int | None = None, mode: int | None = None, full: bool = False):
        """The object amplitude as a Figure: one slice, or the product over slices (the
        transmission of the stack)."""
        return self._single(
            self._ctx(), self.object_amplitude, slice, mode, full, "Object amplitude", "amplitude", np.prod
        )

    def plot_slices(self, part: str = "phase"):
        """Every slice side by side (``part`` 'phase' or 'amplitude'), scanned region: the run's
        ``object_*_slices.png``."""
        from ptyrad_core.observers import figures

        draw = {"phase": figures.fig_object_phase_slices, "amplitude": figures.fig_object_amplitude_slices}
        if part not in draw:
            raise ValueError(f"part must be 'phase' or 'amplitude', got {part!r}")
        return draw[part](self._ctx())

    def plot_probe(self):
        """Probe modes, real-space and Fourier-space amplitude with their powers: the run's
        ``probe_modes.png``."""
        from ptyrad_core.observers.figures import fig_probe_modes

        return fig_probe_modes(self._ctx())

    def plot_loss(self):
        """Total loss and every term per iteration and, for a run with held-out validation, the
        training and held-out loss beside it with the best held-out iteration and an early stop
        marked: the run's ``loss.png``."""
        from ptyrad_core.observers.figures import fig_loss

        return fig_loss(self._ctx())

    def plot_positions(self):
        """Nominal positions and refined shifts: the run's ``positions.png``."""
        from ptyrad_core.observers.figures import fig_positions

        return fig_positions(self._ctx())

    def plot_tilts(self):
        """Beam tilts: the run's ``tilts.png``."""
        from ptyrad_core.observers.figures import fig_tilts

        return fig_tilts(self._ctx())

    def save_figures(self, folder) -> list[Path]:
        """Write every figure of a run (PNG) into ``folder``; return the paths."""
        from ptyrad_core.observers.figures import draw_figures

        return draw_figures(self.raw, Path(folder))

    def _single(self, ctx, stack, slice, mode, full, what, unit, combine):
        from matplotlib.figure import Figure

        from ptyrad_core.observers.figures import _image, _mode_mean, _weights

        omode, nz = stack.shape[:2]
        if mode is not None and not -omode <= mode < omode:
            raise IndexError(f"mode {mode} out of range: the object has {omode} mode(s)")
        if slice is not None and not -nz <= slice < nz:
            raise IndexError(f"slice {slice} out of range: the object has {nz} slice(s)")
        modes = stack[mode][None] if mode is not None else stack
        img = modes[:, slice] if slice is not None else combine(modes, axis=1, dtype=np.float64)
        img = (
            img[0] if mode is not None else _mode_mean(np.asarray(img, np.float32), _weights(self.raw, omode))
        )
        region = (np.s_[0 : ctx.NY], np.s_[0 : ctx.NX]) if full else ctx.region
        ys, xs = region
        which = (
            f"slice {slice % nz}"
            if slice is not None
            else ("sum over" if combine is np.sum else "product over") + f" {nz} slices"
        )
        modes_text = f"mode {mode % omode}" if mode is not None else f"mean over {omode} mode(s)"
        fig = Figure(figsize=(6, 5), layout="constrained")
        ax = fig.subplots()
        _image(
            fig,
            ax,
            img[ys, xs],
            ctx,
            region,
            f"{what}, {which}, {modes_text}\n({'full field' if full else 'scanned region'})",
            unit,
        )
        return fig


def load_result(path) -> Result:
    """Read a ptyrad_core ``result.h5`` into a :class:`Result`.

    :raises DataError: the file does not exist or is not a ptyrad_core result file.
    """
    from ptyrad_core.engine.results import read_result

    path = Path(path)
    if path.is_dir() and (path / "result.h5").is_file():
        path = path / "result.h5"
    if not path.is_file():
        raise DataError(f"{path}: result file does not exist")
    from ptyrad_core.observers.figures import heldout_info, with_validation

    try:
        d = with_validation(read_result(path), path)
    except (ValueError, OSError, KeyError) as exc:
        raise DataError(f"{path}: cannot read it as a ptyrad_core result file ({exc})") from None
    held = heldout_info(d) or {}
    a = d["attrs"]
    phase = np.asarray(d["object/phase"])
    probe = np.asarray(d["probe/modes"])
    powers = d.get("probe/powers")
    if powers is None:
        p = np.sum(np.abs(probe) ** 2, axis=(1, 2))
        powers = p / p.sum()
    nominal = np.asarray(d["positions/nominal_px"], np.float64)
    return Result(
        path=path,
        iteration=int(a.get("iteration", 0)),
        dx_A=float(a["dx_A"]),
        wavelength_A=float(a.get("wavelength_A", float("nan"))),
        object_amplitude=np.asarray(d["object/amplitude"]),
        object_phase=phase,
        occupancy=np.asarray(d.get("object/occupancy", np.full(phase.shape[0], 1.0 / phase.shape[0]))),
        probe=probe,
        probe_powers=np.asarray(powers),
        positions_nominal_px=nominal,
        positions_refined_px=np.asarray(d.get("positions/refined_px", nominal), np.float64),
        tilts_mrad=np.asarray(d.get("tilts_mrad", np.zeros((1, 2))), np.float64),
        slice_thickness_A=float(d.get("slice_thickness_A", float("nan"))),
        history_iteration=np.asarray(d.get("history/iteration", np.zeros(0, np.int64))),
        loss=np.asarray(d.get("history/loss", np.zeros(0))),
        loss_terms={
            k.removeprefix("history/loss_terms/"): np.asarray(v)
            for k, v in d.items()
            if k.startswith("history/loss_terms/")
        },
        time_s=np.asarray(d.get("history/time_s", np.zeros(0))),
        slice_thickness_history_A=np.asarray(d.get("history/slice_thickness_A", np.zeros(0))),
        heldout_loss=held["heldout"] if held else np.zeros(0),
        best_iteration=held.get("best_iteration"),
        best_heldout_loss=held.get("best_heldout_loss"),
        stopped_at=held.get("stopped_at"),
        state_iteration=int(a.get("state_iteration", a.get("iteration", 0))),
        validation=dict(a.get("validation") or {}),
        config=a.get("config") or {},
        plugins=a.get("plugins") or [],
        versions=a.get("versions") or {},
        attrs=a,
        raw=d,
    )

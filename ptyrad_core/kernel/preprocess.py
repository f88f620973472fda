"""Preprocessing of the measurements: a chain of named steps (plugin family ``preprocess``).

The config's ``data.preprocess`` list runs in order on the loaded
:class:`~ptyrad_core.kernel.data.Measurements`, before calibration and model building. A step is a
:class:`Preprocessor` subclass with a nested pydantic ``Options`` model, constructed as
``cls(options)``, whose :meth:`~Preprocessor.transform` changes the measurements in place through
their API (``map`` for per-pattern transforms, ``select`` for scan selections, ``set_array`` for
whole-array layout changes, ``mean_pattern`` / ``minimum`` / ... for statistics). Written that
way a step works on data in memory and on data streamed from disk alike; a step that needs the
whole array calls ``measurements.require_memory(name)``.

The kernel tracks, through the chain:

- the scan shape ``(n_slow, n_fast)`` (from the config, or from 4-D data), which a step may
  change (a scan crop);
- which raw scan positions survive (``Measurements.selection``), so that positions and tilts
  read from files are selected alike;
- the detector pixel ``dk``: the calibration in ``experiment`` describes the patterns after the
  *layout* steps (``layout = True``: permute, reshape, which only rearrange axes); later steps
  that change the sampling say so in :meth:`Preprocessor.sampling`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptyrad_core.kernel.components import Preprocessor, transform
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import DataError, OutputError


@dataclass
class PreprocessContext:
    """What a step may need besides the measurements.

    :ivar scan_shape: ``(n_slow, n_fast)`` of the measurements as they stand now.
    :ivar scan_step_A: the raster step in Angstrom (``scan.step_A``), if the config gives one.
    :ivar seed: the run's random seed (``recon.seed``), for steps that add noise.
    :ivar base_dir: the config file's folder, for relative output paths.
    :ivar data_path: the measurement file.
    :ivar inputs: every file the run reads (:func:`ptyrad_core.setup.readonly.config_inputs`): a step
        that writes a file must never write to one of them.
    :ivar dry_run: ``validate``: steps that write files only check and report what they would write.
    :ivar overwrite: ``--overwrite``: a step may replace an existing file that is not its own
        previous output (never an input).
    """

    scan_shape: tuple[int, int] | None
    scan_step_A: float | None = None
    seed: int = 0
    base_dir: Path = Path(".")
    data_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    inputs: tuple[Path, ...] = ()
    dry_run: bool = False
    overwrite: bool = False

    def input_paths(self) -> tuple[Path, ...]:
        """``inputs`` and the measurement file."""
        return tuple(self.inputs) + ((Path(self.data_path),) if self.data_path is not None else ())

    def rng(self, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])


@dataclass
class PreprocessResult:
    """What the chain did, for calibration and for selecting positions and tilts.

    :ivar calibration_shape: pattern shape the ``experiment`` calibration refers to.
    :ivar calibration_mean: the mean pattern at that point (for fitting the bright-field disk).
    :ivar dk_factor: final dk = calibrated dk * ``dk_factor``.
    :ivar selection: indices of the raw scan positions kept, in order (``None``: all).
    :ivar scan_shape: final ``(n_slow, n_fast)``.
    """

    calibration_shape: tuple[int, int]
    calibration_mean: np.ndarray | None
    dk_factor: float
    selection: np.ndarray | None
    scan_shape: tuple[int, int] | None


def run_pipeline(meas: Measurements, steps: list[tuple[str, Preprocessor]], context: PreprocessContext,
                 need_mean: bool = False) -> PreprocessResult:
    """Apply ``steps`` (``(label, step)`` pairs, label = YAML path for errors) in order."""
    calibration: tuple[tuple[int, int], np.ndarray | None] | None = None
    dk_factor = 1.0
    for label, step in steps:
        if not step.layout and calibration is None:
            calibration = _calibration_point(meas, context, need_mean)
        if step.layout and calibration is not None:
            raise DataError(f"{label}: layout steps (permute, reshape) must come before every other preprocessing step")
        before = meas.pattern_shape
        try:
            transform(step, meas, context)
        except DataError as exc:
            raise DataError(f"{label}: {exc}") from exc
        except OutputError as exc:
            raise OutputError(f"{label}: {exc}") from exc
        if step.layout:
            continue
        meas.as_patterns()
        dk_factor = step.sampling(before, meas.pattern_shape, dk_factor)
    if calibration is None:
        calibration = _calibration_point(meas, context, need_mean)
    meas.as_patterns()
    return PreprocessResult(calibration[0], calibration[1], dk_factor, meas.selection, context.scan_shape)


def _calibration_point(meas: Measurements, context: PreprocessContext, need_mean: bool):
    meas.as_patterns()
    if meas.scan_shape is not None:
        if context.scan_shape is not None and tuple(context.scan_shape) != tuple(meas.scan_shape):
            raise DataError(
                f"{meas.source}: 4-D measurements with scan shape {tuple(meas.scan_shape)}, but the config says "
                f"scan.n_slow = {context.scan_shape[0]}, scan.n_fast = {context.scan_shape[1]}"
            )
        context.scan_shape = tuple(meas.scan_shape)
    return meas.pattern_shape, (meas.mean_pattern() if need_mean else None)

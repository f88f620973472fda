"""Preprocessing of the measurements: a chain of named steps (plugin family ``preprocess``).

This module holds what a step is given (:class:`PreprocessContext`); the chain is run by
:func:`ptyrad_core.setup.preprocess.run_pipeline`.

The config's ``data.preprocess`` list runs in order on the loaded
:class:`~ptyrad_core.kernel.data.Measurements`, before calibration and model building. A step is a
:class:`Preprocessor` subclass with a nested pydantic ``Options`` model, constructed as
``cls(options)``, whose :meth:`~Preprocessor.transform` changes the measurements in place through
their API (``map`` for per-pattern transforms, ``select`` for scan selections, ``set_array`` for
whole-array layout changes, ``mean_pattern`` / ``minimum`` / ... for statistics). Written that
way a step works on data in memory and on data streamed from disk alike; a step that needs the
whole array calls ``measurements.require_memory(name)``.

The chain runner tracks:

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

# the family base lives in components.py with the other six; imported here for old imports
from ptyrad_core.kernel.components import Preprocessor  # noqa: F401


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

"""Arrays from a previous reconstruction, to start a new one from (plugin family ``result_reader``).

A result reader turns the output file of a reconstruction code (ptyrad_core itself, PtyRAD,
PtychoShelves, py4DSTEM, ...) into a :class:`PriorResult` in ptyrad_core's conventions
(docs/conventions.md). The config names a file as the source of the probe
(``model.probe.source: result``), the object, the positions or the tilts; ``reader: auto``
asks ``ptyrad_sniff_result``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import BaseModel


@dataclass
class PriorResult:
    """A previous reconstruction in ptyrad_core's conventions; any field may be missing (None).

    :ivar source: the file (for messages).
    :ivar probe: ``(pmode, Ny, Nx)`` complex, real space, centred at ``(Ny // 2, Nx // 2)``.
    :ivar object: ``(omode, Nz, NY, NX)`` complex transmission.
    :ivar positions_px: ``(N, 2)`` (y, x) window top-left corners in object pixels.
    :ivar tilts_mrad: ``(1, 2)`` or ``(N, 2)`` (t_y, t_x).
    :ivar occupancy: ``(omode,)`` object-mode weights.
    :ivar dx_A: real-space pixel size.
    :ivar slice_thickness_A: slice thickness.
    """

    source: str
    probe: np.ndarray | None = None
    object: np.ndarray | None = None
    positions_px: np.ndarray | None = None
    tilts_mrad: np.ndarray | None = None
    occupancy: np.ndarray | None = None
    dx_A: float | None = None
    slice_thickness_A: float | None = None


class ResultReader:
    """Base class of result readers (plugin family ``result_reader``).

    Subclasses define a nested pydantic ``Options`` model and :meth:`read`; the kernel constructs
    them as ``cls(path, options)`` with ``path`` an existing :class:`pathlib.Path`.
    """

    Options: ClassVar[type[BaseModel]]

    def __init__(self, path: Path, options: BaseModel):
        self.path = Path(path)
        self.options = options

    def read(self) -> PriorResult:
        raise NotImplementedError

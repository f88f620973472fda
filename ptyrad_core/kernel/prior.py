"""Arrays from a previous reconstruction, to start a new one from (plugin family ``result_reader``).

A result reader turns the output file of a reconstruction code (ptyrad_core itself, PtyRAD,
PtychoShelves, py4DSTEM, ...) into a :class:`PriorResult` in ptyrad_core's conventions
(docs/conventions.md). The config names a file as the source of the probe
(``model.probe.source: result``), the object, the positions or the tilts; ``reader: auto``
asks ``ptyrad_sniff_result``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the family base lives in components.py with the other six; imported here for old imports
from ptyrad_core.kernel.components import ResultReader  # noqa: F401


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

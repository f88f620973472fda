"""Result reader `ptyrad_core`: start from an earlier ptyrad_core run's `result.h5`.

The file is the one every run writes (format `ptyrad_core-result`, docs/results.md), read with
:func:`ptyrad_core.plugin.read_result`. It is already in ptyrad_core's conventions, so the
only conversion is the object, stored as amplitude and phase:

| PriorResult | from | conversion |
| --- | --- | --- |
| `probe` | `/probe/modes` (pmode, Ny, Nx) | none |
| `object` | `/object/amplitude`, `/object/phase` | `amplitude * exp(i phase)` |
| `positions_px` | `/positions/refined_px` (N, 2) | none (option `positions: nominal`: `/positions/nominal_px`) |
| `tilts_mrad` | `/tilts_mrad` (1 or N, 2) | none |
| `occupancy` | `/object/occupancy` | none |
| `dx_A` | root attribute `dx_A` | none |
| `slice_thickness_A` | `/slice_thickness_A` | none |

Sniffing: the file is HDF5 and its root attribute `format` is `ptyrad_core-result`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ptyrad_core.plugin import (
    RESULT_FORMAT,
    DataError,
    Field,
    PluginOptions,
    PriorResult,
    ResultReader,
    hookimpl,
    one_line,
    read_result,
)

from ._files import is_hdf5, require_file, scalar

NAME = "ptyrad_core"
REQUIRED = (
    "probe/modes",
    "object/amplitude",
    "object/phase",
    "positions/refined_px",
    "positions/nominal_px",
    "tilts_mrad",
)


class PtyradCoreResultReader(ResultReader):
    """ptyrad_core's own `result.h5`."""

    class Options(PluginOptions):
        positions: Literal["refined", "nominal"] = Field(
            "refined",
            description="Which positions to take: the refined ones (nominal + refinement) "
            "or the nominal ones.",
        )

    def read(self) -> PriorResult:
        path = require_file(self.path, "ptyrad_core result file")
        try:
            r = read_result(path)
        except ValueError as exc:
            raise DataError(
                f"{path}: expected a ptyrad_core result file "
                f"(root attribute format = {RESULT_FORMAT!r}): {exc}"
            ) from None
        except OSError as exc:
            raise DataError(
                f"{path}: not a readable HDF5 file, expected a ptyrad_core result file ({one_line(exc)})"
            ) from None
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            holds = ", ".join(f"{k} {np.shape(v)}" for k, v in r.items() if k != "attrs")
            raise DataError(f"{path}: ptyrad_core result file lacks {', '.join(missing)}; it holds: {holds}")
        obj = (r["object/amplitude"] * np.exp(1j * r["object/phase"].astype(np.float64))).astype(np.complex64)
        occupancy = r.get("object/occupancy")
        return PriorResult(
            source=str(path),
            probe=np.asarray(r["probe/modes"]).astype(np.complex64),
            object=obj,
            positions_px=np.asarray(r[f"positions/{self.options.positions}_px"], dtype=np.float64),
            tilts_mrad=np.asarray(r["tilts_mrad"], dtype=np.float64).reshape(-1, 2),
            occupancy=None if occupancy is None else np.asarray(occupancy, dtype=np.float64),
            dx_A=scalar(r["attrs"].get("dx_A")),
            slice_thickness_A=scalar(r.get("slice_thickness_A")),
        )


def sniff(path: Path) -> bool:
    if not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except Exception:
        return False
    if isinstance(fmt, bytes):
        fmt = fmt.decode(errors="replace")
    return fmt == RESULT_FORMAT


@hookimpl
def ptyrad_register_result_readers(registry):
    registry.add(NAME, PtyradCoreResultReader)


@hookimpl
def ptyrad_sniff_result(path):
    return NAME if sniff(path) else None

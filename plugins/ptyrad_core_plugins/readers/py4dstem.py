"""Result reader `py4dstem`: start from a py4DSTEM ptychography result saved as HDF5.

Expected layout: the flat HDF5 file that PtyRAD reads (written by the benchmark fork of py4DSTEM,
https://github.com/chiahao3/py4DSTEM/tree/benchmark), with root datasets

| dataset | meaning |
| --- | --- |
| `probe` | (Ny, Nx) or (pmode, Ny, Nx) complex, real space |
| `object` | (Ny, Nx) or (Nz, Ny, Nx) complex transmission |
| `positions_px` (optional) | (N, 2) (y, x) of the probe **centre** in object pixels |

Conversions, as PtyRAD's initializer does them (`_load_probe_from_py4dstem`,
`_load_obj_from_py4dstem`, `_load_pos_from_py4dstem`):

- probe: `(Ny, Nx) -> (1, Ny, Nx)`; otherwise unchanged.
- object: `(Ny, Nx) -> (1, 1, Ny, Nx)`, `(Nz, Ny, Nx) -> (1, Nz, Ny, Nx)`; a real-valued
  array is taken as the (real) transmission, as PtyRAD does.
- positions: `positions_px - probe.shape[-2:] / 2` (centre -> window top-left corner).

Sniffing: an HDF5 file with root datasets `probe`, `object` and `positions_px`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ptyrad_core.plugin import DataError, PluginOptions, PriorResult, ResultReader, hookimpl

from ._files import as_complex, h5_contents, h5_get, is_hdf5, open_h5

NAME = "py4dstem"
WHAT = "a py4DSTEM result file (root datasets probe, object, positions_px)"


class Py4DSTEMResultReader(ResultReader):
    """py4DSTEM ptychography output (HDF5 with `probe`, `object`, `positions_px`)."""

    class Options(PluginOptions):
        pass

    def read(self) -> PriorResult:
        path = self.path
        with open_h5(path, WHAT) as f:
            raw_probe = h5_get(f, "probe", path, f"the probe, expected {WHAT}")
            raw_obj = h5_get(f, "object", path, f"the object, expected {WHAT}")
            pos = f.get("positions_px")
            raw_pos = pos[()] if isinstance(pos, h5py.Dataset) else None
            contents = h5_contents(f)
        probe = as_complex(raw_probe)
        if probe.ndim == 2:
            probe = probe[None]
        if probe.ndim != 3:
            raise DataError(
                f"{path}: probe has shape {raw_probe.shape}; "
                f"expected (Ny, Nx) or (pmode, Ny, Nx). File: {contents}"
            )
        obj = as_complex(raw_obj)
        if obj.ndim == 2:
            obj = obj[None, None]
        elif obj.ndim == 3:
            obj = obj[None]
        else:
            raise DataError(
                f"{path}: object has shape {raw_obj.shape}; "
                f"expected (Ny, Nx) or (Nz, Ny, Nx). File: {contents}"
            )
        positions = None
        if raw_pos is not None:
            pp = np.asarray(raw_pos, dtype=np.float64)
            if pp.ndim != 2 or pp.shape[1] != 2:
                raise DataError(
                    f"{path}: positions_px has shape {pp.shape}; expected (N, 2) (y, x) probe centres"
                )
            positions = pp - np.array(probe.shape[-2:]) / 2  # PtyRAD's _load_pos_from_py4dstem
        return PriorResult(
            source=str(path),
            probe=probe.astype(np.complex64),
            object=obj.astype(np.complex64),
            positions_px=positions,
        )


def sniff(path: Path) -> bool:
    if not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return all(isinstance(f.get(k), h5py.Dataset) for k in ("probe", "object", "positions_px"))
    except Exception:
        return False


@hookimpl
def ptyrad_register_result_readers(registry):
    registry.add(NAME, Py4DSTEMResultReader)


@hookimpl
def ptyrad_sniff_result(path):
    return NAME if sniff(path) else None

"""HDF5 loader: a 3-D ``(N, ky, kx)`` or 4-D ``(Ny, Nx, ky, kx)`` dataset under any key.

With ``key`` unset, the file's only 3-D / 4-D dataset is used; if there are several, the first
of the usual names (``measurements``, ``dp``, ``data``, ``cbed``) that exists. The file's root
attributes are passed on as metadata.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ptyrad_core import hookimpl
from ptyrad_core.data import Loader, Measurements
from ptyrad_core.errors import DataError

SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".emd"}
USUAL_KEYS = ("measurements", "dp", "data", "cbed")


class HDF5Loader(Loader):
    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        key: str | None = Field(None, description="Dataset path inside the file; null picks the 3-D/4-D dataset.")

    def _candidates(self, f) -> list[str]:
        found = []
        f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim in (3, 4) else None)
        return found

    def load(self) -> Measurements:
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        with f:
            key = self.options.key
            if key is None:
                found = self._candidates(f)
                usual = [k for k in USUAL_KEYS if k in found]
                if len(found) == 1:
                    key = found[0]
                elif usual:
                    key = usual[0]
                else:
                    raise DataError(
                        f"{self.path}: set data.options.key; 3-D/4-D datasets in the file: {', '.join(found) or 'none'}"
                    )
            if key not in f or not isinstance(f[key], h5py.Dataset):
                names = []
                f.visititems(lambda n, o: names.append(f"{n} {o.shape}") if isinstance(o, h5py.Dataset) else None)
                raise DataError(f"{self.path}: data.options.key {key!r} is not a dataset; datasets: {', '.join(names)}")
            dset = f[key]
            if dset.ndim not in (3, 4):
                raise DataError(
                    f"{self.path}:{key}: measurements must be 3-D (N, ky, kx) or 4-D (Ny, Nx, ky, kx), got shape {dset.shape}"
                )
            patterns = dset[()]
            meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
        return Measurements(patterns, source=f"{self.path}:{key}", metadata=meta)


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("hdf5", HDF5Loader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if path.is_file() and (path.suffix.lower() in SUFFIXES or h5py.is_hdf5(path)) and path.suffix.lower() != ".mat":
        return "hdf5"
    return None

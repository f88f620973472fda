"""HDF5 loader: a 3-D ``(N, ky, kx)`` or 4-D ``(Ny, Nx, ky, kx)`` dataset under any key.

Files: ``.h5``, ``.hdf5``, ``.hdf``, ``.he5``, ``.nxs``, ``.emd``, or any other HDF5 file except
``.mat`` (MATLAB v7.3 files go to the ``mat`` loader). The array is used in the order h5py
reads it (C order: the last axis is the fastest in the file).

With ``key`` unset, the file's only 3-D / 4-D dataset is used; if there are several, the first
of the usual names (``measurements``, ``dp``, ``data``, ``cbed``) that exists. The file's root
attributes are passed on as metadata.

The dataset is not read here: the measurements wrap it and the file stays open as long as they
live, so that the kernel can read it whole (if it fits ``data.memory_budget_MB``) or stream
the patterns of each batch. Datasets chunked per pattern (chunks ``(1, ky, kx)``) stream
fastest.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ptyrad_core.plugin import (
    DataError,
    Field,
    Loader,
    Measurements,
    PluginOptions,
    hookimpl,
    one_line,
    read_error,
)

from ._files import check_dtype, check_shape, missing_key, pick_key, plain_attrs

SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".emd"}


def datasets(f) -> dict[str, tuple]:
    """Every dataset in an open HDF5 file: path -> shape."""
    found = {}
    f.visititems(lambda n, o: found.__setitem__(n, o.shape) if isinstance(o, h5py.Dataset) else None)
    return found


def numeric(f, names) -> dict[str, tuple]:
    out = {}
    for name, shape in names.items():
        dtype = f[name].dtype
        if np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating):
            out[name] = shape
    return out


def read_dataset(f, path: Path, key: str | None) -> np.ndarray:
    """The dataset ``key`` of the open file ``f``, read whole; a damaged chunk is named."""
    if key is None or key not in f or not isinstance(f[key], h5py.Dataset):
        listed = ", ".join(f"{n} {s}" for n, s in datasets(f).items())
        raise DataError(f"{path} has no dataset {key!r}; datasets: {listed}")
    try:
        return f[key][()]
    except Exception as exc:  # noqa: BLE001 - a damaged chunk, a truncated file
        raise read_error(f[key], (), f"{path}:{key}", exc) from exc


class HDF5Loader(Loader):
    """A dataset of an HDF5 file, read lazily."""

    class Options(PluginOptions):
        key: str | None = Field(
            None, description="Dataset path inside the file; null picks the 3-D/4-D dataset."
        )

    file: h5py.File | None = None
    array_suffixes = tuple(sorted(SUFFIXES))

    @classmethod
    def read_array(cls, path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
        """The dataset ``key``, read whole, as h5py reads it."""
        with h5py.File(path, "r") as f:
            return read_dataset(f, path, key), key

    def load(self) -> Measurements:
        if self.path.is_dir():
            raise DataError(f"{self.path}: is a directory; expected an HDF5 file")
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"{self.path}: not a readable HDF5 file ({one_line(exc)})") from None
        try:
            key = self.options.key
            names = datasets(f)
            if key is None:
                key = pick_key(self.path, numeric(f, names))
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise missing_key(self.path, key, names)
            dset = f[key]
            source = f"{self.path}:{key}"
            check_shape(source, dset.shape)
            check_dtype(source, dset.shape, dset.dtype)
            meta = plain_attrs(f.attrs)
            meas = Measurements(dset, source=source, metadata=meta)
        except BaseException:
            f.close()
            raise
        meas.resources.append(f)
        return meas


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("hdf5", HDF5Loader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if not path.is_file() or path.suffix.lower() == ".mat":
        return None
    if path.suffix.lower() in SUFFIXES or h5py.is_hdf5(path):
        return "hdf5"
    return None

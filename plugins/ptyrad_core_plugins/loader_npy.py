"""NumPy loader: a ``.npy`` array, or one array of a ``.npz`` archive.

The array is used in its stored order, as ``np.load`` gives it: ``(N, ky, kx)`` or
``(Ny, Nx, ky, kx)`` (other layouts with 3 or more axes can be rearranged by the ``permute`` /
``reshape`` preprocessing steps). Integer and float dtypes are read as float32 intensities.

- ``.npy`` is memory-mapped (``np.load(path, mmap_mode="r")``), not read: the kernel reads it
  whole if it fits ``data.memory_budget_MB``, else each batch reads only its own patterns.
  ``key`` must be unset.
- ``.npz`` archives cannot be memory-mapped, so the chosen array is read whole. ``key`` is its
  name (as given to ``np.savez``; ``arr_0`` for unnamed arrays); unset, the archive's only 3-D /
  4-D array is used, or if there are several, the first of the usual names (``measurements``,
  ``dp``, ``data``, ``cbed``). Other arrays of the archive are not read.

Object (pickled) arrays are refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from pydantic import Field

from ptyrad_core import hookimpl
from ptyrad_core.data import Loader, Measurements
from ptyrad_core.errors import DataError

from ._common import Options
from ._loaders import check_dtype, check_shape, missing_key, pick_key

MAGIC = b"\x93NUMPY"


def npz_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """Name -> (shape, dtype) of every array of a ``.npz`` archive, from the headers only."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            if not member.endswith(".npy"):
                continue
            with z.open(member) as fp:
                version = np.lib.format.read_magic(fp)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fp)
            out[member[: -len(".npy")]] = (tuple(shape), dtype)
    return out


class NpyLoader(Loader):
    """A ``.npy`` file (memory-mapped) or an array of a ``.npz`` archive (read)."""

    class Options(Options):
        key: str | None = Field(
            None, description="Array name in a .npz archive; null picks its 3-D/4-D array. Must be unset for .npy."
        )

    def load(self) -> Measurements:
        if zipfile.is_zipfile(self.path):
            return self._load_npz()
        try:
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            what = ".npz archive (not a zip file)" if self.path.suffix.lower() == ".npz" else ".npy file"
            raise DataError(f"{self.path}: not a readable {what} ({exc})") from None
        source = str(self.path)
        if self.options.key is not None:
            raise DataError(
                f"{self.path}: data.options.key {self.options.key!r} applies to .npz archives only; this .npy file "
                f"holds one array of shape {tuple(array.shape)}"
            )
        check_shape(source, array.shape)
        check_dtype(source, array.shape, array.dtype)
        return Measurements(array, source=source)

    def _load_npz(self) -> Measurements:
        try:
            headers = npz_headers(self.path)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{self.path}: not a readable .npz archive ({exc})") from None
        shapes = {k: s for k, (s, _) in headers.items()}
        key = self.options.key
        if key is None:
            key = pick_key(self.path, {k: s for k, (s, d) in headers.items() if _numeric(d)}, what="arrays")
        if key not in headers:
            raise missing_key(self.path, key, shapes, what="an array", plural="arrays")
        source = f"{self.path}:{key}"
        shape, dtype = headers[key]
        check_shape(source, shape)
        check_dtype(source, shape, dtype)
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                array = npz[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{source}: could not read the array of shape {shape} ({exc})") from None
        return Measurements(array, source=source)


def _numeric(dtype) -> bool:
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("npy", NpyLoader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix.lower() in (".npy", ".npz"):
        return "npy"
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) == MAGIC:
                return "npy"
    except OSError:
        pass
    return None

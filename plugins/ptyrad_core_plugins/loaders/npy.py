"""NumPy loader: a ``.npy`` array, or one array of a ``.npz`` archive.

The array is used in its stored order, as ``np.load`` gives it: ``(N, ky, kx)`` or
``(Ny, Nx, ky, kx)`` (other layouts with 3 or more axes can be rearranged by the ``permute`` /
``reshape`` preprocessing steps). Integer and float dtypes are read as float32 intensities.

- ``.npy`` is memory-mapped (``np.load(path, mmap_mode="r")``), not read: the kernel reads it
  whole if it fits ``data.memory_budget_MB``, else each batch reads only its own patterns.
  ``key`` must be unset.
- ``.npz`` archives: an array stored uncompressed (``np.savez``) is memory-mapped like a ``.npy``
  file; a compressed one (``np.savez_compressed``) can only be read whole, which the kernel does
  when it fits ``data.memory_budget_MB`` (and refuses otherwise). ``key`` is its
  name (as given to ``np.savez``; ``arr_0`` for unnamed arrays); unset, the archive's only 3-D /
  4-D array is used, or if there are several, the first of the usual names (``measurements``,
  ``dp``, ``data``, ``cbed``). Other arrays of the archive are not read.

Object (pickled) arrays are refused. A file shorter than its header declares (shape x item size
after the header) is refused before anything is mapped or read.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

from ptyrad_core.plugin import DataError, Field, Loader, Measurements, PluginOptions, hookimpl

from ._files import (
    WholeArray,
    check_dtype,
    check_extent,
    check_shape,
    missing_key,
    npy_header,
    npy_layout,
    pick_key,
)

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
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(fp)
            out[member[: -len(".npy")]] = (tuple(shape), dtype)
    return out


class NpyLoader(Loader):
    """A ``.npy`` file (memory-mapped) or an array of a ``.npz`` archive (read)."""

    class Options(PluginOptions):
        key: str | None = Field(
            None,
            description="Array name in a .npz archive; null picks its 3-D/4-D array. Must be unset for .npy.",
        )

    array_suffixes = (".npy", ".npz")

    @classmethod
    def read_array(cls, path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
        """A ``.npy`` file's array, or the array ``key`` of a ``.npz`` archive (unset: its only one)."""
        if Path(path).suffix.lower() != ".npz":
            return np.load(path), None
        with np.load(path) as z:
            if key is None and len(z.files) == 1:
                key = z.files[0]
            if key not in z.files:
                raise DataError(f"{path} has no array {key!r}; arrays: {', '.join(z.files)}")
            return z[key], key

    def load(self) -> Measurements:
        if zipfile.is_zipfile(self.path):
            return self._load_npz()
        try:
            with open(
                self.path, "rb"
            ) as fp:  # the header first: a truncated file is refused before the mapping
                shape, _, dtype, offset = npy_header(fp)
            if not dtype.hasobject:  # object arrays are refused by np.load below
                check_extent(str(self.path), self.path, *npy_layout(shape, dtype, offset))
            array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            what = ".npz archive (not a zip file)" if self.path.suffix.lower() == ".npz" else ".npy file"
            raise DataError(f"{self.path}: not a readable {what} ({exc})") from None
        source = str(self.path)
        if self.options.key is not None:
            raise DataError(
                f"{self.path}: data.options.key {self.options.key!r} applies to .npz archives only; "
                "this .npy file "
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
            array = npz_member(self.path, key, source)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{source}: could not read the array of shape {shape} ({exc})") from None
        if array is None:  # compressed: read whole, when the kernel decides to
            path = self.path

            def read():
                with np.load(path, allow_pickle=False) as npz:
                    return npz[key]

            array = WholeArray(shape, dtype, read, source)
        return Measurements(array, source=source)


def npz_member(path: Path, key: str, source: str) -> np.memmap | None:
    """The array ``key`` of a ``.npz`` archive memory-mapped in place when the archive stores it
    uncompressed (``np.savez``); None when it is compressed (``np.savez_compressed``)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:  # compressed or encrypted
        return None
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(30)  # the member's local header: its name and extra field come before the data
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise DataError(f"{source}: the archive's local header of {key}.npy is damaged")
        start = (
            info.header_offset
            + 30
            + struct.unpack("<H", local[26:28])[0]
            + struct.unpack("<H", local[28:30])[0]
        )
        fp.seek(start)
        shape, fortran, dtype, offset = npy_header(fp)
    needed, layout = npy_layout(shape, dtype, offset)
    if needed > start + info.file_size:
        raise DataError(
            f"{source}: the archive member holds {info.file_size} bytes, but {layout} needs "
            f"{needed - start} bytes; the archive is damaged"
        )
    check_extent(source, path, needed, f"the member at byte {start}, {layout},")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


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

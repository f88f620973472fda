"""Pieces shared by the built-in loaders (not a plugin itself: no entry point).

Key auto-detection, the wording of the errors every loader raises, lazy imports of optional
packages, and an axis-reversing view for MATLAB v7.3 datasets.
"""

from __future__ import annotations

import importlib
import operator
from pathlib import Path

import numpy as np

from ptyrad_core.plugin import DataError

#: names tried, in order, when a file holds several 3-D / 4-D arrays and no key is set
USUAL_KEYS = ("measurements", "dp", "data", "cbed")
#: at most this many arrays are listed in an error message
MAX_LISTED = 40


def require(module: str, purpose: str, package: str | None = None):
    """Import an optional dependency, or raise a DataError saying how to install it."""
    package = package or module
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DataError(f"{purpose} needs the {package!r} package: pip install {package} ({exc})") from None


def listing(arrays: dict[str, tuple], only_patterns: bool = False) -> str:
    """``"a (4, 8, 8), b (3,)"`` for error messages (``none`` when empty)."""
    items = [(k, s) for k, s in arrays.items() if not only_patterns or len(s) in (3, 4)]
    if not items:
        return "none"
    text = ", ".join(f"{k} {tuple(s)}" for k, s in items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        text += f", ... ({len(items) - MAX_LISTED} more)"
    return text


def pick_key(path: Path, arrays: dict[str, tuple], what: str = "datasets") -> str:
    """The key of the only 3-D / 4-D array, else the first of :data:`USUAL_KEYS` among them.

    :param arrays: every numeric array in the file, name -> shape.
    """
    found = [k for k, s in arrays.items() if len(s) in (3, 4)]
    if len(found) == 1:
        return found[0]
    usual = [k for k in USUAL_KEYS if k in found]
    if usual:
        return usual[0]
    raise DataError(
        f"{path}: set data.options.key; 3-D/4-D {what} in the file: {listing(arrays, only_patterns=True)}"
        + ("" if found else f" (all {what}: {listing(arrays)})")
    )


def missing_key(
    path: Path, key: str, arrays: dict[str, tuple], what: str = "a dataset", plural: str = "datasets"
) -> DataError:
    return DataError(f"{path}: data.options.key {key!r} is not {what}; {plural}: {listing(arrays)}")


def check_shape(source: str, shape: tuple) -> None:
    """Reject arrays that can never become patterns (fewer than 3 axes, or empty).

    Layouts other than ``(N, ky, kx)`` / ``(Ny, Nx, ky, kx)`` with 3 or more axes are left to the
    ``permute`` / ``reshape`` preprocessing steps (the kernel's ``as_patterns`` checks the end result).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 3:
        raise DataError(
            f"{source}: measurements must be 3-D (N, ky, kx) or 4-D (Ny, Nx, ky, kx), got shape {shape}"
        )
    if 0 in shape:
        raise DataError(f"{source}: the array is empty (shape {shape})")


def check_dtype(source: str, shape: tuple, dtype) -> None:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise DataError(
            f"{source}: measurements must be real numbers, got dtype {dtype} (shape {tuple(shape)})"
        )


def plain_attrs(attrs) -> dict:
    """HDF5 / zarr attributes as plain Python values (metadata)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v
    return out


class ReversedAxes:
    """A lazy view of an array-like (an ``h5py`` dataset) with its axes in reverse order.

    MATLAB stores arrays column-major, so an HDF5 reader sees a MATLAB array of size
    ``(a, b, c)`` as ``(c, b, a)``. This view presents it as ``(a, b, c)`` again and reads only
    the requested part: indexing it with ``[i]``, ``[i, j]``, ``[int_array]``, slices or ``()``
    translates the selection to the reversed axes, reads that from the file, and transposes
    the (small) result. Indexing is orthogonal, as h5py's: integers drop their axis and one
    1-D integer array (any order, repeats allowed) selects along its own axis (unlike NumPy,
    which moves the array's axis first when an integer and an array are not adjacent).
    """

    def __init__(self, base):
        self.base = base
        self.shape = tuple(int(s) for s in base.shape[::-1])
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[()]
        return out if dtype is None else out.astype(dtype, copy=False)

    def _normalize(self, key) -> list:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(n for n, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices ({len(key)}) for an array of shape {self.shape}")
        key = list(key) + [slice(None)] * (self.ndim - len(key))
        out = []
        for axis, k in enumerate(key):
            size = self.shape[axis]
            if isinstance(k, slice):
                out.append(k)
            elif isinstance(k, (list, np.ndarray)):
                arr = np.asarray(k)
                if arr.dtype == np.bool_:
                    arr = np.flatnonzero(arr)
                if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                    raise IndexError(
                        f"only 1-D integer arrays are supported as indices, got {arr.dtype} {arr.shape}"
                    )
                arr = arr.astype(np.int64)
                if arr.size and (arr.min() < -size or arr.max() >= size):
                    raise IndexError(f"index out of range for axis {axis} of size {size}")
                out.append(np.where(arr < 0, arr + size, arr))
            else:
                i = operator.index(k)
                if not -size <= i < size:
                    raise IndexError(f"index {i} is out of range for axis {axis} of size {size}")
                out.append(i + size if i < 0 else i)
        return out

    def __getitem__(self, key):
        key = self._normalize(key)
        arrays = [n for n, k in enumerate(key) if isinstance(k, np.ndarray)]
        fancy = {}  # axis -> (sorted unique indices, inverse), applied after the read
        read_key = []
        for n, k in enumerate(key):
            if isinstance(k, np.ndarray):
                if len(arrays) > 1:
                    raise IndexError("at most one index array is supported")
                if k.size == 0:
                    fancy[n], k = k, slice(0, 0)
                else:
                    unique, inverse = np.unique(k, return_inverse=True)
                    fancy[n] = inverse
                    # h5py wants increasing indices; a contiguous run reads as a slice
                    k = (
                        slice(int(unique[0]), int(unique[-1]) + 1)
                        if unique[-1] - unique[0] + 1 == unique.size
                        else unique
                    )
            read_key.append(k)
        block = np.asarray(self.base[tuple(read_key[::-1])])
        block = block.transpose(tuple(range(block.ndim))[::-1])
        # axes left in the result are those not indexed by an integer, in order
        kept = [n for n, k in enumerate(key) if not isinstance(k, (int, np.integer))]
        for axis, inverse in fancy.items():
            block = np.take(block, inverse, axis=kept.index(axis))
        return block


def check_extent(source: str, path: Path, needed: int, layout: str) -> None:
    """Refuse a file shorter than its header declares: ``needed`` bytes (``layout`` says how they
    add up), before any array is mapped or read. A truncated file is a one-line DataError naming
    the file and both sizes."""
    try:
        size = Path(path).stat().st_size
    except OSError as exc:
        raise DataError(f"{source}: cannot read the file size ({exc})") from None
    if size < needed:
        raise DataError(
            f"{source}: the file has {size} bytes, but {layout} needs {needed} bytes; "
            "expected the whole file: "
            "it is truncated (an interrupted copy or write?)"
        )


class WholeArray:
    """An array that can only be read whole (a compressed archive member, a compressed TIFF):
    ``shape`` and ``dtype`` from the header, the data read on the first access, not before.

    The kernel decides from ``data.memory_budget_MB`` and the free memory whether to read it
    (``Measurements.load``); ``streamable = False`` tells it that reading per batch is not an
    option. ``read`` is called once, with no argument; its errors become a DataError naming
    ``source``.
    """

    streamable = False

    def __init__(self, shape: tuple, dtype, read, source: str):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self._read = read
        self._source = source
        self._data: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def _array(self) -> np.ndarray:
        if self._data is None:
            try:
                data = np.asarray(self._read())
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the file's reader
                raise DataError(
                    f"{self._source}: cannot read the array ({type(exc).__name__}: {exc})"
                ) from None
            if tuple(data.shape) != self.shape:
                raise DataError(
                    f"{self._source}: read an array of shape {tuple(data.shape)}, "
                    f"its header declares {self.shape}"
                )
            check_dtype(self._source, data.shape, data.dtype)
            self._data = data
        return self._data

    def __array__(self, dtype=None, copy=None):
        out = self._array()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        return self._array()[key]


def npy_header(fp) -> tuple[tuple, bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of the ``.npy`` stream ``fp`` at its current
    position (the offset is absolute in ``fp``)."""
    version = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fp)
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), fp.tell()


def npy_layout(shape: tuple, dtype: np.dtype, offset: int) -> tuple[int, str]:
    """Bytes a ``.npy`` array needs up to its end, and how they add up (for :func:`check_extent`)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    return (
        offset + nbytes,
        f"its header (a {offset}-byte header + shape {tuple(shape)} x {dtype.itemsize} bytes of {dtype})",
    )

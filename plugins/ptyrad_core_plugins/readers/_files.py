"""Pieces shared by the result readers (not a plugin itself: no entry point)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ptyrad_core.plugin import DataError, one_line


def require_file(path: Path, what: str) -> Path:
    """``path`` as a Path; a missing file is a :class:`DataError` naming what it should be."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} does not exist")
    return path


def h5_contents(f: h5py.Group, limit: int = 40) -> str:
    """The datasets of an open HDF5 file or group as 'name (shape)', for error messages."""
    names: list[str] = []
    f.visititems(lambda n, o: names.append(f"{n} {o.shape}") if isinstance(o, h5py.Dataset) else None)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(names[:limit]) or "nothing") + more


def open_h5(path: Path, what: str) -> h5py.File:
    """Open an HDF5 file for reading; an unreadable one is a :class:`DataError`."""
    require_file(path, what)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file, expected {what} ({one_line(exc)})") from None


def h5_get(f: h5py.File, key: str, path: Path, expected: str) -> np.ndarray:
    """Dataset ``key`` of an open file; missing is a :class:`DataError` listing the file's datasets."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: no dataset {key!r} ({expected}); the file holds: {h5_contents(f)}")
    return obj[()]


def is_hdf5(path: Path) -> bool:
    try:
        return Path(path).is_file() and h5py.is_hdf5(path)
    except Exception:
        return False


def as_complex(arr: np.ndarray) -> np.ndarray:
    """A complex array from complex data, a MATLAB v7.3 ``('real', 'imag')`` compound or a real array."""
    arr = np.asarray(arr)
    if arr.dtype.names is not None and set(arr.dtype.names) >= {"real", "imag"}:
        return arr["real"] + 1j * arr["imag"]
    if np.iscomplexobj(arr):
        return arr
    return arr.astype(np.float64 if arr.dtype == np.float64 else np.float32) + 0j


def scalar(value) -> float | None:
    """A float from a 0-d / 1-element array, or None for anything else (e.g. PtyRAD's '__NONE__')."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.size != 1 or not np.isfinite(arr).all():
        return None
    return float(arr.reshape(()))

"""MATLAB loader: a 3-D or 4-D numeric array of a ``.mat`` file, version 5/7 or 7.3.

**Axis order.** By default the array has *MATLAB's* axis order: the size MATLAB's ``size(x)``
shows, and what ``scipy.io.loadmat`` gives, for both file versions. A v7.3 file is HDF5, in
which MATLAB's column-major array of size ``(a, b, c)`` is stored as ``(c, b, a)``; this loader
reverses the axes back, so that v5 and v7.3 files holding the same MATLAB array give identical
measurements. Patterns saved from MATLAB as ``dp(ky, kx, n)`` therefore come out as
``(ky, kx, N)`` and need the ``permute`` preprocessing step ``[2, 0, 1]`` (PtyRAD's
``meas_permute``); ``dp(n, ky, kx)`` comes out as ``(N, ky, kx)`` directly.

``axis_order``: ``auto`` (default) is MATLAB's order for arrays MATLAB wrote (every v5 array;
v7.3 datasets with a ``MATLAB_class`` attribute, as MATLAB and ``hdf5storage`` write them) and
the stored order for HDF5 datasets without it (an HDF5 file merely named ``.mat``, such as
PtyRAD's own ``.mat`` exports). ``matlab`` always reverses v7.3 datasets; ``reversed`` gives
the reverse of MATLAB's order for both versions, i.e. what ``h5py`` reads from a v7.3 file and
what PtyRAD 1.0 uses for v7.3 files (it reverses nothing): ``dp(ky, kx, n)`` then comes out
as ``(N, kx, ky)``, patterns transposed.

``key`` is a variable name, or a struct field as in MATLAB (``s.dp``; ``/`` works too), as
PtyRAD's ``load_mat``. With ``key`` unset, the file's only 3-D / 4-D numeric array is used
(struct fields are searched when no top-level variable qualifies); if there are several, the
first of the usual names (``measurements``, ``dp``, ``data``, ``cbed``).

- v5 / v7 files are read with ``scipy.io.loadmat`` (only the chosen variable), into memory, and
  only once the kernel decided to (shape and class come from the header; a struct field is read
  with its struct to find it). Needs the ``scipy`` package (``pip install scipy``). Singleton
  axes are kept (PtyRAD squeezes them).
- v7.3 files are opened with ``h5py`` and the dataset is not read: the kernel reads it whole if
  it fits ``data.memory_budget_MB``, else each batch reads only its own patterns (each pattern
  is contiguous on disk when MATLAB's last axis is the scan axis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from ptyrad_core.plugin import DataError, Field, Loader, Measurements, PluginOptions, hookimpl

from ._files import ReversedAxes, WholeArray, check_dtype, check_shape, missing_key, pick_key, require
from .hdf5 import read_dataset

SKIP_GROUPS = ("#refs#", "#subsystem#")  # MATLAB's storage of cell / object contents in v7.3
NUMERIC_CLASSES = {
    "double",
    "single",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
}


def _numeric(dtype) -> bool:
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


class MatLoader(Loader):
    """A numeric array of a MATLAB file, in MATLAB's axis order."""

    class Options(PluginOptions):
        key: str | None = Field(
            None,
            description="Variable name, or struct field as 's.dp'; null picks the 3-D/4-D numeric array.",
        )
        axis_order: Literal["auto", "matlab", "reversed"] = Field(
            "auto",
            description="'matlab': MATLAB's size() order for v5 and v7.3; 'reversed': the reverse "
            "(as h5py and PtyRAD 1.0 read v7.3); 'auto': MATLAB's order for arrays MATLAB wrote, "
            "stored order for plain HDF5 datasets.",
        )

    file: h5py.File | None = None
    array_suffixes = (".mat",)

    @classmethod
    def read_array(cls, path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
        """The variable ``key`` (unset: the file's only one) in MATLAB's axis order; a v7.3 complex
        array (stored as a ``(real, imag)`` compound) comes back complex."""
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                arr = read_dataset(f, path, key)
            arr = arr.transpose(range(arr.ndim)[::-1])  # v7.3 stores the axes reversed
            if arr.dtype.names == ("real", "imag"):
                arr = arr["real"] + 1j * arr["imag"]
            return arr, key
        try:
            from scipy.io import loadmat
        except ImportError:
            raise DataError(f"reading MATLAB v5 file {path} needs scipy (pip install scipy)") from None
        content = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
        if key is None and len(content) == 1:
            key = next(iter(content))
        if key not in content:
            raise DataError(f"{path} has no variable {key!r}; variables: {', '.join(content)}")
        return np.asarray(content[key]), key

    def load(self) -> Measurements:
        if h5py.is_hdf5(self.path):
            return self._load_v73()
        return self._load_v5()

    # -- v7.3 (HDF5) -------------------------------------------------------------------------

    def _reverse(self, dset) -> bool:
        order = self.options.axis_order
        return order == "matlab" or (order == "auto" and "MATLAB_class" in dset.attrs)

    def _load_v73(self) -> Measurements:
        path = self.path
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{path}: not a readable MATLAB v7.3 (HDF5) .mat file ({exc})") from None
        try:
            dsets = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and not name.startswith(SKIP_GROUPS):
                    dsets[name.replace("/", ".")] = obj

            f.visititems(visit)
            shapes = {k: (d.shape[::-1] if self._reverse(d) else d.shape) for k, d in dsets.items()}
            key = self.options.key
            if key is None:
                key = pick_key(
                    path, {k: shapes[k] for k, d in dsets.items() if _numeric(d.dtype)}, what="variables"
                )
            name = key.replace("/", ".").strip(".")
            if name not in dsets:
                raise missing_key(path, key, shapes, what="a numeric array", plural="variables")
            dset = dsets[name]
            source = f"{path}:{key}"
            check_shape(source, shapes[name])
            check_dtype(source, shapes[name], dset.dtype)
            array = ReversedAxes(dset) if self._reverse(dset) else dset
            meta = {"mat_version": "7.3", "axis_order": "matlab" if self._reverse(dset) else "stored"}
            meas = Measurements(array, source=source, metadata=meta)
        except BaseException:
            f.close()
            raise
        meas.resources.append(f)
        return meas

    # -- v5 / v7 (scipy) ---------------------------------------------------------------------

    def _load_v5(self) -> Measurements:
        path = self.path
        sio = require("scipy.io", "reading MATLAB v5/v7 .mat files", package="scipy")
        try:
            info = sio.whosmat(str(path))
        except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, ...
            raise DataError(
                f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})"
            ) from None
        order = -1 if self.options.axis_order == "reversed" else 1
        variables = {name: tuple(shape)[::order] for name, shape, _ in info}
        key = self.options.key
        if key is None:
            numeric = {name: tuple(shape)[::order] for name, shape, cls in info if cls in NUMERIC_CLASSES}
            structs = [name for name, _, cls in info if cls == "struct"]
            if not any(len(s) in (3, 4) for s in numeric.values()) and structs:
                for name in structs:  # look for the array in struct fields, as PtyRAD does
                    numeric.update({k: s[::order] for k, s in _fields(self._read(name), name).items()})
            key = pick_key(path, numeric, what="variables")
        parts = key.replace("/", ".").strip(".").split(".")
        if parts[0] not in variables:
            raise missing_key(path, key, variables, what="a variable", plural="variables")
        classes = {name: cls for name, _, cls in info}
        if len(parts) == 1 and classes[parts[0]] in NUMERIC_CLASSES:
            # a top-level array: its shape from the header, the data read when the kernel decides to
            name, shape, source = parts[0], variables[parts[0]], f"{path}:{key}"
            check_shape(source, shape)
            meta = {"mat_version": "5", "axis_order": "reversed" if order == -1 else "matlab"}
            read = (lambda: self._read(name).T) if order == -1 else (lambda: self._read(name))
            dtype = np.dtype(
                "float64"
                if classes[name] == "double"
                else "float32"
                if classes[name] == "single"
                else classes[name]
            )
            return Measurements(WholeArray(shape, dtype, read, source), source=source, metadata=meta)
        value = self._read(parts[0])
        for n, part in enumerate(parts[1:], start=1):
            names = getattr(getattr(value, "dtype", None), "names", None)
            where = ".".join(parts[:n])
            if not names or value.size != 1:
                raise DataError(
                    f"{path}: data.options.key {key!r}: {where} is not a scalar struct "
                    f"(shape {getattr(value, 'shape', ())}, "
                    f"dtype {getattr(value, 'dtype', type(value).__name__)})"
                )
            if part not in names:
                listed = ", ".join(
                    f"{where}.{k} {tuple(getattr(value.flat[0][k], 'shape', ()))}" for k in names
                )
                raise DataError(
                    f"{path}: data.options.key {key!r} is not a struct field; fields of {where}: {listed}"
                )
            value = value.flat[0][part]
        if not isinstance(value, np.ndarray) or value.dtype.names:
            raise DataError(
                f"{path}:{key}: not a numeric array (a {type(value).__name__} {getattr(value, 'dtype', '')})"
            )
        array = value.T if order == -1 else value
        source = f"{path}:{key}"
        check_shape(source, array.shape)
        check_dtype(source, array.shape, array.dtype)
        meta = {"mat_version": "5", "axis_order": "reversed" if order == -1 else "matlab"}
        return Measurements(array, source=source, metadata=meta)

    def _read(self, name: str):
        sio = require("scipy.io", "reading MATLAB v5/v7 .mat files", package="scipy")
        try:
            return sio.loadmat(str(self.path), variable_names=[name], squeeze_me=False)[name]
        except Exception as exc:
            raise DataError(
                f"{self.path}:{name}: could not read the variable ({type(exc).__name__}: {exc})"
            ) from None


def _fields(value, prefix: str) -> dict[str, tuple]:
    """Numeric arrays inside a (nested) scalar struct read by scipy: 's.f.g' -> shape."""
    out = {}
    names = getattr(getattr(value, "dtype", None), "names", None)
    if not names or value.size != 1:
        return out
    element = value.flat[0]
    for name in names:
        field, key = element[name], f"{prefix}.{name}"
        if isinstance(field, np.ndarray) and field.dtype.names:
            out.update(_fields(field, key))
        elif isinstance(field, np.ndarray) and _numeric(field.dtype):
            out[key] = field.shape
    return out


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("mat", MatLoader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".mat":
        return "mat"
    return None

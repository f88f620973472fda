"""Zarr loader: a 3-D ``(N, ky, kx)`` or 4-D ``(Ny, Nx, ky, kx)`` array of a zarr store.

Stores: a ``.zarr`` folder (zarr format 2 or 3, a group or a bare array), any folder holding
``zarr.json`` / ``.zgroup`` / ``.zarray`` metadata, or a zipped store (``.zarr.zip``, or a ``.zip``
with zarr metadata at its root). The array is used in its stored order (C order), as
``zarr.open(...)[key]`` gives it. Needs the ``zarr`` package (``pip install zarr``).

``key`` is the array's path inside a group (``"entry/data"``; a leading ``/`` is ignored). With
``key`` unset, a bare array store is used as it is; in a group, the only 3-D / 4-D numeric
array is used, and if there are several, the first of the usual names (``measurements``,
``dp``, ``data``, ``cbed``) that exists. The root's attributes are passed on as metadata.

The array is not read here: the kernel reads it whole if it fits ``data.memory_budget_MB``,
else each batch reads only its own patterns (fastest with chunks ``(1, ky, kx)`` or a few
patterns per chunk).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ptyrad_core.plugin import DataError, Field, Loader, Measurements, PluginOptions, hookimpl

from ._files import check_dtype, check_shape, missing_key, pick_key, plain_attrs, require

METADATA_FILES = ("zarr.json", ".zgroup", ".zarray")
ROOT = "/"  # how a bare array store's only array is named in messages


def _is_array(obj) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and not hasattr(obj, "keys")


def arrays_in(group, prefix: str = "") -> dict[str, object]:
    """Every array below ``group``: path -> array (lazy)."""
    out = {}
    for name in sorted(group.keys()):
        obj = group[name]
        path = f"{prefix}{name}"
        if _is_array(obj):
            out[path] = obj
        elif hasattr(obj, "keys"):
            out.update(arrays_in(obj, path + "/"))
    return out


def _numeric(dtype) -> bool:
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return False
    return np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)


def _zipped_store(path: Path) -> bool:
    if not (path.is_file() and path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)):
        return False
    if path.name.lower().endswith(".zarr.zip"):
        return True
    try:
        with zipfile.ZipFile(path) as z:
            return any(n in METADATA_FILES for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


class ZarrLoader(Loader):
    """An array of a zarr store, read lazily."""

    class Options(PluginOptions):
        key: str | None = Field(
            None,
            description="Array path inside the store ('entry/data'); "
            "null picks the bare array or the 3-D/4-D array.",
        )

    store = None

    def load(self) -> Measurements:
        zarr = require("zarr", "reading zarr stores")
        path, key = self.path, self.options.key
        try:
            if path.is_file():
                self.store = zarr.storage.ZipStore(str(path), mode="r")
                root = zarr.open(store=self.store, mode="r")
            else:
                root = zarr.open(str(path), mode="r")
        except (
            Exception
        ) as exc:  # zarr raises many types (FileNotFoundError, GroupNotFoundError, JSON errors)
            raise DataError(f"{path}: not a readable zarr store ({type(exc).__name__}: {exc})") from None
        if key is not None:
            key = key.strip("/")
        if _is_array(root):
            arrays = {ROOT: root.shape}
            if key:
                raise missing_key(path, key, arrays, what="an array", plural="the store is a bare array")
            array, key, meta = root, ROOT, plain_attrs(root.attrs)
        else:
            found = arrays_in(root)
            arrays = {k: a.shape for k, a in found.items()}
            if key is None:
                key = pick_key(
                    path, {k: a.shape for k, a in found.items() if _numeric(a.dtype)}, what="arrays"
                )
            if key not in found:
                raise missing_key(path, key, arrays, what="an array", plural="arrays")
            array, meta = found[key], plain_attrs(root.attrs)
        source = f"{path}" if key == ROOT else f"{path}:{key}"
        check_shape(source, array.shape)
        check_dtype(source, array.shape, array.dtype)
        meas = Measurements(array, source=source, metadata=meta)
        if self.store is not None:
            meas.resources.append(self.store)
        return meas


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("zarr", ZarrLoader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if path.is_dir() and (
        path.suffix.lower() == ".zarr" or any((path / n).is_file() for n in METADATA_FILES)
    ):
        return "zarr"
    if _zipped_store(path):
        return "zarr"
    return None

"""Write the patterns as they are at this point of the chain: PtyRAD's ``meas_export``.

Changes nothing; the file holds the float32 patterns in the ``(N, ky, kx)`` layout, or reshaped
to ``shape`` (C order, e.g. ``[n_slow, n_fast, ky, kx]`` for py4DGUI; one entry may be -1).
``format``:

- ``hdf5``: dataset ``key`` (default ``meas``, PtyRAD's name), gzip-compressed as PtyRAD's;
- ``npy``: a NumPy ``.npy`` file;
- ``tif``: an ImageJ-compatible TIFF (``tifffile.imwrite(..., imagej=True)`` as PtyRAD); needs the
  optional package ``tifffile``.

``path`` is relative to the config file's folder; default: PtyRAD's name next to the data file,
``ptyrad_init_meas_<shape>.<format>`` (shape joined by ``_``); a path naming an existing folder
(or ending in ``/``) gets that name inside it, and a path without a suffix gets the format's
(``.hdf5``, ``.npy``, ``.tif``). Existing files are overwritten. The patterns are
read block by block (``Measurements.chunks``), so it works on streamed data without holding them
all (except one output row: ``prod(shape[1:])`` values).

Use it to check the orientation (flipT) or to save the preprocessed data for other programs;
put it at the end of the list for the final patterns. The step adds no preprocessing of its
own; a bad ``shape`` is an error naming it (PtyRAD keeps the shape with a warning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ptyrad_core import hookimpl
from ptyrad_core.errors import DataError
from ptyrad_core.preprocess import Preprocessor

from ._common import Options

SUFFIX = {"hdf5": ".hdf5", "npy": ".npy", "tif": ".tif"}


def resolve_shape(shape: list[int] | None, current: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with its -1 filled in, checked against the number of values in ``current``."""
    total = int(np.prod(current))
    if shape is None:
        return tuple(current)
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if known == 0 or total % known:
            raise DataError(f"shape = {shape} does not fit the {current} patterns ({total} values)")
        shape = [total // known if s == -1 else s for s in shape]
    if int(np.prod(shape)) != total:
        raise DataError(f"shape = {list(shape)} does not fit the {current} patterns ({total} values)")
    return tuple(int(s) for s in shape)


def row_blocks(measurements, shape: tuple[int, ...]):
    """Yield ``(first_row, rows)``: the patterns (via ``chunks()``) regrouped as whole rows of the ``shape`` array."""
    row = int(np.prod(shape[1:]))
    buffer = np.empty(0, dtype=np.float32)
    first = 0
    for block in measurements.chunks():
        buffer = np.concatenate([buffer, block.ravel()])
        k = len(buffer) // row
        if k:
            yield first, buffer[: k * row].reshape(k, *shape[1:])
            buffer, first = buffer[k * row :].copy(), first + k
    if len(buffer):
        raise DataError(f"{len(buffer)} values left over for shape {shape}")  # not reached: the size is checked


class Export(Preprocessor):
    """Save the patterns as they stand (hdf5 / npy / tif); the measurements are unchanged."""

    class Options(Options):
        path: str | None = Field(
            None,
            description="Output file (relative to the config's folder); null: ptyrad_init_meas_<shape>.<format> next "
            "to the data file.",
        )
        format: Literal["hdf5", "npy", "tif"] = Field("hdf5", description="File format: 'hdf5', 'npy' or 'tif' (needs tifffile).")
        shape: list[int] | None = Field(
            None,
            description="Reshape on export (C order, one entry may be -1), e.g. [n_slow, n_fast, ky, kx]; null: (N, ky, kx).",
        )
        key: str = Field("meas", min_length=1, description="Dataset name in the HDF5 file (PtyRAD's 'meas').")

        @field_validator("shape")
        @classmethod
        def _sizes(cls, v):
            if v is not None and (len(v) == 0 or v.count(-1) > 1 or any(s < 1 and s != -1 for s in v)):
                raise ValueError(f"shape entries must be >= 1, with at most one -1, got {v}")
            return v

    def output_path(self, context, shape: tuple[int, ...]) -> Path:
        o = self.options
        name = "ptyrad_init_meas_" + "_".join(map(str, shape)) + SUFFIX[o.format]
        if o.path is None:
            folder = Path(context.data_path).parent if context.data_path is not None else Path(context.base_dir)
            return folder / name
        path = Path(o.path).expanduser()
        if not path.is_absolute():
            path = Path(context.base_dir) / path
        if o.path.endswith(("/", "\\")) or path.is_dir():
            return path / name
        return path if path.suffix else path.with_suffix(SUFFIX[o.format])

    def apply(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        shape = resolve_shape(o.shape, tuple(measurements.shape))
        if o.format == "tif":
            try:
                import tifffile
            except ImportError:
                raise DataError(
                    "format 'tif' needs the package tifffile (pip install tifffile), or use 'hdf5' / 'npy'"
                ) from None
            if len(shape) < 2:
                raise DataError(f"format 'tif' needs a shape of 2 or more axes, got {list(shape)}")
        path = self.output_path(context, shape)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if o.format == "hdf5":
                self._write_hdf5(path, measurements, shape)
            elif o.format == "npy":
                out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
                for first, rows in row_blocks(measurements, shape):
                    out[first : first + len(rows)] = rows
                out.flush()
                del out
            else:
                pages = (p for _, rows in row_blocks(measurements, shape) for p in rows.reshape(-1, *shape[-2:]))
                tifffile.imwrite(path, pages, shape=shape, dtype=np.float32, imagej=True)
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc}") from None
        context.notes.append(f"export: wrote {shape} float32 to {path}")

    def _write_hdf5(self, path: Path, measurements, shape) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            dset = f.create_dataset(self.options.key, shape=shape, dtype=np.float32, compression="gzip")
            for first, rows in row_blocks(measurements, shape):
                dset[first : first + len(rows)] = rows


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("export", Export)

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
(``.hdf5``, ``.npy``, ``.tif``). The patterns are read block by block (``Measurements.chunks``),
so it works on streamed data without holding them all (except one output row: ``prod(shape[1:])``
values). The file is written under a temporary name and renamed when complete.

The target is checked before anything is read (``ptyrad_core.plugin.check_output_file``):

- a file the run reads (the measurement file, the config, the scan / probe / object / tilt files
  it names) is refused, whatever the options: the step never writes to an input;
- an existing file is replaced only when it is a previous export: an HDF5 file with the root
  attribute ``ptyrad_core_output = "preprocess export"``, a TIFF whose Software tag is
  ``ptyrad_core export``, or a ``.npy`` file of float32, C order and exactly the shape about to be
  written (a ``.npy`` header cannot carry a mark, so the same export run again is recognised by
  its array); any other existing file needs the option ``overwrite: true`` or ``--overwrite``.

Under ``ptyrad-core validate`` (a dry run) the step writes nothing: it checks the target and
reports the path, shape and format it would write.

Use it to check the orientation (flipT) or to save the preprocessed data for other programs;
put it at the end of the list for the final patterns. The step adds no preprocessing of its
own; a bad ``shape`` is an error naming it (PtyRAD keeps the shape with a warning).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from ptyrad_core.plugin import (
    OUTPUT_MARK,
    DataError,
    Field,
    PluginOptions,
    Preprocessor,
    check_output_file,
    check_output_file_dry,
    hdf5_marked,
    hookimpl,
    npy_matches,
    tiff_software,
)

SUFFIX = {"hdf5": ".hdf5", "npy": ".npy", "tif": ".tif"}
#: the mark of a previous export: HDF5 root attribute ``ptyrad_core_output``, TIFF Software tag
KIND = "preprocess export"
SOFTWARE = "ptyrad_core export"


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
    """Yield ``(first_row, rows)``: the patterns (via ``chunks()``) regrouped as whole rows of the
    ``shape`` array."""
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
        raise DataError(
            f"{len(buffer)} values left over for shape {shape}"
        )  # not reached: the size is checked


class Export(Preprocessor):
    """Save the patterns as they stand (hdf5 / npy / tif); the measurements are unchanged."""

    class Options(PluginOptions):
        path: str | None = Field(
            None,
            description="Output file (relative to the config's folder); "
            "null: ptyrad_init_meas_<shape>.<format> next to the data file.",
        )
        format: Literal["hdf5", "npy", "tif"] = Field(
            "hdf5", description="File format: 'hdf5', 'npy' or 'tif' (needs tifffile)."
        )
        shape: list[int] | None = Field(
            None,
            description="Reshape on export (C order, one entry may be -1), e.g. [n_slow, n_fast, ky, kx]; "
            "null: (N, ky, kx).",
        )
        key: str = Field("meas", min_length=1, description="Dataset name in the HDF5 file (PtyRAD's 'meas').")
        overwrite: bool = Field(
            False,
            description="Replace an existing file that is not a previous export (as --overwrite); "
            "a file the run reads is never replaced.",
        )

        @field_validator("shape")
        @classmethod
        def _sizes(cls, v):
            if v is not None and (len(v) == 0 or v.count(-1) > 1 or any(s < 1 and s != -1 for s in v)):
                raise ValueError(f"shape entries must be >= 1, with at most one -1, got {v}")
            return v

    def _target(self, context) -> tuple[Path, Path | None]:
        """``(folder, file)``: the file named by ``options.path``, or ``None`` where the name is
        made from the shape (``path`` null or a folder)."""
        o = self.options
        if o.path is None:
            folder = (
                Path(context.data_path).parent if context.data_path is not None else Path(context.base_dir)
            )
            return folder, None
        path = Path(o.path).expanduser()
        if not path.is_absolute():
            path = Path(context.base_dir) / path
        if o.path.endswith(("/", "\\")) or path.is_dir():
            return path, None
        file = path if path.suffix else path.with_suffix(SUFFIX[o.format])
        return file.parent, file

    def _what(self) -> str:
        return (
            "options.path" if self.options.path is not None else "options.path (null: next to the data file)"
        )

    def output_path(self, context, shape: tuple[int, ...]) -> Path:
        folder, file = self._target(context)
        return (
            file
            if file is not None
            else folder / ("ptyrad_init_meas_" + "_".join(map(str, shape)) + SUFFIX[self.options.format])
        )

    def output_targets(self, context) -> list[tuple[str, Path, Path | None]]:
        """Checked by the run before the data are read (the folder writable, the file not an input)."""
        folder, file = self._target(context)
        return [(self._what(), folder, file)]

    def is_previous(self, path: Path, shape: tuple[int, ...]) -> bool:
        """Whether ``path`` is a file this step wrote before (see the module docstring)."""
        fmt = self.options.format
        if fmt == "hdf5":
            return hdf5_marked(path, KIND)
        if fmt == "npy":
            return npy_matches(path, shape)
        return tiff_software(path) == SOFTWARE

    def transform(self, measurements, context) -> None:
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
        rule = dict(
            inputs=context.input_paths(),
            overwrite=o.overwrite or context.overwrite,
            is_previous_output=lambda p: self.is_previous(p, shape),
            kind=f"{o.format} export of this step",
        )
        what = self._what()
        if context.dry_run:
            state = check_output_file_dry(path, what, **rule)
            verb = {
                "new": "would write",
                "new folder": "would create the folder and write",
                "replace": "would replace",
            }[state]
            context.notes.append(
                f"export: {verb} {path} ({o.format}, float32, shape {list(shape)}); nothing written (dry run)"
            )
            return
        check_output_file(path, what, **rule)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        try:
            if o.format == "hdf5":
                self._write_hdf5(tmp, measurements, shape)
            elif o.format == "npy":
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
                for first, rows in row_blocks(measurements, shape):
                    out[first : first + len(rows)] = rows
                out.flush()
                del out
            else:
                pages = (
                    p for _, rows in row_blocks(measurements, shape) for p in rows.reshape(-1, *shape[-2:])
                )
                tifffile.imwrite(tmp, pages, shape=shape, dtype=np.float32, imagej=True, software=SOFTWARE)
            os.replace(tmp, path)
        except OSError as exc:
            raise DataError(f"cannot write {path}: {exc}") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        context.notes.append(f"export: wrote {shape} float32 to {path}")

    def _write_hdf5(self, path: Path, measurements, shape) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            f.attrs[OUTPUT_MARK] = KIND
            dset = f.create_dataset(self.options.key, shape=shape, dtype=np.float32, compression="gzip")
            for first, rows in row_blocks(measurements, shape):
                dset[first : first + len(rows)] = rows


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("export", Export)

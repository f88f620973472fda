"""EMPAD loader: the ``.raw`` files of the EMPAD detector (and other headerless frame dumps).

Layout, as PtyRAD's ``load_raw``: ``offset`` bytes, then one record per frame: ``ky x kx``
little-endian pixels (``dtype``, float32 by default) followed by ``gap`` bytes. An EMPAD1 frame
is 128 x 130 float32 of which the last 2 rows are metadata, i.e. 128 x 128 pixels followed by
a gap of 2 x 128 x 4 = 1024 bytes: the defaults (``offset: 0``, ``gap: 1024``, a 128 x 128
detector). Files already stripped of the metadata rows have ``gap: 0``.

``shape`` is PtyRAD's ``[N, ky, kx]``, or ``[Ny, Nx, ky, kx]`` to give the scan shape as well
(frames in scan order, fast axis last), or only the detector size ``[ky, kx]``; without ``N`` it
is inferred from the file size, which must then be ``offset`` plus a whole number of records.
Patterns come out as ``(N, ky, kx)`` (or ``(Ny, Nx, ky, kx)``) in frame order, rows ``ky`` as
stored.

The file is memory-mapped, not read: a view that skips the metadata rows, so that the kernel
reads it whole if it fits ``data.memory_budget_MB``, else each batch reads only its own frames.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from ptyrad_core.plugin import DataError, Field, Loader, Measurements, PluginOptions, hookimpl

from ._files import check_shape

SUFFIXES = {".raw"}
DTYPES = Literal["float32", "float64", "uint8", "uint16", "uint32", "int16", "int32"]


class EMPADLoader(Loader):
    """Frames of a headerless ``.raw`` file, memory-mapped with the gaps skipped."""

    class Options(PluginOptions):
        shape: list[int] | None = Field(
            None,
            description="[N, ky, kx], [Ny, Nx, ky, kx] or the detector size [ky, kx] (N from the file size); "
            "null = a 128 x 128 detector (EMPAD1).",
        )
        offset: int = Field(0, ge=0, description="Bytes before the first frame.")
        gap: int = Field(
            1024,
            ge=0,
            description="Bytes after each frame (EMPAD1: 1024, its 2 metadata rows; 0 for stripped files).",
        )
        dtype: DTYPES = Field("float32", description="Pixel type (little-endian).")

        @field_validator("shape")
        @classmethod
        def _shape(cls, v):
            if v is not None and (len(v) not in (2, 3, 4) or any(s <= 0 for s in v)):
                raise ValueError(
                    "shape must be 2 to 4 positive integers ([ky, kx], [N, ky, kx] or [Ny, Nx, ky, kx]), "
                    f"got {v}"
                )
            return v

    def load(self) -> Measurements:
        opts, path = self.options, self.path
        dtype = np.dtype(opts.dtype).newbyteorder("<")
        shape = list(opts.shape or [128, 128])
        ky, kx = shape[-2:]
        record = ky * kx * dtype.itemsize + opts.gap
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read the file size ({exc})") from None
        layout = f"offset {opts.offset} + N x ({ky} x {kx} x {dtype.itemsize} bytes + gap {opts.gap})"
        frames, rest = divmod(size - opts.offset, record) if size >= opts.offset else (0, size - opts.offset)
        if len(shape) == 2:
            if rest or frames == 0:
                raise DataError(
                    f"{path}: {size} bytes is not a whole number of frames of shape ({ky}, {kx}): "
                    f"{layout} bytes "
                    f"leaves {frames} frames and {rest} bytes; check data.options.shape, offset and gap"
                )
            shape = [frames, ky, kx]
        n = int(np.prod(shape[:-2]))
        expected = opts.offset + n * record
        if size != expected:
            hint = f" (the file holds {frames} whole frames of this size)" if frames and not rest else ""
            raise DataError(
                f"{path}: data.options.shape {shape} needs {expected} bytes = {layout}, "
                f"but the file has {size} bytes"
                f"{hint}; check data.options.shape, offset and gap"
            )
        source = str(path)
        check_shape(source, tuple(shape))
        try:
            if opts.gap == 0:
                array = np.memmap(path, dtype=dtype, mode="r", offset=opts.offset, shape=(n, ky, kx))
            else:
                frame = np.dtype([("data", dtype, (ky, kx)), ("gap", np.uint8, (opts.gap,))])
                array = np.memmap(path, dtype=frame, mode="r", offset=opts.offset, shape=(n,))["data"]
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{path}: could not memory-map {n} frames of shape ({ky}, {kx}) ({exc})"
            ) from None
        array = array.reshape(shape)  # a view: only the leading (frame) axis is split
        meta = {"format": "raw", "offset": opts.offset, "gap": opts.gap, "dtype": str(opts.dtype)}
        return Measurements(array, source=source, metadata=meta)


@hookimpl
def ptyrad_register_loaders(registry):
    registry.add("empad", EMPADLoader)


@hookimpl
def ptyrad_sniff_loader(path):
    path = Path(path)
    if path.is_file() and path.suffix.lower() in SUFFIXES:
        return "empad"
    return None

"""Measurements: the diffraction patterns a loader produces, in memory or streamed from disk.

Patterns are ``(N, Ky, Kx)`` float32 intensities with zero frequency at pixel ``(Ky // 2,
Kx // 2)`` (the layout on disk), in scan order (row-major, fast axis x). They are data, not
parameters.

A loader hands over the file's array as it is (a NumPy array, a memory map, an ``h5py`` or
``zarr`` dataset: anything with ``shape`` and NumPy-style indexing). If it fits the memory
budget the kernel reads it whole; otherwise it stays on disk and every batch reads only its own
patterns. Preprocessing steps are written once against this class and work in both cases:
per-pattern transforms go through :meth:`Measurements.map` (applied at once in memory, on
every read when streamed), scan selections through :meth:`Measurements.select`, and global
statistics come from :meth:`mean_pattern`, :meth:`minimum`, ... (streamed in chunks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# the family base lives in components.py with the other six; imported here for old imports
from ptyrad_core.kernel.components import Loader  # noqa: F401
from ptyrad_core.kernel.errors import DataError, one_line

log = logging.getLogger("ptyrad_core")

CHUNK_BYTES = 64 << 20  # streamed statistics read about this much at a time
#: all-zero patterns are reported as a warning from this fraction of the scan on. A few empty
#: patterns are normal (the beam blanked during flyback or at the start of a scan) and cost only
#: the positions they cover; from a tenth of the scan on, a sizeable part of the object has no data.
ZERO_WARN_FRACTION = 0.1
#: types the measurements may have on the compute device (``data.device_dtype``)
DEVICE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Measurements:
    """Diffraction patterns of one scan.

    :param patterns: the loader's array: ``(N, Ky, Kx)``, ``(Ny, Nx, Ky, Kx)``, or any layout
        that ``permute`` / ``reshape`` preprocessing turns into one of those. Kept lazy until
        :meth:`load` reads it into memory.
    :param source: where they came from (file and key), used in error messages.
    :param metadata: anything the loader knows (energy, pixel sizes, ...), informational.
    :param resources: objects the array needs alive (an open file, a store); their ``close()`` is
        called by :meth:`close`.
    """

    #: the default of :attr:`chunk_bytes`, for steps that work in chunks of their own
    CHUNK_BYTES = CHUNK_BYTES

    def __init__(self, patterns, source: str, metadata: dict[str, Any] | None = None, resources=()):
        if not hasattr(patterns, "shape") or not hasattr(patterns, "__getitem__"):
            patterns = np.asarray(patterns)
        self.source = source
        self.metadata = dict(metadata or {})
        self.resources = list(resources)
        self._raw = patterns
        self._array: np.ndarray | None = (
            patterns if isinstance(patterns, np.ndarray) and not isinstance(patterns, np.memmap) else None
        )
        self._index: np.ndarray | None = None
        self._transforms: list[Callable[[np.ndarray], np.ndarray]] = []
        self._shape = tuple(int(s) for s in patterns.shape)
        self.scan_shape: tuple[int, int] | None = None
        #: indices of the raw scan positions kept by ``select`` (None: all, in order)
        self.selection: np.ndarray | None = None
        #: about how many bytes of patterns streamed statistics and ``map`` handle at a time
        self.chunk_bytes = CHUNK_BYTES
        self._released = False
        dtype = np.dtype(patterns.dtype)
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise DataError(f"{source}: measurements must be real numbers, got dtype {dtype}")

    # -- shape -----------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """Current shape: the raw layout until :meth:`as_patterns`, then ``(N, Ky, Kx)``."""
        return self._shape

    @property
    def in_memory(self) -> bool:
        return self._array is not None

    @property
    def n(self) -> int:
        return self._shape[0]

    @property
    def pattern_shape(self) -> tuple[int, int]:
        return self._shape[-2], self._shape[-1]

    @property
    def nbytes_float32(self) -> int:
        return int(np.prod(self._shape)) * 4

    @property
    def raw_row_bytes(self) -> int:
        """Bytes that reading one scan position costs: the current pattern as float32 when in
        memory; when streamed, the raw pattern as stored plus its float32 copy (preprocessing such
        as a crop runs on every read, after the raw pattern was read whole)."""
        current = int(np.prod(self._shape[1:] if self._is_patterns() else self._shape[2:])) * 4
        if self._array is not None:
            return current
        raw = self._raw
        rows = raw.shape[0] * raw.shape[1] if len(raw.shape) == 4 else raw.shape[0]
        elements = int(np.prod(raw.shape)) // max(1, int(rows))
        itemsize = np.dtype(raw.dtype).itemsize
        raw_bytes = elements * (itemsize + (0 if np.dtype(raw.dtype) == np.float32 else 4))
        return max(current, raw_bytes)

    @property
    def streamable(self) -> bool:
        """False when the loader's array can only be read whole (a compressed archive member):
        it must then fit in memory."""
        return self._array is not None or bool(getattr(self._raw, "streamable", True))

    def block_rows(self) -> int:
        """Patterns per block of :meth:`chunks`, :meth:`load` and :meth:`map`: as many as keep the
        bytes read per block (:attr:`raw_row_bytes`) within :attr:`chunk_bytes`, at least one."""
        return max(1, int(self.chunk_bytes) // max(1, self.raw_row_bytes))

    # -- memory ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read everything into memory as float32 (transforms and selections applied); close the file."""
        if self._array is None:
            if self._is_patterns():  # block by block into one array: the peak is the data plus one block
                array = np.empty(self._shape, dtype=np.float32)
                per = self.block_rows()
                for start in range(0, self.n, per):
                    stop = min(self.n, start + per)
                    array[start:stop] = self.read(np.arange(start, stop))
                self._array = array
            else:
                self._array = read_block(self._raw, (), self.source)
            self._index, self._transforms = None, []
        self._array = np.ascontiguousarray(self._array, dtype=np.float32)
        if not self._array.flags.writeable:  # a read-only memory map of float32 data: own the memory
            self._array = self._array.copy()
        self._raw = self._array
        self.close()

    def close(self) -> None:
        """Release the resources (files, stores) the loader attached; in-memory data stay usable."""
        for resource in self.resources:
            closer = getattr(resource, "close", None)
            if callable(closer):
                closer()
        self.resources = []

    @property
    def array(self) -> np.ndarray:
        """The whole array in memory (raises for streamed data)."""
        if self._array is None:
            raise DataError(f"{self.source}: the measurements are streamed from disk, not in memory")
        return self._array

    def require_memory(self, step: str) -> np.ndarray:
        if self._array is None:
            raise DataError(
                f"{self.source}: preprocessing step {step!r} needs the measurements in memory, "
                "but they exceed "
                f"data.memory_budget_MB ({self.nbytes_float32 / 2**20:.0f} MB as float32); "
                "raise the budget or "
                "preprocess the file"
            )
        return self._array

    def set_array(self, array: np.ndarray) -> None:
        """Replace the in-memory array: layout changes (permute, reshape) or whole-array transforms
        (e.g. a blur across scan positions, noise) that ``map`` cannot express."""
        self.require_memory("set_array")
        self._array = np.asarray(array)
        self._shape = tuple(self._array.shape)

    # -- patterns --------------------------------------------------------------------------

    def _is_patterns(self) -> bool:
        return len(self._shape) == 3

    def as_patterns(self) -> None:
        """Turn a 4-D ``(Ny, Nx, Ky, Kx)`` layout into ``(N, Ky, Kx)``, recording the scan shape."""
        if len(self._shape) == 3:
            return
        if len(self._shape) != 4:
            raise DataError(
                f"{self.source}: measurements must be 3-D (N, ky, kx) or 4-D (Ny, Nx, ky, kx), "
                f"got shape {self._shape}"
                " (data.preprocess permute / reshape can rearrange them)"
            )
        self.scan_shape = self._shape[:2]
        self._shape = (self._shape[0] * self._shape[1], *self._shape[2:])
        if self._array is not None:
            self._array = self._array.reshape(self._shape)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        """Apply a per-pattern transform ``(n, Ky, Kx) -> (n, Ky', Kx')`` to every pattern.

        ``fn`` gets blocks of patterns (about ``chunk_bytes`` each, so temporaries stay small)
        and must not modify its input in place.
        """
        self.as_patterns()
        if self._array is not None:
            arr = self._array.astype(np.float32, copy=False)
            per = self.block_rows()
            out = None  # filled block by block: the peak is the old array, the new one and a block
            for i in range(0, len(arr), per):
                block = np.asarray(fn(arr[i : i + per]), dtype=np.float32)
                if out is None:
                    out = (
                        block
                        if len(block) == len(arr)
                        else np.empty((len(arr), *block.shape[1:]), dtype=np.float32)
                    )
                if out is not block:
                    out[i : i + len(block)] = block
            assert out is not None, "no patterns to map"
            self._array = out
            self._shape = tuple(self._array.shape)
        else:
            self._transforms.append(fn)
            probe = self.read(np.arange(1))
            self._shape = (self._shape[0], *probe.shape[1:])

    def select(self, indices: np.ndarray, scan_shape: tuple[int, int] | None = None) -> None:
        """Keep only the patterns at ``indices`` (in that order)."""
        self.as_patterns()
        indices = np.asarray(indices, dtype=np.int64)
        if self._array is not None:
            self._array = self._array[indices]
        else:
            self._index = indices if self._index is None else self._index[indices]
        self._shape = (len(indices), *self._shape[1:])
        self.scan_shape = scan_shape
        self.selection = indices if self.selection is None else self.selection[indices]

    def read(self, indices) -> np.ndarray:
        """Patterns ``(len(indices), Ky, Kx)`` float32, transforms applied."""
        if self._released:
            raise DataError(
                f"{self.source}: the patterns were moved to the compute device and their host copy released; "
                "read them before the Reconstruction is built, or from the run's `data` (its `batch` method)"
            )
        indices = np.asarray(indices, dtype=np.int64)
        if self._array is not None:
            return np.ascontiguousarray(self._array.reshape(-1, *self._shape[1:])[indices], dtype=np.float32)
        rows = indices if self._index is None else self._index[indices]
        raw = self._read_raw(rows)
        for fn in self._transforms:
            raw = fn(raw)
        return np.ascontiguousarray(raw, dtype=np.float32)

    def _read_raw(self, rows: np.ndarray) -> np.ndarray:
        """Raw patterns at flat scan indices ``rows``, with as few reads as the format allows."""
        raw = self._raw
        unique, inverse = np.unique(rows, return_inverse=True)  # sorted: h5py needs increasing indices
        if raw.ndim == 4:
            nx = raw.shape[1]
            parts = []
            for row in np.unique(unique // nx):  # one read per scan row
                cols = unique[unique // nx == row] % nx
                parts.append(read_block(raw, (int(row), cols), self.source))
            block = np.concatenate(parts)
        else:
            block = read_block(raw, (unique,), self.source)
        return block[inverse]

    def chunks(self):
        """Yield consecutive blocks of patterns, float32 (for streamed statistics; read-only views
        of the array when it is in memory)."""
        self.as_patterns()
        per = self.block_rows()
        for start in range(0, self.n, per):
            stop = min(self.n, start + per)
            if self._array is not None and self._array.dtype == np.float32:
                block = self._array.reshape(-1, *self._shape[1:])[start:stop]
                block.flags.writeable = False
                yield block
            else:
                yield self.read(np.arange(start, stop))

    # -- statistics ------------------------------------------------------------------------

    def mean_pattern(self) -> np.ndarray:
        """The mean of all patterns (position-averaged), float64 ``(Ky, Kx)``."""
        total = np.zeros(self.pattern_shape, dtype=np.float64)
        for block in self.chunks():
            total += block.sum(axis=0, dtype=np.float64)
        return total / self.n

    def total_intensities(self) -> np.ndarray:
        """Sum of every pattern, float64 ``(N,)``."""
        return np.concatenate([b.sum(axis=(1, 2), dtype=np.float64) for b in self.chunks()])

    def minimum(self) -> float:
        return float(min(b.min() for b in self.chunks()))

    def check_values(self, negative: str = "error") -> np.ndarray:
        """Reject NaN / infinite values; reject (``"error"``) or zero (``"clip"``) negative ones;
        reject data whose every pattern is zero and warn when many are (:data:`ZERO_WARN_FRACTION`).

        :return: the mean pattern, float64 ``(Ky, Kx)`` (negative values counted as 0 under
            ``"clip"``), from the same pass over the data.
        """
        n_bad, n_neg, low, start = 0, 0, 0.0, 0
        first: tuple[int, tuple[int, ...]] | None = None
        n_zero = 0
        first_zero: list[int] = []
        total = np.zeros(self.pattern_shape, dtype=np.float64)
        for block in self.chunks():
            bad = ~np.isfinite(block)
            if bad.any() and first is None:
                at = np.unravel_index(np.argmax(bad), block.shape)
                first = (int(at[0]) + start, tuple(int(i) for i in at[1:]))
            n_bad += int(bad.sum())
            neg = block < 0
            n_neg += int(neg.sum())
            if neg.any():
                low = min(low, float(block[neg].min()))
            zero = np.flatnonzero(~block.reshape(len(block), -1).any(axis=1))
            n_zero += len(zero)
            first_zero += [int(i) + start for i in zero[: max(0, 5 - len(first_zero))]]
            if not n_bad:
                total += block.sum(axis=0, dtype=np.float64)
                if neg.any():
                    total -= np.where(neg, block, 0).sum(axis=0, dtype=np.float64)
            start += len(block)
        if n_bad:
            assert first is not None  # set at the first block with a bad value
            raise DataError(
                f"{self.source}: measurements hold {n_bad} NaN or infinite values "
                f"(first at pattern {first[0]}, pixel {first[1]}); expected finite intensities"
            )
        if n_neg:
            if negative != "clip":
                raise DataError(
                    f"{self.source}: measurements hold {n_neg} negative values (min {low:.4g}); expected "
                    "non-negative intensities (data.negative_values: clip sets them to 0, or add a "
                    "'negative' preprocessing step)"
                )
            self.map(lambda b: np.clip(b, 0, None))
        if n_zero == self.n:
            raise DataError(
                f"{self.source}: all {self.n} patterns are zero; expected diffraction intensities (is it the "
                "right file and key, or did preprocessing remove the signal?)"
            )
        if n_zero:
            listed = ", ".join(map(str, first_zero)) + (", ..." if n_zero > len(first_zero) else "")
            text = (
                f"{self.source}: {n_zero} of {self.n} patterns are all zero (pattern {listed}): a blanked "
                "beam? They carry no signal, and the object under them is not constrained"
            )
            if n_zero >= ZERO_WARN_FRACTION * self.n:
                log.warning(text)
            else:
                log.info(text)
        return total / self.n

    # -- to the device ---------------------------------------------------------------------

    def to(self, device, dtype: str = "float32") -> DeviceMeasurements | StreamedMeasurements:
        """The patterns for the engine: on ``device`` when in memory (as ``dtype``, one of
        :data:`DEVICE_DTYPES`; batches come back as float32), else read from disk per batch."""
        if self._array is None:
            return StreamedMeasurements(self, device)
        host = np.ascontiguousarray(self._array, dtype=np.float32)
        if dtype == "float32":
            return DeviceMeasurements(torch.from_numpy(host).to(device))
        return DeviceMeasurements(_narrow(host, torch.device(device), dtype, self.source, self.chunk_bytes))

    def release(self) -> None:
        """Drop the host copy of in-memory patterns once they live on the device (:meth:`to`)."""
        if self._array is not None:
            self._array, self._raw, self._released = None, None, True


def _take(raw, index: tuple) -> np.ndarray:
    """``raw[index]`` as float32; element by element where fancy indexing is not supported."""
    try:
        return np.asarray(raw[index], dtype=np.float32)
    except (TypeError, ValueError, IndexError):
        *lead, last = index
        return np.stack([np.asarray(raw[tuple(lead) + (int(i),)], dtype=np.float32) for i in last])


def read_block(raw, index: tuple, source: str) -> np.ndarray:
    """``raw[index]`` as float32 (``index`` as :meth:`Measurements._read_raw` builds it: integers
    and sorted integer arrays on the leading axes; ``()`` for everything).

    Every read of a loader's array goes through here: a read that fails (a compressed chunk that
    does not decompress, a truncated file, a missing zarr chunk, ...) becomes a DataError naming
    the file and dataset and, for a chunked HDF5 dataset, the damaged chunk.
    """
    try:
        return _take(raw, index) if index != () else np.asarray(raw[()], dtype=np.float32)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the storage layer
        raise read_error(raw, index, source, exc) from exc


def read_error(raw, index: tuple, source: str, exc: BaseException) -> DataError:
    """The DataError for a failed read of ``raw[index]``: for a chunked HDF5 dataset the first
    chunk under ``index`` that cannot be read (file, dataset, chunk index and offset)."""
    import h5py

    reason = one_line(exc)
    if isinstance(raw, h5py.Dataset) and raw.chunks is not None:
        where = f"{raw.file.filename}: dataset {raw.name!r}"
        chunk = _failing_chunk(raw, index)
        if chunk is not None:
            number, count, offset = chunk
            return DataError(
                f"{where}: chunk {number} of {count} (offset {offset}, chunk shape {raw.chunks}) "
                f"cannot be read ({reason}); expected an intact {raw.compression or 'stored'} chunk: "
                "the file is damaged, copy it again"
            )
        return DataError(
            f"{where}: cannot be read ({reason}); expected an intact HDF5 dataset: the file is damaged"
        )
    what = "the array" if index == () else "patterns " + ", ".join(_describe(i) for i in index)
    return DataError(
        f"{source}: cannot read {what} ({reason}); expected a readable array: "
        "is the file damaged or truncated?"
    )


def _describe(i) -> str:
    i = np.atleast_1d(np.asarray(i))
    return str(int(i[0])) if len(i) == 1 else f"{int(i.min())}..{int(i.max())}"


def _failing_chunk(dset, index: tuple) -> tuple[int, int, tuple[int, ...]] | None:
    """(chunk number in row-major order of the chunk grid, number of chunks, offset) of the first
    chunk under ``index`` that cannot be read, or None when every one reads."""
    shape, chunks = dset.shape, dset.chunks
    grid = tuple(-(-n // c) for n, c in zip(shape, chunks))
    per_axis = [np.unique(np.atleast_1d(np.asarray(i)) // c) for i, c in zip(index, chunks)]
    per_axis += [np.arange(g) for g in grid[len(per_axis) :]]
    for coord in np.stack(np.meshgrid(*per_axis, indexing="ij"), axis=-1).reshape(-1, len(grid)):
        offset = tuple(int(k) * c for k, c in zip(coord, chunks))
        try:
            dset[tuple(slice(o, min(o + c, n)) for o, c, n in zip(offset, chunks, shape))]
        except Exception:  # noqa: BLE001
            return int(np.ravel_multi_index(tuple(coord), grid)), int(np.prod(grid)), offset
    return None


def _narrow(host: np.ndarray, device: torch.device, name: str, source: str, chunk_bytes: int) -> torch.Tensor:
    """``host`` as a 16-bit tensor on ``device``, converted block by block.

    bfloat16 keeps float32's range with 8 significant bits (relative rounding <= 2^-8, below the
    shot noise of any pattern pixel with fewer than 65536 counts); float16 keeps 11 bits but only
    between 6.1e-5 and 65504, so it is refused where it would round the patterns' upper three
    decades by more than 2^-10 (normalised patterns, very high counts).
    """
    dtype = DEVICE_DTYPES[name]
    out = torch.empty(host.shape, dtype=dtype, device=device)
    per = max(1, chunk_bytes // max(1, int(np.prod(host.shape[1:])) * 4))
    top = float(host.max()) if host.size else 0.0
    if name == "float16" and top > torch.finfo(torch.float16).max:
        raise DataError(
            f"{source}: data.device_dtype float16 holds values up to 65504, the patterns reach {top:.6g}; "
            "use bfloat16 (or float32)"
        )
    worst = 0.0
    for start in range(0, len(host), per):
        block = torch.from_numpy(host[start : start + per]).to(device)
        small = block.to(dtype)
        out[start : start + per] = small
        if name == "float16":
            big = block.abs() >= 1e-3 * top
            if bool(big.any()):
                worst = max(worst, float(((small.float() - block).abs() / block.abs())[big].max()))
    if worst > 2.0**-10:
        raise DataError(
            f"{source}: data.device_dtype float16 rounds the patterns by up to {worst:.2g} "
            "(relative; it keeps 11 bits "
            f"only between 6.1e-5 and 65504, the patterns reach {top:.3g}); "
            "use bfloat16, or scale the patterns to counts"
        )
    return out


class DeviceMeasurements:
    """Patterns held on the compute device; :meth:`batch` selects rows without a host copy and
    returns them as float32 (whatever type they are stored in, ``data.device_dtype``)."""

    streamed = False

    def __init__(self, patterns: torch.Tensor):
        self.patterns = patterns

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        rows = self.patterns.index_select(0, indices)
        return rows if rows.dtype == torch.float32 else rows.float()


class StreamedMeasurements:
    """Patterns read from disk per batch (only the batch's rows), then moved to the device."""

    streamed = True

    def __init__(self, measurements: Measurements, device):
        self.measurements = measurements
        self.device = torch.device(device)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        block = self.measurements.read(indices.cpu().numpy())
        return torch.from_numpy(block).to(self.device, non_blocking=True)

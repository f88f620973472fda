"""Measurements: the diffraction patterns a loader produces, and the loader base class.

Patterns are ``(N, Ky, Kx)`` float32 intensities with zero frequency at pixel ``(Ky // 2,
Kx // 2)`` (the layout on disk), in scan order (row-major, fast axis x). They are data, not
parameters: the loop reads them per batch with :meth:`Measurements.batch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel

from .errors import DataError


class Measurements:
    """Diffraction patterns of one scan.

    :param patterns: ``(N, Ky, Kx)`` or ``(Ny, Nx, Ky, Kx)`` array of intensities.
    :param source: where they came from (file and key), used in error messages.
    :param metadata: anything the loader knows (energy, pixel sizes, ...), informational.

    Values are checked by :meth:`check_values`, which the kernel calls after loading.
    """

    def __init__(self, patterns, source: str, metadata: dict[str, Any] | None = None):
        arr = np.asarray(patterns)
        self.source = source
        self.metadata = dict(metadata or {})
        if arr.ndim == 4:
            self.scan_shape: tuple[int, int] | None = arr.shape[:2]
            arr = arr.reshape(-1, *arr.shape[2:])
        elif arr.ndim == 3:
            self.scan_shape = None
        else:
            raise DataError(
                f"{source}: measurements must be 3-D (N, ky, kx) or 4-D (Ny, Nx, ky, kx), got shape {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise DataError(f"{source}: measurements must be real numbers, got dtype {arr.dtype}")
        self.patterns = np.ascontiguousarray(arr, dtype=np.float32)

    def check_values(self, negative: str = "error") -> None:
        """Reject NaN / infinite values; reject (``"error"``) or zero (``"clip"``) negative ones."""
        arr, source = self.patterns, self.source
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.unravel_index(np.argmax(bad), arr.shape)
            raise DataError(
                f"{source}: measurements hold {int(bad.sum())} NaN or infinite values "
                f"(first at pattern {first[0]}, pixel {first[1:]}); expected finite intensities"
            )
        if (arr < 0).any():
            if negative == "clip":
                np.clip(arr, 0, None, out=arr)
            else:
                raise DataError(
                    f"{source}: measurements hold {int((arr < 0).sum())} negative values (min {arr.min():.4g}); "
                    "expected non-negative intensities (data.negative_values: clip sets them to 0)"
                )

    @property
    def n(self) -> int:
        return self.patterns.shape[0]

    @property
    def pattern_shape(self) -> tuple[int, int]:
        return tuple(self.patterns.shape[1:])

    def mean_total_intensity(self) -> float:
        return float(self.patterns.sum(axis=(1, 2), dtype=np.float64).mean())

    def to(self, device) -> "DeviceMeasurements":
        return DeviceMeasurements(torch.from_numpy(self.patterns).to(device))


class DeviceMeasurements:
    """Patterns held on the compute device; :meth:`batch` selects rows without a host copy."""

    def __init__(self, patterns: torch.Tensor):
        self.patterns = patterns

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.patterns.index_select(0, indices)


class Loader:
    """Base class of data loaders (plugin family ``loader``).

    Subclasses define a nested pydantic ``Options`` model and :meth:`load`. The kernel constructs
    them as ``cls(path, options)`` with ``path`` an existing :class:`pathlib.Path`.
    """

    Options: ClassVar[type[BaseModel]]

    def __init__(self, path: Path, options: BaseModel):
        self.path = Path(path)
        self.options = options

    def load(self) -> Measurements:
        raise NotImplementedError

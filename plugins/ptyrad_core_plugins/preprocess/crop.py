"""Crop the scan and/or the patterns: PtyRAD's ``meas_crop: [[slow], [fast], [ky], [kx]]``.

Each range is ``[start, stop)`` (Python slicing, ``0 <= start < stop <= size``) or null (keep
the whole axis):

- ``scan_slow``, ``scan_fast``: keep scan rows ``start .. stop - 1`` and columns likewise. The
  scan is ``(n_slow, n_fast)`` in row-major order (fast axis x), so position ``(r, c)`` is
  pattern ``r n_fast + c``; the kept patterns are ``[r n_fast + c for r in rows for c in
  cols]`` and the scan shape becomes ``(len(rows), len(cols))``. The positions and tilts read
  from files are selected alike by the kernel (``Measurements.selection``). Needs the scan
  shape (``scan.n_slow`` / ``scan.n_fast``, or 4-D data).
- ``ky``, ``kx``: keep detector rows / columns ``start .. stop - 1`` of every pattern. dk is
  unchanged (dx = 1 / (K' dk) grows); the zero frequency moves from pixel ``K // 2`` to
  ``K // 2 - start``, so a centred crop to ``K'`` pixels uses ``start = K // 2 - K' // 2``.

Typical use: a sub-region of a large scan for a quick test, or trimming an oversized detector.
Per pattern (and a scan selection): works on streamed data.

Deliberate difference from PtyRAD: a range outside the axis (or empty, or negative) is an error
naming the option; PtyRAD passes the bounds to Python slicing, which clips them silently.
"""

from __future__ import annotations

import numpy as np
from pydantic import field_validator

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl

Range = tuple[int, int] | None


def _range_field(what: str):
    return Field(None, description=f"[start, stop) of the {what} to keep (Python slicing); null keeps all.")


def check_range(name: str, bounds: Range, size: int, what: str) -> range | None:
    """``bounds`` as a ``range`` after checking them against ``size`` (the message names the option)."""
    if bounds is None:
        return None
    start, stop = bounds
    if not 0 <= start < stop <= size:
        raise DataError(
            f"{name} = [{start}, {stop}] is outside the {size} {what} (need 0 <= start < stop <= {size})"
        )
    return range(start, stop)


class Crop(Preprocessor):
    """Keep a rectangle of scan positions and / or of detector pixels."""

    class Options(PluginOptions):
        scan_slow: Range = _range_field("scan rows (slow axis)")
        scan_fast: Range = _range_field("scan columns (fast axis)")
        ky: Range = _range_field("detector rows")
        kx: Range = _range_field("detector columns")

        @field_validator("scan_slow", "scan_fast", "ky", "kx")
        @classmethod
        def _ordered(cls, v):
            if v is not None and not 0 <= v[0] < v[1]:
                raise ValueError(f"need 0 <= start < stop, got [{v[0]}, {v[1]}]")
            return v

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        if o.scan_slow is not None or o.scan_fast is not None:
            self._crop_scan(measurements, context)
        ny, nx = measurements.pattern_shape
        ky = check_range("ky", o.ky, ny, "detector rows") or range(ny)
        kx = check_range("kx", o.kx, nx, "detector columns") or range(nx)
        if (len(ky), len(kx)) != (ny, nx):
            sy, sx = slice(ky.start, ky.stop), slice(kx.start, kx.stop)
            measurements.map(lambda b: np.ascontiguousarray(b[:, sy, sx]))

    def _crop_scan(self, measurements, context) -> None:
        o = self.options
        names = " / ".join(n for n in ("scan_slow", "scan_fast") if getattr(o, n) is not None)
        scan_shape = context.scan_shape or measurements.scan_shape
        if scan_shape is None:
            raise DataError(
                f"{names} needs the scan shape; set scan.n_slow and scan.n_fast "
                "(or load 4-D (Ny, Nx, ky, kx) data)"
            )
        n_slow, n_fast = (int(s) for s in scan_shape)
        if n_slow * n_fast != measurements.n:
            raise DataError(
                f"{names}: the scan shape {n_slow} x {n_fast} does not match the {measurements.n} patterns"
            )
        rows = check_range("scan_slow", o.scan_slow, n_slow, "scan rows (scan.n_slow)") or range(n_slow)
        cols = check_range("scan_fast", o.scan_fast, n_fast, "scan columns (scan.n_fast)") or range(n_fast)
        indices = (np.asarray(rows)[:, None] * n_fast + np.asarray(cols)[None, :]).ravel()
        shape = (len(rows), len(cols))
        measurements.select(indices, shape)
        context.scan_shape = shape


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("crop", Crop)

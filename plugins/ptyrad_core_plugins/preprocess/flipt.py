"""Flip and transpose every pattern: PtyRAD's ``meas_flipT: [flipud, fliplr, transpose]``.

On each ``(ky, kx)`` pattern, in this order (as PtyRAD):

    flipud:    I'[i, j] = I[Ky - 1 - i, j]
    fliplr:    I'[i, j] = I[i, Kx - 1 - j]
    transpose: I'[i, j] = I[j, i]

Used to bring the detector's orientation into agreement with the scan (the right setting is
found by trying the eight combinations on a short reconstruction, or with py4DGUI: PtyRAD's
``[1, 0, 0]`` is ``flipud: true``). A flip moves the zero frequency of an even-sized pattern
from pixel ``K // 2`` to ``K // 2 - 1``, as in PtyRAD. Per pattern: works on streamed data.
The detector pixel dk is unchanged; PtyRAD applies flipT before its calibration mean pattern,
here the calibration mean pattern is the one before this step (the same for square patterns).
"""

from __future__ import annotations

import numpy as np

from ptyrad_core.plugin import Field, PluginOptions, Preprocessor, hookimpl


def flip_transpose(block: np.ndarray, flipud: bool, fliplr: bool, transpose: bool) -> np.ndarray:
    """PtyRAD's ``_meas_flipT`` on ``(n, ky, kx)`` patterns (a contiguous copy)."""
    if flipud:
        block = block[:, ::-1, :]
    if fliplr:
        block = block[:, :, ::-1]
    if transpose:
        block = block.transpose(0, 2, 1)
    return np.ascontiguousarray(block)


class FlipT(Preprocessor):
    """Flip up-down, left-right, then transpose each pattern."""

    class Options(PluginOptions):
        flipud: bool = Field(False, description="Reverse the ky axis (PtyRAD meas_flipT[0]).")
        fliplr: bool = Field(False, description="Reverse the kx axis (PtyRAD meas_flipT[1]).")
        transpose: bool = Field(False, description="Swap ky and kx, after the flips (PtyRAD meas_flipT[2]).")

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        if o.flipud or o.fliplr or o.transpose:
            measurements.map(lambda b: flip_transpose(b, o.flipud, o.fliplr, o.transpose))


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("flipT", FlipT)

"""Permute the axes of the loaded array: PtyRAD's ``meas_permute``.

    out = numpy.transpose(meas, order)

``order`` lists, for each output axis, the input axis it takes (``numpy.transpose``'s
convention), e.g. ``[0, 1, 3, 2]`` swaps ky and kx of ``(Ny, Nx, ky, kx)`` data and
``[2, 3, 0, 1]`` turns ``(ky, kx, Ny, Nx)`` (MATLAB-style files) into ``(Ny, Nx, ky, kx)``.
After the layout steps the array must be ``(N, ky, kx)`` or ``(Ny, Nx, ky, kx)``.

A *layout* step: it only rearranges the file's axes, so it must come before every other step,
and the ``experiment`` calibration refers to the patterns after it. It needs the whole array in
memory (``data.memory_budget_MB``); the result is a view (no copy) until it is reshaped.
"""

from __future__ import annotations

import numpy as np
from pydantic import field_validator

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl


class Permute(Preprocessor):
    """``numpy.transpose`` of the whole loaded array."""

    layout = True

    class Options(PluginOptions):
        order: list[int] = Field(
            min_length=1,
            description="Output axis i takes input axis order[i] (numpy.transpose), "
            "e.g. [0, 1, 3, 2] swaps ky and kx.",
        )

        @field_validator("order")
        @classmethod
        def _permutation(cls, v):
            if sorted(v) != list(range(len(v))):
                raise ValueError(f"order must be a permutation of 0 .. {len(v) - 1}, got {v}")
            return v

    def transform(self, measurements, context) -> None:
        array = measurements.require_memory("permute")
        order = self.options.order
        if len(order) != array.ndim:
            raise DataError(
                f"order = {order} has {len(order)} axes, but the measurements have shape {array.shape}"
            )
        measurements.set_array(np.transpose(array, order))


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("permute", Permute)

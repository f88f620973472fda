"""Reshape the loaded array: PtyRAD's ``meas_reshape``.

    out = numpy.reshape(meas, shape)        (C order; one entry may be -1)

e.g. ``[-1, 128, 128]`` flattens ``(Ny, Nx, 128, 128)`` scans to ``(N, 128, 128)``, or
``[64, 64, 128, 128]`` gives a flat ``(4096, 128, 128)`` file its scan shape. After the layout
steps the array must be ``(N, ky, kx)`` or ``(Ny, Nx, ky, kx)``; a 4-D result sets the scan
shape (it must agree with ``scan.n_slow`` / ``scan.n_fast`` when those are given).

A *layout* step: it must come before every other step, and the ``experiment`` calibration
refers to the patterns after it. It needs the whole array in memory (``data.memory_budget_MB``).
"""

from __future__ import annotations

from pydantic import field_validator

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl


class Reshape(Preprocessor):
    """``numpy.reshape`` of the whole loaded array."""

    layout = True

    class Options(PluginOptions):
        shape: list[int] = Field(
            min_length=1,
            description="New shape, C order; one entry may be -1 (inferred), e.g. [-1, 128, 128].",
        )

        @field_validator("shape")
        @classmethod
        def _sizes(cls, v):
            if v.count(-1) > 1 or any(s < 1 and s != -1 for s in v):
                raise ValueError(f"shape entries must be >= 1, with at most one -1, got {v}")
            return v

    def transform(self, measurements, context) -> None:
        array = measurements.require_memory("reshape")
        try:
            measurements.set_array(array.reshape(self.options.shape))
        except ValueError:
            raise DataError(
                f"shape = {self.options.shape} does not fit the measurements' shape {array.shape} "
                f"({array.size} values)"
            ) from None


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("reshape", Reshape)

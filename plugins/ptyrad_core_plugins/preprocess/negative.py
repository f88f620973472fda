"""Remove negative intensities: PtyRAD's ``meas_remove_neg_values``.

With ``m = min_j,k I_j(k)`` over all patterns, ``mode``:

- ``clip_neg`` (default): ``I' = max(I, 0)``.
- ``subtract_min``: ``I' = I - m`` (shifts the whole data set so the minimum is 0).
- ``clip_value``: ``I' = 0 where I < value, else I`` (a noise floor; ``value`` in the data's
  units, e.g. a few counts for a counting detector).
- ``subtract_value``: ``I' = I - value`` (a known dark level / background offset).

then, as PtyRAD, whatever is still negative is set to 0 (``I' = max(I', 0)``). As PtyRAD, the
step does nothing when the data hold no negative value (``m >= 0``) unless ``force: true``
(e.g. to apply ``clip_value`` / ``subtract_value`` to non-negative data). Negative values come
from dark-reference subtraction of integrating detectors; ``clip_neg`` or ``subtract_min`` are
the usual choices. Put it before ``normalize`` and ``pad`` (the padded background is fitted to the
mean amplitude, a square root).

Per pattern with one global statistic (the minimum, read in chunks): works on streamed data.
PtyRAD runs this step by default and ends its chain with a ``clip_neg``; here it runs only when
listed, and ``data.negative_values`` rejects or clips what is left at the end.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import ValidationInfo, field_validator

from ptyrad_core.plugin import Field, PluginOptions, Preprocessor, hookimpl

Mode = Literal["clip_neg", "subtract_min", "clip_value", "subtract_value"]


def remove_negative(block: np.ndarray, mode: str, value: float | None, minimum: float) -> np.ndarray:
    """PtyRAD's correction of ``block`` (float32), then the final clip of what is still negative."""
    block = np.asarray(block, dtype=np.float32)
    if mode == "subtract_min":
        out = block - np.float32(minimum)
    elif mode == "clip_value":
        out = np.where(block < np.float32(value), np.float32(0), block)
    elif mode == "subtract_value":
        out = block - np.float32(value)
    elif mode == "clip_neg":
        out = block
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return np.maximum(out, np.float32(0))


class RemoveNegative(Preprocessor):
    """Clip or shift negative intensities (dark-subtraction artefacts) to non-negative values."""

    class Options(PluginOptions):
        mode: Mode = Field(
            "clip_neg",
            description="'clip_neg' sets negatives to 0; 'subtract_min' subtracts the global minimum; "
            "'clip_value' sets values below `value` to 0; 'subtract_value' subtracts `value`. "
            "Then any negative left is set to 0.",
        )
        value: float | None = Field(
            None,
            validate_default=True,
            description="Threshold / offset in the data's units for 'clip_value' / 'subtract_value'.",
        )
        force: bool = Field(
            False, description="Apply the correction even when no value is negative (PtyRAD skips then)."
        )

        @field_validator("value")
        @classmethod
        def _needs_value(cls, v, info: ValidationInfo):
            mode = info.data.get("mode")
            if v is None and mode in ("clip_value", "subtract_value"):
                raise ValueError(f"mode '{mode}' needs a value")
            return v

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        minimum = measurements.minimum()
        if minimum >= 0 and not o.force:
            context.notes.append("negative: no negative values; skipped (force: true applies it anyway)")
            return
        measurements.map(lambda b: remove_negative(b, o.mode, o.value, minimum))
        value = f", value {o.value:.4g}" if o.value is not None else ""
        context.notes.append(f"negative: minimum {minimum:.4g}, mode {o.mode}{value}")


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("negative", RemoveNegative)

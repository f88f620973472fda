"""Object amplitude thresholds: PtyRAD's ``obja_thresh``.

    A' = relax A + (1 - relax) clamp(A, low, high)

keeps the transmission amplitude near 1 (typical ``thresh`` [0.9, 1.1] or tighter; amplitudes
multiply through the slices, so 0.95 per slice is 0.6 after ten). ``relax`` keeps part of the
unclamped value.
"""

from __future__ import annotations

from pydantic import model_validator

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl


class ObjaThresh(Constraint):
    """Clamp the object amplitude to [low, high], optionally relaxed."""

    class Options(PluginOptions):
        thresh: tuple[float, float] = Field((0.96, 1.04), description="Lowest and highest amplitude allowed.")
        relax: float = Field(0.0, ge=0, le=1, description="Fraction of the unclamped amplitude kept.")

        @model_validator(mode="after")
        def _ordered(self):
            if self.thresh[0] > self.thresh[1]:
                raise ValueError(f"thresh must be [low, high] with low <= high, got {list(self.thresh)}")
            return self

    def enforce(self, model, iteration):
        o = self.options
        a = model.object_amplitude
        model.object_amplitude.copy_(o.relax * a + (1 - o.relax) * a.clamp(*o.thresh))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("obja_thresh", ObjaThresh)

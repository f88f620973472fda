"""Position recentring: PtyRAD's ``pos_recenter``.

    d' = d - (1 - relax) mean_j d_j

removes the common offset that the refined position shifts ``d`` (object pixels) can drift by
when positions are optimized, so the object stays where it started. ``relax`` keeps part of the
offset.
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl


class PosRecenter(Constraint):
    """Subtract the mean refinement shift from every position."""

    class Options(PluginOptions):
        relax: float = Field(0.0, ge=0, le=1, description="Fraction of the mean shift kept.")

    def enforce(self, model, iteration):
        shifts = model.positions
        model.positions.copy_(shifts - (1 - self.options.relax) * shifts.mean(dim=0))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("pos_recenter", PosRecenter)

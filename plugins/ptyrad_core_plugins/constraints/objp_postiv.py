"""Object phase positivity: PtyRAD's ``objp_postiv``.

    phi' = relax phi + (1 - relax) max(phi, 0)          (mode 'clip_neg')
    phi' = relax phi + (1 - relax) (phi - min phi)      (mode 'subtract_min')

an electron's phase shift through a potential is positive; clipping the negative values gives
an object with a zero baseline that is easy to compare and quantify. ``relax`` keeps part of the
unconstrained phase (1 = no constraint).
"""

from __future__ import annotations

from typing import Literal

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl


class ObjpPostiv(Constraint):
    """Make the object phase non-negative, optionally relaxed."""

    class Options(PluginOptions):
        relax: float = Field(0.0, ge=0, le=1, description="Fraction of the unconstrained phase kept.")
        mode: Literal["clip_neg", "subtract_min"] = Field(
            "clip_neg", description="Clip negative values or subtract the minimum."
        )

    def enforce(self, model, iteration):
        o = self.options
        p = model.object_phase
        positive = p.clamp(min=0) if o.mode == "clip_neg" else p - p.min()
        model.object_phase.copy_(o.relax * p + (1 - o.relax) * positive)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("objp_postiv", ObjpPostiv)

"""Amplitude mirrored from the phase: PtyRAD's ``mirrored_amp``.

    A' = relax A + (1 - relax) (1 - scale max(phi, 0)^power)

sets the amplitude from the phase, since absorption grows with the projected potential
(typical ``scale`` 0.01 - 0.05 per rad^power, ``power`` 2 - 4); ``relax`` keeps part of the
current amplitude (0 = replace it).
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl


class MirroredAmp(Constraint):
    """Amplitude as a decreasing function of the phase."""

    class Options(PluginOptions):
        relax: float = Field(0.1, ge=0, le=1, description="Fraction of the current amplitude kept.")
        scale: float = Field(0.03, ge=0, description="Absorption per rad^power.")
        power: float = Field(4.0, ge=0, description="Power of the phase.")

    def enforce(self, model, iteration):
        o = self.options
        target = 1 - o.scale * model.object_phase.clamp(min=0).pow(o.power)
        model.object_amplitude.copy_(o.relax * model.object_amplitude + (1 - o.relax) * target)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("mirrored_amp", MirroredAmp)

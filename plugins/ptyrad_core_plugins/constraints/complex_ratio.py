"""Complex-ratio constraint between amplitude and phase: PtyRAD's ``complex_ratio``.

    C = sum |log A| / sum |phi|                      (over the whole object)
    A' = exp( (1 - alpha1) log A - alpha1 C phi )
    phi' = (1 - alpha2) phi - (alpha2 / C) log A

ties the amplitude to the phase of a weak-phase object (Ultramicroscopy 2024, 114068;
Opt. Express 18, 1981), with the sign for electrons: a positive phase goes with an amplitude
below 1. ``alpha1 = 1, alpha2 = 0`` (the default) makes the amplitude follow the phase.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl

from .._common import ObjType, obj_type_field


class ComplexRatio(Constraint):
    """Couple amplitude and phase through an adaptive ratio C."""

    class Options(PluginOptions):
        obj_type: ObjType = obj_type_field()
        alpha1: float = Field(1.0, description="Weight of the phase in the new amplitude.")
        alpha2: float = Field(0.0, description="Weight of the amplitude in the new phase.")

    def enforce(self, model, iteration):
        o = self.options
        log_a = torch.log(model.object_amplitude)
        phase = model.object_phase
        c = log_a.abs().sum() / (phase.abs().sum() + 1e-8)
        new_amp = torch.exp((1 - o.alpha1) * log_a - o.alpha1 * c * phase)
        new_phase = (1 - o.alpha2) * phase - o.alpha2 / (c + 1e-8) * log_a
        if o.obj_type in ("amplitude", "both"):
            model.object_amplitude.copy_(new_amp)
        if o.obj_type in ("phase", "both"):
            model.object_phase.copy_(new_phase)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("complex_ratio", ComplexRatio)

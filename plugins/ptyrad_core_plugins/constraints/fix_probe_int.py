"""Fixed probe intensity: PtyRAD's ``fix_probe_int``.

    P' = P * sqrt( I_0 / sum |P|^2 )

rescales the probe modes so that their total intensity stays at its initial value ``I_0`` (the
mean total intensity of the measurements). This removes the scale ambiguity between probe and
object amplitude; use it whenever both are optimized.
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, PluginOptions, hookimpl


class FixProbeInt(Constraint):
    """Rescale the probe to its initial total intensity."""

    class Options(PluginOptions):
        pass

    def __init__(self, options: Options):
        super().__init__(options)
        self.target = None

    def setup(self, model):
        self.target = float(model.probe.detach().abs().square().sum())

    def enforce(self, model, iteration):
        probe = model.probe
        model.assign("probe", probe * (self.target / probe.abs().square().sum()).sqrt())


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("fix_probe_int", FixProbeInt)

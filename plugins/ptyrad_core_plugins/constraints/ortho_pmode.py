"""Probe-mode orthogonalisation: PtyRAD's ``ortho_pmode``.

    A = P P^H (pmode x pmode Gram matrix),  A = V diag(l) V^H,  P' = V^H P

replaces the probe modes ``P`` (rows: flattened modes) by orthogonal ones that describe the same
mixed state (``P'^H P' = P^H P``, so the total intensity is unchanged), sorted by power,
strongest first. Run it every iteration when reconstructing more than one probe mode.
"""

from __future__ import annotations

from ptyrad_core.plugin import Constraint, PluginOptions, hookimpl, ops


class OrthoPmode(Constraint):
    """Orthogonalise and sort the probe modes."""

    class Options(PluginOptions):
        pass

    def enforce(self, model, iteration):
        model.assign("probe", ops.orthogonalize_modes(model.probe))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("ortho_pmode", OrthoPmode)

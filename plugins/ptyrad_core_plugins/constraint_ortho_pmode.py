"""Probe-mode orthogonalisation: PtyRAD's ``ortho_pmode``.

    A = P P^H (pmode x pmode Gram matrix),  A = V diag(l) V^H,  P' = V^H P

replaces the probe modes ``P`` (rows: flattened modes) by orthogonal ones that describe the same
mixed state (``P'^H P' = P^H P``, so the total intensity is unchanged), sorted by power,
strongest first. Run it every iteration when reconstructing more than one probe mode.
"""

from __future__ import annotations

from ptyrad_core import hookimpl
from ptyrad_core.kernel.ops import orthogonalize_modes

from ._common import Options


class OrthoPmode:
    """Orthogonalise and sort the probe modes."""

    class Options(Options):
        pass

    def __init__(self, options: Options):
        self.options = options

    def apply(self, model, iteration):
        model.assign("probe", orthogonalize_modes(model.probe))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("ortho_pmode", OrthoPmode)

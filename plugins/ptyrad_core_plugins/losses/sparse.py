"""Sparsity of the object phase: PtyRAD's ``loss_sparse``.

    L = sum_n w_n ( mean_{j,z,y,x} |phi_n(j, z, y, x)|^q )^(1/q)

the L_q norm (``q = ln_order``, 1 typical) of the object phase under the batch's probe windows,
per object mode ``n`` and weighted by the mode occupancies ``w_n``. It favours a phase that is
zero away from the atoms (vacuum, sparse projected potentials). Radians; weights around 0.01 -
0.1 relative to a per-pattern loss.
"""

from __future__ import annotations

from ptyrad_core.plugin import Field, LossTerm, PluginOptions, hookimpl


class SparsityLoss(LossTerm):
    """L_q norm of the object phase within the batch's windows."""

    reads_patterns = False  # a prior on the object: the held-out loss skips it

    class Options(PluginOptions):
        ln_order: float = Field(1.0, ge=1, description="Order q of the norm (1 = mean absolute phase).")

    def forward(self, pred, meas, batch):
        q = self.options.ln_order
        _, phase = batch.object_patches  # (B, omode, Nz, Ny, Nx)
        per_mode = phase.abs().pow(q).mean(dim=(0, 2, 3, 4)).pow(1.0 / q)
        return (per_mode * batch.model.occupancy).sum()


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("sparse", SparsityLoss)

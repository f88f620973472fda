"""PACBED loss: PtyRAD's ``loss_pacbed``.

    L = sqrt( mean_k ( <I_pred + eps>_j^p - <I_meas>_j^p )^2 ) / mean_{j,k} I_meas^p

compares the position-averaged pattern of the batch (``<.>_j``, the PACBED) with that of the
measurements, raised to ``p = dp_pow`` (typical 0.2, which lifts the weak diffuse background).
It constrains the probe and the object's average scattering, not its detail; use it beside a
per-pattern loss with a weight around 0.1 - 1. Dimensionless.
"""

from __future__ import annotations

from ptyrad_core.plugin import Field, LossTerm, PluginOptions, hookimpl

from .._common import dp_pow_field, measured_power


class PacbedLoss(LossTerm):
    """Normalised RMS error of the batch-averaged pattern ``** dp_pow``."""

    class Options(PluginOptions):
        dp_pow: float = dp_pow_field(0.2)
        eps: float = Field(
            1e-10, ge=0, description="Added to the predicted intensity before the power (counts)."
        )

    def forward(self, pred, meas, batch):
        p = self.options.dp_pow
        diff = (pred + self.options.eps).mean(0).pow(p) - meas.mean(0).pow(p)
        return diff.square().mean().sqrt() / measured_power(meas, p).mean()


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("pacbed", PacbedLoss)

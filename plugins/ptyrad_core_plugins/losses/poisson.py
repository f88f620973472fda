"""Poisson negative log-likelihood: PtyRAD's ``loss_poissn``.

    L = -mean_{j,k}( I_meas^p log(I_pred^p + eps) - I_pred^p ) / mean_{j,k} I_meas^p

the negative log-likelihood of the measured counts under Poisson statistics (up to terms that
do not depend on the prediction), for ``p = dp_pow = 1``; other powers give PtyRAD's
generalisation. Normalised by the mean measured intensity, so it is dimensionless and
independent of dose. Suits low-dose data with many empty pixels. ``eps`` (counts, typical
1e-9 - 1e-3) keeps the logarithm finite where the prediction is zero.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Field, LossTerm, PluginOptions, hookimpl

from .._common import dp_pow_field, measured_power


class PoissonLoss(LossTerm):
    """Poisson negative log-likelihood of ``pattern ** dp_pow``."""

    pixelwise = True  # a mean over pixels: the held-out loss evaluates it on the held-out pixels alone

    class Options(PluginOptions):
        dp_pow: float = dp_pow_field(1.0)
        eps: float = Field(1e-6, gt=0, description="Added inside the logarithm (counts).")

    def forward(self, pred, meas, batch):
        p = self.options.dp_pow
        meas_p = measured_power(meas, p)
        pred_p = pred.pow(p)
        return -(meas_p * torch.log(pred_p + self.options.eps) - pred_p).mean() / meas_p.mean()


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("poisson", PoissonLoss)

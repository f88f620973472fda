"""Gaussian (amplitude) loss: PtyRAD's ``loss_single``.

    L = sqrt( mean_{j,k} (I_pred^p - I_meas^p)^2 ) / mean_{j,k} I_meas^p

a normalised RMS error of the patterns raised to ``p = dp_pow``, averaged over the batch and
detector pixels. ``p = 0.5`` compares amplitudes, the maximum-likelihood estimate under Gaussian
noise on amplitudes, and suits well-exposed data; 0.2 - 0.5 is the usual range. ``eps`` is added
to the prediction before the power so that the gradient stays finite where the prediction is 0.
The normalisation makes the value independent of dose and batch size (dimensionless, about
0.05 - 0.5 for real data).
"""

from __future__ import annotations

import torch
from pydantic import Field

from ptyrad_core import hookimpl

from ._common import Options, dp_pow_field


class GaussianLoss(torch.nn.Module):
    """Normalised RMS error of ``pattern ** dp_pow``."""

    class Options(Options):
        dp_pow: float = dp_pow_field(0.5)
        eps: float = Field(1e-10, ge=0, description="Added to the predicted intensity before the power (counts).")

    def __init__(self, options: Options):
        super().__init__()
        self.options = options

    def forward(self, pred, meas, batch):
        p = self.options.dp_pow
        meas_p = meas.pow(p)
        return (pred + self.options.eps).pow(p).sub(meas_p).square().mean().sqrt() / meas_p.mean()


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("gaussian", GaussianLoss)

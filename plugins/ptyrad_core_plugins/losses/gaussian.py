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

import math

import torch

from ptyrad_core.plugin import Field, LossTerm, PluginOptions, hookimpl

from .._common import dp_pow_field, measured_power


class GaussianLoss(LossTerm):
    """Normalised RMS error of ``pattern ** dp_pow``."""

    pixelwise = True  # a mean over pixels: the held-out loss evaluates it on the held-out pixels alone

    class Options(PluginOptions):
        dp_pow: float = dp_pow_field(0.5)
        eps: float = Field(
            1e-10, ge=0, description="Added to the predicted intensity before the power (counts)."
        )

    def forward(self, pred, meas, batch):
        p = self.options.dp_pow
        meas_p = measured_power(meas, p)
        return NormalisedRMS.apply(pred, meas_p, p, self.options.eps)[0] / meas_p.mean()


class NormalisedRMS(torch.autograd.Function):
    """``L = sqrt(mean((x^p - m)^2))`` with ``x = pred + eps``, and its gradient written out:
    ``dL/dpred = p d x^(p - 1) / (N L)``, ``d = x^p - m``, 0 where ``L = 0``. Three passes over
    the patterns each way, where autograd of the formula makes about ten.

    ``forward`` returns ``(L, x, d)`` (the intermediates the backward reuses, not
    differentiable): the functorch form (``setup_context``), so that ``torch.func.vmap`` can
    evaluate the term on a stack of inputs at once (the held-out loss's groups of positions)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(pred, meas_p, p, eps):
        x = pred + eps
        d = x.pow(p).sub_(meas_p)
        rms = torch.linalg.vector_norm(d).div_(math.sqrt(d.numel()))
        return rms, x, d

    @staticmethod
    def setup_context(ctx, inputs, output):
        rms, x, d = output
        ctx.save_for_backward(x, d, rms)
        ctx.mark_non_differentiable(x, d)
        ctx.p = inputs[2]

    @staticmethod
    def backward(ctx, grad, _grad_x, _grad_d):
        x, d, rms = ctx.saved_tensors
        scale = torch.where(rms > 0, grad * ctx.p / (d.numel() * rms), torch.zeros_like(rms))
        return x.pow(ctx.p - 1).mul_(d).mul_(scale), None, None, None


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("gaussian", GaussianLoss)

"""Total variation (TV) of the object phase: a loss term and a proximal constraint.

Discrete gradient, forward differences with a zero difference past the last row / column
(Neumann boundary), on every 2-D slice ``u`` of the phase::

    (grad u)_y[i, j] = u[i+1, j] - u[i, j]   (0 on the last row)
    (grad u)_x[i, j] = u[i, j+1] - u[i, j]   (0 on the last column)

    TV(u)     = sum_{i,j} sqrt( (grad u)_y^2 + (grad u)_x^2 )                    (isotropic TV)
    TV_eps(u) = sum_{i,j} [ sqrt( (grad u)_y^2 + (grad u)_x^2 + eps^2 ) - eps ]  (smoothed, differentiable)

**Loss term** ``tv_phase``: the smoothed TV per pixel of the phase under the batch's probe
windows, per object mode ``n`` and weighted by the mode occupancies ``w_n``::

    L = sum_n w_n mean_{b, z, i, j} [ sqrt( (grad phi)_y^2 + (grad phi)_x^2 + eps^2 ) - eps ]

with ``phi = phi_n(b, z)`` the phase patch of position ``b``, slice ``z`` (radians per pixel).
It favours piecewise-flat phase (suppresses noise between atoms) while keeping edges, unlike a
quadratic smoothness penalty. Weights of 1e-3 - 1e-1 relative to a per-pattern loss.

**Constraint** ``tv_phase``: after the iteration, every slice of every object mode is replaced
by the proximal point of the TV::

    phi' = prox_{lambda TV}(phi) = argmin_u  1/2 ||u - phi||^2 + lambda TV(u)

computed with Chambolle's projection algorithm (J. Math. Imaging Vis. 20, 89-97, 2004)::

    p^0 = 0,
    p^{k+1} = ( p^k + tau grad(div p^k - phi / lambda) ) / ( 1 + tau |grad(div p^k - phi / lambda)| )
    phi' = phi - lambda div p^K

``div = -grad^T`` is the discrete divergence. It converges for ``tau <= 1/8``; ``lambda``
(``weight``) is in radians: a phase step of height ``h`` between two plateaus of ``n1`` and ``n2``
pixels per row shrinks by ``lambda (1/n1 + 1/n2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ptyrad_core.plugin import Constraint, Field, LossTerm, PluginOptions, hookimpl


def gradient(u: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences ``(grad_y, grad_x)`` over the last two axes, zero past the last row / column."""
    gy = torch.zeros_like(u)
    gx = torch.zeros_like(u)
    gy[..., :-1, :] = u[..., 1:, :] - u[..., :-1, :]
    gx[..., :, :-1] = u[..., :, 1:] - u[..., :, :-1]
    return gy, gx


def divergence(py: Tensor, px: Tensor) -> Tensor:
    """``div p = -grad^T p`` for the :func:`gradient` above (the last row / column of ``p`` is ignored)."""
    dy = torch.zeros_like(py)
    dy[..., :-1, :] = py[..., :-1, :]
    dy[..., 1:, :] -= py[..., :-1, :]
    dx = torch.zeros_like(px)
    dx[..., :, :-1] = px[..., :, :-1]
    dx[..., :, 1:] -= px[..., :, :-1]
    return dy + dx


def total_variation(u: Tensor, eps: float = 0.0) -> Tensor:
    """Per-pixel TV density ``sqrt(gy^2 + gx^2 + eps^2) - eps`` (same shape as ``u``)."""
    gy, gx = gradient(u)
    if eps == 0:
        return torch.sqrt(gy * gy + gx * gx)
    return torch.sqrt(gy * gy + gx * gx + eps * eps) - eps


def tv_prox(f: Tensor, weight: float, n_iter: int = 30, tau: float = 0.125) -> Tensor:
    """``argmin_u 1/2 ||u - f||^2 + weight * TV(u)`` over the last two axes (Chambolle 2004)."""
    py = torch.zeros_like(f)
    px = torch.zeros_like(f)
    scaled = f / weight
    for _ in range(n_iter):
        gy, gx = gradient(divergence(py, px) - scaled)
        norm = 1 + tau * torch.sqrt(gy * gy + gx * gx)
        py = (py + tau * gy) / norm
        px = (px + tau * gx) / norm
    return f - weight * divergence(py, px)


class TVPhaseLoss(LossTerm):
    """Smoothed isotropic total variation of the object phase within the batch's windows."""

    class Options(PluginOptions):
        eps: float = Field(
            1e-3,
            gt=0,
            description="Smoothing of |grad phi| near zero, radians per pixel (keeps the gradient finite).",
        )

    def forward(self, pred, meas, batch):
        _, phase = batch.object_patches  # (B, omode, Nz, Ny, Nx)
        per_mode = total_variation(phase, self.options.eps).mean(dim=(0, 2, 3, 4))
        return (per_mode * batch.model.occupancy).sum()


class TVPhaseProx(Constraint):
    """Proximal operator of the isotropic TV on every slice and mode of the object phase."""

    class Options(PluginOptions):
        weight: float = Field(
            gt=0,
            description="lambda: strength of the TV, radians (a step of height h between plateaus of "
            "n1, n2 px shrinks by lambda (1/n1 + 1/n2)); typical 1e-3 - 1e-2.",
        )
        n_iter: int = Field(30, ge=1, description="Iterations of Chambolle's projection algorithm.")
        tau: float = Field(
            0.125, gt=0, le=0.25, description="Step of Chambolle's algorithm (converges for tau <= 1/8)."
        )

    def enforce(self, model, iteration):
        o = self.options
        model.object_phase.copy_(tv_prox(model.object_phase, o.weight, o.n_iter, o.tau))


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("tv_phase", TVPhaseLoss)


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("tv_phase", TVPhaseProx)

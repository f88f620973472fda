"""Autograd gradients of every optimizable tensor against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptyrad_core.model import PARAMETER_NAMES, ParamSchedule, PtychoModel
from ptyrad_core.optics import electron_wavelength, make_mixed_probe, make_probe


def small_model(per_position_tilts: bool) -> PtychoModel:
    rng = np.random.default_rng(7)
    omode, nz, n_obj, win, n_pos = 2, 3, 22, 12, 4
    tilts = rng.normal(0, 3, (n_pos if per_position_tilts else 1, 2))
    return PtychoModel(
        object_amplitude=1 + 0.1 * rng.standard_normal((omode, nz, n_obj, n_obj)),
        object_phase=0.5 * rng.standard_normal((omode, nz, n_obj, n_obj)),
        probe=make_mixed_probe(make_probe(win, 0.4, 120, 22, {"defocus": 40, "C12": 15}), 2, 0.2),
        positions_px=rng.uniform(0, n_obj - win - 1, (n_pos, 2)),
        tilts_mrad=tilts,
        slice_thickness=6.0,
        wavelength=electron_wavelength(120),
        dx=0.4,
        occupancy=[0.6, 0.4],
        schedules={name: ParamSchedule(lr=1.0) for name in PARAMETER_NAMES},
        dtype=torch.float64,
    )


def loss_of(model: PtychoModel, weights: torch.Tensor) -> torch.Tensor:
    pred, _ = model(torch.arange(model.n_positions))
    return (weights * (pred + 1e-3).sqrt()).sum()


@pytest.mark.parametrize("per_position_tilts", [False, True])
@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_autograd_matches_finite_differences(name, per_position_tilts):
    model = small_model(per_position_tilts)
    model.set_iteration(1)
    weights = torch.rand(model.n_positions, *model.window, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    param = model.parameter(name)
    loss = loss_of(model, weights)
    (grad,) = torch.autograd.grad(loss, param)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0

    direction = torch.randn(param.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h = 1e-5 if name != "slice_thickness" else 1e-4
    with torch.no_grad():
        base = param.detach().clone()
        param.copy_(base + h * direction)
        plus = loss_of(model, weights)
        param.copy_(base - h * direction)
        minus = loss_of(model, weights)
        param.copy_(base)
    numeric = (plus - minus) / (2 * h)
    analytic = (grad * direction).sum()
    assert torch.isclose(analytic, numeric, rtol=1e-6, atol=1e-9), (float(analytic), float(numeric))

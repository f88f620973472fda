"""Autograd gradients of every optimizable tensor against central finite differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptyrad_core.kernel import fft as fftlib
from ptyrad_core.kernel.model import PARAMETER_NAMES, ParamSchedule, PtychoModel
from ptyrad_core.setup.optics import electron_wavelength, make_mixed_probe, make_probe


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


@pytest.mark.parametrize("backend", ["torch", "fftw"])
@pytest.mark.parametrize("per_position_tilts", [False, True])
@pytest.mark.parametrize("name", PARAMETER_NAMES)
def test_autograd_matches_finite_differences(name, per_position_tilts, backend):
    model = small_model(per_position_tilts)
    model.fft = fftlib.select(backend)
    model.set_iteration(1)
    weights = torch.rand(
        model.n_positions, *model.window, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
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


@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("backend", ["torch", "fftw"])
@pytest.mark.parametrize(
    "nz, omode, per_position, n",
    [
        (1, 1, False, 8),
        (3, 1, False, 8),
        (3, 2, True, 8),
        (4, 3, False, 8),
        (2, 1, False, 7),
        (2, 2, True, 9),
    ],
)
def test_hand_written_multislice_backward_equals_autograd(nz, omode, per_position, n, backend, chunk):
    """The hand-written adjoint equals autograd's, for the whole batch at once and in chunks of 2
    of the 3 positions (a full chunk and a remainder)."""
    from ptyrad_core.kernel import forward as fwd

    g = torch.Generator().manual_seed(nz * 10 + omode)

    def crandn(*shape):
        return torch.complex(
            torch.randn(*shape, dtype=torch.float64, generator=g),
            torch.randn(*shape, dtype=torch.float64, generator=g),
        )

    b, pmode = 3, 2
    inputs = {
        "probe": crandn(pmode, n, n),
        "ramps": crandn(b, n, n),
        "patches": crandn(nz, omode, b, n, n),
        "propagators": crandn(b if per_position else 1, n, n),
    }
    occupancy = torch.rand(omode, dtype=torch.float64, generator=g) + 0.1
    weight = torch.rand(b, n, n, dtype=torch.float64, generator=g)
    grads = {}
    fft = fftlib.select(backend)
    for name, fn in (
        ("custom", lambda **kw: fwd.multislice(**kw, fft=fft, chunk=chunk)),
        ("autograd", fwd.multislice_autograd),
    ):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
        out = fn(**leaves, occupancy=occupancy / occupancy.sum())
        got = torch.autograd.grad((out * weight).sum(), list(leaves.values()), allow_unused=True)
        grads[name] = (out, [torch.zeros_like(v) if d is None else d for v, d in zip(leaves.values(), got)])
    assert torch.allclose(grads["custom"][0], grads["autograd"][0], rtol=1e-12, atol=1e-12)
    for key, a, r in zip(inputs, grads["custom"][1], grads["autograd"][1]):
        assert torch.allclose(a, r, rtol=1e-10, atol=1e-10), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transmission_equals_polar_and_its_gradients(dtype):
    from ptyrad_core.kernel import forward as fwd

    g = torch.Generator().manual_seed(3)
    amplitude = torch.rand(2, 3, 9, 7, dtype=dtype, generator=g) + 0.5
    amplitude[0, 0, 0, 0] = 0.0  # a zero amplitude still has a phase gradient of 0 and an amplitude gradient
    phase = 4 * torch.randn(2, 3, 9, 7, dtype=dtype, generator=g)
    weight = torch.randn(2, 3, 9, 7, dtype=dtype, generator=g)
    out = {}
    for name, fn in (("custom", fwd.transmission), ("torch", torch.polar)):
        a, p = amplitude.clone().requires_grad_(True), phase.clone().requires_grad_(True)
        z = fn(a, p)
        loss = (weight * (z.real + 2 * z.imag) + z.abs().square()).sum()
        out[name] = (z.detach(), *torch.autograd.grad(loss, (a, p)))
    assert torch.equal(out["custom"][0], out["torch"][0])  # the forward is bit for bit polar's
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    elsewhere = amplitude != 0
    assert torch.allclose(out["custom"][1][elsewhere], out["torch"][1][elsewhere], rtol=tol, atol=tol)
    assert torch.allclose(out["custom"][2], out["torch"][2], rtol=tol, atol=tol)
    # at A = 0: d/dA (w (re + 2 im)) = w (cos + 2 sin), which autograd's sgn(0) = 0 loses
    expect = weight[0, 0, 0, 0] * (torch.cos(phase[0, 0, 0, 0]) + 2 * torch.sin(phase[0, 0, 0, 0]))
    assert torch.isclose(out["custom"][1][0, 0, 0, 0], expect, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "omode, nz, batch, window, threads",
    [(2, 3, 5, (8, 7), 1), (1, 1, 200, (9, 9), 2), (1, 1, 200, (9, 9), 3)],
)
def test_window_gather_equals_slicing_and_its_adjoint(omode, nz, batch, window, threads):
    """The patches are the object's windows, and their backward the scatter-add of autograd's
    slicing, also when the scatter is split into one partial sum per thread (one slice, many
    more window pixels than object pixels)."""
    from ptyrad_core.kernel import forward as fwd

    g = torch.Generator().manual_seed(4)
    ny, nx = 23, 19
    obj = torch.randn(omode, nz, ny, nx, dtype=torch.complex128, generator=g, requires_grad=True)
    crop = torch.stack(
        [
            torch.randint(0, ny - window[0] + 1, (batch,), generator=g),
            torch.randint(0, nx - window[1] + 1, (batch,), generator=g),
        ],
        dim=1,
    )
    weight = torch.randn(nz, omode, batch, *window, dtype=torch.complex128, generator=g)
    reference = torch.stack(
        [obj[:, :, y : y + window[0], x : x + window[1]] for y, x in crop.tolist()], dim=2
    )
    reference = reference.transpose(0, 1)  # (Nz, omode, B, Ny, Nx)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        patches = fwd.gather_patches(obj, fwd.window_rows(crop, window, nx), batch, window)
        (grad,) = torch.autograd.grad((weight * patches).real.sum(), obj)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(patches, reference)
    (expected,) = torch.autograd.grad((weight * reference).real.sum(), obj)
    assert torch.allclose(grad, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("p, eps", [(0.5, 1e-10), (0.2, 1e-6), (1.0, 0.0), (1.5, 0.0)])
def test_gaussian_loss_gradient_equals_autograd_of_its_formula(p, eps):
    """The Gaussian loss's written-out backward against autograd of the plain formula, with
    zero predictions (where ``x^(p-1)`` is 0 or 1, not 0/0) and at a perfect fit (gradient 0)."""
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    cls = get_plugin_manager(autoload=False).registry("loss").get("gaussian").cls
    term = cls(cls.Options(dp_pow=p, eps=eps))
    g = torch.Generator().manual_seed(5)
    pred = 3 * torch.rand(3, 6, 5, dtype=torch.float64, generator=g)
    pred[0, 0, :] = 0.0
    meas = 3 * torch.rand(3, 6, 5, dtype=torch.float64, generator=g)
    x = pred.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(term(x, meas, None), x)
    y = pred.clone().requires_grad_(True)
    meas_p = meas.pow(p)
    (expected,) = torch.autograd.grad((y + eps).pow(p).sub(meas_p).square().mean().sqrt() / meas_p.mean(), y)
    assert torch.isfinite(grad).all() == torch.isfinite(expected).all()
    assert torch.allclose(grad, expected, rtol=1e-12, atol=1e-14)
    if p >= 1:
        assert torch.isfinite(grad).all()
    perfect = pred[1:].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(term(perfect, (pred[1:] + eps), None), perfect)
    assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("n", [8, 9])
def test_ramps_on_the_centred_grid_equal_ramps_in_fft_order(n):
    """Shift ramps made on the centred frequency grid (as the model makes them) give the same
    patterns and the same shift gradients as ramps in FFT order, for even and odd windows."""
    from ptyrad_core.kernel import forward as fwd

    g = torch.Generator().manual_seed(n)
    probe = torch.randn(2, n, n, dtype=torch.complex128, generator=g)
    patches = torch.randn(3, 1, 4, n, n, dtype=torch.complex128, generator=g)
    propagators = torch.randn(1, n, n, dtype=torch.complex128, generator=g)
    weight = torch.rand(4, n, n, dtype=torch.float64, generator=g)
    fy, fx = fwd.frequency_grid((n, n), dtype=torch.float64)
    results = []
    for grid, centred in (((fy, fx), False), (fwd.centred(fy, fx), True)):
        shifts = torch.rand(
            4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        ).requires_grad_(True)
        out = fwd.multislice(
            probe, fwd.shift_ramps(shifts, *grid), patches, propagators, centred_ramps=centred
        )
        results.append((out, *torch.autograd.grad((out * weight).sum(), shifts)))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-10, atol=1e-10)

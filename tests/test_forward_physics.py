"""The forward engine against the independent abTEM simulations, and its internal consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import dataset, rel_error

from ptyrad_core.kernel import forward as fwd
from ptyrad_core.kernel.model import PtychoModel
from ptyrad_core.setup.optics import electron_wavelength, make_mixed_probe, make_probe


def model_from_truth(d, positions, probe=None):
    a = d["attrs"]
    ph = d["phase_slices"]
    return PtychoModel(
        object_amplitude=np.ones_like(ph)[None],
        object_phase=ph[None],
        probe=(d["probe"] if probe is None else probe)[None],
        positions_px=positions,
        tilts_mrad=np.asarray(a["tilt_mrad_yx"], float)[None],
        slice_thickness=a["slice_thickness_A"],
        wavelength=a["wavelength_A"],
        dx=a["dx_A"],
    )


@pytest.mark.parametrize("name", ["tiny.h5", "tiny_tilt.h5", "sto_small.h5"])
def test_forward_reproduces_abtem_patterns(name):
    """Ground-truth phase slices and probe at the true positions give the noiseless patterns."""
    d = dataset(name)
    pos = d["positions_true_px"]
    model = model_from_truth(d, pos)
    with torch.no_grad():
        pred, _ = model(torch.arange(len(pos)))
    meas = d["measurements_noiseless"].reshape(len(pos), 64, 64)
    pred = pred.numpy() * d["attrs"]["electrons_per_pattern"]
    assert rel_error(pred, meas) < 1e-4


def test_both_ways_of_cutting_patches_give_the_same_patterns_and_gradients():
    """Small batches build the transmission from amplitude / phase patches, large ones for the
    whole object first (model.PATCH_FIRST): the same patterns and object gradients either way."""
    from ptyrad_core.kernel import model as model_module

    d = dataset("sto_small.h5")
    pos = d["positions_true_px"]
    indices = torch.tensor([0, 7, 300, 575])
    out = {}
    for name, threshold in (("patches", 1e9), ("whole", 0.0)):
        model_module.PATCH_FIRST = threshold
        try:
            model = model_from_truth(d, pos)
            pred, _ = model(indices)
            (pred * torch.linspace(0, 1, pred.numel()).view_as(pred)).sum().backward()
        finally:
            model_module.PATCH_FIRST = 0.75
        out[name] = (pred.detach(), model.object_amplitude.grad.clone(), model.object_phase.grad.clone())
    for a, b in zip(out["patches"], out["whole"]):
        assert rel_error(a.numpy(), b.numpy()) < 1e-5
    assert float(out["whole"][2].abs().sum()) > 0


def test_true_positions_differ_from_nominal_at_the_tiny_edges():
    """In tiny.h5 the last scan row and column were simulated at 15.0 px, not the nominal 15.17 px
    (abTEM kept each window one pixel inside the 80 px object); the nominal positions give
    ~2e-2 errors there. sto_small.h5 has true == nominal."""
    d = dataset("tiny.h5")
    edge = np.any(d["positions_true_px"] != d["positions_nominal_px"], axis=1)
    assert edge.sum() == 15 and d["positions_true_px"].max() == 15.0
    with torch.no_grad():
        pred, _ = model_from_truth(d, d["positions_nominal_px"])(torch.arange(64))
    meas = d["measurements_noiseless"].reshape(64, 64, 64)
    assert rel_error(pred.numpy()[~edge], meas[~edge]) < 1e-4
    assert rel_error(pred.numpy()[edge], meas[edge]) > 1e-2
    s = dataset("sto_small.h5")
    assert np.array_equal(s["positions_true_px"], s["positions_nominal_px"])


def test_forward_is_sensitive_to_tilt_sign():
    """The same check with the tilt sign flipped fails by orders of magnitude (the test can fail)."""
    d = dataset("tiny_tilt.h5")
    d["attrs"]["tilt_mrad_yx"] = -np.asarray(d["attrs"]["tilt_mrad_yx"], float)
    pos = d["positions_true_px"]
    with torch.no_grad():
        pred, _ = model_from_truth(d, pos)(torch.arange(len(pos)))
    assert rel_error(pred.numpy(), d["measurements_noiseless"].reshape(-1, 64, 64)) > 1e-2


@pytest.mark.parametrize("name", ["tiny.h5", "sto_small.h5"])
def test_probe_from_parameters_matches_ground_truth(name):
    d = dataset(name)
    a = d["attrs"]
    probe = make_probe(64, a["dx_A"], a["energy_kV"], a["conv_angle_mrad"], {"defocus": a["defocus_A"]})
    assert abs(np.vdot(d["probe"], probe)) > 0.99
    # same intensity, opposite aberration sign: the complex overlap exposes it
    flipped = make_probe(64, a["dx_A"], a["energy_kV"], a["conv_angle_mrad"], {"C10": a["defocus_A"]})
    assert np.allclose(np.abs(flipped) ** 2, np.abs(probe) ** 2, atol=1e-6)
    assert abs(np.vdot(d["probe"], flipped)) < 0.2
    assert abs(a["wavelength_A"] - electron_wavelength(a["energy_kV"])) < 1e-6


def test_aberration_notations_agree():
    kw = dict(npix=32, dx=0.2, energy_kv=200, conv_angle_mrad=25)
    ref = make_probe(**kw, aberrations={"C10": -50, "C12": 20, "phi12": 30, "C30": 1e4})
    cart = make_probe(
        **kw,
        aberrations={
            "defocus": 50,
            "C12a": 20 * math.cos(math.radians(60)),
            "C12b": 20 * math.sin(math.radians(60)),
            "Cs": 1e4,
        },
    )
    haider = make_probe(**kw, aberrations={"C1": -50, "A1": 20, "A1phi": 30, "C3": 1e4})
    assert np.allclose(ref, cart) and np.allclose(ref, haider)


def test_mode_sum_equals_explicit_loop():
    rng = np.random.default_rng(3)
    pmode, omode, nz, win, n_obj, n_pos = 3, 2, 3, 16, 28, 5
    amp = 1 + 0.1 * rng.standard_normal((omode, nz, n_obj, n_obj))
    phase = rng.standard_normal((omode, nz, n_obj, n_obj))
    probe = make_mixed_probe(make_probe(win, 0.3, 200, 20, {"defocus": 30}), pmode, 0.1)
    pos = rng.uniform(0, n_obj - win - 1, (n_pos, 2))
    occ = np.array([0.7, 0.3])
    common = dict(
        positions_px=pos,
        tilts_mrad=rng.normal(0, 2, (n_pos, 2)),
        slice_thickness=4.0,
        wavelength=electron_wavelength(200),
        dx=0.3,
        dtype=torch.float64,
    )
    idx = torch.arange(n_pos)
    with torch.no_grad():
        full, _ = PtychoModel(object_amplitude=amp, object_phase=phase, probe=probe, occupancy=occ, **common)(
            idx
        )
        loop = torch.zeros_like(full)
        for m in range(pmode):
            for n in range(omode):
                single = PtychoModel(
                    object_amplitude=amp[n : n + 1],
                    object_phase=phase[n : n + 1],
                    probe=probe[m : m + 1],
                    **common,
                )
                loop += occ[n] * single(idx)[0]
    assert torch.allclose(full, loop, rtol=1e-10, atol=1e-12)


def test_integer_shift_ramp_is_a_roll():
    img = torch.randn(1, 16, 16, dtype=torch.complex128)
    fy, fx = fwd.frequency_grid((16, 16), dtype=torch.float64)
    shifted = torch.fft.ifft2(
        torch.fft.fft2(img) * fwd.shift_ramps(torch.tensor([[3.0, -2.0]], dtype=torch.float64), fy, fx)
    )
    assert torch.allclose(shifted, torch.roll(img, (3, -2), dims=(-2, -1)))


def test_tilted_propagation_shifts_the_wave_laterally():
    """Through vacuum, a tilt t moves the wave by -dz tan(t) per slice: +t_x moves it to -x.

    This is the convention of the shared data (abTEM's propagator), i.e. a tilt of the object
    (sample) relative to the beam. Mrad -> rad, dz and dx scalings all enter the comparison.
    """
    n, dx, dz, nz = 64, 0.2, 50.0, 5
    tilt = torch.tensor([[8.0, -4.0]], dtype=torch.float64)  # mrad
    lam = electron_wavelength(300)
    probe = torch.as_tensor(make_probe(n, dx, 300, 25, {}))[None]
    fy, fx = fwd.frequency_grid((n, n), dtype=torch.float64)
    dz_t = torch.tensor(dz, dtype=torch.float64)
    tilted = fwd.fresnel_propagator(fy, fx, dx, lam, dz_t, tilt)
    flat = fwd.fresnel_propagator(fy, fx, dx, lam, dz_t, tilt * 0)
    psi, ref = probe, probe
    for _ in range(nz):
        psi = torch.fft.ifft2(torch.fft.fft2(psi) * tilted)
        ref = torch.fft.ifft2(torch.fft.fft2(ref) * flat)

    def shift_px(a, b):
        """Circular translation of intensity b relative to a, from the first Fourier coefficients."""
        fa, fb = torch.fft.fft2(a.abs().square()[0]), torch.fft.fft2(b.abs().square()[0])
        dy = -torch.angle(fb[1, 0] / fa[1, 0]) * n / (2 * math.pi)
        dx_ = -torch.angle(fb[0, 1] / fa[0, 1]) * n / (2 * math.pi)
        return torch.stack([dy, dx_])

    moved_A = shift_px(ref, psi) * dx
    expected_A = -nz * dz * torch.tan(tilt[0] * 1e-3)
    assert torch.allclose(moved_A, expected_A, atol=1e-6)

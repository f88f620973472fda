"""Registration, registered phase error and Fourier ring correlation (ptyrad_core.apps.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, dataset
from rich.console import Console

from ptyrad_core.apps.metrics import (
    fourier_shift,
    frc,
    frc_command,
    load_projected_phase,
    phase_error,
    register_shift,
    registered_phase_error,
    taper_window,
)


def smooth_image(n=96, width=0.08, seed=0, shape=None):
    """A random, smooth (Gaussian low-pass) real image."""
    rng = np.random.default_rng(seed)
    ny, nx = shape or (n, n)
    f = np.hypot(np.fft.fftfreq(ny)[:, None], np.fft.fftfreq(nx)[None, :])
    return np.fft.ifft2(np.fft.fft2(rng.standard_normal((ny, nx))) * np.exp(-((f / width) ** 2))).real


def band_limited(n, dx, k_max, rng):
    """A random image whose spectrum is flat up to |k| < k_max (1/Angstrom) and zero beyond."""
    k = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) / dx
    return np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * (k < k_max)).real


# -- registration ------------------------------------------------------------------------------


def test_fourier_shift_convention_is_a_roll_for_integer_shifts():
    img = smooth_image(seed=1)
    assert np.allclose(fourier_shift(img, (3, -5)), np.roll(img, (3, -5), axis=(0, 1)))


def test_register_shift_sign_against_a_roll():
    """Independent of fourier_shift: content moved down 4 and left 7 reads (4, -7)."""
    img = smooth_image(seed=2)
    assert register_shift(img, np.roll(img, (4, -7), axis=(0, 1))) == pytest.approx((4.0, -7.0), abs=1e-9)
    assert register_shift(np.roll(img, (4, -7), axis=(0, 1)), img) == pytest.approx((-4.0, 7.0), abs=1e-9)


@pytest.mark.parametrize("normalization", ["phase", None])
@pytest.mark.parametrize("shift", [(0.3, -1.7), (5.55, 2.12), (-10.93, 0.04), (0.51, 0.49)])
def test_register_shift_recovers_subpixel_shifts(shift, normalization):
    img = smooth_image(shape=(96, 80), seed=3)
    found = register_shift(img, fourier_shift(img, shift), upsample=20, normalization=normalization)
    assert np.abs(np.subtract(found, shift)).max() < 0.05, found
    # without the upsampled refinement only a whole pixel is found
    coarse = register_shift(img, fourier_shift(img, shift), upsample=1, normalization=normalization)
    assert all(float(c).is_integer() for c in coarse) and np.abs(np.subtract(coarse, shift)).max() <= 0.51


def test_register_shift_upsampling_sets_the_precision():
    img = smooth_image(seed=4)
    shift = (1.234, -0.617)
    errors = [
        np.abs(np.subtract(register_shift(img, fourier_shift(img, shift), upsample=u), shift)).max()
        for u in (4, 50)
    ]
    assert errors[0] <= 0.5 / 4 + 1e-9 and errors[1] <= 0.5 / 50 + 1e-9
    assert errors[1] < errors[0]


def test_register_shift_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        register_shift(np.zeros((8, 8)), np.zeros((8, 9)))


def test_taper_windows():
    hann, tukey = taper_window((64, 32), "hann"), taper_window((64, 32), "tukey", 0.25)
    assert hann.shape == (64, 32) and hann.max() <= 1 and hann[0, 0] < 1e-2
    assert tukey[32, 16] == 1.0 and tukey[0, 0] < 1e-2
    assert np.array_equal(taper_window((5, 5), None), np.ones((5, 5)))
    assert np.allclose(taper_window((64, 64), "tukey", 1.0), taper_window((64, 64), "hann"))


# -- registered phase error --------------------------------------------------------------------


def test_registered_phase_error_removes_shift_and_offset():
    truth = smooth_image(n=128, seed=5)
    rng = np.random.default_rng(6)
    shift = (1.37, -2.21)
    recon = fourier_shift(truth, shift) + 0.8 + 0.01 * truth.std() * rng.standard_normal(truth.shape)
    region = (slice(20, 108), slice(16, 112))
    plain = phase_error(recon, truth, region)
    err, found = registered_phase_error(recon, truth, region)
    assert plain > 0.3  # unregistered: the shift dominates
    assert err < 0.015, err  # registered: the noise level (1 %)
    assert np.abs(np.subtract(found, shift)).max() < 0.01
    # default region: the central part that stays valid after the shift
    err_default, found_default = registered_phase_error(recon, truth)
    assert err_default < 0.015 and np.allclose(found_default, found, atol=0.01)


def test_registered_phase_error_of_identical_images_is_zero():
    truth = smooth_image(seed=7)
    err, shift = registered_phase_error(truth + 3.0, truth)
    assert err < 1e-10 and shift == (0.0, 0.0)


def test_registered_phase_error_on_shipped_ground_truth():
    """tiny's projected phase (sharp, non-periodic) moved by a sub-pixel amount or rolled by whole
    pixels is registered back; sub-pixel shifts of its near-Nyquist content are not exactly
    reversible, whole-pixel ones are."""
    truth = dataset("tiny.h5")["phase_projected"].astype(float)
    region = (slice(16, 64), slice(16, 64))
    shifted = fourier_shift(truth, (0.3, -0.2))
    err, found = registered_phase_error(shifted, truth, region)
    assert np.abs(np.subtract(found, (0.3, -0.2))).max() < 0.01
    assert err < 0.2 * phase_error(shifted, truth, region)
    rolled = np.roll(truth, (2, -1), axis=(0, 1))
    err, found = registered_phase_error(rolled, truth, region)
    assert np.abs(np.subtract(found, (2, -1))).max() < 1e-3 and err < 1e-3


# -- FRC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("k_max", [0.5, 0.8])
def test_frc_of_noisy_copies_finds_the_band_limit(k_max):
    """Two copies (one shifted by a sub-pixel amount) of a band-limited image with independent
    noise (SNR 1 in real space): the FRC crosses 1/7 within about a ring of the band limit."""
    n, dx = 256, 0.2
    rng = np.random.default_rng(8)
    base = band_limited(n, dx, k_max, rng)
    s = base.std()
    a = base + s * rng.standard_normal((n, n))
    b = fourier_shift(base, (0.4, -1.3)) + s * rng.standard_normal((n, n))
    r = frc(a, b, dx)
    assert r["resolution_A"] == pytest.approx(1 / k_max, rel=0.1)
    assert r["resolution_A"] < 1 / k_max  # the window spreads signal outward by <= 1 ring, never inward
    assert np.abs(np.subtract(r["shift_px"], (0.4, -1.3))).max() < 0.1
    below = r["frequency_invA"] < 0.9 * k_max
    assert r["frc"][1:][below[1:]].min() > 0.3
    beyond = r["frc"][r["frequency_invA"] > 1.2 * k_max]
    assert abs(beyond.mean()) < 0.02 and beyond.max() < 0.3
    assert r["half_bit"].shape == r["frc"].shape and np.all(r["half_bit"][1:] < 1)
    # frequencies are in 1/Angstrom: ring i at i / (n dx), up to Nyquist 1 / (2 dx)
    assert r["frequency_invA"][1] == pytest.approx(1 / (n * dx)) and r["frequency_invA"][-1] == pytest.approx(
        1 / (2 * dx)
    )


def test_frc_of_identical_images_is_one():
    img = np.random.default_rng(9).standard_normal((128, 96))  # power in every ring
    r = frc(img, img, 0.3)
    assert np.allclose(r["frc"][1:], 1.0, atol=1e-12)
    assert r["resolution_A"] is None and r["resolution_half_bit_A"] is None


def test_frc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(10)
    r = frc(rng.standard_normal((256, 256)), rng.standard_normal((256, 256)), 0.2)
    assert np.abs(r["frc"][10:]).mean() < 0.1
    assert abs(r["frc"][10:].mean()) < 0.03
    assert r["resolution_A"] > 10  # drops below 1/7 within the first few rings


def test_frc_needs_same_shape():
    with pytest.raises(ValueError):
        frc(np.zeros((16, 16)), np.zeros((16, 8)), 0.2)


# -- the command -------------------------------------------------------------------------------


def test_load_projected_phase_of_a_dataset():
    d = load_projected_phase(DATA / "tiny.h5")
    assert d["kind"] == "ground truth" and d["image"].shape == (80, 80)
    assert d["region"] == (slice(32, 48), slice(32, 48))  # nominal window centres, 8 x 8 raster
    assert d["dx_A"] == pytest.approx(0.19525)


def test_frc_command_prints_and_plots(tmp_path):
    console = Console(record=True, width=120)
    out = tmp_path / "frc.png"
    result = frc_command(DATA / "sto_small.h5", DATA / "sto_small.h5", out, console=console)
    text = console.export_text()
    assert "Fourier ring correlation" in text and "not reached" in text
    assert result["resolution_A"] is None and np.allclose(result["frc"][1:], 1.0)
    assert result["region"] == ((36, 84), (36, 84))  # window centres 4.44 + 32 .. 51.56 + 32
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result["plot"] is None and not out.exists()
    else:
        assert result["plot"] == str(out) and out.stat().st_size > 1000

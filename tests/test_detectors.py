"""Detector stages (psf_blur, crop/resample/bin_simulation, pad/resample_measurements) and object_blur.

Each stage against a plain NumPy formula written here, the sampling (dx) each stage implies,
the PSF against the abTEM data, gradients, and short reconstructions through the engine.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import dataset, rel_error
from pydantic import ValidationError

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel import detector as detector_grid
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import ConfigError
from ptyrad_core.kernel.model import PtychoModel
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.setup.initialize import Data, sampling
from ptyrad_core.setup.optics import electron_wavelength, make_probe
from ptyrad_core.setup.preprocess import PreprocessResult
from ptyrad_core_plugins.detectors import bin_simulation as detector_bin_simulation
from ptyrad_core_plugins.detectors import crop_simulation as detector_crop_simulation
from ptyrad_core_plugins.detectors import pad_measurements as detector_pad_measurements
from ptyrad_core_plugins.detectors import psf_blur as detector_psf_blur
from ptyrad_core_plugins.detectors import resample_measurements as detector_resample_measurements
from ptyrad_core_plugins.detectors import resample_simulation as detector_resample_simulation
from ptyrad_core_plugins.detectors.bin_simulation import BinSimulation
from ptyrad_core_plugins.detectors.crop_simulation import CropSimulation
from ptyrad_core_plugins.detectors.pad_measurements import (
    PadMeasurements,
    background_canvas,
    fit_background,
    one_hot_mask,
)
from ptyrad_core_plugins.detectors.psf_blur import PSFBlur
from ptyrad_core_plugins.detectors.resample_measurements import ResampleMeasurements
from ptyrad_core_plugins.detectors.resample_simulation import ResampleSimulation
from ptyrad_core_plugins.forward import object_blur as forward_object_blur
from ptyrad_core_plugins.forward.object_blur import ObjectBlur

MODULES = [
    detector_psf_blur,
    detector_crop_simulation,
    detector_resample_simulation,
    detector_bin_simulation,
    detector_pad_measurements,
    detector_resample_measurements,
    forward_object_blur,
]
DX = 0.19525
DK = 1 / (64 * DX)


@pytest.fixture
def pm(register_inline):
    """A plugin manager with these modules, registered inline unless their entry points already are."""
    base = get_plugin_manager(autoload=False)
    return register_inline(*[m for m in MODULES if not base.is_registered(m)])


def make(cls, **options):
    return cls(cls.Options(**options))


def gaussian_pattern(n: int, sigma: float, centre=None, dtype=np.float64) -> np.ndarray:
    c = n // 2 if centre is None else centre
    y, x = np.indices((n, n))
    return np.exp(-((y - c) ** 2 + (x - c) ** 2) / (2 * sigma**2)).astype(dtype)


def centroid(img: np.ndarray) -> tuple[float, float]:
    y, x = np.indices(img.shape)
    return float((y * img).sum() / img.sum()), float((x * img).sum() / img.sum())


def interp_axis(a: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` at coordinates ``x`` along ``axis`` (clamped at the ends)."""
    return np.apply_along_axis(lambda row: np.interp(x, np.arange(len(row)), row), axis, a)


# ---------------------------------------------------------------------------------------------
# psf_blur
# ---------------------------------------------------------------------------------------------


def numpy_blur(a: np.ndarray, std: float, size: int) -> np.ndarray:
    """Explicit 2-D convolution with a normalised Gaussian, reflect padding (mirror without edge)."""
    t = np.arange(size) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * std**2))
    k2 = np.outer(g, g) / g.sum() ** 2
    h = size // 2
    out = np.zeros_like(a)
    for img, o in zip(a, out):
        p = np.pad(img, h, mode="reflect")
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                o[i, j] = (p[i : i + size, j : j + size] * k2).sum()
    return out


@pytest.mark.parametrize("std, kernel_size, expected_size", [(0.5, None, 5), (1.3, None, 9), (0.8, 7, 7)])
def test_psf_blur_equals_numpy_convolution(std, kernel_size, expected_size):
    a = np.random.default_rng(1).random((2, 14, 17))
    stage = make(PSFBlur, std=std, kernel_size=kernel_size)
    assert stage.size == expected_size
    out = stage(torch.from_numpy(a), None).numpy()
    assert np.allclose(out, numpy_blur(a, std, expected_size), rtol=1e-12, atol=1e-12)
    # a normalised kernel keeps the interior total: a pattern that vanishes near the edges
    g = gaussian_pattern(32, 2.0)[None]
    assert abs(stage(torch.from_numpy(g), None).sum().item() - g.sum()) < 1e-9 * g.sum()


def test_psf_blur_options_are_checked():
    with pytest.raises(ValidationError):
        PSFBlur.Options(std=0.5, kernel_size=4)
    with pytest.raises(ValidationError):
        PSFBlur.Options(std=0)
    with pytest.raises(ValidationError):
        PSFBlur.Options(std=0.5, sigma=1)
    with pytest.raises(ConfigError, match="reflect padding"):
        make(PSFBlur, std=0.5, kernel_size=21).measurement_grid((8, 8), DK)


# ---------------------------------------------------------------------------------------------
# crop_simulation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, m", [(96, 64), (80, 64), (81, 64), (65, 64), (64, 63), (96, 65), (64, 64)])
def test_crop_simulation_is_centred_slicing(n, m):
    stage = make(CropSimulation, npix=n)
    assert stage.simulation_grid((m, m), DK) == ((n, n), DK)
    a = np.random.default_rng(2).random((3, n, n))
    out = stage(torch.from_numpy(a), None).numpy()
    s = n // 2 - m // 2
    assert np.array_equal(out, a[:, s : s + m, s : s + m])
    delta = np.zeros((1, n, n))
    delta[0, n // 2, n // 2] = 1
    assert np.unravel_index(stage(torch.from_numpy(delta), None).numpy()[0].argmax(), (m, m)) == (
        m // 2,
        m // 2,
    )
    if not (n % 2 == 0 and m % 2 == 1):  # PtyRAD's center_crop start agrees except for even n, odd m
        assert s == (n - m) // 2


def test_crop_simulation_rejects_a_smaller_window():
    with pytest.raises(ConfigError, match="smaller"):
        make(CropSimulation, npix=48).simulation_grid((64, 64), DK)


# ---------------------------------------------------------------------------------------------
# resample_simulation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, m", [(96, 64), (48, 64), (100, 64), (64, 64)])
def test_resample_simulation_equals_numpy_bilinear(n, m):
    a = np.random.default_rng(3).random((2, n, n))
    i = np.arange(m)
    scale = (n / m) ** 2
    for align, x in [("zero_frequency", n // 2 + (i - m // 2) * n / m), ("edges", (i + 0.5) * n / m - 0.5)]:
        stage = make(ResampleSimulation, npix=n, align=align)
        assert stage.simulation_grid((m, m), DK) == ((n, n), DK * m / n)
        out = stage(torch.from_numpy(a), None).numpy()
        ref = interp_axis(interp_axis(a, x, 1), x, 2) * scale
        assert np.allclose(out, ref, rtol=1e-10, atol=1e-12), align
    # 'edges' is PtyRAD's call: interpolate(size=M, bilinear) / (M / N)^2
    t = torch.from_numpy(a.astype(np.float32))
    ptyrad = F.interpolate(t[:, None], size=[m, m], mode="bilinear")[:, 0] / (m / n) ** 2
    stage = make(ResampleSimulation, npix=n, align="edges")
    stage.simulation_grid((m, m), DK)
    assert torch.allclose(stage(t, None), ptyrad, rtol=1e-5, atol=1e-6)


def test_resample_simulation_zero_frequency_and_total():
    n, m = 96, 64
    delta = np.zeros((1, n, n))
    delta[0, n // 2, n // 2] = 1
    stage = make(ResampleSimulation, npix=n)
    stage.simulation_grid((m, m), DK)
    out = stage(torch.from_numpy(delta), None).numpy()[0]
    assert out[m // 2, m // 2] == pytest.approx((n / m) ** 2) and np.count_nonzero(out) == 1
    g = gaussian_pattern(n, 6.0)[None]
    zf = stage(torch.from_numpy(g), None).numpy()[0]
    assert zf.sum() == pytest.approx(g.sum(), rel=1e-4)
    assert centroid(zf) == pytest.approx((m // 2, m // 2), abs=1e-6)
    edges = make(ResampleSimulation, npix=n, align="edges")
    edges.simulation_grid((m, m), DK)
    out = edges(torch.from_numpy(g), None).numpy()[0]
    off = (1 - m / n) / 2  # PtyRAD's mapping: zero frequency 1/6 px before M // 2
    assert centroid(out) == pytest.approx((m // 2 - off, m // 2 - off), abs=1e-4)


# ---------------------------------------------------------------------------------------------
# bin_simulation
# ---------------------------------------------------------------------------------------------


def numpy_binning(a: np.ndarray, f: int, weights: list[float], first_tap: int) -> np.ndarray:
    """Output i sums sim pixels c_i + first_tap + t (t = 0 .. len(weights)-1, indices mod N) with the
    weights."""
    n = a.shape[-1]
    m = n // f
    w = np.zeros((m, n))
    for i in range(m):
        c = n // 2 + (i - m // 2) * f
        for t, wt in enumerate(weights):
            w[i, (c + first_tap + t) % n] += wt
    return w @ a @ w.T


@pytest.mark.parametrize("m", [16, 15])
@pytest.mark.parametrize("f", [1, 2, 3, 4])
@pytest.mark.parametrize("even", ["trapezoid", "block"])
def test_bin_simulation_equals_numpy_sums(m, f, even):
    n = m * f
    stage = make(BinSimulation, factor=f, even=even)
    assert stage.simulation_grid((m, m), DK) == ((n, n), DK / f)
    a = np.random.default_rng(4).random((2, n, n))
    out = stage(torch.from_numpy(a), None).numpy()
    if f % 2 == 1:
        ref = numpy_binning(a, f, [1.0] * f, -(f - 1) // 2)
    elif even == "trapezoid":
        ref = numpy_binning(a, f, [0.5] + [1.0] * (f - 1) + [0.5], -f // 2)
    else:
        ref = numpy_binning(a, f, [1.0] * f, -(f // 2 - 1))
    assert np.allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(out.sum(axis=(1, 2)), a.sum(axis=(1, 2)), rtol=1e-12)
    if m % 2 == 0 and (f == 2 and even == "block" or f == 1):
        # plain factor x factor blocks: numpy reshape-sum (avg_pool2d * f^2)
        assert np.allclose(out, a.reshape(2, m, f, m, f).sum(axis=(2, 4)), rtol=1e-12)
    if m % 2 == 0 and f == 3:
        # odd factor: blocks centred on the frequencies, i.e. reshape-sum after a roll by (f - 1) / 2
        rolled = np.roll(a, 1, axis=(1, 2))
        assert np.allclose(out, rolled.reshape(2, m, f, m, f).sum(axis=(2, 4)), rtol=1e-12)


@pytest.mark.parametrize("f", [2, 3, 4])
@pytest.mark.parametrize("even", ["trapezoid", "block"])
def test_bin_simulation_zero_frequency(f, even):
    m = 32
    n = m * f
    stage = make(BinSimulation, factor=f, even=even)
    delta = np.zeros((1, n, n))
    delta[0, n // 2, n // 2] = 1
    out = stage(torch.from_numpy(delta), None).numpy()[0]
    assert out[m // 2, m // 2] == 1.0 and out.sum() == 1.0
    # a pattern centred on zero frequency stays centred, except plain blocks of an even factor
    g = gaussian_pattern(n, 1.5 * f)[None]
    cy, cx = centroid(stage(torch.from_numpy(g), None).numpy()[0])
    shift = 1 / (2 * f) if (f % 2 == 0 and even == "block") else 0.0
    assert cy == pytest.approx(m // 2 - shift, abs=1e-6) and cx == pytest.approx(m // 2 - shift, abs=1e-6)
    if f % 2 == 0 and even == "trapezoid":
        # a delta on the edge between two detector pixels is split between them
        edge = np.zeros((1, n, n))
        edge[0, n // 2, n // 2 + f // 2] = 1
        out = stage(torch.from_numpy(edge), None).numpy()[0]
        assert out[m // 2, m // 2] == 0.5 and out[m // 2, m // 2 + 1] == 0.5


# ---------------------------------------------------------------------------------------------
# pad_measurements
# ---------------------------------------------------------------------------------------------


def ptyrad_pad_reference(mean, npix, padding, value):
    """PtyRAD's _meas_pad background for constant / edge / linear_ramp (transcribed)."""
    amp = np.sqrt(mean)
    h = amp.shape[0]
    p1 = (npix - h) // 2
    pads = ((p1, npix - h - p1),) * 2
    kw = {"constant": dict(constant_values=value), "edge": {}, "linear_ramp": dict(end_values=value)}[padding]
    bg = np.square(np.pad(amp, pads, mode=padding, **kw))
    bg[p1 : p1 + h, p1 : p1 + h] = 0
    return bg


@pytest.fixture(scope="module")
def tiny_meas():
    return Measurements(dataset("tiny.h5")["measurements"], "tiny.h5")


@pytest.mark.parametrize("padding", ["constant", "edge", "linear_ramp", "exp", "power"])
def test_pad_measurements_canvas(tiny_meas, padding):
    npix, m = 96, 64
    stage = make(PadMeasurements, npix=npix, padding=padding, value=0.3)
    stage.prepare(tiny_meas)
    assert stage.measurement_grid((m, m), DK) == ((npix, npix), DK)
    assert "canvas" in dict(stage.named_buffers())
    idx = torch.tensor([0, 5, 63])
    meas = torch.from_numpy(tiny_meas.read(np.arange(tiny_meas.n)))[idx]
    out = stage.measurements(meas, None)
    assert out.shape == (3, npix, npix)
    s = 16
    assert torch.equal(out[:, s : s + m, s : s + m], meas)
    outside = np.ones((npix, npix), bool)
    outside[s : s + m, s : s + m] = False
    canvas = stage.canvas.numpy()
    assert np.array_equal(out.numpy()[:, outside], np.broadcast_to(canvas[outside], (3, outside.sum())))
    assert np.all(canvas[~outside] == 0) and np.all(canvas >= 0)
    mean = tiny_meas.read(np.arange(tiny_meas.n)).mean(0, dtype=np.float64)
    if padding in ("constant", "edge", "linear_ramp"):
        assert np.allclose(canvas, ptyrad_pad_reference(mean, npix, padding, 0.3), rtol=1e-6, atol=1e-9)
    else:
        a, b = fit_background(np.sqrt(mean), one_hot_mask(np.sqrt(mean), 70), padding)
        y, x = np.indices((npix, npix))
        r = np.hypot(y - npix // 2, x - npix // 2) + 1e-10
        ref = (a * (np.exp(-b * r) if padding == "exp" else r ** (-b))) ** 2
        assert np.allclose(canvas[outside], ref[outside], rtol=1e-5)
        # the background decays away from the pattern, and is a small fraction of the measured total
        assert canvas[0, 0] < canvas[s - 1, npix // 2] and canvas.sum() < 0.2 * mean.sum()


@pytest.mark.parametrize("kind", ["exp", "power"])
def test_background_fit_matches_curve_fit(kind):
    """PtyRAD fits with scipy.optimize.curve_fit (bounds a, b >= 0); the scipy-free fit finds the same
    optimum."""
    optimize = pytest.importorskip("scipy.optimize")
    mean = dataset("tiny.h5")["measurements"].reshape(-1, 64, 64).mean(0)
    amp = np.sqrt(mean).astype(np.float32)
    mask = one_hot_mask(amp, 70)
    y, x = np.indices(amp.shape)
    r = np.hypot(x - 32, y - 32) + 1e-10
    model = (lambda r, a, b: a * np.exp(-b * r)) if kind == "exp" else (lambda r, a, b: a * r ** (-b))
    p0 = [amp[mask].max(), 0.1 if kind == "exp" else 1.0]
    ref, _ = optimize.curve_fit(
        model, r[mask], amp[mask], p0=p0, bounds=([0, 0], [np.inf, np.inf]), maxfev=10000
    )
    got = fit_background(amp, mask, kind)
    assert got == pytest.approx(tuple(ref), rel=1e-3)


def test_background_fit_recovers_known_parameters():
    y, x = np.indices((48, 48))
    r = np.hypot(y - 24, x - 24) + 1e-10
    for kind, truth in [("exp", (3.0, 0.15)), ("power", (40.0, 1.7))]:
        img = truth[0] * (np.exp(-truth[1] * r) if kind == "exp" else r ** (-truth[1]))
        assert fit_background(img, r > 6, kind) == pytest.approx(truth, rel=1e-6)


def test_pad_measurements_keeps_zero_frequency_for_odd_patterns():
    meas = Measurements(np.ones((2, 63, 63), np.float32), "odd")
    stage = make(PadMeasurements, npix=96, padding="constant", value=0.0)
    stage.prepare(meas)
    delta = torch.zeros(1, 63, 63)
    delta[0, 31, 31] = 1
    out = stage.measurements(delta, None)[0]
    assert out[48, 48] == 1 and out.sum() == 1
    canvas, corner = background_canvas(np.ones((63, 63)), 96, "constant", 2.0)
    assert corner == (17, 17) and canvas[0, 0] == 4.0 and canvas[17:80, 17:80].sum() == 0


def test_pad_measurements_order_and_size_are_checked(tiny_meas):
    with pytest.raises(ConfigError, match="smaller"):
        make(PadMeasurements, npix=48, padding="edge").prepare(tiny_meas)
    stage = make(PadMeasurements, npix=96, padding="edge")
    stage.prepare(tiny_meas)
    with pytest.raises(ConfigError, match="list pad_measurements first"):
        detector_grid.compare_grid([make(ResampleMeasurements, scale=1.5), stage], (64, 64), DK)


# ---------------------------------------------------------------------------------------------
# resample_measurements
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, size", [(1.5, 96), (0.5, 32), (0.7, 44), (2.0, 128)])
def test_resample_measurements_shape_total_and_numpy_reference(scale, size):
    m = 64
    stage = make(ResampleMeasurements, scale=scale)
    grid = stage.measurement_grid((m, m), DK)
    assert grid[0] == (size, size) and grid[1] == pytest.approx(DK * m / size)
    a = np.random.default_rng(5).random((2, m, m))
    out = stage.measurements(torch.from_numpy(a), None).numpy()
    i = np.arange(size)
    x = m // 2 + (i - size // 2) * m / size
    ref = interp_axis(interp_axis(a, x, 1), x, 2) / scale**2
    assert np.allclose(out, ref, rtol=1e-10, atol=1e-12)
    g = gaussian_pattern(m, 5.0)[None]
    res = stage.measurements(torch.from_numpy(g), None).numpy()[0]
    assert res.sum() == pytest.approx(g.sum() * (m / size * scale) ** -2, rel=1e-3)
    assert centroid(res) == pytest.approx((size // 2, size // 2), abs=1e-6)


def test_resample_measurements_edges_is_ptyrads_loader():
    m, scale = 64, 1.5
    a = torch.from_numpy(np.random.default_rng(6).random((2, m, m)).astype(np.float32))
    stage = make(ResampleMeasurements, scale=scale, align="edges")
    stage.measurement_grid((m, m), DK)
    ptyrad = F.interpolate(a[:, None], scale_factor=(scale, scale), mode="bilinear")[:, 0] / (scale * scale)
    assert torch.allclose(stage.measurements(a, None), ptyrad, rtol=1e-5, atol=1e-6)
    g = torch.from_numpy(gaussian_pattern(m, 5.0))[None]
    cy, _ = centroid(stage.measurements(g, None).numpy()[0])
    assert cy == pytest.approx(96 // 2 + (scale - 1) / 2, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# sampling: the simulation window and dx each chain implies
# ---------------------------------------------------------------------------------------------

CHAINS = [
    ([], 64, DX),
    ([(CropSimulation, dict(npix=96))], 96, DX * 64 / 96),
    ([(CropSimulation, dict(npix=96)), (PSFBlur, dict(std=0.5))], 96, DX * 64 / 96),
    ([(ResampleSimulation, dict(npix=96))], 96, DX),
    ([(ResampleSimulation, dict(npix=48))], 48, DX),
    ([(BinSimulation, dict(factor=2))], 128, DX),
    ([(PSFBlur, dict(std=0.5))], 64, DX),
    ([(PadMeasurements, dict(npix=96, padding="edge"))], 96, DX * 64 / 96),
    ([(ResampleMeasurements, dict(scale=1.5))], 96, DX),
    (
        [(PadMeasurements, dict(npix=80, padding="exp")), (ResampleMeasurements, dict(scale=0.8))],
        64,
        DX * 64 / 80,
    ),
    ([(PadMeasurements, dict(npix=80, padding="power")), (CropSimulation, dict(npix=96))], 96, DX * 64 / 96),
    ([(ResampleMeasurements, dict(scale=0.5)), (BinSimulation, dict(factor=2))], 64, DX),
]


@pytest.mark.parametrize("chain, window, dx", CHAINS)
def test_sampling_of_detector_chains(tiny_config, tiny_meas, chain, window, dx):
    config = build_config(tiny_config())
    stages = [make(cls, **opts) for cls, opts in chain]
    for stage in stages:
        stage.prepare(tiny_meas)
    tiny_meas.as_patterns()
    data = Data(
        tiny_meas,
        PreprocessResult((64, 64), None, 1.0, None, (8, 8)),
        dk=1 / (64 * 0.19525),
        wavelength=electron_wavelength(300),
    )
    got_window, got_dx = sampling(config, data, stages)
    assert got_window == (window, window)
    assert got_dx == pytest.approx(dx, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# physics and gradients
# ---------------------------------------------------------------------------------------------


def test_psf_blur_on_the_abtem_patterns():
    """Ground truth through psf_blur (std 0.5) = the noiseless tiny.h5 patterns blurred in NumPy."""
    d = dataset("tiny.h5")
    a = d["attrs"]
    pos = d["positions_true_px"]
    ph = d["phase_slices"]
    model = PtychoModel(
        object_amplitude=np.ones_like(ph)[None],
        object_phase=ph[None],
        probe=d["probe"][None],
        positions_px=pos,
        tilts_mrad=np.asarray(a["tilt_mrad_yx"], float)[None],
        slice_thickness=a["slice_thickness_A"],
        wavelength=a["wavelength_A"],
        dx=a["dx_A"],
        detectors=[make(PSFBlur, std=0.5)],
    )
    with torch.no_grad():
        pred, _ = model(torch.arange(len(pos)))
    pred = pred.numpy() * a["electrons_per_pattern"]
    clean = d["measurements_noiseless"].reshape(-1, 64, 64).astype(np.float64)
    blurred = np.stack([numpy_blur(p[None], 0.5, 5)[0] for p in clean[:6]])
    assert rel_error(pred[:6], blurred) < 1e-4
    assert rel_error(pred[:6], clean[:6]) > 1e-2  # the blur is visible at this tolerance


STAGES = [
    (PSFBlur, dict(std=0.7), 12),
    (CropSimulation, dict(npix=15), 12),
    (ResampleSimulation, dict(npix=18), 12),
    (ResampleSimulation, dict(npix=9, align="edges"), 12),
    (BinSimulation, dict(factor=2), 6),
    (BinSimulation, dict(factor=3), 4),
    (BinSimulation, dict(factor=2, even="block"), 6),
]


@pytest.mark.parametrize("cls, options, m", STAGES)
def test_stage_gradients_are_exact(cls, options, m):
    stage = make(cls, **options)
    (n, _), _ = stage.simulation_grid((m, m), DK)
    x = torch.rand(2, n, n, dtype=torch.float64, requires_grad=True)
    assert stage(x, None).shape == (2, m, m)
    assert torch.autograd.gradcheck(lambda t: stage(t, None), (x,))


def small_model(window, detectors=(), extensions=()):
    rng = np.random.default_rng(7)
    dx = 0.3
    shape = (1, 2, window + 12, window + 12)
    return PtychoModel(
        object_amplitude=1 + 0.05 * rng.standard_normal(shape),
        object_phase=0.3 * rng.standard_normal(shape),
        probe=make_probe(window, dx, 200, 20, {"defocus": 40})[None] * 10,
        positions_px=rng.uniform(0, 10, (4, 2)),
        tilts_mrad=np.zeros((1, 2)),
        slice_thickness=3.0,
        wavelength=electron_wavelength(200),
        dx=dx,
        detectors=list(detectors),
        extensions=list(extensions),
    )


@pytest.mark.parametrize(
    "chain",
    [
        [(PSFBlur, dict(std=0.5))],
        [(CropSimulation, dict(npix=40)), (PSFBlur, dict(std=0.5))],
        [(ResampleSimulation, dict(npix=40))],
        [(BinSimulation, dict(factor=2))],
        [(PadMeasurements, dict(npix=40, padding="exp")), (ResampleMeasurements, dict(scale=0.8))],
    ],
)
def test_gradient_reaches_the_probe_through_the_chain(chain):
    m = 32
    meas = Measurements(np.random.default_rng(8).random((4, m, m)).astype(np.float32) + 0.1, "random")
    stages = [make(cls, **opts) for cls, opts in chain]
    for stage in stages:
        stage.prepare(meas)
    window, _ = detector_grid.simulation_grid(stages, *detector_grid.compare_grid(stages, (m, m), DK))
    model = small_model(window[0], stages)
    model.set_iteration(1)
    model.probe_ri.requires_grad_(True)
    pred, batch = model(torch.arange(4))
    target = torch.from_numpy(meas.read(np.arange(meas.n)))
    for stage in stages:
        if stage.transforms_measurements():
            target = stage.measurements(target, batch)
    assert pred.shape == target.shape
    ((pred - target) ** 2).sum().backward()
    grad = model.probe_ri.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.slow  # gradcheck over 440 inputs, each of three
@pytest.mark.parametrize("obj_type", ["amplitude", "phase", "both"])
def test_object_blur(obj_type):
    ext = make(ObjectBlur, std=0.8, obj_type=obj_type)
    assert ext.overrides("object") and not ext.overrides("patterns")
    amp = torch.rand(1, 2, 10, 11, dtype=torch.float64, requires_grad=True)
    phase = torch.rand(1, 2, 10, 11, dtype=torch.float64, requires_grad=True)
    a2, p2 = ext.object(amp, phase, None)
    ref_a = numpy_blur(amp.detach().numpy().reshape(2, 10, 11), 0.8, 5).reshape(amp.shape)
    ref_p = numpy_blur(phase.detach().numpy().reshape(2, 10, 11), 0.8, 5).reshape(amp.shape)
    want_a = ref_a if obj_type != "phase" else amp.detach().numpy()
    want_p = ref_p if obj_type != "amplitude" else phase.detach().numpy()
    assert np.allclose(a2.detach().numpy(), want_a, atol=1e-12) and np.allclose(
        p2.detach().numpy(), want_p, atol=1e-12
    )
    assert torch.autograd.gradcheck(lambda a, p: ext.object(a, p, None), (amp, phase))
    # inside the model: the object's gradient flows through the blur
    model = small_model(24, extensions=[ext])
    model.set_iteration(1)
    model.object_phase.requires_grad_(True)
    model(torch.arange(4))[0].sum().backward()
    assert torch.isfinite(model.object_phase.grad).all() and model.object_phase.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# reconstructions through the engine
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "detector, forward, window, dx",
    [
        (
            [
                {"name": "crop_simulation", "options": {"npix": 80}},
                {"name": "psf_blur", "options": {"std": 0.5}},
            ],
            [],
            80,
            DX * 64 / 80,
        ),
        (
            [
                {"name": "pad_measurements", "options": {"npix": 80, "padding": "power"}},
                {"name": "resample_measurements", "options": {"scale": 0.8}},
            ],
            [],
            64,
            DX * 64 / 80,
        ),
        (
            [{"name": "resample_simulation", "options": {"npix": 48}}],
            [{"name": "object_blur", "options": {"std": 0.5}}],
            48,
            DX,
        ),
    ],
)
def test_reconstruction_with_detector_chain(pm, tiny_config, detector, forward, window, dx):
    cfg = tiny_config(detector=detector, forward=forward)
    cfg["recon"]["iterations"] = 4
    cfg["output"]["log_file"] = False
    run = Reconstruction(build_config(cfg), pm=pm, quiet=True)
    assert run.model.window == (window, window) and run.model.dx == pytest.approx(dx)
    run.run()
    loss = run.history["loss"]
    assert len(loss) == 4 and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0]

"""ptyrad-partial-coherence: the quadrature, the defocused probes against ptyrad_core's own probe
maker, the patterns against a dense numerical defocus average in plain NumPy, discovery, and a
reconstruction on tiny.h5."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ppc = pytest.importorskip("ptyrad_partial_coherence")

from ptyrad_partial_coherence import DefocusSpread, defocus_samples  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from ptyrad_core.kernel.model import PtychoModel  # noqa: E402
from ptyrad_core.setup.optics import electron_wavelength, make_probe  # noqa: E402

KV, CONV, DX, NPIX, DEFOCUS = 300.0, 21.4, 0.25, 48, 80.0
trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy < 2 has only trapz


def test_quadrature_reproduces_the_gaussian_moments():
    sigma = 30.0
    for n in (3, 5, 8):
        delta, w = defocus_samples(sigma, n)
        assert w.sum() == pytest.approx(1.0, rel=1e-12)
        assert np.sum(w * delta) == pytest.approx(0.0, abs=1e-9)
        assert np.sum(w * delta**2) == pytest.approx(sigma**2, rel=1e-12)
        assert np.sum(w * delta**4) == pytest.approx(3 * sigma**4, rel=1e-12)
    assert 0.0 in defocus_samples(sigma, 5)[0]


def _model(extension=None, omode_phase=None):
    rng = np.random.default_rng(0)
    phase = omode_phase if omode_phase is not None else 0.5 * rng.normal(size=(1, 1, 60, 60))
    probe = make_probe(NPIX, DX, KV, CONV, {"defocus": DEFOCUS})
    return (
        PtychoModel(
            object_amplitude=np.ones_like(phase),
            object_phase=phase,
            probe=probe[None],
            positions_px=np.array([[3.0, 5.0], [10.0, 2.0], [7.0, 9.0]]),
            tilts_mrad=np.zeros((1, 2)),
            slice_thickness=1.0,
            wavelength=electron_wavelength(KV),
            dx=DX,
            extensions=[extension] if extension else [],
            dtype=torch.float64,
        ),
        phase,
        probe,
    )


def test_each_mode_is_the_probe_made_at_the_shifted_defocus():
    ext = DefocusSpread(DefocusSpread.Options(focal_spread_A=40.0, n_samples=3))
    model, _, probe = _model(ext)
    modes = ext.probe(model.probe, model).detach().numpy()
    assert modes.shape == (3, NPIX, NPIX)
    for mode, delta, w in zip(modes, ext.delta, ext.weights):
        expected = make_probe(NPIX, DX, KV, CONV, {"defocus": DEFOCUS + delta})  # ptyrad_core's convention
        np.testing.assert_allclose(mode, np.sqrt(w) * expected, atol=1e-10)
    assert np.sum(np.abs(modes) ** 2) == pytest.approx(np.sum(np.abs(probe) ** 2), rel=1e-12)


def _plain_pattern(phase, corner, defocus):
    """|F_ortho[O P_defocus]|^2, zero frequency centred: one slice, integer position, plain NumPy."""
    p = make_probe(NPIX, DX, KV, CONV, {"defocus": defocus})
    y, x = corner
    patch = np.exp(1j * phase[0, 0, y : y + NPIX, x : x + NPIX])
    return np.abs(np.fft.fftshift(np.fft.fft2(patch * p, norm="ortho"))) ** 2


def test_patterns_equal_a_dense_numerical_defocus_average():
    sigma = 35.0
    ext = DefocusSpread(DefocusSpread.Options(focal_spread_A=sigma, n_samples=9))
    model, phase, _ = _model(ext)
    with torch.no_grad():
        pred, _ = model(torch.arange(3))
    # dense trapezoid over +-6 sigma of the Gaussian: independent of the Gauss-Hermite rule
    grid = np.linspace(-6 * sigma, 6 * sigma, 241)
    pdf = np.exp(-(grid**2) / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi))
    for j, corner in enumerate([(3, 5), (10, 2), (7, 9)]):
        stack = np.stack([_plain_pattern(phase, corner, DEFOCUS + d) for d in grid])
        expected = trapezoid(pdf[:, None, None] * stack, grid, axis=0)
        got = pred[j].numpy()
        assert np.linalg.norm(got - expected) / np.linalg.norm(expected) < 1e-4
        coherent = _plain_pattern(phase, corner, DEFOCUS)
        assert np.linalg.norm(coherent - expected) / np.linalg.norm(expected) > 1e-2  # the spread matters


def test_options_are_validated():
    with pytest.raises(ValidationError, match="extra"):
        DefocusSpread.Options(focal_spread_A=10, samples=3)
    with pytest.raises(ValidationError):
        DefocusSpread.Options(focal_spread_A=-1)
    with pytest.raises(ValidationError):
        DefocusSpread.Options(focal_spread_A=10, n_samples=0)


def test_installed_entry_point_registers_the_extension():
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    pm = get_plugin_manager()
    assert pm.registry("forward").get("defocus_spread").cls is DefocusSpread
    info = pm.info["ptyrad_partial_coherence"]
    assert (info.source, info.distribution) == ("installed package", "ptyrad-partial-coherence")


def tiny_h5() -> Path:
    if os.environ.get("PTYRAD_CORE_TINY_H5"):
        return Path(os.environ["PTYRAD_CORE_TINY_H5"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "data" / "tiny.h5").is_file():
            return parent / "data" / "tiny.h5"
    pytest.skip("data/tiny.h5 not found (set PTYRAD_CORE_TINY_H5)")


def test_reconstruction_with_a_defocus_spread(tmp_path):
    import ptyrad_core
    from ptyrad_core.engine.results import read_result

    data = str(tiny_h5())
    run = ptyrad_core.run(
        {
            "data": {"path": data, "loader": "hdf5", "options": {"key": "measurements"}},
            "experiment": {
                "energy_kV": 300,
                "conv_angle_mrad": 21.4,
                "dx_A": 0.19525,
                "aberrations": {"defocus": 100},
            },
            "scan": {"source": "file", "path": data, "key": "positions_nominal_px", "n_slow": 8, "n_fast": 8},
            "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
            "forward": [{"name": "defocus_spread", "options": {"focal_spread_A": 20.0, "n_samples": 3}}],
            "loss": [{"name": "gaussian"}],
            "recon": {"iterations": 2, "batch_size": 16},
            "output": {"dir": str(tmp_path / "out"), "figures": False},
        }
    )
    result = read_result(run.result_path)
    assert (
        np.all(np.isfinite(result["history/loss"])) and result["history/loss"][-1] < result["history/loss"][0]
    )
    assert (
        result["probe/modes"].shape[0] == 1
    )  # the stored probe keeps its modes; the spread is in the forward model
    assert any(p["distribution"] == "ptyrad-partial-coherence" for p in result["attrs"]["plugins"])
    assert result["attrs"]["config"]["forward"][0]["name"] == "defocus_spread"

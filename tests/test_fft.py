"""FFT backends of the multislice (ptyrad_core.kernel.fft): FFTW against torch.fft, selection, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel import fft as fftlib
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError


def test_pyfftw_is_installed_with_the_test_dependencies():
    """pyFFTW is in the ``test`` extra: every FFTW test below runs, none is skipped."""
    assert fftlib.fftw_available(), (
        "pyFFTW missing: pip install -e '.[fftw,test]' (scripts/bootstrap.sh does)"
    )


def crandn(*shape, dtype=torch.complex64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, generator=g)


@pytest.mark.parametrize("dtype, tol", [(torch.complex64, 2e-6), (torch.complex128, 1e-13)])
@pytest.mark.parametrize("shape", [(3, 2, 16, 16), (5, 12, 20), (7, 9)])
def test_fftw_transforms_equal_unnormalised_torch_transforms_in_place(shape, dtype, tol):
    backend = fftlib.select("fftw")
    x = crandn(*shape, dtype=dtype)
    expect_f = torch.fft.fft2(x)
    expect_b = torch.fft.ifft2(x) * (shape[-1] * shape[-2])  # unnormalised inverse
    a, b = x.clone(), x.clone()
    fa, fb = backend.fft_(a), backend.ifft_(b)
    assert fa.data_ptr() == a.data_ptr() and fb.data_ptr() == b.data_ptr()  # in place
    scale = expect_f.abs().max()
    assert (fa - expect_f).abs().max() < tol * scale
    assert (fb - expect_b).abs().max() < tol * scale
    # the inverse of the forward, divided by N, is the identity
    assert (backend.ifft_(backend.fft_(x.clone())) / (shape[-1] * shape[-2]) - x).abs().max() < 10 * tol


def test_fftw_falls_back_to_torch_for_tensors_it_cannot_take():
    backend = fftlib.select("fftw")
    x = crandn(4, 16, 16)
    strided = x.transpose(-2, -1)  # not contiguous
    out = backend.fft_(strided)
    assert out.data_ptr() != strided.data_ptr()
    assert torch.allclose(out, torch.fft.fft2(strided), atol=1e-5)
    offset = crandn(16 * 16 + 1)[1:].view(16, 16)  # 8-byte offset: not aligned for FFTW's SIMD plan
    assert torch.allclose(
        backend.fft_(offset.clone() if offset.data_ptr() % 32 == 0 else offset),
        torch.fft.fft2(offset),
        atol=1e-5,
    )
    real = torch.randn(4, 16, 16)
    assert torch.allclose(backend.fft_(real), torch.fft.fft2(real))


def test_torch_backend_returns_new_unnormalised_transforms():
    backend = fftlib.select("torch")
    x = crandn(2, 8, 8)
    assert torch.allclose(backend.ifft_(backend.fft_(x)) / 64, x, atol=1e-6)
    assert backend.fft_(x).data_ptr() != x.data_ptr()


def test_selection_and_its_errors():
    assert fftlib.select("torch").name == "torch"
    assert fftlib.select("auto", "cuda").name == "torch"  # auto never picks FFTW for a GPU model
    assert fftlib.select("auto").name == "fftw"
    with pytest.raises(ConfigError, match="recon.fft: 'mkl' is not one of auto, torch, fftw"):
        fftlib.select("mkl")
    with pytest.raises(ConfigError, match="recon.fft: 'fftw' runs on the CPU, the model is on cuda"):
        fftlib.select("fftw", "cuda")


def test_config_rejects_an_unknown_backend(tiny_config):
    cfg = tiny_config()
    cfg["recon"] = {**cfg["recon"], "fft": "mkl"}
    with pytest.raises(ConfigError, match="recon.fft"):
        build_config(cfg)


@pytest.mark.slow  # a run with each FFT library
def test_a_reconstruction_is_the_same_with_either_backend(tiny_config):
    """Both backends run the same arithmetic up to rounding: 6 iterations (object, probe and
    positions refined) in float64 agree to 1e-9, and a run is repeatable bit for bit. (In float32
    they part by ~1e-4 after one iteration: Adam's first steps are lr * sign(g), and the sign of
    gradients within rounding of zero is rounding noise, whichever library transforms.)"""
    runs = {}
    for name in ("torch", "fftw", "fftw"):
        cfg = tiny_config()
        cfg["recon"] = {**cfg["recon"], "fft": name, "iterations": 6, "precision": "float64"}
        cfg["update"] = {**cfg.get("update", {}), "positions": {"lr": 1e-3}}
        run = Reconstruction(build_config(cfg), quiet=True)
        assert run.model.fft.name == name
        run.run()
        runs.setdefault(name, []).append(
            (
                np.array(run.history["loss"]),
                run.model.object_phase.detach().numpy().copy(),
                run.model.positions.detach().numpy().copy(),
            )
        )
    ((lt, pt, qt),) = runs["torch"]
    (lf, pf, qf), (lf2, pf2, qf2) = runs["fftw"]
    assert np.array_equal(lf, lf2) and np.array_equal(pf, pf2) and np.array_equal(qf, qf2)
    assert np.allclose(lf, lt, rtol=1e-9, atol=0)
    assert np.abs(pf - pt).max() < 1e-9 * np.abs(pt).max()
    assert np.abs(qf - qt).max() < 1e-9 * np.abs(qt).max()
    assert np.abs(qt).max() > 0  # positions did move: their gradient went through the backend


def test_without_pyfftw_auto_takes_torch_and_fftw_is_refused(monkeypatch):
    monkeypatch.setattr(fftlib, "pyfftw", None)
    assert fftlib.select("auto").name == "torch"
    with pytest.raises(ConfigError, match="recon.fft: 'fftw' needs pyFFTW, which is not installed"):
        fftlib.select("fftw")


@pytest.mark.parametrize("t_fftw, expect", [(0.5, "fftw"), (0.79, "fftw"), (0.85, "torch"), (1.5, "torch")])
def test_auto_takes_fftw_only_when_it_is_clearly_faster_on_the_runs_shape(monkeypatch, t_fftw, expect):
    """``auto`` on the CPU times both libraries on the shape it is given (torch's time 1.0 here)
    and keeps the answer for the process: a second model of that shape gets the same library."""
    monkeypatch.setattr(fftlib, "_chosen", {})
    calls = []

    def fake_seconds(backend, x):
        calls.append((backend.name, tuple(x.shape)))
        return 1.0 if backend.name == "torch" else t_fftw

    monkeypatch.setattr(fftlib, "_seconds", fake_seconds)
    assert fftlib.select("auto", shape=(8, 16, 16)).name == expect
    assert {c[1] for c in calls} == {(8, 16, 16)} and {c[0] for c in calls} == {"torch", "fftw"}
    n = len(calls)
    assert fftlib.select("auto", shape=(8, 16, 16)).name == expect and len(calls) == n  # kept, not re-timed
    assert fftlib.select("auto", "cuda", shape=(8, 16, 16)).name == "torch"


@pytest.mark.slow  # times both libraries, then runs and resumes
def test_the_measured_choice_is_the_run_shape_and_resume_keeps_the_files_library(monkeypatch, tiny_config):
    """A run records the library ``auto`` chose; a resumed run whose own timing would choose the
    other one continues with the file's (so that the transforms continue alike) and says so."""
    shapes = []
    monkeypatch.setattr(fftlib, "_chosen", {})
    monkeypatch.setattr(fftlib, "choose", lambda shape, dtype=torch.complex64: shapes.append(shape) or "fftw")
    cfg = tiny_config()
    cfg["model"]["probe"] = {**cfg["model"].get("probe", {}), "modes": 2}
    cfg["recon"].update(iterations=2, batch_size=5)
    first = Reconstruction(build_config(cfg), quiet=True).run()
    assert first.model.fft.name == "fftw"
    ny, nx = first.model.probe.shape[-2:]
    assert shapes == [(2 * 5, ny, nx)]  # probe modes x object modes (1) x positions of one batch
    import h5py

    with h5py.File(first.result_path, "r") as f:
        assert f.attrs["fft"] == "fftw"
    monkeypatch.setattr(fftlib, "choose", lambda shape, dtype=torch.complex64: "torch")
    cfg["recon"]["iterations"] = 3
    cfg["output"]["dir"] = str(first.result_path.parent.parent / "resumed")
    resumed = Reconstruction(build_config(cfg), quiet=True, resume=first.result_path)
    assert resumed.model.fft.name == "fftw"
    assert any("FFT library fftw" in n for n in resumed.resume_notes)

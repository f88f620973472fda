"""Calibration, initial positions / probe / object / tilts from every source, index modes, streaming."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from conftest import dataset

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError, DataError, OutputError
from ptyrad_core.setup import optics, scan, sources
from ptyrad_core.setup.initialize import fit_rbf

LAM300 = optics.electron_wavelength(300)


def run_for(cfg, iterations=None):
    config = build_config(cfg)
    run = Reconstruction(
        config, quiet=True, overwrite=True
    )  # configs are reused: each run may replace the last
    return run.run(iterations) if iterations else run


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------

DX = 0.19525
DK = 1 / (64 * DX)


@pytest.mark.parametrize(
    "calibration",
    [
        {"dx_A": DX},
        {"dk_invA": DK},
        {"kmax_invA": 32 * DK},
        {"da_mrad": DK * LAM300 * 1e3},
        {"angle_max_mrad": 32 * DK * LAM300 * 1e3},
        {"n_alpha": 32 * DK * LAM300 * 1e3 / 21.4},
        {"rbf_px": 21.4e-3 / (DK * LAM300)},
    ],
)
def test_every_calibration_gives_the_same_dx(tiny_config, calibration):
    cfg = tiny_config()
    cfg["experiment"] = {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "aberrations": {"defocus": 100},
        **calibration,
    }
    assert math.isclose(run_for(cfg).model.dx, DX, rel_tol=1e-9)


def test_fitted_bright_field_disk_calibrates_the_shipped_data(tiny_config):
    """The disk of the noiseless tiny.h5 mean pattern: 21.4 mrad is 13.6 px at dk = 1/(64 dx)."""
    mean = dataset("tiny.h5")["measurements_noiseless"].reshape(-1, 64, 64).mean(0)
    expected_px = 21.4e-3 / (DK * LAM300)
    assert abs(fit_rbf(mean) - expected_px) < 1.0
    cfg = tiny_config()
    cfg["experiment"] = {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "aberrations": {"defocus": 100},
        "fit_rbf": True,
    }
    assert abs(run_for(cfg).model.dx / DX - 1) < 0.08


def test_calibration_must_be_given_once(tiny_config):
    cfg = tiny_config()
    cfg["experiment"]["dk_invA"] = 0.08
    with pytest.raises(
        ConfigError, match="give exactly one calibration of the detector .* got dx_A, dk_invA"
    ):
        build_config(cfg)


# --------------------------------------------------------------------------------------------
# positions
# --------------------------------------------------------------------------------------------


def raster_cfg(tiny_config, **scan_extra):
    cfg = tiny_config()
    cfg["scan"] = {"source": "raster", "n_slow": 8, "n_fast": 8, "step_A": 0.4, **scan_extra}
    return cfg


def test_raster_matches_ptyrad_placement_and_flips(tiny_config):
    run = run_for(raster_cfg(tiny_config))
    pos = (run.model.crop + run.model.frac).numpy()
    step = 0.4 / DX
    assert np.allclose(pos[1] - pos[0], [0, step]) and np.allclose(pos[8] - pos[0], [step, 0])
    extent = int(1.2 * math.ceil(7 * step + 64))
    assert run.model.object_shape == (extent, extent)
    flipped = run_for(raster_cfg(tiny_config, flipT={"flipud": True, "transpose": True}))
    fpos = (flipped.model.crop + flipped.model.frac).numpy()
    grid = pos.reshape(8, 8, 2)[::-1][..., ::-1].reshape(-1, 2)
    assert np.allclose(fpos, grid)


def test_affine_rotation_and_jitter(tiny_config):
    base = run_for(raster_cfg(tiny_config, affine={"rotation_deg": 90}))
    pos = (base.model.crop + base.model.frac).numpy()
    assert np.allclose(np.abs(pos[1] - pos[0]), [0.4 / DX, 0], atol=1e-9)  # fast axis now along y
    jittered = run_for(raster_cfg(tiny_config, affine={"rotation_deg": 90}, jitter_px=0.3))
    jpos = (jittered.model.crop + jittered.model.frac).numpy()
    d = jpos - pos
    assert 0.2 < d.std() < 0.4 and abs(d.mean()) < 0.1


def test_positions_from_a_previous_result_and_from_a_file_in_angstrom(tiny_config, tmp_path):
    first = run_for(tiny_config(update={"positions": {"lr": 1e-2}}), 2)
    refined = first.model.refined_positions().detach().numpy()
    cfg = tiny_config()
    cfg["scan"] = {"source": "result", "path": str(first.result_path), "n_slow": 8, "n_fast": 8}
    second = run_for(cfg)
    assert np.allclose((second.model.crop + second.model.frac).numpy(), refined, atol=1e-5)
    np.save(tmp_path / "pos.npy", refined * DX)
    cfg["scan"] = {
        "source": "file",
        "path": str(tmp_path / "pos.npy"),
        "units": "A",
        "n_slow": 8,
        "n_fast": 8,
    }
    third = run_for(cfg)
    assert np.allclose((third.model.crop + third.model.frac).numpy(), refined, atol=1e-5)


def test_wrong_position_count_is_named(tiny_config, tmp_path):
    np.save(tmp_path / "pos.npy", np.zeros((10, 2)))
    cfg = tiny_config()
    cfg["scan"] = {"source": "file", "path": str(tmp_path / "pos.npy"), "n_slow": 8, "n_fast": 8}
    with pytest.raises(DataError, match=r"scan.path: 10 rows, but the scan has 64 positions"):
        run_for(cfg)


@pytest.mark.parametrize(
    "mode, subscan, expected",
    [
        ("full", None, np.arange(16)),
        ("sub", (2, 2), np.array([0, 3, 12, 15])),
        ("center", (2, 2), np.array([5, 6, 9, 10])),
        ("sub", None, np.array([0, 3, 12, 15])),
    ],
)
def test_index_modes(mode, subscan, expected):
    assert np.array_equal(scan.select_indices((4, 4), mode, subscan), expected)


def test_index_mode_limits_the_positions_used(tiny_config):
    cfg = tiny_config()
    cfg["recon"].update(indices={"mode": "center", "subscan": [4, 4]}, batch_size=8, iterations=1)
    run = run_for(cfg)
    seen = []
    original = run.model.forward
    run.model.forward = lambda idx, it=0: (seen.append(idx.clone()), original(idx, it))[1]
    run.run()
    used = torch.cat(seen).sort().values.numpy()
    assert np.array_equal(used, np.sort(scan.select_indices((8, 8), "center", (4, 4))))


# --------------------------------------------------------------------------------------------
# probe
# --------------------------------------------------------------------------------------------


def test_probe_from_a_file_gets_modes_shift_and_intensity(tiny_config, tmp_path):
    probe = dataset("tiny.h5")["probe"]
    np.save(tmp_path / "probe.npy", probe)
    cfg = tiny_config(
        model={
            "probe": {
                "source": "file",
                "path": str(tmp_path / "probe.npy"),
                "modes": 3,
                "mode_power": 0.05,
                "z_shift_A": 50.0,
            },
            "object": {"slices": 2, "slice_thickness_A": 3.905},
        }
    )
    run = run_for(cfg)
    p = run.model.probe.detach().numpy().astype(np.complex128)
    gram = p.reshape(3, -1) @ p.reshape(3, -1).conj().T
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-3 * np.abs(gram).max())
    powers = np.diag(gram).real / np.trace(gram).real
    assert np.allclose(powers[1:], 0.05, atol=0.01)
    meas = dataset("tiny.h5")["measurements"].reshape(64, -1).sum(1)
    assert math.isclose(np.trace(gram).real, meas.mean(), rel_tol=1e-5)
    # the strongest mode is the file's probe propagated by 50 A
    k = np.fft.fftfreq(64, DX)
    h = np.exp(-1j * np.pi * LAM300 * (k[:, None] ** 2 + k[None, :] ** 2) * 50.0)
    expected = np.fft.ifft2(np.fft.fft2(probe) * h)
    assert abs(np.vdot(expected, p[0])) / (np.linalg.norm(expected) * np.linalg.norm(p[0])) > 0.99


def test_probe_of_the_wrong_window_is_named(tiny_config, tmp_path):
    np.save(tmp_path / "probe.npy", np.ones((48, 48), complex))
    cfg = tiny_config(
        model={
            "probe": {"source": "file", "path": str(tmp_path / "probe.npy")},
            "object": {"slices": 2, "slice_thickness_A": 3.905},
        }
    )
    with pytest.raises(
        DataError, match=r"model.probe: the loaded probe has shape \(1, 48, 48\); expected \(pmode, 64, 64\)"
    ):
        run_for(cfg)


@pytest.mark.parametrize("normalization, target", [("max_total_ints", None), ("target_intensity", 123.0)])
def test_probe_normalization(tiny_config, normalization, target):
    cfg = tiny_config()
    cfg["model"]["probe"] = {"normalization": normalization, **({"intensity": target} if target else {})}
    total = float(run_for(cfg).model.probe.detach().abs().square().sum())
    expected = target or dataset("tiny.h5")["measurements"].reshape(64, -1).sum(1).max()
    assert math.isclose(total, expected, rel_tol=1e-5)


# --------------------------------------------------------------------------------------------
# object and tilts
# --------------------------------------------------------------------------------------------


def test_object_from_a_result_with_depth_operations(tiny_config):
    first = run_for(tiny_config(model={"object": {"slices": 4, "slice_thickness_A": 2.0}}), 1)
    amp0 = first.model.object_amplitude.detach().numpy().astype(np.float64)
    ph0 = first.model.object_phase.detach().numpy().astype(np.float64)
    cfg = tiny_config(
        model={
            "object": {
                "source": "result",
                "path": str(first.result_path),
                "slices": 3,
                "slice_thickness_A": 2.0,
                "z_crop": [1, 4],
                "z_pad": {"layers": [1, 1], "kind": ["vacuum", "edge"]},
                "z_resample": {"mode": "target_slices", "value": 3},
            }
        }
    )
    run = run_for(cfg)
    cropped = (amp0 * np.exp(1j * ph0))[:, 1:4]
    padded = np.concatenate(
        [np.ones_like(cropped[:, :1]), cropped, cropped[:, -1:]], axis=1
    )  # 5 slices of 2 A
    # 5 -> 3 slices: each new slice collects 5/3 old ones; phase sum and thickness kept
    assert math.isclose(float(run.model.slice_thickness.detach()), 10.0 / 3, rel_tol=1e-6)
    assert np.allclose(run.model.object_phase.detach().numpy().sum(1), np.angle(padded).sum(1), atol=1e-4)
    assert np.allclose(
        np.log(run.model.object_amplitude.detach().numpy()).sum(1), np.log(np.abs(padded)).sum(1), atol=1e-4
    )


def test_loaded_object_slice_mismatch_is_named(tiny_config):
    first = run_for(tiny_config(), 1)
    cfg = tiny_config(
        model={
            "object": {
                "source": "result",
                "path": str(first.result_path),
                "slices": 5,
                "slice_thickness_A": 2.0,
            }
        }
    )
    with pytest.raises(ConfigError, match="model.object.slices is 5, but the loaded object has 2 slices"):
        run_for(cfg)


def test_tilts_from_value_file_and_result(tiny_config, tmp_path):
    cfg = tiny_config(
        model={
            "object": {"slices": 2, "slice_thickness_A": 3.9},
            "tilts": {"mode": "per_position", "init_mrad": [1.0, -2.0]},
        },
        update={"tilts": {"lr": 1e-2}},
    )
    first = run_for(cfg, 1)
    assert first.model.tilts.shape == (64, 2)
    tilts = first.model.tilts.detach().numpy()
    np.save(tmp_path / "tilts.npy", tilts)
    cfg["model"]["tilts"] = {"mode": "per_position", "source": "file", "path": str(tmp_path / "tilts.npy")}
    assert np.allclose(run_for(cfg).model.tilts.detach().numpy(), tilts)
    cfg["model"]["tilts"] = {"mode": "per_position", "source": "result", "path": str(first.result_path)}
    # a run never writes onto a file it reads, even with --overwrite: the result read is refused as output
    with pytest.raises(OutputError, match="is model.tilts.path, a file this run reads"):
        run_for(cfg)
    cfg["output"] = {**cfg.get("output", {}), "dir": str(tmp_path / "second")}
    assert np.allclose(run_for(cfg).model.tilts.detach().numpy(), tilts)
    cfg["model"]["tilts"] = {"mode": "global", "source": "file", "path": str(tmp_path / "tilts.npy")}
    with pytest.raises(ConfigError, match="64 tilts were loaded; set model.tilts.mode: per_position"):
        run_for(cfg)


def test_read_array_errors_name_file_and_key(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["probe"] = np.ones((2, 2))
    with pytest.raises(
        DataError, match=r"model.probe: .*a.h5 has no dataset 'prob'; datasets: probe \(2, 2\)"
    ):
        sources.read_array(tmp_path / "a.h5", "prob", "model.probe")
    with pytest.raises(DataError, match="model.probe: file .* does not exist"):
        sources.read_array(tmp_path / "nope.npy", None, "model.probe")


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def test_streamed_run_equals_in_memory_run(tiny_config):
    cfg = tiny_config()
    cfg["recon"]["iterations"] = 3
    in_memory = run_for(cfg, 3)
    cfg["data"]["memory_budget_MB"] = 0.1  # tiny.h5 holds 1 MB of patterns
    streamed = run_for(cfg, 3)
    assert not streamed.measurements.in_memory and in_memory.measurements.in_memory
    assert type(streamed.data).__name__ == "StreamedMeasurements"
    for name in ("object_phase", "object_amplitude", "probe_ri"):
        assert torch.equal(getattr(streamed.model, name), getattr(in_memory.model, name)), name
    assert streamed.history["loss"] == in_memory.history["loss"]


def test_a_result_used_by_several_sections_is_resolved_early_and_read_once(tiny_config, monkeypatch):
    """The reader of ``source: result`` is resolved with the config (Registry.resolve, sniffed for
    ``auto``) and initialize.Priors reads each file once for positions, object and tilts."""
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    first = run_for(tiny_config(), 1)
    pm = get_plugin_manager()
    reader = pm.registry("result_reader").get("ptyrad_core").cls
    calls = []
    real = reader.read
    monkeypatch.setattr(reader, "read", lambda self: calls.append(1) or real(self))
    path = str(first.result_path)
    cfg = tiny_config()
    cfg["scan"] = {"source": "result", "path": path, "n_slow": 8, "n_fast": 8}
    cfg["model"] = {
        "object": {"source": "result", "path": path, "slices": 2, "slice_thickness_A": 3.905},
        "tilts": {"source": "result", "path": path},
    }
    run = Reconstruction(build_config(cfg), pm=pm, quiet=True)
    assert {("scan", "reader"), ("model", "object", "reader"), ("model", "tilts", "reader")} <= set(
        run.components
    )
    assert run.components[("scan", "reader")][0] is reader
    assert len(calls) == 1
    run.close()

"""PtyRAD 1.0 params files: the ``compat_ptyrad`` translation, ``ptyrad-core convert`` and ``run``.

- every params file the PtyRAD 1.0.0 wheel ships translates into a config that passes core and
  component validation (or is rejected naming the option it cannot honour), and every option of
  every file is carried over or named in a note;
- a file of our own with every option set checks the translation value by value, and variants
  check the alternatives (sources, modes) and the rejections;
- a PtyRAD file on sto_small.h5 reconstructs exactly as the hand-written native config;
- ``convert`` writes a YAML that loads back to the same config; ``run`` runs a PtyRAD file.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import ptyrad_core.kernel.plugin_manager as plugin_manager
import ptyrad_core_plugins
from ptyrad_core.apps.cli import main
from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.kernel.config import build_config, validate_components
from ptyrad_core.kernel.errors import ConfigError
from ptyrad_core.setup.config_file import load_config
from ptyrad_core_plugins import _ptyrad_defaults as defaults
from ptyrad_core_plugins.compat_ptyrad import leaves, output_fields, translate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
WHEEL = Path("/work/.venv-ptyrad/lib/python3.11/site-packages/ptyrad/starter/params")
COPIES = ROOT / "tests" / "fixtures" / "ptyrad_params"
MAXIMAL = ROOT / "tests" / "fixtures" / "ptyrad_params_own" / "maximal.yaml"
PARAMS = WHEEL if WHEEL.is_dir() else COPIES
SHIPPED = sorted(str(p.relative_to(PARAMS)) for p in PARAMS.rglob("*.yaml"))
#: shipped files that use an option ptyrad_core cannot honour: the option the error names
REJECTED: dict[str, str] = {}


def missing_builtin_modules() -> list:
    """Built-in plugin modules whose entry point is not installed yet (registered inline then)."""
    installed = {ep.value for ep in importlib.metadata.entry_points(group=plugin_manager.ENTRY_POINT_GROUP)}
    names = [f"ptyrad_core_plugins.{m.name}" for m in pkgutil.iter_modules(ptyrad_core_plugins.__path__)]
    return [
        importlib.import_module(n)
        for n in names
        if not n.split(".")[-1].startswith("_") and n not in installed
    ]


@pytest.fixture(scope="module")
def pm():
    return plugin_manager.get_plugin_manager(autoload=False, inline=missing_builtin_modules())


@pytest.fixture
def cli_plugins(monkeypatch):
    """Managers built by the CLI itself also get the built-in modules whose entry points are missing."""
    extra = missing_builtin_modules()
    original = plugin_manager.get_plugin_manager
    monkeypatch.setattr(
        plugin_manager,
        "get_plugin_manager",
        lambda *a, inline=(), **k: original(*a, inline=(*inline, *extra), **k),
    )


def read(path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def unnamed(raw: dict, tr) -> list[str]:
    """Options of ``raw`` neither carried into the config nor named in a note."""
    text = "\n".join(tr.notes)
    out = []
    for name in leaves(raw):
        parts = name.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if not any(p in tr.mapped for p in prefixes) and not any(p in text for p in prefixes):
            out.append(name)
    return out


def params_file(tmp_path, params: dict, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def base_params(**init) -> dict:
    """A small PtyRAD params dict (tiny.h5-like); ``init`` updates init_params."""
    p = {
        "init_params": {
            "probe_kv": 300,
            "probe_conv_angle": 21.4,
            "meas_Npix": 64,
            "pos_N_scan_slow": 8,
            "pos_N_scan_fast": 8,
            "pos_scan_step_size": 0.4,
            "obj_Nlayer": 2,
            "obj_slice_thickness": 3.905,
            "meas_params": {"path": str(DATA / "tiny.h5"), "key": "measurements"},
        },
    }
    p["init_params"].update(init)
    return p


# --------------------------------------------------------------------------------------------
# the files PtyRAD ships
# --------------------------------------------------------------------------------------------


def test_the_fixture_copies_are_the_wheels_files():
    """The copies match the SHA-256 sums taken from the ptyrad 1.0.0 wheel (SHA256SUMS), and, where
    the PtyRAD venv is installed, the wheel's files themselves."""
    import hashlib

    sums = dict(line.split("  ")[::-1] for line in (COPIES / "SHA256SUMS").read_text().splitlines())
    copies = sorted(str(p.relative_to(COPIES)) for p in COPIES.rglob("*.yaml"))
    assert copies == sorted(sums) and len(copies) == 22
    for name, digest in sums.items():
        assert hashlib.sha256((COPIES / name).read_bytes()).hexdigest() == digest, name
        if WHEEL.is_dir():
            assert hashlib.sha256((WHEEL / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_params_file_translates_and_validates(name, pm):
    path = PARAMS / name
    raw = read(path)
    if name in REJECTED:
        with pytest.raises(ConfigError, match=REJECTED[name]) as err:
            translate(raw, path)
        assert str(path) in str(err.value)
        with pytest.raises(ConfigError, match=REJECTED[name]):
            load_config(path, pm=pm)
        return
    tr = translate(raw, path)
    assert unnamed(raw, tr) == []
    config = build_config(tr.config, str(path))
    validate_components(config, pm)
    # the kernel's way in: load_config offers the file to the hook
    loaded = load_config(path, pm=pm)
    assert loaded.model_dump() == config.model_dump()
    assert loaded._notes == tr.notes and loaded.origin.source == str(path)


def test_which_shipped_files_are_rejected():
    assert set(REJECTED) <= set(SHIPPED)


def test_the_hypertune_walkthrough_becomes_a_study():
    raw = read(PARAMS / "walkthrough/14_hypertune.yaml")
    assert raw["hypertune_params"]["if_hypertune"] is True
    tune = translate(raw, "14_hypertune.yaml").config["tune"]
    assert set(tune["params"]) == {
        "experiment.aberrations.C10",
        "model.object.slices",
    }  # its two state: true entries
    assert tune["params"]["experiment.aberrations.C10"] == {
        "type": "float",
        "low": 150,
        "high": 250,
        "step": 1,
        "log": False,
    }
    assert tune["params"]["model.object.slices"]["type"] == "int"
    assert tune["n_trials"] == 50 and tune["study_name"] == "PSO" and tune["objectives"] == ["loss"]
    assert tune["storage"].startswith("sqlite:////") and tune["storage"].endswith("hypertune.sqlite3")
    assert tune["pruner"]["name"] == "HyperbandPruner"  # PtyRAD's default pruner


def test_ptyrads_defaults_fill_what_a_file_leaves_out(pm):
    tr = translate(read(PARAMS / "templates/minimal.yaml"), "minimal.yaml")
    c = tr.config
    # PtyRAD's default constraints (obj_rblur and obj_zblur are on by default)
    assert [(x["name"], x["start_iter"], x["step"]) for x in c["constraints"]] == [
        ("ortho_pmode", 1, 1),
        ("fix_probe_int", 1, 1),
        ("obj_rblur", 1, 1),
        ("obj_zblur", 1, 1),
        ("pos_recenter", 1, 1),
    ]
    assert c["constraints"][2]["options"] == {"obj_type": "both", "kernel_size": 5, "std": 0.4}
    assert [s["name"] for s in c["data"]["preprocess"]] == ["flipT", "negative", "normalize"]
    assert c["data"]["preprocess"][1]["options"]["mode"] == "clip_neg"
    assert c["data"]["preprocess"][2]["options"]["mode"] == "max_at_one"
    assert c["scan"]["jitter_px"] == 0.15
    assert c["experiment"]["fit_rbf"] is True
    assert c["model"]["probe"]["modes"] == 6 and c["model"]["probe"]["mode_power"] == 0.02
    assert c["update"]["positions"] == {"lr": 5e-4, "start_iter": 1, "end_iter": None}
    assert c["update"]["tilts"] == {"lr": 0.0, "start_iter": None, "end_iter": None}
    assert c["loss"] == [{"name": "gaussian", "weight": 1.0, "options": {"dp_pow": 0.5}}]
    assert c["output"]["save_every"] == 10 and c["recon"]["seed"] == 0
    note = next(n for n in tr.notes if n.startswith("PtyRAD 1.0.0 defaults used"))
    for option in (
        "meas_remove_neg_values",
        "meas_normalization",
        "pos_scan_rand_std",
        "constraint_params.obj_rblur",
        "update_params.probe_pos_shifts",
        "meas_calibration",
    ):
        assert option in note
    # the defaults come from PtyRAD's own models
    assert defaults.MODELS["InitParams"]["fields"]["pos_scan_rand_std"]["default"] == 0.15
    assert defaults.CONSTRAINT_ORDER[:4] == ["probe_mask_k", "probe_mask_r", "ortho_pmode", "fix_probe_int"]


# --------------------------------------------------------------------------------------------
# every option, value by value
# --------------------------------------------------------------------------------------------


def test_maximal_params_file_option_by_option(tmp_path, pm):
    raw = read(MAXIMAL)
    tr = translate(raw, MAXIMAL, cwd=tmp_path)
    assert unnamed(raw, tr) == []
    validate_components(build_config(tr.config, str(MAXIMAL)), pm)
    c = tr.config
    d, e, s, m = c["data"], c["experiment"], c["scan"], c["model"]
    # data
    assert d["path"] == str(tmp_path / "data/scan.h5") and d["loader"] == "hdf5"
    assert d["options"] == {"key": "entry/meas"} and d["negative_values"] == "clip"
    steps = [(x["name"], x.get("options")) for x in d["preprocess"]]
    assert steps == [
        ("permute", {"order": [0, 1, 3, 2]}),
        ("reshape", {"shape": [576, 64, 64]}),
        ("flipT", {"flipud": True, "fliplr": False, "transpose": True}),
        ("crop", {"scan_slow": [0, 20], "scan_fast": [2, 22], "ky": [4, 60], "kx": [4, 60]}),
        ("negative", {"mode": "clip_value", "value": 2, "force": True}),
        ("normalize", {"mode": "divide_const", "value": 100}),
        ("pad", {"npix": 64, "padding": "constant", "value": 0.5, "threshold": 60}),
        ("resample", {"scale": 1.5}),
        ("normalize", {"mode": "divide_const", "value": pytest.approx(1 / 1.5**2)}),
        ("add_source_size", {"std_A": 0.3}),
        ("add_detector_blur", {"std_px": 0.5}),
        ("add_poisson_noise", {"unit": "e_per_A2", "value": 10000}),
        (
            "export",
            {"format": "npy", "shape": [20, 20, 96, 96], "path": str(tmp_path / "exports" / "my_meas.npy")},
        ),
    ]
    # experiment: Krivanek polar, PtyRAD's canonical form (3 decimals)
    assert (
        e["energy_kV"] == 200 and e["conv_angle_mrad"] == 25.5 and e["dk_invA"] == 0.08 and "fit_rbf" not in e
    )
    assert e["aberrations"] == {
        "C10": -50.0,
        "C12": 12.0,
        "phi12": 30.0,
        "C21": 111.803,
        "phi21": 26.565,
        "C23": 40.0,
        "phi23": 10.0,
        "C30": 1000.0,
        "C32": 1200.0,
        "phi32": 20.0,
        "C50": 100000.0,
    }
    # scan
    assert s == {
        "source": "raster",
        "n_slow": 24,
        "n_fast": 24,
        "step_A": 0.41,
        "flipT": {"flipud": False, "fliplr": True, "transpose": False},
        "affine": {"scale": 1.02, "asymmetry": 0.01, "rotation_deg": 2.0, "shear_deg": 0.5},
        "jitter_px": 0.3,
    }
    # probe, object, tilts
    assert m["probe"] == {
        "source": "result",
        "path": str(tmp_path / "previous/model_iter0100.hdf5"),
        "reader": "ptyrad",
        "modes": 3,
        "mode_power": 0.05,
        "permute": [0, 2, 1],
        "z_shift_A": -20,
        "normalization": "target_intensity",
        "intensity": 3.5,
    }
    assert m["object"] == {
        "modes": 2,
        "occupancy": [0.6, 0.4],
        "source": "result",
        "path": str(tmp_path / "previous/Niter100.mat"),
        "reader": "ptychoshelves",
        "z_crop": [1, 4],
        "z_pad": {"layers": [1, 2], "kind": ["vacuum", "edge"]},
        "z_resample": {"mode": "scale_slices", "value": 2},
        "slices": 12,
        "slice_thickness_A": 5,
    }
    assert m["tilts"] == {"source": "value", "mode": "per_position", "init_mrad": [1.5, -2.0]}
    # updates and optimizer
    assert c["update"] == {
        "object_amplitude": {"lr": 1e-3, "start_iter": 2, "end_iter": 50},
        "object_phase": {"lr": 2e-3, "start_iter": 1, "end_iter": None},
        "probe": {"lr": 3e-4, "start_iter": 3, "end_iter": None},
        "positions": {"lr": 6e-4, "start_iter": 4, "end_iter": 80},
        "tilts": {"lr": 1e-4, "start_iter": 5, "end_iter": None},
        "slice_thickness": {"lr": 1e-5, "start_iter": 10, "end_iter": 40},
    }
    assert c["optimizer"] == {
        "name": "AdamW",
        "options": {"weight_decay": 0.01, "betas": [0.8, 0.95]},
        "scheduler": {"name": "StepLR", "options": {"step_size": 10, "gamma": 0.5}, "step_unit": "batch"},
    }
    # losses, in PtyRAD's order
    assert c["loss"] == [
        {"name": "gaussian", "weight": 0.8, "options": {"dp_pow": 0.4}},
        {"name": "poisson", "weight": 0.3, "options": {"dp_pow": 0.9, "eps": 1e-5}},
        {"name": "pacbed", "weight": 0.2, "options": {"dp_pow": 0.3}},
        {"name": "sparse", "weight": 0.05, "options": {"ln_order": 2}},
        {
            "name": "similarity",
            "weight": 0.07,
            "options": {"obj_type": "phase", "scale_factor": [1, 0.5, 0.5], "blur_std": 0.8},
        },
    ]
    # constraints, in PtyRAD's application order, with their schedules and options
    got = {x["name"]: x for x in c["constraints"]}
    assert [x["name"] for x in c["constraints"]] == defaults.CONSTRAINT_ORDER
    for name, spec in raw["constraint_params"].items():
        if name == "kr_thresh":  # legacy freq: 2 -> start_iter 1, step 2
            assert (got[name]["start_iter"], got[name]["step"], got[name]["end_iter"]) == (1, 2, None)
        else:
            assert [got[name][k] for k in ("start_iter", "step", "end_iter")] == [
                spec[k] for k in ("start_iter", "step", "end_iter")
            ]
        options = {k: v for k, v in spec.items() if k not in ("start_iter", "step", "end_iter", "freq")}
        assert got[name].get("options", {}) == options, name
    # detector chain: simulate 128 px, crop to the measured 96, then the PSF
    assert c["detector"] == [
        {"name": "crop_simulation", "options": {"npix": 128}},
        {"name": "psf_blur", "options": {"std": 0.7}},
    ]
    assert c["recon"] == {
        "iterations": 25,
        "batch_size": 16,
        "grad_accumulation": 2,
        "grouping": "compact",
        "indices": {"mode": "sub", "subscan": [10, 12]},
        "seed": 7,
    }
    assert c["output"] == {
        "dir": "out/maximal",
        "save_every": 5,
        "figures": True,
        "name": {"affixes": ["all"], "prefix": "pre", "postfix": "post", "time": None},
    }
    # what is not carried over is named
    notes = "\n".join(tr.notes)
    for name in (
        "model_params.obj_preblur_std",
        "recon_params.if_quiet",
        "init_params.probe_Ls",
        "hypertune_params",
        "model_params.preload_data",
        "recon_params.compiler_configs",
        "recon_params.prefix_time",
        "init_params.probe_c5",
        "constraint_params.kr_thresh.freq",
        "init_params.meas_params.path",
    ):
        assert name in notes, name


@pytest.mark.parametrize(
    "mode, value, field",
    [
        ("dx", 0.2, "dx_A"),
        ("dk", 0.08, "dk_invA"),
        ("kMax", 2.5, "kmax_invA"),
        ("da", 0.5, "da_mrad"),
        ("angleMax", 30.0, "angle_max_mrad"),
        ("n_alpha", 1.5, "n_alpha"),
        ("RBF", 10.0, "rbf_px"),
        ("fitRBF", None, "fit_rbf"),
    ],
)
def test_calibration_modes(mode, value, field):
    cal = {"mode": mode} if value is None else {"mode": mode, "value": value}
    exp = translate(base_params(meas_calibration=cal), "p.yaml").config["experiment"]
    assert exp[field] == (True if value is None else value)
    assert [k for k in exp if k not in ("energy_kV", "conv_angle_mrad", "aberrations")] == [field]


@pytest.mark.parametrize(
    "group, native",
    [("random", "random"), ("sparse", "fps"), ("compact", "compact"), ("hilbert", "spread"), ("fps", "fps")],
)
def test_group_modes(group, native):
    p = base_params()
    p["recon_params"] = {"GROUP_MODE": group}
    tr = translate(p, "p.yaml")
    assert tr.config["recon"]["grouping"] == native
    assert ("recon_params.GROUP_MODE" in "\n".join(tr.notes)) == (group in ("sparse", "hilbert"))


@pytest.mark.parametrize(
    "n_slow, indices, native",
    [
        (256, {"mode": "full"}, "fps"),
        (257, {"mode": "full"}, "spread"),
        (300, {"mode": "sub"}, "fps"),
        (600, {"mode": "center", "subscan_slow": 300, "subscan_fast": 256}, "spread"),
    ],
)
def test_sparse_grouping_follows_ptyrads_size_rule(n_slow, indices, native):
    """PtyRAD's 'sparse' is farthest-point sampling for up to 65536 positions taking part, Hilbert-curve
    above."""
    p = base_params(pos_N_scan_slow=n_slow, pos_N_scan_fast=256)
    p["recon_params"] = {"GROUP_MODE": "sparse", "INDICES_MODE": indices}
    assert translate(p, "p.yaml").config["recon"]["grouping"] == native


def test_on_the_fly_padding_and_resampling_become_detector_stages(pm):
    p = base_params(
        meas_pad={"mode": "on_the_fly", "padding_type": "power", "target_Npix": 80, "threshold": 65},
        meas_resample={"mode": "precompute", "scale_factors": [1.5, 2]},
        simu_Npix=160,
        simu_match_mode="resample",
    )
    p["model_params"] = {"detector_blur_std": 0.5}
    tr = translate(p, "p.yaml")
    assert tr.config["detector"] == [
        {
            "name": "pad_measurements",
            "options": {"npix": 80, "padding": "power", "value": 0, "threshold": 65},
        },
        # precompute with on-the-fly padding is on the fly (PtyRAD), one factor: the smaller
        {"name": "resample_measurements", "options": {"scale": 1.5, "align": "edges"}},
        {"name": "resample_simulation", "options": {"npix": 160, "align": "edges"}},
        {"name": "psf_blur", "options": {"std": 0.5}},
    ]
    assert [s["name"] for s in tr.config["data"]["preprocess"]] == ["negative", "normalize"]
    notes = "\n".join(tr.notes)
    assert "init_params.meas_resample.mode" in notes and "init_params.meas_resample.scale_factors" in notes
    validate_components(build_config(tr.config, "p.yaml"), pm)
    # simu_Npix equal to the final pattern size (80 * 1.5 = 120) needs no stage
    p["init_params"]["simu_Npix"] = 120
    assert [s["name"] for s in translate(p, "p.yaml").config["detector"]] == [
        "pad_measurements",
        "resample_measurements",
        "psf_blur",
    ]


def test_simulated_object_shape_and_depth_operations():
    p = base_params(
        obj_params=[1, 2, 100, 120],
        obj_omode_max=2,
        obj_z_pad={"pad_layers": [1, None], "pad_types": ["edge", "vacuum"]},
        obj_z_resample={"mode": "target_slice_thickness", "value": 2.0},
    )
    tr = translate(p, "p.yaml")
    o = tr.config["model"]["object"]
    # 2 slices + 1 padded = 3 slices of 3.905 A -> 11.715 A / 2 A = 6 slices of 1.9525 A, a flat object
    assert o == {
        "modes": 2,
        "source": "flat",
        "shape": [100, 120],
        "phase_noise": 1e-8,
        "slices": 6,
        "slice_thickness_A": pytest.approx(1.9525),
    }
    assert "init_params.obj_z_pad" in "\n".join(tr.notes)


@pytest.mark.parametrize(
    "mode, value, slices, dz",
    [
        ("scale_Nlayer", 3, 9, 1.0),
        ("scale_slice_thickness", 1.5, 2, 1.5),
        ("target_Nlayer", 4, 4, 0.75),
        ("target_slice_thickness", 1.0, 3, 1.0),
    ],
)
def test_z_resample_modes_of_a_loaded_object(mode, value, slices, dz):
    p = base_params(
        obj_source="PtyRAD",
        obj_params="prev.hdf5",
        obj_Nlayer=3,
        obj_slice_thickness=1.0,
        obj_z_resample={"mode": mode, "value": value},
    )
    o = translate(p, "p.yaml", cwd="/w").config["model"]["object"]
    assert o["z_resample"]["value"] == value and o["slices"] == slices and o["slice_thickness_A"] == 1.0
    assert o["source"] == "result" and o["path"] == "/w/prev.hdf5" and o["reader"] == "ptyrad"


@pytest.mark.parametrize(
    "source, reader", [("PtyRAD", "ptyrad"), ("PtyShv", "ptychoshelves"), ("py4DSTEM", "py4dstem")]
)
def test_result_sources_for_probe_positions_and_object(source, reader):
    p = base_params(
        probe_source=source,
        probe_params="/r/a.h5",
        pos_source=source,
        pos_params="r/b.h5",
        obj_source=source,
        obj_params="/r/c.h5",
    )
    tr = translate(p, "p.yaml", cwd="/w")
    m, s = tr.config["model"], tr.config["scan"]
    assert (m["probe"]["source"], m["probe"]["reader"], m["probe"]["path"]) == ("result", reader, "/r/a.h5")
    assert (s["source"], s["reader"], s["path"], s["step_A"]) == ("result", reader, "/w/r/b.h5", 0.4)
    assert (m["object"]["source"], m["object"]["reader"], m["object"]["path"]) == (
        "result",
        reader,
        "/r/c.h5",
    )
    assert "init_params.pos_params: relative path 'r/b.h5'" in "\n".join(tr.notes)


def test_tilt_sources():
    tr = translate(base_params(tilt_source="PtyRAD", tilt_params="prev.hdf5"), "p.yaml", cwd="/w")
    assert tr.config["model"]["tilts"] == {
        "source": "result",
        "path": "/w/prev.hdf5",
        "reader": "ptyrad",
        "mode": "global",
    }
    tr = translate(base_params(tilt_source="file", tilt_params={"path": "/t.h5", "key": "tilts"}), "p.yaml")
    assert tr.config["model"]["tilts"] == {
        "source": "file",
        "path": "/t.h5",
        "key": "tilts",
        "mode": "global",
    }
    assert "init_params.tilt_source" in "\n".join(tr.notes)
    tr = translate(base_params(tilt_params={"tilt_type": "all", "init_tilts": [[2, 3]]}), "p.yaml")
    assert tr.config["model"]["tilts"] == {"source": "value", "mode": "global", "init_mrad": [2.0, 3.0]}


def test_loaders_by_extension(tmp_path):
    raw_shape = translate(base_params(meas_params={"path": "/d/scan.raw"}, pos_N_scans=64), "p.yaml").config[
        "data"
    ]
    assert raw_shape["loader"] == "empad" and raw_shape["options"] == {
        "shape": [64, 64, 64],
        "offset": 0,
        "gap": 1024,
    }
    given = translate(
        base_params(meas_params={"path": "/d/scan.raw", "shape": [64, 66, 64], "offset": 8, "gap": 0}),
        "p.yaml",
    ).config["data"]
    assert given["options"] == {"shape": [64, 66, 64], "offset": 8, "gap": 0}
    for ext, loader in (
        (".tif", "tiff"),
        (".tiff", "tiff"),
        (".npy", "npy"),
        (".zarr", "zarr"),
        (".hdf5", "hdf5"),
    ):
        data = translate(base_params(meas_params={"path": f"/d/x{ext}"}), "p.yaml").config["data"]
        assert data["loader"] == loader and data["options"] == {}
    tr = translate(base_params(meas_params={"path": "/d/x.npy", "key": "k", "gap": 5}), "p.yaml")
    assert tr.config["data"]["options"] == {}
    notes = "\n".join(tr.notes)
    assert "init_params.meas_params.key" in notes and "init_params.meas_params.gap" in notes
    # MATLAB: PtyRAD reads v7.3 (HDF5) files in stored order, v5 files in MATLAB's
    v73 = tmp_path / "v73.mat"
    with h5py.File(v73, "w") as f:
        f["dp"] = np.zeros((4, 2, 2), np.float32)
    opts = translate(base_params(meas_params={"path": str(v73), "key": "dp"}), "p.yaml").config["data"][
        "options"
    ]
    assert opts == {"key": "dp", "axis_order": "reversed"}
    sio = pytest.importorskip("scipy.io")
    v5 = tmp_path / "v5.mat"
    sio.savemat(v5, {"dp": np.zeros((2, 2, 4), np.float32)})
    assert translate(base_params(meas_params={"path": str(v5)}), "p.yaml").config["data"]["options"] == {
        "axis_order": "auto"
    }
    missing = translate(base_params(meas_params={"path": str(tmp_path / "gone.mat")}), "p.yaml")
    assert missing.config["data"]["options"] == {"axis_order": "reversed"} and "v7.3" in "\n".join(
        missing.notes
    )


def test_the_native_schema_the_translation_knows_is_the_kernels():
    """The plugin names the native sections and output keys itself (it imports only ptyrad_core.plugin)."""
    from ptyrad_core.kernel.config import Config, OutputSection
    from ptyrad_core_plugins.compat_ptyrad import native_sections

    assert native_sections() == set(Config.model_fields)
    assert output_fields() == set(OutputSection.model_fields)


def test_output_folder_naming_and_figures():
    assert {"name", "figures"} <= output_fields()
    p = base_params()
    p["recon_params"] = {
        "recon_dir_affixes": ["minimal", "model", "Ls", "z_shift"],
        "prefix_time": True,
        "postfix": "r2",
        "selected_figs": [],
    }
    tr = translate(p, "p.yaml")
    out, notes = tr.config["output"], "\n".join(tr.notes)
    assert out["name"] == {
        "affixes": ["minimal", "forward", "detector"],
        "prefix": "",
        "postfix": "r2",
        "time": "date",
    }
    assert "recon_params.recon_dir_affixes" in notes and "Ls, z_shift" in notes
    assert out["figures"] is False and "recon_params.selected_figs" in notes
    # no SAVE_ITERS: PtyRAD makes no folder and draws nothing
    p["recon_params"] = {"SAVE_ITERS": None}
    out = translate(p, "p.yaml").config["output"]
    assert out.get("name") is None and out.get("figures", False) is False


def test_crop_ranges_are_read_as_python_slices_as_ptyrad_does():
    tr = translate(base_params(meas_crop=[[0, 100], None, [-40, 60], None]), "p.yaml")
    crop = tr.config["data"]["preprocess"][0]
    assert crop == {"name": "crop", "options": {"scan_slow": [0, 8], "ky": [24, 60]}}
    assert "init_params.meas_crop: scan_slow [0, 100] is [0, 8) of 8" in "\n".join(tr.notes)
    with pytest.raises(ConfigError, match=r"init_params\.meas_crop: kx range \[70, 80\] keeps nothing"):
        translate(base_params(meas_crop=[None, None, None, [70, 80]]), "p.yaml")


@pytest.mark.parametrize("key", ["meas_flipT", "pos_scan_flipT"])
def test_flip_switches_are_three_zeros_or_ones(key):
    """``[1, 0, 1]`` maps to the flips; another length or another value fails, naming the key
    (before, ``[1, 0, 'yes']`` became ``transpose: true`` and ``[1, 0]`` passed)."""
    tr = translate(base_params(**{key: [1, 0, 1]}), "p.yaml")
    flips = (
        tr.config["data"]["preprocess"][0]["options"] if key == "meas_flipT" else tr.config["scan"]["flipT"]
    )
    assert flips == {"flipud": True, "fliplr": False, "transpose": True}
    for bad in ([1, 0], [1, 0, 0, 1], [1, 0, "yes"], [2, 0, 0]):
        with pytest.raises(ConfigError, match=rf"init_params\.{key}: expected a list of 3 switches, 0 or 1"):
            translate(base_params(**{key: bad}), "p.yaml")


def test_dicts_replace_ptyrads_defaults_as_in_ptyrad():
    """A given update / constraint dict is not merged with the default: a missing start_iter is null."""
    p = base_params()
    p["model_params"] = {"update_params": {"probe": {"lr": 1e-3}}}
    p["constraint_params"] = {"ortho_pmode": {"step": 2}}
    tr = translate(p, "p.yaml")
    assert tr.config["update"]["probe"] == {"lr": 1e-3, "start_iter": None, "end_iter": None}
    assert tr.config["update"]["object_amplitude"] == {"lr": 5e-4, "start_iter": 1, "end_iter": None}
    assert "ortho_pmode" not in [c["name"] for c in tr.config["constraints"]]
    assert "fix_probe_int" in [c["name"] for c in tr.config["constraints"]]
    notes = "\n".join(tr.notes)
    assert (
        "model_params.update_params.probe: no start_iter" in notes
        and "constraint_params.ortho_pmode: no start_iter" in notes
    )


def test_seed_save_iters_probe_powers_and_scheduler_with_lbfgs():
    p = base_params(random_seed=3, probe_pmode_max=3, probe_pmode_init_pows=[0.5, 0.3, 0.2])
    p["recon_params"] = {"SAVE_ITERS": None, "INDICES_MODE": {"mode": "center"}}
    p["model_params"] = {
        "optimizer_params": {"name": "LBFGS"},
        "scheduler_params": {"name": "StepLR", "configs": {"step_size": 2}},
    }
    tr = translate(p, "p.yaml")
    c, notes = tr.config, "\n".join(tr.notes)
    assert (
        c["recon"]["seed"] == 3
        and c["output"]["save_every"] == 0
        and c["recon"]["indices"] == {"mode": "center"}
    )
    assert c["model"]["probe"]["mode_power"] == 0.2 and "init_params.probe_pmode_init_pows" in notes
    assert c["optimizer"] == {"name": "LBFGS", "options": {}} and "model_params.scheduler_params" in notes
    assert "recon_params.SAVE_ITERS" in notes


@pytest.mark.parametrize(
    "change, option",
    [
        ({"meas_source": "custom"}, "init_params.meas_source"),
        ({"probe_source": "custom", "probe_params": None}, "init_params.probe_source"),
        ({"probe_illum_type": "xray"}, "init_params.probe_illum_type"),
        ({"pos_source": "foldslice_hdf5", "pos_params": "/p.h5"}, "init_params.pos_source"),
        (
            {"meas_params": {"path": "/d.h5", "selection": [[0, 4], None, None, None]}},
            "init_params.meas_params.selection",
        ),
        (
            {"pos_source": "PtyRAD", "pos_params": "/p.h5", "pos_scan_affine": [1.1, 0, 0, 0]},
            "init_params.pos_scan_affine",
        ),
        ({"probe_permute": [0, 2, 1]}, "init_params.probe_permute"),
        (
            {
                "obj_source": "PtyRAD",
                "obj_params": "/p.h5",
                "obj_z_pad": {"pad_layers": [1, 1], "pad_types": ["mean", "vacuum"]},
            },
            "init_params.obj_z_pad.pad_types",
        ),
        ({"simu_Npix": 96}, "init_params.simu_match_mode"),
        (
            {"tilt_params": {"tilt_type": "each", "init_tilts": [[0, 0], [1, 1]]}},
            "init_params.tilt_params.init_tilts",
        ),
        ({"probe_aberrations": {"C70": 3}}, "init_params.probe_aberrations.C70"),
        ({"probe_aberrations": {"defocus": 10, "C10": 5}}, "init_params.probe_aberrations.C10"),
        ({"probe_aberrations": {"Q3": 1}}, "init_params.probe_aberrations.Q3"),
        ({"pos_N_scans": 63}, "init_params.pos_N_scans"),
        ({"meas_Npixx": 64}, "init_params.meas_Npixx"),
        ({"obj_Nlayer": None}, "init_params.obj_Nlayer"),
    ],
)
def test_options_that_cannot_be_honoured_are_rejected_by_name(change, option):
    p = base_params(**change)
    if p["init_params"].get("obj_Nlayer", 0) is None:
        del p["init_params"]["obj_Nlayer"]
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        translate(p, "p.yaml")


@pytest.mark.parametrize(
    "section, change, option",
    [
        (
            "model_params",
            {"optimizer_params": {"name": "Adam", "load_state": "/m.hdf5"}},
            "model_params.optimizer_params.load_state",
        ),
        (
            "model_params",
            {"scheduler_params": {"name": "StepLR", "load_state": "/m.hdf5"}},
            "model_params.scheduler_params.load_state",
        ),
        ("hypertune_params", {"if_hypertune": True}, "hypertune_params.tune_params"),
        (
            "recon_params",
            {"INDICES_MODE": {"mode": "sub", "subscan_slow": 4}},
            "recon_params.INDICES_MODE.subscan_fast",
        ),
        ("loss_params", {"loss_single": {"state": False}}, "loss_params"),
        ("loss_params", {"loss_singel": {"state": True}}, "loss_params.loss_singel"),
        ("recon_params", {"NITERS": 3}, "recon_params.NITERS"),
    ],
)
def test_other_sections_reject_by_name(section, change, option):
    p = base_params()
    p[section] = change
    with pytest.raises(ConfigError, match=option.replace(".", r"\.")):
        translate(p, "p.yaml")


def test_unknown_top_level_section_and_ignored_keys():
    p = base_params()
    p["params_path"] = "x"
    with pytest.raises(ConfigError, match="params_path"):
        translate(p, "p.yaml")
    p = base_params(meas_params={"path": "/d.h5", "colour": "blue"})  # PtyRAD ignores extra keys here: noted
    tr = translate(p, "p.yaml")
    assert "init_params.meas_params.colour" in "\n".join(tr.notes)


def test_a_key_the_translation_forgets_is_an_error(monkeypatch):
    """The check that nothing is dropped silently can fail: forget one inert option."""
    from ptyrad_core_plugins.compat_ptyrad import recon  # the section that reads INERT_RECON

    monkeypatch.setattr(recon, "INERT_RECON", tuple(k for k in recon.INERT_RECON if k != "copy_params"))
    p = base_params()
    p["recon_params"] = {"copy_params": False}
    with pytest.raises(ConfigError, match=r"does not handle recon_params\.copy_params"):
        translate(p, "p.yaml")


# --------------------------------------------------------------------------------------------
# the kernel's side: load_config, overrides, native files untouched
# --------------------------------------------------------------------------------------------


def test_native_files_are_not_offered_to_translators(tmp_path, pm):
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: {path: x.h5}\nexperiment: {energy_kV: 300, conv_angle_mrad: 20, dx_A: 0.2}\n"
        "scan: {n_slow: 2, n_fast: 2, step_A: 0.5}\nmodel: {object: {slices: 1, slice_thickness_A: 2}}\n"
        "losss: [{name: gaussian}]\nrecon: {iterations: 1}\n"
    )
    with pytest.raises(ConfigError, match=rf"{path}:5: losss: unknown key 'losss'; did you mean 'loss'\?"):
        load_config(path, pm=pm)
    other = tmp_path / "other.yaml"
    other.write_text("foo: 1\nbar: {baz: 2}\n")
    with pytest.raises(
        ConfigError, match=rf"{other}: not a ptyrad_core config .*no installed plugin translates"
    ):
        load_config(other, pm=pm)


def test_overrides_of_a_translated_file(tmp_path, pm):
    path = params_file(tmp_path, base_params())
    config = load_config(
        path, ["recon_params.NITER=7", "init_params.probe_pmode_max=2", "recon.batch_size=8"], pm=pm
    )
    assert config.recon.iterations == 7 and config.model.probe.modes == 2 and config.recon.batch_size == 8
    # a translated config that does not validate names the file
    with pytest.raises(ConfigError, match=rf"{path}: the config translated from this file is invalid"):
        load_config(path, ["recon.batch_size=-1"], pm=pm)


# --------------------------------------------------------------------------------------------
# same result as the native config; convert; run
# --------------------------------------------------------------------------------------------


def ptyrad_params(pmode, nz, batch, iters, out) -> dict:
    """benchmarks/compare_ptyrad.py's ptyrad_params(), with a quarter of the positions (INDICES_MODE sub)."""
    off = {"start_iter": None, "step": 1, "end_iter": None}
    return {
        "init_params": {
            "probe_kv": 300,
            "probe_conv_angle": 21.4,
            "probe_aberrations": {"C10": -100},
            "meas_Npix": 64,
            "pos_N_scan_slow": 24,
            "pos_N_scan_fast": 24,
            "pos_scan_step_size": 0.4,
            "meas_calibration": {"mode": "dx", "value": 0.19525},
            "probe_pmode_max": pmode,
            "obj_Nlayer": nz,
            "obj_slice_thickness": 23.43 / nz,
            "meas_flipT": None,
            "meas_reshape": [576, 64, 64],
            "meas_params": {"path": str(DATA / "sto_small.h5"), "key": "measurements"},
        },
        "model_params": {
            "update_params": {
                "obja": {"start_iter": 1, "lr": 5e-4, "end_iter": None},
                "objp": {"start_iter": 1, "lr": 5e-4, "end_iter": None},
                "probe": {"start_iter": 1, "lr": 1e-4, "end_iter": None},
                "probe_pos_shifts": {"start_iter": None, "lr": 0, "end_iter": None},
            }
        },
        "loss_params": {"loss_single": {"state": True, "weight": 1.0, "dp_pow": 0.5}},
        "constraint_params": {
            k: dict(off) for k in ("ortho_pmode", "fix_probe_int", "obj_rblur", "obj_zblur", "pos_recenter")
        },
        "recon_params": {
            "NITER": iters,
            "BATCH_SIZE": {"size": batch, "grad_accumulation": 1},
            "SAVE_ITERS": None,
            "output_dir": str(out),
            "selected_figs": [],
            "convergence_monitor": None,
            "compiler_configs": {"enable": False},
            "GROUP_MODE": "random",
            "INDICES_MODE": {"mode": "sub"},
        },
    }


def native_config(pmode, nz, batch, iters, out) -> dict:
    """The same reconstruction written by hand as a native config."""
    return {
        "data": {
            "path": str(DATA / "sto_small.h5"),
            "loader": "hdf5",
            "options": {"key": "measurements"},
            # PtyRAD always removes negative values (clip_neg) and normalises (max at one)
            "preprocess": [
                {"name": "reshape", "options": {"shape": [576, 64, 64]}},
                {"name": "negative"},
                {"name": "normalize"},
            ],
        },
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "aberrations": {"defocus": 100},
        },
        "scan": {"n_slow": 24, "n_fast": 24, "step_A": 0.4, "jitter_px": 0.15},  # PtyRAD's default jitter
        "model": {
            "probe": {"modes": pmode},
            "object": {"slices": nz, "slice_thickness_A": 23.43 / nz, "phase_noise": 1e-8},
        },
        "update": {"object_amplitude": {"lr": 5e-4}, "object_phase": {"lr": 5e-4}, "probe": {"lr": 1e-4}},
        "loss": [{"name": "gaussian"}],
        "recon": {"iterations": iters, "batch_size": batch, "indices": {"mode": "sub"}, "device": "cpu"},
        "output": {"dir": str(out), "log_file": False},
    }


def test_ptyrad_file_reconstructs_exactly_as_the_native_config(tmp_path, pm):
    path = params_file(tmp_path, ptyrad_params(2, 2, 32, 3, tmp_path / "ptyrad"))
    translated = load_config(path, ["recon.device=cpu", "output.log_file=false"], pm=pm)
    native = build_config(native_config(2, 2, 32, 3, tmp_path / "native"), "native.yaml")
    runs = [Reconstruction(c, pm=pm, quiet=True).run() for c in (translated, native)]
    for name in ("object_amplitude", "object_phase", "probe", "positions", "tilts", "slice_thickness"):
        a, b = (getattr(r.model, name).detach() for r in runs)
        assert torch.equal(a, b), name
    assert runs[0].history["loss"] == runs[1].history["loss"] and runs[0].iteration == 3
    assert (tmp_path / "ptyrad" / "result.h5").is_file()


def test_convert_writes_a_native_yaml_that_loads_back_to_the_same_config(tmp_path, pm, cli_plugins, capsys):
    path = params_file(tmp_path, read(MAXIMAL) | {"recon_params": {"NITER": 4, "output_dir": "out"}})
    out = tmp_path / "native.yaml"
    assert main(["convert", str(path), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(f"# ptyrad_core config translated from {path}")
    assert "#   model_params.obj_preblur_std: deprecated" in text
    assert load_config(out, pm=pm).model_dump() == load_config(path, pm=pm).model_dump()
    assert load_config(out, pm=pm)._notes == []
    # to standard output, with an override
    capsys.readouterr()
    assert main(["convert", str(path), "--set", "recon.iterations=2"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["recon"]["iterations"] == 2
    # a native file is not converted
    assert main(["convert", str(out)]) == 2
    assert "already a native ptyrad_core config" in capsys.readouterr().err


RUN_WRAPPER = """
import importlib, importlib.metadata, pkgutil, sys
import ptyrad_core.kernel.plugin_manager as m
import ptyrad_core_plugins
installed = {ep.value for ep in importlib.metadata.entry_points(group=m.ENTRY_POINT_GROUP)}
names = [f"ptyrad_core_plugins.{i.name}" for i in pkgutil.iter_modules(ptyrad_core_plugins.__path__)]
extra = [
    importlib.import_module(n)
    for n in names
    if not n.split(".")[-1].startswith("_") and n not in installed
]
original = m.get_plugin_manager
m.get_plugin_manager = lambda *a, inline=(), **k: original(*a, inline=(*inline, *extra), **k)
from ptyrad_core.apps.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a run in a child process from the repository root
def test_cli_runs_a_ptyrad_params_file(tmp_path):
    """``ptyrad-core run`` in a subprocess, from the repository root: the data path is relative, as in
    PtyRAD."""
    p = base_params(
        meas_params={"path": "data/tiny.h5", "key": "measurements"},
        meas_reshape=[64, 64, 64],
        meas_calibration={"mode": "dx", "value": 0.19525},
        probe_aberrations={"defocus": 100},
        probe_pmode_max=1,
    )
    p["recon_params"] = {
        "NITER": 1,
        "BATCH_SIZE": {"size": 16},
        "SAVE_ITERS": None,
        "output_dir": str(tmp_path / "out"),
    }
    path = params_file(tmp_path, p)
    script = Path(sys.executable).with_name("ptyrad-core")
    eps = importlib.metadata.entry_points(group=plugin_manager.ENTRY_POINT_GROUP)
    if any(ep.value == "ptyrad_core_plugins.compat_ptyrad" for ep in eps) and script.is_file():
        cmd = [str(script)]
    else:  # the entry point is not installed yet: the same CLI with the module registered inline
        cmd = [sys.executable, "-c", RUN_WRAPPER]
    env = dict(os.environ, PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [*cmd, "run", str(path), "-q", "--set", "recon.device=cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        "note:" in proc.stderr and "init_params.meas_params.path: relative path 'data/tiny.h5'" in proc.stderr
    )
    assert (tmp_path / "out" / "result.h5").is_file()

"""Synthetic datasets (ptyrad_core.apps.simulate) against the shipped abTEM files and through a run."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml
from conftest import DATA, build_run, dataset, rel_error
from pydantic import BaseModel
from rich.console import Console

from ptyrad_core.apps.simulate import SimulationSpec, build_spec, simulate, simulate_command
from ptyrad_core.kernel.errors import ConfigError, DataError
from ptyrad_core.setup.optics import make_probe


def mirror_spec(name: str) -> dict:
    """A spec that repeats one of the shipped files: its phase slices, probe, tilt, raster and
    true positions (the edge positions of tiny differ from nominal, docs/conventions.md)."""
    a = dataset(name)["attrs"]
    path = str(DATA / name)
    return {
        "experiment": {
            "energy_kV": float(a["energy_kV"]),
            "conv_angle_mrad": float(a["conv_angle_mrad"]),
            "dx_A": float(a["dx_A"]),
            "pattern_px": 64,
            "aberrations": {"defocus": float(a["defocus_A"])},
        },
        "probe": {"source": "file", "file": {"path": path, "key": "ground_truth/probe"}},
        "object": {
            "source": "file",
            "file": {"path": path, "key": "ground_truth/phase_slices"},
            "slice_thickness_A": float(a["slice_thickness_A"]),
        },
        "scan": {
            "n_slow": int(a["N_scan_slow"]),
            "n_fast": int(a["N_scan_fast"]),
            "step_A": float(a["scan_step_A"]),
            "true_positions": {"path": path, "key": "positions_true_px"},
        },
        "tilt_mrad": [float(t) for t in a["tilt_mrad_yx"]],
    }


def lattice_spec(**changes) -> dict:
    spec = {
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "pattern_px": 64,
            "aberrations": {"defocus": 100},
        },
        "object": {"source": "lattice", "slices": 4, "slice_thickness_A": 1.9525, "vacancy_fraction": 0.1},
        "scan": {"n_slow": 8, "n_fast": 8, "step_A": 0.4},
    }
    for key, value in changes.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return spec


def read(path) -> dict:
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        out["attrs"] = dict(f.attrs)
    return out


@pytest.mark.parametrize("name", ["tiny.h5", "tiny_tilt.h5"])
def test_mirror_reproduces_the_shipped_noiseless_patterns(name, tmp_path):
    path = simulate(mirror_spec(name), tmp_path / "mirror.h5")
    sim, ref = read(path), read(DATA / name)
    assert sim["measurements_noiseless"].shape == ref["measurements_noiseless"].shape == (8, 8, 64, 64)
    assert rel_error(sim["measurements_noiseless"], ref["measurements_noiseless"]) < 1e-4
    assert np.array_equal(sim["measurements"], sim["measurements_noiseless"])  # no dose: noiseless
    # the raster is centred on the object exactly as in the shipped files
    assert np.allclose(sim["positions_nominal_px"], ref["positions_nominal_px"], atol=1e-12)
    assert np.array_equal(sim["positions_true_px"], ref["positions_true_px"])
    assert np.array_equal(sim["ground_truth/phase_slices"], ref["ground_truth/phase_slices"])
    assert np.allclose(sim["ground_truth/phase_projected"], ref["ground_truth/phase_projected"], atol=1e-5)
    for key in (
        "energy_kV",
        "conv_angle_mrad",
        "defocus_A",
        "C10_A",
        "scan_step_A",
        "N_scan_slow",
        "N_scan_fast",
        "electrons_per_pattern",
        "n_slices",
        "slice_thickness_A",
        "thickness_A",
        "wavelength_A",
        "dk_invA",
        "dx_A",
    ):
        assert np.allclose(sim["attrs"][key], ref["attrs"][key], rtol=1e-6), key
    assert np.array_equal(sim["attrs"]["tilt_mrad_yx"], ref["attrs"]["tilt_mrad_yx"])
    assert np.array_equal(sim["attrs"]["object_shape_px"], ref["attrs"]["object_shape_px"])


def test_mirror_with_nominal_positions_differs_at_the_edges(tmp_path):
    """Without the true positions the tiny edge patterns are off by ~2e-2 (the test can fail)."""
    spec = mirror_spec("tiny.h5")
    del spec["scan"]["true_positions"]
    sim, ref = read(simulate(spec, tmp_path / "nominal.h5")), read(DATA / "tiny.h5")
    assert rel_error(sim["measurements_noiseless"], ref["measurements_noiseless"]) > 1e-3


def test_probe_from_parameters(tmp_path):
    spec = lattice_spec(experiment={"aberrations": {"defocus": 100, "C30": 1e4}})
    d = read(simulate(spec, tmp_path / "p.h5"))
    expected = make_probe(64, 0.19525, 300, 21.4, {"defocus": 100, "C30": 1e4})
    assert np.allclose(d["ground_truth/probe"], expected, atol=1e-7)
    assert d["attrs"]["defocus_A"] == 100 and d["attrs"]["C10_A"] == -100
    assert d["attrs"]["probe_source"] == "parameters"


def test_lattice_object_and_layout(tmp_path):
    d = read(simulate(lattice_spec(), tmp_path / "lat.h5"))
    ph = d["ground_truth/phase_slices"]
    assert ph.shape == (4, 80, 80) and ph.dtype == np.float32  # 64 + floor(7 * 2.0487) + 2
    assert np.allclose(d["ground_truth/phase_projected"], ph.sum(0), atol=1e-6)
    assert d["measurements"].dtype == np.float32 and d["ground_truth/probe"].dtype == np.complex64
    # corner atoms (Z = 38) on even slices, centre atoms (Z = 22) on odd slices, at their z
    atoms, numbers = d["ground_truth/atoms_positions_A"], d["ground_truth/atoms_numbers"]
    assert set(numbers) == {22, 38} and atoms.shape == (len(numbers), 3)
    assert np.allclose(np.unique(atoms[:, 2]), (np.arange(4) + 0.5) * 1.9525)
    # each atom sits on a phase maximum: x along columns, y along rows (the shipped files' order)
    inside = (atoms[:, 0] > 1) & (atoms[:, 0] < 14) & (atoms[:, 1] > 1) & (atoms[:, 1] < 14)
    x, y, z = atoms[inside][0]
    k = int(z // 1.9525)
    row, col = int(round(y / 0.19525)), int(round(x / 0.19525))
    patch = ph[k, row - 2 : row + 3, col - 2 : col + 3]
    assert patch[2, 2] == patch.max() > 0.1
    # the vacancies make it non-periodic: fewer atoms than sites
    with h5py.File(simulate(lattice_spec(object={"vacancy_fraction": 0.0}), tmp_path / "full.h5"), "r") as f:
        assert len(f["ground_truth/atoms_numbers"]) > len(numbers)


def test_poisson_dose_gives_the_mean_counts(tmp_path):
    dose, step = 2e4, 0.4
    d = read(simulate(lattice_spec(dose_e_per_A2=dose, seed=3), tmp_path / "dose.h5"))
    epp = dose * step**2  # 3200 electrons per pattern
    assert d["attrs"]["electrons_per_pattern"] == pytest.approx(epp)
    noiseless, counts = d["measurements_noiseless"].astype(float), d["measurements"].astype(float)
    # a phase object conserves intensity: every expected pattern holds epp electrons
    assert np.allclose(noiseless.sum(axis=(2, 3)), epp, rtol=1e-5)
    assert np.array_equal(counts, np.round(counts)) and counts.min() >= 0
    assert abs(counts.sum() / (64 * epp) - 1) < 3 / np.sqrt(64 * epp)  # 3 sigma of the total count
    # Poisson statistics: the variance equals the mean pixel by pixel
    bright = noiseless > 5
    assert np.mean((counts[bright] - noiseless[bright]) ** 2 / noiseless[bright]) == pytest.approx(
        1.0, abs=0.1
    )
    again = read(simulate(lattice_spec(dose_e_per_A2=dose, seed=3, batch_size=10), tmp_path / "again.h5"))
    assert np.array_equal(again["measurements"], d["measurements"])  # seeded, whatever the batch size


def test_position_errors_make_true_differ_from_nominal(tmp_path):
    d = read(simulate(lattice_spec(scan={"position_error_A": 0.1}), tmp_path / "err.h5"))
    diff = (d["positions_true_px"] - d["positions_nominal_px"]) * 0.19525
    assert np.sqrt(np.mean(diff**2)) == pytest.approx(0.1, rel=0.25)
    assert d["attrs"]["position_error_sigma_A"] == 0.1
    assert np.all(np.floor(d["positions_true_px"]) + 64 <= d["ground_truth/phase_slices"].shape[1])


def test_roundtrip_through_a_reconstruction(tmp_path, tiny_config):
    """The file is read by the hdf5 loader and `scan: {source: file, key: positions_nominal_px}`."""
    path = simulate(lattice_spec(dose_e_per_A2=1e5, tilt_mrad=[1.0, -0.5]), tmp_path / "sim.h5")
    cfg = tiny_config(
        data={"path": str(path), "loader": "hdf5", "options": {"key": "measurements"}},
        scan={"source": "file", "path": str(path), "key": "positions_nominal_px", "n_slow": 8, "n_fast": 8},
    )
    run = build_run(cfg).run()
    assert run.iteration == 2 and np.all(np.isfinite(run.history["loss"]))
    assert run.model.object_shape == (80, 80) and run.model.window == (64, 64)
    assert np.allclose(
        run.model.refined_positions().detach().numpy(), read(path)["positions_nominal_px"], atol=1e-2
    )
    assert run.measurements.metadata["electrons_per_pattern"] == pytest.approx(1.6e4)
    with h5py.File(run.result_path, "r") as f:
        assert f.attrs["data_file"] == str(path)


def test_spec_validation(tmp_path):
    with pytest.raises(ConfigError, match="scan_step"):
        build_spec({**lattice_spec(), "scan_step": 1})
    with pytest.raises(ConfigError, match="object.file"):
        build_spec(lattice_spec(object={"source": "file"}))
    with pytest.raises(ConfigError, match="scan"):
        build_spec({"experiment": {}})
    with pytest.raises(DataError, match="leave the"):
        simulate(lattice_spec(object={"shape_px": [70, 70]}), tmp_path / "small.h5")

    def walk(model: type[BaseModel]):
        assert model.model_config.get("extra") == "forbid", model
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            for sub in getattr(field.annotation, "__args__", ()) or (field.annotation,):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    walk(sub)

    walk(SimulationSpec)


def test_simulate_command_resolves_paths_from_the_spec_file(tmp_path):
    spec = mirror_spec("tiny.h5")
    spec["output"] = "out/sim.h5"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    console = Console(record=True, width=200)
    path = simulate_command(tmp_path / "spec.yaml", console=console)
    assert path == (tmp_path / "out" / "sim.h5").resolve() and path.is_file()
    assert "8 x 8 patterns of 64 x 64 px" in console.export_text()
    other = simulate_command(tmp_path / "spec.yaml", tmp_path / "elsewhere.h5", console=console)
    assert other == tmp_path / "elsewhere.h5" and other.is_file()

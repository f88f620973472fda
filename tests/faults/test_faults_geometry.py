"""Guarantee 7, geometry stays physical: the scan in Angstrom does not depend on the pixel size.

Preprocessing steps and detector stages may change the simulation's real-space pixel ``dx``
(``crop_simulation``, ``pad_measurements``, the ``crop`` / ``pad`` steps on the detector axes).
Positions given in pixels of the calibrated data (a file, ``units: px``) or of a previous
reconstruction are rescaled to it, so the scan step and field of view in Angstrom are those of
the file; ``validate`` prints both, in Angstrom and pixels, so a wrong calibration shows before
a run. Before this was built, positions in pixels were used as simulation pixels: with
``crop_simulation npix: 80`` the 0.4 A step of ``data/*.h5`` became 0.32 A.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptyrad_core.kernel.config import build_config, validate_components
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.setup import scan
from ptyrad_core.setup.initialize import build_model, prepare_data, select_device

ROOT = Path(__file__).resolve().parents[2]
TINY, STO = ROOT / "data" / "tiny.h5", ROOT / "data" / "sto_small.h5"
DX = 0.19525  # experiment.dx_A of the shipped files: the pixel their positions_nominal_px are given in


def file_positions(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["positions_nominal_px"][()].astype(np.float64)


def model_for(cfg: dict):
    config = build_config(cfg)
    pm = get_plugin_manager()
    components = validate_components(config, pm)
    data = prepare_data(config, pm, components)
    return build_model(config, data, components, select_device("cpu"), np.random.default_rng(0), pm)


def geometry_A(pos_px: np.ndarray, dx: float) -> tuple[float, np.ndarray]:
    """Scan step and scanned span (y, x) in Angstrom of positions in pixels of ``dx``."""
    return scan.scan_step(pos_px) * dx, (pos_px.max(0) - pos_px.min(0)) * dx


ZERO_PAD = {"npix": 80, "padding": "constant", "value": 0.0}

# (detector stages, preprocessing steps, simulation dx / calibrated dx)
CHANGES = {
    "crop_simulation": ([{"name": "crop_simulation", "options": {"npix": 80}}], [], 64 / 80),
    "pad_measurements": ([{"name": "pad_measurements", "options": ZERO_PAD}], [], 64 / 80),
    "pad+resample_measurements": (
        [
            {"name": "pad_measurements", "options": ZERO_PAD},
            {"name": "resample_measurements", "options": {"scale": 0.8}},
        ],
        [],
        64 / 80,
    ),
    "resample_simulation": ([{"name": "resample_simulation", "options": {"npix": 48}}], [], 1.0),
    "bin_simulation": ([{"name": "bin_simulation", "options": {"factor": 2}}], [], 1.0),
    "preprocess crop ky kx": ([], [{"name": "crop", "options": {"ky": [8, 56], "kx": [8, 56]}}], 64 / 48),
    "preprocess pad": ([], [{"name": "pad", "options": ZERO_PAD}], 64 / 80),
    "preprocess resample": ([], [{"name": "resample", "options": {"scale": 0.75}}], 1.0),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_file_positions_in_pixels_keep_the_step_in_angstrom(tiny_config, change):
    detector, preprocess, ratio = CHANGES[change]
    cfg = tiny_config(detector=detector)
    cfg["data"]["preprocess"] = preprocess
    model = model_for(cfg)
    assert model.dx == pytest.approx(DX * ratio, rel=1e-9)
    want_step, want_span = geometry_A(file_positions(TINY), DX)
    assert want_step == pytest.approx(0.4, rel=1e-6)  # the file's scan_step_A
    step, span = geometry_A(model.refined_positions().detach().double().numpy(), model.dx)
    assert step == pytest.approx(want_step, rel=1e-5)  # before: 0.4 * ratio
    assert span == pytest.approx(want_span, rel=1e-5)


@pytest.mark.parametrize("source", ["raster", "file in A"])
def test_raster_and_angstrom_positions_keep_the_step(tiny_config, tmp_path, source):
    cfg = tiny_config(detector=CHANGES["crop_simulation"][0])
    if source == "raster":
        cfg["scan"] = {"source": "raster", "step_A": 0.4, "n_slow": 8, "n_fast": 8}
    else:
        np.save(tmp_path / "pos_A.npy", file_positions(TINY) * DX)
        cfg["scan"] = {
            "source": "file",
            "path": str(tmp_path / "pos_A.npy"),
            "units": "A",
            "n_slow": 8,
            "n_fast": 8,
        }
    model = model_for(cfg)
    step, _ = geometry_A(model.refined_positions().detach().double().numpy(), model.dx)
    assert model.dx == pytest.approx(DX * 0.8) and step == pytest.approx(0.4, rel=1e-5)


def test_a_crop_simulation_run_keeps_the_step_and_a_prior_keeps_it_again(
    cli, tiny_config, write_yaml, tmp_path, frozen
):
    """A run with crop_simulation writes positions whose step is 0.4 A at its dx; a run at the data's own
    dx that starts from those positions (scan.source: result, dx_A 0.1562) rescales them back to 0.4 A."""
    cfg = tiny_config(detector=CHANGES["crop_simulation"][0])
    cfg["recon"].update(iterations=1, batch_size=64)
    cfg["output"].update(dir=str(tmp_path / "crop"), log_file=False)
    inputs = frozen(TINY)
    out = cli("run", write_yaml(cfg, "crop.yaml"), "-q")
    assert out.code == 0, str(out)
    assert "rescaled by 1.25" in out.err  # the note says what happened
    inputs.assert_unchanged()
    result = tmp_path / "crop" / "result.h5"
    with h5py.File(result, "r") as f:
        dx, nominal = float(f.attrs["dx_A"]), f["positions/nominal_px"][()]
    assert dx == pytest.approx(DX * 0.8)
    step, span = geometry_A(nominal, dx)
    want_step, want_span = geometry_A(file_positions(TINY), DX)
    assert step == pytest.approx(want_step, rel=1e-5) and span == pytest.approx(want_span, rel=1e-5)

    again = tiny_config()  # no detector stage: dx = 0.19525 A, the prior's pixels are 0.1562 A
    again["scan"] = {
        "source": "result",
        "path": str(result),
        "reader": "ptyrad_core",
        "n_slow": 8,
        "n_fast": 8,
    }
    model = model_for(again)
    assert model.dx == pytest.approx(DX)
    step, span = geometry_A(model.refined_positions().detach().double().numpy(), model.dx)
    assert step == pytest.approx(want_step, rel=1e-4) and span == pytest.approx(want_span, rel=1e-4)


def scan_line(outcome) -> tuple[float, ...]:
    """(step A, step px, fov y A, fov x A, fov y px, fov x px) from validate's ``scan`` line."""
    line = next((s for s in outcome.out.splitlines() if s.strip().startswith("scan ")), None)
    assert line is not None, str(outcome)
    m = re.search(
        r"step ([\d.]+) A \(([\d.]+) px\), field of view ([\d.]+) x ([\d.]+) A \(([\d.]+) x ([\d.]+) px\)",
        line,
    )
    assert m, line
    return tuple(float(v) for v in m.groups())


@pytest.mark.parametrize(
    "dx_A, detector, dx_sim",
    [
        (DX, [], DX),
        (DX, CHANGES["crop_simulation"][0], DX * 0.8),
        (0.25, [], 0.25),  # a wrong calibration: the step is wrong by the same factor, and shows
    ],
)
def test_validate_prints_step_and_field_of_view_in_angstrom(cli, write_yaml, dx_A, detector, dx_sim):
    cfg = {
        "data": {"path": str(STO), "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": dx_A,
            "aberrations": {"defocus": 100},
        },
        "scan": {
            "source": "file",
            "path": str(STO),
            "key": "positions_nominal_px",
            "n_slow": 24,
            "n_fast": 24,
        },
        "model": {"object": {"slices": 1, "slice_thickness_A": 3.905}},
        "loss": [{"name": "gaussian"}],
        "detector": detector,
        "recon": {"iterations": 1},
    }
    out = cli("validate", write_yaml(cfg))
    assert out.code == 0, str(out)
    step_A, step_px, fy_A, fx_A, fy_px, fx_px = scan_line(out)
    pos = file_positions(STO)
    window = 80 if detector else 64
    want_step = scan.scan_step(pos) * dx_A  # 0.4 A with the right calibration
    want_fov = np.ptp(pos, axis=0) * dx_A + window * dx_sim
    assert step_A == pytest.approx(want_step, rel=1e-3) and step_px == pytest.approx(
        want_step / dx_sim, rel=1e-3
    )
    assert (fy_A, fx_A) == pytest.approx(tuple(want_fov), rel=1e-3)
    assert (fy_px, fx_px) == pytest.approx(tuple(want_fov / dx_sim), rel=1e-3)
    assert (step_A == pytest.approx(0.4, rel=1e-3)) == (dx_A == DX)


def test_rescaled_positions_that_leave_a_fixed_object_are_a_clean_error(
    cli, tiny_config, write_yaml, clean_error
):
    """model.object.shape 96 x 96 holds tiny's 80 px windows at the file's pixel numbers (up to 95), not once
    they are rescaled by 1.25 (up to 98): one line naming the positions and the option to change, exit 2."""
    cfg = tiny_config(detector=CHANGES["crop_simulation"][0])
    cfg["model"]["object"]["shape"] = [96, 96]
    out = cli("validate", write_yaml(cfg))
    clean_error(out, "scan.path", "model.object.shape")

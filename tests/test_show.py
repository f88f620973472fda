"""The result-file summary (ptyrad_core.apps.show) and FRC of result files."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import BASE_CONFIG, DATA, build_run
from rich.console import Console

from ptyrad_core.apps.metrics import frc_command, load_projected_phase
from ptyrad_core.apps.show import position_statistics, show_command, summary
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.errors import DataError


@pytest.fixture(scope="module")
def result_file(tmp_path_factory):
    """A 2-iteration run on tiny.h5 with probe and position refinement, 2 probe modes."""
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["output"] = {"dir": str(tmp_path_factory.mktemp("show"))}
    cfg["update"] = {"positions": {"lr": 5e-2}, "probe": {"lr": 1e-3}}
    cfg["model"]["probe"] = {"modes": 2, "mode_power": 0.1}
    run = build_run(cfg).run()
    return run.result_path


def render(renderable) -> str:
    console = Console(record=True, width=160)
    console.print(renderable)
    return console.export_text()


def test_summary_renders_the_key_values(result_file):
    d = read_result(result_file)
    a = d["attrs"]
    text = render(summary(result_file))
    assert str(result_file) in text
    assert "iteration" in text and f"│ {int(a['iteration'])} " in text
    assert a["data_sha256"] in text and a["data_file"] in text
    assert f"{d['history/loss_terms/gaussian'][-1]:.6g}" in text and "gaussian" in text
    assert f"{d['history/loss'][-1]:.6g}" in text
    assert "1 mode(s) x 2 slice(s) x 80 x 80 px" in text
    assert "2 mode(s) of 64 x 64 px" in text
    powers = d["probe/powers"]
    assert f"{100 * powers[0]:.3g} %" in text and f"{100 * powers[1]:.3g} %" in text
    shift = (d["positions/refined_px"] - d["positions/nominal_px"]) * a["dx_A"]
    rms = np.sqrt(np.mean(np.sum(shift**2, axis=1)))
    assert rms > 1e-3  # the refinement moved the positions
    assert f"RMS {rms:.4g} A" in text
    assert "3.905 A (total 7.81 A)" in text
    assert "0.19525 A" in text
    assert a["versions"]["torch"] in text and a["versions"]["ptyrad_core"] in text
    assert "hdf5" in text and "built-in" in text
    assert "s median" in text


def test_position_statistics():
    nominal = np.zeros((4, 2))
    refined = np.array([[3.0, 4.0], [0, 0], [0, 0], [0, 0]])
    s = position_statistics(nominal, refined, 0.5)
    assert s["rms_A"] == pytest.approx(2.5 / 2) and s["max_A"] == pytest.approx(2.5)
    assert s["mean_yx_A"] == pytest.approx((0.375, 0.5))


def test_show_command_prints(result_file):
    console = Console(record=True, width=160)
    show_command(result_file, console)
    assert "slice thickness" in console.export_text()


def test_summary_rejects_other_files():
    with pytest.raises(DataError, match="not a ptyrad_core result file"):
        summary(DATA / "tiny.h5")
    with pytest.raises(DataError, match="does not exist"):
        summary(DATA / "missing.h5")


def test_frc_of_result_files(result_file):
    """A result against itself correlates perfectly; against the ground truth the region is the
    common scanned box and the FRC is computed (its value after 2 iterations means little)."""
    img = load_projected_phase(result_file)
    assert img["kind"] == "result" and img["image"].shape == (80, 80)
    console = Console(record=True, width=160)
    same = frc_command(result_file, result_file, console=console)
    assert same["resolution_A"] is None and np.allclose(same["frc"][1:], 1.0)
    truth = frc_command(result_file, DATA / "tiny.h5", console=console)
    assert truth["frc"].shape == truth["frequency_invA"].shape and np.all(np.abs(truth["frc"]) <= 1 + 1e-12)

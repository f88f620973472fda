"""The notebook API: ptyrad_core.run and ptyrad_core.load_result on a short run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from matplotlib.figure import Figure

import ptyrad_core
from ptyrad_core.apps.result_view import Result
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.errors import DataError


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from conftest import BASE_CONFIG

    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["model"]["object"]["modes"] = 2
    cfg["model"]["object"]["phase_noise"] = 0.01
    cfg["model"]["probe"] = {"modes": 2}
    cfg["loss"] = [{"name": "gaussian"}, {"name": "sparse", "weight": 0.01}]
    cfg["update"] = {"positions": {"lr": 1e-3}}
    cfg["output"] = {"dir": str(tmp_path_factory.mktemp("api") / "out"), "figures": False}
    return ptyrad_core.run(cfg)


def test_load_result_returns_every_array_of_the_file(finished):
    r = ptyrad_core.load_result(finished.result_path)
    raw = read_result(finished.result_path)
    assert isinstance(r, Result) and r.iteration == 2
    assert r.object_phase.shape == r.object_amplitude.shape == (2, 2, *r.object_phase.shape[2:])
    np.testing.assert_array_equal(r.object_phase, finished.model.object_phase.detach().numpy())
    np.testing.assert_array_equal(r.probe, raw["probe/modes"])
    assert r.probe.shape[0] == 2 and np.iscomplexobj(r.probe) and r.probe_powers.sum() == pytest.approx(1)
    np.testing.assert_allclose(
        r.positions_refined_px, finished.model.refined_positions().detach().numpy(), atol=1e-5
    )
    assert r.positions_nominal_px.shape == (64, 2) and np.abs(r.position_shifts_A).max() > 0
    assert r.tilts_mrad.shape == (1, 2) and r.slice_thickness_A == pytest.approx(3.905)
    assert set(r.loss_terms) == {"gaussian", "sparse"} and len(r.loss) == 2
    np.testing.assert_allclose(r.loss, finished.history["loss"])
    np.testing.assert_array_equal(r.history_iteration, [1, 2])
    assert r.config["loss"][1]["name"] == "sparse" and r.occupancy.shape == (2,)
    assert any(p["source"] == "built-in" for p in r.plugins) and "torch" in r.versions
    np.testing.assert_allclose(r.object, r.object_amplitude * np.exp(1j * r.object_phase))
    assert r.projected_phase.shape == r.object_phase.shape[2:]
    assert "iteration 2" in repr(r) and "array" not in repr(r)
    # the output folder works too
    assert ptyrad_core.load_result(finished.result_path.parent).path == finished.result_path


def test_plot_helpers_return_figures(finished, tmp_path):
    r = ptyrad_core.load_result(finished.result_path)
    figures = [
        r.plot_phase(),
        r.plot_phase(slice=1),
        r.plot_phase(mode=0, full=True),
        r.plot_phase(slice=-1, mode=1),
        r.plot_amplitude(),
        r.plot_slices(),
        r.plot_slices("amplitude"),
        r.plot_probe(),
        r.plot_loss(),
        r.plot_positions(),
        r.plot_tilts(),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    figures[1].savefig(tmp_path / "phase.png")
    assert (tmp_path / "phase.png").stat().st_size > 1000
    assert "slice 1" in figures[1].axes[0].get_title()
    with pytest.raises(IndexError, match="2 slice"):
        r.plot_phase(slice=2)
    with pytest.raises(ValueError, match="part"):
        r.plot_slices("probe")


def test_load_result_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ptyrad_core.load_result(tmp_path / "missing.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataError, match="not a ptyrad_core result file"):
        ptyrad_core.load_result(tmp_path / "other.h5")


def test_run_takes_overrides_resume_and_overwrite(tiny_config, tmp_path):
    """As documented (docs/reliability.md): ``overrides`` apply to a dict as to a path (before, a
    dict's were dropped), ``resume`` and ``overwrite`` as on the command line; a wrong argument
    is a one-line ConfigError, not a TypeError."""
    from ptyrad_core.kernel.config import build_config
    from ptyrad_core.kernel.errors import ConfigError, OutputError

    cfg = tiny_config()
    before = copy.deepcopy(cfg)
    first = ptyrad_core.run(cfg, overrides=["recon.iterations=2", f"output.dir={tmp_path / 'a'}"])
    assert first.iteration == 2 and first.output_dir == tmp_path / "a"
    assert cfg == before  # the caller's dict is not changed
    cfg["output"]["dir"] = str(tmp_path / "a")
    with pytest.raises(OutputError, match="already holds a result"):
        ptyrad_core.run(cfg)
    more = ptyrad_core.run(cfg, overrides=["recon.iterations=3"], resume=first.result_path)
    assert more.iteration == 3
    assert ptyrad_core.run(cfg, overrides=["recon.iterations=1"], overwrite=True).iteration == 1
    for bad, words in (
        ((None,), "expected a YAML path, a config dict or a Config, got NoneType"),
        ((42,), "got int"),
        ((build_config(cfg), ["recon.iterations=1"]), "overrides apply to a YAML path or a dict"),
    ):
        with pytest.raises(ConfigError, match=words):
            ptyrad_core.run(*bad)
    with pytest.raises(ConfigError, match="overwrite must be True or False, got 'no'"):
        ptyrad_core.run(cfg, overwrite="no")

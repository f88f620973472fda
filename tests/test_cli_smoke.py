"""One subprocess per command: ``python -m ptyrad_core.apps.cli COMMAND`` as a user starts it.

Everything else about the CLI is tested in process (the ``cli`` fixture of tests/conftest.py
calls ``cli.main(argv)``); these check what only a fresh interpreter shows: the module's own
entry, the imports a command needs on its own, the exit code and a clean stderr. Each command
runs once, on the smallest input that exercises it (tiny.h5, one iteration).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import DATA, SIM_SPEC

pytestmark = pytest.mark.slow  # eleven interpreters, each importing torch

TUNE = {
    "params": {"experiment.aberrations.defocus": {"type": "float", "low": 60, "high": 140}},
    "n_trials": 1,
}
SPEC = SIM_SPEC
PTYRAD_PARAMS = {
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


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A 1-iteration result on tiny.h5, made in this process, for show / report / frc."""
    from conftest import BASE_CONFIG, build_run

    cfg = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    cfg["output"] = {"dir": str(tmp_path_factory.mktemp("smoke") / "out"), "figures": False}
    cfg["recon"]["iterations"] = 1
    return build_run(cfg).run().result_path


def config_file(tiny_config, write_yaml, **sections):
    cfg = tiny_config(**sections)
    cfg["recon"]["iterations"] = 1
    return write_yaml(cfg)


def ok(outcome):
    assert outcome.code == 0, str(outcome)
    assert "Traceback" not in outcome.err, str(outcome)
    return outcome


def test_run(cli, tiny_config, write_yaml):
    path = config_file(tiny_config, write_yaml)
    ok(cli("run", path, "-q", subprocess=True))
    out = yaml.safe_load(path.read_text())["output"]["dir"]
    with h5py.File(f"{out}/result.h5", "r") as f:
        assert int(f.attrs["iteration"]) == 1


def test_validate_refuses_a_bad_key_in_one_line(cli, tiny_config, write_yaml):
    """The error path through a real process: exit 2, the key named, no traceback."""
    cfg = tiny_config()
    cfg["recon"]["batch_sise"] = 3
    outcome = cli("validate", write_yaml(cfg), subprocess=True)
    assert outcome.code == 2, str(outcome)
    assert "recon.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?" in outcome.err
    assert "Traceback" not in outcome.err


def test_convert(cli, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PTYRAD_PARAMS))
    ok(cli("convert", params, "-o", tmp_path / "native.yaml", subprocess=True))
    assert (tmp_path / "native.yaml").read_text().startswith("# ptyrad_core config translated from")


def test_plugins(cli):
    rows = json.loads(ok(cli("plugins", "--json", subprocess=True)).out)["components"]
    assert {"gaussian", "hdf5"} <= {r["name"] for r in rows}


def test_tune(cli, tiny_config, write_yaml):
    path = config_file(tiny_config, write_yaml, tune=TUNE)
    ok(cli("tune", path, subprocess=True))
    out = yaml.safe_load(path.read_text())["output"]["dir"]
    assert len(list(Path(out).glob("*/best_config.yaml"))) == 1  # <output.dir>/<study>/


def test_show(cli, result):
    assert str(result) in ok(cli("show", result, subprocess=True)).out


def test_report(cli, result, tmp_path):
    ok(cli("report", result, "-o", tmp_path / "report", subprocess=True))
    assert (tmp_path / "report" / "report.html").is_file()


def test_frc(cli, result, tmp_path):
    ok(cli("frc", result, result, "-o", tmp_path / "frc.png", subprocess=True))
    assert (tmp_path / "frc.png").stat().st_size > 0


def test_simulate(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    ok(cli("simulate", spec, "-o", tmp_path / "sim.h5", subprocess=True))
    with h5py.File(tmp_path / "sim.h5", "r") as f:
        assert f["measurements"].shape == (3, 3, 32, 32)


def test_new_plugin(cli, tmp_path):
    ok(cli("new-plugin", "my_filter", "--family", "constraint", "--dir", tmp_path, subprocess=True))
    assert (tmp_path / "ptyrad-my-filter" / "pyproject.toml").is_file()


def test_docs(cli):
    assert "ptyrad_register_loss_terms" in ok(cli("docs", "hooks", subprocess=True)).out

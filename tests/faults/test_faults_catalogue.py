"""Faults from a search of bad inputs over every command (docs/reliability.md).

Each case: exit 2, one line, no traceback, the message names the file / key / value, and every
input byte-for-byte unchanged. The mechanisms: a run's output files are judged against the files
it reads and against their owners' marks before any data are read (``results.check_slot``, the
``ptyrad_output_files`` hook); ``validate`` refuses what ``run`` would refuse before the data; the
config reader turns any YAML failure into one line; a simulation's arrays are sized against the
memory available before they are allocated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.h5"


def call(cli, command: str, *args):
    """``cli`` with ``command`` (``"run --overwrite"``) split, and ``-q`` for ``run``."""
    parts = command.split()
    return cli(*parts, *args, *(["-q"] if parts[0] == "run" else []))


def one_line(outcome, clean_error, *names):
    clean_error(outcome, *names)
    assert len(outcome.err.strip().splitlines()) == 1, str(outcome)


@pytest.fixture
def config_at(tmp_path, tiny_config, write_yaml):
    """``config_at(out, **sections)``: the tiny config written to tmp_path/config.yaml, its output
    folder ``out`` (under tmp_path)."""

    def make(out="out", **sections):
        cfg = tiny_config(**sections)
        cfg["output"] = {"dir": str(tmp_path / out), "figures": False}
        cfg["recon"] = {**cfg["recon"], "iterations": 1, "device": "cpu"}
        return write_yaml(cfg), cfg

    return make


# -- the result file and the observers' files ------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run", "run --overwrite"])
def test_the_result_file_is_never_a_file_the_run_reads(
    cli, frozen, clean_error, config_at, write_yaml, tmp_path, command
):
    """The measurements copied to out/result.h5 and read from there: refused even with --overwrite
    (before, --overwrite replaced the raw scan with the reconstruction)."""
    config, cfg = config_at()
    data = tmp_path / "out" / "result.h5"
    data.parent.mkdir()
    shutil.copy(TINY, data)
    cfg["data"]["path"] = str(data)
    write_yaml(cfg)
    inputs = frozen(data, config)
    outcome = call(cli, command, config)
    inputs.assert_unchanged()
    one_line(outcome, clean_error, str(data), "data.path", "reads")


def test_a_foreign_file_named_result_h5_is_not_called_a_result(cli, frozen, clean_error, config_at, tmp_path):
    config, _ = config_at()
    foreign = tmp_path / "out" / "result.h5"
    foreign.parent.mkdir()
    with h5py.File(foreign, "w") as f:
        f["mine"] = np.arange(3)
    inputs = frozen(foreign)
    outcome = cli("run", config, "-q")
    inputs.assert_unchanged()
    one_line(outcome, clean_error, str(foreign), "is not a ptyrad_core result file", "--overwrite")
    assert "--resume" not in outcome.err


@pytest.mark.parametrize(
    "name, content, figures",
    [
        ("report.html", "<html>mine</html>", True),
        ("figures/loss.png", "not a png", True),
        ("convergence.json", json.dumps({"mine": 1}), False),
    ],
)
@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_foreign_file_where_an_observer_writes_is_refused_before_the_data(
    cli, frozen, clean_error, config_at, write_yaml, tmp_path, name, content, figures, command
):
    config, cfg = config_at()
    cfg["output"]["figures"] = figures
    write_yaml(cfg)
    foreign = tmp_path / "out" / name
    foreign.parent.mkdir(parents=True)
    foreign.write_text(content)
    inputs = frozen(foreign, config)
    outcome = call(cli, command, config)
    inputs.assert_unchanged()
    one_line(outcome, clean_error, str(foreign), "--overwrite")
    assert not (tmp_path / "out" / "result.h5").exists()


def test_an_observer_file_may_replace_its_own_previous_output_or_anything_with_overwrite(
    cli, config_at, write_yaml, tmp_path
):
    config, cfg = config_at()
    cfg["output"]["figures"] = True
    write_yaml(cfg)
    assert cli("run", config, "-q").code == 0  # writes report.html, figures/, convergence.json
    result = tmp_path / "out" / "result.h5"
    assert cli("run", config, "-q", "--resume", result).code == 0  # its own files: replaced
    (tmp_path / "out" / "convergence.json").write_text("{}")  # now foreign
    assert cli("run", config, "-q", "--resume", result).code == 2
    assert cli("run", config, "-q", "--overwrite").code == 0
    assert json.loads((tmp_path / "out" / "convergence.json").read_text())["format"]


# -- what run refuses before the data, validate refuses too ---------------------------------


@pytest.mark.parametrize(
    "section, value, names",
    [
        ("recon", {"device": "tpu"}, ["recon.device", "'tpu'"]),
        ("recon", {"indices": {"mode": "center", "subscan": [100, 100]}}, ["recon.indices.subscan"]),
        ("output", {"name": {"affixes": ["bogus"]}}, ["output.name.affixes", "'bogus'"]),
        ("plugins", {"disable": ["loss_gausian"]}, ["plugins.disable", "'loss_gausian'", "'loss_gaussian'"]),
        (
            "update",
            {"object_phase": {"lr": 1e-3, "start_iter": 5, "end_iter": 2}},
            ["update.object_phase", "end_iter 2", "start_iter 5"],
        ),
    ],
)
def test_validate_refuses_what_run_refuses(cli, clean_error, config_at, write_yaml, section, value, names):
    config, cfg = config_at()
    cfg[section] = {**cfg.get(section, {}), **value}
    if section == "output":
        cfg["output"]["dir"] = cfg["output"]["dir"]
    write_yaml(cfg)
    for command in ("validate", "run"):
        one_line(call(cli, command, config), clean_error, *names)


def test_validate_notes_a_gpu_this_machine_lacks(cli, config_at, write_yaml, monkeypatch):
    """A config for GPU nodes validated on a login node: valid, with a note (run there refuses)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config, cfg = config_at()
    cfg["recon"]["device"] = "cuda"
    write_yaml(cfg)
    outcome = cli("validate", config)
    assert outcome.code == 0, str(outcome)
    assert "CUDA is not available" in outcome.out and "run on this machine would refuse it" in outcome.out


def test_validate_of_a_finished_runs_config_says_how_run_goes_on(cli, config_at):
    """A result in the output folder is no fault of the config: valid, with what run needs."""
    config, _ = config_at()
    assert cli("run", config, "-q").code == 0
    outcome = cli("validate", config)
    assert outcome.code == 0, str(outcome)
    assert "holds a result: run it with --resume to continue it or --overwrite to replace it" in outcome.out


def test_validate_counts_the_positions_taking_part(cli, config_at, write_yaml):
    config, cfg = config_at()
    cfg["recon"]["indices"] = {"mode": "center", "subscan": [4, 4]}
    write_yaml(cfg)
    outcome = cli("validate", config)
    assert outcome.code == 0 and "64 positions (16 taking part, recon.indices)" in outcome.out, str(outcome)


# -- config text and plugin modules ----------------------------------------------------------


def test_yaml_nested_too_deeply_is_one_line(cli, clean_error, tmp_path):
    config = tmp_path / "deep.yaml"
    config.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    for command in ("validate", "run"):
        one_line(cli(command, config), clean_error, str(config), "nested too deeply")


def test_a_malformed_set_value_is_one_line(cli, clean_error, config_at):
    config, _ = config_at()
    one_line(cli("validate", config, "--set", "recon.iterations=[1"), clean_error, "--set", "malformed YAML")


@pytest.mark.parametrize("code", ["raise SystemExit(0)", "import sys; sys.exit('bye')"])
def test_a_plugin_module_that_exits_on_import_is_named(
    cli, clean_error, config_at, write_yaml, tmp_path, code
):
    plugin = tmp_path / "quits.py"
    plugin.write_text(code + "\n")
    config, cfg = config_at()
    cfg["plugins"] = {"modules": [str(plugin)]}
    write_yaml(cfg)
    for command in ("validate", "run"):
        one_line(call(cli, command, config), clean_error, "plugins.modules", str(plugin), "SystemExit")


# -- data and positions ----------------------------------------------------------------------


def test_a_folder_as_the_data_file_is_one_line(cli, clean_error, config_at, write_yaml, tmp_path):
    config, cfg = config_at()
    cfg["data"]["path"] = str(tmp_path)
    write_yaml(cfg)
    one_line(cli("validate", config), clean_error, str(tmp_path), "is a directory")


@pytest.mark.parametrize(
    "change, names",
    [
        (lambda p: p - 100, ["scan.path", "outside the object"]),  # the fitted object would have no size
        (lambda p: p.astype(np.complex128) + 1j, ["scan.path", "complex"]),  # a cast would drop 1j
    ],
)
def test_positions_that_fit_no_object_or_are_complex(
    cli, clean_error, config_at, write_yaml, tmp_path, change, names
):
    with h5py.File(TINY, "r") as f:
        nominal = f["positions_nominal_px"][()]
    np.save(tmp_path / "pos.npy", change(nominal))
    config, cfg = config_at()
    cfg["scan"] = {**cfg["scan"], "source": "file", "path": str(tmp_path / "pos.npy")}
    cfg["scan"].pop("key", None)
    write_yaml(cfg)
    for command in ("validate", "run"):
        one_line(call(cli, command, config), clean_error, *names)


def test_a_nan_pattern_is_named_by_plain_indices(cli, clean_error, config_at, write_yaml, tmp_path):
    data = tmp_path / "nan.h5"
    shutil.copy(TINY, data)
    with h5py.File(data, "a") as f:
        meas = f["measurements"]
        row = meas[1, 2]
        row[3, 4] = np.nan
        meas[1, 2] = row
    config, cfg = config_at()
    cfg["data"]["path"] = str(data)
    write_yaml(cfg)
    outcome = cli("validate", config)
    one_line(outcome, clean_error, "NaN", "pixel (3, 4)")
    assert "np.int64" not in outcome.err


# -- simulate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, names",
    [
        ({"seed": -1}, ["seed", "greater than or equal to 0"]),
        ({"object": {"shape_px": [-8, 64]}}, ["object.shape_px[0]", "greater than 0"]),
        ({"scan": {"step_A": 1e8}}, ["simulate", "MiB available", "object.shape_px"]),
        ({"experiment": {"pattern_px": 100000}}, ["simulate", "MiB available", "pattern_px"]),
        ({"dose_e_per_A2": 1e300}, ["dose_e_per_A2", "electrons per pattern"]),
    ],
)
def test_simulate_absurd_values_are_one_line(cli, clean_error, tmp_path, change, names):
    from conftest import SIM_SPEC

    spec = yaml.safe_load(yaml.safe_dump(SIM_SPEC))
    for key, value in change.items():
        spec[key] = (
            {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
        )
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    outcome = cli("simulate", path, "-o", tmp_path / "sim.h5")
    one_line(outcome, clean_error, *names)
    assert not (tmp_path / "sim.h5").exists()


@pytest.mark.parametrize("where", ["starting", "validate"])
def test_ctrl_c_outside_a_run_is_one_line(cli, config_at, monkeypatch, where):
    """Ctrl-C while the command imports (before, a 20-50 line traceback) or while a command other
    than a run's loop works: exit 130, one line, no traceback."""
    from ptyrad_core.apps import cli as cli_module

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    config, _ = config_at()
    monkeypatch.setattr(cli_module, "build_parser" if where == "starting" else "cmd_validate", interrupt)
    outcome = cli("validate", config)
    text = outcome.out + outcome.err
    assert outcome.code == 130 and "Traceback" not in text, str(outcome)
    assert (
        ("while starting" in text)
        if where == "starting"
        else ("(validate): existing files are unchanged" in text)
    )


# -- a third search: preprocessing, constraints, naming, scaffolding --------------------------


@pytest.mark.parametrize(
    "section, value, names",
    [
        (
            "constraints",
            [{"name": "obj_zblur", "options": {"std": 1.0, "kernel_size": 4}}],
            ["kernel_size must be odd"],
        ),
        (
            "constraints",
            [{"name": "obj_rblur", "options": {"std": 1.0, "kernel_size": 4}}],
            ["kernel_size must be odd"],
        ),
        ("model", {"probe": {"modes": 3, "mode_power": []}}, ["model.probe.mode_power"]),
        (
            "data",
            {"preprocess": [{"name": "pad", "options": {"npix": 100000, "padding": "constant", "value": 0}}]},
            ["not enough memory", "MemoryError"],
        ),
        ("output", {"name": {"affixes": [], "prefix": ".."}}, ["output.name", "'..'"]),
    ],
)
def test_third_search_inputs_are_one_line(
    cli, clean_error, config_at, write_yaml, tmp_path, section, value, names
):
    """An even kernel moved the object half a slice per iteration; an empty mode_power list, a huge
    pad (74.5 GiB) were tracebacks; a prefix '..' wrote the result into output.dir's parent."""
    config, cfg = config_at()
    if section == "model":
        cfg["model"] = {**cfg["model"], **value}
    elif section == "data":
        cfg["data"] = {**cfg["data"], **value}
    elif section == "output":
        cfg["output"] = {**cfg["output"], **value}
    else:
        cfg[section] = value
    write_yaml(cfg)
    one_line(call(cli, "validate", config), clean_error, *names)
    assert not (tmp_path / "result.h5").exists()


def test_an_export_onto_the_runs_result_file_is_refused_before_writing(
    cli, clean_error, config_at, write_yaml, tmp_path
):
    config, cfg = config_at()
    result = tmp_path / "out" / "result.h5"
    cfg["data"]["preprocess"] = [{"name": "export", "options": {"path": str(result)}}]
    write_yaml(cfg)
    one_line(call(cli, "run", config), clean_error, "'export'", "is the run's result file")
    assert not result.exists()  # before, the export wrote it and blocked every later run


@pytest.mark.parametrize("name", ["core", "ptyrad_core"])
def test_new_plugin_never_names_an_installed_package(cli, clean_error, tmp_path, name):
    one_line(
        cli("new-plugin", name, "--family", "loss", "--dir", tmp_path),
        clean_error,
        "'ptyrad_core'",
        "installed",
    )
    assert not any(tmp_path.iterdir())

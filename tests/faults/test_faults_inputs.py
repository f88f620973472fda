"""Inputs are read-only (docs/reliability.md, guarantee 1), and validate checks the optimizer.

No command writes to a file it reads: the measurement file, the config, the scan / probe /
object files it names, a PtyRAD params file, a result file. Every command that writes a file
replaces an existing one only when it is its own previous output, or with ``--overwrite``;
``validate`` writes nothing at all. Each case: exit code, no traceback, the message names the
key / option and the path, every input byte-for-byte unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import SIM_SPEC

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.h5"


@pytest.fixture
def setup(tmp_path, tiny_config, write_yaml):
    """``setup(preprocess=..., **sections)``: a copy of tiny.h5 in tmp_path, a separate positions file,
    and a config reading them (relative paths), written to tmp_path/config.yaml."""

    def make(preprocess=(), **sections):
        data = tmp_path / "scan.h5"
        shutil.copy(TINY, data)
        with h5py.File(TINY, "r") as f:
            positions = f["positions_nominal_px"][()]
        with h5py.File(tmp_path / "positions.h5", "w") as f:
            f["pos"] = positions
        cfg = tiny_config(**sections)
        cfg["data"] = {
            "path": "scan.h5",
            "loader": "hdf5",
            "options": {"key": "measurements"},
            "preprocess": list(preprocess),
        }
        cfg["scan"] = {**cfg["scan"], "path": "positions.h5", "key": "pos"}
        cfg["recon"] = {**cfg["recon"], "iterations": 1, "device": "cpu"}
        return write_yaml(cfg), cfg

    return make


def export(**options) -> dict:
    return {"name": "export", "options": options}


# -- the export step: never an input, never another program's file -------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("target", ["scan.h5", "config.yaml", "positions.h5"])
def test_export_never_writes_an_input(cli, frozen, clean_error, setup, tmp_path, command, target):
    """The data file (streamed or not), the config and the positions file: refused before any work."""
    config, _ = setup(preprocess=[{"name": "crop", "options": {"ky": [0, 64]}}, export(path=target)])
    inputs = frozen(tmp_path / "scan.h5", tmp_path / "positions.h5", config, TINY)
    outcome = cli(command, config)
    inputs.assert_unchanged()
    clean_error(outcome, "data.preprocess[1] 'export'", str(tmp_path / target), "reads")
    assert not (tmp_path / "out" / "result.h5").exists()


@pytest.mark.parametrize(
    "target, words",
    [
        ("/proc/ptyrad-core-export/meas.hdf5", "cannot create"),  # /proc refuses even root
        ("/proc/ptyrad-core-export/", "cannot create"),  # a folder: the name is made from the shape
        ("config.yaml", "reads"),
        ("positions.h5", "reads"),
    ],
)
def test_export_target_is_checked_before_the_data_are_read(
    cli, frozen, clean_error, setup, tmp_path, target, words
):
    """A run checks the export step's target at second zero: with a data file that does not exist,
    the error must name the export step, not the data."""
    config, cfg = setup(preprocess=[export(path=target)])
    cfg["data"]["path"] = "missing.h5"
    config.write_text(yaml.safe_dump(cfg))
    inputs = frozen(tmp_path / "positions.h5", config)
    outcome = cli("run", config, "-q")
    inputs.assert_unchanged()
    clean_error(outcome, "data.preprocess[0] 'export'", words)
    assert "missing.h5" not in outcome.err and not (tmp_path / "out" / "result.h5").exists()


def test_export_replaces_only_its_own_previous_file(cli, frozen, setup, tmp_path):
    """A foreign file at the target needs overwrite; a previous export (its HDF5 mark) is replaced by a
    run."""
    foreign = tmp_path / "exported.hdf5"
    with h5py.File(foreign, "w") as f:
        f["mine"] = np.arange(3)
    config, cfg = setup(preprocess=[export(path="exported.hdf5")])
    kept = frozen(foreign, tmp_path / "scan.h5", config)
    outcome = cli("run", config, "-q")
    kept.assert_unchanged()
    assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
    assert (
        "data.preprocess[0] 'export'" in outcome.err
        and str(foreign) in outcome.err
        and "--overwrite" in outcome.err
    )
    # the step's own option replaces it; the file then carries the mark and a second run replaces it freely
    outcome = cli("run", config, "-q", "--set", "data.preprocess.0.options.overwrite=true")
    assert outcome.code == 0, str(outcome)
    with h5py.File(foreign, "r") as f, h5py.File(TINY, "r") as t:
        assert f.attrs["ptyrad_core_output"] == "preprocess export"
        assert np.array_equal(f["meas"][()], t["measurements"][()].reshape(64, 64, 64))
    data = frozen(tmp_path / "scan.h5", config)
    outcome = cli("run", config, "-q", "--set", f"output.dir={tmp_path / 'out2'}")  # no overwrite option
    assert outcome.code == 0, str(outcome)
    data.assert_unchanged()
    assert (
        sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    )  # no temporary file left


@pytest.mark.parametrize(
    "fmt, write_foreign",
    [
        (
            "npy",
            lambda p: np.save(p, np.zeros((64, 64, 64), dtype=np.float64)),
        ),  # another dtype: not a previous export
        ("tif", lambda p: p.write_bytes(b"II*\x00not really a tiff")),
    ],
)
def test_export_npy_and_tif_foreign_files_are_refused(cli, frozen, setup, tmp_path, fmt, write_foreign):
    pytest.importorskip("tifffile")
    target = tmp_path / f"x.{fmt}"
    write_foreign(target)
    config, _ = setup(preprocess=[export(path=f"x.{fmt}", format=fmt)])
    kept = frozen(target, config, tmp_path / "scan.h5")
    outcome = cli("validate", config)
    kept.assert_unchanged()
    assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
    assert f"{fmt} export" in outcome.err and str(target) in outcome.err
    outcome = cli(
        "validate", config, "--overwrite"
    )  # what run --overwrite would do: replace it (dry run: report)
    assert outcome.code == 0 and f"would replace {target}" in outcome.out, str(outcome)
    kept.assert_unchanged()


def test_validate_writes_nothing_anywhere(cli, setup, tmp_path):
    """A dry run: not the export's file or folder, not the output folder, not a local plugin's __pycache__."""
    (tmp_path / "my_observer.py").write_text(
        "from ptyrad_core import hookimpl\n\n@hookimpl\ndef ptyrad_on_run_start(run):\n    pass\n"
    )
    config, _ = setup(
        preprocess=[export(path="exports/meas", format="npy", shape=[8, 8, 64, 64])],
        plugins={"modules": ["my_observer.py"]},
    )

    def snapshot():
        return {
            str(p.relative_to(tmp_path)): (p.is_dir(), p.stat().st_mtime_ns, p.stat().st_size)
            for p in tmp_path.rglob("*")
        }

    before = snapshot()
    outcome = cli("validate", config)
    assert outcome.code == 0, str(outcome)
    assert snapshot() == before
    assert (
        f"would create the folder and write {tmp_path / 'exports' / 'meas.npy'} "
        "(npy, float32, shape [8, 8, 64, 64])" in outcome.out
    )


# -- convert, simulate, frc, report, new-plugin --------------------------------------------


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
        "meas_params": {"path": "scan.h5", "key": "measurements"},
    },
}


@pytest.fixture
def params(tmp_path):
    shutil.copy(TINY, tmp_path / "scan.h5")
    raw = yaml.safe_load(yaml.safe_dump(PTYRAD_PARAMS))
    raw["init_params"]["meas_params"]["path"] = str(
        tmp_path / "scan.h5"
    )  # PtyRAD takes relative paths from the cwd
    path = tmp_path / "pr.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("target", ["pr.yaml", "scan.h5"])
def test_convert_never_writes_the_params_file_or_its_data(cli, frozen, params, tmp_path, target):
    kept = frozen(params, tmp_path / "scan.h5")
    for extra in ([], ["--overwrite"]):  # not even with --overwrite
        outcome = cli("convert", params, "-o", tmp_path / target, *extra)
        assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
        assert "-o" in outcome.err and str(tmp_path / target) in outcome.err and "reads" in outcome.err
    kept.assert_unchanged()


def test_convert_replaces_its_previous_output_and_nothing_else(cli, frozen, params, tmp_path):
    out, other = tmp_path / "native.yaml", tmp_path / "notes.yaml"
    other.write_text("my: notes\n")
    assert cli("convert", params, "-o", out).code == 0
    assert cli("convert", params, "-o", out).code == 0  # a previous convert output: replaced
    kept = frozen(other, params)
    outcome = cli("convert", params, "-o", other)
    kept.assert_unchanged()
    assert (
        outcome.code == 2
        and "Traceback" not in outcome.err
        and str(other) in outcome.err
        and "--overwrite" in outcome.err
    )
    assert cli("convert", params, "-o", other, "--overwrite").code == 0
    assert other.read_text().startswith("# ptyrad_core config translated from")


SPEC = SIM_SPEC


@pytest.mark.parametrize("target", ["spec", "foreign", "probe"])
def test_simulate_never_writes_an_input_or_a_foreign_file(cli, frozen, tmp_path, target):
    spec = tmp_path / "spec.yaml"
    foreign = tmp_path / "data.h5"
    shutil.copy(TINY, foreign)  # an abTEM dataset: not written by simulate
    raw = dict(SPEC)
    if target == "probe":  # a file the spec reads
        with h5py.File(TINY, "r") as f:
            probe = f["ground_truth/probe"][()]
        with h5py.File(tmp_path / "probe.h5", "w") as f:
            f["probe"] = probe[..., 16:48, 16:48] if probe.shape[-1] == 64 else probe
        raw = {**SPEC, "probe": {"source": "file", "file": {"path": "probe.h5", "key": "probe"}}}
    spec.write_text(yaml.safe_dump(raw))
    path = {"spec": spec, "foreign": foreign, "probe": tmp_path / "probe.h5"}[target]
    kept = frozen(*[p for p in (spec, foreign, tmp_path / "probe.h5") if p.exists()])
    outcome = cli("simulate", spec, "-o", path)
    kept.assert_unchanged()
    assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
    assert "-o" in outcome.err and str(path) in outcome.err
    assert ("--overwrite" in outcome.err) if target == "foreign" else ("reads" in outcome.err)


def test_simulate_replaces_its_previous_dataset(cli, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert cli("simulate", spec, "-o", tmp_path / "sim.h5").code == 0
    assert cli("simulate", spec, "-o", tmp_path / "sim.h5").code == 0


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """A finished 1-iteration reconstruction of tiny.h5: its result.h5 (figures off)."""
    from conftest import build_run

    folder = tmp_path_factory.mktemp("result")
    cfg = {
        "data": {"path": str(TINY), "loader": "hdf5", "options": {"key": "measurements"}},
        "experiment": {
            "energy_kV": 300,
            "conv_angle_mrad": 21.4,
            "dx_A": 0.19525,
            "aberrations": {"defocus": 100},
        },
        "scan": {
            "source": "file",
            "path": str(TINY),
            "key": "positions_nominal_px",
            "n_slow": 8,
            "n_fast": 8,
        },
        "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
        "loss": [{"name": "gaussian"}],
        "recon": {"iterations": 1, "batch_size": 16, "device": "cpu"},
        "output": {"dir": str(folder / "run"), "figures": False, "log_file": False},
    }
    run = build_run(cfg)
    run.run()
    getattr(run, "close", lambda: None)()
    return Path(run.result_path)


def test_frc_never_writes_its_inputs_or_a_foreign_file(cli, frozen, result, tmp_path):
    copy = tmp_path / "b.h5"
    shutil.copy(result, copy)
    foreign = tmp_path / "figure.png"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\nmy own figure")
    kept = frozen(result, copy, foreign)
    for target in (result, copy, foreign):
        outcome = cli("frc", result, copy, "-o", target)
        assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
        assert "-o" in outcome.err and str(target) in outcome.err
    kept.assert_unchanged()
    plot = tmp_path / "frc.png"
    assert cli("frc", result, copy, "-o", plot).code == 0
    assert cli("frc", result, copy, "-o", plot).code == 0  # its own previous plot
    assert cli("frc", result, copy, "-o", foreign, "--overwrite").code == 0


def test_report_never_writes_onto_its_result_or_a_foreign_page(cli, frozen, result, tmp_path):
    kept = frozen(result)
    outcome = cli("report", result, "-o", result)
    assert outcome.code == 2 and "Traceback" not in outcome.err and str(result) in outcome.err, str(outcome)
    folder = tmp_path / "rep"
    assert cli("report", result, "-o", folder).code == 0
    assert cli("report", result, "-o", folder).code == 0  # its own previous report and figures
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("<html>my notes</html>")
    page = frozen(mine / "report.html")
    outcome = cli("report", result, "-o", mine)
    page.assert_unchanged()
    assert outcome.code == 2 and str(mine / "report.html") in outcome.err and "--overwrite" in outcome.err, (
        str(outcome)
    )
    assert not (mine / "figures").exists() or not any((mine / "figures").iterdir())  # refused before drawing
    kept.assert_unchanged()


def test_new_plugin_never_overwrites_a_package_folder(cli, frozen, tmp_path):
    assert cli("new-plugin", "my_term", "--family", "loss", "--dir", tmp_path).code == 0
    root = tmp_path / "ptyrad-my-term"
    plugin = next(root.rglob("plugin.py"))
    plugin.write_text("# my edits\n")
    kept = frozen(root)
    outcome = cli("new-plugin", "my_term", "--family", "loss", "--dir", tmp_path)
    kept.assert_unchanged()
    assert (
        outcome.code == 2
        and "Traceback" not in outcome.err
        and "--dir" in outcome.err
        and str(root) in outcome.err
    )
    assert cli("new-plugin", "my_term", "--family", "loss", "--dir", tmp_path, "--overwrite").code == 0
    assert plugin.read_text() != "# my edits\n"


# -- optimizer and scheduler: checked before any data are read ------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(
    "optimizer, names",
    [
        ({"name": "Adamm"}, ["optimizer.name", "did you mean 'Adam'"]),
        ({"name": "SparseAdam"}, ["optimizer.name", "sparse gradients"]),
        ({"name": "Adam", "options": {"betas": [0.9, 1.5]}}, ["optimizer.options", "beta"]),
        ({"name": "Adam", "options": {"lrr": 0.1}}, ["optimizer.options", "unknown option 'lrr'"]),
        ({"name": "Adam", "scheduler": {"name": "StepLR"}}, ["optimizer.scheduler.options", "step_size"]),
        (
            {"name": "Adam", "scheduler": {"name": "CosineAnnealing"}},
            ["optimizer.scheduler.name", "CosineAnnealingLR"],
        ),
    ],
)
def test_optimizer_mistakes_fail_before_the_data_are_read(
    cli, tiny_config, write_yaml, tmp_path, command, optimizer, names
):
    """The data file does not exist: the optimizer's error comes first, so no data were read."""
    cfg = tiny_config(optimizer=optimizer)
    cfg["data"]["path"] = str(tmp_path / "not_there.h5")
    cfg["recon"]["device"] = "cpu"
    outcome = cli(command, write_yaml(cfg))
    assert outcome.code == 2 and "Traceback" not in outcome.err, str(outcome)
    for name in names:
        assert name in outcome.err, f"{name!r} not named\n{outcome}"
    assert "not_there" not in outcome.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("result.h5"))

"""Fault injection for ``ptyrad-core run``: finished work, output checks, non-finite states,
failures mid-run and resume (docs/reliability.md, guarantees 2-6).

Every case checks the exit code, that stderr has no traceback and names the cause, that the
inputs are byte-for-byte unchanged, that a previous result is unchanged where it must be, and
that no written array holds NaN or Inf.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from faultkit import assert_clean_error, cli_subprocess, nonfinite_arrays

from ptyrad_core.engine.outputs import LOCK_NAME

FAULT_PLUGINS = Path(__file__).with_name("fault_plugins.py")


@pytest.fixture
def setup(tmp_path, frozen, tiny_config):
    """A config on a copy of tiny.h5 (3 iterations, 2 batches each); returns a small namespace."""

    class Case:
        data = tmp_path / "tiny.h5"
        out = tmp_path / "out"
        result = tmp_path / "out" / "result.h5"

        def config(self, **changes) -> Path:
            cfg = tiny_config()
            cfg["data"]["path"] = str(self.data)
            cfg["scan"]["path"] = str(self.data)
            cfg["recon"].update(iterations=3, batch_size=32)
            cfg["output"] = {"dir": str(self.out), "figures": False}
            cfg["plugins"] = {"modules": [str(FAULT_PLUGINS)]}
            for key, value in changes.items():
                section, _, name = key.partition("__")
                if name:
                    cfg.setdefault(section, {})[name] = value
                else:
                    cfg[section] = value
            path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            return path

    shutil.copy(Path(tiny_config()["data"]["path"]), Case.data)
    case = Case()
    case.inputs = frozen(Case.data)
    return case


def iteration_of(result: Path) -> int:
    with h5py.File(result, "r") as f:
        return int(f.attrs["iteration"])


def assert_safe(case, outcome=None):
    """Inputs unchanged, nothing non-finite written, no temporary file left behind."""
    case.inputs.assert_unchanged()
    bad = nonfinite_arrays(case.out) if case.out.exists() else []
    assert not bad, bad
    leftovers = [p.name for p in case.out.glob(".*tmp*")] if case.out.exists() else []
    assert not leftovers, leftovers


# -- 2. finished work is never replaced silently -------------------------------------------------


def test_a_second_run_refuses_before_reading_data(setup, cli, frozen):
    assert cli("run", setup.config(), "-q").code == 0
    before = frozen(setup.out)
    # the data file is gone: had the run read data first, the error would name it
    outcome = cli("run", setup.config(data={"path": str(setup.data.with_name("missing.h5"))}), "-q")
    assert_clean_error(outcome, str(setup.result), "--resume", "--overwrite", "output.dir")
    assert "missing.h5" not in outcome.err
    before.assert_unchanged()
    assert_safe(setup)


def test_overwrite_replaces_the_result(setup, cli):
    assert cli("run", setup.config(), "-q").code == 0
    first = setup.result.stat().st_mtime_ns
    outcome = cli("run", setup.config(recon__iterations=2), "-q", "--overwrite")
    assert outcome.code == 0, outcome
    assert setup.result.stat().st_mtime_ns != first and iteration_of(setup.result) == 2
    assert "--overwrite" in (setup.out / "run.log").read_text()
    assert_safe(setup)


def test_a_folder_in_use_by_a_live_process_is_refused(setup, cli, frozen):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        setup.out.mkdir()
        (setup.out / LOCK_NAME).write_text(
            json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "purpose": "run"})
        )
        before = frozen(setup.out)
        outcome = cli("run", setup.config(), "-q")
        assert_clean_error(outcome, "is in use", f"process {sleeper.pid}")
        before.assert_unchanged()
        assert (setup.out / LOCK_NAME).exists()  # another process's lock is never removed
    finally:
        sleeper.kill()
        sleeper.wait()
    assert_safe(setup)


def test_a_stale_lock_is_taken_over_with_a_message(setup, cli):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    setup.out.mkdir()
    (setup.out / LOCK_NAME).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "purpose": "run"})
    )
    # the unfinished writes of the dead process (a kill -9 during a save); another process's stay
    leftovers = [setup.out / f".result.h5.tmp-{dead.pid}", setup.out / f".convergence.json.tmp-{dead.pid}"]
    other = setup.out / f".result.h5.tmp-{dead.pid + 1}"
    for path in (*leftovers, other):
        path.write_bytes(b"partial")
    outcome = cli("run", setup.config(), "-q")
    assert outcome.code == 0, outcome
    assert "stale lock" in outcome.err and str(dead.pid) in outcome.err
    assert not (setup.out / LOCK_NAME).exists()  # released at the end
    assert not any(p.exists() for p in leftovers) and other.exists()
    assert f".result.h5.tmp-{dead.pid}" in outcome.err  # said, not silent
    other.unlink()  # not the run's to remove (another process's write)
    assert_safe(setup)


@pytest.mark.slow  # two runs in two processes
def test_two_real_processes_in_one_folder(setup, cli, frozen):
    cfg = setup.config(recon__iterations=100000)
    first = cli_subprocess("run", cfg, "-q")
    try:
        deadline = time.time() + 60
        while not (setup.out / LOCK_NAME).exists():
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.05)
        outcome = cli("run", setup.config(), "-q")
        assert_clean_error(outcome, "is in use", f"process {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM
    assert_safe(setup)


# -- 3. outputs are checked before the work -----------------------------------------------------


def test_output_dir_that_is_a_file(setup, cli, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    outcome = cli(
        "run", setup.config(output={"dir": str(blocker / "out")}, data={"path": "missing.h5"}), "-q"
    )
    assert_clean_error(outcome, "output.dir", str(blocker), "is a file")
    assert blocker.read_text() == "a file"
    setup.inputs.assert_unchanged()


def test_output_dir_that_cannot_be_written(setup, cli):
    """A location nobody may create files in (``/proc`` refuses even root), named at second zero."""
    outcome = cli(
        "run", setup.config(output={"dir": "/proc/ptyrad-core-out"}, data={"path": "missing.h5"}), "-q"
    )
    assert_clean_error(outcome, "output.dir", "/proc/ptyrad-core-out")
    setup.inputs.assert_unchanged()


def test_result_file_that_is_a_folder(setup, cli):
    setup.result.mkdir(parents=True)
    outcome = cli("run", setup.config(data={"path": "missing.h5"}), "-q")
    assert_clean_error(outcome, str(setup.result), "not a file")
    assert setup.result.is_dir()


# -- 4. a non-finite state is never written ------------------------------------------------------


def test_a_constraint_that_writes_nan_is_named(setup, cli):
    outcome = cli(
        "run",
        setup.config(
            constraints=[{"name": "nan_constraint", "options": {"at": 2}}],
            output={"dir": str(setup.out), "figures": False, "save_every": 1},
        ),
        "-q",
    )
    assert_clean_error(
        outcome,
        "constraints[0] 'nan_constraint'",
        "object_phase",
        "iteration 2",
        "after iteration 1",
        str(setup.result),
    )
    assert iteration_of(setup.result) == 1
    assert_safe(setup)


def test_a_learning_rate_that_blows_up_is_named(setup, cli):
    outcome = cli("run", setup.config(update={"object_phase": {"lr": 1e39}}, optimizer={"name": "SGD"}), "-q")
    assert_clean_error(outcome, "'object_phase' (lr 1e+39)", "SGD", "non-finite", "iteration 1")
    assert "no iteration completed, nothing was written" in outcome.err
    assert not setup.result.exists()
    assert_safe(setup)


def test_a_nan_loss_keeps_the_last_good_checkpoint(setup, cli):
    cfg = setup.config(
        loss=[{"name": "gaussian"}, {"name": "raising_loss", "options": {"at": 99}}],
        data={"path": str(setup.data), "options": {"key": "measurements"}, "loader": "hdf5"},
    )
    assert cli("run", cfg, "-q", "--set", "recon.iterations=1").code == 0
    kept = setup.result.read_bytes()
    with h5py.File(setup.data, "r") as f:  # a copy of the data with one NaN pattern value
        meas = f["measurements"][()]
    bad = setup.data.with_name("nan.h5")
    with h5py.File(bad, "w") as f:
        meas[3, 3, 32, 32] = np.nan
        f["measurements"] = meas
        f["positions_nominal_px"] = h5py.File(setup.data, "r")["positions_nominal_px"][()]
    outcome = cli(
        "run",
        cfg,
        "-q",
        "--resume",
        setup.result,
        "--set",
        f"data.path={bad}",
        "--set",
        f"scan.path={bad}",
        "--set",
        "data.negative_values=clip",
    )
    assert outcome.code == 2 and "Traceback" not in outcome.err
    assert setup.result.read_bytes() == kept
    assert_safe(setup)


# -- 5. any failure mid-run saves the last completed iteration -----------------------------------


@pytest.mark.parametrize(
    "kind, words",
    [
        ("runtime", ["loss[1] 'raising_loss' raised at iteration 2", "RuntimeError"]),
        ("memory", ["out of memory in iteration 2", "loss[1] 'raising_loss'", "recon.batch_size"]),
        ("cuda_oom", ["out of memory in iteration 2", "OutOfMemoryError", "recon.batch_size"]),
    ],
)
def test_a_failing_plugin_leaves_the_last_iteration_saved(setup, cli, kind, words):
    outcome = cli(
        "run",
        setup.config(
            loss=[{"name": "gaussian"}, {"name": "raising_loss", "options": {"at": 2, "kind": kind}}]
        ),
        "-q",
    )
    assert_clean_error(outcome, *words, f"checkpoint written to {setup.result}", f"--resume {setup.result}")
    assert iteration_of(setup.result) == 1
    assert_safe(setup)
    # and the run continues from it once the plugin is fixed
    fixed = setup.config(
        loss=[{"name": "gaussian"}, {"name": "raising_loss", "options": {"at": 99, "kind": kind}}]
    )
    assert cli("run", fixed, "-q", "--resume", setup.result).code == 0
    assert iteration_of(setup.result) == 3


def test_a_failing_observer_is_named_and_the_iteration_kept(setup, cli, monkeypatch):
    monkeypatch.setenv("PTYRAD_FAULT_OBSERVER_AT", "2")
    outcome = cli("run", setup.config(), "-q")
    assert_clean_error(outcome, "fault_plugins", "ptyrad_on_iter_end", "ValueError")
    assert iteration_of(setup.result) == 2  # the observer ran after iteration 2 completed
    assert_safe(setup)


def _disk_full_at(monkeypatch, n: int):
    """Make the ``n``-th checkpoint write (1-based) fail as a full disk does."""
    import errno

    from ptyrad_core.engine import results

    real, calls = results.write, []

    def write(group, run):
        calls.append(run.iteration)
        if len(calls) == n:
            group.create_dataset("filler", data=np.zeros(1000))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(group, run)

    monkeypatch.setattr(results, "write", write)


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(setup, cli, monkeypatch):
    _disk_full_at(monkeypatch, 2)
    outcome = cli(
        "run", setup.config(output={"dir": str(setup.out), "figures": False, "save_every": 1}), "-q"
    )
    assert_clean_error(
        outcome,
        "No space left on device",
        "previous checkpoint, iteration 1, is intact",
        f"--resume {setup.result}",
    )
    assert outcome.err.count("\n") == 1  # one line, not a double report
    assert iteration_of(setup.result) == 1
    assert_safe(setup)


def test_disk_full_at_the_only_save_writes_nothing(setup, cli, monkeypatch):
    _disk_full_at(monkeypatch, 1)
    outcome = cli("run", setup.config(), "-q")
    assert_clean_error(outcome, "No space left on device", "no checkpoint was written")
    assert not setup.result.exists()
    assert_safe(setup)


def test_ctrl_c_twice_during_a_save_finishes_the_write(setup, cli, monkeypatch):
    """The second Ctrl-C arrives while the checkpoint is written: the write completes (no
    half file, no ignored-exception traceback), then the run stops with that checkpoint."""
    from ptyrad_core.engine import results

    real = results.write

    def write(group, run):
        if run.iteration == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the first asks to stop after the batch
            os.kill(os.getpid(), signal.SIGINT)  # the second, during the write, would abort it
        return real(group, run)

    monkeypatch.setattr(results, "write", write)
    outcome = cli(
        "run", setup.config(output={"dir": str(setup.out), "figures": False, "save_every": 1}), "-q"
    )
    assert_clean_error(outcome, "after iteration 1", str(setup.result), code=130)
    assert "Exception ignored" not in outcome.err
    assert iteration_of(setup.result) == 1
    assert_safe(setup)


# -- 6. resume does what the user means ----------------------------------------------------------


def _broken_copies(setup):
    """Result files that cannot be resumed from, by what is wrong with them."""
    good = setup.result
    folder = setup.out.parent / "broken"
    folder.mkdir()
    truncated = folder / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    partial = folder / "partial.h5"
    shutil.copy(good, partial)
    with h5py.File(partial, "a") as f:
        del f["checkpoint/torch_rng"]
    text = folder / "notes.txt"
    text.write_text("not a result\n")
    return {
        "missing": (folder / "nope.h5", "does not exist"),
        "truncated": (truncated, "not a readable HDF5 file"),
        "partial": (partial, "lacks the dataset(s) checkpoint/torch_rng"),
        "text": (text, "not a readable HDF5 file"),
        "foreign": (setup.data, "not a ptyrad_core result file"),
        "folder": (folder, "is a directory"),
    }


@pytest.mark.parametrize("what", ["missing", "truncated", "partial", "text", "foreign", "folder"])
def test_resume_from_a_file_that_is_not_a_checkpoint(setup, cli, frozen, what):
    assert cli("run", setup.config(recon__iterations=1), "-q").code == 0
    path, words = _broken_copies(setup)[what]
    before = frozen(setup.out.parent / "broken", setup.result)
    outcome = cli(
        "run",
        setup.config(
            output={"dir": str(setup.out.parent / "other"), "figures": False}, data={"path": "missing.h5"}
        ),
        "-q",
        "--resume",
        path,
    )
    assert_clean_error(outcome, "--resume", str(path), words)
    assert "missing.h5" not in outcome.err  # named before the data are read
    before.assert_unchanged()
    assert_safe(setup)


def _optimizer_state(path: Path):
    import io

    import torch

    with h5py.File(path, "r") as f:
        return torch.load(io.BytesIO(f["checkpoint/optimizer"][()].tobytes()), weights_only=True)


def test_resume_applies_changed_learning_rates_and_keeps_the_optimizer_state(setup, cli):
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.setup.config_file import load_config

    assert cli("run", setup.config(recon__iterations=2), "-q").code == 0
    saved = _optimizer_state(setup.result)
    run = Reconstruction(
        load_config(setup.config(update={"object_phase": {"lr": 1e-4}})), quiet=True, resume=setup.result
    )
    groups = {g["name"]: g for g in run.optimizer.param_groups}
    assert groups["object_phase"]["lr"] == 1e-4
    state = run.optimizer.state_dict()["state"]
    names = [g["name"] for g in saved["param_groups"]]
    k = names.index("object_phase")
    assert np.array_equal(state[k]["exp_avg"].numpy(), saved["state"][k]["exp_avg"].numpy())
    run.run()
    run.close()
    assert iteration_of(setup.result) == 3
    log = (setup.out / "run.log").read_text()
    assert f"resumed from {setup.result} at iteration 2" in log


@pytest.mark.parametrize(
    "change, logged",
    [
        ({"update": {"positions": {"lr": 1e-3}}}, "fresh for positions"),
        ({"optimizer": {"name": "SGD"}}, "its state starts fresh"),
    ],
)
def test_resume_with_a_new_parameter_or_optimizer_works(setup, cli, change, logged):
    assert cli("run", setup.config(recon__iterations=1), "-q").code == 0
    outcome = cli("run", setup.config(**change), "-q", "--resume", setup.result, "-v")
    assert outcome.code == 0, outcome
    assert iteration_of(setup.result) == 3
    assert logged in (setup.out / "run.log").read_text()
    assert_safe(setup)


def test_resume_with_other_loss_terms_is_one_line(setup, cli, frozen):
    assert cli("run", setup.config(recon__iterations=1), "-q").code == 0
    before = frozen(setup.result)
    outcome = cli(
        "run", setup.config(loss=[{"name": "gaussian"}, {"name": "sparse"}]), "-q", "--resume", setup.result
    )
    assert_clean_error(outcome, "--resume", "loss terms", "'sparse'")
    before.assert_unchanged()


def test_resume_past_the_iteration_count_changes_nothing(setup, cli, frozen):
    assert cli("run", setup.config(), "-q").code == 0
    before = frozen(setup.result)
    outcome = cli("run", setup.config(recon__iterations=2), "-q", "--resume", setup.result)
    assert outcome.code == 0 and "nothing to run" in outcome.err, outcome
    before.assert_unchanged()


def test_resume_into_a_folder_holding_another_result_is_refused(setup, cli, frozen, tmp_path):
    assert cli("run", setup.config(recon__iterations=1), "-q").code == 0
    other = tmp_path / "other"
    assert (
        cli("run", setup.config(output={"dir": str(other), "figures": False}, recon__iterations=1), "-q").code
        == 0
    )
    before = frozen(other)
    outcome = cli(
        "run", setup.config(output={"dir": str(other), "figures": False}), "-q", "--resume", setup.result
    )
    assert_clean_error(outcome, str(other / "result.h5"), "already holds a result")
    before.assert_unchanged()

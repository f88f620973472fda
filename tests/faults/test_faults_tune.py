"""Tune studies (docs/reliability.md, guarantees 2 and 9): one study per output folder, trial folders
per study, and a damaged or locked Optuna storage as one line naming the file.

Each case: exit code, no traceback, the message names the folder / file, and what was there
before (the other study's files, the storage) is byte-for-byte unchanged.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.h5"


@pytest.fixture
def study(tiny_config, write_yaml, tmp_path):
    """``study(name, **tune)``: a 1-iteration study config on tiny.h5 writing into tmp_path/out."""

    def make(name="a", **tune):
        cfg = tiny_config()
        cfg["recon"] = {**cfg["recon"], "iterations": 1, "device": "cpu"}
        cfg["update"] = {"probe": {"lr": 0}}
        cfg["output"] = {"dir": str(tmp_path / "out"), "figures": False, "log_file": False}
        cfg["tune"] = {
            "params": {"experiment.aberrations.defocus": {"type": "float", "low": 80, "high": 120}},
            "n_trials": 2,
            "sampler": {"name": "random"},
            "seed": 1,
            **tune,
        }
        return write_yaml(cfg, f"{name}.yaml")

    return make


def hold_lock(config: Path) -> subprocess.Popen:
    """Another process that takes (or joins) the output folder's lock for the study of ``config`` and keeps
    it."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom ptyrad_core.apps.tune import Study\n"
        "s = Study(Path(sys.argv[1]))\ns.lock()\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read()
    return proc


@pytest.mark.slow  # a second process holds the lock
def test_a_second_study_in_the_same_output_folder_refuses(cli, frozen, clean_error, study, tmp_path):
    a, b = study("a"), study("b")
    holder = hold_lock(a)
    try:
        before = frozen(tmp_path / "out", a, b, TINY)
        outcome = cli("tune", b)
        before.assert_unchanged()
        clean_error(outcome, "output.dir", str(tmp_path / "out"), "tune study 'a'", f"process {holder.pid}")
        assert not (tmp_path / "out" / "b").exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # a second process holds the lock
def test_a_process_of_the_same_study_joins_and_leaves_the_lock_to_its_holder(cli, study, tmp_path):
    a = study("a")
    holder = hold_lock(a)
    try:
        lock = tmp_path / "out" / ".ptyrad-core.lock"
        owner = lock.read_text()
        outcome = cli("tune", a)
        assert outcome.code == 0, str(outcome)
        assert sorted(p.name for p in (tmp_path / "out" / "a").glob("trial_*")) == [
            "trial_0000",
            "trial_0001",
        ]
        assert lock.read_text() == owner  # still the holder's: never removed by a process that joined
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, and the next study takes it over and releases it at the end
    assert cli("tune", study("b")).code == 0
    assert not lock.exists()


def test_studies_never_share_or_delete_each_others_trial_folders(cli, frozen, study, tmp_path):
    assert cli("tune", study("a")).code == 0
    kept = frozen(tmp_path / "out" / "a")
    outcome = cli("tune", study("b", keep="none"))  # deletes its own trial folders, only those
    assert outcome.code == 0, str(outcome)
    kept.assert_unchanged()
    assert sorted(p.name for p in (tmp_path / "out" / "a").glob("trial_*")) == ["trial_0000", "trial_0001"]
    assert not list((tmp_path / "out" / "b").glob("trial_*"))
    assert (tmp_path / "out" / "b" / "best_config.yaml").is_file() and (
        tmp_path / "out" / "a" / "best_config.yaml"
    ).is_file()


def test_the_same_study_name_with_another_config_refuses(
    cli, frozen, clean_error, study, tmp_path, write_yaml
):
    import yaml

    a = study("a")
    assert cli("tune", a).code == 0
    cfg = yaml.safe_load(a.read_text())
    cfg["model"]["object"]["slices"] = 3  # trials of this config do not compare with the study's
    (tmp_path / "other").mkdir()
    other = write_yaml(cfg, "other/a.yaml")
    before = frozen(tmp_path / "out")
    outcome = cli("tune", other)
    before.assert_unchanged()
    clean_error(outcome, "study 'a'", "tune.study_name")


@pytest.mark.parametrize(
    "content, names",
    [
        (b"this is not a database, it is a text file\n" * 20, ["no SQLite header"]),
        (b"SQLite format 3\x00" + b"\xff" * 4000, ["damaged"]),
        (None, ["without Optuna's tables", "notes"]),  # someone else's SQLite database
    ],
)
def test_a_damaged_or_foreign_storage_is_one_line_naming_it(
    cli, frozen, clean_error, study, tmp_path, content, names
):
    storage = tmp_path / "out" / "tune.sqlite3"
    storage.parent.mkdir()
    if content is None:
        con = sqlite3.connect(storage)
        con.execute("CREATE TABLE notes (text TEXT)")
        con.execute("INSERT INTO notes VALUES ('mine')")
        con.commit()
        con.close()
    else:
        storage.write_bytes(content)
    kept = frozen(storage)
    outcome = cli("tune", study("a"))
    kept.assert_unchanged()
    clean_error(outcome, "tune.storage", str(storage), *names)
    assert not (tmp_path / "out" / ".ptyrad-core.lock").exists()  # released after the error


def test_a_locked_storage_is_waited_for_then_an_error_with_advice(cli, frozen, clean_error, study, tmp_path):
    config = study("a", storage_wait_s=0.5)
    assert cli("tune", config, "--set", "tune.n_trials=1").code == 0  # the storage exists
    storage = tmp_path / "out" / "tune.sqlite3"
    kept = frozen(storage, tmp_path / "out" / "a")
    con = sqlite3.connect(storage, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")  # another program holds it
    try:
        t0 = time.time()
        outcome = cli("tune", config)
        waited = time.time() - t0
    finally:
        con.execute("ROLLBACK")
        con.close()
    kept.assert_unchanged()
    clean_error(outcome, "tune.storage", str(storage), "locked", "tune.storage_wait_s")
    assert "waiting up to 0.5 s" in outcome.err
    assert 0.4 < waited < 60
    assert cli("tune", config).code == 0  # free again: the study continues

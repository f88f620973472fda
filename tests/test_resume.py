"""Checkpoints: resume equals an uninterrupted run; SIGINT / SIGTERM / kill -9; NaN restores."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.config import build_config

STATE = ("object_amplitude", "object_phase", "probe_ri", "positions", "tilts", "slice_thickness")


def make(cfg, **kwargs):
    return Reconstruction(build_config(cfg), quiet=True, **kwargs)


@pytest.mark.slow  # three runs each, the first of 5 iterations
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {
            "recon": {"grouping": "spread"},
            "optimizer": {
                "name": "Adam",
                "scheduler": {"name": "StepLR", "options": {"step_size": 2, "gamma": 0.5}},
            },
        },
    ],
)
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tiny_config, tmp_path, extra):
    cfg = tiny_config(
        update={"positions": {"lr": 1e-3}, "object_phase": {"lr": 1e-3}},
        model={
            "probe": {"modes": 2},
            "object": {"slices": 2, "slice_thickness_A": 3.9, "modes": 2, "phase_noise": 0.01},
        },
    )
    cfg["recon"].update(iterations=5, batch_size=16, **extra.get("recon", {}))
    if "optimizer" in extra:
        cfg["optimizer"] = extra["optimizer"]
    straight = make(cfg).run()

    cfg["output"]["dir"] = str(tmp_path / "part")
    first = make(cfg).run(2)
    resumed = make(cfg, resume=first.result_path)
    assert resumed.iteration == 2
    resumed.run()
    for name in STATE:
        assert torch.equal(getattr(resumed.model, name), getattr(straight.model, name)), name
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.iteration == 5


STEP = {"name": "StepLR", "options": {"step_size": 1, "gamma": 0.5}}


@pytest.mark.parametrize(
    "scheduler, expected, note",
    [
        (None, 5e-4, "the file's run had the scheduler StepLR, this one has none"),  # the config's rate
        ({"name": "StepLR", "options": {"step_size": 1, "gamma": 0.9}}, 5e-4 * 0.9**2, "gamma 0.9 (was 0.5)"),
        (STEP, 5e-4 * 0.5**2, None),  # unchanged: the progress goes on
    ],
)
def test_resume_follows_the_configs_scheduler(tiny_config, scheduler, expected, note):
    """Two iterations under StepLR(gamma 0.5), then resumed: without a scheduler the rate is the
    config's; with another gamma the rate is recomputed from the kept progress; unchanged, it goes
    on. What changed is in run.log's notes."""
    cfg = tiny_config(update={"object_phase": {"lr": 5e-4}})
    cfg["optimizer"] = {"name": "Adam", "scheduler": STEP}
    first = make(cfg).run(2)
    cfg["optimizer"] = {"name": "Adam", **({"scheduler": scheduler} if scheduler else {})}
    resumed = make(cfg, resume=first.result_path)
    lr = {g["name"]: g["lr"] for g in resumed.optimizer.param_groups}["object_phase"]
    assert lr == pytest.approx(expected, rel=1e-9)
    notes = " ".join(resumed.resume_notes)
    assert (note in notes) if note else "scheduler" not in notes, notes


def test_a_learning_rate_changed_on_resume_is_logged(tiny_config):
    cfg = tiny_config(update={"object_phase": {"lr": 5e-4}})
    first = make(cfg).run(1)
    cfg["update"]["object_phase"]["lr"] = 1e-3
    resumed = make(cfg, resume=first.result_path)
    assert {g["name"]: g["lr"] for g in resumed.optimizer.param_groups}["object_phase"] == 1e-3
    assert "learning rates from the config: object_phase 0.001 (was 0.0005)" in " ".join(resumed.resume_notes)


def test_resume_goes_on_with_its_own_data_and_sampling(tiny_config, tmp_path):
    """Another measurement file (by content: a moved copy is the same), another pixel size or
    energy: one line; another configured slice thickness: a note (the file's goes on)."""
    import shutil

    from ptyrad_core.kernel.errors import DataError

    first = make(tiny_config()).run(1)
    moved = tmp_path / "moved.h5"
    shutil.copy(first.settings.data_file, moved)
    cfg = tiny_config()
    cfg["data"]["path"] = str(moved)
    assert make(cfg, resume=first.result_path).iteration == 1  # the same bytes elsewhere
    with h5py.File(moved, "a") as f:
        f["measurements"][0, 0, 0, 0] += 1.0
    with pytest.raises(
        DataError, match=r"--resume: .* was reconstructed from .*tiny.h5 .* but this config reads .*moved.h5"
    ):
        make(cfg, resume=first.result_path)
    for key, value, name in (("dx_A", 0.25, "dx"), ("energy_kV", 200, "wavelength")):
        cfg = tiny_config()
        cfg["experiment"][key] = value
        with pytest.raises(DataError, match=rf"--resume: .* was reconstructed with {name} = "):
            make(cfg, resume=first.result_path)
    cfg = tiny_config()
    cfg["model"]["object"]["slice_thickness_A"] = 10.0
    resumed = make(cfg, resume=first.result_path)
    assert resumed.model.slice_thickness.item() == pytest.approx(first.model.slice_thickness.item())
    assert "slice_thickness_A 10.0 (was" in " ".join(resumed.resume_notes)


def test_resume_with_an_incompatible_config_is_named(tiny_config):
    first = make(tiny_config()).run(1)
    cfg = tiny_config(model={"probe": {"modes": 3}, "object": {"slices": 2, "slice_thickness_A": 3.905}})
    with pytest.raises(
        Exception, match=r"probe/modes has shape \(1, 64, 64\), but this config builds \(3, 64, 64\)"
    ):
        make(cfg, resume=first.result_path)


def start(cfg_path: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "run", str(cfg_path), "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_iteration(result: Path, proc: subprocess.Popen, at_least: int, timeout: float = 60) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.stderr.read()}")
        if result.exists():
            try:
                with h5py.File(result, "r") as f:
                    it = int(f.attrs["iteration"])
                if it >= at_least:
                    return it
            except OSError:
                pass
        time.sleep(0.1)
    raise AssertionError("no result file in time")


@pytest.mark.slow  # a run in a child process, stopped by a signal
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 128 + 15), (signal.SIGINT, 128 + 2)])
def test_signal_writes_a_checkpoint_and_exits_cleanly(tiny_config, write_yaml, sig, code):
    cfg = tiny_config()
    cfg["recon"]["iterations"] = 10000
    cfg["output"]["save_every"] = 1
    path = write_yaml(cfg)
    result = Path(cfg["output"]["dir"]) / "result.h5"
    proc = start(path)
    wait_for_iteration(result, proc, 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"{signal.Signals(sig).name} received: stopped after iteration" in err and "--resume" in err
    r = read_result(result)
    done = int(r["attrs"]["iteration"])
    assert done >= 2 and list(r["history/iteration"]) == list(range(1, done + 1))
    # and the run continues from it
    proc = start(path, "--resume", str(result), "--set", f"recon.iterations={done + 1}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert int(read_result(result)["attrs"]["iteration"]) == done + 1


@pytest.mark.slow  # a run in a child process, killed
def test_kill_9_loses_at_most_one_save_interval(tiny_config, write_yaml):
    cfg = tiny_config()
    cfg["recon"]["iterations"] = 10000
    cfg["output"]["save_every"] = 2
    path = write_yaml(cfg)
    result = Path(cfg["output"]["dir"]) / "result.h5"
    proc = start(path)
    wait_for_iteration(result, proc, 4)
    log = Path(cfg["output"]["dir"]) / "run.log"
    proc.kill()
    proc.wait(timeout=30)
    done_in_log = max(
        int(line.split("iter ")[1].split(":")[0]) for line in log.read_text().splitlines() if " iter " in line
    )
    saved = int(read_result(result)["attrs"]["iteration"])  # intact, readable
    # the save of iteration `done_in_log` may have been cut short by the kill: lost <= save_every
    assert saved % 2 == 0 and 0 <= done_in_log - saved <= 2
    proc = start(path, "--resume", str(result), "--set", f"recon.iterations={saved + 1}")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_nan_loss_restores_and_saves_the_last_good_state(tiny_config, register_inline):
    from test_engine import NaNPlugin

    cfg = tiny_config(loss=[{"name": "gaussian"}, {"name": "nan_at_2"}])
    cfg["recon"]["iterations"] = 3
    run = Reconstruction(build_config(cfg), pm=register_inline(NaNPlugin()), quiet=True)
    run.run(1)
    good = run.model.object_phase.detach().clone()
    with pytest.raises(
        Exception, match=r"Restored the state after iteration 1; its checkpoint in .*result.h5 is kept"
    ):
        run.run()
    saved = read_result(run.result_path)
    assert int(saved["attrs"]["iteration"]) == 1
    assert np.array_equal(saved["object/phase"], good.numpy())
    assert np.isfinite(saved["object/amplitude"]).all()


def test_a_checkpoint_with_nan_is_refused_by_resume(tiny_config):
    """ptyrad_core never writes a non-finite state; a file that holds one was changed or damaged:
    one line naming the array, before the run goes on (before, it failed in the first iteration
    with advice to lower the learning rates and to resume from the same file)."""
    from ptyrad_core.kernel.errors import DataError

    first = make(tiny_config()).run(1)
    with h5py.File(first.result_path, "a") as f:
        phase = f["object/phase"][()]
        phase[0, 0, 3, 3] = np.nan
        f["object/phase"][...] = phase
    with pytest.raises(DataError, match=r"holds NaN or infinite values in its state \(object_phase\)"):
        make(tiny_config(), resume=first.result_path)

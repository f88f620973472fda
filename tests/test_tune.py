"""Hyperparameter search: recovering a defocus, workers, resume, pruning, plugin options, bad entries."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import optuna
import pytest
import yaml
from conftest import BASE_CONFIG
from optuna.trial import TrialState

from ptyrad_core.apps.tune import (
    OBJECTIVES,
    Study,
    TuneSection,
    _TrialReporter,
    kept_heldout_loss,
    tune_command,
)
from ptyrad_core.kernel.errors import ConfigError
from ptyrad_core.setup.config_file import load_config


def tune_config(tmp_path, **tune) -> dict:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["experiment"]["aberrations"] = {"defocus": 60}
    cfg["update"] = {"probe": {"lr": 0}}
    cfg["recon"].update(iterations=3, batch_size=32)
    cfg["output"] = {"dir": str(tmp_path / "study"), "figures": False, "log_file": False}
    cfg["tune"] = {
        "params": {"experiment.aberrations.defocus": {"type": "float", "low": 40, "high": 160}},
        "n_trials": 4,
        "sampler": {"name": "TPE"},
        **tune,
    }
    return cfg


def write(tmp_path, cfg, name="tune.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def load(cfg_path, cfg) -> optuna.Study:
    return optuna.load_study(
        study_name=Path(cfg_path).stem,
        storage=f"sqlite:///{Path(cfg['output']['dir']).resolve() / 'tune.sqlite3'}",
    )


@pytest.mark.slow  # 20 trials
def test_tpe_recovers_the_defocus(tmp_path):
    """tiny.h5 (defocus 100 A), started at 60 A: 20 TPE trials of 3 iterations each.

    Scored with the loss stack: on these noiseless patterns after 3 iterations the model is far
    from the data, and the Poisson deviance (the default score) weighs the patterns' gross misfit
    in the dark field more than the optics: it ranks 40 A first (docs/tuning.md)."""
    cfg = tune_config(tmp_path, n_trials=20)
    cfg["recon"]["validation"] = {"score": "loss"}
    path = write(tmp_path, cfg)
    result = tune_command(path)
    best = result["best"].params["experiment.aberrations.defocus"]
    assert abs(best - 100) < 15, best
    written = yaml.safe_load(result["best_config"].read_text())
    assert written["experiment"]["aberrations"]["defocus"] == pytest.approx(best)
    assert "tune" not in written and written["output"]["dir"] == str(
        Path(cfg["output"]["dir"]) / "tune" / "best"
    )
    assert load_config(result["best_config"]).experiment.aberrations["defocus"] == pytest.approx(best)
    assert (
        result["best_config"] == Path(cfg["output"]["dir"]) / "tune" / "best_config.yaml"
    )  # the study's folder
    for name in ("tune_history.png", "tune_slice.png"):
        assert (Path(cfg["output"]["dir"]) / "tune" / name).stat().st_size > 1000


@pytest.mark.slow  # two worker processes, trials of at least 1 s
def test_two_workers_share_one_study_and_an_interrupted_study_resumes(tmp_path):
    cfg = tune_config(tmp_path, n_trials=6)
    cfg["recon"]["iterations"] = 1
    # each trial lasts at least 1 s, so that one worker cannot finish the study before the other
    # has started (a trial on tiny.h5 otherwise takes a fraction of a second)
    (tmp_path / "slow_trial.py").write_text(
        "import time\nfrom ptyrad_core import hookimpl\n\n\n"
        "@hookimpl\ndef ptyrad_on_run_start(run):\n    time.sleep(1.0)\n"
    )
    cfg["plugins"] = {"modules": ["slow_trial.py"]}
    path = write(tmp_path, cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "tune", str(path), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    study = load(path, cfg)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 6 and len(study.trials) == 6
    assert len({t.number for t in finished}) == 6
    assert len({t.user_attrs["worker"] for t in finished}) == 2  # both processes ran trials
    folders = sorted(
        p.name for p in (Path(cfg["output"]["dir"]) / "tune").glob("trial_*")
    )  # <output.dir>/<study>/
    assert folders == [f"trial_{n:04d}" for n in range(6)]
    # a trial left RUNNING by a dead worker does not count, and a larger budget continues the study
    dead = study.ask()
    dead.set_user_attr("worker", f"{__import__('socket').gethostname()}:999999")
    tune_command(path, ["tune.n_trials=8"])
    study = load(path, cfg)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 8
    assert study.trials[dead.number].state == TrialState.FAIL


def test_pruner_stops_clearly_worse_trials(tmp_path):
    cfg = tune_config(
        tmp_path,
        n_trials=4,
        pruner={"name": "median", "options": {"n_startup_trials": 1, "n_warmup_steps": 0}},
        params={"experiment.aberrations.defocus": {"type": "categorical", "choices": [100, 400]}},
    )
    cfg["recon"]["iterations"] = 3
    study_def = Study(write(tmp_path, cfg))
    study = study_def.open()
    for defocus in (100, 400, 100, 400):
        study.enqueue_trial({"experiment.aberrations.defocus": defocus})
    study_def.optimize()
    states = {t.number: (t.params["experiment.aberrations.defocus"], t.state) for t in study.trials}
    assert [s for d, s in states.values() if d == 400] == [TrialState.PRUNED, TrialState.PRUNED]
    assert [s for d, s in states.values() if d == 100] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert all(
        study.trials[n].last_step == 1 for n, (d, _) in states.items() if d == 400
    )  # stopped at the first report


LOCAL_LOSS = """
import torch
from pydantic import BaseModel, ConfigDict, Field
from ptyrad_core import hookimpl

class ScaledL1(torch.nn.Module):
    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = Field(1.0, gt=0, description="weight inside the term")
    def __init__(self, options):
        super().__init__()
        self.options = options
    def forward(self, pred, meas, batch):
        return self.options.scale * ((pred + 1e-12).sqrt() - meas.sqrt()).abs().mean() / meas.sqrt().mean()

@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("scaled_l1", ScaledL1)
"""


def test_an_option_of_a_local_plugin_is_tuned(tmp_path):
    (tmp_path / "my_loss.py").write_text(LOCAL_LOSS)
    cfg = tune_config(
        tmp_path,
        n_trials=3,
        sampler={"name": "random"},
        params={"loss.1.options.scale": {"type": "float", "low": 0.1, "high": 2.0}},
    )
    cfg["plugins"] = {"modules": ["my_loss.py"]}
    cfg["loss"] = [{"name": "gaussian"}, {"name": "scaled_l1"}]
    cfg["recon"]["iterations"] = 1
    study = Study(write(tmp_path, cfg)).optimize()
    used = []
    for t in study.trials:
        with h5py.File(Path(cfg["output"]["dir"]) / "tune" / f"trial_{t.number:04d}" / "result.h5") as f:
            config = yaml.safe_load(f.attrs["config"])
        used.append(config["loss"][1]["options"]["scale"])
        assert used[-1] == pytest.approx(t.params["loss.1.options.scale"])
    assert len(set(used)) == 3


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"recon.iteratons": {"type": "int", "low": 1, "high": 3}},
            r"tune.params\['recon.iteratons'\].*unknown key 'iteratons'",
        ),
        (
            {"recon.iterations": {"type": "int", "low": 5, "high": 3}},
            r"tune.params.recon.iterations: .*low \(5.0\) > high \(3.0\)",
        ),
        (
            {"update.probe.lr": {"type": "float", "low": 0, "high": 1, "log": True}},
            r"tune.params.update.probe.lr: .*log sampling needs positive bounds",
        ),
        (
            {"loss.0.options.dp_pow": {"type": "categorical", "choices": []}},
            r"tune.params.loss.0.options.dp_pow: .*non-empty list of choices",
        ),
        (
            {"loss.0.options.dp_pov": {"type": "categorical", "choices": [0.5]}},
            r"tune.params\['loss.0.options.dp_pov'\].*unknown key 'dp_pov'",
        ),
        (  # a grid that holds low alone: every trial the same (before: Optuna warned, exit 0)
            {"update.object_phase.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "step": 1}},
            r"tune.params.update.object_phase.lr: .*step 1 is larger than high - low = 0.0099",
        ),
    ],
)
def test_bad_search_space_entries_are_named(tmp_path, entry, message):
    cfg = tune_config(tmp_path, params=entry)
    with pytest.raises(ConfigError, match="(?s)" + message):
        Study(write(tmp_path, cfg))


@pytest.mark.parametrize("name", sorted(__import__("ptyrad_core.apps.tune", fromlist=["SAMPLERS"]).SAMPLERS))
def test_every_sampler_by_name_finds_the_minimum_of_a_parabola(name):
    from ptyrad_core.apps.tune import ComponentChoice, TuneSection, make_sampler

    tune = TuneSection(
        params={"a": {"type": "float", "low": 0, "high": 1, "step": 0.125}},
        sampler=ComponentChoice(name=name),
    )
    study = optuna.create_study(sampler=make_sampler(tune, seed=0))
    study.optimize(lambda t: (tune.params["a"].suggest(t, "a") - 0.5) ** 2, n_trials=12)
    assert study.best_params["a"] == pytest.approx(0.5, abs=0.13)


@pytest.mark.parametrize(
    "name, options",
    [
        ("median", {}),
        ("percentile", {"percentile": 25}),
        ("successive_halving", {}),
        ("hyperband", {}),
        ("threshold", {"upper": 1.0}),
        ("patient", {}),
        ("none", {}),
    ],
)
def test_every_pruner_by_name_is_built(name, options):
    from ptyrad_core.apps.tune import PRUNERS, ComponentChoice, TuneSection, make_pruner

    tune = TuneSection(
        params={"a": {"type": "categorical", "choices": [0]}},
        pruner=ComponentChoice(name=name, options=options),
    )
    assert type(make_pruner(tune)).__name__ == PRUNERS[name]


def test_unknown_sampler_and_bad_options_are_named():
    from ptyrad_core.apps.tune import ComponentChoice, TuneSection, make_pruner, make_sampler

    params = {"a": {"type": "float", "low": 0, "high": 1}}
    with pytest.raises(ConfigError, match="unknown sampler 'TPS'.*TPE"):
        make_sampler(TuneSection(params=params, sampler=ComponentChoice(name="TPS")), 0)
    with pytest.raises(ConfigError, match="grid over a continuous range needs a step"):
        make_sampler(TuneSection(params=params, sampler=ComponentChoice(name="grid")), 0)
    with pytest.raises(ConfigError, match="PercentilePruner.*percentile"):
        make_pruner(TuneSection(params=params, pruner=ComponentChoice(name="percentile")))


def test_a_two_objective_study_on_a_journal_file(tmp_path):
    """Error and time as objectives (NSGA-II) in a journal storage: a Pareto front of finished trials."""
    cfg = tune_config(
        tmp_path,
        n_trials=3,
        sampler={"name": "NSGA-II"},
        objectives=["loss", "time"],
        storage=f"journal:{tmp_path / 'shared' / 'study.log'}",
    )
    cfg["recon"]["iterations"] = 1
    result = tune_command(write(tmp_path, cfg))
    study = optuna.load_study(
        study_name="tune",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "shared" / "study.log"))
        ),
    )
    assert len(study.directions) == 2 and len(study.trials) == 3
    assert all(len(t.values) == 2 and t.values[1] > 0 for t in study.trials)
    assert result["best"].number in {t.number for t in study.best_trials}


def test_objectives_are_checked_before_any_trial(tmp_path):
    with pytest.raises(ConfigError, match="(?s)tune.*unknown objective 'los'"):
        Study(write(tmp_path, tune_config(tmp_path, objectives=["los"])))
    with pytest.raises(ConfigError, match="(?s)tune.*single-objective studies only"):
        Study(write(tmp_path, tune_config(tmp_path, objectives=["loss", "time"], pruner={"name": "median"})))


def fake_run(heldout, keep=None, min_delta=0.0):
    stop = SimpleNamespace(keep=keep, min_delta=min_delta, patience=None)
    return SimpleNamespace(
        history={"heldout_loss": list(heldout)}, config=SimpleNamespace(recon=SimpleNamespace(stop=stop))
    )


def test_heldout_is_the_default_objective():
    tune = TuneSection(params={"a": {"type": "categorical", "choices": [0]}})
    assert tune.objectives == ["heldout"] and "heldout" in OBJECTIVES
    with pytest.raises(ValueError, match="use heldout, loss"):
        TuneSection(params={"a": {"type": "categorical", "choices": [0]}}, objectives=["held"])


def test_kept_heldout_loss_follows_keep_and_min_delta():
    curve = [1.0, 0.8, float("nan"), 0.79, 0.9]
    assert kept_heldout_loss(fake_run(curve)) == pytest.approx(0.79)  # keep best (the default)
    assert kept_heldout_loss(fake_run(curve, keep="last")) == pytest.approx(0.9)
    # 0.79 is not 5 % below 0.8: the run keeps the state of 0.8
    assert kept_heldout_loss(fake_run(curve, keep="best", min_delta=0.05)) == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="recon.validation.fraction > 0"):
        kept_heldout_loss(fake_run([float("nan")] * 3))
    assert kept_heldout_loss(fake_run([]), required=False) is None


class FakeTrial:
    number = 0

    def __init__(self):
        self.reports = []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return False


def test_the_pruner_reads_the_heldout_curve():
    """First objective heldout: the pruner gets the held-out loss of the state the run would keep
    (the running best), nothing on iterations without a held-out value; otherwise the training loss."""
    curve, losses = [1.0, 0.6, float("nan"), 0.7], [5.0, 4.0, 3.0, 2.0]
    trial, run = FakeTrial(), fake_run([])
    reporter = _TrialReporter(trial, 1, "heldout")
    for i, (h, loss) in enumerate(zip(curve, losses), start=1):
        run.history["heldout_loss"].append(h)
        reporter.ptyrad_on_iter_end(run=run, iteration=i, metrics={"loss": loss, "heldout_loss": h})
    assert trial.reports == [(1, 1.0), (2, 0.6), (4, 0.6)]
    trial, run = FakeTrial(), fake_run([])
    reporter = _TrialReporter(trial, 2, "loss")
    for i, loss in enumerate(losses, start=1):
        reporter.ptyrad_on_iter_end(run=run, iteration=i, metrics={"loss": loss})
    assert trial.reports == [(2, 4.0), (4, 2.0)]


def test_a_study_optimizes_the_heldout_loss(tmp_path):
    """Two trials on tiny.h5 with the objective heldout: each trial's value is the held-out loss of
    the state its run kept (the lowest of its held-out curve, keep: best), read back from the
    trial's result.h5, not its training loss."""
    cfg = tune_config(tmp_path, n_trials=2, sampler={"name": "random"})  # the default objective
    cfg["recon"]["iterations"] = 3
    cfg["recon"]["validation"] = {"fraction": 0.1}
    study = Study(write(tmp_path, cfg))
    assert study.tune.objectives == ["heldout"]
    done = study.optimize()
    trials = done.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2
    for t in trials:
        with h5py.File(study.trial_dir(t.number) / "result.h5", "r") as f:
            heldout = f["history/heldout_loss"][()]
            training = f["history/loss"][()]
        assert np.isfinite(heldout).all()
        assert t.value == pytest.approx(float(np.min(heldout)), rel=1e-12)
        assert t.value != pytest.approx(float(training[-1]), rel=1e-6)
        assert t.intermediate_values  # the pruner was fed the held-out curve
        assert t.intermediate_values[max(t.intermediate_values)] == pytest.approx(t.value, rel=1e-12)
    study.close()


def test_heldout_without_validation_is_one_line(tmp_path):
    cfg = tune_config(tmp_path)
    cfg["recon"]["validation"] = {"fraction": 0}
    with pytest.raises(
        ConfigError, match=r"tune.objectives: 'heldout' \(the default objective\) needs"
    ) as err:
        Study(write(tmp_path, cfg))
    assert "\n" not in str(err.value) and "tune.objectives to [loss]" in str(err.value)
    Study(write(tmp_path, tune_config(tmp_path, objectives=["loss"])))  # the training loss stays available
    searched = {"recon.validation.fraction": {"type": "float", "low": 0.02, "high": 0.2}}
    cfg = tune_config(tmp_path, params=searched)
    with pytest.raises(ConfigError, match=r"tune.params\['recon.validation.fraction'\]: the held-out split"):
        Study(write(tmp_path, cfg))


def test_an_interrupted_tune_says_to_run_tune_again(tmp_path, monkeypatch):
    """A signal stops the trial's run, whose own message offers --resume of the trial's result; a
    trial's sampled settings live in the study, so tune says to run the tune command again."""
    from ptyrad_core.kernel.errors import RunInterrupted

    study_def = Study(write(tmp_path, tune_config(tmp_path, n_trials=2)))

    def stopped(trial):
        raise RunInterrupted("SIGINT received: stopped after iteration 1; continue with --resume x", 2)

    monkeypatch.setattr(study_def, "objective", stopped)
    with pytest.raises(RunInterrupted) as info:
        study_def.optimize()
    message = str(info.value)
    assert "tune stopped in trial 0" in message and "run the same tune command again" in message
    assert "--resume" not in message and info.value.signum == 2
    assert study_def.open().trials[0].state == TrialState.FAIL


def test_a_negative_number_of_kept_trials_is_named(tmp_path):
    with pytest.raises(ConfigError, match="(?s)tune.keep.*greater than or equal to 0"):
        Study(write(tmp_path, tune_config(tmp_path, keep=-1)))

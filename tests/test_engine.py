"""The optimizer loop: schedules, batching, accumulation, hooks, saving, non-finite losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict

from ptyrad_core import hookimpl
from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.config import ConstraintSpec, build_config
from ptyrad_core.kernel.errors import NonFiniteLossError
from ptyrad_core.kernel.model import ParamSchedule
from ptyrad_core.kernel.schedule import Schedule
from ptyrad_core.setup.scan import affine_matrix, make_batches, place_in_object, raster_positions


def test_param_schedule_and_constraint_schedule():
    s = ParamSchedule(lr=1e-3, start_iter=3, end_iter=6)
    assert [s.active(i) for i in range(1, 8)] == [False, False, True, True, True, False, False]
    assert not ParamSchedule(lr=0.0).active(5)
    c = ConstraintSpec(name="x", start_iter=2, step=3, end_iter=9)
    assert [i for i in range(1, 15) if c.runs_at(i)] == [2, 5, 8]
    assert not any(ConstraintSpec(name="x", start_iter=None).runs_at(i) for i in range(1, 5))


def test_one_schedule_type_for_parameters_and_constraints():
    """ParamSchedule and a constraint's schedule are the one kernel Schedule (same rule, keys unchanged)."""
    assert (
        Schedule(start_iter=2, end_iter=9, step=3)
        == ConstraintSpec(name="x", start_iter=2, step=3, end_iter=9).schedule
    )
    assert isinstance(ParamSchedule(lr=1.0), Schedule)
    assert [i for i in range(1, 6) if Schedule(start_iter=None).runs_at(i)] == []
    assert [i for i in range(1, 6) if Schedule().runs_at(i)] == [1, 2, 3, 4, 5]
    assert [i for i in range(1, 9) if Schedule(start_iter=3, end_iter=7).runs_at(i)] == [3, 4, 5, 6]
    window = Schedule(start_iter=3, end_iter=7)
    p = ParamSchedule(lr=1e-3, start_iter=3, end_iter=7)
    assert all(p.active(i) == window.runs_at(i) for i in range(1, 12))
    assert not any(ParamSchedule(lr=0.0, start_iter=3, end_iter=7).active(i) for i in range(1, 12))


def test_the_loop_reads_no_config():
    """Only the builder reads the config: the loop takes Settings and Parts (issue 16)."""
    import inspect as _inspect

    from ptyrad_core.engine import loop

    source = _inspect.getsource(loop)
    assert "self.config." not in source and "config.recon" not in source and "config.output" not in source


def test_builder_parts_and_settings(tiny_config):
    from ptyrad_core.engine import builder

    cfg = tiny_config(
        constraints=[{"name": "objp_postiv", "start_iter": 2, "step": 2}],
        loss=[{"name": "gaussian"}, {"name": "gaussian", "weight": 0.5}],
    )
    rec = Reconstruction(build_config(cfg), quiet=True)
    assert isinstance(rec.settings, builder.Settings) and rec.settings.iterations == 2
    with pytest.raises(AttributeError):  # frozen
        rec.settings.iterations = 3
    assert [(t.label, t.weight) for t in rec.loss_terms] == [("gaussian", 1.0), ("gaussian_2", 0.5)]
    ((label, constraint, schedule),) = rec.constraints
    assert label == "constraints[0] 'objp_postiv'" and schedule == Schedule(start_iter=2, step=2)
    assert rec.parts.output_dir == rec.output_dir
    batches = rec.batches()
    assert np.array_equal(np.sort(np.concatenate(batches)), np.sort(rec.plan.indices))
    rec.close()


@pytest.mark.parametrize("mode", ["random", "spread", "compact"])
def test_batches_partition_the_positions(mode):
    pos = raster_positions(12, 10, 2.0)
    batches = make_batches(pos, np.arange(120), 16, mode, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(120))
    assert len(batches) == 7
    spread = [np.ptp(pos[b], axis=0).mean() for b in batches]
    if mode == "spread":
        assert min(spread) > 0.6 * np.ptp(pos, axis=0).mean()
    if mode == "compact":
        assert max(spread) < 0.6 * np.ptp(pos, axis=0).mean()


def test_raster_affine_and_placement():
    pos = raster_positions(3, 4, 2.0, affine_matrix(rotation_deg=90))
    # rotation by 90 degrees maps the fast (x) axis onto y
    step_fast = pos[1] - pos[0]
    assert np.allclose(np.abs(step_fast), [2.0, 0.0], atol=1e-12)
    placed, shape = place_in_object(raster_positions(3, 4, 2.0), (16, 16))
    assert shape == (int(1.2 * (4 + 16)), int(1.2 * (6 + 16)))
    centre = (placed.min(0) + placed.max(0)) / 2 + 8
    assert np.allclose(centre, np.asarray(shape) // 2, atol=0.5)


def test_start_iter_and_frozen_parameters(tiny_config):
    cfg = tiny_config(update={"probe": {"lr": 1e-3, "start_iter": 3}, "object_amplitude": {"lr": 0}})
    cfg["recon"]["iterations"] = 3
    run = Reconstruction(build_config(cfg), quiet=True)
    probe0 = run.model.probe.detach().clone()
    amp0 = run.model.object_amplitude.detach().clone()
    run.run(2)
    assert torch.equal(run.model.probe.detach(), probe0)
    run.run(1)
    assert not torch.equal(run.model.probe.detach(), probe0)
    assert torch.equal(run.model.object_amplitude.detach(), amp0)


@pytest.mark.parametrize("accumulate, steps", [(1, 4), (2, 2), (3, 2)])
def test_gradient_accumulation_steps(tiny_config, accumulate, steps):
    cfg = tiny_config()
    cfg["recon"].update(iterations=1, batch_size=16, grad_accumulation=accumulate)
    run = Reconstruction(build_config(cfg), quiet=True)
    calls = []
    original = run.optimizer.step
    run.optimizer.step = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    run.run()
    assert len(calls) == steps


class Recorder:
    def __init__(self):
        self.events = []

    @hookimpl
    def ptyrad_configure(self, config):
        self.events.append(("configure", config.recon.iterations))

    @hookimpl
    def ptyrad_on_run_start(self, run):
        self.events.append(("start", run.iteration))

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        # validation on by default; the per-group values the kept-state test reads where a state
        # is compared with the held-out minimum (not on a new minimum)
        assert {"loss", "loss_terms", "time_s", "heldout_loss"} <= set(metrics)
        assert set(metrics) <= {"loss", "loss_terms", "time_s", "heldout_loss", "heldout_groups"}
        assert math.isclose(metrics["loss"], sum(metrics["loss_terms"].values()))
        self.events.append(("iter", iteration))

    @hookimpl
    def ptyrad_on_save(self, run, path, iteration):
        assert path.exists()
        self.events.append(("save", iteration))

    @hookimpl
    def ptyrad_on_run_end(self, run):
        self.events.append(("end", run.iteration))


def test_lifecycle_hooks_and_periodic_saves(tiny_config, register_inline):
    rec = Recorder()
    cfg = tiny_config(output=None)
    cfg["output"] = {"dir": tiny_config()["output"]["dir"], "save_every": 2, "figures": False}
    cfg["recon"]["iterations"] = 5
    run = Reconstruction(build_config(cfg), pm=register_inline(rec), quiet=True)
    run.run()
    assert rec.events == [
        ("configure", 5),
        ("start", 0),
        ("iter", 1),
        ("iter", 2),
        ("save", 2),
        ("iter", 3),
        ("iter", 4),
        ("save", 4),
        ("iter", 5),
        ("save", 5),
        ("end", 5),
    ]
    assert not list(run.output_dir.glob(".*tmp*")), "temporary files left behind"


def test_result_file_contents(tiny_config):
    cfg = tiny_config(model={"probe": {"modes": 2}, "object": {"slices": 2, "slice_thickness_A": 3.905}})
    run = Reconstruction(build_config(cfg), quiet=True).run()
    r = read_result(run.result_path)
    assert r["object/phase"].shape == (1, 2, 80, 80) and r["probe/modes"].shape == (2, 64, 64)
    assert np.isclose(r["probe/powers"].sum(), 1) and r["probe/powers"][0] > r["probe/powers"][1]
    assert np.allclose(r["positions/nominal_px"], run.model.crop.numpy() + run.model.frac.numpy())
    assert list(r["history/iteration"]) == [1, 2] and len(r["history/loss_terms/gaussian"]) == 2
    assert r["attrs"]["config"]["loss"][0]["options"] == {"dp_pow": 0.5, "eps": 1e-10}
    assert r["attrs"]["versions"]["torch"] == torch.__version__
    assert {p["name"] for p in r["attrs"]["plugins"]} >= {"loss_gaussian", "loader_hdf5"}


class _NoOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NaNAtIteration2(torch.nn.Module):
    Options = _NoOpts

    def __init__(self, options):
        super().__init__()

    def forward(self, pred, meas, batch):
        value = pred.mean() * 0
        return value + float("nan") if batch.iteration == 2 else value


class NaNPlugin:
    @hookimpl
    def ptyrad_register_loss_terms(self, registry):
        registry.add("nan_at_2", NaNAtIteration2)


def test_non_finite_loss_stops_before_updating(tiny_config, register_inline):
    cfg = tiny_config(loss=[{"name": "gaussian"}, {"name": "nan_at_2"}])
    cfg["recon"]["iterations"] = 3
    run = Reconstruction(build_config(cfg), pm=register_inline(NaNPlugin()), quiet=True)
    run.run(1)
    phase = run.model.object_phase.detach().clone()
    with pytest.raises(NonFiniteLossError, match="iteration 2, batch 0: the loss is not finite"):
        run.run()
    assert torch.equal(run.model.object_phase.detach(), phase)
    assert run.iteration == 1


def test_every_result_dataset_is_documented(tiny_config):
    from conftest import ROOT

    run = Reconstruction(build_config(tiny_config()), quiet=True).run()
    doc = (ROOT / "docs" / "results.md").read_text()
    for key in read_result(run.result_path):
        if key == "attrs":
            continue
        documented = f"`/{key}`" in doc or (
            key.startswith("history/loss_terms/") and "`/history/loss_terms/<name>`" in doc
        )
        assert documented, key


@pytest.mark.parametrize(
    "name, options", [("SGD", {"momentum": 0.9}), ("LBFGS", {"max_iter": 2}), ("AdamW", {}), ("RMSprop", {})]
)
def test_any_torch_optimizer_by_name(tiny_config, name, options):
    cfg = tiny_config(optimizer={"name": name, "options": options})
    cfg["recon"]["iterations"] = 2
    run = Reconstruction(build_config(cfg), quiet=True)
    phase = run.model.object_phase.detach().clone()
    run.run()
    assert isinstance(run.optimizer, getattr(torch.optim, name))
    assert not torch.equal(run.model.object_phase.detach(), phase)
    assert all(np.isfinite(run.history["loss"]))


def test_fused_optimizer_by_default_unless_the_config_chooses(tiny_config):
    """Adam runs its fused implementation unless the config names one; the two implementations
    make the same updates (they differ only in the rounding where a gradient is near Adam's
    ``eps``: here by less than 1 % of the largest change)."""
    fused = Reconstruction(build_config(tiny_config(optimizer={"name": "Adam"})), quiet=True)
    cfg = tiny_config(optimizer={"name": "Adam", "options": {"foreach": False}})
    cfg["output"]["dir"] += "-plain"  # one run per output folder at a time
    plain = Reconstruction(build_config(cfg), quiet=True)
    assert all(g["fused"] for g in fused.optimizer.param_groups)
    assert not any(g["fused"] for g in plain.optimizer.param_groups)
    start = {
        name: plain.model.parameter(name).detach().clone()
        for name in ("object_phase", "object_amplitude", "probe")
    }
    fused.run(3)
    plain.run(3)
    for name, before in start.items():
        a, b = fused.model.parameter(name).detach(), plain.model.parameter(name).detach()
        change = (b - before).abs().max()
        assert change > 0, name
        assert (a - b).abs().max() < 1e-2 * change, name


@pytest.mark.slow  # several runs compared
def test_positions_per_pass_chooses_chunks_and_does_not_change_the_result(tiny_config):
    """The slice recursion in chunks of positions gives the reconstruction of the whole batch at
    once up to rounding; 'auto' makes about 2 MiB of waves per chunk on the CPU; bad values are
    named."""
    from ptyrad_core.kernel import forward as fwd
    from ptyrad_core.kernel.errors import ConfigError

    runs = {}
    for setting in ("auto", 5, 1000):
        cfg = tiny_config()
        cfg["model"]["probe"] = {"modes": 2}
        cfg["recon"].update(iterations=3, positions_per_pass=setting)
        cfg["output"]["dir"] += f"-{setting}"  # each run its own folder: none replaces another's result
        runs[setting] = Reconstruction(build_config(cfg), quiet=True)
    auto = runs["auto"].model
    wave_bytes = 2 * auto.window[0] * auto.window[1] * 8
    assert auto.positions_per_pass == fwd.CPU_CHUNK_BYTES // wave_bytes
    assert runs[5].model.positions_per_pass == 5
    names = ("object_phase", "object_amplitude", "probe")
    start = {name: auto.parameter(name).detach().clone() for name in names}
    for run in runs.values():
        run.run()
    whole = runs[1000]
    for setting in ("auto", 5):
        assert np.allclose(runs[setting].history["loss"], whole.history["loss"], rtol=1e-5)
        for name in names:  # Adam turns rounding of gradients near its eps into steps: compare with the step
            a, b = runs[setting].model.parameter(name).detach(), whole.model.parameter(name).detach()
            change = (b - start[name]).abs().max()
            assert change > 0 and (a - b).abs().max() < 1e-2 * change, (setting, name)
    assert fwd.chunk_size("auto", wave_bytes, "cuda") is None
    for bad in (0, "all"):
        cfg = tiny_config()
        cfg["recon"]["positions_per_pass"] = bad
        with pytest.raises(ConfigError, match="recon.positions_per_pass"):
            build_config(cfg)


def test_unknown_optimizer_and_bad_options_are_named(tiny_config):
    from ptyrad_core.kernel.errors import PtyradError

    with pytest.raises(
        PtyradError,
        match="optimizer.name: 'Adamm' is not a torch.optim optimizer; did you mean 'Adam'\\? "
        "choose one of: .*Adam",
    ):
        Reconstruction(build_config(tiny_config(optimizer={"name": "Adamm"})), quiet=True)
    with pytest.raises(PtyradError, match=r"torch.optim.Adam rejected the options \{'betas': 3\}"):
        Reconstruction(
            build_config(tiny_config(optimizer={"name": "Adam", "options": {"betas": 3}})), quiet=True
        )


@pytest.mark.parametrize("unit, expected_steps", [("iter", 3), ("batch", 12)])
def test_learning_rate_scheduler(tiny_config, unit, expected_steps):
    cfg = tiny_config(
        optimizer={
            "name": "Adam",
            "scheduler": {"name": "StepLR", "options": {"step_size": 1, "gamma": 0.5}, "step_unit": unit},
        }
    )
    cfg["recon"].update(iterations=3, batch_size=16)
    run = Reconstruction(build_config(cfg), quiet=True).run()
    lr0 = cfg["update"]["object_phase"]["lr"] if "update" in cfg else 5e-4
    group = next(g for g in run.optimizer.param_groups if g["name"] == "object_phase")
    assert math.isclose(group["lr"], lr0 * 0.5**expected_steps)
    with pytest.raises(Exception, match="not a torch.optim.lr_scheduler class"):
        Reconstruction(build_config(tiny_config(optimizer={"scheduler": {"name": "StepLRR"}})), quiet=True)


def test_output_folder_named_from_the_config(tiny_config):
    from pathlib import Path

    cfg = tiny_config(output=None, constraints=[{"name": "obj_zblur"}])
    base = tiny_config()["output"]["dir"]
    cfg["output"] = {"dir": base, "name": {"affixes": ["default"], "prefix": "sto", "postfix": "v1"}}
    run = Reconstruction(build_config(cfg), quiet=True)
    name = (
        "sto_full_N64_dp64_random16_p1_1obj_2slice_dz3.9_oalr5e-4_oplr5e-4_plr1e-4_"
        "gaussian1_obj_zblur_df100_v1"
    )
    assert run.output_dir == Path(base) / name
    cfg["output"]["name"] = {"affixes": ["minimal"], "time": "%Y"}
    import datetime

    assert run.__class__(build_config(cfg), quiet=True).output_dir.name.startswith(
        f"{datetime.date.today().year}_full_N64"
    )
    cfg["output"]["name"] = {"affixes": ["nonsense"]}
    with pytest.raises(Exception, match="unknown affix 'nonsense'"):
        Reconstruction(build_config(cfg), quiet=True)

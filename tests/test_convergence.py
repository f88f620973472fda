"""The convergence monitor (ptyrad_core.observers.convergence), a lifecycle observer."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import build_run

from ptyrad_core import hookimpl
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.observers.convergence import FILE_NAME, METRICS, ConvergenceMonitor, bg_fg_change


class Recorder:
    """Keeps copies of the model after every iteration, to recompute the metrics independently."""

    def __init__(self):
        self.states = {}

    @hookimpl
    def ptyrad_on_run_start(self, run):
        self.states[run.iteration] = self._copy(run.model)

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        self.states[iteration] = self._copy(run.model)

    @staticmethod
    def _copy(model):
        return {
            "positions": model.refined_positions().detach().double().numpy().copy(),
            "probe_int": model.probe.detach().abs().square().sum(0).double().numpy().copy(),
            "phase": model.object_phase.detach().numpy().copy(),
        }


def make_run(config: dict, every: int = 1, **kwargs):
    """A reconstruction with a convergence monitor: the core one if the kernel registers it, else ours."""
    recorder = Recorder()
    pm = get_plugin_manager(inline=[recorder])
    monitor = pm.get_plugin("core.convergence")
    if monitor is None or every != 1:
        if monitor is not None:
            pm.unregister(name="core.convergence")
        monitor = ConvergenceMonitor(every=every)
        pm.register_plugin(monitor, name="test.convergence", source="inline")
    return build_run(config, pm=pm, **kwargs), monitor, recorder


def test_bg_fg_change():
    current = np.arange(100, dtype=float).reshape(10, 10)
    previous = current.copy()
    previous[0, :5] -= 2.0  # pixels 0..4: background (below the 15th percentile, 14.85)
    previous[9, 5:] += 3.0  # pixels 95..99: foreground (above the 85th percentile, 84.15)
    previous[5, 5] += 100.0  # a middle pixel: in neither mean
    bg, fg = bg_fg_change(current, previous, (15, 85))
    assert bg == pytest.approx(2.0 * 5 / 15) and fg == pytest.approx(3.0 * 5 / 15)
    assert bg_fg_change(current, current, (15, 85)) == (0.0, 0.0)


def test_monitor_records_every_iteration_and_writes_the_file(tiny_config):
    cfg = tiny_config(
        update={"positions": {"lr": 2e-2}, "probe": {"lr": 1e-3}},
        recon={"iterations": 3, "batch_size": 16},
        output={"dir": tiny_config()["output"]["dir"], "save_every": 2},
    )
    run, monitor, rec = make_run(cfg)
    writes = []
    original = monitor.write
    monitor.write = lambda folder: writes.append(len(monitor.history["iteration"])) or original(folder)
    run.run()
    h = monitor.history
    assert h["iteration"] == [1, 2, 3]
    assert writes == [2, 3]  # at the save after iteration 2 and the final one
    for key in METRICS:
        assert len(h[key]) == 3 and np.all(np.isfinite(h[key])) and min(h[key]) >= 0, key
    dx = run.model.dx
    for i in (1, 2, 3):
        d = rec.states[i]["positions"] - rec.states[i - 1]["positions"]
        assert h["positions_A"][i - 1] == pytest.approx(np.sqrt(np.mean(np.sum(d**2, axis=1))) * dx, rel=1e-6)
        p0, p1 = rec.states[i - 1]["probe_int"], rec.states[i]["probe_int"]
        assert h["probe"][i - 1] == pytest.approx(np.abs(p1 - p0).sum() / p0.sum(), rel=1e-5)
    assert min(h["positions_A"]) > 0 and min(h["probe"]) > 0 and min(h["objp_fg"]) > 0
    assert h["tilts_mrad"] == [0.0, 0.0, 0.0]  # tilts are frozen
    # the phase metric on the scanned region (box of window centres, one pixel larger at the top/left)
    ry, rx = monitor.roi
    assert (ry.start, ry.stop, rx.start, rx.stop) == (31, 48, 31, 48)
    cur, prev = rec.states[3]["phase"][..., ry, rx], rec.states[2]["phase"][..., ry, rx]
    lo, hi = np.percentile(cur, (15, 85))
    diff = np.abs(cur - prev)
    assert h["objp_bg"][2] == pytest.approx(diff[cur < lo].mean(), rel=1e-5)
    assert h["objp_fg"][2] == pytest.approx(diff[cur > hi].mean(), rel=1e-5)
    saved = json.loads((run.output_dir / FILE_NAME).read_text())
    assert saved["history"] == json.loads(json.dumps(h)) and saved["dx_A"] == pytest.approx(dx)
    assert saved["format"] == "ptyrad_core-convergence" and set(saved["metrics"]) == set(METRICS)


def test_frozen_model_does_not_change(tiny_config):
    cfg = tiny_config(
        update={"object_amplitude": {"lr": 0}, "object_phase": {"lr": 0}, "probe": {"lr": 0}},
        recon={"iterations": 2, "batch_size": 32},
    )
    run, monitor, _ = make_run(cfg, every=2)
    run.run()
    h = monitor.history
    assert h["iteration"] == [2]  # every = 2
    assert all(h[k] == [0.0] for k in METRICS)


def test_resumed_run_continues_the_history(tiny_config):
    cfg = tiny_config(update={"positions": {"lr": 2e-2}}, recon={"iterations": 3, "batch_size": 32})
    first, monitor, _ = make_run(cfg)
    first.run(iterations=2)
    assert monitor.history["iteration"] == [1, 2]
    second, monitor2, _ = make_run(cfg, resume=first.result_path)
    second.run()
    assert monitor2.history["iteration"] == [1, 2, 3]
    assert monitor2.history["positions_A"][:2] == monitor.history["positions_A"]
    saved = json.loads((second.output_dir / FILE_NAME).read_text())
    assert saved["history"]["iteration"] == [1, 2, 3]

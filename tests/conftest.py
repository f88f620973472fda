"""Shared fixtures: the shipped datasets, small configs built on them, the one way tests build a
reconstruction (:func:`build_run`), the CLI runner, and the order of the suite.

Tests marked ``slow`` (reconstructions of tens of seconds, tests that start processes or install
packages) run after all the others; ``make test-fast`` leaves them out (``-m "not slow"``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from faultkit import Frozen, assert_clean_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"

collect_ignore = ["example_plugin"]


CONTRIB = ROOT / "contrib"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    """Slow tests last, each group in collection order: a failure in the fast part shows early.

    The contrib packages' own tests (contrib/*/tests, collected from the repository root) count
    as slow: they stand for third-party packages, which do not know this suite's marker."""
    for item in items:
        if CONTRIB in item.path.parents:
            item.add_marker(pytest.mark.slow)
    items[:] = [i for i in items if i.get_closest_marker("slow") is None] + [
        i for i in items if i.get_closest_marker("slow") is not None
    ]


def dataset(name: str) -> dict:
    """Everything in one of the shipped abTEM files, as numpy arrays and attributes."""
    with h5py.File(DATA / name, "r") as f:
        out = {
            k: f[k][()]
            for k in ("measurements", "measurements_noiseless", "positions_nominal_px", "positions_true_px")
        }
        out["phase_slices"] = f["ground_truth/phase_slices"][()]
        out["phase_projected"] = f["ground_truth/phase_projected"][()]
        out["probe"] = f["ground_truth/probe"][()]
        out["attrs"] = dict(f.attrs)
    return out


BASE_CONFIG = {
    "data": {"path": str(DATA / "tiny.h5"), "loader": "hdf5", "options": {"key": "measurements"}},
    "experiment": {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "dx_A": 0.19525,
        "aberrations": {"defocus": 100},
    },
    "scan": {
        "source": "file",
        "path": str(DATA / "tiny.h5"),
        "key": "positions_nominal_px",
        "n_slow": 8,
        "n_fast": 8,
    },
    "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
    "loss": [{"name": "gaussian"}],
    "recon": {"iterations": 2, "batch_size": 16},
}


#: the smallest `ptyrad-core simulate` spec (3 x 3 positions of 32 px): for commands that need one
SIM_SPEC = {
    "experiment": {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "dx_A": 0.19525,
        "pattern_px": 32,
        "aberrations": {"defocus": 100},
    },
    "object": {"source": "lattice", "slices": 2, "slice_thickness_A": 1.9525},
    "scan": {"n_slow": 3, "n_fast": 3, "step_A": 0.4},
}


@pytest.fixture
def tiny_config(tmp_path):
    """A factory for a small valid config dict on tiny.h5 writing into tmp_path."""

    made = []

    def make(**sections):
        cfg = copy.deepcopy(BASE_CONFIG)
        # each config its own output folder ("out", "out-2", ...): a run refuses to replace another's result
        made.append(1)
        folder = "out" if len(made) == 1 else f"out-{len(made)}"
        cfg["output"] = {
            "dir": str(tmp_path / folder),
            "figures": False,
        }  # figures are tested in test_report.py
        for key, value in sections.items():
            cfg[key] = value
        return cfg

    return make


@pytest.fixture
def write_yaml(tmp_path):
    def write(cfg: dict, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return write


def build_run(config, pm=None, **kwargs):
    """A quiet :class:`~ptyrad_core.engine.loop.Reconstruction` of ``config`` (a config dict, as
    made by ``tiny_config``, or an already built config); ``pm`` and ``kwargs`` (``resume``, ...)
    are passed on. The one place the tests build a run, so that a change in how one is built
    is made once."""
    from ptyrad_core.engine.loop import Reconstruction
    from ptyrad_core.kernel.config import build_config

    if isinstance(config, dict):
        config = build_config(config)
    return Reconstruction(config, pm=pm, quiet=True, **kwargs)


def rel_error(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- fault injection (tests/faults; helpers in faultkit.py) -----------------------------------


@pytest.fixture
def cli():
    """``cli("run", path, "-q")`` -> :class:`faultkit.Outcome` (exit code, stdout, stderr), in this
    process; ``cli(..., subprocess=True)`` in a child process (the one smoke test per command)."""
    return run_cli


@pytest.fixture
def frozen():
    return Frozen


@pytest.fixture
def clean_error():
    """:func:`assert_clean_error`, for test modules (helpers are reached through fixtures)."""
    return assert_clean_error

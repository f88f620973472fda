"""The contrib packages: installed (scripts/bootstrap.sh does it), complete, and all three in one
reconstruction. Their own tests live in contrib/*/tests and are collected from the repository
root (pyproject's testpaths)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in (ROOT / "contrib").glob("*/pyproject.toml"))
DATA = ROOT / "data" / "tiny.h5"


def _project(pkg: Path) -> dict:
    return tomllib.loads((pkg / "pyproject.toml").read_text())["project"]


def test_there_are_at_least_three_contrib_packages():
    assert len(PACKAGES) >= 3, PACKAGES


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_contrib_package_is_complete(pkg):
    project = _project(pkg)
    assert project["name"] == pkg.name and project["version"]
    assert project["entry-points"]["ptyrad_core.plugins"], (
        "needs an entry point in the ptyrad_core.plugins group"
    )
    assert (pkg / "README.md").is_file()
    tests = list((pkg / "tests").glob("test_*.py"))
    assert tests, f"{pkg.name} has no tests/test_*.py"
    # test modules are imported by basename from the repository root: the names must be unique
    assert all(t.name == f"test_{pkg.name.replace('-', '_')}.py" for t in tests), tests


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_contrib_package_imports_only_the_sdk(pkg):
    """The package's modules reach ptyrad_core only through ptyrad_core.plugin (its tests may use more)."""
    import ast

    modules = {}
    for source in (pkg / pkg.name.replace("-", "_")).rglob("*.py"):
        tree = ast.parse(source.read_text())
        found = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        found |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules[source.name] = {m for m in found if m.split(".")[0] == "ptyrad_core"}
    assert all(m <= {"ptyrad_core.plugin"} for m in modules.values()), modules
    assert any(modules.values()), f"{pkg.name} does not import ptyrad_core.plugin"


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_contrib_package_is_installed(pkg):
    project = _project(pkg)
    try:
        dist = importlib.metadata.distribution(project["name"])
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(
            f"{project['name']} is not installed: run scripts/bootstrap.sh "
            f"(pip install -e contrib/{pkg.name})"
        )
    assert dist.version == project["version"]
    assert {ep.name for ep in dist.entry_points if ep.group == "ptyrad_core.plugins"} == set(
        project["entry-points"]["ptyrad_core.plugins"]
    )


def test_one_reconstruction_with_all_three_contrib_plugins(tmp_path):
    """tiny.h5's patterns stored by RosettaSciIO as .hspy (loader auto -> rsciio), a defocus spread
    in the forward model, the TV loss term and the TV proximal constraint, together."""
    pytest.importorskip("ptyrad_rsciio")
    pytest.importorskip("ptyrad_tv")
    pytest.importorskip("ptyrad_partial_coherence")
    import h5py
    from rsciio.hspy import file_writer

    import ptyrad_core
    from ptyrad_core.engine.results import read_result

    with h5py.File(DATA, "r") as f:
        patterns = f["measurements"][()]
    hspy = tmp_path / "tiny.hspy"
    axes = [
        {"name": n, "size": s, "scale": 1.0, "offset": 0.0, "units": "px", "navigate": i < 2}
        for i, (n, s) in enumerate(zip(("y", "x", "ky", "kx"), patterns.shape))
    ]
    file_writer(
        str(hspy),
        {
            "data": patterns,
            "axes": axes,
            "metadata": {"General": {"title": "tiny"}, "Signal": {"signal_type": ""}},
            "original_metadata": {},
            "tmp_parameters": {},
            "attributes": {"_lazy": False},
            "learning_results": {},
            "models": {},
            "package_info": {"name": "rsciio", "version": "0"},
        },
        show_progressbar=False,
    )

    run = ptyrad_core.run(
        {
            "data": {"path": str(hspy)},
            "experiment": {
                "energy_kV": 300,
                "conv_angle_mrad": 21.4,
                "dx_A": 0.19525,
                "aberrations": {"defocus": 100},
            },
            "scan": {
                "source": "file",
                "path": str(DATA),
                "key": "positions_nominal_px",
                "n_slow": 8,
                "n_fast": 8,
            },
            "model": {"object": {"slices": 2, "slice_thickness_A": 3.905}},
            "forward": [{"name": "defocus_spread", "options": {"focal_spread_A": 20.0, "n_samples": 2}}],
            "loss": [{"name": "gaussian"}, {"name": "tv_phase", "weight": 0.05}],
            "constraints": [{"name": "tv_phase", "options": {"weight": 0.01}}],
            "recon": {"iterations": 2, "batch_size": 16},
            "output": {"dir": str(tmp_path / "out"), "figures": False},
        }
    )
    result = read_result(run.result_path)
    used = {p["distribution"] for p in result["attrs"]["plugins"]}
    assert {"ptyrad-rsciio", "ptyrad-tv", "ptyrad-partial-coherence"} <= used
    assert run.pm.hook.ptyrad_sniff_loader(path=hspy) == "rsciio"
    assert set(run.history["loss_terms"]) == {"gaussian", "tv_phase"}
    assert (
        np.all(np.isfinite(result["history/loss"])) and result["history/loss"][-1] < result["history/loss"][0]
    )
    assert run.measurements.source == str(hspy)

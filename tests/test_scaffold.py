"""``ptyrad-core new-plugin``: a package of every family is written, pip-installed into a
throwaway virtual environment, listed by ``ptyrad-core plugins`` as an installed package, and
its own generated tests pass unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import tomllib

from ptyrad_core.apps.cli import main
from ptyrad_core.apps.scaffold import names_for, new_plugin
from ptyrad_core.kernel.errors import PtyradError
from ptyrad_core.kernel.plugin_manager import ENTRY_POINT_GROUP, FAMILIES

ALL = list(FAMILIES)
pytestmark = pytest.mark.slow  # a throwaway venv, pip installs, a pytest process


def throwaway_venv(where: Path) -> Path:
    """A venv without pip of its own that sees this interpreter's packages (torch, ptyrad-core,
    pytest) through a .pth file; what is installed into it stays in it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_ptyrad_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """Every family scaffolded, installed (pip, editable, entry points) into one throwaway venv,
    and their generated tests run there, unchanged, in one pytest process."""
    base = tmp_path_factory.mktemp("scaffold")
    roots = {family: new_plugin(f"scaf_{family}", family, base / "pkgs") for family in ALL}
    python = throwaway_venv(base / "venv")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD")
    }
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-input"]
    for root in roots.values():
        cmd += ["-e", str(root)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = base / "report.xml"
    tests = [str(root / "tests") for root in roots.values()]
    tests_run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *tests],
        capture_output=True,
        text=True,
        env=env,
        cwd=base,
    )
    return {"python": python, "roots": roots, "env": env, "pytest": tests_run, "report": report}


def test_the_cli_offers_every_family():
    assert set(ALL) >= {"loss", "constraint", "forward", "detector", "loader", "preprocess"}


@pytest.mark.parametrize("family", ALL)
def test_generated_package_tests_pass_unchanged(scaffolded, family):
    root = scaffolded["roots"][family]
    assert {p.name for p in root.iterdir()} >= {
        "pyproject.toml",
        "README.md",
        f"ptyrad_scaf_{family}",
        "tests",
    }
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][ENTRY_POINT_GROUP] == {
        f"ptyrad_scaf_{family}": f"ptyrad_scaf_{family}.plugin"
    }
    assert project["version"] == "0.1.0"
    proc = scaffolded["pytest"]
    assert scaffolded["report"].is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = [
        c
        for c in ET.parse(scaffolded["report"]).iter("testcase")
        if f"test_ptyrad_scaf_{family}" in c.get("classname", "")
    ]
    names = {c.get("name") for c in cases}
    assert {
        "test_registered_through_the_entry_point",
        "test_unknown_options_are_rejected",
        "test_reconstruction_through_the_plugin",
    } <= names, names
    failed = [c.get("name") for c in cases if len(c)]  # a failure, error or skip is a child element
    assert not failed, f"{family}: {failed}\n{proc.stdout[-4000:]}"


def test_the_installed_packages_are_listed_as_installed(scaffolded):
    proc = subprocess.run(
        [str(scaffolded["python"]), "-m", "ptyrad_core.apps.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=scaffolded["env"],
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["components"]}
    for family in ALL:
        row = rows[f"scaf_{family}"]
        assert (row["family"], row["source"], row["distribution"], row["version"]) == (
            family,
            "installed package",
            f"ptyrad-scaf-{family.replace('_', '-')}",
            "0.1.0",
        )
    # and they were installed into the throwaway venv only
    assert f"scaf_{ALL[0]}" not in {e.name for e in _own_registry(ALL[0]).entries()}


def _own_registry(family):
    from ptyrad_core.kernel.plugin_manager import get_plugin_manager

    return get_plugin_manager().registry(family)


def test_names_and_refusals(tmp_path):
    n = names_for("tv_phase", "constraint")
    assert (n.name, n.pkg, n.dist, n.cls) == ("tv_phase", "ptyrad_tv_phase", "ptyrad-tv-phase", "TvPhase")
    assert names_for("ptyrad_x", "loss").dist == "ptyrad-x"
    for bad in ("Bad", "9lives", "with-dash", "class", "a__b", ""):
        with pytest.raises(PtyradError, match="lowercase identifier"):
            names_for(bad, "loss")
    with pytest.raises(PtyradError, match="unknown family 'losses'.*loss, constraint"):
        names_for("x", "losses")
    new_plugin("again", "loss", tmp_path)
    with pytest.raises(PtyradError, match="already exists"):
        new_plugin("again", "constraint", tmp_path)


def test_cli_writes_the_package(tmp_path, capsys):
    assert main(["new-plugin", "my_filter", "--family", "constraint", "--dir", str(tmp_path)]) == 0
    root = tmp_path / "ptyrad-my-filter"
    assert (root / "ptyrad_my_filter" / "plugin.py").is_file() and (
        root / "tests" / "test_ptyrad_my_filter.py"
    ).is_file()
    assert "pip install -e" in capsys.readouterr().out
    assert main(["new-plugin", "Bad-Name", "--family", "loss", "--dir", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["new-plugin", "x", "--family", "nope"])


@pytest.mark.parametrize("family", ALL)
def test_generated_plugin_imports_only_the_sdk(tmp_path, family):
    """The plugin module a template writes imports ptyrad_core only through ptyrad_core.plugin,
    subclasses that family's base, and compiles."""
    import ast

    from ptyrad_core.apps.scaffold import BASES

    source = (
        new_plugin(f"sdk_{family}", family, tmp_path) / f"ptyrad_sdk_{family}" / "plugin.py"
    ).read_text()
    tree = ast.parse(source)
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in modules if m.startswith("ptyrad_core")} == {"ptyrad_core.plugin"}, modules
    bases = {
        b.id
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef)
        for b in n.bases
        if isinstance(b, ast.Name)
    }
    assert BASES[family] in bases


def test_templates_are_files_shipped_as_package_data():
    """Every template file is matched by the package-data globs of pyproject.toml (so a wheel has them)."""
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "ptyrad_core.apps"
    ]
    apps = root / "ptyrad_core" / "apps"
    files = {p for p in (apps / "templates").rglob("*") if p.is_file()}
    assert len(files) == 4 + 3 * len(ALL), files
    assert files == {p for g in globs for p in apps.glob(g)}, globs

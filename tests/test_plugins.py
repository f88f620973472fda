"""Plugin discovery, selection, listing, disabling and error attribution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ConfigDict

from ptyrad_core import hookimpl
from ptyrad_core.apps.docgen import config_reference, hooks_reference, plugins_reference
from ptyrad_core.engine.loop import Reconstruction
from ptyrad_core.engine.results import read_result
from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.errors import ConfigError, PluginError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).parent / "example_plugin"


def test_builtins_come_through_the_entry_point_group(ptyrad_pm):
    pm = ptyrad_pm
    assert "gaussian" in pm.registry("loss") and "hdf5" in pm.registry("loader")
    for plugin in ("loss_gaussian", "loader_hdf5"):
        info = pm.info[plugin]
        assert (info.source, info.distribution) == ("built-in", "ptyrad-core")
    # read from the entry points: the location is the entry point's value, the module registered
    assert pm.info["loss_gaussian"].location == "ptyrad_core_plugins.losses.gaussian"
    assert (
        pm.get_plugin("loader_hdf5").__name__
        == pm.info["loader_hdf5"].location
        == "ptyrad_core_plugins.loaders.hdf5"
    )


def test_kernel_imports_no_builtin_plugin():
    import re

    for path in (ROOT / "ptyrad_core").glob("*.py"):
        assert not re.search(r"(import|from)\s+ptyrad_core_plugins", path.read_text()), path


def test_hook_docs_are_generated_from_the_specs():
    assert (ROOT / "docs" / "hooks.md").read_text() == hooks_reference(), (
        "run: ptyrad-core docs hooks > docs/hooks.md"
    )
    assert (ROOT / "docs" / "config.md").read_text() == config_reference(), (
        "run: ptyrad-core docs config > docs/config.md"
    )
    assert (ROOT / "docs" / "plugins.md").read_text() == plugins_reference(), "run: make docs-ref"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """The throwaway package, built and installed (pip, wheel, entry points) into a target folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


def _env(site: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow  # pip installs the example package; child processes see it
def test_installed_package_is_discovered_listed_and_used(
    installed_example, tiny_config, write_yaml, tmp_path
):
    env = _env(installed_example)
    proc = subprocess.run(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    rows = {r["name"]: r for r in listing["components"]}
    assert rows["example_l1"]["source"] == "installed package"
    assert (rows["example_l1"]["distribution"], rows["example_l1"]["version"]) == (
        "ptyrad-example-plugin",
        "0.3.1",
    )
    assert rows["gaussian"]["source"] == "built-in"
    # the broken entry point is reported, not fatal
    assert any("example_broken" in e and "broken on purpose" in e for e in listing["load_errors"])

    cfg = tiny_config(loss=[{"name": "example_l1", "weight": 2.0}])
    path = write_yaml(cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "run", str(path), "-q"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    out = Path(cfg["output"]["dir"])
    result = read_result(out / "result.h5")
    assert len(result["history/loss_terms/example_l1"]) == 2
    assert any(p["name"] == "example_l1" and p["version"] == "0.3.1" for p in result["attrs"]["plugins"])
    assert (out / "example_plugin_saw_end.txt").read_text() == "2"

    # autoload off: the third-party loss is gone; the broken plugin is not loaded at all, so no error names it
    proc = subprocess.run(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "run", str(path), "-q"],
        capture_output=True,
        text=True,
        env={**env, "PTYRAD_CORE_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert proc.returncode == 2 and "unknown loss 'example_l1'" in proc.stderr


@pytest.mark.slow  # the installed example package, in a child process
def test_selecting_a_component_of_a_broken_plugin_names_the_load_error(
    installed_example, tiny_config, write_yaml
):
    cfg = tiny_config(loss=[{"name": "broken_loss"}])
    proc = subprocess.run(
        [sys.executable, "-m", "ptyrad_core.apps.cli", "run", str(write_yaml(cfg)), "-q"],
        capture_output=True,
        text=True,
        env=_env(installed_example),
    )
    assert proc.returncode == 2
    assert "unknown loss 'broken_loss'" in proc.stderr and "example_broken" in proc.stderr


LOCAL_PLUGIN = '''
import torch
from pydantic import BaseModel, ConfigDict, Field
from ptyrad_core import hookimpl

class ClampAmplitude:
    """Clamp the object amplitude to [low, high]."""
    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        low: float = Field(0.0, description="lower bound")
        high: float = Field(1.0, description="upper bound")
    calls = []
    def __init__(self, options):
        self.options = options
    def apply(self, model, iteration):
        ClampAmplitude.calls.append(iteration)
        model.object_amplitude.clamp_(self.options.low, self.options.high)

@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("clamp_amplitude", ClampAmplitude)
'''


def test_local_py_file_from_the_config_is_discovered_listed_and_used(tiny_config, tmp_path, cli):
    (tmp_path / "my_constraint.py").write_text(LOCAL_PLUGIN)
    cfg = tiny_config(
        plugins={"modules": ["my_constraint.py"]},
        constraints=[{"name": "clamp_amplitude", "options": {"high": 0.9}, "start_iter": 2, "step": 1}],
    )
    cfg["recon"]["iterations"] = 3
    config = build_config(cfg, base_dir=tmp_path)
    run = Reconstruction(config, quiet=True)
    assert run.pm.info["my_constraint"].source == "config file"
    run.run()
    constraint = run.constraints[0][1]
    assert type(constraint).calls == [2, 3]
    assert float(run.model.object_amplitude.detach().max()) <= 0.9

    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = cli("plugins", path, "--json")  # in this process
    rows = {r["name"]: r for r in json.loads(proc.out)["components"]}
    assert rows["clamp_amplitude"]["source"] == "config file"


def test_a_config_can_disable_plugins_by_name(tiny_config):
    cfg = tiny_config(plugins={"disable": ["loss_gaussian"]})
    with pytest.raises(ConfigError, match="unknown loss 'gaussian'"):
        Reconstruction(build_config(cfg), quiet=True)


def test_misspelled_hook_is_caught():
    class Typo:
        @hookimpl
        def ptyrad_register_los_terms(self, registry):
            pass

    with pytest.raises(PluginError, match="ptyrad_register_los_terms"):
        get_plugin_manager(autoload=False, inline=[Typo()])


def test_component_without_options_model_is_rejected():
    class NoOptions:
        @hookimpl
        def ptyrad_register_loss_terms(self, registry):
            registry.add("bare", torch.nn.Identity)

    with pytest.raises(PluginError, match="'bare'.*needs a nested pydantic 'Options' model"):
        get_plugin_manager(autoload=False, inline=[NoOptions()])


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FailingLoss(torch.nn.Module):
    Options = _Opts

    def __init__(self, options):
        super().__init__()

    def forward(self, pred, meas, batch):
        raise RuntimeError("boom in the loss")


class FailingPlugin:
    @hookimpl
    def ptyrad_register_loss_terms(self, registry):
        registry.add("failing", FailingLoss)

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        if iteration == 1:
            raise ValueError("boom in a lifecycle hook")


def test_a_plugin_that_raises_is_named(tiny_config, register_inline, tmp_path):
    pm = register_inline(FailingPlugin())
    run = Reconstruction(
        build_config(tiny_config(loss=[{"name": "gaussian"}, {"name": "failing"}])), pm=pm, quiet=True
    )
    with pytest.raises(
        PluginError, match=r"loss\[1\] 'failing' raised at iteration 1: RuntimeError: boom in the loss"
    ):
        run.run()

    run = Reconstruction(build_config(tiny_config()), pm=register_inline(FailingPlugin()), quiet=True)
    with pytest.raises(
        PluginError, match=r"plugin 'FailingPlugin' raised in ptyrad_on_iter_end: ValueError: boom"
    ):
        run.run()


def test_registering_a_name_twice_is_an_error():
    class Dup:
        @hookimpl
        def ptyrad_register_loss_terms(self, registry):
            from ptyrad_core_plugins.losses.gaussian import GaussianLoss

            registry.add("gaussian", GaussianLoss)

    with pytest.raises(PluginError, match="loss 'gaussian' is registered twice"):
        get_plugin_manager(autoload=False, inline=[Dup()])

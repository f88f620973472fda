"""The public plugin SDK (``ptyrad_core.plugin``) and the family bases behind it."""

from __future__ import annotations

import warnings

import pytest
import torch

from ptyrad_core import plugin
from ptyrad_core.kernel import components
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import PluginError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.kernel.preprocess import PreprocessContext
from ptyrad_core.kernel.registry import Registry
from ptyrad_core.setup.preprocess import run_pipeline


def test_the_sdk_exports_what_a_plugin_author_needs():
    for name in plugin.__all__:
        assert getattr(plugin, name) is not None, name
    bases = [
        plugin.LossTerm,
        plugin.Constraint,
        plugin.ForwardExtension,
        plugin.DetectorModel,
        plugin.Loader,
        plugin.Preprocessor,
        plugin.ResultReader,
    ]
    assert {b.__module__ for b in bases} == {"ptyrad_core.kernel.components"}


def test_old_module_paths_of_the_bases_still_import():
    from ptyrad_core.kernel.data import Loader
    from ptyrad_core.kernel.detector import DetectorModel, Grid
    from ptyrad_core.kernel.forward import ForwardExtension
    from ptyrad_core.kernel.preprocess import Preprocessor
    from ptyrad_core.kernel.prior import ResultReader

    assert (Loader, DetectorModel, ForwardExtension, Preprocessor, ResultReader, Grid) == (
        plugin.Loader,
        plugin.DetectorModel,
        plugin.ForwardExtension,
        plugin.Preprocessor,
        plugin.ResultReader,
        plugin.Grid,
    )


def test_the_bases_store_the_options_and_give_setup_a_no_op(tmp_path):
    class Opts(plugin.PluginOptions):
        k: int = plugin.Field(1, description="a number")

    o = Opts()
    for base in (
        plugin.LossTerm,
        plugin.Constraint,
        plugin.ForwardExtension,
        plugin.DetectorModel,
        plugin.Preprocessor,
    ):
        assert base(o).options is o
    for base in (plugin.Constraint, plugin.LossTerm, plugin.ForwardExtension, plugin.DetectorModel):
        assert base(o).setup(None) is None
    for base in (plugin.Loader, plugin.ResultReader):
        c = base(str(tmp_path), o)
        assert c.options is o and c.path == tmp_path


def test_the_minimal_constraint_is_options_and_enforce():
    class Clip(plugin.Constraint):
        class Options(plugin.PluginOptions):
            high: float = plugin.Field(1.0, description="Largest value kept.")

        def enforce(self, model, iteration):
            model.x.clamp_(max=self.options.high)

    class Model:
        x = torch.tensor([0.5, 2.0])

    registry = Registry("constraint")
    registry.add("clip", Clip)
    c = registry.get("clip").cls(Clip.Options(high=0.75))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        components.enforce(c, Model, 1)
    assert Model.x.tolist() == [0.5, 0.75]


def test_a_constraint_that_defines_only_apply_still_runs_with_one_deprecation_warning():
    class Old:  # a third-party class from before the rename, not subclassing the base
        class Options(plugin.PluginOptions):
            pass

        calls: list[int] = []

        def __init__(self, options):
            self.options = options

        def apply(self, model, iteration):
            self.calls.append(iteration)

    registry = Registry("constraint")
    registry.add("old", Old)  # accepted
    c = Old(Old.Options())
    with pytest.warns(
        DeprecationWarning, match=r"test_components\..*Old defines apply\(\); rename it to enforce\(\)"
    ):
        components.enforce(c, None, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per class: no second warning
        components.enforce(c, None, 2)
    assert Old.calls == [1, 2]


def test_a_preprocessor_that_defines_only_apply_still_runs_with_a_deprecation_warning():
    class OldStep(plugin.Preprocessor):
        def apply(self, measurements, context):
            measurements.map(lambda block: block * 2)

    meas = Measurements(torch.ones(4, 3, 3).numpy(), source="mem")
    with pytest.warns(DeprecationWarning, match=r"OldStep defines apply\(\); rename it to transform\(\)"):
        run_pipeline(
            meas, [("data.preprocess[0]", OldStep(OldStep.Options()))], PreprocessContext(scan_shape=(2, 2))
        )
    assert float(meas.array.max()) == 2.0


@pytest.mark.parametrize(
    "family, expected",
    [
        ("constraint", "enforce()"),
        ("preprocess", "transform()"),
        ("loader", "load()"),
        ("result_reader", "read()"),
        ("loss", "forward()"),
    ],
)
def test_registering_a_class_without_its_family_method_is_a_one_line_error(family, expected):
    class Empty:
        class Options(plugin.PluginOptions):
            pass

    class Plugin:
        pass

    hook = {
        "constraint": "constraints",
        "preprocess": "preprocessors",
        "loader": "loaders",
        "result_reader": "result_readers",
        "loss": "loss_terms",
    }[family]

    def register(self, registry):
        registry.add("empty", Empty)

    setattr(Plugin, f"ptyrad_register_{hook}", plugin.hookimpl(register))
    with pytest.raises(PluginError) as info:
        get_plugin_manager(autoload=False, inline=[Plugin()])
    message = str(info.value)
    assert "\n" not in message
    assert f"plugin 'Plugin': {family} 'empty'" in message and f"defines no {expected} method" in message


def test_a_subclass_that_leaves_the_abstract_method_is_refused():
    class Lazy(plugin.Loader):
        pass

    registry = Registry("loader")
    with pytest.raises(PluginError, match=r"loader 'lazy' \(.*Lazy\) defines no load\(\) method"):
        registry.add("lazy", Lazy)

"""Everything a plugin author imports: ``from ptyrad_core.plugin import ...``.

The one public module for plugins (as ``pytest`` is for pytest's plugins, over ``_pytest``):
the hook marker, the options base and ``Field``, the base class of each of the seven families,
the objects the kernel hands to components, the errors to raise and the tensor operations
plugins share. Anything not listed in ``__all__`` is internal and may move.

A whole constraint plugin::

    from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl


    class ClipPhase(Constraint):
        class Options(PluginOptions):
            high: float = Field(1.0, description="Largest phase kept (rad).")

        def enforce(self, model, iteration):
            model.object_phase.clamp_(max=self.options.high)


    @hookimpl
    def ptyrad_register_constraints(registry):
        registry.add("clip_phase", ClipPhase)
"""

from __future__ import annotations

from pydantic import Field

from ptyrad_core.kernel import ops
from ptyrad_core.kernel.components import (
    Constraint,
    DetectorModel,
    ForwardExtension,
    Grid,
    Loader,
    LossTerm,
    PluginOptions,
    Preprocessor,
    ResultReader,
)
from ptyrad_core.kernel.data import Measurements, read_error
from ptyrad_core.kernel.errors import ConfigError, DataError, PluginError, PtyradError
from ptyrad_core.kernel.hookspecs import hookimpl
from ptyrad_core.kernel.model import Batch
from ptyrad_core.kernel.preprocess import PreprocessContext
from ptyrad_core.kernel.prior import PriorResult
from ptyrad_core.kernel.registry import Registry

__all__ = [
    # hooks and options
    "hookimpl", "PluginOptions", "Field",
    # the seven family bases
    "LossTerm", "Constraint", "ForwardExtension", "DetectorModel", "Loader", "Preprocessor", "ResultReader",
    # what the kernel hands to components and takes back
    "Batch", "Measurements", "PriorResult", "PreprocessContext", "Registry", "Grid",
    # a failed read of a file's array as a one-line DataError (naming a damaged HDF5 chunk)
    "read_error",
    # errors to raise
    "PtyradError", "ConfigError", "DataError", "PluginError",
    # tensor operations plugins share
    "ops",
]

"""Everything a plugin author imports: ``from ptyrad_core.plugin import ...``.

The one public module for plugins (as ``pytest`` is for pytest's plugins, over ``_pytest``):
the hook marker, the options base and ``Field``, the base class of each of the seven families,
the objects the kernel hands to components, the errors to raise, the tensor operations plugins
share, and the few services of the layers above that plugins use (reading ptyrad_core's result
files, the rule for writing an output file). Anything not listed in ``__all__`` is internal and
may move.

A facade, not a layer: it re-exports names from any layer of ``ptyrad_core`` under names a
plugin author understands, and no module of ``ptyrad_core`` imports it (the kernel loads plugins
by entry point, so importing a plugin never makes the kernel depend on the layers above).

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

# services of the layers above, under plugin authors' names:
# RESULT_FORMAT: the ``format`` root attribute of the result file every run writes (docs/results.md);
# read_result(path) -> dict: a result file's datasets by HDF5 path, plus ``"attrs"``;
# check_output_file(path, what, *, inputs, overwrite, is_previous_output, kind): refuse a file the
#   run reads, a folder or a foreign existing file, then create its folder and prove it writable;
# check_output_file_dry(...): the same judgement, creating nothing (``validate``): "new",
#   "replace" or "new folder";
# OUTPUT_MARK: the root attribute naming what wrote an HDF5 file ptyrad_core wrote; recognising a
#   previous output: hdf5_marked(path, kind), npy_matches(path, shape) (float32, C order, that
#   shape), tiff_software(path) (the first page's Software tag).
from ptyrad_core.engine.outputs import check_new_file as check_output_file
from ptyrad_core.engine.results import FORMAT as RESULT_FORMAT
from ptyrad_core.engine.results import read_result
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
from ptyrad_core.kernel.errors import ConfigError, DataError, PluginError, PtyradError, one_line
from ptyrad_core.kernel.hookspecs import hookimpl
from ptyrad_core.kernel.model import Batch
from ptyrad_core.kernel.preprocess import PreprocessContext
from ptyrad_core.kernel.prior import PriorResult
from ptyrad_core.kernel.registry import Registry
from ptyrad_core.setup.readonly import HDF5_MARK as OUTPUT_MARK
from ptyrad_core.setup.readonly import check_new_file_dry as check_output_file_dry
from ptyrad_core.setup.readonly import hdf5_marked, npy_matches, tiff_software

__all__ = [
    # hooks and options
    "hookimpl",
    "PluginOptions",
    "Field",
    # the seven family bases
    "LossTerm",
    "Constraint",
    "ForwardExtension",
    "DetectorModel",
    "Loader",
    "Preprocessor",
    "ResultReader",
    # what the kernel hands to components and takes back
    "Batch",
    "Measurements",
    "PriorResult",
    "PreprocessContext",
    "Registry",
    "Grid",
    # a failed read of a file's array as a one-line DataError (naming a damaged HDF5 chunk)
    "read_error",
    # errors to raise
    "PtyradError",
    "ConfigError",
    "DataError",
    "PluginError",
    # a library's exception text on one line, for a message of one line
    "one_line",
    # tensor operations plugins share
    "ops",
    # result files and output files
    "RESULT_FORMAT",
    "read_result",
    "OUTPUT_MARK",
    "check_output_file",
    "check_output_file_dry",
    "hdf5_marked",
    "npy_matches",
    "tiff_software",
]

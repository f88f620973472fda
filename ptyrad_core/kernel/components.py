"""The base classes of the seven plugin families, and the options model every component carries.

A component is a class registered by name (``registry.add(name, cls)`` in a registration hook)
and selected by name in a config. The kernel constructs it from its validated options and calls
the one or two methods of its family; a base class below stores the options
(``self.options``), gives :meth:`setup` a no-op, and documents the method to write:

=================== ===================================== ==========================================
family              base                                  what a subclass writes
=================== ===================================== ==========================================
loss                :class:`LossTerm`                     ``forward(pred, meas, batch) -> Tensor``
constraint          :class:`Constraint`                   ``enforce(model, iteration)``
forward             :class:`ForwardExtension`             any of ``object / probe / propagator / patterns``
detector            :class:`DetectorModel`                ``forward(patterns, batch)`` and its grids
loader              :class:`Loader`                       ``load() -> Measurements``
preprocess          :class:`Preprocessor`                 ``transform(measurements, context)``
result_reader       :class:`ResultReader`                 ``read() -> PriorResult``
=================== ===================================== ==========================================

Each subclass nests ``class Options(PluginOptions)``: unknown keys are errors, and every field
carries a ``description`` (the generated docs/plugins.md and ``ptyrad-core plugins`` show it).
Plugin authors import all of this from :mod:`ptyrad_core.plugin`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

if TYPE_CHECKING:  # annotations only: those modules import this one
    from ptyrad_core.kernel.data import Measurements
    from ptyrad_core.kernel.model import Batch, PtychoModel
    from ptyrad_core.kernel.preprocess import PreprocessContext
    from ptyrad_core.kernel.prior import PriorResult

#: A detector grid: ``((Ny, Nx), dk)``, pattern shape in pixels and pixel size in 1/Angstrom.
Grid = tuple[tuple[int, int], float]


class PluginOptions(BaseModel):
    """Base of every component's ``Options``: unknown keys are errors (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")


class LossTerm(torch.nn.Module):
    """Base of loss terms (family ``loss``): ``forward(pred, meas, batch)`` returns a scalar.

    ``pred`` and ``meas`` are ``(B, Ky, Kx)`` float intensities, zero frequency centred;
    ``batch`` is the :class:`~ptyrad_core.kernel.model.Batch`. The total loss is the sum of
    ``weight * term`` over the config's ``loss`` list. A term that does not read ``pred`` or
    ``meas`` (a prior on the object, as sparsity) sets ``reads_patterns = False``: the held-out
    loss then skips it (its value cancels there). A term whose value depends on the pixel values
    alone, not on where they lie in the pattern (a mean of a per-pixel misfit), sets
    ``pixelwise = True``: the held-out loss (with ``recon.validation.score: loss``, or the term
    listed there) then evaluates it on the held-out pixels alone, as ``(B, 1, K)`` tensors, at a
    fraction of the cost; any other term is evaluated on whole patterns
    (:mod:`ptyrad_core.engine.heldout`).
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    reads_patterns: ClassVar[bool] = True
    pixelwise: ClassVar[bool] = False

    def __init__(self, options: PluginOptions):
        super().__init__()
        self.options = options

    def setup(self, model: PtychoModel) -> None:
        """Called once with the model before the first iteration (default: nothing)."""

    def forward(self, pred: Tensor, meas: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward(pred, meas, batch)")


class Constraint:
    """Base of constraints (family ``constraint``): ``enforce(model, iteration)`` changes the
    model's tensors in place (under ``torch.no_grad``) after the iterations its schedule
    (``start_iter / step / end_iter``) selects."""

    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions):
        self.options = options

    def setup(self, model: PtychoModel) -> None:
        """Called once with the model before the first iteration (default: nothing)."""

    def enforce(self, model: PtychoModel, iteration: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define enforce(model, iteration)")


class ForwardExtension(torch.nn.Module):
    """Base of forward-model extensions (family ``forward``).

    Override any of :meth:`object`, :meth:`probe`, :meth:`propagator` and :meth:`patterns`; the
    model calls only the overridden ones, in the order of the config's ``forward`` list. Each
    receives and returns tensors inside the autograd graph, so everything must be
    differentiable. Constructed as ``cls(options)``; :meth:`setup` runs once the model exists.
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    HOOKS: ClassVar[tuple[str, ...]] = ("object", "probe", "propagator", "patterns")

    def __init__(self, options: PluginOptions):
        super().__init__()
        self.options = options

    def setup(self, model: PtychoModel) -> None:
        """Called once with the model before the first iteration (default: nothing)."""

    def object(self, amplitude: Tensor, phase: Tensor, model: PtychoModel) -> tuple[Tensor, Tensor]:
        """Transform the whole object, amplitude and phase ``(omode, Nz, NY, NX)`` (phase in rad)."""
        return amplitude, phase

    def probe(self, probe: Tensor, model: PtychoModel) -> Tensor:
        """Transform the probe modes ``(pmode, Ny, Nx)`` complex; may change ``pmode``."""
        return probe

    def propagator(self, propagator: Tensor, batch: Batch, model: PtychoModel) -> Tensor:
        """Transform the slice propagators ``(T, Ny, Nx)`` complex; may return ``(B, Ny, Nx)``."""
        return propagator

    def patterns(self, patterns: Tensor, batch: Batch, model: PtychoModel) -> Tensor:
        """Transform the far-field intensities ``(B, Ky, Kx)`` before the detector model."""
        return patterns

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this class overrides ``hook`` (one of :attr:`HOOKS`)."""
        return getattr(cls, hook) is not getattr(ForwardExtension, hook)


class DetectorModel(torch.nn.Module):
    """Base of detector stages (family ``detector``): predicted intensities to what is recorded.

    Constructed as ``cls(options)``. :meth:`forward` maps ``(B, Ny, Nx)`` predicted
    intensities (zero frequency centred) to the detector's ``(B, My, Mx)`` and must be
    differentiable; :meth:`measurements` may transform each batch of measured patterns;
    :meth:`measurement_grid` and :meth:`simulation_grid` say how the stage changes the grid
    (:data:`Grid`: ``((Ny, Nx), dk)`` with ``dk`` in 1/Angstrom). See
    :mod:`ptyrad_core.kernel.detector` for how the chain sets the simulation grid.
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions):
        super().__init__()
        self.options = options

    def measurement_grid(self, shape: tuple[int, int], dk: float) -> Grid:
        """The grid the measurements are on after :meth:`measurements` (default: unchanged)."""
        return shape, dk

    def simulation_grid(self, shape: tuple[int, int], dk: float) -> Grid:
        """The grid this stage's input must have to produce ``shape`` at ``dk`` (default: the same)."""
        return shape, dk

    def prepare(self, measurements: Measurements) -> None:
        """Called once with the loaded measurements, before the model exists (default: nothing)."""

    def setup(self, model: PtychoModel) -> None:
        """Called once with the model before the first iteration (default: nothing)."""

    def measurements(self, meas: Tensor, batch: Batch) -> Tensor:
        """Transform a batch of measured patterns ``(B, My, Mx)`` (default: unchanged)."""
        return meas

    def forward(self, patterns: Tensor, batch: Batch) -> Tensor:
        """Map predicted intensities ``(B, Ny, Nx)`` to the detector's ``(B, My, Mx)``."""
        return patterns

    @classmethod
    def transforms_measurements(cls) -> bool:
        """Whether this class overrides :meth:`measurements`."""
        return cls.measurements is not DetectorModel.measurements


class Loader:
    """Base of data loaders (family ``loader``): ``load()`` returns the :class:`Measurements`.

    Constructed as ``cls(path, options)`` with ``path`` an existing :class:`pathlib.Path`
    (``self.path``). ``load`` wraps the file's array *without reading it* when the format allows
    (``h5py`` / ``zarr`` datasets, ``np.load(..., mmap_mode="r")``, ``np.memmap``): the kernel
    decides from ``data.memory_budget_MB`` whether to read it whole or stream it per batch.
    Open files or stores the array needs go into the Measurements' ``resources`` (closed once the
    data are in memory or no longer needed). Bad files raise :class:`DataError` in one line.
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, path: Path, options: PluginOptions):
        self.path = Path(path)
        self.options = options

    #: file suffixes (lower case, with the dot) whose arrays :meth:`read_array` reads; the kernel
    #: picks the loader of an initial array file (probe, object, positions, tilts) by them
    array_suffixes: ClassVar[tuple[str, ...]] = ()

    def load(self) -> Measurements:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define load()")

    @classmethod
    def read_array(cls, path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
        """One whole array of any shape and dtype (complex included) from ``path`` and the key it
        was read from (``key``, or the one the file's only array has; ``None`` for keyless files).

        For initial values read from files (``model.probe``, ``model.object``, ``scan``,
        ``model.tilts`` with ``source: file``). Errors are one-line DataErrors naming the file
        and key; the caller adds the YAML path. A loader that reads no such files leaves this.
        """
        raise NotImplementedError(f"{cls.__name__} reads no initial arrays")


class Preprocessor:
    """Base of preprocessing steps (family ``preprocess``): ``transform(measurements, context)``.

    Constructed as ``cls(options)``. :meth:`transform` changes the measurements in place through
    their API (``map`` for per-pattern transforms, ``select`` for scan selections, ``set_array``
    for whole-array layout changes) and may update ``context.scan_shape``; see
    :mod:`ptyrad_core.kernel.preprocess`.
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions
    #: True for steps that only rearrange axes (permute, reshape): the calibration refers to the
    #: patterns after them.
    layout: ClassVar[bool] = False

    def __init__(self, options: PluginOptions):
        self.options = options

    def transform(self, measurements: Measurements, context: PreprocessContext) -> None:  # pragma: no cover
        """Change ``measurements`` in place; may update ``context.scan_shape``."""
        raise NotImplementedError(f"{type(self).__name__} must define transform(measurements, context)")

    def sampling(self, shape_before: tuple[int, int], shape_after: tuple[int, int], dk: float) -> float:
        """The detector pixel (1/Angstrom) after this step (default: unchanged, e.g. crops and pads)."""
        return dk

    def output_targets(self, context: PreprocessContext) -> list[tuple[str, Path, Path | None]]:
        """What this step will write, as far as it is known before any data are read:
        ``(option, folder, file)`` triples, ``file`` ``None`` where its name depends on the data
        (a shape in the name). The run checks them at second zero (the folder created and proved
        writable, the file not one the run reads nor a folder); the step checks its target in
        full when it runs. Default: nothing (a step that writes no file)."""
        return []


class ResultReader:
    """Base of result readers (family ``result_reader``): ``read()`` returns a :class:`PriorResult`.

    Constructed as ``cls(path, options)`` with ``path`` an existing :class:`pathlib.Path`
    (``self.path``); the arrays are returned in ptyrad_core's conventions (docs/conventions.md).
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, path: Path, options: PluginOptions):
        self.path = Path(path)
        self.options = options

    def read(self) -> PriorResult:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define read()")


# --------------------------------------------------------------------------------------------
# the method each family must write, and the old verbs still accepted
# --------------------------------------------------------------------------------------------

#: family -> (base, the methods of which a component must define one, the old verb or None).
FAMILY_METHODS: dict[str, tuple[type, tuple[str, ...], str | None]] = {
    "loss": (LossTerm, ("forward",), None),
    "constraint": (Constraint, ("enforce",), "apply"),
    "forward": (ForwardExtension, ForwardExtension.HOOKS, None),
    "detector": (DetectorModel, ("forward", "measurements"), None),
    "loader": (Loader, ("load",), None),
    "preprocess": (Preprocessor, ("transform",), "apply"),
    "result_reader": (ResultReader, ("read",), None),
}

_ABSTRACT = {
    (LossTerm, "forward"),
    (Constraint, "enforce"),
    (Loader, "load"),
    (Preprocessor, "transform"),
    (ResultReader, "read"),
}


def _defines(cls: type, method: str) -> bool:
    """Whether ``cls`` has ``method``, other than the abstract stub of a base above."""
    if not callable(getattr(cls, method, None)):
        return False
    if method == "forward" and getattr(cls, "forward", None) is getattr(torch.nn.Module, "forward", None):
        return False  # torch.nn.Module's placeholder
    return not any(getattr(cls, method) is getattr(base, method) for base, m in _ABSTRACT if m == method)


def missing_method(family: str, cls: type) -> str | None:
    """What ``cls`` lacks to be a component of ``family`` (``None``: nothing)."""
    if family not in FAMILY_METHODS:
        return None
    _, methods, old = FAMILY_METHODS[family]
    if any(_defines(cls, m) for m in methods) or (old is not None and _defines(cls, old)):
        return None
    return " or ".join(f"{m}()" for m in methods)


_warned: set[tuple[type, str]] = set()


def _verb(component, new: str, old: str):
    cls = type(component)
    if _defines(cls, new) or not _defines(cls, old):
        return getattr(component, new)
    if (cls, old) not in _warned:  # once per class: the kernel calls it every iteration
        _warned.add((cls, old))
        warnings.warn(
            f"{cls.__module__}.{cls.__qualname__} defines {old}(); rename it to {new}() "
            f"({old} is the old name and will stop working)",
            DeprecationWarning,
            stacklevel=3,
        )
    return getattr(component, old)


def enforce(constraint, model: PtychoModel, iteration: int) -> None:
    """Run ``constraint.enforce(model, iteration)``; a class that still defines only the old
    ``apply`` is called through it, with a DeprecationWarning naming the class once."""
    _verb(constraint, "enforce", "apply")(model, iteration)


def transform(step, measurements: Measurements, context: PreprocessContext) -> None:
    """Run ``step.transform(measurements, context)``; a class that still defines only the old
    ``apply`` is called through it, with a DeprecationWarning naming the class once."""
    _verb(step, "transform", "apply")(measurements, context)

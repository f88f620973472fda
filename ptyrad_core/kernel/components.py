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

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

if TYPE_CHECKING:  # annotations only: those modules import this one
    from ptyrad_core.kernel.data import Measurements
    from ptyrad_core.kernel.model import Batch, PtychoModel
    from ptyrad_core.kernel.preprocess import PreprocessContext
    from ptyrad_core.kernel.prior import PriorResult

Grid = tuple[tuple[int, int], float]  # ((Ny, Nx), dk in 1/A)


class PluginOptions(BaseModel):
    """Base of every component's ``Options``: unknown keys are errors (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")


class LossTerm(torch.nn.Module):
    """Base of loss terms (family ``loss``): ``forward(pred, meas, batch)`` returns a scalar.

    ``pred`` and ``meas`` are ``(B, Ky, Kx)`` float intensities, zero frequency centred;
    ``batch`` is the :class:`~ptyrad_core.kernel.model.Batch`. The total loss is the sum of
    ``weight * term`` over the config's ``loss`` list.
    """

    Options: ClassVar[type[PluginOptions]] = PluginOptions

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

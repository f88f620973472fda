"""Plugins that fail on purpose, loaded by fault-injection configs through ``plugins.modules``.

Each takes the iteration at which it misbehaves as an option, so a case can let one iteration
complete (and be saved) before the fault.
"""

from __future__ import annotations

import os

import torch
from pydantic import BaseModel, ConfigDict, Field

from ptyrad_core import hookimpl


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: int = Field(2, description="Iteration at which the fault happens.")


class NaNConstraint:
    """Writes NaN into the object phase at iteration ``at``."""

    class Options(_Options):
        pass

    def __init__(self, options):
        self.options = options

    def apply(self, model, iteration):
        if iteration == self.options.at:
            model.object_phase[0, 0, 0, 0] = float("nan")


class RaisingLoss(torch.nn.Module):
    """A loss term that raises ``kind`` at iteration ``at`` (zero otherwise)."""

    class Options(_Options):
        kind: str = Field("runtime", description="runtime | memory | cuda_oom | keyboard")

    def __init__(self, options):
        super().__init__()
        self.options = options

    def forward(self, pred, meas, batch):
        if batch.iteration == self.options.at:
            kind = self.options.kind
            if kind == "memory":
                raise MemoryError("cannot allocate 12.0 GiB")
            if kind == "cuda_oom":
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            if kind == "keyboard":
                raise KeyboardInterrupt
            raise RuntimeError("the fault plugin failed on purpose")
        return pred.mean() * 0


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("nan_constraint", NaNConstraint)


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("raising_loss", RaisingLoss)


@hookimpl
def ptyrad_on_iter_end(run, iteration, metrics):
    """An observer that raises at the iteration named by PTYRAD_FAULT_OBSERVER_AT (unset: never)."""
    at = os.environ.get("PTYRAD_FAULT_OBSERVER_AT")
    if at is not None and iteration == int(at):
        raise ValueError("the fault observer failed on purpose")

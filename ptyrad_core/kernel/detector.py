"""Detector models: from far-field intensities to what the detector records.

The config's ``detector`` list is a chain of stages, applied in order to the predicted
patterns; a stage may also transform the measured patterns of each batch (on-the-fly padding or
resampling) and may change the grid the forward model simulates on. The kernel derives that
grid from the chain, so no stage is known to it by name:

1. Start from the measured patterns' shape ``(My, Mx)`` and detector pixel ``dk``
   (1/Angstrom). Each stage in order maps them with :meth:`DetectorModel.measurement_grid`:
   the grid the (transformed) measurements end up on, which the predictions must match.
2. From that grid, each stage in *reverse* order gives :meth:`DetectorModel.simulation_grid`:
   the grid its input must have. The result is the simulation grid ``(Ny, Nx)``, ``dk_sim``;
   the real-space pixel is ``dx = 1 / (Ny * dk_sim)``.

Each stage is a ``torch.nn.Module`` with a nested pydantic ``Options`` model, constructed as
``cls(options)``. Everything in :meth:`forward` must be differentiable.
"""

from __future__ import annotations

# the family base lives in components.py with the other six; imported here for old imports
from ptyrad_core.kernel.components import DetectorModel, Grid  # noqa: F401


def compare_grid(stages, shape: tuple[int, int], dk: float) -> Grid:
    """The grid on which predictions and measurements are compared."""
    for stage in stages:
        shape, dk = stage.measurement_grid(tuple(shape), dk)
    return (shape[0], shape[1]), dk


def simulation_grid(stages, shape: tuple[int, int], dk: float) -> Grid:
    """The grid the forward model simulates on, for a comparison grid ``(shape, dk)``."""
    for stage in reversed(list(stages)):
        shape, dk = stage.simulation_grid(tuple(shape), dk)
    return (shape[0], shape[1]), dk

"""Pieces shared by several built-in plugins (not a plugin itself: no entry point)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import field_validator

from ptyrad_core.plugin import Field, PluginOptions

ObjType = Literal["amplitude", "phase", "both"]


#: the built-in plugins' options base: the public one (unknown keys are errors)
Options = PluginOptions


def obj_type_field(default: ObjType = "both"):
    return Field(default, description="Which part of the object it acts on: 'amplitude', 'phase' or 'both'.")


def transform_object(model, obj_type: ObjType, fn) -> None:
    """Replace the object amplitude and/or phase ``x`` by ``fn(x, part)`` in place."""
    if obj_type in ("amplitude", "both"):
        model.object_amplitude.copy_(fn(model.object_amplitude, "amplitude"))
    if obj_type in ("phase", "both"):
        model.object_phase.copy_(fn(model.object_phase, "phase"))


def dp_pow_field(default: float):
    return Field(default, gt=0, le=2, description="Power applied to the patterns before comparing them.")


def measured_power(meas: torch.Tensor, p: float) -> torch.Tensor:
    """``meas ** p`` for measured counts; for ``p = 0.5`` with ``0 ** 0.5`` given as
    ``sqrt(tiny)`` (``tiny``: the smallest normal number of the dtype; 1.1e-19 in float32).

    torch's vectorised square root on x86 CPUs takes several times as long on exact zeros as on
    other numbers (docs/benchmarks.md, "What made the difference"), and counted data are mostly
    zeros; other powers take the same time on zeros as elsewhere and are computed as they are. Adding
    ``tiny`` leaves every other value as it is (it is far below half an ulp of any count), and
    negative values still give NaN.
    """
    if p == 1:
        return meas
    if p == 0.5 and meas.is_floating_point():
        return meas.add(torch.finfo(meas.dtype).tiny).sqrt_()
    return meas.pow(p)


def odd_taps(v: int | None) -> int | None:
    """A kernel's number of taps must be odd: an even kernel has no centre and moves what it blurs
    by half a step at every application (a constraint applies it every iteration)."""
    if v is not None and v % 2 == 0:
        raise ValueError(f"kernel_size must be odd (a centred kernel), got {v}")
    return v


class OddKernelOptions(PluginOptions):
    """Options whose ``kernel_size`` (declared by the subclass) must be odd (:func:`odd_taps`)."""

    @field_validator("kernel_size", check_fields=False)
    @classmethod
    def _odd(cls, v):
        return odd_taps(v)


class GaussianBlurOptions(OddKernelOptions):
    """A Gaussian blur: ``std`` in pixels and an odd number of taps (default as PtyRAD's detector blur)."""

    std: float = Field(gt=0, description="Standard deviation of the Gaussian in pixels.")
    kernel_size: int | None = Field(
        None, ge=1, description="Odd number of kernel taps; null = max(5, 2 round(3 std) + 1)."
    )

    def taps(self) -> int:
        return self.kernel_size or max(5, 2 * round(3 * self.std) + 1)

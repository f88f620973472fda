"""Lateral DCT thresholding of the object: PtyRAD's ``kr_thresh``.

    X = DCT_(y,x)[x];  keep the fraction ``thresh`` of coefficients of largest |X| (over the whole
    object), zero the rest;  x' = IDCT_(y,x)[X]

favours objects that are sparse in lateral frequency (amorphous or low-dose specimens; typical
``thresh`` 0.05 - 0.2). It also removes defects and strain from crystals: use it early, or not
at all for them. The DCT here is orthonormal; PtyRAD's unnormalised one weights the zero-order
row and column by sqrt(2) relative to it, which can change which of the smallest kept
coefficients survive.
"""

from __future__ import annotations

import torch

from ptyrad_core.plugin import Constraint, Field, PluginOptions, hookimpl, ops

from .._common import ObjType, obj_type_field, transform_object


def dct_threshold(x: torch.Tensor, keep: float) -> torch.Tensor:
    coeffs = ops.dct2(x)
    flat = coeffs.abs().reshape(-1)
    k = max(1, int(keep * flat.numel()))
    kth = torch.kthvalue(flat, flat.numel() - k + 1).values
    return ops.idct2(coeffs * (coeffs.abs() >= kth))


class KrThresh(Constraint):
    """Keep the strongest lateral DCT coefficients of amplitude and/or phase."""

    class Options(PluginOptions):
        obj_type: ObjType = obj_type_field()
        thresh: float = Field(0.05, gt=0, le=1, description="Fraction of DCT coefficients kept.")

    def enforce(self, model, iteration):
        transform_object(model, self.options.obj_type, lambda x, _: dct_threshold(x, self.options.thresh))


@hookimpl
def ptyrad_register_constraints(registry):
    registry.add("kr_thresh", KrThresh)

"""Similarity of the object modes: PtyRAD's ``loss_simlar``.

    L = sum_parts mean_{j,z,y,x} std_n( w_n * S[x_n](j, z, y, x) )

where ``x`` is the amplitude and/or phase under the batch's windows, ``S`` an optional lateral
Gaussian blur (``blur_std`` pixels, 5-pixel kernel) followed by an optional area downsampling by
``scale_factor`` (z, y, x), ``w_n`` the occupancies and ``std_n`` the standard deviation over
object modes. It keeps the modes alike at coarse scale, so that they differ only in detail
(e.g. thermal or structural variation). Needs two or more object modes.
"""

from __future__ import annotations

import torch.nn.functional as F

from ptyrad_core.plugin import ConfigError, Field, LossTerm, PluginOptions, hookimpl, ops

from .._common import ObjType, obj_type_field


class SimilarityLoss(LossTerm):
    """Spread of the (blurred, downsampled) object over its modes."""

    reads_patterns = False  # a prior on the object: the held-out loss skips it

    class Options(PluginOptions):
        obj_type: ObjType = obj_type_field()
        blur_std: float = Field(
            1.0, ge=0, description="Lateral Gaussian blur before comparing, pixels; 0 = none."
        )
        scale_factor: tuple[float, float, float] = Field(
            (1.0, 1.0, 1.0), description="Area downsampling factors (z, y, x) before comparing; 1 = none."
        )

    def setup(self, model):
        if model.object_amplitude.shape[0] < 2:
            raise ConfigError("loss 'similarity' compares object modes: set model.object.modes >= 2")

    def _spread(self, x, occupancy):
        o = self.options
        if o.blur_std > 0:
            x = ops.gaussian_blur(x, o.blur_std, 5)
        if any(s != 1 for s in o.scale_factor):
            x = F.interpolate(x, scale_factor=tuple(o.scale_factor), mode="area")
        return (x * occupancy[:, None, None, None]).std(dim=1).mean()

    def forward(self, pred, meas, batch):
        amplitude, phase = batch.object_patches  # (B, omode, Nz, Ny, Nx)
        occ = batch.model.occupancy
        total = pred.new_zeros(())
        if self.options.obj_type in ("amplitude", "both"):
            total = total + self._spread(amplitude, occ)
        if self.options.obj_type in ("phase", "both"):
            total = total + self._spread(phase, occ)
        return total


@hookimpl
def ptyrad_register_loss_terms(registry):
    registry.add("similarity", SimilarityLoss)

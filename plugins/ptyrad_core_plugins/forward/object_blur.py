"""Lateral Gaussian blur of the object inside the forward model: PtyRAD's (deprecated) ``obj_preblur_std``.

Before the object patches are cut, the amplitude and/or phase of every mode and slice is
blurred laterally,

    A'(r) = sum_q G(q) A(r - q),     phi'(r) = sum_q G(q) phi(r - q),     G(q) = g(q_y) g(q_x)

with the normalised Gaussian ``g(t) = exp(-t^2 / (2 std^2)) / norm`` over ``kernel_size`` taps
(``max(5, 2 round(3 std) + 1)`` if unset, as ``psf_blur``) and reflect padding at the object
edges: the result of ``torchvision.transforms.functional.gaussian_blur``, which PtyRAD uses for
its object blurs (with a fixed ``kernel_size: 5`` in its similarity loss). ``obj_type`` selects
``amplitude``, ``phase`` or ``both``. The stored object stays unblurred: the gradient reaches it
through the blur, so the reconstruction is effectively deconvolved by ``G`` (sharper features).
PtyRAD dropped ``obj_preblur_std`` in v0.1.0b13 because that deconvolution is hard to justify
physically; treat it as a visual exploration tool. ``std`` in object pixels (``dx``), typical
0.5 - 1.
"""

from __future__ import annotations

from ptyrad_core.plugin import ForwardExtension, hookimpl, ops

from .._common import GaussianBlurOptions, ObjType, obj_type_field


class ObjectBlur(ForwardExtension):
    """Gaussian pre-blur of the object's amplitude and/or phase in the forward model."""

    class Options(GaussianBlurOptions):
        """``std`` in object pixels (typical 0.5 - 1)."""

        obj_type: ObjType = obj_type_field()

    def __init__(self, options: Options):
        super().__init__(options)
        self.size = options.taps()

    def _blur(self, x):
        return ops.gaussian_blur(x, self.options.std, self.size, padding="reflect")

    def object(self, amplitude, phase, model):
        kind = self.options.obj_type
        if kind in ("amplitude", "both"):
            amplitude = self._blur(amplitude)
        if kind in ("phase", "both"):
            phase = self._blur(phase)
        return amplitude, phase


@hookimpl
def ptyrad_register_forward_extensions(registry):
    registry.add("object_blur", ObjectBlur)

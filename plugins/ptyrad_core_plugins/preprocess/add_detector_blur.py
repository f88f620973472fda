"""Simulate a detector point-spread function: PtyRAD's ``meas_add_detector_blur``.

For simulated data: every pattern is blurred by a Gaussian over the detector pixels,

    I'(k) = sum_q g(q_y) g(q_x) I(k - q),     g(t) ~ exp(-t^2 / (2 std_px^2)),

``std_px`` in detector pixels of the patterns at this point of the chain (put it after ``pad`` /
``resample`` to blur at the final sampling, as PtyRAD orders it). Typical 0.3 - 1 px (a pixelated
direct-electron detector); 0 does nothing (as PtyRAD).

Numerics as PtyRAD's ``scipy.ndimage.gaussian_filter(meas, std_px, axes=(-2, -1))``: taps on
``|t| <= int(4 std_px + 0.5)`` (``truncate = 4``), normalised to 1, ``mode = "reflect"`` at the
pattern edges (mirrored about the outer edge, the edge pixel repeated; the total intensity is
kept). Computed with NumPy in float64, no scipy (~1e-7 relative from scipy's float32 rounding
between axes). Not the same boundary / kernel size as the ``psf_blur`` detector stage (torchvision's
kernel, which is PtyRAD's model-side detector blur). Per pattern: works on streamed data.
"""

from __future__ import annotations

from ptyrad_core.plugin import Field, PluginOptions, Preprocessor, hookimpl

from ._filters import gaussian_filter


class AddDetectorBlur(Preprocessor):
    """Gaussian blur of each pattern over ky, kx (std in detector pixels)."""

    class Options(PluginOptions):
        std_px: float = Field(
            ge=0, description="Gaussian std in detector pixels (0: nothing); typical 0.3 - 1."
        )

    def transform(self, measurements, context) -> None:
        std = self.options.std_px
        if std == 0:
            return
        measurements.as_patterns()
        measurements.map(lambda b: gaussian_filter(b, std, axes=(1, 2)))


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("add_detector_blur", AddDetectorBlur)

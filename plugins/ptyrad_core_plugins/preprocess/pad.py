"""Pad the patterns onto a larger background canvas, precomputed: PtyRAD's ``meas_pad``
(``mode: precompute``).

Every measured ``H x W`` pattern is placed on an ``npix x npix`` canvas with the same detector
pixel ``dk``, so the patterns get ``npix`` pixels and

    dx = 1 / (npix dk) = dx_meas * W / npix

(PtyRAD's ``dx *= meas_Npix / target_Npix``; dk is unchanged, so the kernel's calibration
follows without help from this step). The measured pixels sit at rows ``y1 .. y1 + H - 1`` and
columns ``x1 .. x1 + W - 1`` with ``y1 = npix // 2 - H // 2``, ``x1 = npix // 2 - W // 2``
(zero frequency at pixel ``npix // 2``; PtyRAD's ``(npix - H) // 2`` is the same except for an
even ``npix`` with an odd ``H``, where PtyRAD's is one pixel off-centre). Outside them is one
background, the same for every pattern, made from the mean pattern exactly as the on-the-fly
detector stage ``pad_measurements`` makes it (the same functions, ``background_canvas``,
``fit_background``, ``one_hot_mask`` of ``ptyrad_core_plugins.detector_pad_measurements``):

    A(k) = sqrt(mean_j I_j(k));   B = (A padded / extrapolated)^2,  B = 0 on the measured pixels

``padding``: ``constant`` (``A`` padded with ``value``, an amplitude: the background is
``value^2``), ``edge`` (``A``'s edge values continued), ``linear_ramp`` (a ramp from ``A``'s edge to
``value`` at the canvas edge), ``exp`` (``a exp(-b r)``) or ``power`` (``a r^-b``), ``r`` the distance
in pixels from the zero frequency, fitted to ``A`` on the pixels at or below its ``threshold``
percentile (the dim tails). PtyRAD fits with ``scipy.optimize.curve_fit``; the scipy-free fit of
``detector_pad_measurements`` reaches the same least-squares optimum (see its docstring).

``value`` defaults to PtyRAD's 10 (amplitude units, i.e. 100 in intensity: meant for data
normalised with ``normalize`` first, as PtyRAD orders it; set it, usually 0, otherwise).
``threshold`` 60 - 80 is typical; the background should hold < 5 % of the measured intensity
(the fraction is recorded in the preprocessing notes). The result is identical to the
``pad_measurements`` detector stage, which pads each batch on the fly instead (less memory,
nothing written); the patterns here are padded once, on every read when streamed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ptyrad_core.plugin import DataError, Field, PluginOptions, Preprocessor, hookimpl

from ..detectors.pad_measurements import background_canvas


def pad_onto(block: np.ndarray, canvas: np.ndarray, corner: tuple[int, int]) -> np.ndarray:
    """``(n, h, w)`` patterns placed at ``corner`` on copies of ``canvas`` (zero there)."""
    (h, w), (y1, x1) = block.shape[-2:], corner
    out = np.empty((len(block), *canvas.shape), dtype=np.float32)
    out[:] = canvas
    out[:, y1 : y1 + h, x1 : x1 + w] = block
    return out


class Pad(Preprocessor):
    """Place each pattern on an ``npix x npix`` background canvas built from the mean pattern (same dk)."""

    class Options(PluginOptions):
        npix: int = Field(
            gt=0, description="Padded pattern size in pixels (>= the pattern size); dx becomes dx W / npix."
        )
        padding: Literal["constant", "edge", "linear_ramp", "exp", "power"] = Field(
            description="How the background outside the measured pixels is made from the mean pattern's "
            "amplitude."
        )
        value: float = Field(
            10.0,
            description="Amplitude (sqrt of intensity) for 'constant', end value for 'linear_ramp'; "
            "PtyRAD's default 10.",
        )
        threshold: float = Field(
            70.0,
            gt=0,
            le=100,
            description="Percentile of the mean amplitude below which pixels enter the 'exp'/'power' fit.",
        )

    def transform(self, measurements, context) -> None:
        o = self.options
        measurements.as_patterns()
        shape = measurements.pattern_shape
        if o.npix < max(shape):
            raise DataError(f"npix = {o.npix} is smaller than the {shape[0]} x {shape[1]} patterns")
        mean = measurements.mean_pattern()
        canvas, corner = background_canvas(mean, o.npix, o.padding, o.value, o.threshold)
        total = float(mean.sum())
        share = float(canvas.sum(dtype=np.float64)) / total if total > 0 else float("nan")
        context.notes.append(
            f"pad: {shape[0]} x {shape[1]} -> {o.npix} x {o.npix} ({o.padding}); "
            f"background = {share:.2%} of the "
            "mean pattern's intensity"
        )
        measurements.map(lambda b: pad_onto(b, canvas, corner))


@hookimpl
def ptyrad_register_preprocessors(registry):
    registry.add("pad", Pad)

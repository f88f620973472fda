"""Pad the measured patterns onto a larger background canvas: PtyRAD's ``meas_pad`` (``on_the_fly``).

Each batch of measured ``M x M`` patterns is placed on an ``npix x npix`` canvas with the same
detector pixel ``dk``, so the simulation gets ``npix`` pixels and

    dx = 1 / (npix dk) = dx_meas * M / npix

(PtyRAD's ``dx *= meas_Npix / target_Npix``). The measured pixels sit at rows and columns
``p .. p + M - 1`` with ``p = npix // 2 - M // 2`` (zero frequency at ``npix // 2``; PtyRAD's
``(npix - M) // 2`` is the same except for even ``npix`` with odd ``M``), and everything
outside is a fixed background built once, in :meth:`PadMeasurements.prepare`, from the mean
measured pattern exactly as PtyRAD does it:

    A(k) = sqrt(mean_j I_j(k))                              (mean amplitude, sqrt(counts))
    B    = padded / extrapolated A, squared;  B = 0 on the measured pixels

with ``padding``:

- ``constant``: ``A`` padded with ``value`` (amplitude units: the background is ``value^2``).
- ``edge``: ``A``'s edge values continued outwards.
- ``linear_ramp``: a linear ramp from ``A``'s edge values to ``value`` at the canvas edge
  (``numpy.pad(mode="linear_ramp")``).
- ``exp``: ``a exp(-b r)`` and ``power``: ``a r^(-b)``, ``r`` the distance in pixels from the
  zero frequency (plus 1e-10), fitted by least squares (``a, b >= 0``) to ``A`` on the pixels at
  or below the ``threshold`` percentile of ``A`` (the dim tails, outside the bright-field disk),
  as PtyRAD's ``fit_background``. PtyRAD fits with ``scipy.optimize.curve_fit``; here the fit is
  solved without scipy by variable projection: for a given ``b`` the best ``a`` is linear,
  ``a(b) = max(0, <g_b, A> / <g_b, g_b>)``, and the 1-D residual over ``b`` is minimised by a
  logarithmic grid search over ``0 <= b <= 1000`` and golden-section refinement: the global
  least-squares optimum, which ``curve_fit`` also reaches when it converges (on tiny.h5 the
  two agree to 1e-5).

``value`` defaults to PtyRAD's 10 (an amplitude: 100 in intensity units, which suits PtyRAD's
normalised data, not raw counts; set it explicitly, usually 0). ``threshold`` 60 - 80 is typical;
PtyRAD advises that the padded background should hold < 5 % of the measured intensity.
The predicted patterns are unchanged by this stage (``forward`` is the identity); put it
before ``resample_measurements`` (PtyRAD pads, then resamples).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ptyrad_core.plugin import ConfigError, DetectorModel, Field, PluginOptions, hookimpl

_GOLDEN = (math.sqrt(5) - 1) / 2


def one_hot_mask(image: np.ndarray, percentile: float) -> np.ndarray:
    """PtyRAD's ``create_one_hot_mask``: True where ``image`` is at or below its ``percentile``."""
    return image <= np.percentile(image, percentile)


def decay(kind: str, r: np.ndarray, a: float, b: float) -> np.ndarray:
    """``a exp(-b r)`` (``exp``) or ``a r^(-b)`` (``power``)."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return a * (np.exp(-b * r) if kind == "exp" else r ** (-b))


def radius(shape: tuple[int, int], centre: tuple[int, int]) -> np.ndarray:
    y, x = np.indices(shape)
    return np.sqrt((x - centre[1]) ** 2 + (y - centre[0]) ** 2) + 1e-10


def fit_background(image: np.ndarray, mask: np.ndarray, kind: str) -> tuple[float, float]:
    """Least-squares ``(a, b)``, ``a, b >= 0``, of :func:`decay` to ``image`` on ``mask`` (PtyRAD's
    ``fit_background``).

    ``r`` is measured from pixel ``(H // 2, W // 2)``.
    """
    if kind not in ("exp", "power"):
        raise ValueError("kind must be 'exp' or 'power'")
    r = radius(image.shape, (image.shape[0] // 2, image.shape[1] // 2))[mask].astype(np.float64)
    y = image[mask].astype(np.float64)
    yy = float(y @ y)

    def best(b: float) -> tuple[float, float]:
        g = decay(kind, r, 1.0, b)
        if not np.all(np.isfinite(g)):
            return math.inf, 0.0
        gg, gy = float(g @ g), float(g @ y)
        if gg <= 0 or gy <= 0:
            return yy, 0.0
        return yy - gy * gy / gg, gy / gg

    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1e3, 541)])
    residuals = [best(b)[0] for b in grid]
    k = int(np.argmin(residuals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    # golden-section search on [lo, hi]
    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = best(c)[0], best(d)[0]
    for _ in range(100):
        if fc <= fd:
            hi, d, fd = d, c, fc
            c = hi - _GOLDEN * (hi - lo)
            fc = best(c)[0]
        else:
            lo, c, fc = c, d, fd
            d = lo + _GOLDEN * (hi - lo)
            fd = best(d)[0]
    candidates = [grid[k], c, d]
    b = min(candidates, key=lambda v: best(v)[0])
    return best(b)[1], float(b)


def background_canvas(
    mean_pattern: np.ndarray, npix: int, padding: str, value: float = 10.0, threshold: float = 70.0
) -> tuple[np.ndarray, tuple[int, int]]:
    """The ``(npix, npix)`` intensity background (zero on the measured pixels) and the measured block's
    top-left corner."""
    amp = np.sqrt(np.asarray(mean_pattern, dtype=np.float64))
    h, w = amp.shape
    y1, x1 = npix // 2 - h // 2, npix // 2 - w // 2
    pads = ((y1, npix - h - y1), (x1, npix - w - x1))
    if padding == "constant":
        padded = np.pad(amp, pads, mode="constant", constant_values=value)
    elif padding == "edge":
        padded = np.pad(amp, pads, mode="edge")
    elif padding == "linear_ramp":
        padded = np.pad(amp, pads, mode="linear_ramp", end_values=value)
    elif padding in ("exp", "power"):
        a, b = fit_background(amp, one_hot_mask(amp, threshold), padding)
        padded = decay(padding, radius((npix, npix), (npix // 2, npix // 2)), a, b)
    else:
        raise ValueError(f"unknown padding {padding!r}")
    canvas = np.square(padded)
    canvas[y1 : y1 + h, x1 : x1 + w] = 0
    return canvas.astype(np.float32), (y1, x1)


class PadMeasurements(DetectorModel):
    """Place each measured pattern on a fixed background canvas of ``npix x npix`` pixels (same dk)."""

    class Options(PluginOptions):
        npix: int = Field(
            gt=0, description="Padded pattern size in pixels (>= the measured size); dx becomes dx M / npix."
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

    def __init__(self, options: Options):
        super().__init__(options)
        self.register_buffer("canvas", None, persistent=False)
        self.measured_shape: tuple[int, int] | None = None
        self.corner: tuple[int, int] = (0, 0)

    def prepare(self, measurements) -> None:
        shape = tuple(measurements.pattern_shape)
        n = self.options.npix
        if n < max(shape):
            raise ConfigError(
                f"detector pad_measurements: npix = {n} is smaller than the measured "
                f"{shape[0]} x {shape[1]} patterns"
            )
        mean = measurements.mean_pattern()
        canvas, self.corner = background_canvas(
            mean, n, self.options.padding, self.options.value, self.options.threshold
        )
        self.canvas = torch.from_numpy(canvas)
        self.measured_shape = shape

    def measurement_grid(self, shape, dk):
        if self.measured_shape is None:
            raise RuntimeError("pad_measurements: prepare() has not been called with the measurements")
        if tuple(shape) != self.measured_shape:
            raise ConfigError(
                f"detector pad_measurements: it pads the measured "
                f"{self.measured_shape[0]} x {self.measured_shape[1]} "
                f"patterns, but an earlier stage changed them to {shape[0]} x {shape[1]}; "
                "list pad_measurements first"
            )
        n = self.options.npix
        return (n, n), dk

    def measurements(self, meas, batch):
        (h, w), (y1, x1), n = meas.shape[-2:], self.corner, self.options.npix
        return F.pad(meas, (x1, n - w - x1, y1, n - h - y1)) + self.canvas.to(meas.dtype)


@hookimpl
def ptyrad_register_detectors(registry):
    registry.add("pad_measurements", PadMeasurements)

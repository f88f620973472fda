"""The config's preprocessing chain, run on the loaded measurements, and the check of its outcome.

:func:`run_pipeline` applies the ``data.preprocess`` steps (:class:`~ptyrad_core.plugin.Preprocessor`
subclasses, each given a :class:`~ptyrad_core.kernel.preprocess.PreprocessContext`) in order and
tracks the scan shape, the surviving scan positions and the detector pixel ``dk`` through them
(:class:`PreprocessResult`); :func:`check_bright_field` refuses measurements whose mean pattern
shows no bright-field disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptyrad_core.kernel.components import Preprocessor, transform
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import ConfigError, DataError, OutputError
from ptyrad_core.kernel.preprocess import PreprocessContext

#: the mean pattern must be at least this many times brighter inside the bright-field disk than
#: outside it (:func:`check_bright_field`)
BRIGHT_FIELD_CONTRAST = 1.5


@dataclass
class PreprocessResult:
    """What the chain did, for calibration and for selecting positions and tilts.

    :ivar calibration_shape: pattern shape the ``experiment`` calibration refers to.
    :ivar calibration_mean: the mean pattern at that point (for fitting the bright-field disk).
    :ivar dk_factor: final dk = calibrated dk * ``dk_factor``.
    :ivar selection: indices of the raw scan positions kept, in order (``None``: all).
    :ivar scan_shape: final ``(n_slow, n_fast)``.
    """

    calibration_shape: tuple[int, int]
    calibration_mean: np.ndarray | None
    dk_factor: float
    selection: np.ndarray | None
    scan_shape: tuple[int, int] | None


def run_pipeline(
    meas: Measurements,
    steps: list[tuple[str, Preprocessor]],
    context: PreprocessContext,
    need_mean: bool = False,
) -> PreprocessResult:
    """Apply ``steps`` (``(label, step)`` pairs, label = YAML path for errors) in order."""
    calibration: tuple[tuple[int, int], np.ndarray | None] | None = None
    dk_factor = 1.0
    for label, step in steps:
        if not step.layout and calibration is None:
            calibration = _calibration_point(meas, context, need_mean)
        if step.layout and calibration is not None:
            raise DataError(
                f"{label}: layout steps (permute, reshape) must come before every other preprocessing step"
            )
        before = meas.pattern_shape
        try:
            transform(step, meas, context)
        except DataError as exc:
            raise DataError(f"{label}: {exc}") from exc
        except OutputError as exc:
            raise OutputError(f"{label}: {exc}") from exc
        if step.layout:
            continue
        meas.as_patterns()
        dk_factor = step.sampling(before, meas.pattern_shape, dk_factor)
    if calibration is None:
        calibration = _calibration_point(meas, context, need_mean)
    meas.as_patterns()
    return PreprocessResult(calibration[0], calibration[1], dk_factor, meas.selection, context.scan_shape)


def _calibration_point(meas: Measurements, context: PreprocessContext, need_mean: bool):
    meas.as_patterns()
    if meas.scan_shape is not None:
        if context.scan_shape is not None and tuple(context.scan_shape) != tuple(meas.scan_shape):
            raise DataError(
                f"{meas.source}: 4-D measurements with scan shape {tuple(meas.scan_shape)}, "
                "but the config says "
                f"scan.n_slow = {context.scan_shape[0]}, scan.n_fast = {context.scan_shape[1]}"
            )
        context.scan_shape = tuple(meas.scan_shape)
    return meas.pattern_shape, (meas.mean_pattern() if need_mean else None)


def check_bright_field(mean: np.ndarray, radius_px: float, source: str, calibration: str) -> None:
    """Reject measurements whose mean pattern shows no bright-field disk.

    The mean over all scan positions of convergent-beam patterns is the bright-field disk: the
    aperture of radius ``radius_px`` (the convergence angle over the detector pixel) lit by the
    unscattered and weakly scattered beam, on a much dimmer dark field. Patterns of noise or dark
    frames (the beam blanked, the wrong dataset or key, a detector offset read as signal) have a
    flat mean, as bright in that disk as around it. The criterion is the contrast of the mean
    pattern: its mean inside the disk of the expected radius, centred on the pattern's centre of
    intensity (an off-centre disk is still found), over its mean outside. data/tiny.h5 gives 333;
    Poisson noise gives 1.00 (within its statistical error, at any count level); even a sample
    that scatters 80 % of the beam out of a disk 0.4 detector widths across still gives about
    1.7. :data:`BRIGHT_FIELD_CONTRAST` (1.5) lies between. The criterion needs no fit and no
    threshold on absolute intensities, so it holds for counts, normalised patterns and any
    detector size; a miscalibrated radius (too large or too small) still compares a bright region
    with a dimmer one.

    :param calibration: the config values that set the radius, for the message
        (``experiment.dx_A = 0.19525, energy_kV = 300, ...``); one starting with
        ``experiment.fit_rbf`` means the radius was fitted to this mean pattern.

    A disk narrower than a pixel means absurd calibration values (a ConfigError), or for a
    fitted radius a mean pattern without a disk; a disk that leaves no dark field on the detector
    is left to the sampling check (``initialize.sampling``).
    """
    if not radius_px >= 1:
        if calibration.startswith("experiment.fit_rbf"):
            raise DataError(
                f"{source}: the mean pattern has no bright-field disk: "
                f"its half-maximum area ({calibration}) is a disk of "
                f"{radius_px:.3g} px radius; expected at least 1 px (a few hot pixels on dark frames?)"
            )
        raise ConfigError(
            f"{calibration}: the bright-field disk would be {radius_px:.3g} px in radius "
            "(convergence angle / detector "
            "pixel); expected at least 1 px: check these values"
        )
    total = float(mean.sum())
    yy, xx = np.indices(mean.shape, dtype=np.float64)
    cy, cx = float((mean * yy).sum() / total), float((mean * xx).sum() / total)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2
    n_in = int(inside.sum())
    if n_in == 0 or n_in == inside.size:
        return
    mean_in = float(mean[inside].mean())
    mean_out = float(mean[~inside].mean())
    if mean_in < BRIGHT_FIELD_CONTRAST * mean_out:
        raise DataError(
            f"{source}: the mean pattern has no bright-field disk: "
            f"inside the expected disk ({radius_px:.3g} px "
            f"radius from {calibration}, centred at ({cy:.1f}, {cx:.1f}) px) "
            f"it is {mean_in / max(mean_out, 1e-300):.3g} "
            f"times as bright as outside; expected at least {BRIGHT_FIELD_CONTRAST} (noise or dark frames? "
            "the wrong dataset or key?)"
        )

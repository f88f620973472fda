"""From a validated config to data and an initialized model.

- Measurements come from the loader the config names (or the one ``ptyrad_sniff_loader``
  picks for ``loader: auto``).
- Positions are a raster from step size, scan counts and an affine, placed in an object canvas
  1.2 times the scanned extent (PtyRAD's rule), or read from a file as object pixels.
- The probe is simulated from energy, convergence angle and aberrations, with extra
  Hermite-like modes, and scaled so that ``sum |probe|^2`` equals the mean total intensity of
  the measurements.
- The object starts with amplitude 1 and phase 0 (plus optional noise).
"""

from __future__ import annotations

import numpy as np
import torch

from . import detector as detector_grid
from . import optics, scan
from .config import Config, validate_options
from .data import Measurements
from .errors import ConfigError, DataError
from .model import PARAMETER_NAMES, ParamSchedule, PtychoModel


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"recon.device: {name!r} is not a torch device ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"recon.device: {name!r} requested but CUDA is not available on this machine")
    return device


def load_measurements(config: Config, pm) -> Measurements:
    """Read the measurements with the configured loader and check their values and count."""
    path = config.resolve(config.data.path)
    if not path.exists():
        raise DataError(f"data.path: measurement file {str(path)!r} does not exist")
    name = config.data.loader
    registry = pm.registry("loader")
    if name == "auto":
        name = pm.hook.ptyrad_sniff_loader(path=path)
        if name is None:
            raise DataError(
                f"data.loader: no loader recognises {str(path)!r}; name one of: {', '.join(registry.names())}"
            )
    entry = registry.get(name, where="data.loader")
    options = validate_options(entry.cls, config.data.options, ("data",), config)
    try:
        meas = entry.cls(path, options).load()
    except (DataError, ConfigError):
        raise
    except Exception as exc:
        raise DataError(f"{path}: loader {name!r} (plugin {entry.plugin!r}) failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(meas, Measurements):
        raise DataError(f"loader {name!r} (plugin {entry.plugin!r}) returned {type(meas).__name__}, not Measurements")
    meas.check_values(config.data.negative_values)
    expected = config.scan.n_slow * config.scan.n_fast
    if meas.n != expected:
        raise DataError(
            f"{meas.source}: {meas.n} diffraction patterns (array shape {meas.patterns.shape}), but "
            f"scan.n_slow x scan.n_fast = {config.scan.n_slow} x {config.scan.n_fast} = {expected}"
        )
    if meas.scan_shape is not None and tuple(meas.scan_shape) != (config.scan.n_slow, config.scan.n_fast):
        raise DataError(
            f"{meas.source}: 4-D measurements with scan shape {tuple(meas.scan_shape)}, but the config says "
            f"scan.n_slow = {config.scan.n_slow}, scan.n_fast = {config.scan.n_fast}"
        )
    ky, kx = meas.pattern_shape
    if ky != kx:
        raise DataError(f"{meas.source}: patterns must be square, got {ky} x {kx}")
    return meas


def sampling(config: Config, meas: Measurements, stages) -> tuple[tuple[int, int], float, float]:
    """The simulation window, dx and wavelength (Angstrom) implied by the data and the detector chain.

    The detector pixel ``dk`` comes from ``experiment.dk_invA``, or from ``experiment.dx_A`` and
    the measured pattern size; the detector stages then set the simulation grid
    (:mod:`ptyrad_core.detector`). The probe aperture must fit inside that grid.
    """
    exp = config.experiment
    measured = meas.pattern_shape
    dk = exp.detector_pixel(measured[0])
    window, dk_sim = detector_grid.simulation_grid(stages, *detector_grid.compare_grid(stages, measured, dk))
    if window[0] != window[1]:
        raise ConfigError(f"detector: the simulation window must be square, the detector chain gives {window[0]} x {window[1]}")
    dx = 1.0 / (window[0] * dk_sim)
    wavelength = optics.electron_wavelength(exp.energy_kV)
    alpha_max = wavelength / (2 * dx) * 1e3  # mrad at the edge of the simulated patterns
    if exp.conv_angle_mrad >= alpha_max:
        raise ConfigError(
            f"experiment: the convergence angle {exp.conv_angle_mrad} mrad does not fit the detector, whose "
            f"edge is at {alpha_max:.2f} mrad ({window[0]} px, dx = {dx:.5g} A, lambda = {wavelength:.5g} A)"
        )
    return window, dx, wavelength


def initial_positions(config: Config, window: tuple[int, int], dx: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Nominal positions ``(N, 2)`` in object pixels and the object shape."""
    sc = config.scan
    shape = config.model.object.shape
    if sc.source == "raster":
        a = sc.affine
        pos = scan.raster_positions(
            sc.n_slow, sc.n_fast, sc.step_A / dx, scan.affine_matrix(a.scale, a.asymmetry, a.rotation_deg, a.shear_deg)
        )
        pos, auto_shape = scan.place_in_object(pos, window)
        if shape is not None:
            pos = pos - np.asarray(auto_shape) / 2 + np.asarray(shape) / 2
    else:
        pos = scan.read_positions(config.resolve(sc.path), sc.key)
        if sc.units == "A":
            pos = pos / dx
    source = "scan.path" if sc.source == "file" else "scan"
    if len(pos) != sc.n_slow * sc.n_fast:
        raise DataError(f"{source}: {len(pos)} positions, but scan.n_slow x scan.n_fast = {sc.n_slow * sc.n_fast}")
    shape = tuple(shape) if shape is not None else (auto_shape if sc.source == "raster" else scan.fitting_object_shape(pos, window))
    scan.check_positions(pos, window, shape, source)
    return pos, shape


def initial_probe(config: Config, window: tuple[int, int], dx: float, total_intensity: float) -> np.ndarray:
    exp = config.experiment
    probe = optics.make_probe(window[0], dx, exp.energy_kV, exp.conv_angle_mrad, exp.aberrations, npix_x=window[1])
    modes = optics.make_mixed_probe(probe, config.model.probe.modes, config.model.probe.mode_power)
    return modes * np.sqrt(total_intensity)


def initial_object(config: Config, shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    obj = config.model.object
    if obj.modes > 1 and obj.phase_noise == 0:
        raise ConfigError(
            "model.object.phase_noise must be > 0 when model.object.modes > 1: identical object modes get "
            "identical gradients and never separate"
        )
    if obj.occupancy is not None and len(obj.occupancy) != obj.modes:
        raise ConfigError(f"model.object.occupancy has {len(obj.occupancy)} values for {obj.modes} modes")
    full = (obj.modes, obj.slices, *shape)
    amplitude = np.ones(full, dtype=np.float32)
    phase = (obj.phase_noise * rng.standard_normal(full)).astype(np.float32)
    return amplitude, phase


def build_model(config: Config, meas: Measurements, components: dict, device: torch.device, rng) -> PtychoModel:
    """The :class:`PtychoModel` described by ``config`` for these measurements."""
    stages = [cls(options) for (cls, options) in (components[("detector", i)] for i in range(len(config.detector)))]
    for stage in stages:
        stage.prepare(meas)
    window, dx, wavelength = sampling(config, meas, stages)
    pos, shape = initial_positions(config, window, dx)
    probe = initial_probe(config, window, dx, meas.mean_total_intensity())
    amplitude, phase = initial_object(config, shape, rng)
    tilt = config.model.tilts
    tilts = np.tile(np.asarray(tilt.init_mrad, dtype=np.float64), (len(pos) if tilt.mode == "per_position" else 1, 1))
    schedules = {name: ParamSchedule(**getattr(config.update, name).model_dump()) for name in PARAMETER_NAMES}
    extensions = [cls(options) for (cls, options) in (components[("forward", i)] for i in range(len(config.forward)))]
    dtype = torch.float64 if config.recon.precision == "float64" else torch.float32
    model = PtychoModel(
        object_amplitude=amplitude,
        object_phase=phase,
        probe=probe,
        positions_px=pos,
        tilts_mrad=tilts,
        slice_thickness=config.model.object.slice_thickness_A,
        wavelength=wavelength,
        dx=dx,
        occupancy=config.model.object.occupancy,
        schedules=schedules,
        extensions=extensions,
        detectors=stages,
        scan_shape=(config.scan.n_slow, config.scan.n_fast),
        dtype=dtype,
    )
    return model.to(device)

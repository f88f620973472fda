"""From a validated config to data and an initialized model.

1. Measurements come from the loader the config names (or the one ``ptyrad_sniff_loader`` picks
   for ``loader: auto``); within ``data.memory_budget_MB`` they are read whole, otherwise they
   stay on disk and are streamed per batch. The ``data.preprocess`` steps run in order.
2. Calibration: the detector pixel ``dk`` from the ``experiment`` section (referring to the
   patterns after the layout steps), carried through preprocessing and the detector chain to
   the simulation window and real-space pixel ``dx``.
3. Positions: a raster from step size and scan counts, with flips, an affine and jitter, placed
   in an object canvas 1.2 times the scanned extent (PtyRAD's rule); or read from a file (pixels
   of the calibrated data, or Angstrom) or a previous reconstruction (pixels of its ``dx_A``),
   rescaled to the simulation pixel ``dx`` so that the scan step in Angstrom is kept, and
   selected like the measurements.
4. Probe: simulated from energy, convergence angle and aberrations with Hermite-like extra
   modes, or read from a file or a previous reconstruction; optionally propagated; scaled to
   the measured intensity.
5. Object: amplitude 1 and phase 0 (plus optional noise), or read and cut / padded / resampled
   along depth. Tilts: a value, a file or a previous reconstruction.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from ptyrad_core.kernel import detector as detector_grid
from ptyrad_core.kernel import fft as fftlib
from ptyrad_core.kernel.config import Config
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import ConfigError, DataError
from ptyrad_core.kernel.forward import chunk_size, frequency_grid, fresnel_propagator
from ptyrad_core.kernel.model import PARAMETER_NAMES, ParamSchedule, PtychoModel
from ptyrad_core.kernel.preprocess import PreprocessContext
from ptyrad_core.kernel.prior import PriorResult
from ptyrad_core.kernel.registry import Entry
from ptyrad_core.setup import memory, optics, runtime, scan, sources
from ptyrad_core.setup.preprocess import PreprocessResult, check_bright_field, run_pipeline

log = logging.getLogger("ptyrad_core")


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


def resolved_entry(pm, family: str, found: tuple[type, BaseModel]) -> tuple[Entry, BaseModel]:
    """The registry entry (name, plugin) of a component resolved by ``validate_components``."""
    cls, options = found
    return next(e for e in pm.registry(family).entries() if e.cls is cls), options


def load_measurements(config: Config, pm, components: dict | None = None) -> Measurements:
    """The loader's measurements, read into memory when they fit ``data.memory_budget_MB``.

    :param components: from :func:`~ptyrad_core.kernel.config.validate_components`: the loader
        resolved there (``("data", "loader")``) is used; without it, or for ``loader: auto`` on a
        file no plugin recognises, it is resolved here by the same path.
    """
    path = config.resolve(config.data.path)
    if not path.exists():
        raise DataError(f"data.path: measurement file {str(path)!r} does not exist")
    registry = pm.registry("loader")
    found = (components or {}).get(("data", "loader"))
    if found is not None:
        entry, options = resolved_entry(pm, "loader", found)
    else:
        resolved = registry.resolve(
            config.data.loader,
            config.data.options,
            ("data",),
            origin=config.origin,
            name_key="loader",
            sniff=pm.hook.ptyrad_sniff_loader,
            path=path,
        )
        if resolved is None:
            raise DataError(
                f"data.loader: no loader recognises {str(path)!r}; name one of: {', '.join(registry.names())}"
            )
        entry, options = resolved
    name = entry.name
    try:
        meas = entry.cls(path, options).load()
    except (DataError, ConfigError):
        raise
    except Exception as exc:
        raise DataError(
            f"{path}: loader {name!r} (plugin {entry.plugin!r}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(meas, Measurements):
        raise DataError(
            f"loader {name!r} (plugin {entry.plugin!r}) returned {type(meas).__name__}, not Measurements"
        )
    budget = config.data.memory_budget_MB * 2**20
    if meas.nbytes_float32 <= budget:
        memory.check_measurements(config, meas)  # before anything is read
        meas.load()
    elif not meas.streamable:
        raise DataError(
            f"{meas.source}: the array can only be read whole (a compressed archive member), and it takes "
            f"{meas.nbytes_float32 / 2**20:.0f} MB as float32, more than data.memory_budget_MB = "
            f"{config.data.memory_budget_MB:g}; raise data.memory_budget_MB if the memory is there, "
            "or store the "
            "measurements uncompressed (.npy, HDF5) so that they can be streamed"
        )
    else:  # statistics stream through the file in blocks well within the budget (raw bytes per block)
        meas.chunk_bytes = int(max(1 << 20, min(meas.chunk_bytes, budget // 4)))
        log.info(
            "measurements %s (%.0f MB) exceed data.memory_budget_MB: streamed from disk",
            meas.source,
            meas.nbytes_float32 / 2**20,
        )
    return meas


@dataclass
class Data:
    """Preprocessed measurements and what calibration and positions need to know about them."""

    measurements: Measurements
    preprocess: PreprocessResult
    dk: float
    wavelength: float
    rbf_px: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def dx_calibrated(self) -> float:
        """The calibrated data's real-space pixel in Angstrom: ``1 / (N dk)`` of the patterns the
        ``experiment`` calibration describes (after the layout steps, before any other preprocessing),
        i.e. ``experiment.dx_A`` when that is the calibration given. Positions read from a file in pixels
        are in these pixels."""
        dk_calibrated = self.dk / self.preprocess.dk_factor
        return 1.0 / (self.preprocess.calibration_shape[0] * dk_calibrated)


def fit_rbf(mean_pattern: np.ndarray, threshold: float = 0.5) -> float:
    """Bright-field disk radius in pixels: the radius of a disk with the area above ``threshold`` x max."""
    area = float(np.sum(mean_pattern > threshold * mean_pattern.max()))
    return math.sqrt(area / math.pi)


def preprocess_steps(config: Config, components: dict) -> list[tuple[str, Any]]:
    """``(label, step)`` for every ``data.preprocess`` entry (label: its YAML path and name)."""
    return [
        (f"data.preprocess[{i}] {spec.name!r}", cls(options))
        for i, spec in enumerate(config.data.preprocess)
        for cls, options in [components[("data", "preprocess", i)]]
    ]


def preprocess_context(
    config: Config, *, dry_run: bool = False, overwrite: bool = False
) -> PreprocessContext:
    """The :class:`PreprocessContext` the steps run with (before any data are read)."""
    from ptyrad_core.setup.readonly import config_inputs

    return PreprocessContext(
        scan_shape=(config.scan.n_slow, config.scan.n_fast),
        scan_step_A=config.scan.step_A,
        seed=config.recon.seed,
        base_dir=config.origin.folder,
        data_path=config.resolve(config.data.path),
        inputs=tuple(config_inputs(config)),
        dry_run=dry_run,
        overwrite=overwrite,
    )


def prepare_data(
    config: Config, pm, components: dict, *, dry_run: bool = False, overwrite: bool = False
) -> Data:
    """Load, preprocess, check and calibrate the measurements.

    :param dry_run: ``validate``: preprocessing steps that write files (``export``) only check and
        report what they would write.
    :param overwrite: ``--overwrite``: such steps may replace existing files that are not their own
        previous outputs (never a file the run reads).
    """
    meas = load_measurements(config, pm, components)
    steps = preprocess_steps(config, components)
    context = preprocess_context(config, dry_run=dry_run, overwrite=overwrite)
    result = run_pipeline(meas, steps, context, need_mean=config.experiment.fit_rbf)
    mean = meas.check_values(config.data.negative_values)
    expected = (
        int(np.prod(result.scan_shape))
        if result.scan_shape is not None
        else config.scan.n_slow * config.scan.n_fast
    )
    if meas.n != expected:
        n_slow, n_fast = result.scan_shape or (config.scan.n_slow, config.scan.n_fast)
        raise DataError(
            f"{meas.source}: {meas.n} diffraction patterns (array shape {meas.shape}), but "
            f"scan.n_slow x scan.n_fast = {n_slow} x {n_fast} = {expected}"
        )
    ky, kx = meas.pattern_shape
    if ky != kx:
        raise DataError(f"{meas.source}: patterns must be square, got {ky} x {kx}")
    wavelength = optics.electron_wavelength(config.experiment.energy_kV)
    rbf = fit_rbf(result.calibration_mean) if config.experiment.fit_rbf else None
    dk = config.experiment.detector_pixel(result.calibration_shape[0], wavelength, rbf) * result.dk_factor
    check_bright_field(
        mean,
        config.experiment.conv_angle_mrad * 1e-3 / (wavelength * dk),
        meas.source,
        f"{config.experiment.calibration_text}, energy_kV = {config.experiment.energy_kV:g}, "
        f"conv_angle_mrad = {config.experiment.conv_angle_mrad:g}",
    )
    return Data(meas, result, dk, wavelength, rbf, context.notes)


@dataclass
class Priors:
    """Previous reconstructions that initial values come from (``source: result``), each file read once.

    :ivar config: the run's config (paths resolve from its origin).
    :ivar pm: the plugin manager whose result readers read the files.
    :ivar components: the resolved components (the readers validated with the config).
    :ivar dx: this run's real-space pixel in Angstrom, to compare with a result's ``dx_A``.
    """

    config: Config
    pm: object
    components: dict
    dx: float
    _cache: dict = field(default_factory=dict, repr=False)

    def read(self, spec, where: str) -> PriorResult:
        """The result file of the section ``spec`` at YAML path ``where`` (e.g. ``model.probe``)."""
        found = self.components.get(tuple(where.split(".")) + ("reader",))
        resolved = resolved_entry(self.pm, "result_reader", found) if found is not None else None
        return sources.read_prior(spec, where, self.pm, self.config, self._cache, resolved)


def sampling(config: Config, data: Data, stages) -> tuple[tuple[int, int], float]:
    """The simulation window and real-space pixel ``dx`` (Angstrom) for the data and detector chain.

    The probe aperture must fit inside the simulated patterns.
    """
    window, dk_sim = detector_grid.simulation_grid(
        stages, *detector_grid.compare_grid(stages, data.measurements.pattern_shape, data.dk)
    )
    if window[0] != window[1]:
        raise ConfigError(
            "detector: the simulation window must be square, "
            f"the detector chain gives {window[0]} x {window[1]}"
        )
    dx = 1.0 / (window[0] * dk_sim)
    alpha_max = data.wavelength / (2 * dx) * 1e3  # mrad at the edge of the simulated patterns
    conv = config.experiment.conv_angle_mrad
    if conv >= alpha_max:
        raise ConfigError(
            f"experiment: the convergence angle {conv} mrad does not fit the detector, whose "
            f"edge is at {alpha_max:.2f} mrad ({window[0]} px, dx = {dx:.5g} A, "
            f"lambda = {data.wavelength:.5g} A)"
        )
    return window, dx


def _select(arr: np.ndarray, data: Data, raw_count: int, where: str) -> np.ndarray:
    """Rows of a per-position array for the positions the preprocessing kept."""
    selection = data.preprocess.selection
    if len(arr) == data.measurements.n and (selection is None or len(arr) != raw_count):
        return arr
    if len(arr) != raw_count:
        raise DataError(
            f"{where}: {len(arr)} rows, but the scan has {raw_count} positions "
            f"({data.measurements.n} after preprocessing)"
        )
    return arr if selection is None else arr[selection]


def rescale_positions(pos: np.ndarray, pixel_A: float, dx: float, of: str) -> np.ndarray:
    """Positions ``(N, 2)`` given in pixels of ``pixel_A`` Angstrom, in object pixels of ``dx`` Angstrom.

    ``pos * pixel_A / dx``, so that every distance in Angstrom, the scan step first of all, is
    unchanged; the window corners scale about the object's origin (a common translation, which
    no measurement can see). Logs a note when the factor differs from 1.
    """
    factor = pixel_A / dx
    if abs(factor - 1) <= 1e-9:
        return pos
    log.warning(
        "note: scan: positions in pixels of %s (%.5g A) rescaled by %.6g to the simulation pixel dx = %.5g A "
        "(preprocessing or detector stages change dx); the scan step in Angstrom is kept",
        of,
        pixel_A,
        factor,
        dx,
    )
    return pos * factor


def _real(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` as float64; complex values are refused (a cast would drop the imaginary part)."""
    if np.iscomplexobj(arr):
        raise DataError(f"{where}: the array holds complex values (dtype {arr.dtype}); expected real numbers")
    return arr.astype(np.float64)


def initial_positions(
    config: Config, data: Data, window: tuple[int, int], dx: float, rng, priors: Priors
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Nominal positions ``(N, 2)`` in object pixels (of ``dx`` Angstrom), and the object shape for a
    raster (else None).

    Every source keeps the scan's geometry in Angstrom when ``dx`` differs from the pixel the
    positions were given in: a raster is ``scan.step_A / dx`` pixels apart; file positions in
    Angstrom are divided by ``dx``; file positions in pixels are pixels of the calibrated data
    (:attr:`Data.dx_calibrated`) and positions from a previous reconstruction are pixels of its
    ``dx_A`` (of the calibrated data if it states none), both rescaled by
    :func:`rescale_positions`. ``scan.jitter_px`` is in object pixels.
    """
    sc = config.scan
    raw_count = sc.n_slow * sc.n_fast
    shape = config.model.object.shape
    placed_shape = None
    if sc.source == "raster":
        n_slow, n_fast = data.preprocess.scan_shape
        pos = scan.raster_positions(n_slow, n_fast, sc.step_A / dx)
        pos = scan.flip_grid(pos, (n_slow, n_fast), sc.flipT.flipud, sc.flipT.fliplr, sc.flipT.transpose)
        a = sc.affine
        pos = pos @ scan.affine_matrix(a.scale, a.asymmetry, a.rotation_deg, a.shear_deg)
        pos, placed_shape = scan.place_in_object(pos, window)
        if shape is not None:
            pos = pos - np.asarray(placed_shape) / 2 + np.asarray(shape) / 2
            placed_shape = tuple(shape)
    else:
        if sc.source == "file":
            pos = _real(sources.read_array(config.resolve(sc.path), sc.key, "scan", priors.pm), "scan.path")
            pixel, of = data.dx_calibrated, "the calibrated data"
        else:
            prior = priors.read(sc, "scan")
            pos = sources.need(prior, "positions_px", "scan")
            if prior.dx_A:
                pixel, of = float(prior.dx_A), f"the previous reconstruction {prior.source}"
            else:  # unknown: a reconstruction of these data on their own pixel is the likely case
                pixel, of = data.dx_calibrated, f"the calibrated data ({prior.source} states no dx)"
        if pos.ndim != 2 or pos.shape[1] != 2:
            raise DataError(f"scan.path: positions must have shape (N, 2) (y, x), got {pos.shape}")
        if sc.units == "A" and sc.source == "file":
            pos = pos / dx
        else:
            pos = rescale_positions(pos, pixel, dx, of)
        pos = _select(pos.astype(np.float64), data, raw_count, "scan.path")
        if any((sc.flipT.flipud, sc.flipT.fliplr, sc.flipT.transpose)):
            pos = scan.flip_grid(
                pos, data.preprocess.scan_shape, sc.flipT.flipud, sc.flipT.fliplr, sc.flipT.transpose
            )
    if sc.jitter_px > 0:
        pos = pos + sc.jitter_px * rng.standard_normal(pos.shape)
    return pos, placed_shape


def initial_probe(
    config: Config, data: Data, window: tuple[int, int], dx: float, priors: Priors
) -> np.ndarray:
    """Probe modes ``(pmode, Ny, Nx)`` complex, scaled to the measured intensity."""
    p = config.model.probe
    if p.source == "simulate":
        exp = config.experiment
        probe = optics.make_probe(
            window[0], dx, exp.energy_kV, exp.conv_angle_mrad, exp.aberrations, npix_x=window[1]
        )
        probe = optics.make_mixed_probe(probe, p.modes, p.mode_power)
    else:
        if p.source == "file":
            probe = sources.read_array(config.resolve(p.path), p.key, "model.probe", priors.pm)
        else:
            probe = sources.need(priors.read(p, "model.probe"), "probe", "model.probe")
        if p.permute is not None:
            probe = np.transpose(probe, p.permute)
        probe = np.asarray(probe, dtype=np.complex128)
        probe = probe[None] if probe.ndim == 2 else probe
        if probe.ndim != 3 or tuple(probe.shape[1:]) != tuple(window):
            raise DataError(
                f"model.probe: the loaded probe has shape {probe.shape}; "
                f"expected (pmode, {window[0]}, {window[1]}) to "
                "match the simulation window (use model.probe.permute to reorder axes)"
            )
        probe = sources.probe_with_modes(probe, p.modes, p.mode_power)
    if p.z_shift_A:
        fy, fx = frequency_grid(window, dtype=torch.float64)
        h = fresnel_propagator(
            fy,
            fx,
            dx,
            data.wavelength,
            torch.tensor(float(p.z_shift_A), dtype=torch.float64),
            torch.zeros(1, 2, dtype=torch.float64),
        ).numpy()
        probe = np.fft.ifft2(np.fft.fft2(probe) * h)
    if p.normalization == "target_intensity":
        if p.intensity is None:
            raise ConfigError("model.probe.normalization 'target_intensity' needs model.probe.intensity")
        target = p.intensity
    else:
        totals = data.measurements.total_intensities()
        target = totals.mean() if p.normalization == "mean_total_ints" else totals.max()
    return probe * math.sqrt(target / np.sum(np.abs(probe) ** 2))


def initial_object(
    config: Config, shape: tuple[int, int] | None, rng, priors: Priors
) -> tuple[np.ndarray, np.ndarray, float]:
    """Amplitude and phase ``(omode, Nz, NY, NX)`` and the slice thickness."""
    o = config.model.object
    if o.modes > 1 and o.phase_noise == 0 and o.source == "flat":
        raise ConfigError(
            "model.object.phase_noise must be > 0 when model.object.modes > 1: identical object modes get "
            "identical gradients and never separate"
        )
    if o.occupancy is not None and len(o.occupancy) != o.modes:
        raise ConfigError(f"model.object.occupancy has {len(o.occupancy)} values for {o.modes} modes")
    dz = o.slice_thickness_A
    if o.source == "flat":
        full = (o.modes, o.slices, *shape)
        amplitude = np.ones(full, dtype=np.float32)
        phase = (o.phase_noise * rng.standard_normal(full)).astype(np.float32)
        return amplitude, phase, dz
    if o.source == "file":
        obj = sources.read_array(config.resolve(o.path), o.key, "model.object", priors.pm)
    else:
        prior = priors.read(o, "model.object")
        obj = sources.need(prior, "object", "model.object")
        dz = prior.slice_thickness_A or dz
        if prior.dx_A and abs(prior.dx_A / priors.dx - 1) > 1e-3:
            log.warning(
                "model.object: %s has dx = %.5g A but this run has dx = %.5g A; "
                "the object is used pixel for pixel",
                prior.source,
                prior.dx_A,
                priors.dx,
            )
    obj = np.asarray(obj, dtype=np.complex128)
    obj = obj.reshape((1,) * (4 - obj.ndim) + obj.shape) if obj.ndim < 4 else obj
    if obj.ndim != 4:
        raise DataError(
            f"model.object: the loaded object has shape {obj.shape}; expected (omode, Nz, NY, NX)"
        )
    if o.z_crop is not None:
        obj = sources.z_crop(obj, *o.z_crop)
    if o.z_pad is not None:
        obj = sources.z_pad(obj, o.z_pad.layers, o.z_pad.kind)
    if o.z_resample is not None:
        obj, dz = sources.z_resample(obj, dz, o.z_resample.mode, o.z_resample.value)
    if obj.shape[1] != o.slices:
        raise ConfigError(
            f"model.object.slices is {o.slices}, but the loaded object has {obj.shape[1]} slices after "
            "z_crop / z_pad / z_resample"
        )
    obj = sources.set_object_modes(obj, o.modes)
    phase = np.angle(obj) + (o.phase_noise * rng.standard_normal(obj.shape) if o.phase_noise else 0)
    return np.abs(obj).astype(np.float32), phase.astype(np.float32), dz


def initial_tilts(config: Config, data: Data, n_positions: int, priors: Priors) -> np.ndarray:
    t = config.model.tilts
    if t.source == "value":
        tilts = np.asarray(t.init_mrad, dtype=np.float64)[None]
    elif t.source == "file":
        tilts = _real(
            sources.read_array(config.resolve(t.path), t.key, "model.tilts", priors.pm), "model.tilts.path"
        )
    else:
        tilts = sources.need(priors.read(t, "model.tilts"), "tilts_mrad", "model.tilts")
    tilts = np.asarray(tilts, dtype=np.float64).reshape(-1, 2) if tilts.size in (2, 2 * len(tilts)) else tilts
    if tilts.ndim != 2 or tilts.shape[1] != 2:
        raise DataError(f"model.tilts: tilts must have shape (1, 2) or (N, 2) (t_y, t_x), got {tilts.shape}")
    if len(tilts) > 1:
        tilts = _select(tilts, data, config.scan.n_slow * config.scan.n_fast, "model.tilts")
    if t.mode == "per_position" and len(tilts) == 1:
        tilts = np.repeat(tilts, n_positions, axis=0)
    if t.mode == "global" and len(tilts) != 1:
        raise ConfigError(f"model.tilts: {len(tilts)} tilts were loaded; set model.tilts.mode: per_position")
    return tilts


def build_model(
    config: Config,
    data: Data,
    components: dict,
    device: torch.device,
    rng,
    pm=None,
    memory_device: torch.device | None = None,
) -> PtychoModel:
    """The :class:`PtychoModel` described by ``config`` for these data.

    The run's peak memory is estimated and checked (:mod:`ptyrad_core.setup.memory`) as soon as the
    object's shape is known, before the object, the optimizer and the batches are allocated, for
    ``memory_device`` (default ``device``: ``validate`` builds on the CPU but checks the device
    the run will use). The estimates are kept as ``model.memory_estimate``.
    """
    stages = [
        cls(options) for (cls, options) in (components[("detector", i)] for i in range(len(config.detector)))
    ]
    for stage in stages:
        stage.prepare(data.measurements)
    window, dx = sampling(config, data, stages)
    priors = Priors(config, pm, components, dx)
    pos, placed_shape = initial_positions(config, data, window, dx, rng, priors)

    def check_memory(object_shape):
        return memory.check_run(
            config,
            window=window,
            object_shape=tuple(object_shape),
            n_positions=len(pos),
            measurements=data.measurements,
            device=memory_device or device,
        )

    object_shape = placed_shape or (
        tuple(config.model.object.shape)
        if config.model.object.shape
        else scan.fitting_object_shape(pos, window)
    )
    source = "scan.path" if config.scan.source != "raster" else "scan"
    flat = config.model.object.source == "flat"
    if flat:  # positions outside the object (or non-finite) named before anything is sized from them
        scan.check_positions(pos, window, object_shape, source)
    estimates = check_memory(object_shape) if flat else None
    probe = initial_probe(config, data, window, dx, priors)
    amplitude, phase, dz = initial_object(config, object_shape, rng, priors)
    shape = tuple(amplitude.shape[-2:])
    if estimates is None:  # the shape of an object read from a file or a result is known now
        estimates = check_memory(shape)
    scan.check_positions(pos, window, shape, source)
    tilts = initial_tilts(config, data, len(pos), priors)
    schedules = {name: ParamSchedule(**getattr(config.update, name).model_dump()) for name in PARAMETER_NAMES}
    extensions = [
        cls(options) for (cls, options) in (components[("forward", i)] for i in range(len(config.forward)))
    ]
    dtype = torch.float64 if config.recon.precision == "float64" else torch.float32
    model = PtychoModel(
        object_amplitude=amplitude,
        object_phase=phase,
        probe=probe,
        positions_px=pos,
        tilts_mrad=tilts,
        slice_thickness=dz,
        wavelength=data.wavelength,
        dx=dx,
        occupancy=config.model.object.occupancy,
        schedules=schedules,
        extensions=extensions,
        detectors=stages,
        scan_shape=data.preprocess.scan_shape,
        dtype=dtype,
    )
    wave_bytes = (
        model.probe.numel() * model.probe.element_size() * model.object_amplitude.shape[0]
    )  # per position
    model.positions_per_pass = chunk_size(config.recon.positions_per_pass, wave_bytes, device)
    # the transforms of one pass of the slice recursion: probe modes x object modes x positions
    per_pass = min(config.recon.batch_size, model.positions_per_pass or config.recon.batch_size)
    pmode, ny, nx = model.probe.shape
    if (
        torch.device(device).type == "cpu"
    ):  # the thread pools and allocator a run has, before FFTW is timed on them
        runtime.configure_threads()
        runtime.tune_allocator()
    model.fft = fftlib.select(
        config.recon.fft,
        device,
        shape=(pmode * model.object_amplitude.shape[0] * per_pass, ny, nx),
        dtype=model.probe.dtype,
    )
    model.memory_estimate = estimates
    return model.to(device)

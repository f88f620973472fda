"""Synthetic 4D-STEM datasets in the layout of the shipped files (data/README.md).

:func:`simulate` takes a :class:`SimulationSpec` (a YAML file for ``ptyrad-core simulate``) and
writes one HDF5 file that the built-in ``hdf5`` loader and a config with
``scan: {source: file, key: positions_nominal_px}`` read like ``data/tiny.h5``:

- the object: phase slices from a file array (e.g. another dataset's
  ``/ground_truth/phase_slices``) or a built-in synthetic crystal, Gaussian "atoms" on a square
  lattice (corner sites on even slices, centre sites on odd slices, optional random vacancies);
  transmission ``exp(i phase)``, no absorption;
- the probe: made from energy, convergence angle and aberrations
  (:func:`~ptyrad_core.setup.optics.make_probe`, conventions of docs/conventions.md), or loaded;
- the scan: an ``n_slow x n_fast`` raster with ``step_A`` centred on the object (as in the
  shipped files); optional Gaussian position errors (or positions from a file) make the true
  positions differ from the nominal ones; both are stored;
- optional global tilt (mrad, (y, x));
- the noiseless patterns come from the project's own forward engine
  (:class:`~ptyrad_core.kernel.model.PtychoModel`) in float64, scaled to ``electrons_per_pattern =
  dose * step^2`` (1 without a dose); with a dose, ``/measurements`` holds shot-noise counts and
  ``/measurements_noiseless`` the expectation values.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ptyrad_core.kernel.errors import ConfigError, DataError

SIMULATOR = (
    "ptyrad_core.apps.simulate: float64 multislice of ptyrad_core.kernel.model.PtychoModel "
    "(Fourier sub-pixel shifts, no antialiasing)"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArrayFileSpec(_Strict):
    """One array in a file (``.npy``, ``.npz``, HDF5, ``.mat``;
    :func:`ptyrad_core.setup.sources.read_array`)."""

    path: Path = Field(
        description="File holding the array; relative paths are taken from the spec file's folder."
    )
    key: str | None = Field(
        None,
        description="Dataset / array name inside the file (HDF5 path, npz name); "
        "null for single-array files.",
    )


class ExperimentSpec(_Strict):
    """Beam and detector sampling."""

    energy_kV: float = Field(300.0, gt=0, description="Acceleration voltage, kV.")
    conv_angle_mrad: float = Field(
        21.4, gt=0, description="Convergence semi-angle of the probe-forming aperture, mrad."
    )
    dx_A: float = Field(
        0.19525, gt=0, description="Real-space pixel size, Angstrom (the detector spans 1 / dx_A in k)."
    )
    pattern_px: int = Field(64, ge=8, description="Pattern (and probe window) size in pixels, square.")
    aberrations: dict[str, float] = Field(
        default_factory=lambda: {"defocus": 100.0},
        description="Aberration coefficients in Angstrom / degrees, any notation of docs/conventions.md "
        "(Krivanek C10, C12, phi12, ...; Haider; defocus = -C10).",
    )


class ProbeSpec(_Strict):
    """Where the probe comes from."""

    source: Literal["parameters", "file"] = Field(
        "parameters",
        description="'parameters': made from the experiment section; 'file': loaded from `file`.",
    )
    file: ArrayFileSpec | None = Field(
        None,
        description="With source 'file': a complex (K, K) or (1, K, K) probe, centred at pixel (K/2, K/2); "
        "it is normalised to sum |probe|^2 = 1.",
    )

    @model_validator(mode="after")
    def _check(self):
        if self.source == "file" and self.file is None:
            raise ValueError("probe.source 'file' needs probe.file: {path, key}")
        return self


class ObjectSpec(_Strict):
    """The sample: phase slices from a file, or a synthetic lattice of Gaussian atoms."""

    source: Literal["lattice", "file"] = Field(
        "lattice", description="'lattice': the built-in synthetic crystal; 'file': phase slices from `file`."
    )
    file: ArrayFileSpec | None = Field(
        None,
        description="With source 'file': real phase slices (Nz, NY, NX) or (NY, NX), radians "
        "(e.g. a dataset's ground_truth/phase_slices).",
    )
    slice_thickness_A: float = Field(2.0, gt=0, description="Slice thickness dz, Angstrom.")
    slices: int = Field(4, ge=1, description="Number of slices of the lattice object.")
    shape_px: tuple[PositiveInt, PositiveInt] | None = Field(
        None,
        description="(NY, NX) of the lattice object; null: the smallest that holds the scan with margin_A "
        "to spare on each side.",
    )
    margin_A: float = Field(
        0.0,
        ge=0,
        description="Extra object border around the scanned windows (lattice object with shape_px null), "
        "Angstrom.",
    )
    lattice_A: float = Field(3.905, gt=0, description="Square lattice constant, Angstrom.")
    atomic_numbers: tuple[int, int] = Field(
        (38, 22),
        description="Atomic numbers of the corner-site atoms (even slices) and centre-site atoms "
        "(odd slices); the phase scales as Z^0.67.",
    )
    phase_per_atom_rad: float = Field(
        0.4, gt=0, description="Peak phase of one atom of the heavier species, radians."
    )
    sigma_A: float = Field(0.3, gt=0, description="Gaussian width (standard deviation) of an atom, Angstrom.")
    vacancy_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Fraction of atoms removed at random (seeded), so the object is not periodic.",
    )

    @model_validator(mode="after")
    def _check(self):
        if self.source == "file" and self.file is None:
            raise ValueError("object.source 'file' needs object.file: {path, key}")
        return self


class ScanSpec(_Strict):
    """A raster scan centred on the object; row-major, fast axis x."""

    n_slow: int = Field(ge=1, description="Scan positions along y (rows).")
    n_fast: int = Field(ge=1, description="Scan positions along x (columns).")
    step_A: float = Field(gt=0, description="Scan step, Angstrom (same along both axes).")
    position_error_A: float = Field(
        0.0,
        ge=0,
        description="Standard deviation of random (seeded) Gaussian errors added to the nominal positions "
        "to give the true ones, Angstrom; true positions are clipped so every window stays inside "
        "the object.",
    )
    true_positions: ArrayFileSpec | None = Field(
        None,
        description="Take the true positions (N, 2) (y, x) in object pixels (window top-left corners) "
        "from a file instead of nominal + random error.",
    )


class SimulationSpec(_Strict):
    """Everything :func:`simulate` needs. Lengths in Angstrom, angles in mrad."""

    output: Path | None = Field(
        None, description="The HDF5 file to write; relative paths are taken from the spec file's folder."
    )
    experiment: ExperimentSpec = Field(default_factory=ExperimentSpec, description="Beam and sampling.")
    probe: ProbeSpec = Field(default_factory=ProbeSpec, description="The probe.")
    object: ObjectSpec = Field(default_factory=ObjectSpec, description="The sample.")
    scan: ScanSpec = Field(description="The scan.")
    tilt_mrad: tuple[float, float] = Field(
        (0.0, 0.0), description="Global tilt (t_y, t_x) of the object relative to the beam, mrad."
    )
    dose_e_per_A2: float | None = Field(
        None,
        ge=0,
        description="Electron dose per square Angstrom; electrons per pattern = dose * step_A^2; "
        "null or 0: noiseless patterns normalised to 1 (measurements = noiseless).",
    )
    seed: int = Field(
        0, ge=0, description="Seed of every random choice (vacancies, position errors, shot noise)."
    )
    sample: str = Field(
        "synthetic lattice of Gaussian atoms",
        description="Free-text sample description, stored as the 'sample' attribute.",
    )
    batch_size: int = Field(256, ge=1, description="Patterns simulated at once (memory only).")

    @field_validator("dose_e_per_A2")
    @classmethod
    def _countable(cls, dose, info):
        # numpy draws Poisson counts only below about 1e19 per pixel; far beyond any detector
        scan = info.data.get("scan")
        electrons = (dose or 0.0) * (scan.step_A**2 if scan is not None else 1.0)
        if electrons > MAX_ELECTRONS:
            raise ValueError(
                f"{dose:g} gives {electrons:.3g} electrons per pattern (dose x scan.step_A^2); shot noise is "
                f"drawn up to {MAX_ELECTRONS:.0e}: use null for noise-free patterns"
            )
        return dose


# --------------------------------------------------------------------------------------------
# spec I/O
# --------------------------------------------------------------------------------------------


def build_spec(raw: dict, source: str = "<spec>", base_dir: Path | None = None) -> SimulationSpec:
    """Validate a spec dict; relative file paths are resolved against ``base_dir``."""
    from ptyrad_core.kernel.config import format_validation_error

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a simulation spec must be a mapping, got {type(raw).__name__}")
    try:
        spec = SimulationSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, SimulationSpec, source, {})) from None
    if base_dir is not None:
        base = Path(base_dir)

        def fix(p: Path | None) -> Path | None:
            if p is None:
                return None
            p = Path(p).expanduser()
            return p if p.is_absolute() else (base / p).resolve()

        spec.output = fix(spec.output)
        for holder in (spec.probe.file, spec.object.file, spec.scan.true_positions):
            if holder is not None:
                holder.path = fix(holder.path)
    return spec


def load_spec(path) -> SimulationSpec:
    """Read a YAML spec; relative paths inside are taken from the file's folder."""
    from ptyrad_core.setup.config_file import read_yaml

    path = Path(path)
    raw, _ = read_yaml(path)
    return build_spec(raw, str(path), path.resolve().parent)


# --------------------------------------------------------------------------------------------
# ingredients
# --------------------------------------------------------------------------------------------


def raster_nominal(
    n_slow: int, n_fast: int, step_px: float, object_shape: tuple[int, int], window: int
) -> np.ndarray:
    """Window top-left corners ``(n_slow * n_fast, 2)`` of a raster centred on the object."""
    oy = (object_shape[0] - window - (n_slow - 1) * step_px) / 2
    ox = (object_shape[1] - window - (n_fast - 1) * step_px) / 2
    yy, xx = np.meshgrid(oy + step_px * np.arange(n_slow), ox + step_px * np.arange(n_fast), indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def lattice_object(
    spec: ObjectSpec, shape: tuple[int, int], dx: float, rng
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase slices ``(Nz, NY, NX)`` of the synthetic crystal, atom positions ``(n, 3)`` (x, y, z)
    in Angstrom (x along columns, y along rows, as in the shipped files) and atomic numbers."""
    ny, nx = shape
    a = spec.lattice_A
    z_max = max(spec.atomic_numbers)
    phases = np.zeros((spec.slices, ny, nx))
    ys_px, xs_px = np.arange(ny) * dx, np.arange(nx) * dx
    atoms, numbers = [], []
    for k in range(spec.slices):
        site = 0.5 * (k % 2)  # corner sites on even slices, centre sites on odd ones
        z_num = spec.atomic_numbers[k % 2]
        cy = (np.arange(-1, int(ny * dx / a) + 2) + 0.25 + site) * a
        cx = (np.arange(-1, int(nx * dx / a) + 2) + 0.25 + site) * a
        cy, cx = (
            cy[(cy > -4 * spec.sigma_A) & (cy < ny * dx + 4 * spec.sigma_A)],
            cx[(cx > -4 * spec.sigma_A) & (cx < nx * dx + 4 * spec.sigma_A)],
        )
        present = rng.random((len(cy), len(cx))) >= spec.vacancy_fraction
        iy, ix = np.nonzero(present)
        weight = spec.phase_per_atom_rad * (z_num / z_max) ** 0.67
        # sum over atoms of w g(y - y_j) g(x - x_j) as one matrix product (NY, n) @ (n, NX)
        gy = np.exp(-((ys_px[:, None] - cy[None, iy]) ** 2) / (2 * spec.sigma_A**2))
        gx = np.exp(-((xs_px[:, None] - cx[None, ix]) ** 2) / (2 * spec.sigma_A**2))
        phases[k] = weight * gy @ gx.T
        zc = (k + 0.5) * spec.slice_thickness_A
        atoms.append(np.stack([cx[ix], cy[iy], np.full(len(iy), zc)], axis=1))
        numbers.append(np.full(len(iy), z_num, dtype=np.int64))
    return phases, np.concatenate(atoms), np.concatenate(numbers)


def _read(fs: ArrayFileSpec, where: str) -> np.ndarray:
    from ptyrad_core.setup.sources import read_array

    return read_array(Path(fs.path), fs.key, where)


def _probe(spec: SimulationSpec) -> np.ndarray:
    from ptyrad_core.setup.optics import make_probe

    ex = spec.experiment
    if spec.probe.source == "file":
        probe = np.asarray(_read(spec.probe.file, "probe.file"))
        if probe.ndim == 3 and probe.shape[0] == 1:
            probe = probe[0]
        if probe.ndim != 2 or probe.shape != (ex.pattern_px, ex.pattern_px):
            raise DataError(
                f"probe.file: expected a ({ex.pattern_px}, {ex.pattern_px}) probe (experiment.pattern_px), "
                f"got shape {probe.shape}"
            )
        probe = probe.astype(np.complex128)
        return probe / np.sqrt(np.sum(np.abs(probe) ** 2))
    return make_probe(ex.pattern_px, ex.dx_A, ex.energy_kV, ex.conv_angle_mrad, ex.aberrations)


#: the most electrons per pattern whose shot noise is drawn (numpy's Poisson sampler stops near 1e19)
MAX_ELECTRONS = 1e18


def _lattice_shape(spec: SimulationSpec, step_px: float) -> tuple[int, int]:
    """``(NY, NX)`` of the lattice object: ``object.shape_px``, or the scan's windows with the margin."""
    ob, sc, ex = spec.object, spec.scan, spec.experiment
    if ob.shape_px is not None:
        return tuple(ob.shape_px)
    pad = math.ceil((ob.margin_A + 4 * sc.position_error_A) / ex.dx_A)
    return tuple(ex.pattern_px + math.floor((n - 1) * step_px) + 2 + 2 * pad for n in (sc.n_slow, sc.n_fast))


def check_memory(spec: SimulationSpec, step_px: float) -> None:
    """Refuse, before anything is allocated, a simulation whose float64 arrays exceed the memory
    available (:func:`ptyrad_core.setup.memory.available`): the object (phase slices, the model's
    amplitude and phase, the lattice's temporaries: about 48 bytes per voxel) and one batch of
    complex128 waves through every slice and the far field (``batch_size x pattern_px^2 x 16 x
    (slices + 4)``). A lattice object's size follows from the spec; a file's is read first."""
    from ptyrad_core.setup import memory

    ob, ex = spec.object, spec.experiment
    k = ex.pattern_px
    waves = min(spec.batch_size, spec.scan.n_slow * spec.scan.n_fast) * k * k * 16 * (ob.slices + 4)
    if ob.source == "lattice":
        ny, nx = _lattice_shape(spec, step_px)
        need = ny * nx * ob.slices * 48 + waves
        what = f"a {ny} x {nx} px object of {ob.slices} slices and batches of {spec.batch_size} {k} px waves"
    else:
        need, what = waves, f"batches of {spec.batch_size} {k} px waves"
    limit, where = memory.available("host")
    if limit is not None and need > limit:
        raise DataError(
            f"simulate: {what} need about {need / 2**20:.0f} MiB, {limit / 2**20:.0f} MiB available "
            f"({where}); lower object.shape_px / margin_A, the scan (n_slow, n_fast, step_A), "
            "experiment.pattern_px or batch_size"
        )


def _object(spec: SimulationSpec, step_px: float, rng):
    ob, ex = spec.object, spec.experiment
    if ob.source == "file":
        phases = np.asarray(_read(ob.file, "object.file"), dtype=np.float64)
        if phases.ndim == 2:
            phases = phases[None]
        if phases.ndim != 3 or np.iscomplexobj(phases):
            raise DataError(f"object.file: expected real phase slices (Nz, NY, NX), got shape {phases.shape}")
        return phases, None, None
    return lattice_object(ob, _lattice_shape(spec, step_px), ex.dx_A, rng)


def _aberration_attrs(aberrations: dict) -> tuple[float, float]:
    from ptyrad_core.setup.optics import parse_aberrations

    c10 = parse_aberrations(aberrations).get((1, 0), (0.0, 0.0))[0]
    return float(c10), float(-c10)


# --------------------------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------------------------


def iter_patterns(
    phases: np.ndarray,
    probe: np.ndarray,
    positions_px: np.ndarray,
    *,
    dx: float,
    energy_kv: float,
    slice_thickness: float,
    tilt_mrad=(0.0, 0.0),
    batch_size: int = 256,
):
    """Yield ``(start, patterns)`` batches of noiseless far-field intensities ``(B, K, K)``
    float64 (zero frequency at K/2, sum = total exit-wave intensity) of a pure phase object, in
    scan order, from :class:`~ptyrad_core.kernel.model.PtychoModel` in float64."""
    import torch

    from ptyrad_core.kernel.model import PtychoModel
    from ptyrad_core.setup.optics import electron_wavelength

    model = PtychoModel(
        object_amplitude=np.ones_like(phases)[None],
        object_phase=phases[None],
        probe=probe[None],
        positions_px=positions_px,
        tilts_mrad=np.asarray(tilt_mrad, dtype=np.float64)[None],
        slice_thickness=slice_thickness,
        wavelength=electron_wavelength(energy_kv),
        dx=dx,
        dtype=torch.float64,
    )
    with torch.no_grad():
        for start in range(0, len(positions_px), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(positions_px)))
            yield start, model(idx)[0].numpy()


def simulate_patterns(
    phases: np.ndarray, probe: np.ndarray, positions_px: np.ndarray, **kwargs
) -> np.ndarray:
    """All noiseless patterns ``(N, K, K)`` float64 at once (:func:`iter_patterns`' arguments)."""
    out = np.empty((len(positions_px), *probe.shape))
    for start, block in iter_patterns(phases, probe, positions_px, **kwargs):
        out[start : start + len(block)] = block
    return out


def spec_inputs(spec: SimulationSpec) -> list[Path]:
    """The files a simulation reads (probe, object, true positions)."""
    holders = (spec.probe.file, spec.object.file, spec.scan.true_positions)
    return [Path(h.path) for h in holders if h is not None and h.path is not None]


def is_simulation(path) -> bool:
    """Whether ``path`` is a dataset this module wrote (its ``simulator`` attribute is :data:`SIMULATOR`)."""
    try:
        with h5py.File(path, "r") as f:
            value = f.attrs.get("simulator")
    except (OSError, ValueError):
        return False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value == SIMULATOR


def simulate(spec: SimulationSpec | dict, output=None, *, overwrite: bool = False, inputs=()) -> Path:
    """Simulate a dataset and write it (HDF5, data/README.md layout); return the file's path.

    The output is checked before the simulation (:func:`ptyrad_core.engine.outputs.check_new_file`):
    never a file the spec reads (or one of ``inputs``, e.g. the spec file); an existing file only
    when it is a previous simulation (:func:`is_simulation`) or with ``overwrite``.

    :param spec: a :class:`SimulationSpec` or a dict validated into one.
    :param output: the file to write; overrides ``spec.output``.
    :param overwrite: replace an existing file that is not a previous simulation.
    :param inputs: more files that must never be written (the spec file).
    """
    if isinstance(spec, dict):
        spec = build_spec(spec)
    out = Path(output) if output is not None else spec.output
    if out is None:
        raise ConfigError("simulate: no output file (spec.output or the output argument)")
    from ptyrad_core.engine.outputs import check_new_file

    check_new_file(
        out,
        "-o" if output is not None else "output",
        inputs=[*spec_inputs(spec), *inputs],
        overwrite=overwrite,
        is_previous_output=is_simulation,
        kind="simulated dataset",
    )
    ex, sc, ob = spec.experiment, spec.scan, spec.object
    rng = np.random.default_rng(spec.seed)
    rng_object, rng_positions, rng_noise = (
        np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(3)
    )
    k = ex.pattern_px
    step_px = sc.step_A / ex.dx_A
    check_memory(spec, step_px)
    probe = _probe(spec)
    phases, atoms, numbers = _object(spec, step_px, rng_object)
    shape = phases.shape[1:]
    nominal = raster_nominal(sc.n_slow, sc.n_fast, step_px, shape, k)
    n = sc.n_slow * sc.n_fast
    high = np.array(shape, dtype=float) - k  # largest corner whose window (and crop) fits
    if sc.true_positions is not None:
        true = np.asarray(_read(sc.true_positions, "scan.true_positions"), dtype=np.float64)
        if true.shape != (n, 2):
            raise DataError(
                f"scan.true_positions: expected shape ({n}, 2) for a {sc.n_slow} x {sc.n_fast} scan, "
                f"got {true.shape}"
            )
    else:
        true = (
            nominal + rng_positions.normal(0.0, sc.position_error_A / ex.dx_A, nominal.shape)
            if sc.position_error_A > 0
            else nominal.copy()
        )
        true = np.clip(true, 0.0, high)
    for name, pos in (("nominal", nominal), ("true", true)):
        if (pos < 0).any() or (np.floor(pos) > high).any():
            raise DataError(
                f"simulate: {name} scan windows ({k} px) leave the {shape[0]} x {shape[1]} px object: "
                f"the scan spans {(sc.n_slow - 1) * sc.step_A:.4g} x {(sc.n_fast - 1) * sc.step_A:.4g} A; "
                "use a larger object "
                "(object.shape_px / margin_A) or a smaller scan"
            )
    dose = spec.dose_e_per_A2 or 0.0
    electrons = dose * sc.step_A**2 if dose > 0 else 1.0
    c10, defocus = _aberration_attrs(ex.aberrations)

    from ptyrad_core.setup.optics import electron_wavelength

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    chunks = (1, 1, k, k)
    try:
        with h5py.File(tmp, "w") as f:
            # written batch by batch: memory holds one batch of patterns, not the whole scan
            dsets = [
                f.create_dataset(
                    name,
                    shape=(sc.n_slow, sc.n_fast, k, k),
                    dtype=np.float32,
                    chunks=chunks,
                    compression="gzip",
                    compression_opts=4,
                )
                for name in ("measurements", "measurements_noiseless")
            ]
            batches = iter_patterns(
                phases,
                probe,
                true,
                dx=ex.dx_A,
                energy_kv=ex.energy_kV,
                slice_thickness=ob.slice_thickness_A,
                tilt_mrad=spec.tilt_mrad,
                batch_size=spec.batch_size,
            )
            for start, block in batches:
                noiseless = electrons * block
                measured = rng_noise.poisson(noiseless) if dose > 0 else noiseless
                for j in range(len(block)):
                    row, col = divmod(start + j, sc.n_fast)
                    dsets[0][row, col] = measured[j]
                    dsets[1][row, col] = noiseless[j]
            f["positions_nominal_px"] = nominal
            f["positions_true_px"] = true
            f.create_dataset(
                "ground_truth/phase_slices",
                data=phases.astype(np.float32),
                compression="gzip",
                compression_opts=4,
            )
            f["ground_truth/phase_projected"] = phases.sum(axis=0).astype(np.float32)
            f["ground_truth/probe"] = probe.astype(np.complex64)
            if atoms is not None:
                f["ground_truth/atoms_positions_A"] = atoms
                f["ground_truth/atoms_numbers"] = numbers
            attrs = {
                "energy_kV": float(ex.energy_kV),
                "wavelength_A": electron_wavelength(ex.energy_kV),
                "conv_angle_mrad": float(ex.conv_angle_mrad),
                "defocus_A": defocus,
                "C10_A": c10,
                "defocus_convention": "abTEM: defocus = -C10",
                "aberrations": json.dumps(ex.aberrations),
                "dx_A": float(ex.dx_A),
                "dk_invA": 1.0 / (k * ex.dx_A),
                "pattern_px": k,
                "scan_step_A": float(sc.step_A),
                "N_scan_slow": sc.n_slow,
                "N_scan_fast": sc.n_fast,
                "electrons_per_pattern": float(electrons),
                "dose_e_per_A2": float(dose),
                "n_slices": phases.shape[0],
                "slice_thickness_A": float(ob.slice_thickness_A),
                "thickness_A": float(ob.slice_thickness_A * phases.shape[0]),
                "tilt_mrad_yx": np.asarray(spec.tilt_mrad, dtype=np.float64),
                "tilt_convention": (
                    "(y, x) in mrad; propagator exp(-i pi lambda k^2 dz + 2 pi i dz (kx tan tx + ky tan ty))"
                ),
                "object_shape_px": np.asarray(shape, dtype=np.int64),
                "position_error_sigma_A": float(sc.position_error_A),
                "source_size_sigma_A": 0.0,
                "probe_source": spec.probe.source,
                "sample": spec.sample,
                "simulator": SIMULATOR,
                "seed": spec.seed,
                "spec": spec.model_dump_json(),
            }
            for key, value in attrs.items():
                f.attrs[key] = value
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def simulate_command(spec_path, out_path=None, console=None, overwrite: bool = False) -> Path:
    """``ptyrad-core simulate SPEC.yaml [-o OUT.h5]``: simulate, write and print a short summary."""
    from rich.console import Console

    console = console or Console()
    spec = load_spec(spec_path)
    path = simulate(spec, out_path, overwrite=overwrite, inputs=[spec_path])
    with h5py.File(path, "r") as f:
        a = f.attrs
        shape = f["measurements"].shape
        obj = f["ground_truth/phase_slices"].shape
        console.print(
            f"wrote {path}: {shape[0]} x {shape[1]} patterns of {shape[2]} x {shape[3]} px, "
            f"object {obj[0]} x {obj[1]} x {obj[2]} px "
            f"(dz = {a['slice_thickness_A']:.4g} A), "
            f"{a['electrons_per_pattern']:.4g} electrons per pattern",
            highlight=False,
        )
    return path

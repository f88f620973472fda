"""The run configuration: pydantic models and readable validation errors (reading a file, ``--set``
overrides and translation: :mod:`ptyrad_core.setup.config_file`).

Validation has two phases. The core schema below checks every section and, for plugin
components, only ``{name, options: dict, ...}``; then each selected component validates its own
``options`` with its own ``Options`` model (:func:`validate_components`). Errors name the YAML
file and line, the dotted key path (``loss[0].options.dp_pow``), what was expected, and for
unknown keys the closest valid spelling.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ptyrad_core.kernel.errors import ConfigError, PluginError
from ptyrad_core.kernel.schedule import Schedule


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, and so are NaN and infinite numbers
    (every float of the schema is a physical quantity, a weight or a time: none may be NaN or +-inf)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PluginsSection(Strict):
    modules: list[str] = Field(
        default_factory=list,
        description="Extra plugin modules: dotted module names or paths to .py files (relative to the config "
        "file).",
    )
    disable: list[str] = Field(
        default_factory=list, description="Plugin names to block (as listed by `ptyrad-core plugins`)."
    )


class ComponentSpec(Strict):
    name: str = Field(description="Registered component name (see `ptyrad-core plugins`).")
    options: dict[str, Any] = Field(default_factory=dict, description="The component's own options.")


def _window_not_empty(spec):
    """``end_iter`` (exclusive) must lie above ``start_iter``: an empty window never runs, silently."""
    start, end = spec.start_iter, spec.end_iter
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end_iter {end} is not above start_iter {start} (exclusive): it would never run")
    return spec


class LossSpec(ComponentSpec):
    weight: float = Field(1.0, description="Weight of this term in the total loss.")


class ConstraintSpec(ComponentSpec):
    start_iter: int | None = Field(1, ge=1, description="First iteration it runs at; null = never.")
    step: int = Field(1, ge=1, description="Runs every `step` iterations from start_iter.")
    end_iter: int | None = Field(
        None, ge=1, description="Iteration from which it stops (exclusive); null = never stops."
    )

    _window = model_validator(mode="after")(_window_not_empty)

    @property
    def schedule(self) -> Schedule:
        """The iterations it runs at (the rule shared with the parameters' windows)."""
        return Schedule(start_iter=self.start_iter, end_iter=self.end_iter, step=self.step)

    def runs_at(self, iteration: int) -> bool:
        return self.schedule.runs_at(iteration)


class DataSection(Strict):
    path: Path = Field(
        description="Measurement file (relative paths are taken from the config file's folder)."
    )
    loader: str = Field("auto", description="Loader name, or 'auto' to choose by file type.")
    options: dict[str, Any] = Field(default_factory=dict, description="The loader's own options (e.g. key).")

    negative_values: Literal["error", "clip"] = Field(
        "error",
        description="Negative intensities left after preprocessing: 'error' rejects the data, 'clip' sets "
        "them to 0.",
    )
    preprocess: list[ComponentSpec] = Field(
        default_factory=list,
        description="Preprocessing steps applied in order to the loaded patterns (see docs/plugins.md).",
    )
    memory_budget_MB: float = Field(
        4096,
        gt=0,
        description="Measurements larger than this (as float32) stay on disk and are read per batch.",
    )
    device_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32",
        description="Type of in-memory measurements on the compute device: bfloat16 / float16 halve their "
        "memory (batches are compared in float32; docs/scaling.md).",
    )


CALIBRATIONS = {
    "dx_A": "real-space pixel size in Angstrom (= 1 / (N dk), N the pattern size)",
    "dk_invA": "detector pixel size in 1/Angstrom",
    "kmax_invA": "spatial frequency at the detector edge in 1/Angstrom (= N dk / 2)",
    "da_mrad": "detector pixel size in mrad",
    "angle_max_mrad": "scattering angle at the detector edge in mrad",
    "n_alpha": "detector edge in units of the convergence angle",
    "rbf_px": "radius of the bright-field disk in detector pixels",
    "fit_rbf": "true: fit the bright-field disk radius to the mean pattern (half-maximum area)",
}


class ExperimentSection(Strict):
    energy_kV: float = Field(gt=0, description="Acceleration voltage in kV.")
    conv_angle_mrad: float = Field(gt=0, description="Probe convergence semi-angle in mrad.")
    aberrations: dict[str, float] = Field(
        default_factory=dict,
        description="Aberrations in Angstrom / degrees, Krivanek (C10, C12, phi12, C12a ...), Haider (C1, "
        "A1, ...) or aliases (defocus = -C10, Cs = C30).",
    )
    dx_A: float | None = Field(
        None, gt=0, description="Calibration (give exactly one): " + CALIBRATIONS["dx_A"] + "."
    )
    dk_invA: float | None = Field(None, gt=0, description="Calibration: " + CALIBRATIONS["dk_invA"] + ".")
    kmax_invA: float | None = Field(None, gt=0, description="Calibration: " + CALIBRATIONS["kmax_invA"] + ".")
    da_mrad: float | None = Field(None, gt=0, description="Calibration: " + CALIBRATIONS["da_mrad"] + ".")
    angle_max_mrad: float | None = Field(
        None, gt=0, description="Calibration: " + CALIBRATIONS["angle_max_mrad"] + "."
    )
    n_alpha: float | None = Field(None, gt=0, description="Calibration: " + CALIBRATIONS["n_alpha"] + ".")
    rbf_px: float | None = Field(None, gt=0, description="Calibration: " + CALIBRATIONS["rbf_px"] + ".")
    fit_rbf: bool = Field(False, description="Calibration: " + CALIBRATIONS["fit_rbf"] + ".")

    @model_validator(mode="after")
    def _one_calibration(self):
        given = [
            k
            for k in CALIBRATIONS
            if (getattr(self, k) is not None and k != "fit_rbf") or (k == "fit_rbf" and self.fit_rbf)
        ]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one calibration of the detector ({', '.join(CALIBRATIONS)}), got "
                f"{', '.join(given) if given else 'none'}"
            )
        return self

    @property
    def calibration(self) -> str:
        """The name of the calibration given (``dx_A``, ..., ``fit_rbf``)."""
        return next(
            k
            for k in CALIBRATIONS
            if (getattr(self, k) is not None and k != "fit_rbf") or (k == "fit_rbf" and self.fit_rbf)
        )

    @property
    def calibration_text(self) -> str:
        """``experiment.<key> = <value>`` of the calibration given (``experiment.fit_rbf`` for the fit)."""
        key = self.calibration
        return f"experiment.{key}" if key == "fit_rbf" else f"experiment.{key} = {getattr(self, key):g}"

    def detector_pixel(self, npix: int, wavelength: float, rbf_px: float | None = None) -> float:
        """dk in 1/Angstrom of patterns ``npix`` pixels wide (``rbf_px``: the fitted disk radius)."""
        if self.dk_invA is not None:
            return self.dk_invA
        if self.dx_A is not None:
            return 1.0 / (npix * self.dx_A)
        if self.kmax_invA is not None:
            return 2.0 * self.kmax_invA / npix
        if self.da_mrad is not None:
            return self.da_mrad * 1e-3 / wavelength
        if self.angle_max_mrad is not None:
            return 2.0 * self.angle_max_mrad * 1e-3 / wavelength / npix
        if self.n_alpha is not None:
            return 2.0 * self.n_alpha * self.conv_angle_mrad * 1e-3 / wavelength / npix
        radius = self.rbf_px if self.rbf_px is not None else rbf_px
        if radius is None:  # callers pass the fitted bright-field radius for this calibration
            raise ValueError("the bright-field radius calibration needs rbf_px (configured or fitted)")
        return self.conv_angle_mrad * 1e-3 / radius / wavelength


class Affine(Strict):
    scale: float = Field(1.0, gt=0, description="Isotropic scale of the scan.")
    asymmetry: float = Field(
        0.0, gt=-2, lt=2, description="Relative y/x scale difference: y * (1 + a/2), x * (1 - a/2); |a| < 2."
    )
    rotation_deg: float = Field(0.0, description="Scan rotation in degrees.")
    shear_deg: float = Field(0.0, description="Scan shear in degrees.")


class FlipT(Strict):
    flipud: bool = Field(False, description="Flip along the first axis.")
    fliplr: bool = Field(False, description="Flip along the second axis.")
    transpose: bool = Field(False, description="Swap the two axes (after the flips).")


class FileSource(Strict):
    """Where an array comes from when it is read from a file."""

    path: Path | None = Field(None, description="File (relative paths: from the config file's folder).")
    key: str | None = Field(None, description="Dataset key inside an HDF5 / .mat / .npz file.")
    reader: str = Field(
        "auto", description="Result reader for source 'result' (see docs/plugins.md), or 'auto'."
    )
    reader_options: dict[str, Any] = Field(
        default_factory=dict, description="The result reader's own options."
    )


class ScanSection(FileSource):
    source: Literal["raster", "file", "result"] = Field(
        "raster",
        description="'raster' from step and counts, 'file' (an (N, 2) array), or 'result' (a previous "
        "reconstruction).",
    )
    n_slow: int = Field(gt=0, description="Scan positions along the slow (y) axis, as acquired.")
    n_fast: int = Field(gt=0, description="Scan positions along the fast (x) axis, as acquired.")
    step_A: float | None = Field(None, gt=0, description="Raster step in Angstrom (source: raster).")
    flipT: FlipT = Field(
        default_factory=FlipT, description="Flips / transpose of the scan grid (PtyRAD's pos_scan_flipT)."
    )
    affine: Affine = Field(
        default_factory=Affine, description="Affine distortion of the raster (about its centre)."
    )
    jitter_px: float = Field(
        0.0, ge=0, description="Std of Gaussian random displacements added to the positions, object pixels."
    )
    units: Literal["px", "A"] = Field(
        "px",
        description="Units of the positions in a file: 'px' = pixels of the calibrated data (1 / (N dk) of "
        "the patterns the experiment calibration describes, e.g. experiment.dx_A), rescaled to the "
        "simulation pixel when preprocessing or detector stages change it; 'A' = Angstrom.",
    )

    @model_validator(mode="after")
    def _source_fields(self):
        if self.source == "raster" and self.step_A is None:
            raise ValueError("source 'raster' needs step_A")
        if self.source in ("file", "result") and self.path is None:
            raise ValueError(f"source '{self.source}' needs path")
        return self


class ProbeInit(FileSource):
    source: Literal["simulate", "result", "file"] = Field(
        "simulate",
        description="'simulate' from the experiment section, 'result' (a previous reconstruction), "
        "or 'file' (a complex (pmode, Ny, Nx) or (Ny, Nx) array).",
    )
    modes: int = Field(
        1, ge=1, description="Number of incoherent probe modes (extra modes are added or dropped)."
    )
    mode_power: float | list[float] = Field(
        0.02,
        description="Initial power fraction of each added mode (0 < p < 1), or one value per added mode (the "
        "last repeats).",
    )
    permute: list[int] | None = Field(
        None, description="Axis order that turns a file's probe array into (pmode, Ny, Nx)."
    )
    z_shift_A: float = Field(
        0.0, description="Propagate the initial probe by this distance (Angstrom, + = downstream)."
    )
    normalization: Literal["mean_total_ints", "max_total_ints", "target_intensity"] = Field(
        "mean_total_ints",
        description="Scale sum |probe|^2 to the mean or max total intensity of the patterns, or to "
        "`intensity`.",
    )
    intensity: float | None = Field(
        None, gt=0, description="Target sum |probe|^2 for normalization 'target_intensity'."
    )

    @field_validator("mode_power")
    @classmethod
    def _power_fraction(cls, v):
        # a fraction of the probe's intensity: 0 adds an empty mode, >= 1 leaves none to the first
        for p in (v or [None]) if isinstance(v, list) else [v]:
            if p is None or not 0 < p < 1:
                raise ValueError(f"each mode power must be a fraction between 0 and 1 (exclusive), got {v}")
        return v


class ZPad(Strict):
    layers: tuple[int, int] = Field((0, 0), description="Slices added before the first and after the last.")
    kind: tuple[Literal["vacuum", "edge"], Literal["vacuum", "edge"]] = Field(
        ("vacuum", "vacuum"),
        description="Added slices are vacuum (transmission 1) or copies of the edge slice.",
    )


class ZResample(Strict):
    mode: Literal["scale_slices", "scale_thickness", "target_slices", "target_thickness"] = Field(
        description="Resample the initial object along z: scale the number of slices or the thickness, or "
        "set either."
    )
    value: float = Field(gt=0, description="The scale factor, number of slices or thickness (Angstrom).")


class ObjectInit(FileSource):
    source: Literal["flat", "result", "file"] = Field(
        "flat",
        description="'flat' (amplitude 1, phase 0 plus noise), 'result' (a previous reconstruction), "
        "or 'file' (a complex (omode, Nz, NY, NX) array).",
    )
    modes: int = Field(1, ge=1, description="Number of incoherent object modes.")
    slices: int = Field(
        1, ge=1, description="Number of slices Nz (a loaded object must match after z operations)."
    )
    slice_thickness_A: float = Field(gt=0, description="Initial slice thickness in Angstrom.")
    shape: tuple[int, int] | None = Field(
        None, description="Object size (NY, NX) in pixels; null fits the scan."
    )
    phase_noise: float = Field(
        0.0, ge=0, description="Std of random initial phase (radians); needed for omode > 1."
    )
    occupancy: list[float] | None = Field(
        None, description="Object-mode occupancies (>= 0, normalised); null = equal."
    )
    z_crop: tuple[int, int] | None = Field(None, description="Keep slices [start, stop) of a loaded object.")
    z_pad: ZPad | None = Field(None, description="Add slices to a loaded object.")
    z_resample: ZResample | None = Field(
        None, description="Resample a loaded object along z (phase sum and thickness kept)."
    )

    @field_validator("occupancy")
    @classmethod
    def _weights(cls, v):
        if v is not None and (any(w < 0 for w in v) or sum(v) <= 0):
            raise ValueError(f"occupancies are weights: each >= 0 and at least one > 0, got {v}")
        return v


class TiltInit(FileSource):
    source: Literal["value", "file", "result"] = Field(
        "value", description="'value' (init_mrad), 'file' or 'result'."
    )
    mode: Literal["global", "per_position"] = Field(
        "global", description="One tilt for all positions, or one each."
    )
    init_mrad: tuple[float, float] = Field(
        (0.0, 0.0), description="Initial tilt (t_y, t_x) in mrad (source: value)."
    )


class ModelSection(Strict):
    probe: ProbeInit = Field(default_factory=ProbeInit, description="Probe modes.")
    object: ObjectInit = Field(description="Object modes, slices and size.")
    tilts: TiltInit = Field(default_factory=TiltInit, description="Beam tilts.")


class UpdateSpec(Strict):
    lr: float = Field(0.0, ge=0, description="Learning rate; 0 freezes the parameter.")
    start_iter: int | None = Field(1, ge=1, description="First iteration it is updated at.")
    end_iter: int | None = Field(None, ge=1, description="Iteration from which it is frozen (exclusive).")

    _window = model_validator(mode="after")(_window_not_empty)


class UpdateSection(Strict):
    object_amplitude: UpdateSpec = Field(default_factory=lambda: UpdateSpec(lr=5e-4))
    object_phase: UpdateSpec = Field(default_factory=lambda: UpdateSpec(lr=5e-4))
    probe: UpdateSpec = Field(default_factory=lambda: UpdateSpec(lr=1e-4))
    positions: UpdateSpec = Field(default_factory=UpdateSpec)
    tilts: UpdateSpec = Field(default_factory=UpdateSpec)
    slice_thickness: UpdateSpec = Field(default_factory=UpdateSpec)


class SchedulerSpec(Strict):
    name: str = Field(
        description="Any torch.optim.lr_scheduler class name (StepLR, ExponentialLR, CosineAnnealingLR, ...)."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the scheduler.")
    step_unit: Literal["iter", "batch"] = Field(
        "iter", description="Step the scheduler after every iteration or every optimizer step."
    )


class OptimizerSection(Strict):
    name: str = Field("Adam", description="Any torch.optim optimizer class name.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the optimizer. An optimizer with a fused implementation (Adam, "
        "AdamW, SGD, Adagrad) runs it (the same update, one kernel per parameter) unless these name fused, "
        "foreach or differentiable.",
    )
    scheduler: SchedulerSpec | None = Field(
        None, description="Learning-rate scheduler; null = constant learning rates."
    )


class IndicesSpec(Strict):
    mode: Literal["full", "sub", "center"] = Field(
        "full",
        description="'full': every position; 'sub': an evenly spaced sub-grid over the whole field; "
        "'center': the central block.",
    )
    subscan: tuple[int, int] | None = Field(
        None, description="(n_slow, n_fast) of the sub-grid or block; null = half of each."
    )


class ValidationSpec(Strict):
    """Held-out validation (docs/validation.md): a random fraction of the detector pixels of every
    pattern is kept out of the training loss and scored (``score``)."""

    fraction: float = Field(
        0.05,
        ge=0,
        le=0.5,
        description="Fraction of the detector pixels of every pattern held out of the training (a different "
        "subset per position; each pixel is held out at this fraction of the positions); 0 turns held-out "
        "validation off.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="Seed of the held-out split; null = recon.seed. A resumed run keeps its file's split.",
    )
    every: int = Field(
        1, ge=1, description="Evaluate the held-out loss every N iterations (from the same forward pass)."
    )
    score: Literal["deviance", "loss"] | Annotated[list[LossSpec], Field(min_length=1)] = Field(
        "deviance",
        description="What the held-out pixels are scored with: 'deviance', the Poisson deviance per measured "
        "count (lowest where the prediction is the expected count, at any dose: docs/validation.md); 'loss', "
        "the run's loss stack; or a list of loss terms (as `loss`).",
    )

    @property
    def enabled(self) -> bool:
        return self.fraction > 0


class StopSpec(Strict):
    """Early stopping on the held-out loss and which state the result file keeps."""

    patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many evaluated iterations without a state as good as the held-out "
        "minimum (see tolerance); null = never stop early. Needs recon.validation.fraction > 0.",
    )
    min_delta: float = Field(
        0.0,
        ge=0,
        description="Relative improvement that makes a new held-out minimum: held-out < best * (1 - "
        "min_delta). A state tied with the minimum (tolerance) is kept and restarts patience as well; "
        "set tolerance: 0 for this rule alone.",
    )
    tolerance: float = Field(
        1.0,
        ge=0,
        description="A later state whose held-out loss is within this many standard errors of the "
        "minimum (a paired difference over 16 groups of positions) counts as no worse: the run keeps the "
        "latest such state and patience counts from it. 0 = the held-out minimum alone.",
    )
    keep: Literal["best", "last"] | None = Field(
        None,
        description="State the result file holds at the end: 'best' (the latest state as good as the "
        "held-out minimum, see tolerance; the last one is kept in its checkpoint) or 'last'; null = 'best' "
        "with validation on, else 'last'.",
    )


class ReconSection(Strict):
    iterations: int = Field(gt=0, description="Number of iterations (passes over all positions).")
    batch_size: int = Field(32, gt=0, description="Positions per mini-batch.")
    grouping: Literal["random", "spread", "fps", "compact"] = Field(
        "random",
        description="random: new random batches every iteration; spread: positions spread over the field of "
        "view (Hilbert curve, O(N)); fps: farthest-point sampling, each batch's positions as far apart as "
        "possible (O(N^2) time, 4 N^2 / batch_size bytes once; PtyRAD's fps); compact: spatially clustered "
        "positions.",
    )
    grad_accumulation: int = Field(
        1, ge=1, description="Mini-batches whose gradients add up before one step."
    )
    indices: IndicesSpec = Field(
        default_factory=lambda: IndicesSpec(), description="Which scan positions take part."
    )
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Random seed (batches, initial noise), 0 <= seed < 2^63."
    )
    device: str = Field("auto", description="'auto' (CUDA if present), 'cpu', 'cuda', 'cuda:1', ...")
    precision: Literal["float32", "float64"] = Field("float32", description="Real precision of the model.")
    fft: Literal["auto", "torch", "fftw"] = Field(
        "auto",
        description="FFT library of the multislice: 'auto' (FFTW on the CPU when pyFFTW is installed, else "
        "torch.fft), 'torch' or 'fftw' (CPU only; the fftw extra). Results agree to rounding (docs: "
        "ptyrad_core.kernel.fft).",
    )
    positions_per_pass: Literal["auto"] | int = Field(
        "auto",
        description="Scan positions of a batch carried through the slices together. 'auto': on the CPU as "
        "many as make about 2 MiB of waves, which then stay in cache between the products and transforms of "
        "a slice (faster for large batches: docs/benchmarks.md); on a GPU the whole batch. Changes the "
        "result only by rounding.",
    )
    dist_timeout_s: float = Field(
        600,
        gt=0,
        description="Data-parallel runs (torchrun): seconds a process waits for the others in a collective "
        "before it stops with an error (docs/scaling.md).",
    )
    memory_check: bool = Field(
        True,
        description="Estimate the peak memory before allocating (object, probe, optimizer state, gradients, "
        "batch waves, measurements) and refuse a run that does not fit the free host / GPU memory; false "
        "skips the refusal (PTYRAD_CORE_MEMORY_LIMIT_MB sets the limit instead of the detected free "
        "memory; ptyrad_core.setup.memory).",
    )

    validation: ValidationSpec = Field(
        default_factory=ValidationSpec,
        description="Held-out detector pixels scored every iteration (docs/validation.md).",
    )
    stop: StopSpec = Field(
        default_factory=StopSpec, description="Early stopping on the held-out loss; the state kept."
    )

    @field_validator("positions_per_pass")
    @classmethod
    def _positive(cls, v):
        if v != "auto" and v < 1:
            raise ValueError(f"must be 'auto' or a number of positions >= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _stop_needs_validation(self):
        if self.stop.patience is not None and not self.validation.enabled:
            raise ValueError(
                "recon.stop.patience needs held-out validation: set recon.validation.fraction > 0 "
                "(or patience: null)"
            )
        if self.stop.keep == "best" and not self.validation.enabled:
            raise ValueError(
                "recon.stop.keep 'best' needs held-out validation: set recon.validation.fraction > 0"
            )
        return self

    @property
    def keep(self) -> str:
        """``recon.stop.keep`` resolved: 'best' with validation on unless set, else 'last'."""
        if self.stop.keep is not None:
            return self.stop.keep
        return "best" if self.validation.enabled else "last"


class FolderName(Strict):
    affixes: list[str] = Field(
        default_factory=lambda: ["default"],
        description="What goes into the folder name: presets minimal / default / all, or affixes "
        "(docs: ptyrad_core.setup.naming).",
    )
    prefix: str = Field("", description="Text at the start of the name.")
    postfix: str = Field("", description="Text at the end of the name.")
    time: str | None = Field(
        None, description="Prefix a timestamp: 'date', 'datetime', 'time' or a strftime format."
    )


class TiffExports(Strict):
    parts: list[Literal["phase", "amplitude", "probe"]] = Field(
        default=["phase"], description="What to export: object phase, amplitude, probe amplitudes."
    )
    obj_dim: list[Literal[2, 3, 4]] = Field(
        default=[2, 3], description="2: projection, 3: slices, 4: every mode and slice."
    )
    fov: list[Literal["crop", "full"]] = Field(
        default=["crop"], description="'crop': the scanned region; 'full': the whole object."
    )
    bit: list[Literal["raw", "32", "16", "8"]] = Field(
        default=["raw"],
        description="'raw' float32 values, '32' float scaled 0..1, '16' / '8' unsigned integers.",
    )


class OutputSection(Strict):
    dir: Path = Field(Path("output"), description="Output folder (relative to the working directory).")
    save_every: int = Field(
        0, ge=0, description="Write the result file every N iterations; 0 = only at the end."
    )
    log_file: bool = Field(True, description="Write run.log in the output folder.")
    name: FolderName | None = Field(
        None,
        description="Write into a sub-folder of `dir` named from the config (like PtyRAD's "
        "recon_dir_affixes); null = `dir` itself.",
    )
    figures: bool = Field(True, description="Draw figures and report.html at every save.")
    tiff: TiffExports | None = Field(
        None, description="TIFF exports of object and probe at every save (needs tifffile); null = none."
    )


@dataclass(frozen=True)
class Origin:
    """Where a config came from: relative paths resolve from ``folder`` (the file's folder);
    messages start with ``source`` (the file as given, or ``"<config>"``) and the line of a key path
    from ``lines`` (``{("loss", 0, "name"): 1-based line}``, empty without YAML text). ``file``: the
    YAML file read (absolute), ``None`` for a config built from a dict."""

    file: Path | None = None
    folder: Path = Path(".")
    source: str = "<config>"
    lines: dict[tuple, int] = field(default_factory=dict)

    def where(self, loc: tuple = ()) -> str:
        """``file:line`` of key path ``loc`` (or its nearest enclosing key with a line) for a message."""
        line = _line_for(self.lines, tuple(loc))
        return f"{self.source}:{line}" if line else self.source

    def options_error(self, exc: ValidationError, model: type[BaseModel], loc: tuple) -> str:
        """Options rejected by a component's ``Options`` ``model``: one line per problem, keys under
        ``loc``."""
        return format_validation_error(exc, model, self.source, self.lines, prefix=tuple(loc))


class Config(Strict):
    """A complete reconstruction config."""

    plugins: PluginsSection = Field(
        default_factory=PluginsSection, description="Extra plugin modules and blocked plugins."
    )
    data: DataSection = Field(description="The measurements and the loader that reads them.")
    experiment: ExperimentSection = Field(
        description="Beam energy, probe-forming optics and detector sampling."
    )
    scan: ScanSection = Field(description="Scan positions: a raster or a file.")
    model: ModelSection = Field(description="Sizes and initial values of probe, object and tilts.")
    update: UpdateSection = Field(
        default_factory=UpdateSection, description="Learning rate and iteration window per parameter."
    )
    optimizer: OptimizerSection = Field(
        default_factory=OptimizerSection, description="The torch.optim optimizer."
    )
    loss: list[LossSpec] = Field(min_length=1, description="Loss terms; total = sum of weight * term.")
    constraints: list[ConstraintSpec] = Field(
        default_factory=list, description="Constraints, applied in list order."
    )
    forward: list[ComponentSpec] = Field(
        default_factory=list, description="Forward-model extensions, chained in order."
    )
    detector: list[ComponentSpec] = Field(
        default_factory=list,
        description="Detector model: a chain of stages applied in order to the predicted patterns (a single "
        "{name, options} mapping is one stage); empty compares patterns as predicted.",
    )
    recon: ReconSection = Field(description="Iterations, batches, seed and device.")
    output: OutputSection = Field(default_factory=OutputSection, description="Where results and logs go.")
    tune: dict[str, Any] | None = Field(
        None, description="Search space and study for `ptyrad-core tune` (docs/tuning.md); ignored by `run`."
    )

    # set by build_config: where relative paths resolve from, the YAML source and its line map
    _origin: Origin = PrivateAttr(default_factory=Origin)
    # set by load_config for a file in another program's format: the translating plugin's notes
    _notes: list = PrivateAttr(default_factory=list)

    @field_validator("detector", mode="before")
    @classmethod
    def _detector_list(cls, v):
        if v is None:
            return []
        return [v] if isinstance(v, dict) else v

    @field_validator("loss")
    @classmethod
    def _finite_weights(cls, v):
        for i, spec in enumerate(v):
            if not math.isfinite(spec.weight):
                raise ValueError(f"loss[{i}].weight must be finite")
        return v

    @property
    def origin(self) -> Origin:
        """The file, folder and line map this config came from (:class:`Origin`)."""
        return self._origin

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative paths taken from the config file's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self._origin.folder / path).resolve()


# --------------------------------------------------------------------------------------------
# loading and errors
# --------------------------------------------------------------------------------------------


def _yaml_lines(text: str) -> dict[tuple, int]:
    """Map key paths (tuples of str / int) to 1-based line numbers in a YAML document."""
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    try:
        root = yaml.compose(text)
        if root is not None:
            walk(root, ())
    except (yaml.YAMLError, RecursionError):
        pass
    return lines


def dotted(loc) -> str:
    """``('loss', 0, 'options', 'dp_pow')`` -> ``loss[0].options.dp_pow``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields(model: type[BaseModel], loc):
    """``(index, annotation)`` of each field along ``loc[:-1]`` (list indices skipped); the
    annotation is ``None`` where the part is no field of a model, and the walk ends."""
    current: Any = model
    for i, part in enumerate(loc[:-1]):
        if isinstance(part, int):
            continue
        if (
            not (isinstance(current, type) and issubclass(current, BaseModel))
            or part not in current.model_fields
        ):
            yield i, None
            return
        annotation = current.model_fields[part].annotation
        yield i, annotation
        current = _unwrap(annotation)


def _model_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    """The pydantic model class that holds the key at ``loc`` (for suggestions)."""
    current: Any = model
    for _, annotation in _fields(model, loc):
        if annotation is None:
            return None
        current = _unwrap(annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _union_tag(model: type[BaseModel], loc: tuple) -> int | None:
    """The index in ``loc`` of pydantic's type tag under a field whose annotation is a union of
    several types (``int`` in ``('recon', 'positions_per_pass', 'int')``), or ``None``."""
    for i, annotation in _fields(model, loc):
        if annotation is None:
            return None
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and (
            len(set(typing.get_args(annotation)) - {type(None)}) > 1
        ):
            return i + 1 if isinstance(loc[i + 1], str) else None
    return None


def _unwrap(annotation):
    args = getattr(annotation, "__args__", None)
    if args:
        for a in args:
            inner = _unwrap(a)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], source: str, lines: dict[tuple, int], prefix: tuple = ()
) -> str:
    """One line per problem: ``file:line: key.path: message (did you mean ...?)``.

    A field that accepts several types (``'auto' | int``) gets one error per type from pydantic,
    under a tag (``positions_per_pass.int``); they become one line at the field: the error of the
    type the value went into (a list item's), else the types' messages joined by ``or``."""
    errors: list[dict] = []
    sites: dict[tuple, dict[str, Any]] = {}  # a union field's location -> its one error
    for details in exc.errors():
        loc, tag = tuple(details["loc"]), _union_tag(model, tuple(details["loc"]))
        if tag is None:
            errors.append(dict(details))
            continue
        one: dict[str, Any] = {**details, "loc": loc[:tag] + loc[tag + 1 :]}
        if len(loc) > tag + 1:  # inside one of the types: that is the error
            errors.append(one)
            sites[loc[:tag]] = {}
        elif loc[:tag] not in sites:
            sites[loc[:tag]] = one
            errors.append(one)
        elif sites[loc[:tag]]:
            sites[loc[:tag]]["msg"] += f", or: {one['msg'][0].lower()}{one['msg'][1:]}"
    out = []
    for err in errors:
        if err["loc"] in sites and not sites[err["loc"]]:
            continue  # a shallow error of a type the value did not take
        loc = prefix + tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            holder = _model_at(model, tuple(err["loc"]))
            valid = list(holder.model_fields) if holder else []
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            msg = f"unknown key {loc[-1]!r}"
            msg += f"; did you mean {close[0]!r}?" if close else ""
            if valid:
                msg += f" Valid keys here: {', '.join(valid)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            msg += f" (got {err['input']!r})"
        line = _line_for(lines, loc)
        where = f"{source}:{line}" if line else source
        out.append(f"{where}: {dotted(loc)}: {msg}")
    return "\n".join(out)


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | None:
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def nonfinite_numbers(raw, loc: tuple = ()) -> list[tuple[tuple, float]]:
    """(key path, value) of every NaN or infinite float anywhere in a parsed config (sections,
    plugin options, lists): YAML's ``.nan`` / ``.inf`` are floats, and no setting may be one."""
    if isinstance(raw, float):
        return [] if math.isfinite(raw) else [(loc, raw)]
    if isinstance(raw, dict):
        return [bad for k, v in raw.items() for bad in nonfinite_numbers(v, loc + (k,))]
    if isinstance(raw, (list, tuple)):
        return [bad for i, v in enumerate(raw) for bad in nonfinite_numbers(v, loc + (i,))]
    return []


def build_config(raw: dict, source: str = "<config>", text: str = "", base_dir: Path = Path(".")) -> Config:
    """Validate a raw dict against the core schema (plugin options are checked later)."""
    lines = _yaml_lines(text) if text else {}
    bad = nonfinite_numbers(raw)
    if bad:
        where = {
            loc: f"{source}:{_line_for(lines, loc)}" if _line_for(lines, loc) else source for loc, _ in bad
        }
        raise ConfigError(
            "\n".join(
                f"{where[loc]}: {dotted(loc)}: {value} is not a finite number; expected a finite value"
                for loc, value in bad
            )
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Config, source, lines)) from None
    file = Path(source).resolve() if not source.startswith("<") and Path(source).is_file() else None
    config._origin = Origin(file=file, folder=Path(base_dir), source=source, lines=lines)
    return config


# --------------------------------------------------------------------------------------------
# plugin options (second phase)
# --------------------------------------------------------------------------------------------


def component_specs(config: Config) -> list[tuple[str, tuple, ComponentSpec]]:
    """Every plugin component the config selects: (family, YAML path, spec)."""
    out: list[tuple[str, tuple, ComponentSpec]] = []
    out += [("loss", ("loss", i), s) for i, s in enumerate(config.loss)]
    if isinstance(score := config.recon.validation.score, list):
        out += [("loss", ("recon", "validation", "score", i), s) for i, s in enumerate(score)]
    out += [("constraint", ("constraints", i), s) for i, s in enumerate(config.constraints)]
    out += [("forward", ("forward", i), s) for i, s in enumerate(config.forward)]
    out += [("detector", ("detector", i), s) for i, s in enumerate(config.detector)]
    out += [("preprocess", ("data", "preprocess", i), s) for i, s in enumerate(config.data.preprocess)]
    return out


def file_components(config: Config) -> list[tuple[str, tuple[str, ...], str, str, str, dict[str, Any], Path]]:
    """The data loader and the result reader of each ``source: result`` section: (family, YAML path,
    key of the name, key of the options, name or ``"auto"``, options, file)."""
    d = config.data
    out: list = [("loader", ("data",), "loader", "options", d.loader, d.options, config.resolve(d.path))]
    for name in ("scan", "probe", "object", "tilts"):
        loc = (name,) if name == "scan" else ("model", name)
        h: Any = config.scan if name == "scan" else getattr(config.model, name)
        if h.source == "result" and h.path is not None:
            names = ("result_reader", loc, "reader", "reader_options")
            out.append((*names, h.reader, h.reader_options, config.resolve(h.path)))
    return out


def validate_components(config: Config, pm, checks=()) -> dict[tuple, tuple[type, BaseModel]]:
    """Resolve every selected component by name and validate its options, before any data are read:
    all families through :meth:`Registry.resolve <ptyrad_core.kernel.registry.Registry.resolve>`, the
    loader and result readers too (:func:`file_components`); ``auto`` for a missing file or one no
    plugin recognises is left to the reading, which reports it.

    :return: ``{YAML path: (component class, validated options)}``; the loader under
        ``("data", "loader")``, a result reader under the section's path plus ``"reader"``.
    """
    resolved: dict[tuple, tuple[type, BaseModel]] = {}
    problems = []
    origin = config.origin
    hooks = {"loader": "ptyrad_sniff_loader", "result_reader": "ptyrad_sniff_result"}
    wanted = [
        (family, loc, "name", "options", spec.name, spec.options, None)
        for family, loc, spec in component_specs(config)
    ]
    for family, loc, name_key, options_key, name, options, path in wanted + file_components(config):
        if (
            family in hooks
            and name == "auto"
            and path is not None
            and not (path.exists() if family == "loader" else path.is_file())
        ):
            continue  # reading it says so (a loader's data may be a folder: zarr)
        try:
            found = pm.registry(family).resolve(
                name,
                options,
                loc,
                origin=origin,
                name_key=name_key,
                field=options_key,
                sniff=getattr(pm.hook, hooks.get(family, ""), None),
                path=path,
            )
            if found is not None:
                resolved[loc if family not in hooks else loc + (name_key,)] = (found[0].cls, found[1])
        except PluginError as exc:
            problems.append(f"{origin.where(loc + (name_key,))}: {exc}")
        except ConfigError as exc:
            problems.append(str(exc))
    # further checks passed in by the layer above, e.g. setup.optim_check.check_config (optimizer and
    # scheduler): the kernel imports nothing above it; their problems are reported with the components'
    for check in checks:
        for loc, message in check(config):
            problems.append(f"{origin.where(loc)}: {dotted(loc)}: {message}")
    if problems:
        raise ConfigError("\n".join(problems))
    return resolved


def resolved_dict(config: Config, components: dict[tuple, tuple[type, BaseModel]]) -> dict:
    """The config with defaults filled in, component options included (for the result file)."""
    data = config.model_dump(mode="json")
    for _, loc, _ in component_specs(config):
        _, options = components[loc]
        node = data
        for part in loc:
            node = node[part]
        node["options"] = options.model_dump(mode="json")
    return data

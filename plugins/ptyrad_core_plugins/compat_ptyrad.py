"""PtyRAD 1.0 params files, unchanged: ``ptyrad-core run params.yaml``, ``ptyrad-core convert params.yaml``.

A YAML file whose top level holds PtyRAD's sections (``init_params``, ``hypertune_params``,
``model_params``, ``loss_params``, ``constraint_params``, ``recon_params``) and no native
section is translated into a native config by the ``ptyrad_translate_config`` hook. The
translation is PtyRAD's own reading of the file: its legacy spellings are migrated as its
parser does (``probe_defocus`` / ``probe_c3`` / ``probe_c5``, constraint ``freq``; the
deprecated ``obj_preblur_std`` and ``if_quiet`` are ignored, as PtyRAD 1.0 ignores them), and
every option the file omits takes **PtyRAD's default** (``_ptyrad_defaults.py``, generated from
PtyRAD 1.0's pydantic models by ``scripts/gen_ptyrad_defaults.py``), not ptyrad_core's. So a
file without ``constraint_params`` gets PtyRAD's default constraints (``ortho_pmode``,
``fix_probe_int``, ``obj_rblur``, ``obj_zblur``, ``pos_recenter`` every iteration), a file
without ``meas_normalization`` gets ``normalize: max_at_one``, a file without
``pos_scan_rand_std`` gets 0.15 px of position jitter, and so on. As in PtyRAD, a dict given
for a constraint or a parameter update replaces the default dict: keys it leaves out are not
filled in (``ortho_pmode: {step: 2}`` has no ``start_iter``, so it is off).

Every option of the file is either carried into the native config, or named in a note
(inert here: output naming, figures, ``torch.compile``, ...), or rejected with a
:class:`~ptyrad_core.kernel.errors.ConfigError` naming it when it would change the reconstruction and
ptyrad_core cannot do it. Nothing is dropped silently (the translation checks every key of the
file). The notes are printed by ``run`` / ``validate`` and written as comments by ``convert``.

Paths: PtyRAD takes relative paths from the working directory, ptyrad_core from the config
file's folder; every input path is made absolute against the working directory at translation
time (noted). ``output_dir`` stays as written: ``output.dir`` is taken from the working
directory in both programs.

Units: PtyRAD's and ptyrad_core's agree (positions and ``pos_scan_rand_std`` in object pixels,
tilts in mrad as (t_y, t_x), ``pos_scan_affine`` rotation and shear in degrees, lengths and
``probe_z_shift`` in Angstrom with + = downstream, aberrations in Angstrom / degrees with
``C10 = -defocus``), so values carry over unchanged. One deliberate difference: positions read
from a previous reconstruction whose ``dx`` differs from this run's (after ``meas_crop`` /
``meas_pad`` / ``simu_Npix`` crop) are rescaled by its ``dx`` / this ``dx`` so that the scan step
in Angstrom is kept (a note is logged); PtyRAD uses them pixel for pixel.

**init_params: data**

| PtyRAD | native |
| --- | --- |
| ``meas_source`` (``file``, ``h5``, ``hdf5``, ``mat``, ``tif``, ``tiff``, ``npy``, ``zarr``, ``raw``) | ``data.path`` from ``meas_params``; ``data.loader`` by file extension, as PtyRAD: ``.h5``/``.hdf5`` ``hdf5``, ``.mat`` ``mat``, ``.tif``/``.tiff`` ``tiff``, ``.npy`` ``npy``, ``.zarr`` ``zarr``, ``.raw`` ``empad``; other extensions ``auto`` (noted) |
| ``meas_source: custom`` | ConfigError (an in-memory array cannot come from a file) |
| ``meas_params.key`` | ``data.options.key`` (HDF5: PtyRAD's ``a.b`` becomes ``a/b``); ``.mat``: ``axis_order: reversed`` for v7.3 (HDF5) files and ``auto`` for v5 files, PtyRAD's orders (a missing file is taken as v7.3, noted) |
| ``meas_params.shape`` / ``offset`` / ``gap`` (``.raw``) | ``empad`` options ``shape`` (default PtyRAD's ``[pos_N_scans, meas_Npix, meas_Npix]``), ``offset`` (0), ``gap`` (1024) |
| ``meas_params.selection`` | ConfigError (use ``meas_crop``) |
| ``meas_params.zarr_kwargs``; ``shape``/``offset``/``gap`` of other files | note (not used, as PtyRAD ignores them for non-raw files) |
| ``meas_permute``, ``meas_reshape`` | ``data.preprocess`` ``permute {order}``, ``reshape {shape}`` |
| ``meas_flipT: [ud, lr, T]`` | ``flipT {flipud, fliplr, transpose}`` |
| ``meas_crop: [[slow], [fast], [ky], [kx]]`` | ``crop {scan_slow, scan_fast, ky, kx}`` |
| ``meas_remove_neg_values`` (always, default ``clip_neg``) | ``negative {mode, value, force}`` |
| ``meas_normalization`` (always, default ``max_at_one``) | ``normalize {mode, value}`` |
| ``meas_pad`` mode ``precompute`` | ``pad {npix: target_Npix, padding: padding_type, value, threshold}`` |
| ``meas_pad`` mode ``on_the_fly`` | detector stage ``pad_measurements`` (same options) |
| ``meas_resample`` mode ``precompute`` | ``resample {scale}`` and ``normalize {divide_const: 1 / scale^2}`` (PtyRAD's precomputed resampling keeps the intensity level; noted) |
| ``meas_resample`` mode ``on_the_fly`` (or ``precompute`` with on-the-fly padding, as PtyRAD) | detector stage ``resample_measurements {scale, align: edges}`` |
| ``meas_pad`` / ``meas_resample`` mode null | none (noted) |
| ``meas_add_source_size`` | ``add_source_size {std_A}`` |
| ``meas_add_detector_blur`` | ``add_detector_blur {std_px}`` |
| ``meas_add_poisson_noise`` | ``add_poisson_noise {unit (e_per_Ang2 -> e_per_A2), value}`` |
| PtyRAD's final clip of negative values | ``data.negative_values: clip`` |
| ``meas_export`` (true or a mapping) | ``export {path (file_dir / file_name.file_format), format, shape: output_shape}``, last; ``mat`` is written as HDF5 named ``.mat`` (as PtyRAD) |
| ``meas_Npix``, ``pos_N_scans`` | checked / used for the ``.raw`` shape and the simulation window; ptyrad_core reads the pattern size from the data (noted) |

**init_params: experiment and calibration**

| PtyRAD | native |
| --- | --- |
| ``probe_illum_type: electron`` | (the only kind) |
| ``probe_illum_type: xray`` | ConfigError |
| ``probe_kv``, ``probe_conv_angle`` | ``experiment.energy_kV``, ``conv_angle_mrad`` |
| ``probe_aberrations`` | ``experiment.aberrations``, canonicalised as PtyRAD does (Krivanek polar ``C{n}{m}`` / ``phi{n}{m}``, 3 decimals; Krivanek Cartesian, Haider and the aliases ``defocus``, ``Cs`` accepted) |
| ``meas_calibration {mode, value}`` | ``dx`` ``dx_A``, ``dk`` ``dk_invA``, ``kMax`` ``kmax_invA``, ``da`` ``da_mrad``, ``angleMax`` ``angle_max_mrad``, ``n_alpha`` ``n_alpha``, ``RBF`` ``rbf_px``, ``fitRBF`` (default) ``fit_rbf: true`` |
| ``simu_Npix`` + ``simu_match_mode: crop`` / ``resample`` | detector stage ``crop_simulation {npix}`` / ``resample_simulation {npix, align: edges}`` (none when ``simu_Npix`` equals the final pattern size) |
| ``model_params.detector_blur_std`` | detector stage ``psf_blur {std}``, last |

**init_params: model**

| PtyRAD | native |
| --- | --- |
| ``probe_source: simu`` / ``PtyRAD`` / ``PtyShv`` / ``py4DSTEM`` + ``probe_params`` | ``model.probe`` ``source: simulate`` / ``result`` with ``reader`` ``ptyrad`` / ``ptychoshelves`` / ``py4dstem`` and ``path`` |
| ``probe_pmode_max`` | ``model.probe.modes`` |
| ``probe_pmode_init_pows`` | ``model.probe.mode_power``: the smallest value, which is what PtyRAD 1.0 uses for every added mode |
| ``probe_permute``, ``probe_z_shift``, ``probe_normalization {mode, value}`` | ``permute``, ``z_shift_A``, ``normalization``, ``intensity`` |
| ``pos_source: simu`` | ``scan.source: raster`` with ``step_A: pos_scan_step_size`` |
| ``pos_source: PtyRAD`` / ``PtyShv`` / ``py4DSTEM`` + ``pos_params`` | ``scan.source: result`` with the reader and ``path`` |
| ``pos_source: foldslice_hdf5`` | ConfigError (no reader for it yet) |
| ``pos_N_scan_slow`` / ``pos_N_scan_fast`` | ``scan.n_slow`` / ``n_fast`` |
| ``pos_scan_flipT``, ``pos_scan_affine [scale, asym, rot, shear]``, ``pos_scan_rand_std`` (default 0.15) | ``scan.flipT``, ``scan.affine``, ``scan.jitter_px`` |
| ``obj_source: simu`` (``obj_params: [omode, Nz, Ny, Nx]`` or null) | ``model.object.source: flat``, ``shape: [Ny, Nx]``, ``phase_noise: 1e-8`` (PtyRAD's ``exp(1e-8 i U[0, 1))``) |
| ``obj_source: PtyRAD`` / ``PtyShv`` / ``py4DSTEM`` | ``model.object.source: result`` with the reader |
| ``obj_omode_max``, ``obj_omode_init_occu``, ``obj_Nlayer``, ``obj_slice_thickness`` | ``modes``, ``occupancy``, ``slices`` (after the z operations), ``slice_thickness_A`` |
| ``obj_z_crop``, ``obj_z_pad {pad_layers, pad_types}``, ``obj_z_resample {mode, value}`` | ``z_crop``, ``z_pad {layers, kind}``, ``z_resample`` (``scale_Nlayer`` ``scale_slices``, ``scale_slice_thickness`` ``scale_thickness``, ``target_Nlayer`` ``target_slices``, ``target_slice_thickness`` ``target_thickness``); for a simulated object the resulting slice count and thickness |
| ``tilt_source: simu`` ``{tilt_type: all / each, init_tilts}`` | ``model.tilts`` ``source: value``, ``mode: global / per_position``, ``init_mrad`` |
| ``tilt_source: PtyRAD`` / ``file`` | ``model.tilts`` ``source: result`` (reader ``ptyrad``) / ``file`` (``path``, ``key``) |
| any ``*_source: custom`` | ConfigError |
| ``random_seed`` | ``recon.seed`` (null: 0, noted) |

**model_params, loss_params, constraint_params, recon_params**

| PtyRAD | native |
| --- | --- |
| ``update_params.obja / objp / probe / probe_pos_shifts / obj_tilts / slice_thickness {start_iter, lr, end_iter}`` | ``update.object_amplitude / object_phase / probe / positions / tilts / slice_thickness`` |
| ``optimizer_params {name, configs}`` | ``optimizer {name, options}`` |
| ``scheduler_params {name, configs, step_unit}`` | ``optimizer.scheduler {name, options, step_unit}`` (dropped with a note for LBFGS, as PtyRAD) |
| ``optimizer_params.load_state``, ``scheduler_params.load_state`` | ConfigError |
| ``preload_data`` | note (``data.memory_budget_MB`` decides) |
| ``loss_single`` / ``loss_poissn`` / ``loss_pacbed`` / ``loss_sparse`` / ``loss_simlar`` with ``state: true`` | ``loss`` ``gaussian`` / ``poisson`` / ``pacbed`` / ``sparse`` / ``similarity`` with ``weight`` and the other keys as options |
| each ``constraint_params`` entry with ``start_iter`` not null | ``constraints`` entry of the same name (``start_iter``, ``step``, ``end_iter``, options), in PtyRAD's application order |
| ``NITER``, ``BATCH_SIZE {size, grad_accumulation}`` | ``recon.iterations``, ``batch_size``, ``grad_accumulation`` |
| ``GROUP_MODE`` | ``recon.grouping``: ``random``, ``compact`` and ``fps`` (farthest-point sampling) as they are; ``hilbert`` ``spread`` (Hilbert-curve strided, noted); ``sparse`` ``fps`` up to 65536 positions taking part, ``spread`` above, as PtyRAD chooses (noted) |
| ``INDICES_MODE {mode, subscan_slow, subscan_fast}`` | ``recon.indices {mode, subscan}`` |
| ``SAVE_ITERS``, ``output_dir`` | ``output.save_every`` (null: 0, noted), ``output.dir`` |
| ``recon_dir_affixes``, ``prefix_time``, ``prefix``, ``postfix`` (with ``SAVE_ITERS`` set) | ``output.name {affixes, time, prefix, postfix}``: a sub-folder named by ptyrad_core (``model`` becomes ``forward`` + ``detector``; ``Ls``, ``z_shift`` left out, noted); a note where the kernel has no ``output.name`` |
| ``selected_figs`` | ``output.figures`` (false for an empty list or without ``SAVE_ITERS``); a note where the kernel has no ``output.figures`` |
| ``save_result``, ``result_modes``, ``copy_params``, ``compiler_configs``, ``convergence_monitor`` | note (result files, compilation, monitoring: no effect on the reconstruction) |
| ``hypertune_params`` with ``if_hypertune: false`` | note (inert) |
| ``if_hypertune: true`` | the ``tune`` section: each ``tune_params`` entry with ``state: true`` becomes a search-space path (lrs -> ``update.*.lr``, ``dx`` -> ``experiment.dx_A``, ``C10``... -> ``experiment.aberrations`` (a and b components for non-round ones), ``Nlayer`` / ``dz`` -> ``model.object``, affine -> ``scan.affine``, tilts -> ``model.tilts.init_mrad``); sampler, pruner, storage, study name, n_trials, timeout, error_metric carried over |
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

from ptyrad_core import hookimpl
from ptyrad_core.kernel.errors import ConfigError

from . import _ptyrad_defaults as D

SECTIONS = tuple(D.MODELS["PtyRADParams"]["fields"])
READERS = {"PtyRAD": "ptyrad", "PtyShv": "ptychoshelves", "py4DSTEM": "py4dstem"}
LOADERS = {".h5": "hdf5", ".hdf5": "hdf5", ".mat": "mat", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy",
           ".zarr": "zarr", ".raw": "empad"}
CALIBRATION = {"dx": "dx_A", "dk": "dk_invA", "kMax": "kmax_invA", "da": "da_mrad", "angleMax": "angle_max_mrad",
               "n_alpha": "n_alpha", "RBF": "rbf_px"}
UPDATES = {"obja": "object_amplitude", "objp": "object_phase", "probe": "probe", "probe_pos_shifts": "positions",
           "obj_tilts": "tilts", "slice_thickness": "slice_thickness"}
LOSSES = {"loss_single": "gaussian", "loss_poissn": "poisson", "loss_pacbed": "pacbed", "loss_sparse": "sparse",
          "loss_simlar": "similarity"}
Z_RESAMPLE = {"scale_Nlayer": "scale_slices", "scale_slice_thickness": "scale_thickness",
              "target_Nlayer": "target_slices", "target_slice_thickness": "target_thickness"}
SCHEDULE_KEYS = ("start_iter", "step", "end_iter")
#: recon_params options that only name, draw, compile or monitor: no effect on the result
INERT_RECON = ("recon_dir_affixes", "prefix_time", "prefix", "postfix", "save_result", "result_modes",
               "selected_figs", "copy_params", "compiler_configs", "convergence_monitor")
#: x-ray probe options, cleared by PtyRAD for electrons
XRAY = ("beam_kev", "probe_dRn", "probe_Rn", "probe_D_H", "probe_D_FZP", "probe_Ls")
# PtyRAD's aberration names (ptyrad.optics.aberrations): Haider name -> ((n, m), Haider / Krivanek)
HAIDER = {"C1": ((1, 0), 1.0), "A1": ((1, 2), 1.0), "B2": ((2, 1), 1 / 3), "A2": ((2, 3), 1.0),
          "C3": ((3, 0), 1.0), "S3": ((3, 2), 1 / 4), "A3": ((3, 4), 1.0), "B4": ((4, 1), 1 / 4),
          "D4": ((4, 3), 1 / 4), "A4": ((4, 5), 1.0), "C5": ((5, 0), 1.0), "S5": ((5, 2), 1 / 6),
          "R5": ((5, 4), 1 / 6), "A5": ((5, 6), 1.0)}
ALIASES = {"defocus": ("C10", -1.0), "Cs": ("C30", 1.0)}
LEGACY_ABERRATIONS = {"probe_defocus": ("defocus", ("defocus", "C1", "C10")),
                      "probe_c3": ("C30", ("C30", "C3", "Cs")), "probe_c5": ("C50", ("C50", "C5"))}


def native_sections() -> set[str]:
    from ptyrad_core.kernel.config import Config

    return set(Config.model_fields)


def output_fields() -> set[str]:
    """The native ``output`` section's keys (folder naming and figures where the kernel has them)."""
    from ptyrad_core.kernel.config import OutputSection

    return set(OutputSection.model_fields)


def recognises(raw) -> bool:
    """A PtyRAD params file: a mapping with PtyRAD's sections and no native one."""
    return isinstance(raw, dict) and bool(set(raw) & set(SECTIONS)) and not (set(raw) & native_sections())


@hookimpl
def ptyrad_translate_config(raw, path):
    if not recognises(raw):
        return None
    result = translate(raw, path)
    return result.config, result.notes


# --------------------------------------------------------------------------------------------
# bookkeeping: what the file gives, PtyRAD's defaults behind it, and what became of each key
# --------------------------------------------------------------------------------------------


class Translation:
    """The native config, the notes, and the PtyRAD options carried over (dotted names)."""

    def __init__(self, raw: dict, path, cwd=None):
        self.raw = raw
        self.path = Path(path)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.config: dict = {}
        self.notes: list[str] = []
        self.mapped: set[str] = set()
        self.noted: set[str] = set()
        self.defaults: list[str] = []
        self.hypertune: Node | None = None

    def note(self, names, text: str) -> None:
        names = [names] if isinstance(names, str) else list(names)
        self.noted.update(names)
        self.notes.append(f"{', '.join(names)}: {text}")

    def fail(self, name: str, text: str):
        raise ConfigError(f"{self.path}: {name}: {text}")

    def absolute(self, name: str, value) -> str:
        """A path of the file as PtyRAD reads it: relative to the working directory."""
        if not isinstance(value, (str, os.PathLike)):
            self.fail(name, f"expected a file path, got {value!r}")
        text = os.fspath(value)
        if os.path.isabs(text):
            return text
        out = os.path.normpath(os.path.join(self.cwd, text))
        self.note(name, f"relative path {text!r} taken from the working directory, as PtyRAD does: {out}")
        return out


class Node:
    """The value of one PtyRAD model as the file gives it, with PtyRAD's defaults behind it."""

    def __init__(self, tr: Translation, model: str, given: dict, prefix: str):
        self.tr, self.model, self.given, self.prefix = tr, model, given, prefix
        self.fields = D.MODELS[model]["fields"]
        unknown = [k for k in given if k not in self.fields]
        if unknown and D.MODELS[model]["extra"] == "forbid":
            tr.fail(self.name(unknown[0]), f"not a PtyRAD {D.PTYRAD_VERSION} option (PtyRAD rejects it too); "
                    f"valid here: {', '.join(self.fields)}")
        if unknown:
            tr.note([self.name(k) for k in unknown], "not a PtyRAD option here; PtyRAD ignores it and so does the translation")

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def has(self, key: str) -> bool:
        return key in self.given

    def get(self, key: str, mark: bool = True):
        """The value PtyRAD uses: the file's, else PtyRAD's default. ``mark``: it is carried over."""
        if key in self.given:
            if mark:
                self.tr.mapped.add(self.name(key))
            return self.given[key]
        default = self.fields[key]["default"]
        if default == D.REQUIRED:
            self.tr.fail(self.name(key), f"required by PtyRAD {D.PTYRAD_VERSION} and missing")
        return {} if default == D.MODEL_DEFAULTS else copy.deepcopy(default)

    def child(self, key: str, model: str | None = None) -> Node | None:
        """The nested model at ``key`` (``None`` if its value is null)."""
        value = self.get(key, mark=False)
        if value is None:
            if key in self.given:
                self.tr.mapped.add(self.name(key))
            return None
        if not isinstance(value, dict):
            self.tr.fail(self.name(key), f"expected a mapping, got {value!r}")
        if key in self.given and not value:
            self.tr.mapped.add(self.name(key))
        return Node(self.tr, model or self.fields[key]["models"][0], value, self.name(key))

    def note(self, key: str, text: str) -> None:
        self.tr.note(self.name(key), text)

    def fail(self, key: str, text: str):
        self.tr.fail(self.name(key), text)

    def default_used(self, *keys: str) -> None:
        self.tr.defaults += [self.name(k) for k in keys if k not in self.given]


def leaves(value, prefix: str = ""):
    """Dotted names of the leaf options of a params dict (an empty mapping is a leaf)."""
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from leaves(sub, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def covered(name: str, names: set[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in names for i in range(1, len(parts) + 1))


# --------------------------------------------------------------------------------------------
# the translation
# --------------------------------------------------------------------------------------------


def translate(raw: dict, path, cwd=None) -> Translation:
    """Translate a PtyRAD params dict; ``cwd``: the folder PtyRAD would run in (default: the current one)."""
    tr = Translation(raw, path, cwd)
    params = normalise(tr, copy.deepcopy(raw))
    root = Node(tr, "PtyRADParams", params, "")
    init = root.child("init_params")
    if init is None:
        tr.fail("init_params", "required by PtyRAD and missing")
    model = root.child("model_params")
    hypertune(tr, root.child("hypertune_params"))
    cfg = tr.config
    recon = root.child("recon_params")
    experiment(tr, init)
    data_stages = data(tr, init, model)
    scan(tr, init)
    cfg["model"] = {"probe": probe(tr, init), "object": obj(tr, init), "tilts": tilts(tr, init)}
    cfg["update"], cfg["optimizer"] = updates(tr, model)
    cfg["loss"] = losses(tr, root.child("loss_params"))
    cfg["constraints"] = constraints(tr, root.child("constraint_params"))
    cfg["detector"] = data_stages
    recon_output(tr, recon, init)
    finish_hypertune(tr)
    if tr.defaults:
        tr.notes.append(
            f"PtyRAD {D.PTYRAD_VERSION} defaults used for options the file leaves out: " + ", ".join(tr.defaults)
        )
    unhandled = [n for n in leaves(raw) if not (covered(n, tr.mapped) or covered(n, tr.noted))]
    if unhandled:
        raise ConfigError(f"{tr.path}: the PtyRAD translation does not handle {', '.join(unhandled)} (a bug: please report it)")
    order = ("data", "experiment", "scan", "model", "update", "optimizer", "loss", "constraints", "detector", "recon", "output",
             "tune")
    tr.config = {k: cfg[k] for k in order if k in cfg}
    return tr


def normalise(tr: Translation, params: dict) -> dict:
    """PtyRAD's parser: legacy spellings migrated, deprecated keys dropped (``ptyrad.params.parser``)."""
    for section in list(params):
        if section in SECTIONS and params[section] is None:
            del params[section]
            tr.note(section, "empty section: PtyRAD's defaults used")
    init = params.get("init_params")
    if isinstance(init, dict):
        aberrations = init.get("probe_aberrations")
        aberrations = dict(aberrations) if isinstance(aberrations, dict) else {}
        for legacy, (modern, blocking) in LEGACY_ABERRATIONS.items():
            if legacy in init:
                value = init.pop(legacy)
                if any(k in aberrations for k in blocking):
                    tr.note(f"init_params.{legacy}", f"ignored, as PtyRAD does: probe_aberrations already sets {modern}")
                else:
                    aberrations[modern] = value
                    tr.mapped.add(f"init_params.{legacy}")
                    tr.notes.append(f"init_params.{legacy}: PtyRAD's pre-0.1.0b13 name, read as probe_aberrations.{modern}")
        if aberrations or "probe_aberrations" in init:
            init["probe_aberrations"] = aberrations
    model = params.get("model_params")
    if isinstance(model, dict) and "obj_preblur_std" in model:
        model.pop("obj_preblur_std")
        tr.note("model_params.obj_preblur_std", "deprecated and ignored by PtyRAD 1.0, so not applied "
                "(ptyrad_core's equivalent is the forward extension object_blur)")
    recon = params.get("recon_params")
    if isinstance(recon, dict) and "if_quiet" in recon:
        recon.pop("if_quiet")
        tr.note("recon_params.if_quiet", "deprecated and ignored by PtyRAD 1.0 (use run --quiet)")
    constraints = params.get("constraint_params")
    if isinstance(constraints, dict):
        for name, spec in constraints.items():
            if not isinstance(spec, dict):
                tr.fail(f"constraint_params.{name}", f"expected a mapping, got {spec!r}")
            freq = spec.pop("freq", None)
            if freq is not None:
                tr.mapped.add(f"constraint_params.{name}.freq")
                tr.notes.append(f"constraint_params.{name}.freq: PtyRAD's pre-0.1.0b11 name, read as step "
                                "(start_iter 1 unless given), as PtyRAD does")
            elif "freq" in (tr.raw.get("constraint_params") or {}).get(name, {}):
                tr.mapped.add(f"constraint_params.{name}.freq")
            if "start_iter" not in spec and freq is None:
                tr.note(f"constraint_params.{name}", "no start_iter, which PtyRAD reads as null: off (its other "
                        "options are inert)")
            spec.setdefault("start_iter", 1 if freq is not None else None)
            spec.setdefault("step", freq if freq is not None else 1)
            spec.setdefault("end_iter", None)
    return params


TUNE_PATHS = {  # PtyRAD tune_params name -> native config path(s)
    "optimizer": ["optimizer.name"], "batch_size": ["recon.batch_size"],
    "plr": ["update.probe.lr"], "oalr": ["update.object_amplitude.lr"], "oplr": ["update.object_phase.lr"],
    "slr": ["update.positions.lr"], "tlr": ["update.tilts.lr"], "dzlr": ["update.slice_thickness.lr"],
    "dx": ["experiment.dx_A"], "pmode_max": ["model.probe.modes"], "conv_angle": ["experiment.conv_angle_mrad"],
    "z_shift": ["model.probe.z_shift_A"], "Nlayer": ["model.object.slices"], "dz": ["model.object.slice_thickness_A"],
    "scale": ["scan.affine.scale"], "asymmetry": ["scan.affine.asymmetry"], "rotation": ["scan.affine.rotation_deg"],
    "shear": ["scan.affine.shear_deg"], "tilt_y": ["model.tilts.init_mrad.0"], "tilt_x": ["model.tilts.init_mrad.1"],
}
ABERRATION_TUNES = ["C10", "C12", "C21", "C23", "C30", "C32", "C34", "C41", "C43", "C45", "C50", "C52", "C54", "C56"]
SUGGEST = {"int": "int", "float": "float", "cat": "categorical"}


def hypertune(tr: Translation, node: Node | None) -> None:
    """``hypertune_params`` -> the native ``tune`` section (docs/tuning.md), when ``if_hypertune`` is on.

    Applied after the rest of the translation (:func:`finish_hypertune`), since some tuned values
    replace others: a tuned ``dx`` becomes the calibration, tuned aberrations turn the probe's
    aberrations into Krivanek Cartesian form (as PtyRAD does before tuning; non-round ones are
    tuned as their ``a`` and ``b`` components over the same range).
    """
    if node is None or not node.given:
        if node is not None:
            tr.mapped.add("hypertune_params")
        return
    if not node.get("if_hypertune"):
        tr.note("hypertune_params", "if_hypertune is false: the tuning options are inert")
        return
    tr.hypertune = node


def finish_hypertune(tr: Translation) -> None:
    node = tr.hypertune
    if node is None:
        return
    cfg = tr.config
    tune: dict = {"params": {}}
    params_node = node.child("tune_params")
    for name in list((params_node.given if params_node else {}).keys()):
        spec = params_node.given[name]
        where = params_node.name(name)
        if not isinstance(spec, dict) or not spec.get("state"):
            tr.mapped.add(where)
            continue
        if name in ("defocus", "c3", "c5"):
            tr.fail(where, "deprecated by PtyRAD (use C10 / C30 / C50)")
        kwargs = dict(spec.get("kwargs") or {})
        suggest = SUGGEST.get(spec.get("suggest"))
        if suggest is None:
            tr.fail(f"{where}.suggest", f"expected int, float or cat, got {spec.get('suggest')!r}")
        if name == "optimizer":
            configs = kwargs.pop("optim_configs", {}) or {}
            if any(configs.values()):
                tr.fail(f"{where}.kwargs.optim_configs", "per-optimizer options cannot be tuned in ptyrad_core")
        entry = {"type": suggest, **{k: v for k, v in kwargs.items() if v is not None}}
        if name in ABERRATION_TUNES:
            _cartesian_aberrations(cfg)
            paths = [f"experiment.aberrations.{name}"] if name.endswith("0") else [
                f"experiment.aberrations.{name}a", f"experiment.aberrations.{name}b"]
        elif name in TUNE_PATHS:
            paths = TUNE_PATHS[name]
        else:
            tr.fail(where, f"not a PtyRAD tune parameter; valid: {', '.join([*TUNE_PATHS, *ABERRATION_TUNES])}")
        if name == "dx":
            exp = cfg["experiment"]
            for key in ("dx_A", "dk_invA", "kmax_invA", "da_mrad", "angle_max_mrad", "n_alpha", "rbf_px", "fit_rbf"):
                exp.pop(key, None)
            exp["dx_A"] = kwargs.get("low") if suggest != "categorical" else kwargs["choices"][0]
            tr.notes.append(f"{where}: the calibration becomes dx_A (tuned), as PtyRAD's hypertune does")
        if name in ("scale", "asymmetry", "rotation", "shear") and cfg.get("scan", {}).get("source", "raster") != "raster":
            tr.fail(where, "scan affine parameters are tuned only for raster positions")
        for path in paths:
            tune["params"][path] = entry
        tr.mapped.add(where)
    if not tune["params"]:
        node.fail("tune_params", "if_hypertune is true but no tune parameter has state: true")
    tune["n_trials"] = node.get("n_trials")
    if node.get("timeout") is not None:
        tune["timeout_s"] = node.get("timeout")
    sampler = node.child("sampler_params")
    if sampler is not None:
        tune["sampler"] = {"name": sampler.get("name"), "options": sampler.get("configs") or {}}
    pruner = node.child("pruner_params")
    if pruner is not None:
        tune["pruner"] = {"name": pruner.get("name"), "options": pruner.get("configs") or {}}
    node.default_used("n_trials", "sampler_params", "pruner_params")
    storage = node.get("storage_path")
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        storage = "sqlite:///" + tr.absolute(f"{node.name('storage_path')}", storage.removeprefix("sqlite:///"))
    tune["storage"] = storage
    tune["study_name"] = node.get("study_name")
    metric = node.get("error_metric")
    tune["objectives"] = ["contrast" if metric == "contrast" else "loss"]
    node.get("if_hypertune")
    for key in ("collate_results", "append_params", "verbosity"):
        if node.has(key):
            node.note(key, "ptyrad_core keeps every trial's folder (tune.keep) and names it by trial number")
    tr.notes.append("hypertune_params: translated into the tune section; `ptyrad-core tune FILE` runs the study, "
                    "`ptyrad-core run FILE` one reconstruction with the starting values")
    cfg["tune"] = tune


def _cartesian_aberrations(cfg: dict) -> None:
    """Rewrite the translated aberrations as Krivanek Cartesian keys (C10, C12a, C12b, ...)."""
    from ptyrad_core.setup.optics import parse_aberrations

    current = cfg["experiment"].get("aberrations") or {}
    out = {}
    for (n, m), (a, b) in parse_aberrations(current).items():
        if m == 0:
            out[f"C{n}{m}"] = a
        else:
            out[f"C{n}{m}a"], out[f"C{n}{m}b"] = a, b
    cfg["experiment"]["aberrations"] = out


def experiment(tr: Translation, init: Node) -> None:
    illum = init.get("probe_illum_type")
    if illum != "electron":
        init.fail("probe_illum_type", f"{illum!r}: only electron ptychography is available in ptyrad_core")
    xray = [init.name(k) for k in XRAY if init.given.get(k) is not None]
    given_xray = [init.name(k) for k in XRAY if k in init.given and init.given[k] is None]
    if xray:
        tr.note(xray, "x-ray probe options, ignored for an electron probe (as PtyRAD does)")
    tr.mapped.update(given_xray)
    exp: dict = {}
    for key, field in (("probe_kv", "energy_kV"), ("probe_conv_angle", "conv_angle_mrad")):
        value = init.get(key)
        if value is None:
            init.fail(key, "required for an electron probe")
        exp[field] = value
    exp["aberrations"] = aberrations(tr, init)
    cal = init.child("meas_calibration")
    if cal is None:
        init.fail("meas_calibration", "null is not accepted by PtyRAD 1.0 (default: {mode: fitRBF})")
    mode, value = cal.get("mode"), cal.get("value")
    init.default_used("meas_calibration")
    if mode == "fitRBF":
        exp["fit_rbf"] = True
        if value is not None:
            cal.note("value", f"{value} is not used with mode fitRBF (PtyRAD ignores it too)")
    elif mode in CALIBRATION:
        if value is None:
            cal.fail("value", f"mode {mode!r} needs a value")
        exp[CALIBRATION[mode]] = value
    else:
        cal.fail("mode", f"unknown calibration mode {mode!r}")
    tr.config["experiment"] = exp


def aberrations(tr: Translation, init: Node) -> dict:
    """PtyRAD's canonical form: Krivanek polar ``C{n}{m}`` / ``phi{n}{m}``, rounded to 3 decimals."""
    raw = init.get("probe_aberrations") or {}
    name = init.name("probe_aberrations")
    if not isinstance(raw, dict):
        tr.fail(name, f"expected a mapping of aberration coefficients, got {raw!r}")
    store: dict[tuple[int, int], dict[str, float]] = {}
    for key, value in raw.items():
        where = f"{name}.{key}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            tr.fail(where, f"must be a finite number (Angstrom or degrees), got {value!r}")
        nm, part, scale = parse_aberration(tr, where, str(key))
        if nm[0] > 5:
            tr.fail(where, "ptyrad_core's probe takes aberrations up to 5th order")
        if part in store.setdefault(nm, {}):
            tr.fail(where, f"sets C{nm[0]}{nm[1]} twice (PtyRAD rejects it too)")
        store[nm][part] = float(value) * scale
    out: dict[str, float] = {}
    for (n, m), parts in sorted(store.items()):
        if ("mag" in parts or "phi" in parts) and ("a" in parts or "b" in parts):
            tr.fail(name, f"C{n}{m} is given both in polar and Cartesian form (PtyRAD rejects it too)")
        if "a" in parts or "b" in parts:
            a, b = parts.get("a", 0.0), parts.get("b", 0.0)
            mag = math.hypot(a, b)
            phi = math.degrees(math.atan2(b, a) / m) if mag and m else 0.0
        else:
            mag, phi = parts.get("mag", 0.0), parts.get("phi", 0.0)
        if mag == 0:
            continue
        out[f"C{n}{m}"] = round(mag, 3)
        if m:
            out[f"phi{n}{m}"] = round(phi, 3)
    for key in raw:
        tr.mapped.add(f"{name}.{key}")
    if not raw and init.has("probe_aberrations"):
        tr.mapped.add(name)
    return out


def parse_aberration(tr: Translation, where: str, key: str) -> tuple[tuple[int, int], str, float]:
    """PtyRAD's ``Aberrations._parse_external_key``: ((n, m), 'mag' / 'phi' / 'a' / 'b', scale to Krivanek)."""
    scale = 1.0
    if key in ALIASES:
        key, scale = ALIASES[key]
    elif key in HAIDER:
        nm, h = HAIDER[key]
        return nm, "mag", 1 / h
    elif key.endswith("phi") and key[:-3] in HAIDER:
        nm = HAIDER[key[:-3]][0]
        if nm[1] == 0:
            tr.fail(where, "a round aberration has no angle")
        return nm, "phi", 1.0
    if key.startswith("phi"):
        nm = order(tr, where, key[3:])
        if nm[1] == 0:
            tr.fail(where, "a round aberration has no angle")
        return nm, "phi", 1.0
    if key.startswith("C"):
        body, part = key[1:], "mag"
        if body.endswith(("a", "b")):
            body, part = body[:-1], body[-1]
        nm = order(tr, where, body)
        if nm[1] == 0 and part != "mag":
            tr.fail(where, f"round aberration C{nm[0]}0 is a single number")
        return nm, part, scale
    tr.fail(where, "unknown aberration name: expected Krivanek (C10, C12, phi12, C12a, ...), Haider (C1, A1, "
            "A1phi, B2, ...) or defocus / Cs")


def order(tr: Translation, where: str, text: str) -> tuple[int, int]:
    if len(text) >= 2 and text.isdigit():
        n, m = int(text[0]), int(text[1:])
        if n >= 1 and 0 <= m <= n + 1 and m % 2 == (0 if n % 2 == 1 else 1):
            return n, m
    tr.fail(where, f"invalid aberration order {text!r}")


# -- data ----------------------------------------------------------------------------------


def final_pattern_size(init: Node) -> int:
    """The pattern size after PtyRAD's crop, pad and resample (PtyRAD's ``meas_Npix`` bookkeeping)."""
    npix = init.get("meas_Npix", mark=False)
    crop = init.get("meas_crop", mark=False)
    if isinstance(crop, list) and len(crop) == 4 and isinstance(crop[3], list) and len(crop[3]) == 2:
        npix = len(range(npix)[slice(*crop[3])])
    pad = init.get("meas_pad", mark=False)
    if isinstance(pad, dict) and pad.get("mode", "on_the_fly") is not None:
        npix = pad.get("target_Npix", 256)
    res = init.get("meas_resample", mark=False)
    if isinstance(res, dict) and res.get("mode", "on_the_fly") is not None:
        scale = min(res.get("scale_factors", [2, 2]))
        npix = math.floor(npix * scale)  # both resample plugins give floor(M scale) pixels
    return npix


def data(tr: Translation, init: Node, model: Node) -> list[dict]:
    """``data`` (loader, preprocessing) and the detector chain, in PtyRAD's order."""
    source = init.get("meas_source")
    if source == "custom":
        init.fail("meas_source", "'custom' (an in-memory array) cannot come from a params file")
    params = init.child("meas_params")
    if params is None:
        init.fail("meas_params", "required: {path: ..., key: ...}")
    path = tr.absolute(params.name("path"), params.get("path"))
    ext = os.path.splitext(path)[1].lower()
    loader = LOADERS.get(ext, "auto")
    if loader == "auto":
        params.note("path", f"extension {ext!r} is not one PtyRAD 1.0 reads; ptyrad_core picks a loader by sniffing")
    options: dict = {}
    key = params.get("key")
    if key is not None:
        if loader == "hdf5" and "." in key:
            options["key"] = key.replace(".", "/")
            params.note("key", f"PtyRAD reads {key!r} as the HDF5 path {options['key']!r}")
        elif loader in ("hdf5", "mat", "zarr", "auto"):
            options["key"] = key
        else:
            params.note("key", f"not used for {ext} files (PtyRAD ignores it too)")
    if loader == "mat":
        try:
            import h5py

            v73 = h5py.is_hdf5(path) if os.path.isfile(path) else None
        except OSError:
            v73 = None
        options["axis_order"] = "auto" if v73 is False else "reversed"
        if v73 is None:
            params.note("path", "not found: taken as a MATLAB v7.3 (HDF5) file, read with axis_order 'reversed' "
                        "as PtyRAD does; for a v5 file set data.options.axis_order: auto")
    raw_opts = {k: params.get(k, mark=False) for k in ("shape", "offset", "gap")}
    if loader == "empad":
        shape = raw_opts["shape"]
        if shape is None:
            n = init.given.get("pos_N_scans") or init.get("pos_N_scan_slow", mark=False) * init.get("pos_N_scan_fast", mark=False)
            shape = [n, init.get("meas_Npix", mark=False), init.get("meas_Npix", mark=False)]
        options["shape"] = list(shape)
        options["offset"] = 0 if raw_opts["offset"] is None else raw_opts["offset"]
        options["gap"] = 1024 if raw_opts["gap"] is None else raw_opts["gap"]
        tr.mapped.update(params.name(k) for k in raw_opts if params.has(k))
    else:
        unused = [params.name(k) for k, v in raw_opts.items() if v is not None]
        if unused:
            tr.note(unused, f"options for .raw files, not used for {ext} files (PtyRAD ignores them too)")
        tr.mapped.update(params.name(k) for k, v in raw_opts.items() if v is None and params.has(k))
    if params.get("selection", mark=False) is not None:
        params.fail("selection", "load-time selection is not available; crop with meas_crop instead")
    tr.mapped.update({params.name("selection")} if params.has("selection") else set())
    if params.get("zarr_kwargs", mark=False):
        params.note("zarr_kwargs", "not passed on: ptyrad_core's zarr loader opens the store read-only by itself")
    elif params.has("zarr_kwargs"):
        tr.mapped.add(params.name("zarr_kwargs"))

    steps: list[dict] = []
    stages: list[dict] = []
    permute = init.get("meas_permute")
    if permute is not None:
        steps.append({"name": "permute", "options": {"order": list(permute)}})
    reshape = init.get("meas_reshape")
    if reshape is not None:
        steps.append({"name": "reshape", "options": {"shape": list(reshape)}})
    flip = init.get("meas_flipT")
    if flip is not None and any(flip):
        steps.append({"name": "flipT", "options": dict(zip(("flipud", "fliplr", "transpose"), map(bool, flip)))})
    crop = init.get("meas_crop")
    if crop is not None:
        if not (isinstance(crop, list) and len(crop) == 4):
            init.fail("meas_crop", f"expected [[slow], [fast], [ky], [kx]], got {crop!r}")
        npix = init.get("meas_Npix", mark=False)
        sizes = (init.get("pos_N_scan_slow", mark=False), init.get("pos_N_scan_fast", mark=False), npix, npix)
        opts = {}
        for axis, size, bounds in zip(("scan_slow", "scan_fast", "ky", "kx"), sizes, crop):
            if bounds is None:
                continue
            kept = range(size)[slice(*bounds)]  # PtyRAD slices as Python does: negative and clipped bounds
            if not kept:
                init.fail("meas_crop", f"{axis} range {bounds} keeps nothing of {size}")
            opts[axis] = [kept.start, kept.stop]
            if opts[axis] != list(bounds):
                init.note("meas_crop", f"{axis} {list(bounds)} is [{kept.start}, {kept.stop}) of {size}, as Python "
                          "slicing (PtyRAD) reads it")
        if opts:
            steps.append({"name": "crop", "options": opts})
    neg = init.child("meas_remove_neg_values")
    if neg is None:
        init.fail("meas_remove_neg_values", "null is not accepted by PtyRAD 1.0 (it always removes negative values)")
    init.default_used("meas_remove_neg_values")
    steps.append({"name": "negative", "options": {"mode": neg.get("mode"), "value": neg.get("value"), "force": neg.get("force")}})
    norm = init.child("meas_normalization")
    if norm is None:
        init.fail("meas_normalization", "null is not accepted by PtyRAD 1.0 (it always normalises)")
    init.default_used("meas_normalization")
    steps.append({"name": "normalize", "options": {"mode": norm.get("mode"), "value": norm.get("value")}})

    pad = init.child("meas_pad")
    pad_otf = False
    if pad is not None:
        mode = pad.get("mode")
        if mode is None:
            tr.note(pad.prefix, "mode null: no padding (its other options are inert)")
        else:
            padding = pad.get("padding_type")
            opts = {"npix": pad.get("target_Npix"), "padding": padding}
            value, threshold = pad.get("value"), pad.get("threshold")
            if value is not None:
                opts["value"] = value
            elif padding in ("constant", "linear_ramp"):
                pad.fail("value", f"padding_type {padding!r} needs a value")
            if threshold is not None:
                opts["threshold"] = threshold
            elif padding in ("exp", "power"):
                pad.fail("threshold", f"padding_type {padding!r} needs a threshold")
            pad_otf = mode == "on_the_fly"
            if pad_otf:
                stages.append({"name": "pad_measurements", "options": opts})
            else:
                steps.append({"name": "pad", "options": opts})
    res = init.child("meas_resample")
    if res is not None:
        mode = res.get("mode")
        if mode is None:
            tr.note(res.prefix, "mode null: no resampling (its other options are inert)")
        else:
            factors = res.get("scale_factors")
            scale = min(factors)
            if factors[0] != factors[1]:
                res.note("scale_factors", f"{factors}: PtyRAD uses one factor, the smaller ({scale}), and so does ptyrad_core")
            if mode == "precompute" and pad_otf:
                res.note("mode", "precompute becomes on_the_fly because meas_pad is on_the_fly (as PtyRAD does)")
                mode = "on_the_fly"
            if mode == "on_the_fly":
                stages.append({"name": "resample_measurements", "options": {"scale": scale, "align": "edges"}})
                res.note("mode", "on_the_fly: detector stage resample_measurements with align 'edges' (PtyRAD's "
                         "interpolate grid; 'zero_frequency' keeps k = 0 centred)")
            else:
                steps.append({"name": "resample", "options": {"scale": scale}})
                steps.append({"name": "normalize", "options": {"mode": "divide_const", "value": 1 / scale**2}})
                res.note("mode", f"precompute: step resample ({scale}) followed by "
                         f"normalize divide_const {1 / scale**2:g}, which keeps PtyRAD's intensity level; the "
                         "grid differs from PtyRAD's scipy zoom (align_corners, round(M s) pixels), see the "
                         "resample step")
    source_size = init.get("meas_add_source_size")
    if source_size:
        steps.append({"name": "add_source_size", "options": {"std_A": source_size}})
    blur = init.get("meas_add_detector_blur")
    if blur:
        steps.append({"name": "add_detector_blur", "options": {"std_px": blur}})
    noise = init.child("meas_add_poisson_noise")
    if noise is not None:
        unit = noise.get("unit")
        steps.append({"name": "add_poisson_noise",
                      "options": {"unit": "e_per_A2" if unit == "e_per_Ang2" else unit, "value": noise.get("value")}})
    export = init.get("meas_export", mark=False)
    if export is True or isinstance(export, dict):
        steps.append({"name": "export", "options": export_options(tr, init, {} if export is True else export, path)})
    if init.has("meas_export") and not isinstance(export, dict):
        tr.mapped.add(init.name("meas_export"))

    tr.config["data"] = {"path": path, "loader": loader, "options": options, "negative_values": "clip",
                         "preprocess": steps}
    if model is not None and model.has("preload_data"):
        model.note("preload_data", "ptyrad_core keeps measurements in memory when they fit data.memory_budget_MB "
                   "and streams them otherwise")
    # the simulation window and the detector PSF
    final = final_pattern_size(init)
    npix, match = init.get("simu_Npix"), init.get("simu_match_mode")
    if npix is not None and npix != final:
        if match == "crop":
            stages.append({"name": "crop_simulation", "options": {"npix": npix}})
        elif match == "resample":
            stages.append({"name": "resample_simulation", "options": {"npix": npix, "align": "edges"}})
            init.note("simu_match_mode", "resample: detector stage resample_simulation with align 'edges' "
                      "(PtyRAD's interpolate grid)")
        else:
            init.fail("simu_match_mode", f"null, but simu_Npix {npix} differs from the measured pattern size "
                      f"{final}: set 'crop' or 'resample' (PtyRAD cannot run this either)")
    elif match is not None:
        init.note("simu_match_mode", f"inert: simu_Npix {'is null' if npix is None else 'equals'} the measured "
                  f"pattern size ({final})")
    blur_std = model.get("detector_blur_std") if model is not None else None
    if blur_std:
        stages.append({"name": "psf_blur", "options": {"std": blur_std}})
    tr.mapped.add(init.name("meas_Npix"))
    tr.note(init.name("meas_Npix"), f"{init.get('meas_Npix', mark=False)}: ptyrad_core reads the pattern size from "
            "the data (PtyRAD checks that the two agree)")
    return stages


def export_options(tr: Translation, init: Node, given: dict, data_path: str) -> dict:
    node = Node(tr, "MeasExport", given, init.name("meas_export"))
    if not given:
        tr.mapped.add(node.prefix)
    fmt, name, folder = node.get("file_format"), node.get("file_name"), node.get("file_dir")
    append, shape = node.get("append_shape"), node.get("output_shape")
    folder = tr.absolute(node.name("file_dir"), folder) if folder not in (None, "") else None
    options: dict = {"format": "hdf5" if fmt == "mat" else fmt}
    if shape is not None:
        options["shape"] = list(shape)
    if name == "ptyrad_init_meas" and append and fmt != "mat":
        options["path"] = folder + os.sep if folder else None  # ptyrad_core's default name is PtyRAD's
    else:
        base = folder or os.path.dirname(data_path) or str(tr.cwd)
        options["path"] = os.path.join(base, f"{name}.{fmt}")
        if append:
            node.note("append_shape", "the array shape is not appended to a custom file name")
    if options.get("path") is None:
        del options["path"]
    if fmt == "mat":
        node.note("file_format", "'mat' is written as HDF5 named .mat, as PtyRAD writes it")
    return options


# -- scan, probe, object, tilts ------------------------------------------------------------


def result_source(tr: Translation, init: Node, what: str) -> tuple[str, str | None]:
    """(PtyRAD source, absolute path or None) of ``{what}_source`` / ``{what}_params``."""
    source = init.get(f"{what}_source")
    if source == "custom":
        init.fail(f"{what}_source", "'custom' (an in-memory array) cannot come from a params file")
    params = init.get(f"{what}_params", mark=False)
    if source in READERS:
        if params is None:
            init.fail(f"{what}_params", f"{what}_source {source!r} needs the path of the result file")
        tr.mapped.add(init.name(f"{what}_params"))
        return source, tr.absolute(init.name(f"{what}_params"), params)
    return source, None


def scan(tr: Translation, init: Node) -> None:
    n_slow, n_fast = init.get("pos_N_scan_slow"), init.get("pos_N_scan_fast")
    n = init.given.get("pos_N_scans")
    if init.has("pos_N_scans"):
        if n != n_slow * n_fast:
            init.fail("pos_N_scans", f"{n} is not pos_N_scan_slow x pos_N_scan_fast = {n_slow * n_fast} "
                      "(PtyRAD rejects it too)")
        tr.mapped.add(init.name("pos_N_scans"))
    sc: dict = {}
    source, path = result_source(tr, init, "pos")
    if source == "simu":
        sc["source"] = "raster"
        if init.get("pos_params", mark=False) is not None:
            init.fail("pos_params", "must be null for pos_source 'simu'")
        tr.mapped.update({init.name("pos_params")} & {init.name(k) for k in init.given})
    elif source in READERS:
        sc.update(source="result", path=path, reader=READERS[source])
    elif source == "foldslice_hdf5":
        init.fail("pos_source", "'foldslice_hdf5' is not available: no result reader reads fold_slice's ppX / ppY files yet")
    else:
        init.fail("pos_source", f"unknown source {source!r}")
    sc.update(n_slow=n_slow, n_fast=n_fast, step_A=init.get("pos_scan_step_size"))
    flip = init.get("pos_scan_flipT")
    if flip is not None and any(flip):
        sc["flipT"] = dict(zip(("flipud", "fliplr", "transpose"), map(bool, flip)))
    affine = init.get("pos_scan_affine")
    if affine is not None and list(affine) != [1, 0, 0, 0]:
        if sc["source"] != "raster":
            init.fail("pos_scan_affine", "an affine transform of positions read from a result file is not "
                      "available (ptyrad_core applies scan.affine to a raster only)")
        sc["affine"] = dict(zip(("scale", "asymmetry", "rotation_deg", "shear_deg"), affine))
    jitter = init.get("pos_scan_rand_std")
    init.default_used("pos_scan_rand_std")
    sc["jitter_px"] = jitter or 0.0
    tr.config["scan"] = sc


def probe(tr: Translation, init: Node) -> dict:
    p: dict = {}
    source, path = result_source(tr, init, "probe")
    if source == "simu":
        p["source"] = "simulate"
        if init.get("probe_params", mark=False) is not None:
            init.fail("probe_params", "must be null for probe_source 'simu'")
        tr.mapped.update({init.name("probe_params")} & {init.name(k) for k in init.given})
    else:
        p.update(source="result", path=path, reader=READERS[source])
    p["modes"] = init.get("probe_pmode_max")
    init.default_used("probe_pmode_max")
    pows = init.get("probe_pmode_init_pows")
    if not (isinstance(pows, list) and pows):
        init.fail("probe_pmode_init_pows", f"expected a list of powers, got {pows!r}")
    p["mode_power"] = min(pows)
    if any(v != min(pows) for v in (pows[1:] if len(pows) > 1 else pows)):
        init.note("probe_pmode_init_pows", f"{pows}: PtyRAD 1.0 gives every added mode the smallest value, "
                  f"{min(pows)}, and so does the translation")
    permute = init.get("probe_permute")
    if permute is not None:
        if source == "simu" and list(permute) != sorted(permute):
            init.fail("probe_permute", "permuting a simulated probe is not available (model.probe.permute applies to "
                      "loaded probes)")
        if source != "simu":
            p["permute"] = list(permute)
    z = init.get("probe_z_shift")
    if z:
        p["z_shift_A"] = z
    norm = init.child("probe_normalization")
    if norm is not None:
        p["normalization"] = norm.get("mode")
        if p["normalization"] == "target_intensity":
            p["intensity"] = norm.get("value")
        elif norm.get("value") is not None:
            norm.note("value", f"not used with mode {p['normalization']!r} (PtyRAD ignores it too)")
    pad = init.get("meas_pad", mark=False)
    if isinstance(pad, dict) and pad.get("mode", "on_the_fly") == "on_the_fly" and p.get("normalization", "mean_total_ints") != "target_intensity":
        tr.note(init.name("probe_normalization"), "with on-the-fly meas_pad, PtyRAD adds the padded background to the "
                "total intensities the probe is scaled to; ptyrad_core scales it to the measured patterns alone")
    return p


def obj(tr: Translation, init: Node) -> dict:
    o: dict = {}
    source, path = result_source(tr, init, "obj")
    omode, nz, dz = init.get("obj_omode_max"), init.get("obj_Nlayer"), init.get("obj_slice_thickness")
    o["modes"] = omode
    occu = init.child("obj_omode_init_occu")
    if occu is not None:
        kind = occu.get("occu_type")
        values = occu.given.get("init_occu")
        if occu.has("init_occu"):
            tr.mapped.add(occu.name("init_occu"))
        if kind == "custom":
            if not values:
                occu.fail("init_occu", "occu_type 'custom' needs init_occu")
            o["occupancy"] = list(values)
            if abs(sum(values) - 1) > 1e-6:
                occu.note("init_occu", f"sums to {sum(values):g}: PtyRAD uses the values as they are, ptyrad_core "
                          "normalises them to sum 1")
        elif values is not None:
            occu.note("init_occu", "not used with occu_type 'uniform' (as PtyRAD)")
    crop, pad, res = init.get("obj_z_crop"), init.child("obj_z_pad"), init.child("obj_z_resample")
    z_ops: dict = {}
    if crop is not None:
        z_ops["z_crop"] = list(crop)
        nz = len(range(nz)[slice(*crop)])
    if pad is not None:
        layers = [x or 0 for x in pad.get("pad_layers")]
        kinds = pad.get("pad_types")
        if "mean" in kinds:
            pad.fail("pad_types", "'mean' layers are not available (ptyrad_core pads with 'vacuum' or 'edge')")
        z_ops["z_pad"] = {"layers": layers, "kind": list(kinds)}
        nz += sum(layers)
    final_dz = dz  # the thickness after the z operations (a loaded object starts from dz)
    if res is not None:
        mode, value = res.get("mode"), res.get("value")
        if mode not in Z_RESAMPLE:
            res.fail("mode", f"unknown mode {mode!r}")
        z_ops["z_resample"] = {"mode": Z_RESAMPLE[mode], "value": value}
        new = {"scale_Nlayer": nz * value, "scale_slice_thickness": nz / value, "target_Nlayer": value,
               "target_slice_thickness": nz * dz / value}[mode]
        new = int(round(new))
        final_dz, nz = dz * nz / new, new
    if source == "simu":
        shape = init.get("obj_params")
        o["source"] = "flat"
        if shape is not None:
            if not (isinstance(shape, list) and len(shape) == 4):
                init.fail("obj_params", f"expected [omode, Nz, Ny, Nx] for obj_source 'simu', got {shape!r}")
            if z_ops == {} and shape[1] != nz:
                init.fail("obj_params", f"Nz = {shape[1]} differs from obj_Nlayer = {nz} (PtyRAD rejects it too)")
            o["shape"] = [shape[2], shape[3]]
            if shape[0] != omode:
                init.note("obj_params", f"{shape[0]} modes are padded / cut to obj_omode_max = {omode}, as PtyRAD does")
            init.note("obj_params", "the scan is centred in the given object; PtyRAD places it where its own "
                      "1.2 x scan canvas would put it")
        o["phase_noise"] = 1e-8
        if z_ops:
            names = [init.name(k) for k in ("obj_z_crop", "obj_z_pad", "obj_z_resample") if k in init.given]
            tr.note(names, f"applied to PtyRAD's near-vacuum simulated object: a flat object of {nz} slices of "
                    f"{final_dz:.6g} A")
        dz = final_dz
        tr.notes.append("init_params.obj_source: 'simu' is PtyRAD's exp(1e-8 i U[0, 1)) initial phase, here "
                        "model.object.phase_noise 1e-8 (Gaussian)")
    else:
        o.update(source="result", path=path, reader=READERS[source])
        o.update(z_ops)
        if z_ops:
            tr.notes.append(f"model.object.slices: {nz}, the slices of the loaded object after the z operations "
                            f"when it has obj_Nlayer = {init.get('obj_Nlayer', mark=False)} slices (PtyRAD counts them itself)")
        tr.notes.append("init_params.obj_slice_thickness: ptyrad_core starts from the slice thickness stored in "
                        "the result file when it has one; PtyRAD uses obj_slice_thickness")
    o["slices"] = nz
    o["slice_thickness_A"] = dz
    return o


def tilts(tr: Translation, init: Node) -> dict:
    source = init.get("tilt_source")
    if source == "custom":
        init.fail("tilt_source", "'custom' (an in-memory array) cannot come from a params file")
    if source == "simu":
        node = init.child("tilt_params", "TiltParams")
        if node is None:
            return {"source": "value"}
        kind = node.get("tilt_type") or "all"
        values = node.get("init_tilts") or [[0, 0]]
        if len(values) != 1:
            node.fail("init_tilts", "one (t_y, t_x) pair is available as initial value (a file gives one per position)")
        return {"source": "value", "mode": "global" if kind == "all" else "per_position",
                "init_mrad": [float(values[0][0]), float(values[0][1])]}
    if source == "PtyRAD":
        value = init.get("tilt_params", mark=False)
        if not isinstance(value, (str, os.PathLike)):
            init.fail("tilt_params", f"tilt_source 'PtyRAD' needs the path of the result file, got {value!r}")
        tr.mapped.add(init.name("tilt_params"))
        path = tr.absolute(init.name("tilt_params"), value)
        init.note("tilt_source", "tilts from a PtyRAD result: model.tilts.mode global; set per_position if the file "
                  "holds one tilt per position")
        return {"source": "result", "path": path, "reader": "ptyrad", "mode": "global"}
    if source == "file":
        node = init.child("tilt_params", "FilePathWithKey")
        if node is None:
            init.fail("tilt_params", "tilt_source 'file' needs {path, key}")
        path = tr.absolute(node.name("path"), node.get("path"))
        out = {"source": "file", "path": path, "key": node.get("key"), "mode": "global"}
        if path.lower().endswith(".mat"):
            node.note("path", "a MATLAB v7.3 array is read in MATLAB's axis order by ptyrad_core, in stored order "
                      "by PtyRAD")
        inert = [node.name(k) for k in ("shape", "offset", "gap", "zarr_kwargs") if node.get(k, mark=False) is not None]
        if inert:
            tr.note(inert, "not used for a tilt file (PtyRAD refuses .raw tilt files)")
        tr.mapped.update(node.name(k) for k in ("shape", "offset", "gap", "zarr_kwargs") if node.has(k) and node.given[k] is None)
        if node.get("selection", mark=False) is not None:
            node.fail("selection", "load-time selection is not available")
        tr.mapped.update({node.name("selection")} if node.has("selection") else set())
        init.note("tilt_source", "tilts from a file: model.tilts.mode global; set per_position if the file holds "
                  "one tilt per position")
        return out
    init.fail("tilt_source", f"unknown source {source!r}")


# -- updates, optimizer, losses, constraints ------------------------------------------------


def updates(tr: Translation, model: Node | None) -> tuple[dict, dict]:
    if model is None:
        model = Node(tr, "ModelParams", {}, "model_params")
    upd = model.child("update_params")
    out: dict = {}
    for key, native in UPDATES.items():
        spec = upd.get(key, mark=False)
        if isinstance(spec, dict) and spec.get("start_iter") is not None:
            upd.default_used(key)
        if not isinstance(spec, dict):
            upd.fail(key, f"expected {{start_iter, lr, end_iter}}, got {spec!r}")
        lr = spec.get("lr")
        if not isinstance(lr, (int, float)) or isinstance(lr, bool):
            upd.fail(f"{key}.lr", f"must be a number, got {lr!r} (PtyRAD fails on it too)")
        out[native] = {"lr": lr, "start_iter": spec.get("start_iter"), "end_iter": spec.get("end_iter")}
        if upd.has(key):
            if not spec:
                tr.mapped.add(upd.name(key))
            for sub in spec:
                if sub in ("lr", "start_iter", "end_iter"):
                    tr.mapped.add(f"{upd.name(key)}.{sub}")
                else:
                    tr.note(f"{upd.name(key)}.{sub}", "not an update option; PtyRAD ignores it and so does the translation")
            if "start_iter" not in spec and lr:
                tr.notes.append(f"{upd.name(key)}: no start_iter, which PtyRAD reads as null: never updated")
    opt = model.child("optimizer_params")
    optimizer = {"name": opt.get("name"), "options": dict(opt.get("configs") or {})}
    if opt.get("load_state") is not None:
        opt.fail("load_state", "restoring an optimizer state is not available in ptyrad_core")
    sched = model.child("scheduler_params")
    if sched is not None:
        if sched.get("load_state") is not None:
            sched.fail("load_state", "restoring a scheduler state is not available in ptyrad_core")
        spec = {"name": sched.get("name"), "options": dict(sched.get("configs") or {}), "step_unit": sched.get("step_unit")}
        if optimizer["name"] == "LBFGS":
            tr.note(sched.prefix, "ignored with the LBFGS optimizer, as PtyRAD ignores it")
        else:
            optimizer["scheduler"] = spec
    return out, optimizer


def losses(tr: Translation, node: Node | None) -> list[dict]:
    node = node or Node(tr, "LossParams", {}, "loss_params")
    out, off = [], []
    for key, native in LOSSES.items():
        term = node.child(key)
        if term.get("state"):
            opts = {k: term.get(k) for k in term.fields if k not in ("state", "weight")}
            out.append({"name": native, "weight": term.get("weight"), "options": opts})
            node.default_used(key)
        elif node.has(key):
            off.append(term.prefix)
    if off:
        tr.note(off, "state false: off (their other options are inert)")
    if not out:
        tr.fail("loss_params", "no data term (loss_single, loss_poissn or loss_pacbed) has state true "
                "(PtyRAD rejects this too)")
    if not any(t["name"] in ("gaussian", "poisson", "pacbed") for t in out):
        tr.fail("loss_params", "at least one of loss_single, loss_poissn, loss_pacbed needs state true (as in PtyRAD)")
    return out


def constraints(tr: Translation, node: Node | None) -> list[dict]:
    node = node or Node(tr, "ConstraintParams", {}, "constraint_params")
    out, off = [], []
    for key in D.CONSTRAINT_ORDER:
        spec = node.child(key)
        start = spec.get("start_iter")
        if start is None:
            if node.has(key) and spec.prefix not in tr.noted:
                off.append(spec.prefix)
            continue
        node.default_used(key)
        entry = {"name": key, "start_iter": start, "step": spec.get("step"), "end_iter": spec.get("end_iter")}
        opts = {k: spec.get(k) for k in spec.fields if k not in SCHEDULE_KEYS}
        if opts:
            entry["options"] = opts
        out.append(entry)
    if off:
        tr.note(off, "start_iter null: off (their other options are inert)")
    return out


def recon_output(tr: Translation, recon: Node | None, init: Node) -> None:
    recon = recon or Node(tr, "ReconParams", {}, "recon_params")
    r: dict = {"iterations": recon.get("NITER")}
    recon.default_used("NITER")
    batch = recon.child("BATCH_SIZE")
    r["batch_size"], r["grad_accumulation"] = batch.get("size"), batch.get("grad_accumulation")
    group = recon.get("GROUP_MODE")
    ind = recon.child("INDICES_MODE")
    indices = {"mode": ind.get("mode")}
    slow, fast = ind.get("subscan_slow"), ind.get("subscan_fast")
    if indices["mode"] != "full":
        if (slow is None) != (fast is None):
            ind.fail("subscan_slow" if slow is None else "subscan_fast",
                     "give both subscan_slow and subscan_fast, or neither (PtyRAD fails on one)")
        if slow is not None:
            indices["subscan"] = [slow, fast]
    elif slow is not None or fast is not None:
        names = [ind.name(k) for k in ("subscan_slow", "subscan_fast") if ind.given.get(k) is not None]
        tr.note(names, "not used with mode 'full' (as PtyRAD)")
    r["indices"] = indices
    if group == "hilbert":
        recon.note("GROUP_MODE", "'hilbert': ptyrad_core's 'spread' grouping (Hilbert-curve strided)")
        group = "spread"
    elif group == "sparse":  # PtyRAD: fps for up to 65536 positions taking part (it is O(N^2)), hilbert above
        n_slow, n_fast = init.get("pos_N_scan_slow", mark=False), init.get("pos_N_scan_fast", mark=False)
        if indices["mode"] != "full":
            n_slow, n_fast = indices.get("subscan", (n_slow // 2, n_fast // 2))
        group = "fps" if n_slow * n_fast <= 65536 else "spread"
        recon.note("GROUP_MODE", f"'sparse': ptyrad_core's {group!r} grouping for {n_slow * n_fast} positions "
                   "(PtyRAD's choice: farthest-point sampling up to 65536 positions, Hilbert curve above)")
    r["grouping"] = group
    seed = init.get("random_seed")
    if seed is None:
        tr.note(init.name("random_seed"), "null (PtyRAD: not reproducible); ptyrad_core uses its default seed 0")
        r["seed"] = 0
    else:
        r["seed"] = seed
    tr.config["recon"] = r
    out: dict = {"dir": recon.get("output_dir")}
    save = recon.get("SAVE_ITERS")
    recon.default_used("SAVE_ITERS")
    if save is None:
        recon.note("SAVE_ITERS", "null: PtyRAD saves nothing; ptyrad_core writes result.h5 at the end (save_every 0)")
        out["save_every"] = 0
    else:
        out["save_every"] = save
    inert_keys = list(INERT_RECON)
    fields = output_fields()
    if "name" in fields and save is not None:  # PtyRAD saves into a folder named from the params
        affixes, dropped = [], []
        for affix in recon.get("recon_dir_affixes"):
            if affix == "model":
                affixes += [a for a in ("forward", "detector") if a not in affixes]
            elif affix in ("Ls", "z_shift"):
                dropped.append(affix)
            elif affix not in affixes:
                affixes.append(affix)
        stamp = recon.get("prefix_time")
        out["name"] = {"affixes": affixes, "prefix": recon.get("prefix"), "postfix": recon.get("postfix"),
                       "time": "date" if stamp is True else (stamp or None)}
        recon.default_used("recon_dir_affixes", "prefix_time")
        text = ("output.name: a sub-folder of output.dir named by ptyrad_core from the same affixes ('model' is "
                "'forward' + 'detector'); the name is not PtyRAD's character for character")
        if dropped:
            text += f"; affixes {', '.join(dropped)} are not available and left out"
        tr.note([recon.name(k) for k in ("recon_dir_affixes", "prefix_time", "prefix", "postfix") if recon.has(k)]
                or [recon.name("recon_dir_affixes")], text)
        inert_keys = [k for k in inert_keys if k not in ("recon_dir_affixes", "prefix_time", "prefix", "postfix")]
    if "figures" in fields:
        figures = recon.get("selected_figs")
        out["figures"] = bool(figures) and save is not None
        if recon.has("selected_figs"):
            recon.note("selected_figs", f"output.figures {str(out['figures']).lower()}: ptyrad_core draws its own set "
                       "of figures at every save")
        inert_keys.remove("selected_figs")
    tr.config["output"] = out
    inert = [recon.name(k) for k in inert_keys if recon.has(k)]
    if inert:
        tr.note(inert, "PtyRAD's output naming, result files, figures, torch.compile and convergence monitor: not "
                "used by ptyrad_core (no effect on the reconstruction; the result is output.dir/result.h5)")

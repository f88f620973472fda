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

from ptyrad_core.plugin import hookimpl

from .params import Node, Translation, leaves, native_sections, output_fields
from .tables import (
    ALIASES,
    CALIBRATION,
    HAIDER,
    INERT_RECON,
    LEGACY_ABERRATIONS,
    LOADERS,
    LOSSES,
    READERS,
    SCHEDULE_KEYS,
    SECTIONS,
    UPDATES,
    XRAY,
    Z_RESAMPLE,
)
from .translation import translate

# The package by section: ``tables`` (PtyRAD name -> native name), ``params`` (the file as PtyRAD
# reads it: defaults, legacy spellings, what became of each key), ``translation`` (the driver and
# the check that nothing is dropped), then one module per part of the native config:
# ``experiment``, ``data``, ``model`` (scan, probe, object, tilts), ``optimization`` (updates,
# optimizer, losses, constraints), ``recon`` (recon and output) and ``hypertune`` (tune).

__all__ = [
    "ALIASES",
    "CALIBRATION",
    "HAIDER",
    "INERT_RECON",
    "LEGACY_ABERRATIONS",
    "LOADERS",
    "LOSSES",
    "READERS",
    "SCHEDULE_KEYS",
    "SECTIONS",
    "UPDATES",
    "XRAY",
    "Z_RESAMPLE",
    "Node",
    "Translation",
    "leaves",
    "native_sections",
    "output_fields",
    "recognises",
    "translate",
    "ptyrad_translate_config",
]


def recognises(raw) -> bool:
    """A PtyRAD params file: a mapping with PtyRAD's sections and no native one."""
    return isinstance(raw, dict) and bool(set(raw) & set(SECTIONS)) and not (set(raw) & native_sections())


@hookimpl
def ptyrad_translate_config(raw, path):
    if not recognises(raw):
        return None
    result = translate(raw, path)
    return result.config, result.notes

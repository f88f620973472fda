"""PtyRAD's names and the native names they translate to (one table per kind of option)."""

from __future__ import annotations

from .. import _ptyrad_defaults as D

SECTIONS = tuple(D.MODELS["PtyRADParams"]["fields"])
READERS = {"PtyRAD": "ptyrad", "PtyShv": "ptychoshelves", "py4DSTEM": "py4dstem"}
LOADERS = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".mat": "mat",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".zarr": "zarr",
    ".raw": "empad",
}
CALIBRATION = {
    "dx": "dx_A",
    "dk": "dk_invA",
    "kMax": "kmax_invA",
    "da": "da_mrad",
    "angleMax": "angle_max_mrad",
    "n_alpha": "n_alpha",
    "RBF": "rbf_px",
}
UPDATES = {
    "obja": "object_amplitude",
    "objp": "object_phase",
    "probe": "probe",
    "probe_pos_shifts": "positions",
    "obj_tilts": "tilts",
    "slice_thickness": "slice_thickness",
}
LOSSES = {
    "loss_single": "gaussian",
    "loss_poissn": "poisson",
    "loss_pacbed": "pacbed",
    "loss_sparse": "sparse",
    "loss_simlar": "similarity",
}
Z_RESAMPLE = {
    "scale_Nlayer": "scale_slices",
    "scale_slice_thickness": "scale_thickness",
    "target_Nlayer": "target_slices",
    "target_slice_thickness": "target_thickness",
}
SCHEDULE_KEYS = ("start_iter", "step", "end_iter")
#: recon_params options that only name, draw, compile or monitor: no effect on the result
INERT_RECON = (
    "recon_dir_affixes",
    "prefix_time",
    "prefix",
    "postfix",
    "save_result",
    "result_modes",
    "selected_figs",
    "copy_params",
    "compiler_configs",
    "convergence_monitor",
)
#: x-ray probe options, cleared by PtyRAD for electrons
XRAY = ("beam_kev", "probe_dRn", "probe_Rn", "probe_D_H", "probe_D_FZP", "probe_Ls")
# PtyRAD's aberration names (ptyrad.optics.aberrations): Haider name -> ((n, m), Haider / Krivanek)
HAIDER = {
    "C1": ((1, 0), 1.0),
    "A1": ((1, 2), 1.0),
    "B2": ((2, 1), 1 / 3),
    "A2": ((2, 3), 1.0),
    "C3": ((3, 0), 1.0),
    "S3": ((3, 2), 1 / 4),
    "A3": ((3, 4), 1.0),
    "B4": ((4, 1), 1 / 4),
    "D4": ((4, 3), 1 / 4),
    "A4": ((4, 5), 1.0),
    "C5": ((5, 0), 1.0),
    "S5": ((5, 2), 1 / 6),
    "R5": ((5, 4), 1 / 6),
    "A5": ((5, 6), 1.0),
}
ALIASES = {"defocus": ("C10", -1.0), "Cs": ("C30", 1.0)}
LEGACY_ABERRATIONS = {
    "probe_defocus": ("defocus", ("defocus", "C1", "C10")),
    "probe_c3": ("C30", ("C30", "C3", "Cs")),
    "probe_c5": ("C50", ("C50", "C5")),
}
# The native config's top-level sections and output keys, as ptyrad_core.kernel.config's Config and
# OutputSection define them (a plugin reads no kernel module; tests/test_compat_ptyrad.py keeps
# these equal to the kernel's).
NATIVE_SECTIONS = frozenset(
    {
        "plugins",
        "data",
        "experiment",
        "scan",
        "model",
        "update",
        "optimizer",
        "loss",
        "constraints",
        "forward",
        "detector",
        "recon",
        "output",
        "tune",
    }
)
OUTPUT_FIELDS = frozenset({"dir", "save_every", "log_file", "name", "figures", "tiff"})

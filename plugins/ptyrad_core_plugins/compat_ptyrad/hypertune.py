"""``hypertune_params`` -> the native ``tune`` section."""

from __future__ import annotations

from .experiment import _cartesian_aberrations
from .params import Node, Translation

TUNE_PATHS = {  # PtyRAD tune_params name -> native config path(s)
    "optimizer": ["optimizer.name"],
    "batch_size": ["recon.batch_size"],
    "plr": ["update.probe.lr"],
    "oalr": ["update.object_amplitude.lr"],
    "oplr": ["update.object_phase.lr"],
    "slr": ["update.positions.lr"],
    "tlr": ["update.tilts.lr"],
    "dzlr": ["update.slice_thickness.lr"],
    "dx": ["experiment.dx_A"],
    "pmode_max": ["model.probe.modes"],
    "conv_angle": ["experiment.conv_angle_mrad"],
    "z_shift": ["model.probe.z_shift_A"],
    "Nlayer": ["model.object.slices"],
    "dz": ["model.object.slice_thickness_A"],
    "scale": ["scan.affine.scale"],
    "asymmetry": ["scan.affine.asymmetry"],
    "rotation": ["scan.affine.rotation_deg"],
    "shear": ["scan.affine.shear_deg"],
    "tilt_y": ["model.tilts.init_mrad.0"],
    "tilt_x": ["model.tilts.init_mrad.1"],
}
ABERRATION_TUNES = [
    "C10",
    "C12",
    "C21",
    "C23",
    "C30",
    "C32",
    "C34",
    "C41",
    "C43",
    "C45",
    "C50",
    "C52",
    "C54",
    "C56",
]
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
                tr.fail(
                    f"{where}.kwargs.optim_configs", "per-optimizer options cannot be tuned in ptyrad_core"
                )
        entry = {"type": suggest, **{k: v for k, v in kwargs.items() if v is not None}}
        if name in ABERRATION_TUNES:
            _cartesian_aberrations(cfg)
            paths = (
                [f"experiment.aberrations.{name}"]
                if name.endswith("0")
                else [f"experiment.aberrations.{name}a", f"experiment.aberrations.{name}b"]
            )
        elif name in TUNE_PATHS:
            paths = TUNE_PATHS[name]
        else:
            tr.fail(
                where, f"not a PtyRAD tune parameter; valid: {', '.join([*TUNE_PATHS, *ABERRATION_TUNES])}"
            )
        if name == "dx":
            exp = cfg["experiment"]
            for key in (
                "dx_A",
                "dk_invA",
                "kmax_invA",
                "da_mrad",
                "angle_max_mrad",
                "n_alpha",
                "rbf_px",
                "fit_rbf",
            ):
                exp.pop(key, None)
            exp["dx_A"] = kwargs.get("low") if suggest != "categorical" else kwargs["choices"][0]
            tr.notes.append(f"{where}: the calibration becomes dx_A (tuned), as PtyRAD's hypertune does")
        if (
            name in ("scale", "asymmetry", "rotation", "shear")
            and cfg.get("scan", {}).get("source", "raster") != "raster"
        ):
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
        storage = "sqlite:///" + tr.absolute(
            f"{node.name('storage_path')}", storage.removeprefix("sqlite:///")
        )
    tune["storage"] = storage
    tune["study_name"] = node.get("study_name")
    metric = node.get("error_metric")
    tune["objectives"] = ["contrast" if metric == "contrast" else "loss"]
    node.get("if_hypertune")
    for key in ("collate_results", "append_params", "verbosity"):
        if node.has(key):
            node.note(key, "ptyrad_core keeps every trial's folder (tune.keep) and names it by trial number")
    tr.notes.append(
        "hypertune_params: translated into the tune section; `ptyrad-core tune FILE` runs the study, "
        "`ptyrad-core run FILE` one reconstruction with the starting values"
    )
    cfg["tune"] = tune

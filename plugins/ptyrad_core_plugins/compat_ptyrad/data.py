"""``init_params``: the measurements (loader, preprocessing) and the detector chain."""

from __future__ import annotations

import math
import os

from .params import Node, Translation
from .tables import LOADERS


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
        params.note(
            "path", f"extension {ext!r} is not one PtyRAD 1.0 reads; ptyrad_core picks a loader by sniffing"
        )
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
            params.note(
                "path",
                "not found: taken as a MATLAB v7.3 (HDF5) file, read with axis_order 'reversed' "
                "as PtyRAD does; for a v5 file set data.options.axis_order: auto",
            )
    raw_opts = {k: params.get(k, mark=False) for k in ("shape", "offset", "gap")}
    if loader == "empad":
        shape = raw_opts["shape"]
        if shape is None:
            n = init.given.get("pos_N_scans") or init.get("pos_N_scan_slow", mark=False) * init.get(
                "pos_N_scan_fast", mark=False
            )
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
        params.note(
            "zarr_kwargs", "not passed on: ptyrad_core's zarr loader opens the store read-only by itself"
        )
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
    flip = init.flags("meas_flipT", ("flipud", "fliplr", "transpose"))
    if flip is not None:
        steps.append({"name": "flipT", "options": flip})
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
                init.note(
                    "meas_crop",
                    f"{axis} {list(bounds)} is [{kept.start}, {kept.stop}) of {size}, as Python "
                    "slicing (PtyRAD) reads it",
                )
        if opts:
            steps.append({"name": "crop", "options": opts})
    neg = init.child("meas_remove_neg_values")
    if neg is None:
        init.fail(
            "meas_remove_neg_values", "null is not accepted by PtyRAD 1.0 (it always removes negative values)"
        )
    init.default_used("meas_remove_neg_values")
    steps.append(
        {
            "name": "negative",
            "options": {"mode": neg.get("mode"), "value": neg.get("value"), "force": neg.get("force")},
        }
    )
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
                res.note(
                    "scale_factors",
                    f"{factors}: PtyRAD uses one factor, the smaller ({scale}), and so does ptyrad_core",
                )
            if mode == "precompute" and pad_otf:
                res.note(
                    "mode", "precompute becomes on_the_fly because meas_pad is on_the_fly (as PtyRAD does)"
                )
                mode = "on_the_fly"
            if mode == "on_the_fly":
                stages.append(
                    {"name": "resample_measurements", "options": {"scale": scale, "align": "edges"}}
                )
                res.note(
                    "mode",
                    "on_the_fly: detector stage resample_measurements with align 'edges' (PtyRAD's "
                    "interpolate grid; 'zero_frequency' keeps k = 0 centred)",
                )
            else:
                steps.append({"name": "resample", "options": {"scale": scale}})
                steps.append(
                    {"name": "normalize", "options": {"mode": "divide_const", "value": 1 / scale**2}}
                )
                res.note(
                    "mode",
                    f"precompute: step resample ({scale}) followed by "
                    f"normalize divide_const {1 / scale**2:g}, which keeps PtyRAD's intensity level; the "
                    "grid differs from PtyRAD's scipy zoom (align_corners, round(M s) pixels), see the "
                    "resample step",
                )
    source_size = init.get("meas_add_source_size")
    if source_size:
        steps.append({"name": "add_source_size", "options": {"std_A": source_size}})
    blur = init.get("meas_add_detector_blur")
    if blur:
        steps.append({"name": "add_detector_blur", "options": {"std_px": blur}})
    noise = init.child("meas_add_poisson_noise")
    if noise is not None:
        unit = noise.get("unit")
        steps.append(
            {
                "name": "add_poisson_noise",
                "options": {
                    "unit": "e_per_A2" if unit == "e_per_Ang2" else unit,
                    "value": noise.get("value"),
                },
            }
        )
    export = init.get("meas_export", mark=False)
    if export is True or isinstance(export, dict):
        steps.append(
            {"name": "export", "options": export_options(tr, init, {} if export is True else export, path)}
        )
    if init.has("meas_export") and not isinstance(export, dict):
        tr.mapped.add(init.name("meas_export"))

    tr.config["data"] = {
        "path": path,
        "loader": loader,
        "options": options,
        "negative_values": "clip",
        "preprocess": steps,
    }
    if model is not None and model.has("preload_data"):
        model.note(
            "preload_data",
            "ptyrad_core keeps measurements in memory when they fit data.memory_budget_MB "
            "and streams them otherwise",
        )
    # the simulation window and the detector PSF
    final = final_pattern_size(init)
    npix, match = init.get("simu_Npix"), init.get("simu_match_mode")
    if npix is not None and npix != final:
        if match == "crop":
            stages.append({"name": "crop_simulation", "options": {"npix": npix}})
        elif match == "resample":
            stages.append({"name": "resample_simulation", "options": {"npix": npix, "align": "edges"}})
            init.note(
                "simu_match_mode",
                "resample: detector stage resample_simulation with align 'edges' (PtyRAD's interpolate grid)",
            )
        else:
            init.fail(
                "simu_match_mode",
                f"null, but simu_Npix {npix} differs from the measured pattern size "
                f"{final}: set 'crop' or 'resample' (PtyRAD cannot run this either)",
            )
    elif match is not None:
        init.note(
            "simu_match_mode",
            f"inert: simu_Npix {'is null' if npix is None else 'equals'} the measured pattern size ({final})",
        )
    blur_std = model.get("detector_blur_std") if model is not None else None
    if blur_std:
        stages.append({"name": "psf_blur", "options": {"std": blur_std}})
    tr.mapped.add(init.name("meas_Npix"))
    tr.note(
        init.name("meas_Npix"),
        f"{init.get('meas_Npix', mark=False)}: ptyrad_core reads the pattern size from "
        "the data (PtyRAD checks that the two agree)",
    )
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

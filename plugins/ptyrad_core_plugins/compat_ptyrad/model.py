"""``init_params``: the scan positions, probe, object and tilts."""

from __future__ import annotations

import os

from .params import Node, Translation
from .tables import READERS, Z_RESAMPLE


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
            init.fail(
                "pos_N_scans",
                f"{n} is not pos_N_scan_slow x pos_N_scan_fast = {n_slow * n_fast} (PtyRAD rejects it too)",
            )
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
        init.fail(
            "pos_source",
            "'foldslice_hdf5' is not available: no result reader reads fold_slice's ppX / ppY files yet",
        )
    else:
        init.fail("pos_source", f"unknown source {source!r}")
    sc.update(n_slow=n_slow, n_fast=n_fast, step_A=init.get("pos_scan_step_size"))
    flip = init.flags("pos_scan_flipT", ("flipud", "fliplr", "transpose"))
    if flip is not None:
        sc["flipT"] = flip
    affine = init.get("pos_scan_affine")
    if affine is not None and list(affine) != [1, 0, 0, 0]:
        if sc["source"] != "raster":
            init.fail(
                "pos_scan_affine",
                "an affine transform of positions read from a result file is not "
                "available (ptyrad_core applies scan.affine to a raster only)",
            )
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
        init.note(
            "probe_pmode_init_pows",
            f"{pows}: PtyRAD 1.0 gives every added mode the smallest value, "
            f"{min(pows)}, and so does the translation",
        )
    permute = init.get("probe_permute")
    if permute is not None:
        if source == "simu" and list(permute) != sorted(permute):
            init.fail(
                "probe_permute",
                "permuting a simulated probe is not available (model.probe.permute applies to loaded probes)",
            )
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
    if (
        isinstance(pad, dict)
        and pad.get("mode", "on_the_fly") == "on_the_fly"
        and p.get("normalization", "mean_total_ints") != "target_intensity"
    ):
        tr.note(
            init.name("probe_normalization"),
            "with on-the-fly meas_pad, PtyRAD adds the padded background to the "
            "total intensities the probe is scaled to; ptyrad_core scales it to the measured patterns alone",
        )
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
                occu.note(
                    "init_occu",
                    f"sums to {sum(values):g}: PtyRAD uses the values as they are, ptyrad_core "
                    "normalises them to sum 1",
                )
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
            pad.fail(
                "pad_types", "'mean' layers are not available (ptyrad_core pads with 'vacuum' or 'edge')"
            )
        z_ops["z_pad"] = {"layers": layers, "kind": list(kinds)}
        nz += sum(layers)
    final_dz = dz  # the thickness after the z operations (a loaded object starts from dz)
    if res is not None:
        mode, value = res.get("mode"), res.get("value")
        if mode not in Z_RESAMPLE:
            res.fail("mode", f"unknown mode {mode!r}")
        z_ops["z_resample"] = {"mode": Z_RESAMPLE[mode], "value": value}
        new = {
            "scale_Nlayer": nz * value,
            "scale_slice_thickness": nz / value,
            "target_Nlayer": value,
            "target_slice_thickness": nz * dz / value,
        }[mode]
        new = int(round(new))
        final_dz, nz = dz * nz / new, new
    if source == "simu":
        shape = init.get("obj_params")
        o["source"] = "flat"
        if shape is not None:
            if not (isinstance(shape, list) and len(shape) == 4):
                init.fail("obj_params", f"expected [omode, Nz, Ny, Nx] for obj_source 'simu', got {shape!r}")
            if z_ops == {} and shape[1] != nz:
                init.fail(
                    "obj_params", f"Nz = {shape[1]} differs from obj_Nlayer = {nz} (PtyRAD rejects it too)"
                )
            o["shape"] = [shape[2], shape[3]]
            if shape[0] != omode:
                init.note(
                    "obj_params",
                    f"{shape[0]} modes are padded / cut to obj_omode_max = {omode}, as PtyRAD does",
                )
            init.note(
                "obj_params",
                "the scan is centred in the given object; PtyRAD places it where its own "
                "1.2 x scan canvas would put it",
            )
        o["phase_noise"] = 1e-8
        if z_ops:
            names = [init.name(k) for k in ("obj_z_crop", "obj_z_pad", "obj_z_resample") if k in init.given]
            tr.note(
                names,
                f"applied to PtyRAD's near-vacuum simulated object: a flat object of {nz} slices of "
                f"{final_dz:.6g} A",
            )
        dz = final_dz
        tr.notes.append(
            "init_params.obj_source: 'simu' is PtyRAD's exp(1e-8 i U[0, 1)) initial phase, here "
            "model.object.phase_noise 1e-8 (Gaussian)"
        )
    else:
        o.update(source="result", path=path, reader=READERS[source])
        o.update(z_ops)
        if z_ops:
            tr.notes.append(
                f"model.object.slices: {nz}, the slices of the loaded object after the z operations "
                f"when it has obj_Nlayer = {init.get('obj_Nlayer', mark=False)} slices "
                "(PtyRAD counts them itself)"
            )
        tr.notes.append(
            "init_params.obj_slice_thickness: ptyrad_core starts from the slice thickness stored in "
            "the result file when it has one; PtyRAD uses obj_slice_thickness"
        )
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
            node.fail(
                "init_tilts",
                "one (t_y, t_x) pair is available as initial value (a file gives one per position)",
            )
        return {
            "source": "value",
            "mode": "global" if kind == "all" else "per_position",
            "init_mrad": [float(values[0][0]), float(values[0][1])],
        }
    if source == "PtyRAD":
        value = init.get("tilt_params", mark=False)
        if not isinstance(value, (str, os.PathLike)):
            init.fail("tilt_params", f"tilt_source 'PtyRAD' needs the path of the result file, got {value!r}")
        tr.mapped.add(init.name("tilt_params"))
        path = tr.absolute(init.name("tilt_params"), value)
        init.note(
            "tilt_source",
            "tilts from a PtyRAD result: model.tilts.mode global; set per_position if the file "
            "holds one tilt per position",
        )
        return {"source": "result", "path": path, "reader": "ptyrad", "mode": "global"}
    if source == "file":
        node = init.child("tilt_params", "FilePathWithKey")
        if node is None:
            init.fail("tilt_params", "tilt_source 'file' needs {path, key}")
        path = tr.absolute(node.name("path"), node.get("path"))
        out = {"source": "file", "path": path, "key": node.get("key"), "mode": "global"}
        if path.lower().endswith(".mat"):
            node.note(
                "path",
                "a MATLAB v7.3 array is read in MATLAB's axis order by ptyrad_core, in stored order "
                "by PtyRAD",
            )
        inert = [
            node.name(k)
            for k in ("shape", "offset", "gap", "zarr_kwargs")
            if node.get(k, mark=False) is not None
        ]
        if inert:
            tr.note(inert, "not used for a tilt file (PtyRAD refuses .raw tilt files)")
        tr.mapped.update(
            node.name(k)
            for k in ("shape", "offset", "gap", "zarr_kwargs")
            if node.has(k) and node.given[k] is None
        )
        if node.get("selection", mark=False) is not None:
            node.fail("selection", "load-time selection is not available")
        tr.mapped.update({node.name("selection")} if node.has("selection") else set())
        init.note(
            "tilt_source",
            "tilts from a file: model.tilts.mode global; set per_position if the file holds "
            "one tilt per position",
        )
        return out
    init.fail("tilt_source", f"unknown source {source!r}")

"""Output folder names built from the config, like PtyRAD's ``recon_dir_affixes``.

``output.name`` lists what goes into the name of the folder created under ``output.dir``:

=============== =======================================================================
affix           part of the name
=============== =======================================================================
indices         index mode and number of positions used, ``full_N576``
meas            simulated window size, ``dp64``
batch           grouping and effective batch size, ``random32``
pmode / omode   probe and object modes, ``p4``, ``1obj``
nlayer          slices and slice thickness, ``6slice_dz3.9``
optimizer       optimizer name; ``scheduler`` the scheduler's
lr              learning rate of each optimized parameter, ``oplr5e-4``
start_iter      start iteration of parameters that start late, ``ps10``
loss            each loss term with its weight, ``gaussian1``
constraint      each constraint's name
forward         each forward extension's name; ``detector`` each detector stage's
affine          the scan affine, ``aff1_0_3_0``
tilt            the initial tilt, ``tilt1_-2``
conv_angle      ``conv21.4``; ``aberrations`` the defocus, ``df100``; ``dx`` the pixel
=============== =======================================================================

Presets: ``minimal`` (indices, meas, batch, pmode, omode, nlayer), ``default`` (minimal plus
lr, loss, constraint, affine, tilt, aberrations) and ``all``. ``time`` prefixes a date
(``date``: 20261125, ``datetime``, ``time`` or any strftime format); ``prefix`` and
``postfix`` are added as they are. The parts are joined with ``_``.
"""

from __future__ import annotations

import datetime as _dt
import re

from ptyrad_core.kernel.errors import ConfigError

PRESETS = {
    "minimal": ["indices", "meas", "batch", "pmode", "omode", "nlayer"],
    "default": [
        "indices",
        "meas",
        "batch",
        "pmode",
        "omode",
        "nlayer",
        "lr",
        "loss",
        "constraint",
        "affine",
        "tilt",
        "aberrations",
    ],
    "all": [
        "indices",
        "meas",
        "batch",
        "pmode",
        "omode",
        "nlayer",
        "optimizer",
        "scheduler",
        "start_iter",
        "lr",
        "loss",
        "constraint",
        "forward",
        "detector",
        "affine",
        "tilt",
        "conv_angle",
        "aberrations",
        "dx",
    ],
}
AFFIXES = set(PRESETS["all"])
SHORT = {
    "object_amplitude": "oa",
    "object_phase": "op",
    "probe": "p",
    "positions": "s",
    "tilts": "t",
    "slice_thickness": "dz",
}
TIME_FORMATS = {"date": "%Y%m%d", "datetime": "%Y%m%d_%H%M%S", "time": "%H%M%S"}


def expand(affixes: list[str]) -> list[str]:
    out: list[str] = []
    for a in affixes:
        for item in PRESETS.get(a, [a]):
            if item not in AFFIXES:
                raise ConfigError(
                    f"output.name.affixes: unknown affix {item!r}; "
                    f"choose from {', '.join(sorted(AFFIXES | set(PRESETS)))}"
                )
            if item not in out:
                out.append(item)
    return out


def _g(x: float) -> str:
    return f"{x:.3g}"


def folder_name(config, model, n_used: int) -> str:
    """The folder name for ``config.output.name`` (empty string: no sub-folder)."""
    spec = config.output.name
    if spec is None:
        return ""
    parts: list[str] = []
    if spec.time:
        parts.append(_dt.datetime.now().strftime(TIME_FORMATS.get(spec.time, spec.time)))
    if spec.prefix:
        parts.append(spec.prefix)
    rc = config.recon
    for affix in expand(spec.affixes):
        if affix == "indices":
            parts.append(f"{rc.indices.mode}_N{n_used}")
        elif affix == "meas":
            parts.append(f"dp{model.window[0]}")
        elif affix == "batch":
            parts.append(f"{rc.grouping}{rc.batch_size * rc.grad_accumulation}")
        elif affix == "pmode":
            parts.append(f"p{model.probe.shape[0]}")
        elif affix == "omode":
            parts.append(f"{model.object_amplitude.shape[0]}obj")
        elif affix == "nlayer":
            nz = model.object_amplitude.shape[1]
            parts.append(f"{nz}slice" + (f"_dz{_g(float(model.slice_thickness.detach()))}" if nz > 1 else ""))
        elif affix == "optimizer":
            parts.append(config.optimizer.name)
        elif affix == "scheduler" and config.optimizer.scheduler is not None:
            parts.append(config.optimizer.scheduler.name)
        elif affix == "start_iter":
            for name, sched in model.schedules.items():
                if sched.lr and sched.start_iter and sched.start_iter > 1:
                    parts.append(f"{SHORT[name]}s{sched.start_iter}")
        elif affix == "lr":
            for name, sched in model.schedules.items():
                if sched.lr:
                    parts.append(f"{SHORT[name]}lr{format(sched.lr, '.0e').replace('e-0', 'e-')}")
        elif affix == "loss":
            parts += [f"{s.name}{_g(s.weight)}" for s in config.loss]
        elif affix == "constraint":
            parts += [s.name for s in config.constraints]
        elif affix == "forward":
            parts += [s.name for s in config.forward]
        elif affix == "detector":
            parts += [s.name for s in config.detector]
        elif affix == "affine" and config.scan.source == "raster":
            a = config.scan.affine
            if (a.scale, a.asymmetry, a.rotation_deg, a.shear_deg) != (1, 0, 0, 0):
                parts.append(f"aff{_g(a.scale)}_{_g(a.asymmetry)}_{_g(a.rotation_deg)}_{_g(a.shear_deg)}")
        elif affix == "tilt":
            t = model.tilts.detach().mean(0).tolist()
            if any(t):
                parts.append(f"tilt{_g(t[0])}_{_g(t[1])}")
        elif affix == "conv_angle":
            parts.append(f"conv{_g(config.experiment.conv_angle_mrad)}")
        elif affix == "aberrations":
            from ptyrad_core.setup.optics import parse_aberrations

            c10 = parse_aberrations(config.experiment.aberrations).get((1, 0), (0.0, 0.0))[0]
            parts.append(f"df{_g(-c10)}")
        elif affix == "dx":
            parts.append(f"dx{_g(model.dx)}")
    if spec.postfix:
        parts.append(spec.postfix)
    name = re.sub(r"[^A-Za-z0-9._+-]", "-", "_".join(parts))
    # one folder inside output.dir: "." or ".." (a prefix of dots) would name output.dir or its parent
    if name.strip(".") == "" and name:
        raise ConfigError(
            f"output.name: the folder name would be {name!r}, which is not a folder inside output.dir"
        )
    if len(name.encode()) > 255:  # the file system's limit for one name
        raise ConfigError(f"output.name: the folder name has {len(name.encode())} bytes; at most 255")
    return name

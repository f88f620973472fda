"""The translation: each section of the params file into its native sections, in order, and the
check that every key of the file was carried over or named in a note."""

from __future__ import annotations

import copy

from ptyrad_core.plugin import ConfigError

from .. import _ptyrad_defaults as D
from .data import data
from .experiment import experiment
from .hypertune import finish_hypertune, hypertune
from .model import obj, probe, scan, tilts
from .optimization import constraints, losses, updates
from .params import Node, Translation, covered, leaves, normalise
from .recon import recon_output


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
            f"PtyRAD {D.PTYRAD_VERSION} defaults used for options the file leaves out: "
            + ", ".join(tr.defaults)
        )
    unhandled = [n for n in leaves(raw) if not (covered(n, tr.mapped) or covered(n, tr.noted))]
    if unhandled:
        raise ConfigError(
            f"{tr.path}: the PtyRAD translation does not handle {', '.join(unhandled)} "
            "(a bug: please report it)"
        )
    order = (
        "data",
        "experiment",
        "scan",
        "model",
        "update",
        "optimizer",
        "loss",
        "constraints",
        "detector",
        "recon",
        "output",
        "tune",
    )
    tr.config = {k: cfg[k] for k in order if k in cfg}
    return tr

"""``model_params``, ``loss_params``, ``constraint_params``: parameter updates, optimizer and
scheduler, loss terms and constraints."""

from __future__ import annotations

from .. import _ptyrad_defaults as D
from .params import Node, Translation
from .tables import LOSSES, SCHEDULE_KEYS, UPDATES


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
                    tr.note(
                        f"{upd.name(key)}.{sub}",
                        "not an update option; PtyRAD ignores it and so does the translation",
                    )
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
        spec = {
            "name": sched.get("name"),
            "options": dict(sched.get("configs") or {}),
            "step_unit": sched.get("step_unit"),
        }
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
        tr.fail(
            "loss_params",
            "no data term (loss_single, loss_poissn or loss_pacbed) has state true (PtyRAD rejects this too)",
        )
    if not any(t["name"] in ("gaussian", "poisson", "pacbed") for t in out):
        tr.fail(
            "loss_params",
            "at least one of loss_single, loss_poissn, loss_pacbed needs state true (as in PtyRAD)",
        )
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

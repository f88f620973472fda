"""``recon_params``: the ``recon`` (iterations, batches, grouping, seed) and ``output`` sections."""

from __future__ import annotations

from .params import Node, Translation, output_fields
from .tables import INERT_RECON


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
            ind.fail(
                "subscan_slow" if slow is None else "subscan_fast",
                "give both subscan_slow and subscan_fast, or neither (PtyRAD fails on one)",
            )
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
        recon.note(
            "GROUP_MODE",
            f"'sparse': ptyrad_core's {group!r} grouping for {n_slow * n_fast} positions "
            "(PtyRAD's choice: farthest-point sampling up to 65536 positions, Hilbert curve above)",
        )
    r["grouping"] = group
    seed = init.get("random_seed")
    if seed is None:
        tr.note(
            init.name("random_seed"), "null (PtyRAD: not reproducible); ptyrad_core uses its default seed 0"
        )
        r["seed"] = 0
    else:
        r["seed"] = seed
    tr.config["recon"] = r
    out: dict = {"dir": recon.get("output_dir")}
    save = recon.get("SAVE_ITERS")
    recon.default_used("SAVE_ITERS")
    if save is None:
        recon.note(
            "SAVE_ITERS", "null: PtyRAD saves nothing; ptyrad_core writes result.h5 at the end (save_every 0)"
        )
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
        out["name"] = {
            "affixes": affixes,
            "prefix": recon.get("prefix"),
            "postfix": recon.get("postfix"),
            "time": "date" if stamp is True else (stamp or None),
        }
        recon.default_used("recon_dir_affixes", "prefix_time")
        text = (
            "output.name: a sub-folder of output.dir named by ptyrad_core from the same affixes ('model' is "
            "'forward' + 'detector'); the name is not PtyRAD's character for character"
        )
        if dropped:
            text += f"; affixes {', '.join(dropped)} are not available and left out"
        tr.note(
            [recon.name(k) for k in ("recon_dir_affixes", "prefix_time", "prefix", "postfix") if recon.has(k)]
            or [recon.name("recon_dir_affixes")],
            text,
        )
        inert_keys = [
            k for k in inert_keys if k not in ("recon_dir_affixes", "prefix_time", "prefix", "postfix")
        ]
    if "figures" in fields:
        figures = recon.get("selected_figs")
        out["figures"] = bool(figures) and save is not None
        if recon.has("selected_figs"):
            recon.note(
                "selected_figs",
                f"output.figures {str(out['figures']).lower()}: ptyrad_core draws its own set "
                "of figures at every save",
            )
        inert_keys.remove("selected_figs")
    tr.config["output"] = out
    inert = [recon.name(k) for k in inert_keys if recon.has(k)]
    if inert:
        tr.note(
            inert,
            "PtyRAD's output naming, result files, figures, torch.compile and convergence monitor: not "
            "used by ptyrad_core (no effect on the reconstruction; the result is output.dir/result.h5)",
        )

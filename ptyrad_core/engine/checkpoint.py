"""The state of a run that a resume needs: parameters, optimizer, scheduler, random generators, history.

:func:`capture` takes an in-memory snapshot (after every completed iteration, so that an
interrupted or diverging iteration can be undone); :func:`restore` puts one back.
:func:`write` / :func:`read` store the parts that are not already in the result file under its
``/checkpoint`` group, so every result file is also a checkpoint (docs/results.md).
"""

from __future__ import annotations

import copy
import io
import json
import logging
from typing import Any

import numpy as np
import torch

from ptyrad_core.kernel import fft as fftlib
from ptyrad_core.kernel.errors import DataError

log = logging.getLogger("ptyrad_core")


def _note(run, message: str, *args) -> None:
    """Log a resume decision and keep it for run.log (whose handler opens only when the loop starts)."""
    log.info(message, *args)
    notes = getattr(run, "resume_notes", None)
    if isinstance(notes, list):
        notes.append(message % args)


def capture(run) -> dict[str, Any]:
    """A deep copy of everything that changes from iteration to iteration."""
    return {
        "model": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
        "optimizer": copy.deepcopy(run.optimizer.state_dict()) if run.optimizer is not None else None,
        "scheduler": copy.deepcopy(run.scheduler.state_dict()) if run.scheduler is not None else None,
        "rng": copy.deepcopy(run.rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "iteration": run.iteration,
        "history": copy.deepcopy(run.history),
    }


def restore(run, snapshot: dict[str, Any]) -> None:
    with torch.no_grad():
        run.model.load_state_dict(snapshot["model"])
    if run.optimizer is not None and snapshot["optimizer"] is not None:
        run.optimizer.load_state_dict(snapshot["optimizer"])
    if run.scheduler is not None and snapshot["scheduler"] is not None:
        run.scheduler.load_state_dict(snapshot["scheduler"])
    run.rng.bit_generator.state = snapshot["rng"]
    torch.set_rng_state(snapshot["torch_rng"])
    run.iteration = snapshot["iteration"]
    run.history = copy.deepcopy(snapshot["history"])


def _to_bytes(obj) -> np.ndarray:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _from_bytes(arr: np.ndarray):
    return torch.load(io.BytesIO(np.asarray(arr, dtype=np.uint8).tobytes()), weights_only=True, map_location="cpu")


def write(group, run) -> None:
    """Fill the ``/checkpoint`` group of an open result file."""
    m = run.model
    group["position_shifts_px"] = m.positions.detach().cpu().numpy()
    group["tilts_mrad"] = m.tilts.detach().cpu().numpy()
    group["slice_thickness_A"] = m.slice_thickness.detach().cpu().numpy()
    if run.optimizer is not None:
        group["optimizer"] = _to_bytes(run.optimizer.state_dict())
        group.attrs["optimizer_class"] = type(run.optimizer).__name__
    if run.scheduler is not None:
        group["scheduler"] = _to_bytes(run.scheduler.state_dict())
        group.attrs["scheduler_class"] = type(run.scheduler).__name__
    group["torch_rng"] = torch.get_rng_state().numpy()
    group.attrs["numpy_rng"] = json.dumps(run.rng.bit_generator.state)


#: what a result file must hold, beyond any result's datasets, to be resumed from
CHECKPOINT = ("history/iteration", "history/loss", "history/time_s", "history/slice_thickness_A",
              "checkpoint/position_shifts_px", "checkpoint/tilts_mrad", "checkpoint/slice_thickness_A",
              "checkpoint/torch_rng")


def inspect(path, what: str = "--resume") -> dict:
    """Check that ``path`` is a complete ptyrad_core result file with a checkpoint, without
    reading its arrays (:func:`ptyrad_core.engine.results.inspect_result`, plus the checkpoint's own
    parts); return its root attributes. A missing, truncated, foreign or partial file is a
    :class:`DataError` naming the file and what is wrong."""
    import h5py

    from ptyrad_core.engine.results import REQUIRED, inspect_result

    attrs = inspect_result(path, what, require=REQUIRED + CHECKPOINT)
    with h5py.File(path, "r") as f:
        try:
            json.loads(f["checkpoint"].attrs["numpy_rng"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{what}: {path} is a partial result file: its checkpoint has no readable random "
                            f"state ({type(exc).__name__}); resume from a file written by a save") from None
        n = len(f["history/iteration"])
    if n != int(attrs["iteration"]):
        raise DataError(f"{what}: {path} says iteration {int(attrs['iteration'])} but holds {n} history entries: "
                        "the file is inconsistent")
    return attrs


def read(path, run) -> int:
    """Load a result file's state into ``run`` (built from a compatible config); return its iteration.

    Array shapes must match the run's model. The optimizer state is matched per parameter by
    name: a parameter the file's optimizer updated keeps its state (moments, step counts), a
    newly optimized one starts fresh, and another optimizer class starts fresh altogether (both
    logged). Learning rates and the other group settings come from the run's config; a
    scheduler's progress is kept, rescaled to the config's learning rates.
    """
    import h5py

    inspect(path)
    m = run.model
    with h5py.File(path, "r") as f:
        ck = f["checkpoint"]
        expected = {
            "object/amplitude": tuple(m.object_amplitude.shape),
            "probe/modes": tuple(m.probe.shape),
            "checkpoint/position_shifts_px": tuple(m.positions.shape),
            "checkpoint/tilts_mrad": tuple(m.tilts.shape),
        }
        for key, shape in expected.items():
            if tuple(f[key].shape) != shape:
                raise DataError(
                    f"--resume: {path}:{key} has shape {tuple(f[key].shape)}, but this config builds {shape}; "
                    "resume with the config that made the file"
                )
        with torch.no_grad():
            m.object_amplitude.copy_(torch.from_numpy(f["object/amplitude"][()]))
            m.object_phase.copy_(torch.from_numpy(f["object/phase"][()]))
            m.probe_ri.copy_(torch.view_as_real(torch.from_numpy(f["probe/modes"][()])))
            m.positions.copy_(torch.from_numpy(ck["position_shifts_px"][()]))
            m.tilts.copy_(torch.from_numpy(ck["tilts_mrad"][()]))
            m.slice_thickness.copy_(torch.from_numpy(np.asarray(ck["slice_thickness_A"][()])))
        saved_class = ck.attrs.get("optimizer_class")
        if run.optimizer is not None and "optimizer" in ck:
            if saved_class is not None and saved_class != type(run.optimizer).__name__:
                _note(run, "resume: the file's optimizer was %s, this run's is %s: its state starts fresh",
                         saved_class, type(run.optimizer).__name__)
            else:
                _load_optimizer(run, _from_bytes(ck["optimizer"][()]))
                if run.scheduler is not None and "scheduler" in ck \
                        and ck.attrs.get("scheduler_class", type(run.scheduler).__name__) == type(run.scheduler).__name__:
                    _load_scheduler(run, _from_bytes(ck["scheduler"][()]))
        torch.set_rng_state(torch.from_numpy(ck["torch_rng"][()]))
        run.rng.bit_generator.state = json.loads(ck.attrs["numpy_rng"])
        run.iteration = int(f.attrs["iteration"])
        saved_fft = str(f.attrs.get("fft", ""))  # the library the file's run chose: transforms continue alike
        if run.config.recon.fft == "auto" and saved_fft in ("torch", "fftw") and saved_fft != m.fft.name:
            m.fft = fftlib.select(saved_fft, next(m.parameters()).device)
            _note(run, "resume: FFT library %s, as in %s (recon.fft: auto)", saved_fft, path)
        hist = f["history"]
        saved_terms = sorted(hist["loss_terms"]) if "loss_terms" in hist else []
        if saved_terms != sorted(run.history["loss_terms"]):
            raise DataError(
                f"--resume: {path} was made with the loss terms {saved_terms}, this config has "
                f"{sorted(run.history['loss_terms'])}; a resumed run keeps its loss terms (their weights may change). "
                "To change them, start a new run initialised from the result (model.*.source: result)"
            )
        run.history = {
            "iteration": hist["iteration"][()].tolist(),
            "loss": hist["loss"][()].tolist(),
            "time_s": hist["time_s"][()].tolist(),
            "slice_thickness_A": hist["slice_thickness_A"][()].tolist(),
            "loss_terms": {k: hist["loss_terms"][k][()].tolist() for k in run.history["loss_terms"]},
        }
    return run.iteration


def _load_optimizer(run, saved: dict) -> None:
    """Carry the saved optimizer state into ``run.optimizer`` parameter by parameter (groups are
    matched by their ``name``); learning rates and other settings stay the config's."""
    opt = run.optimizer
    current = opt.state_dict()
    saved_groups = {g.get("name"): g for g in saved["param_groups"]}
    state: dict = {}
    carried, fresh = [], []
    for group in current["param_groups"]:
        old = saved_groups.get(group.get("name"))
        if old is None or len(old["params"]) != len(group["params"]) or group.get("name") is None and len(saved_groups) != 1:
            fresh.append(str(group.get("name")))
            continue
        for new_id, old_id in zip(group["params"], old["params"]):
            if old_id in saved["state"]:
                state[new_id] = saved["state"][old_id]
        carried.append(str(group.get("name")))
        if "initial_lr" in old and old.get("initial_lr"):  # a scheduler's progress: the same factor on the new rate
            unchanged = old["initial_lr"] == group.get("initial_lr", group["lr"])
            group["_resume_lr"] = old["lr"] if unchanged else group["lr"] * old["lr"] / old["initial_lr"]
    if fresh:
        _note(run, "resume: optimizer state carried for %s; fresh for %s (not optimized in the file's run)",
                 ", ".join(carried) or "nothing", ", ".join(fresh))
    rates = {g.get("name"): g.pop("_resume_lr", None) for g in current["param_groups"]}
    try:
        opt.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    except (ValueError, RuntimeError, KeyError) as exc:  # state of another shape: start fresh, say so
        _note(run, "resume: the saved optimizer state does not fit this run (%s): it starts fresh", exc)
        return
    for group in opt.param_groups:
        rate = rates.get(group.get("name"))
        if rate is not None:
            group["initial_lr"] = group["lr"]
            group["lr"] = rate


def _load_scheduler(run, saved: dict) -> None:
    """The scheduler's progress (epoch count, internal state) with the config's base rates."""
    sched = run.scheduler
    base = getattr(sched, "base_lrs", None)
    base = list(base) if base is not None else None
    try:
        sched.load_state_dict(saved)
    except (ValueError, RuntimeError, KeyError) as exc:
        _note(run, "resume: the saved scheduler state does not fit this run (%s): it starts fresh", exc)
        return
    if base is not None and len(base) == len(getattr(sched, "base_lrs", [])):
        sched.base_lrs = base
    if hasattr(sched, "_last_lr"):
        sched._last_lr = [g["lr"] for g in run.optimizer.param_groups]

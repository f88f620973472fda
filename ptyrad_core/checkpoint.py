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
from typing import Any

import numpy as np
import torch

from .errors import DataError


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
    if run.scheduler is not None:
        group["scheduler"] = _to_bytes(run.scheduler.state_dict())
    group["torch_rng"] = torch.get_rng_state().numpy()
    group.attrs["numpy_rng"] = json.dumps(run.rng.bit_generator.state)


def read(path, run) -> None:
    """Load a result file's state into ``run`` (built from a compatible config)."""
    import h5py

    from .results import FORMAT

    m = run.model
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT or "checkpoint" not in f:
            raise DataError(f"--resume: {path} is not a ptyrad_core result file with a checkpoint")
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
        if run.optimizer is not None and "optimizer" in ck:
            run.optimizer.load_state_dict(_from_bytes(ck["optimizer"][()]))
        if run.scheduler is not None and "scheduler" in ck:
            run.scheduler.load_state_dict(_from_bytes(ck["scheduler"][()]))
        torch.set_rng_state(torch.from_numpy(ck["torch_rng"][()]))
        run.rng.bit_generator.state = json.loads(ck.attrs["numpy_rng"])
        run.iteration = int(f.attrs["iteration"])
        hist = f["history"]
        run.history = {
            "iteration": hist["iteration"][()].tolist(),
            "loss": hist["loss"][()].tolist(),
            "time_s": hist["time_s"][()].tolist(),
            "slice_thickness_A": hist["slice_thickness_A"][()].tolist(),
            "loss_terms": {k: hist["loss_terms"][k][()].tolist() for k in run.history["loss_terms"]},
        }

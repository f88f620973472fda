"""The result file: one HDF5 file per run (``result.h5``), written atomically.

The layout (format ``ptyrad_core-result``, version 1) is documented in docs/results.md; a
test checks that every dataset written here is listed there.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from . import checkpoint, runtime

FORMAT = "ptyrad_core-result"
FORMAT_VERSION = 1


def software_versions() -> dict[str, str]:
    import pluggy
    import pydantic
    import torch

    from . import __version__

    return {
        "ptyrad_core": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "pydantic": pydantic.__version__,
        "pluggy": pluggy.__version__,
    }


def write_result(path: Path, run) -> Path:
    """Write the state of ``run`` (a :class:`~ptyrad_core.engine.Reconstruction`) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    model = run.model
    hist = run.history
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["iteration"] = run.iteration
            f.attrs["dx_A"] = model.dx
            f.attrs["wavelength_A"] = model.wavelength
            f.attrs["seed"] = run.config.recon.seed
            f.attrs["data_file"] = str(run.config.resolve(run.config.data.path))
            f.attrs["data_sha256"] = run.data_digest
            f.attrs["config"] = yaml.safe_dump(run.resolved_config, sort_keys=False)
            f.attrs["plugins"] = json.dumps(run.plugin_table())
            f.attrs["versions"] = json.dumps(software_versions())
            f.attrs["created"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
            world = getattr(run, "world", None)
            f.attrs["world_size"] = world.size if world is not None else 1
            peaks = getattr(run, "peak_memory", None) or runtime.peak_memory_MiB(getattr(run, "device", None))
            for key, value in peaks.items():
                f.attrs[f"peak_{key}_MiB"] = float(value)
            amp = model.object_amplitude.detach().cpu().numpy()
            f.create_dataset("object/amplitude", data=amp, compression="gzip", compression_opts=1)
            f.create_dataset("object/phase", data=model.object_phase.detach().cpu().numpy(), compression="gzip", compression_opts=1)
            f["object/occupancy"] = model.occupancy.cpu().numpy().astype(np.float64)
            probe = model.probe.detach().cpu().numpy()
            f["probe/modes"] = probe.astype(np.complex64)
            power = np.sum(np.abs(probe) ** 2, axis=(1, 2), dtype=np.float64)
            f["probe/powers"] = power / power.sum()
            nominal = (model.crop.to(model.frac.dtype) + model.frac).detach().cpu().numpy().astype(np.float64)
            f["positions/nominal_px"] = nominal
            f["positions/refined_px"] = model.refined_positions().detach().cpu().numpy().astype(np.float64)
            f["tilts_mrad"] = model.tilts.detach().cpu().numpy().astype(np.float64)
            f["slice_thickness_A"] = float(model.slice_thickness.detach())
            f["history/iteration"] = np.asarray(hist["iteration"], dtype=np.int64)
            f["history/loss"] = np.asarray(hist["loss"], dtype=np.float64)
            f["history/time_s"] = np.asarray(hist["time_s"], dtype=np.float64)
            f["history/slice_thickness_A"] = np.asarray(hist["slice_thickness_A"], dtype=np.float64)
            for name, values in hist["loss_terms"].items():
                f[f"history/loss_terms/{name}"] = np.asarray(values, dtype=np.float64)
            checkpoint.write(f.create_group("checkpoint"), run)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_result(path: Path) -> dict[str, Any]:
    """Read a result file into a flat dict of arrays (keys are HDF5 paths) plus ``attrs``."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a ptyrad_core result file (format attribute {f.attrs.get('format')!r})")
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = dict(f.attrs)
    attrs["config"] = yaml.safe_load(attrs["config"])
    attrs["plugins"] = json.loads(attrs["plugins"])
    attrs["versions"] = json.loads(attrs["versions"])
    out["attrs"] = attrs
    return out

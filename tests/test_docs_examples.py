"""The code examples of docs/authoring.md run as printed: a constraint and a loader from local files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptyrad_core.engine.loop import run as _run
from ptyrad_core.kernel.errors import DataError
from ptyrad_core.kernel.plugin_manager import get_plugin_manager


def run(cfg):
    return _run(
        cfg, overwrite=True
    )  # one config, run as in memory, streamed and refused: each replaces the last


ROOT = Path(__file__).resolve().parents[1]


def examples() -> dict[str, str]:
    """``{file name: source}`` of every python block of authoring.md whose first line names its file."""
    text = (ROOT / "docs" / "authoring.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    out = {}
    for block in blocks:
        m = re.match(r"# (\w+\.py)", block)
        if m:
            out[m.group(1)] = block
    return out


def test_the_page_has_both_examples():
    assert set(examples()) >= {"my_constraints.py", "my_loader.py"}


def test_the_constraint_example_runs(tiny_config, tmp_path):
    (tmp_path / "my_constraints.py").write_text(examples()["my_constraints.py"])
    cfg = tiny_config(
        plugins={"modules": [str(tmp_path / "my_constraints.py")]},
        constraints=[{"name": "clamp_amplitude", "options": {"low": 0.5, "high": 0.9}}],
    )
    cfg["update"] = {"object_amplitude": {"lr": 0.05}}
    model = run(cfg).model
    amp = model.object_amplitude.detach()
    assert float(amp.min()) >= 0.5 and float(amp.max()) <= 0.9 + 1e-6


def test_the_loader_example_reads_streams_and_refuses(tiny_config, tmp_path):
    (tmp_path / "my_loader.py").write_text(examples()["my_loader.py"])
    with h5py.File(ROOT / "data" / "tiny.h5") as f:
        meas = f["measurements"][()]
    counts = np.round(meas / meas.max() * 60000).astype("<u2")
    counts.tofile(tmp_path / "scan.bin")
    (tmp_path / "scan.json").write_text(json.dumps(dict(zip(("n_slow", "n_fast", "ky", "kx"), counts.shape))))
    pm = get_plugin_manager([str(tmp_path / "my_loader.py")])
    assert pm.hook.ptyrad_sniff_loader(path=tmp_path / "scan.bin") == "raw_frames"
    cls = pm.registry("loader").get("raw_frames").cls
    loaded = cls(tmp_path / "scan.bin", cls.Options()).load()
    assert not loaded.in_memory  # a memory map, read whole or per batch by the kernel
    assert np.array_equal(loaded.read(np.arange(5, 9)), counts.reshape(-1, 64, 64)[5:9].astype(np.float32))
    cfg = tiny_config(
        plugins={"modules": [str(tmp_path / "my_loader.py")]},
        data={"path": str(tmp_path / "scan.bin"), "loader": "auto"},
    )
    cfg["recon"]["iterations"] = 1
    assert np.isfinite(run(cfg).history["loss"][0])
    (tmp_path / "scan.bin").write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match="scan.bin: 10 bytes, expected"):
        run(cfg)

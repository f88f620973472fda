"""Guarantee 8, memory is estimated before it is allocated.

``validate`` and ``run`` estimate the peak memory of a run (``ptyrad_core.setup.memory``) before the
measurements are read and before the model, the optimizer state and the batches are allocated,
and refuse with the estimate, the limit and what to change when it does not fit. The tests
simulate a small machine with ``PTYRAD_CORE_MEMORY_LIMIT_MB`` (never the real machine's memory).

- refusals: at the measurement read (nothing read) and at the model (no object allocated), for
  ``validate`` and ``run``; ``recon.memory_check: false`` and a large limit pass; a bad limit;
- streaming: the raw bytes read per block stay within the block budget when preprocessing
  shrinks the patterns (a crop of 256 px to 64 px);
- loaders: a file shorter than its header declares (npy, empad, tiff, hdf5) is a one-line error
  naming the file and the byte counts; a compressed array over the budget cannot be streamed;
- the estimator: monotone in batch size, modes, slices and object size; an upper bound of a
  tiny run's measured peak; the cgroup limits.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from faultkit import assert_clean_error

from ptyrad_core.kernel.config import build_config
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import MemoryBudgetError
from ptyrad_core.setup import initialize, memory

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "data" / "tiny.h5"
LIMIT = memory.ENV_LIMIT


def tiny_patterns() -> np.ndarray:
    with h5py.File(TINY, "r") as f:
        return f["measurements"][()].reshape(64, 64, 64)


def no_result(folder: Path) -> bool:
    return not any(Path(folder).rglob("*.h5")) if Path(folder).exists() else True


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_small_machine_refuses_before_the_model_is_allocated(
    cli, frozen, tiny_config, write_yaml, monkeypatch, tmp_path, command
):
    cfg = tiny_config()
    path = write_yaml(cfg)
    before = frozen(TINY, path)
    made = []
    real = initialize.initial_object
    monkeypatch.setattr(initialize, "initial_object", lambda *a, **k: made.append(1) or real(*a, **k))
    monkeypatch.setenv(LIMIT, "5")  # the measurements (1 MiB) fit, the run does not
    outcome = cli(command, path)
    assert_clean_error(
        outcome,
        "memory:",
        "estimated",
        "MiB",
        "5.0 MiB available",
        LIMIT,
        "recon.batch_size",
        "recon.memory_check",
    )
    assert len(outcome.err.strip().splitlines()) == 1, outcome
    assert made == [], "the object was allocated before the check"
    assert no_result(tmp_path / "out")
    before.assert_unchanged()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_measurements_that_do_not_fit_are_not_read(cli, tiny_config, write_yaml, monkeypatch, command):
    path = write_yaml(tiny_config())
    loads = []
    real = Measurements.load
    monkeypatch.setattr(Measurements, "load", lambda self: loads.append(1) or real(self))
    monkeypatch.setenv(LIMIT, "0.5")  # tiny.h5 holds 1 MiB of patterns
    outcome = cli(command, path)
    assert_clean_error(
        outcome,
        "memory:",
        "reading the measurements",
        str(TINY),
        "data.memory_budget_MB (below 1.0",
        "streamed from disk",
        LIMIT,
    )
    assert loads == []


def test_the_advice_is_right_the_measurements_stream_within_the_same_limit(
    cli, tiny_config, write_yaml, monkeypatch
):
    """Following the first advice (a budget below the measurements' size) gets past the read."""
    monkeypatch.setenv(LIMIT, "0.5")
    cfg = tiny_config()
    cfg["data"]["memory_budget_MB"] = 0.5
    outcome = cli("validate", write_yaml(cfg))
    assert "reading the measurements" not in outcome.err, outcome
    assert_clean_error(outcome, "the reconstruction needs an estimated", "recon.batch_size")


def test_a_large_limit_passes_and_validate_prints_the_estimate(cli, tiny_config, write_yaml, monkeypatch):
    monkeypatch.setenv(LIMIT, "100000")
    outcome = cli("validate", write_yaml(tiny_config()))
    assert outcome.code == 0, outcome
    line = next(s for s in outcome.out.splitlines() if s.strip().startswith("memory"))
    assert "estimated peak" in line and "batch waves" in line and LIMIT in line, line


def test_memory_check_false_skips_the_refusal(cli, tiny_config, write_yaml, monkeypatch):
    cfg = tiny_config()
    cfg["recon"]["memory_check"] = False
    monkeypatch.setenv(LIMIT, "1")
    outcome = cli("validate", write_yaml(cfg))
    assert outcome.code == 0, outcome


@pytest.mark.parametrize("value", ["lots", "-3", "0", "inf"])
def test_a_bad_limit_is_named(cli, tiny_config, write_yaml, monkeypatch, value):
    monkeypatch.setenv(LIMIT, value)
    assert_clean_error(cli("validate", write_yaml(tiny_config())), LIMIT, repr(value))


# -- streaming blocks are sized from the raw patterns -------------------------------------------


def test_streamed_blocks_count_raw_bytes_not_cropped_ones(
    cli, tiny_config, write_yaml, monkeypatch, tmp_path
):
    """A crop from 256 to 64 px runs on every read: each block reads whole 256 px patterns, and the
    block budget must hold them (not 16 times as many, sized from the 64 px result)."""
    raw = np.zeros((64, 256, 256), dtype=np.float32)
    raw[:, 96:160, 96:160] = tiny_patterns()
    data = tmp_path / "big.npy"
    np.save(data, raw)
    budget_MB = 4  # 16 MiB of raw patterns: streamed, in blocks of max(1 MiB, budget / 4)
    cfg = tiny_config(
        data={
            "path": str(data),
            "loader": "npy",
            "memory_budget_MB": budget_MB,
            "preprocess": [{"name": "crop", "options": {"ky": [96, 160], "kx": [96, 160]}}],
        }
    )
    cfg["experiment"] = {
        "energy_kV": 300,
        "conv_angle_mrad": 21.4,
        "dk_invA": 1 / (64 * 0.19525),
        "aberrations": {"defocus": 100},
    }
    rows = []
    real = Measurements._read_raw
    monkeypatch.setattr(Measurements, "_read_raw", lambda self, r: rows.append(len(r)) or real(self, r))
    outcome = cli("validate", write_yaml(cfg))
    assert outcome.code == 0, outcome
    raw_pattern = 256 * 256 * 4
    limit = max(1 << 20, budget_MB * 2**20 // 4)
    assert rows and sum(rows) >= 64  # the statistics did stream through the whole file
    assert max(rows) * raw_pattern <= limit, (
        f"{max(rows)} raw patterns of {raw_pattern} bytes per block > {limit}"
    )


def test_block_rows_use_the_larger_of_raw_and_current_patterns():
    raw = np.zeros((10, 32, 32), dtype=np.uint16)
    meas = Measurements(_Lazy(raw), "x")
    meas.chunk_bytes = 4 * 32 * 32 * 6  # uint16 read + its float32 copy: 6 bytes a pixel
    assert meas.raw_row_bytes == 32 * 32 * 6
    assert meas.block_rows() == 4
    meas.map(lambda b: b[:, :8, :8])  # the cropped pattern is 16 times smaller; the read is not
    assert meas.block_rows() == 4
    meas.load()
    assert meas.raw_row_bytes == 8 * 8 * 4


class _Lazy:
    """An array-like that is not a NumPy array (as a loader's dataset)."""

    def __init__(self, a):
        self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim

    def __getitem__(self, key):
        return self.a[key]


# -- loaders read nothing without bounds ---------------------------------------------------------


def _truncate(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def _npy(tmp_path):
    path = tmp_path / "m.npy"
    np.save(path, tiny_patterns())
    _truncate(path, path.stat().st_size - 4096)
    return {"path": str(path), "loader": "npy"}, ["m.npy", "bytes", "truncated"]


def _empad(tmp_path):
    path = tmp_path / "m.raw"
    tiny_patterns().astype("<f4").tofile(path)
    _truncate(path, path.stat().st_size - 100)
    return {"path": str(path), "loader": "empad", "options": {"shape": [64, 64, 64], "gap": 0}}, [
        "m.raw",
        "bytes",
    ]


def _tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, tiny_patterns(), compression="zlib", photometric="minisblack")
    _truncate(path, path.stat().st_size // 2)
    return {"path": str(path), "loader": "tiff"}, ["m.tif", "bytes", "truncated"]


def _hdf5(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["measurements"] = tiny_patterns()
    _truncate(path, path.stat().st_size // 2)
    return {"path": str(path), "loader": "hdf5", "options": {"key": "measurements"}}, ["m.h5", "truncated"]


@pytest.mark.parametrize("make", [_npy, _empad, _tiff, _hdf5], ids=["npy", "empad", "tiff", "hdf5"])
def test_a_truncated_file_is_named_before_it_is_read(cli, frozen, tiny_config, write_yaml, tmp_path, make):
    data, names = make(tmp_path)
    before = frozen(data["path"])
    outcome = cli("validate", write_yaml(tiny_config(data=data)))
    assert_clean_error(outcome, *names)
    assert len(outcome.err.strip().splitlines()) == 1, outcome
    before.assert_unchanged()


def test_a_compressed_array_over_the_budget_is_refused_not_read(
    cli, tiny_config, write_yaml, tmp_path, monkeypatch
):
    path = tmp_path / "m.npz"
    np.savez_compressed(path, measurements=tiny_patterns())
    reads = []
    real = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: reads.append(a) or real(*a, **k))
    cfg = tiny_config(data={"path": str(path), "loader": "npy", "memory_budget_MB": 0.5})
    outcome = cli("validate", write_yaml(cfg))
    assert_clean_error(outcome, "m.npz:measurements", "can only be read whole", "data.memory_budget_MB")
    assert reads == []


def test_an_uncompressed_archive_streams(cli, tiny_config, write_yaml, tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, measurements=tiny_patterns())
    cfg = tiny_config(data={"path": str(path), "loader": "npy", "memory_budget_MB": 0.5})
    assert cli("validate", write_yaml(cfg)).code == 0


# -- the estimator -------------------------------------------------------------------------------


def _estimate(tiny_config, device="cpu", n=576, pattern=64, in_memory=True, **changes) -> int:
    cfg = tiny_config()
    cfg["recon"]["batch_size"] = changes.pop("batch", 32)
    cfg["model"]["probe"] = {"modes": changes.pop("pmodes", 1)}
    cfg["model"]["object"].update(
        modes=changes.pop("omodes", 1), slices=changes.pop("slices", 6), phase_noise=0.01
    )
    shape = changes.pop("shape", (200, 200))
    for key, value in changes.items():
        cfg["recon"][key] = value
    meas = SimpleNamespace(
        pattern_shape=(pattern, pattern),
        n=n,
        in_memory=in_memory,
        chunk_bytes=1 << 20,
        raw_row_bytes=pattern * pattern * 4,
    )
    estimates = memory.estimate_run(
        build_config(cfg),
        window=(pattern, pattern),
        object_shape=shape,
        n_positions=n,
        measurements=meas,
        device=device,
    )
    return estimates[0].total


@pytest.mark.parametrize(
    "knob, values",
    [
        ("batch", [1, 8, 32, 128, 576]),
        ("pmodes", [1, 2, 4, 8]),
        ("omodes", [1, 2, 4]),
        ("slices", [1, 2, 6, 20]),
        ("shape", [(100, 100), (200, 200), (400, 400), (1600, 1600)]),
    ],
)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_the_estimate_grows_with_every_size(tiny_config, knob, values, device):
    totals = [_estimate(tiny_config, device=device, **{knob: v}) for v in values]
    assert all(a < b for a, b in zip(totals, totals[1:])), dict(zip(map(str, values), totals))


def test_the_held_out_pixels_are_counted(tiny_config):
    """The held-out validation keeps 3 N K numbers (engine.heldout.Scorer: predicted and measured,
    and the predicted at the held-out minimum), K = round(f M), and the whole scan's mask, N M bytes."""
    off = _estimate(tiny_config, validation={"fraction": 0})
    on = _estimate(tiny_config, validation={"fraction": 0.1})
    k = round(0.1 * 64 * 64)
    # the allocator reserve scales the items (a fixed fraction of the total)
    assert on - off == pytest.approx(
        (3 * 576 * k * 4 + 576 * 64 * 64) * (1 + memory.ALLOCATOR_RESERVE), rel=1e-6
    )


def test_precision_and_streaming_change_the_estimate_as_they_should(tiny_config):
    assert _estimate(tiny_config, precision="float64") > _estimate(tiny_config)
    assert _estimate(tiny_config, in_memory=False, n=20000) < _estimate(tiny_config, n=20000)


def test_the_estimate_bounds_a_tiny_runs_measured_peak(tiny_config, write_yaml, monkeypatch):
    """The estimate is an upper bound of the resident memory the run adds (``VmHWM`` after the run
    minus ``VmRSS`` when the check was made), with the whole scan in one batch (waves dominate)."""
    from ptyrad_core.engine import loop as engine

    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM
    except OSError:
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")

    def status(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

    at_check = []
    real = memory.check_measurements
    monkeypatch.setattr(memory, "check_measurements", lambda *a: at_check.append(status("VmRSS")) or real(*a))
    cfg = tiny_config()
    cfg["recon"].update(batch_size=64, device="cpu")
    cfg["model"]["probe"] = {"modes": 2}
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    run = engine.Reconstruction(build_config(copy.deepcopy(cfg)), quiet=True)
    run.run()
    peak = status("VmHWM") - at_check[0]
    estimate = run.model.memory_estimate[0].total
    assert estimate >= peak, f"estimate {estimate / 2**20:.1f} MiB < measured {peak / 2**20:.1f} MiB"


def test_cgroup_limits_v2_and_v1(tmp_path):
    v2 = tmp_path / "v2"
    (v2 / "job").mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")
    (v2 / "job" / "memory.max").write_text(str(1000 * 2**20))
    (v2 / "job" / "memory.current").write_text(str(700 * 2**20))
    (v2 / "job" / "memory.stat").write_text(f"anon 1\ninactive_file {100 * 2**20}\n")
    proc = tmp_path / "cgroup2"
    proc.write_text("0::/job\n")
    free, where = memory._cgroup_free(v2, proc)
    assert free == 400 * 2**20 and "memory.max" in where

    v1 = tmp_path / "v1"
    (v1 / "memory" / "a" / "b").mkdir(parents=True)
    (v1 / "memory" / "a" / "memory.limit_in_bytes").write_text(str(500 * 2**20))
    (v1 / "memory" / "a" / "memory.usage_in_bytes").write_text(str(450 * 2**20))
    (v1 / "memory" / "a" / "b" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # no limit
    proc1 = tmp_path / "cgroup1"
    proc1.write_text("12:cpu,cpuacct:/a/b\n4:memory:/a/b\n")
    free, where = memory._cgroup_free(v1, proc1)
    assert free == 50 * 2**20 and "limit_in_bytes" in where


def test_check_raises_with_the_estimate_the_limit_and_the_advice(tiny_config, monkeypatch):
    monkeypatch.setenv(LIMIT, "10")
    est = memory.Estimate("host", {"batch waves": 30 * 2**20, "parameters": 2**20})
    with pytest.raises(MemoryBudgetError) as info:
        memory.check([est], build_config(tiny_config()), "the reconstruction")
    text = str(info.value)
    assert (
        "31 MiB" in text
        and "10 MiB available" in text
        and "recon.batch_size" in text
        and "model.probe.modes" in text
    )
    memory.check(
        [memory.Estimate("host", {"batch waves": 8 * 2**20})], build_config(tiny_config()), "x"
    )  # fits

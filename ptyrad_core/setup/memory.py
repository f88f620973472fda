"""Peak memory of a run, estimated before anything large is allocated, and the check against
the memory that is free.

``validate`` and ``run`` call :func:`check_measurements` before the measurements are read
(``initialize.load_measurements``) and :func:`check_run` once the shapes of the model are known
and before its tensors are made (``initialize.build_model``). A run whose estimate exceeds
:data:`HEADROOM` of the available memory is refused with a :class:`MemoryBudgetError` that gives
the estimate, its largest items, the limit and what to change. ``recon.memory_check: false``
skips the refusal; ``PTYRAD_CORE_MEMORY_LIMIT_MB`` replaces the detected memory (a smaller
machine, a share of a node, tests).

Symbols: ``r`` bytes per real element (4 for ``recon.precision: float32``, 8 for float64),
``c = 2 r`` per complex element; ``O = omode x Nz x NY x NX`` object pixels (modes, slices,
height, width); ``W = Ny x Nx`` pixels of the probe window (the simulation window); ``K`` pixels
of a measured pattern after preprocessing; ``P`` probe modes; ``M`` object modes; ``N`` scan
positions; ``B = min(recon.batch_size, N)``; ``b`` the positions carried through the slices at
a time (``recon.positions_per_pass``: on the CPU about 2 MiB of waves, on a GPU all ``B``);
``k`` arrays of optimizer state per optimized element (Adam, AdamW, NAdam, RAdam, Adamax,
Adadelta, Rprop: 2, AMSGrad 3; RMSprop 1 plus 1 with momentum and 1 centred; Adagrad 1; SGD 1
with momentum, else 0; L-BFGS ``2 history_size + 3``; others 3).

Held for the whole run:

- measurements in memory: ``N K 4`` (float32; on a GPU ``N K s`` with ``s`` the bytes of
  ``data.device_dtype``, the float32 host copy is freed once it is there); streamed: nothing;
- parameters: object ``2 O r`` (amplitude, phase), probe ``P W c``, positions and tilts ``2 N r``
  each, integer crops and sub-pixel remainders ``N (16 + 2 r)``;
- optimizer state: ``k`` times the optimized parameters (``update.*.lr > 0``);
- the snapshot of the last completed iteration (a run restores it on failure): parameters and
  optimizer state once more.

On top of that, the phases of an iteration. They do not overlap in time, but they are added up:
what one phase frees the allocator keeps, and the next phase's requests, of other sizes, may not
fit in it, so the resident memory approaches their sum:

- a mini-batch's forward and backward pass:

  - gradients: the optimized parameters once more;
  - batch waves: ``B P M W c (1 + Nz + (Nz - 1))``, the exit wave, the wave entering each slice
    (kept when the object is optimized) and the propagated spectra (kept when slice thickness
    or tilts are optimized), for the whole batch whichever ``b``; the transmission patches and
    their gradient ``2 Nz M B W c``; the working waves of one chunk ``4 b P M W c``;
  - object transients: when the windows cover ``0.75 NY NX`` or more (``model.PATCH_FIRST``)
    the complex transmission of the whole object, its phasor, its gradient and a product of
    both ``4 O c`` plus ``O r``; else amplitude, phase and their gradient patches
    ``Nz M B W (3 r + 2 c)``;
  - per-position vectors: shift ramps ``3 B W c``, propagators and their autograd temporaries
    ``6 T W c`` (``T = B`` for per-position tilts, else 1), predicted and measured patterns and
    the loss ``B (W + K) 4 r``;
  - on a GPU, the FFT workspace of the batched transforms ``B P M W c``;
- the next snapshot, taken while the last one is still held: parameters and optimizer state;
- writing the result file: the optimizer state serialized twice (``torch.save`` into a buffer,
  then its bytes); on a GPU also host copies of the object and the state;
- constraints (blurs, thresholds, filters on the whole object): ``6 O r``, a few object-sized
  temporaries (padded copies, convolutions, transforms).

Then :data:`ALLOCATOR_RESERVE` of all that for the allocator's slack, and on the host
:data:`RUNTIME_BYTES` for what the run loads besides arrays. Streamed measurements add the rows
of one batch as read (``B`` raw patterns as stored plus their float32 copy) or one block of the
streamed statistics (``Measurements.chunk_bytes``), whichever is larger.

Streamed statistics and whole-array reads go block by block (``Measurements.chunk_bytes``, raw
bytes per block): one block plus its float32 copy.

Reading the measurements whole (:func:`estimate_measurements`) needs their float32 array, a
second one while preprocessing steps transform them block by block, and one block.

What is not counted: the interpreter and the libraries imported before the check (already
resident, and no longer part of ``MemAvailable``), and plugins' own buffers (forward
extensions, detector stages, loss terms beyond a few pattern-sized temporaries). Processes of a
data-parallel run on one machine each hold their own copy; the check is made per process.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ptyrad_core.kernel.errors import ConfigError, MemoryBudgetError

#: the largest whole-scan held-out mask (bytes: positions x pixels) a run keeps on its device
#: (engine.heldout.Split.mask); beyond it each batch builds its own
HELDOUT_MASK_CACHE_BYTES = 256 * 2**20

#: a run is refused when its estimate exceeds this fraction of the available memory: the rest is
#: left to the system, other processes and what the estimate does not see
HEADROOM = 0.9
#: environment variable: the memory (MiB) a run may use, host and device alike, instead of the
#: detected free memory
ENV_LIMIT = "PTYRAD_CORE_MEMORY_LIMIT_MB"
MiB = 2**20

#: optimizer state arrays per optimized element, by ``torch.optim`` class name
_STATE = {
    "Adam": 2,
    "AdamW": 2,
    "NAdam": 2,
    "RAdam": 2,
    "Adamax": 2,
    "Adadelta": 2,
    "Rprop": 2,
    "Adafactor": 2,
    "Adagrad": 1,
    "ASGD": 1,
}
#: what the user can lower for each item of the estimate (config keys, in order of effect)
SUGGEST = {
    "measurements": ["data.memory_budget_MB"],
    "stream blocks": ["recon.batch_size"],
    "batch waves": ["recon.batch_size", "model.probe.modes", "model.object.modes", "model.object.slices"],
    "object transients": [
        "recon.batch_size",
        "model.object.shape",
        "model.object.slices",
        "model.object.modes",
    ],
    "per-position vectors": ["recon.batch_size"],
    "FFT workspace": ["recon.batch_size", "model.probe.modes", "model.object.modes"],
    "parameters": ["model.object.shape", "model.object.slices", "model.object.modes"],
    "gradients": ["model.object.shape", "model.object.slices", "model.object.modes"],
    "optimizer state": ["model.object.shape", "model.object.slices", "model.object.modes", "optimizer.name"],
    "snapshots": ["model.object.shape", "model.object.slices", "model.object.modes"],
    "result writing": ["model.object.shape", "model.object.slices", "model.object.modes"],
    "constraints": ["model.object.shape", "model.object.slices", "model.object.modes"],
}
#: allowance for the allocator, as a fraction of the estimated live memory: memory freed between
#: mini-batches and phases (the last, smaller batch; snapshots; the optimizer's lazily created
#: state) that the allocator keeps but cannot reuse for requests of another size
ALLOCATOR_RESERVE = 0.25
#: host memory a run adds besides its arrays: modules imported after the check (result file,
#: figures), FFT plans, thread pools
RUNTIME_BYTES = 32 * 2**20


@dataclass
class Estimate:
    """The estimated peak memory at one place (``"host"`` or a device such as ``"cuda:0"``).

    :ivar items: the peak's composition, name -> bytes, largest first.
    :ivar held: bytes of it already allocated when the estimate was made (measurements read).
    """

    place: str
    items: dict[str, int] = field(default_factory=dict)
    held: int = 0
    #: a note on a config key of :data:`SUGGEST` (what value to choose)
    advice: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.items.values()))

    def add(self, name: str, nbytes: float) -> None:
        if nbytes > 0:
            self.items[name] = self.items.get(name, 0) + int(math.ceil(nbytes))

    def summary(self, top: int = 4) -> str:
        """``"812 MiB (batch waves 600, optimizer state 100, ...)"``."""
        parts = sorted(self.items.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{k} {_mib(v)}" for k, v in parts[:top] if v >= MiB / 10)
        return f"{_mib(self.total)} MiB" + (f" ({shown} MiB)" if shown else "")


def _mib(nbytes: float) -> str:
    value = nbytes / MiB
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


# -- what a run needs ----------------------------------------------------------------------------


def optimizer_state_factor(name: str, options: dict) -> float:
    """Arrays of optimizer state per optimized element (``k`` of the module docstring)."""
    if name == "SGD":
        return 1.0 if options.get("momentum", 0) else 0.0
    if name == "RMSprop":
        return 1.0 + bool(options.get("momentum", 0)) + bool(options.get("centered", False))
    if name == "LBFGS":
        return 2.0 * int(options.get("history_size", 100)) + 3.0
    if name in ("Adam", "AdamW") and options.get("amsgrad"):
        return 3.0
    return float(_STATE.get(name, 3))


def raw_row_bytes(meas) -> int:
    """Bytes one scan position's raw pattern takes when read: as stored plus its float32 copy."""
    return meas.raw_row_bytes if hasattr(meas, "raw_row_bytes") else int(np.prod(meas.pattern_shape)) * 4


def estimate_run(
    config, *, window: tuple[int, int], object_shape: tuple[int, int], n_positions: int, measurements, device
) -> list[Estimate]:
    """The peak memory of a reconstruction, per place (the host; and the device on a GPU).

    :param window: the simulation window ``(Ny, Nx)``.
    :param object_shape: ``(NY, NX)``.
    :param measurements: the preprocessed :class:`~ptyrad_core.kernel.data.Measurements`.
    """
    from ptyrad_core.kernel.forward import chunk_size

    device = torch.device(device)
    on_gpu = device.type != "cpu"
    m = config.model
    r = 8 if config.recon.precision == "float64" else 4
    c = 2 * r
    P, M, Nz = int(m.probe.modes), int(m.object.modes), int(m.object.slices)
    W = int(window[0]) * int(window[1])
    n_obj = M * Nz * int(object_shape[0]) * int(object_shape[1])
    N = int(n_positions)
    B = max(1, min(int(config.recon.batch_size), N))
    K = int(np.prod(measurements.pattern_shape))
    T = B if m.tilts.mode == "per_position" else 1
    b = chunk_size(config.recon.positions_per_pass, P * W * c * M, device) or B
    b = min(b, B)
    lr = {
        name: getattr(config.update, name).lr
        for name in ("object_amplitude", "object_phase", "probe", "positions", "tilts", "slice_thickness")
    }
    sizes = {
        "object_amplitude": n_obj * r,
        "object_phase": n_obj * r,
        "probe": P * W * c,
        "positions": 2 * N * r,
        "tilts": 2 * (N if m.tilts.mode == "per_position" else 1) * r,
        "slice_thickness": r,
    }
    params = sum(sizes.values())
    buffers = N * (16 + 2 * r)
    optimized = sum(s for name, s in sizes.items() if lr[name] > 0)
    k = optimizer_state_factor(config.optimizer.name, config.optimizer.options)
    state = k * optimized
    object_grad = lr["object_amplitude"] > 0 or lr["object_phase"] > 0
    need_h = lr["slice_thickness"] > 0 or lr["tilts"] > 0

    place = Estimate(str(device) if on_gpu else "host")
    place.add("parameters", params + buffers)
    place.add("optimizer state", state)
    place.add("snapshots", params + buffers + state)
    batch = {
        "gradients": optimized,
        "batch waves": B * P * M * W * c * (1 + (Nz if object_grad else 0) + (Nz - 1 if need_h else 0))
        + 2 * Nz * M * B * W * c
        + 4 * b * P * M * W * c,
        "object transients": (4 * n_obj * c + n_obj * r)
        if B * W >= 0.75 * object_shape[0] * object_shape[1]
        else Nz * M * B * W * (3 * r + 2 * c),
        "per-position vectors": 3 * B * W * c + 6 * T * W * c + B * (W + K) * 4 * r,
        # the held-out pixels of every position, predicted and measured, and the predicted at the
        # held-out minimum, kept until a later state is compared with it (engine.heldout.Scorer),
        # and the whole scan's mask, one byte per pixel, kept once a loss term that reads whole
        # patterns is scored (engine.heldout.Split.mask); counted for every stack: an upper bound
        "held-out pixels": (
            3 * N * max(1, round(config.recon.validation.fraction * K)) * r
            + (N * K if N * K <= HELDOUT_MASK_CACHE_BYTES else 0)
        )
        if config.recon.validation.fraction > 0 and measurements.in_memory
        else 0,
    }
    phases = [
        batch,
        {"snapshots": params + buffers + state},
        {"result writing": 2 * state},
        {"constraints": 6 * n_obj * r if config.constraints else 0},
    ]
    # the phases add up: what one frees, the allocator keeps, and the next may not fit in it
    for phase in phases:
        for name, nbytes in phase.items():
            place.add(name, nbytes)

    host = place if not on_gpu else Estimate("host")
    streamed = not measurements.in_memory
    if streamed:
        host.add("stream blocks", max(B * raw_row_bytes(measurements), measurements.chunk_bytes))
    elif on_gpu:
        narrow = {"float32": 4, "bfloat16": 2, "float16": 2}[config.data.device_dtype]
        place.add("measurements", measurements.n * K * narrow)
        host.add("measurements", measurements.n * K * 4)
        host.held += measurements.n * K * 4
    else:
        place.add("measurements", measurements.n * K * 4)
        place.held += measurements.n * K * 4
    if not streamed:
        host.advice["data.memory_budget_MB"] = place.advice["data.memory_budget_MB"] = (
            f"below {_mib(measurements.n * K * 4)}: the measurements are then streamed from disk"
        )
    if on_gpu:
        host.add("result writing", 2 * state + 2 * n_obj * r)
        place.add("FFT workspace", B * P * M * W * c)  # cuFFT plans of the batched transforms
    estimates = [place] if not on_gpu else [place, host]
    for est in estimates:
        est.add("allocator reserve", ALLOCATOR_RESERVE * est.total)
    host.add("libraries and plans", RUNTIME_BYTES)
    return estimates


def estimate_measurements(config, meas) -> Estimate:
    """Host memory for reading the measurements whole (before ``Measurements.load``): the float32
    array, a second one when preprocessing steps transform it, and one block being read."""
    est = Estimate("host")
    est.advice["data.memory_budget_MB"] = (
        f"below {_mib(meas.nbytes_float32)}: the measurements are then streamed from disk"
    )
    est.add("measurements", meas.nbytes_float32 * (2 if config.data.preprocess else 1))
    est.add("read block", min(meas.chunk_bytes, meas.nbytes_float32))
    return est


# -- what is available ---------------------------------------------------------------------------


def env_limit() -> int | None:
    """``PTYRAD_CORE_MEMORY_LIMIT_MB`` in bytes, or None when unset."""
    text = os.environ.get(ENV_LIMIT, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise ConfigError(
            f"{ENV_LIMIT}={text!r}: expected a positive number of MiB (the memory a run may use)"
        )
    return int(value * MiB)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_free(
    root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")
) -> tuple[int | None, str]:
    """The tightest cgroup limit minus what the group uses (less its reclaimable page cache), over
    this process's cgroup and its parents; v2 ``memory.max`` or v1 ``memory.limit_in_bytes``."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None, ""
    best: tuple[int | None, str] = (None, "")
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2
            base, limit_name, usage_name, stat_key = root, "memory.max", "memory.current", "inactive_file"
        elif "memory" in controllers.split(","):  # v1
            base, limit_name, usage_name, stat_key = (
                root / "memory",
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            )
        else:
            continue
        folder = base / rel.lstrip("/")
        while True:
            limit = _read_int(folder / limit_name)
            if limit is not None and limit < 2**60:  # v1 writes "no limit" as a huge number
                used = (_read_int(folder / usage_name) or 0) - _stat(folder / "memory.stat", stat_key)
                free = max(0, limit - max(0, used))
                if best[0] is None or free < best[0]:
                    best = (free, f"cgroup {folder / limit_name}")
            if folder == base or folder.parent == folder:
                break
            folder = folder.parent
    return best


def host_available() -> tuple[int | None, str]:
    """Free host memory in bytes (None if unknown) and where the figure comes from: the smaller of
    ``MemAvailable`` (``/proc/meminfo``) and the cgroup limit minus its usage."""
    found: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append((int(line.split()[1]) * 1024, "MemAvailable"))
                    break
    except (OSError, ValueError, IndexError):
        pass
    free, where = _cgroup_free()
    if free is not None:
        found.append((free, where))
    return min(found) if found else (None, "")


def device_available(device) -> tuple[int | None, str]:
    """Free memory of a CUDA device (``torch.cuda.mem_get_info`` plus what this process's caching
    allocator holds unused); None elsewhere."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None, ""
    try:
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except RuntimeError:
        return None, ""
    return int(free + cached), f"torch.cuda.mem_get_info({device})"


def available(place: str) -> tuple[int | None, str]:
    """What a run may use at ``place`` ("host" or a device): ``PTYRAD_CORE_MEMORY_LIMIT_MB`` if set,
    else the free memory detected."""
    limit = env_limit()
    if limit is not None:
        return limit, ENV_LIMIT
    return host_available() if place == "host" else device_available(place)


# -- the check -----------------------------------------------------------------------------------


def check(estimates: list[Estimate], config, what: str) -> None:
    """Raise :class:`MemoryBudgetError` when an estimate exceeds :data:`HEADROOM` of what its place
    has available (plus what the run already holds there); nothing when ``recon.memory_check``
    is false or the free memory is unknown."""
    if not getattr(config.recon, "memory_check", True):
        return
    for est in estimates:
        free, where = available(est.place)
        if free is None:
            continue
        limit = free if where == ENV_LIMIT else free + est.held
        if est.total <= HEADROOM * limit:
            continue
        largest = [name for name, _ in sorted(est.items.items(), key=lambda kv: -kv[1]) if name in SUGGEST]
        keys: list[str] = []
        for name in largest[:2]:
            keys += [k for k in SUGGEST[name] if k not in keys]
        advice = ", ".join(f"{k} ({est.advice[k]})" if k in est.advice else k for k in keys)
        held = f" plus {_mib(est.held)} MiB it holds already" if est.held and where != ENV_LIMIT else ""
        raise MemoryBudgetError(
            f"memory: {what} needs an estimated {est.summary()} on the {est.place}, "
            f"more than {HEADROOM:.0%} of the "
            f"{_mib(limit)} MiB available ({where}{held}); lower {advice}. "
            f"recon.memory_check: false skips this check, {ENV_LIMIT} sets the limit"
        )


def check_measurements(config, meas) -> Estimate:
    """Before the measurements are read whole: refuse if they do not fit the host."""
    est = estimate_measurements(config, meas)
    check(
        [est], config, f"reading the measurements {meas.source} ({_mib(meas.nbytes_float32)} MiB as float32)"
    )
    return est


def check_run(config, **shapes) -> list[Estimate]:
    """Before the model is built: refuse if the run does not fit; return the estimates."""
    estimates = estimate_run(config, **shapes)
    check(estimates, config, "the reconstruction")
    return estimates


def target_device(name: str) -> torch.device:
    """The device a run with ``recon.device = name`` computes on, for estimates made elsewhere
    (``validate`` builds on the CPU): ``auto`` is CUDA when present; a name torch does not know
    is the CPU (the run itself reports it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        return torch.device("cpu")


def describe(est: Estimate) -> str:
    """One line for ``validate``: the estimate, and the limit it is checked against."""
    free, where = available(est.place)
    if free is None:
        limit = "available memory unknown, not checked"
    else:
        limit = free if where == ENV_LIMIT else free + est.held
        limit = f"limit {_mib(HEADROOM * limit)} MiB ({HEADROOM:.0%} of {_mib(limit)} MiB, {where})"
    return f"{est.place}: estimated peak {est.summary()}; {limit}"

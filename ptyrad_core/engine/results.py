"""The result file: one HDF5 file per run (``result.h5``), written atomically, and the
checkpoint it carries.

The layout (format ``ptyrad_core-result``, version 1) is documented in docs/results.md; a
test checks that every dataset written here is listed there.

Every result file is also a checkpoint: the state a resume needs beyond the result's own
datasets (optimizer, scheduler, random generators, the raw parameters) is stored under its
``/checkpoint`` group (:func:`write` / :func:`read`; :func:`inspect` checks a file before any
data are read). :func:`capture` takes an in-memory snapshot after every completed iteration, so
that an interrupted or diverging iteration can be undone; :func:`restore` puts one back.
"""

from __future__ import annotations

import copy
import datetime as _dt
import io
import json
import logging
import os
import platform
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from ptyrad_core.kernel.errors import DataError, NonFiniteStateError, one_line
from ptyrad_core.setup import runtime

log = logging.getLogger("ptyrad_core")

FORMAT = "ptyrad_core-result"
FORMAT_VERSION = 1


def is_result_file(path: Path | str) -> bool:
    """Whether ``path`` is an HDF5 file whose root attribute ``format`` names a ptyrad_core result."""
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
    except Exception:  # noqa: BLE001 - not HDF5, unreadable: not a result
        return False
    return (fmt.decode("utf-8", "replace") if isinstance(fmt, bytes) else fmt) == FORMAT


def check_slot(
    path: Path | str, config, *, overwrite: bool = False, resume: Path | str | None = None, own: bool = False
) -> str:
    """Whether a run of ``config`` may write its result file ``path`` (judged without touching it).

    Refused, with one line naming the path: a file the run reads (``data.path``, a positions or
    probe file, the config...: never written to, even with ``--overwrite``); a folder; an
    existing result, unless the run resumes from it, ``overwrite`` was asked for, or ``own`` (the
    run wrote it); any other existing file unless ``overwrite`` (it is named as not a result).

    :return: ``"new"`` or ``"replace"``.
    """
    from ptyrad_core.kernel.errors import OutputError
    from ptyrad_core.setup.readonly import input_key, named_config_inputs, same_file

    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return "new"
    if not path.is_file():
        raise OutputError(
            f"output: {str(path)!r} exists and is not a file; remove it or choose another output.dir"
        )
    key = input_key(path, named_config_inputs(config))
    if key is not None:
        raise OutputError(
            f"output: {str(path)!r} is {key}, a file this run reads; it is never written to, even with "
            "--overwrite: set another output.dir / output.name"
        )
    if own or overwrite or (resume is not None and same_file(resume, path)):
        return "replace"
    if not is_result_file(path):
        raise OutputError(
            f"output: {str(path)!r} exists and is not a ptyrad_core result file; replace it with --overwrite "
            "or set another output.dir / output.name"
        )
    raise OutputError(
        f"output: {str(path)!r} already holds a result; continue it with --resume {path}, replace it with "
        "--overwrite, or set another output.dir / output.name"
    )


def software_versions() -> dict[str, str]:
    import pluggy
    import pydantic
    import torch

    from ptyrad_core.kernel import __version__

    return {
        "ptyrad_core": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "pydantic": pydantic.__version__,
        "pluggy": pluggy.__version__,
    }


def _require_finite(run) -> None:
    """Nothing non-finite is ever written as a result: the last barrier before a write."""
    import torch

    model = run.model
    for name in ("object_amplitude", "object_phase", "probe_ri", "positions", "tilts", "slice_thickness"):
        value = getattr(model, name).detach()
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteStateError(f"{name} holds NaN or Inf: not written")
    for key in ("loss", "slice_thickness_A"):
        if not np.all(np.isfinite(run.history[key])):
            raise NonFiniteStateError(f"history/{key} holds NaN or Inf: not written")


def _kept_best(run, final: bool) -> dict | None:
    """The kept held-out state the file's arrays hold instead of the last one: at the run's end
    (``final``) with ``recon.stop.keep: best``, when the kept iteration is not the last."""
    tracker = getattr(run, "tracker", None)
    if not final or tracker is None or tracker.best_state is None or run.settings.keep != "best":
        return None
    return tracker.best_state if tracker.kept_iteration != run.iteration else None


@contextmanager
def _holding(model, state: dict | None):
    """The model holds ``state`` ({name: tensor}) inside the block; its own values after (bit for bit)."""
    if state is None:
        yield
        return
    import torch

    own = {name: getattr(model, name).detach().clone() for name in state}
    try:
        with torch.no_grad():
            for name, value in state.items():
                getattr(model, name).copy_(value)
        yield
    finally:
        with torch.no_grad():
            for name, value in own.items():
                getattr(model, name).copy_(value)


def write_result(path: Path, run, final: bool = False) -> Path:
    """Write the state of ``run`` (a :class:`~ptyrad_core.engine.loop.Reconstruction`) atomically.

    The file is written under a temporary name in the same folder, flushed to disk (fsync) and
    renamed over ``path``: a crash, a full disk or an interrupt at any point leaves the previous
    file intact. A state holding NaN or Inf is refused (:class:`NonFiniteStateError`).

    ``final`` (the run's end) with ``recon.stop.keep: best``: the arrays hold the state at the
    held-out minimum (root attribute ``state_iteration``), and the checkpoint the last state
    (``checkpoint/last_state``), which a resume continues from.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _require_finite(run)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    model = run.model
    hist = run.history
    best = _kept_best(run, final)
    try:
        with h5py.File(tmp, "w") as f, _holding(model, best):
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["iteration"] = run.iteration
            f.attrs["state_iteration"] = run.tracker.kept_iteration if best is not None else run.iteration
            f.attrs["dx_A"] = model.dx
            f.attrs["wavelength_A"] = model.wavelength
            f.attrs["seed"] = run.settings.seed
            f.attrs["fft"] = getattr(model.fft, "name", "torch")  # recon.fft as resolved: --resume keeps it
            f.attrs["data_file"] = str(run.settings.data_file)
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
            f.create_dataset(
                "object/phase",
                data=model.object_phase.detach().cpu().numpy(),
                compression="gzip",
                compression_opts=1,
            )
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
            if "heldout_loss" in hist:  # NaN where it was not evaluated (recon.validation.every > 1)
                f["history/heldout_loss"] = np.asarray(hist["heldout_loss"], dtype=np.float64)
            if getattr(run, "split", None) is not None:
                write_validation(f.create_group("validation"), run)
        with h5py.File(tmp, "a") as f:  # the checkpoint: the last state, whatever the arrays hold
            write(f.create_group("checkpoint"), run)
            if best is not None:
                last = f.create_group("checkpoint/last_state")
                for name in ("object_amplitude", "object_phase", "probe_ri"):
                    last.create_dataset(name, data=getattr(model, name).detach().cpu().numpy(), **_GZIP)
        with open(tmp, "rb+") as fh:  # on disk before it replaces the previous file
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


_GZIP = {"compression": "gzip", "compression_opts": 1}


def write_validation(group, run) -> None:
    """Fill the ``validation`` group: the split (``pixel_u``, ``position_s``; attributes
    ``fraction``, ``seed``, ``shape``), ``every``, ``keep``, ``best_iteration`` (the held-out
    minimum; -1: none), ``best_heldout_loss`` (absent while there is none) and ``best_groups`` (its
    per-group values, absent without them), ``kept_iteration`` (the state kept: the latest tied with
    the minimum), ``tolerance``, ``stopped_at`` (-1: no early stop), and with ``keep: best`` the kept
    state's tensors under ``best_state/<name>``."""
    run.split.write(group)
    tracker = run.tracker
    group.attrs["every"] = run.settings.validation_every
    group.attrs["keep"] = run.settings.keep
    group.attrs["best_iteration"] = tracker.best_iteration
    group.attrs["kept_iteration"] = tracker.kept_iteration
    group.attrs["tolerance"] = run.settings.tolerance
    if tracker.best_loss is not None:
        group.attrs["best_heldout_loss"] = tracker.best_loss
    if tracker.reference_groups() is not None:  # evaluated now if deferred: a resumed run compares with them
        group["best_groups"] = np.asarray(tracker.best_groups, dtype=np.float64)
    group.attrs["stopped_at"] = tracker.stopped_at
    if run.settings.keep == "best" and tracker.best_state is not None:
        for name, value in tracker.best_state.items():
            data = value.detach().cpu().numpy()
            group.create_dataset(f"best_state/{name}", data=data, **(_GZIP if data.ndim else {}))


#: datasets every result file holds (``write_result`` writes them all; docs/results.md)
REQUIRED = (
    "object/amplitude",
    "object/phase",
    "object/occupancy",
    "probe/modes",
    "probe/powers",
    "positions/nominal_px",
    "positions/refined_px",
    "tilts_mrad",
    "slice_thickness_A",
)
#: root attributes every result file holds, numbers
REQUIRED_NUMBERS = ("iteration", "dx_A", "wavelength_A")
#: root attributes stored as text: (language, type the text must parse to)
TEXT_ATTRS = {"config": ("YAML", dict), "plugins": ("JSON", list), "versions": ("JSON", dict)}


def read_result(path: Path) -> dict[str, Any]:
    """Read a result file into a flat dict of arrays (keys are HDF5 paths) plus ``attrs``.

    :raises DataError: the file is missing, not HDF5, truncated or damaged, not a ptyrad_core
        result file, lacks a dataset of :data:`REQUIRED`, or holds an attribute that does not
        parse (:func:`inspect_result`); the message names the file and the dataset or attribute.
    """
    path = Path(path)
    out: dict[str, Any] = {}
    with _open(path, "result file") as f:
        attrs = _check(f, path, "result file", REQUIRED)

        def read(name, obj):
            if isinstance(obj, h5py.Dataset):
                try:
                    out[name] = obj[()]
                except Exception as exc:  # noqa: BLE001 - a damaged chunk, a truncated file
                    raise DataError(
                        f"result file {path}: dataset {name!r} cannot be read ({type(exc).__name__}: {exc}); "
                        "the file is damaged or truncated"
                    ) from None

        try:
            f.visititems(read)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken group or link
            raise DataError(
                f"result file {path}: cannot list its datasets ({type(exc).__name__}: {exc}); the file is "
                "damaged"
            ) from None
    out["attrs"] = attrs
    return out


def inspect_result(path, what: str = "result file", require: tuple[str, ...] = REQUIRED) -> dict[str, Any]:
    """Check that ``path`` is a readable ptyrad_core result file without reading its arrays.

    Opens the file, checks the format attributes, that every dataset in ``require`` exists, and
    parses the text attributes (``config`` as YAML with ``yaml.safe_load``, ``plugins`` and
    ``versions`` as JSON). Any problem is a :class:`DataError`, one line that starts with
    ``what`` (e.g. ``"--resume"``) and names the file and the attribute or dataset.

    :return: the root attributes, ``config`` / ``plugins`` / ``versions`` parsed.
    """
    path = Path(path)
    with _open(path, what) as f:
        return _check(f, path, what, tuple(require))


def _open(path: Path, what: str):
    if path.is_dir():
        raise DataError(f"{what}: {path} is a directory; expected a ptyrad_core result file (result.h5)")
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist")
    try:
        return h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - not HDF5, truncated, locked
        raise DataError(
            f"{what}: {path} is not a readable HDF5 file ({one_line(exc)}); expected a "
            "ptyrad_core "
            "result file (truncated or damaged?)"
        ) from None


def _check(f, path: Path, what: str, require: tuple[str, ...]) -> dict[str, Any]:
    """The parsed root attributes of an open result file; DataError on anything unexpected."""
    head = f"{what}: {path}"
    try:
        attrs = {str(k): f.attrs[k] for k in f.attrs.keys()}
    except Exception as exc:  # noqa: BLE001 - an attribute of a type h5py cannot read
        raise DataError(f"{head}: its root attributes cannot be read ({type(exc).__name__}: {exc})") from None
    attrs = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in attrs.items()}
    fmt = attrs.get("format")
    if fmt != FORMAT:
        raise DataError(
            f"{head} is not a ptyrad_core result file (root attribute format is {fmt!r}, expected {FORMAT!r})"
        )
    version = attrs.get("format_version")
    if not isinstance(version, (int, np.integer)) or not 1 <= int(version) <= FORMAT_VERSION:
        raise DataError(
            f"{head}: attribute 'format_version' is "
            f"{version.item() if isinstance(version, np.generic) else version!r}; expected an integer from "
            f"1 to {FORMAT_VERSION} "
            "(a file of a newer ptyrad_core?)"
        )
    for key in REQUIRED_NUMBERS:
        value = attrs.get(key)
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if (
            not isinstance(value, (int, float, np.integer, np.floating))
            or isinstance(value, bool)
            or not np.isfinite(value)
        ):
            raise DataError(f"{head}: attribute {key!r} is {value!r}; expected a finite number")
    for key, (language, kind) in TEXT_ATTRS.items():
        attrs[key] = _parse(attrs.get(key), key, language, kind, head)
    missing = [name for name in require if not _is_dataset(f, name)]
    if missing:
        raise DataError(
            f"{head} lacks the dataset(s) {', '.join(missing)}; a ptyrad_core result file holds "
            f"{', '.join(require)}"
        )
    _check_shapes(f, head)
    return attrs


def _check_shapes(f, head: str) -> None:
    """The shapes of the datasets of :data:`REQUIRED` that are present, as docs/results.md gives them."""
    shapes = {name: tuple(f[name].shape) for name in REQUIRED if _is_dataset(f, name)}
    for name in shapes:
        if f[name].dtype.kind not in "biufc":
            raise DataError(f"{head}: dataset {name!r} holds {f[name].dtype} values; expected numbers")
    amp, n_pos = shapes.get("object/amplitude"), shapes.get("positions/nominal_px", (None,))[0]
    omode = amp[0] if amp and len(amp) == 4 else None
    pmode = shapes.get("probe/modes", (None,))[0]
    expected = {
        "object/amplitude": ("(omode, Nz, NY, NX)", lambda s: len(s) == 4),
        "object/phase": ("the shape of object/amplitude", lambda s: s == amp),
        "object/occupancy": ("(omode,)", lambda s: s == (omode,)),
        "probe/modes": ("(pmode, Ny, Nx)", lambda s: len(s) == 3),
        "probe/powers": ("(pmode,)", lambda s: s == (pmode,)),
        "positions/nominal_px": ("(N, 2)", lambda s: len(s) == 2 and s[1] == 2),
        "positions/refined_px": ("(N, 2) as positions/nominal_px", lambda s: s == (n_pos, 2)),
        "tilts_mrad": ("(1, 2) or (N, 2)", lambda s: len(s) == 2 and s[1] == 2 and s[0] in (1, n_pos)),
        "slice_thickness_A": ("a scalar ()", lambda s: s == ()),
    }
    for name, shape in shapes.items():
        text, ok = expected[name]
        if not ok(shape):
            raise DataError(f"{head}: dataset {name!r} has shape {shape}; expected {text}")


def _is_dataset(f, name: str) -> bool:
    try:
        return isinstance(f.get(name), h5py.Dataset)
    except Exception:  # noqa: BLE001 - a broken link
        return False


def _parse(text, key: str, language: str, kind: type, head: str):
    """The value of a text attribute: ``config`` as YAML (safe_load: plain data, no tags that
    build Python objects), the others as JSON."""
    if not isinstance(text, str):
        raise DataError(
            f"{head}: attribute {key!r} is {type(text).__name__ if text is not None else 'missing'}; "
            f"expected {language} text"
        )
    try:
        value = yaml.safe_load(text) if language == "YAML" else json.loads(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise DataError(
            f"{head}: attribute {key!r} is not valid {language}{at} ({reason}); expected plain {language} "
            "data"
        ) from None
    if not isinstance(value, kind):
        raise DataError(
            f"{head}: attribute {key!r} holds a {type(value).__name__}; expected a {language} "
            f"{'mapping' if kind is dict else 'list'}"
        )
    return value


#: what a result file's content can raise in code that expects the documented layout (a value
#: of another type or shape than docs/results.md describes, in a file that passed read_result)
CONTENT_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)


@contextmanager
def unexpected_content(path):
    """Turn an error from reading a result file's values into a one-line DataError naming the file."""
    try:
        yield
    except DataError:
        raise
    except CONTENT_ERRORS as exc:
        raise DataError(
            f"{path}: a value in the file is not what a ptyrad_core result file holds "
            f"({type(exc).__name__}: {exc}); "
            "expected the layout of docs/results.md"
        ) from exc


# --------------------------------------------------------------------------------------------
# the checkpoint: what a resume needs beyond the result's datasets
# --------------------------------------------------------------------------------------------


def _note(run, message: str, *args) -> None:
    """Log a resume decision and keep it for run.log (whose handler opens only when the loop starts)."""
    log.info(message, *args)
    notes = getattr(run, "resume_notes", None)
    if isinstance(notes, list):
        notes.append(message % args)


def capture(run) -> dict[str, Any]:
    """A deep copy of everything that changes from iteration to iteration."""
    import torch

    return {
        "model": {k: v.detach().clone() for k, v in run.model.state_dict().items()},
        "optimizer": copy.deepcopy(run.optimizer.state_dict()) if run.optimizer is not None else None,
        "scheduler": copy.deepcopy(run.scheduler.state_dict()) if run.scheduler is not None else None,
        "rng": copy.deepcopy(run.rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "iteration": run.iteration,
        "history": copy.deepcopy(run.history),
        "tracker": run.tracker.copy() if getattr(run, "tracker", None) is not None else None,
    }


def restore(run, snapshot: dict[str, Any]) -> None:
    import torch

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
    if snapshot.get("tracker") is not None:
        run.tracker = snapshot["tracker"].copy()


def _to_bytes(obj) -> np.ndarray:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def _from_bytes(arr: np.ndarray):
    import torch

    return torch.load(
        io.BytesIO(np.asarray(arr, dtype=np.uint8).tobytes()), weights_only=True, map_location="cpu"
    )


def write(group, run) -> None:
    """Fill the ``/checkpoint`` group of an open result file."""
    import torch

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
CHECKPOINT = (
    "history/iteration",
    "history/loss",
    "history/time_s",
    "history/slice_thickness_A",
    "checkpoint/position_shifts_px",
    "checkpoint/tilts_mrad",
    "checkpoint/slice_thickness_A",
    "checkpoint/torch_rng",
)


def inspect(path, what: str = "--resume") -> dict:
    """Check that ``path`` is a complete ptyrad_core result file with a checkpoint, without
    reading its arrays (:func:`inspect_result`, plus the checkpoint's own
    parts); return its root attributes. A missing, truncated, foreign or partial file is a
    :class:`DataError` naming the file and what is wrong."""

    attrs = inspect_result(path, what, require=REQUIRED + CHECKPOINT)
    with h5py.File(path, "r") as f:
        try:
            json.loads(f["checkpoint"].attrs["numpy_rng"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{what}: {path} is a partial result file: its checkpoint has no readable random "
                f"state ({type(exc).__name__}); resume from a file written by a save"
            ) from None
        n = len(f["history/iteration"])
    if n != int(attrs["iteration"]):
        raise DataError(
            f"{what}: {path} says iteration {int(attrs['iteration'])} but holds {n} history entries: "
            "the file is inconsistent"
        )
    return attrs


def read(path, run) -> int:
    """Load a result file's state into ``run`` (built from a compatible config); return its iteration.

    Array shapes must match the run's model. The optimizer state is matched per parameter by
    name: a parameter the file's optimizer updated keeps its state (moments, step counts), a
    newly optimized one starts fresh, and another optimizer class starts fresh altogether (both
    logged). Learning rates and the other group settings come from the run's config; a
    scheduler's progress is kept, rescaled to the config's learning rates.
    """
    import torch

    from ptyrad_core.engine.heldout import STATE_NAMES  # the tensors a state is made of
    from ptyrad_core.kernel import fft as fftlib

    saved_config = inspect(path).get("config") or {}  # parsed (safely) by the inspection
    m = run.model
    with h5py.File(path, "r") as f:
        _same_experiment(f, path, run, saved_config)
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
                    f"--resume: {path}:{key} has shape {tuple(f[key].shape)}, but this config builds "
                    f"{shape}; "
                    "resume with the config that made the file"
                )
        with torch.no_grad():
            m.object_amplitude.copy_(torch.from_numpy(f["object/amplitude"][()]))
            m.object_phase.copy_(torch.from_numpy(f["object/phase"][()]))
            m.probe_ri.copy_(torch.view_as_real(torch.from_numpy(f["probe/modes"][()])))
            m.positions.copy_(torch.from_numpy(ck["position_shifts_px"][()]))
            m.tilts.copy_(torch.from_numpy(ck["tilts_mrad"][()]))
            m.slice_thickness.copy_(torch.from_numpy(np.asarray(ck["slice_thickness_A"][()])))
            if "last_state" in ck:  # the arrays hold the best held-out state: continue from the last
                for name in ("object_amplitude", "object_phase", "probe_ri"):
                    getattr(m, name).copy_(torch.from_numpy(ck["last_state"][name][()]))
            bad = [n for n in STATE_NAMES if not bool(torch.isfinite(getattr(m, n)).all())]
            if bad:  # ptyrad_core never writes one: the file was changed or damaged
                raise DataError(
                    f"--resume: {path} holds NaN or infinite values in its state ({', '.join(bad)}); "
                    "expected a finite checkpoint: resume from another result file, or start anew"
                )
        saved_class = ck.attrs.get("optimizer_class")
        if run.optimizer is not None and "optimizer" in ck:
            if saved_class is not None and saved_class != type(run.optimizer).__name__:
                _note(
                    run,
                    "resume: the file's optimizer was %s, this run's is %s: its state starts fresh",
                    saved_class,
                    type(run.optimizer).__name__,
                )
            else:
                this = type(run.scheduler).__name__ if run.scheduler is not None else None
                saved_scheduler = None
                if "scheduler" in ck:  # files from before scheduler_class: taken as this run's
                    saved_scheduler = ck.attrs.get("scheduler_class", this or "a scheduler")
                same = this is not None and saved_scheduler == this
                # a scheduler's progress scales the rates only where this run has the same one
                _load_optimizer(run, _from_bytes(ck["optimizer"][()]), scheduled=same)
                if same:
                    _load_scheduler(run, _from_bytes(ck["scheduler"][()]))
                elif saved_scheduler is not None:
                    _note(
                        run,
                        "resume: the file's run had the scheduler %s, this one has %s: the learning rates "
                        "start from the config's",
                        saved_scheduler,
                        this or "none",
                    )
        torch.set_rng_state(torch.from_numpy(ck["torch_rng"][()]))
        run.rng.bit_generator.state = json.loads(ck.attrs["numpy_rng"])
        run.iteration = int(f.attrs["iteration"])
        saved_fft = str(f.attrs.get("fft", ""))  # the library the file's run chose: transforms continue alike
        if run.settings.fft == "auto" and saved_fft in ("torch", "fftw") and saved_fft != m.fft.name:
            device = next(m.parameters()).device
            if device.type == "cpu":  # FFTW's threads as the run's
                runtime.configure_threads()
            m.fft = fftlib.select(saved_fft, device)
            _note(run, "resume: FFT library %s, as in %s (recon.fft: auto)", saved_fft, path)
        hist = f["history"]
        saved_terms = sorted(hist["loss_terms"]) if "loss_terms" in hist else []
        if saved_terms != sorted(run.history["loss_terms"]):
            raise DataError(
                f"--resume: {path} was made with the loss terms {saved_terms}, this config has "
                f"{sorted(run.history['loss_terms'])}; a resumed run keeps its loss terms (their weights "
                "may change). "
                "To change them, start a new run initialised from the result (model.*.source: result)"
            )
        run.history = {
            "iteration": hist["iteration"][()].tolist(),
            "loss": hist["loss"][()].tolist(),
            "time_s": hist["time_s"][()].tolist(),
            "slice_thickness_A": hist["slice_thickness_A"][()].tolist(),
            "loss_terms": {k: hist["loss_terms"][k][()].tolist() for k in run.history["loss_terms"]},
        }
        _read_validation(f, path, run, saved_config)
    return run.iteration


def _read_validation(f, path, run, saved_config: dict) -> None:
    """The held-out split, curve and best state of a resumed run: the file's split is kept whatever
    the config says (a held-out pixel must never have been trained on); best tracking continues."""
    import torch

    from ptyrad_core.engine.heldout import Split

    if not hasattr(run, "tracker"):
        return
    n = len(run.history["iteration"])
    group = f.get("validation")
    if not isinstance(group, h5py.Group) or "pixel_u" not in group:
        if run.validating:
            _note(
                run,
                "resume: %s holds no held-out split; this run draws one (recon.validation) and scores "
                "from iteration %d on",
                path,
                run.iteration + 1,
            )
            run.history["heldout_loss"] = [float("nan")] * n
        return
    split = Split.read(group, f"--resume: {path}:validation")
    if len(split.position_s) != run.model.n_positions:
        split.check(split.shape, run.model.n_positions, f"--resume: {path}:validation")
    fraction = run.settings.validation_fraction
    if fraction != split.fraction:
        _note(
            run,
            "resume: the held-out split of %s is kept (fraction %g, seed %d); the config's fraction %g "
            "is not used",
            path,
            split.fraction,
            split.seed,
            fraction,
        )
    run.split, run.validating = split, True
    run._split_checked = False
    saved = f["history"].get("heldout_loss")
    curve = saved[()].tolist() if saved is not None and len(saved) == n else [float("nan")] * n
    run.history["heldout_loss"] = curve
    tracker = type(run.tracker)()
    tracker.best_iteration = int(group.attrs.get("best_iteration", -1))
    # files written before the kept state was told apart kept the minimum's
    tracker.kept_iteration = int(group.attrs.get("kept_iteration", tracker.best_iteration))
    if "best_heldout_loss" in group.attrs and tracker.best_iteration >= 0:
        tracker.best_loss = float(group.attrs["best_heldout_loss"])
        if "best_groups" in group:
            tracker.best_groups = np.asarray(group["best_groups"][()], dtype=np.float64).reshape(-1)
        tracker.since_best = sum(
            1
            for it, v in zip(run.history["iteration"], curve)
            if it > tracker.kept_iteration and np.isfinite(v)
        )
    else:
        tracker.best_iteration = tracker.kept_iteration = -1
    if tracker.best_loss is not None and _score_stack(saved_config) != _score_stack(run.resolved_config):
        # held-out losses are sums of the scoring terms' weighted values: another term, weight or
        # option puts the file's minimum on another scale, where no new state could be compared with it
        tracker = type(run.tracker)()
        _note(
            run,
            "resume: the held-out score's terms, weights or options differ from %s's: its held-out "
            "losses are on another scale, so the held-out minimum (and the kept state) start afresh at "
            "iteration %d",
            path,
            run.iteration + 1,
        )
    stopped = int(group.attrs.get("stopped_at", -1))
    if stopped >= 0:  # resuming a stopped run asks for more: patience counts afresh
        tracker.since_best = 0
        _note(
            run,
            "resume: the file's run stopped early at iteration %d; this one goes on (patience counted "
            "afresh)",
            stopped,
        )
    if "best_state" in group and tracker.best_loss is not None:
        device = next(run.model.parameters()).device
        tracker.best_state = {
            name: torch.from_numpy(np.asarray(group["best_state"][name][()])).to(device)
            for name in group["best_state"]
        }
    run.tracker = tracker


def _same_experiment(f, path, run, saved_config: dict) -> None:
    """A resumed run goes on with the file's data and sampling: another measurement file (by its
    SHA-256, so a moved file is the same), another pixel size or wavelength is a one-line
    DataError; a configured slice thickness other than the file's is noted (the file's goes on)."""
    saved = f.attrs.get("data_sha256")
    saved = saved.decode() if isinstance(saved, bytes) else saved
    if saved and hasattr(run, "data_digest") and run.data_digest != saved:
        raise DataError(
            f"--resume: {path} was reconstructed from {f.attrs.get('data_file')} ({str(saved)[:19]}...), but "
            f"this config reads {run.settings.data_file} ({run.data_digest[:19]}...): a resumed run goes on "
            "with its own data; for other data start a new run initialised from the result "
            "(model.*.source: result)"
        )
    for key, ours, unit in (("dx_A", run.model.dx, "A"), ("wavelength_A", run.model.wavelength, "A")):
        theirs = f.attrs.get(key)
        if theirs is not None and not np.isclose(float(theirs), float(ours), rtol=1e-9, atol=0):
            raise DataError(
                f"--resume: {path} was reconstructed with {key[:-2]} = {float(theirs):.6g} {unit}, this "
                f"config gives {float(ours):.6g} {unit} (experiment.*): a resumed run keeps its sampling; "
                "start a new run initialised from the result for another"
            )
    try:
        before = saved_config["model"]["object"]["slice_thickness_A"]
        now = run.resolved_config["model"]["object"]["slice_thickness_A"]
    except (KeyError, TypeError):
        return
    if before != now:
        _note(
            run,
            "resume: the slice thickness goes on from %s; the config's slice_thickness_A %s (was %s) is "
            "not used",
            path,
            now,
            before,
        )


def _score_stack(config: dict) -> list:
    """``[(name, weight, options)]`` of the terms that score the held-out pixels in a resolved
    config (a run's, or a result file's as :func:`inspect` parsed it): ``recon.validation.score``,
    the stack of ``loss`` where it is ``'loss'`` (a file from before the option too)."""
    if not isinstance(config, dict):
        return []
    validation = (config.get("recon") or {}).get("validation") or {}
    # a file written before recon.validation.score existed scored with its loss stack
    score = validation.get("score", "loss")
    if isinstance(score, str) and score != "loss":
        return [score]
    loss = score if isinstance(score, list) else config.get("loss", [])
    return [(t.get("name"), float(t.get("weight", 1.0)), t.get("options") or {}) for t in loss]


def _load_optimizer(run, saved: dict, scheduled: bool = True) -> None:
    """Carry the saved optimizer state into ``run.optimizer`` parameter by parameter (groups are
    matched by their ``name``); learning rates and other settings stay the config's (a change is
    logged), scaled by the saved scheduler's progress where ``scheduled`` (the run has the same
    scheduler)."""
    opt = run.optimizer
    current = opt.state_dict()
    saved_groups = {g.get("name"): g for g in saved["param_groups"]}
    state: dict = {}
    carried, fresh, changed = [], [], []
    for group in current["param_groups"]:
        old = saved_groups.get(group.get("name"))
        if (
            old is None
            or len(old["params"]) != len(group["params"])
            or group.get("name") is None
            and len(saved_groups) != 1
        ):
            fresh.append(str(group.get("name")))
            continue
        for new_id, old_id in zip(group["params"], old["params"]):
            if old_id in saved["state"]:
                state[new_id] = saved["state"][old_id]
        carried.append(str(group.get("name")))
        base = old.get("initial_lr") or old["lr"]  # the file's configured rate
        if base != group.get("initial_lr", group["lr"]):
            changed.append(f"{group.get('name')} {group['lr']:g} (was {base:g})")
        if scheduled and old.get("initial_lr"):  # a scheduler's progress: the same factor on the new rate
            unchanged = old["initial_lr"] == group.get("initial_lr", group["lr"])
            group["_resume_lr"] = old["lr"] if unchanged else group["lr"] * old["lr"] / old["initial_lr"]
    if fresh:
        _note(
            run,
            "resume: optimizer state carried for %s; fresh for %s (not optimized in the file's run)",
            ", ".join(carried) or "nothing",
            ", ".join(fresh),
        )
    if changed:
        _note(run, "resume: learning rates from the config: %s", ", ".join(changed))
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


#: what a scheduler's state holds of its progress (the rest are its options, which are the config's)
SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "best", "num_bad_epochs", "cooldown_counter")


def _load_scheduler(run, saved: dict) -> None:
    """The scheduler's progress (:data:`SCHEDULER_PROGRESS`) with the config's options and base
    rates; where the scheduler has a closed form the rates are recomputed from it (an option such
    as ``gamma`` changed on resume then applies to the whole progress)."""
    sched = run.scheduler
    base = getattr(sched, "base_lrs", None)
    base = list(base) if base is not None else None
    state = sched.state_dict()
    options = {  # public, not progress, not the rates (the config's)
        k: (saved[k], v)
        for k, v in state.items()
        if k in saved and k not in SCHEDULER_PROGRESS and not k.startswith("_") and k != "base_lrs"
    }
    changed = [f"{k} {new!r} (was {old!r})" for k, (old, new) in options.items() if old != new]
    state.update({k: saved[k] for k in SCHEDULER_PROGRESS if k in saved and k in state})
    try:
        sched.load_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as exc:
        _note(run, "resume: the saved scheduler state does not fit this run (%s): it starts fresh", exc)
        return
    if base is not None and len(base) == len(getattr(sched, "base_lrs", [])):
        sched.base_lrs = base
    closed = getattr(sched, "_get_closed_form_lr", None)
    if changed and closed is not None:
        for group, lr in zip(run.optimizer.param_groups, closed()):
            group["lr"] = lr
    if changed:
        _note(
            run,
            "resume: scheduler options from the config: %s; its progress (step %s) is kept",
            ", ".join(changed),
            state.get("last_epoch"),
        )
    if hasattr(sched, "_last_lr"):
        sched._last_lr = [g["lr"] for g in run.optimizer.param_groups]

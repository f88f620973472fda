"""Hyperparameter search with Optuna: ``ptyrad-core tune CONFIG``.

The config's ``tune`` section declares the search space by dotted config paths (the same paths
``--set`` takes: ``experiment.aberrations.defocus``, ``model.object.slices``,
``loss.0.options.dp_pow``, ``constraints.1.options.std`` ...), so any option of any plugin is
searchable without the plugin knowing. Each trial is an ordinary reconstruction of the config
with the trial's values applied, in its own folder ``<output.dir>/<study_name>/trial_NNNN``; it
reports its objective at the iterations ``report_every`` names (through the iteration-end hook),
so pruners can stop hopeless trials. The study lives in an Optuna storage:
``sqlite:///<output.dir>/tune.sqlite3`` by default, any Optuna RDB URL (PostgreSQL, MySQL), or
``journal:<file>`` (a journal file on a shared disk) so that workers on several machines share one
study. ``--workers N`` starts N local worker processes on the same storage; the total number of
finished trials is capped at ``n_trials`` across all of them, and an interrupted study resumes
counting its earlier trials.

One study per output folder at a time: every process of a study (the ``tune`` command, its
workers, a ``tune`` of the same study started elsewhere) shares the folder lock of ``output.dir``
(:class:`StudyLock`, purpose ``tune study '<name>' (<storage>)``); a different study, or a run,
refuses while it is held. A study remembers the config it was started with (:meth:`Study.fingerprint`)
and refuses to continue with a different one. A SQLite storage is checked before use: a damaged
file or one that is not an Optuna storage is an error naming it, and one locked by another process
is waited for up to ``tune.storage_wait_s`` with a message, then an error with advice.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, model_validator

from ptyrad_core.kernel.errors import ConfigError, DataError, OutputError, PtyradError, RunInterrupted
from ptyrad_core.kernel.hookspecs import hookimpl

log = logging.getLogger("ptyrad_core")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchParam(_Strict):
    """One searched value: ``float`` (optionally ``log`` or with a ``step``), ``int`` or ``categorical``."""

    type: Literal["float", "int", "categorical"] = Field(description="Kind of value.")
    low: float | None = Field(None, description="Lower bound (float, int).")
    high: float | None = Field(None, description="Upper bound (float, int).")
    step: float | None = Field(None, gt=0, description="Grid step (float, int); null = continuous.")
    log: bool = Field(False, description="Sample on a log scale (bounds must be positive).")
    choices: list[Any] | None = Field(None, description="The values (categorical).")

    @model_validator(mode="after")
    def _consistent(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical needs a non-empty list of choices")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log sampling needs positive bounds, got low = {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log sampling and a step cannot be combined")
        if self.step is not None and self.high > self.low and self.step > self.high - self.low:
            raise ValueError(  # the grid would hold low alone: every trial the same value
                f"step {self.step:g} is larger than high - low = {self.high - self.low:g}: the only value "
                f"would be low ({self.low:g}); use a smaller step or log sampling"
            )
        return self

    def suggest(self, trial, name: str):
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(
                name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list:
        """All values, for the grid and brute-force samplers."""
        if self.type == "categorical":
            return list(self.choices)
        if self.step is None:
            raise ValueError("a grid over a continuous range needs a step")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return [int(v) for v in values] if self.type == "int" else values


class ComponentChoice(_Strict):
    name: str = Field(description="Optuna class name or short name (see docs/tuning.md).")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the class.")


SAMPLERS = {
    "TPE": "TPESampler",
    "random": "RandomSampler",
    "grid": "GridSampler",
    "CMA-ES": "CmaEsSampler",
    "QMC": "QMCSampler",
    "GP": "GPSampler",
    "NSGA-II": "NSGAIISampler",
    "brute_force": "BruteForceSampler",
}
SAMPLER_NEEDS = {"CmaEsSampler": "cmaes", "QMCSampler": "scipy", "GPSampler": "scipy"}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "none": "NopPruner",
}


#: the objectives by name (besides ``loss:<term>``)
OBJECTIVES = ("heldout", "loss", "time", "contrast")
#: ``tune.objectives`` when the config names none: the held-out loss, which fitting the noise
#: does not lower (the training loss rewards it)
DEFAULT_OBJECTIVES = ("heldout",)


class TuneSection(_Strict):
    """The study: search space, objective(s), sampler, pruner, storage."""

    params: dict[str, SearchParam] = Field(
        min_length=1, description="Search space: dotted config path -> range."
    )
    n_trials: int = Field(
        20, ge=1, description="Finished (complete or pruned) trials the study stops at, over all workers."
    )
    timeout_s: float | None = Field(None, gt=0, description="Stop starting trials after this many seconds.")
    objectives: list[Literal["heldout", "loss", "time", "contrast"] | str] = Field(
        default_factory=lambda: list(DEFAULT_OBJECTIVES),
        description="What each trial returns, all minimised: 'heldout' (the run's held-out minimum, or with "
        "recon.stop.keep: last its last held-out loss: data the optimizer never saw, so fitting the noise "
        "does not pay; needs "
        "recon.validation), 'loss' (total training loss of the last iteration), 'loss:<term>' (one term), "
        "'time' (wall time per iteration), 'contrast' (minus the phase contrast). Two or more make a "
        "multi-objective study.",
    )
    report_every: int = Field(
        1,
        ge=1,
        description="Report to the pruner every N iterations: the value 'heldout' would return if the run "
        "ended there when the first objective is 'heldout', else the training loss.",
    )
    sampler: ComponentChoice = Field(
        default_factory=lambda: ComponentChoice(name="TPE"), description="Optuna sampler."
    )
    pruner: ComponentChoice | None = Field(None, description="Optuna pruner; null = no pruning.")
    storage: str | None = Field(
        None, description="Optuna storage URL, 'journal:<file>', or null for sqlite in output.dir."
    )
    study_name: str | None = Field(
        None,
        description="Study name; null = the config file's stem. Its trials, best config and plots go into "
        "<output.dir>/<study_name>/, so it must be usable as a folder name.",
    )
    storage_wait_s: float = Field(
        60,
        gt=0,
        description="Seconds to wait for a SQLite storage another process holds locked before giving up.",
    )
    keep: Literal["all", "none"] | NonNegativeInt = Field(
        "all", description="Trial folders to keep: all, none, or the best k."
    )
    seed: int | None = Field(None, description="Sampler seed; null = recon.seed.")

    @model_validator(mode="after")
    def _objectives_known(self):
        for name in self.objectives:
            if name not in OBJECTIVES and not name.startswith("loss:"):
                raise ValueError(
                    f"unknown objective {name!r}; use heldout, loss, loss:<term>, time or contrast"
                )
        if (
            len(self.objectives) > 1
            and self.pruner is not None
            and self.pruner.name not in ("none", "NopPruner")
        ):
            raise ValueError(
                "Optuna prunes single-objective studies only: drop the pruner or keep one objective"
            )
        if self.study_name is not None:
            check_study_name(self.study_name)
        return self


def check_study_name(name: str) -> str:
    """A study name is a folder name under ``output.dir``: no separators, not empty, not ``.`` / ``..``."""
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise ValueError(
            f"study_name {name!r} must be usable as a folder name (no '/', '\\', not empty, '.' or '..')"
        )
    return name


# --------------------------------------------------------------------------------------------


def split_config(raw: dict) -> tuple[dict, TuneSection]:
    """The reconstruction part of a config and its validated ``tune`` section."""
    from ptyrad_core.kernel.config import format_validation_error

    raw = copy.deepcopy(raw)
    section = raw.pop("tune", None)
    if section is None:
        raise ConfigError("tune: the config has no 'tune' section (the search space)")
    try:
        return raw, TuneSection.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, TuneSection, "tune", {}, prefix=("tune",))) from None


def apply_values(raw: dict, values: dict[str, Any]) -> dict:
    from ptyrad_core.setup.config_file import apply_overrides

    out = copy.deepcopy(raw)
    overrides = [
        f"{path}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for path, v in values.items()
    ]
    return apply_overrides(out, overrides)


def check_space(raw: dict, tune: TuneSection, source: str, base_dir: Path, pm) -> None:
    """Every path must exist and every bound must make a valid config, plugin options included."""
    from ptyrad_core.kernel.config import build_config, validate_components
    from ptyrad_core.setup.optim_check import check_config

    for path, spec in tune.params.items():
        probes = spec.choices if spec.type == "categorical" else [spec.low, spec.high]
        for value in probes:
            if spec.type == "int":
                value = int(value)
            try:
                cfg = build_config(apply_values(raw, {path: value}), source, base_dir=base_dir)
                validate_components(cfg, pm, checks=(check_config,))
                _check_known_path(raw, path)
            except (ConfigError, PtyradError) as exc:
                raise ConfigError(
                    f"tune.params[{path!r}] = {value!r} does not give a valid config:\n{exc}"
                ) from None


def _check_known_path(raw: dict, path: str) -> None:
    """Paths into free-form dicts (aberrations, options) are allowed; others must already be schema keys."""
    from ptyrad_core.kernel.config import Config

    parts = path.split(".")
    model: Any = Config
    for i, part in enumerate(parts):
        if part.isdigit():
            continue  # an index into a list of components (loss.1, constraints.0)
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return  # inside a dict / list of components: the config validation above decides
        if part not in fields:
            raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r}")
        from ptyrad_core.kernel.config import _unwrap

        model = _unwrap(fields[part].annotation)


def make_sampler(tune: TuneSection, seed: int):
    import optuna

    name = SAMPLERS.get(tune.sampler.name, tune.sampler.name)
    cls = getattr(optuna.samplers, name, None)
    if cls is None:
        raise ConfigError(
            f"tune.sampler.name: unknown sampler {tune.sampler.name!r}; choose one of {', '.join(SAMPLERS)}"
        )
    needs = SAMPLER_NEEDS.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        raise ConfigError(
            f"tune.sampler {tune.sampler.name!r} needs the {needs!r} package: pip install 'ptyrad-core[tune]'"
        )
    options = dict(tune.sampler.options)
    if name == "GridSampler":
        try:
            options.setdefault("search_space", {p: s.grid() for p, s in tune.params.items()})
        except ValueError as exc:
            raise ConfigError(f"tune.sampler 'grid': {exc}") from None
    if "seed" in cls.__init__.__code__.co_varnames:
        options.setdefault("seed", seed)
    try:
        return cls(**options)
    except (TypeError, ImportError, ValueError) as exc:
        raise ConfigError(f"tune.sampler: optuna.samplers.{name}({options}) failed: {exc}") from None


def make_pruner(tune: TuneSection):
    import optuna

    if tune.pruner is None:
        return optuna.pruners.NopPruner()
    name = PRUNERS.get(tune.pruner.name, tune.pruner.name)
    cls = getattr(optuna.pruners, name, None)
    if cls is None:
        raise ConfigError(
            f"tune.pruner.name: unknown pruner {tune.pruner.name!r}; choose one of {', '.join(PRUNERS)}"
        )
    options = dict(tune.pruner.options)
    if name == "PatientPruner":
        inner = options.pop("wrapped_pruner", {"name": "median"})
        options["wrapped_pruner"] = make_pruner(
            TuneSection(params={"x": {"type": "categorical", "choices": [0]}}, pruner=inner)
        )
        options.setdefault("patience", 2)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"tune.pruner: optuna.pruners.{name}({options}) failed: {exc}") from None


class StorageError(DataError):
    """The study's storage is damaged, not an Optuna storage, or stays locked by another process."""


def storage_url(tune: TuneSection, output_dir: Path) -> str:
    return tune.storage or f"sqlite:///{(output_dir / 'tune.sqlite3').resolve()}"


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None
    return None


SQLITE_HEADER = b"SQLite format 3\x00"


def _locked_advice(path: Path, wait_s: float) -> str:
    return (
        f"tune.storage: {str(path)!r} stayed locked for {wait_s:g} s: another process holds a write lock "
        "on it (a tune worker, a second study on this storage, or another program). Wait for it to finish "
        "or stop it, or raise tune.storage_wait_s; if no process uses it, the file system may not support "
        "SQLite locking (network disks): "
        "use a 'journal:<file>' storage or a database server"
    )


def check_sqlite(path: Path, wait_s: float) -> None:
    """Check an existing SQLite storage before Optuna opens it (nothing is written to it).

    - not a SQLite file, or a damaged one: :class:`StorageError` naming the file;
    - a SQLite database without Optuna's tables: refused (Optuna would add its tables to someone
      else's database);
    - locked for writing by another process: waits up to ``wait_s`` seconds, saying so, then a
      :class:`StorageError` with advice.
    """
    import sqlite3
    from urllib.parse import quote

    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise StorageError(f"tune.storage: {str(path)!r} is a folder, not an SQLite file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StorageError(f"tune.storage: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    damaged = (
        f"tune.storage: {str(path)!r} is not a readable Optuna SQLite storage ({{}}): it is damaged or "
        "another kind of file. Move it away (the study in it is lost unless you have a copy) or name "
        "another tune.storage"
    )
    if head and head != SQLITE_HEADER:
        raise StorageError(damaged.format("no SQLite header"))
    uri = f"file:{quote(str(path.resolve()))}"
    said = []

    def patiently(action):
        """``action(timeout)``: at once, then (with a message) waiting up to ``wait_s`` for another
        process's lock."""
        for timeout in (0.0, wait_s):
            try:
                return action(timeout)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if timeout:
                    raise StorageError(_locked_advice(path, wait_s)) from None
                if not said:
                    log.warning(
                        "tune: the storage %s is locked by another process; waiting up to %g s "
                        "(tune.storage_wait_s)",
                        path,
                        wait_s,
                    )
                    said.append(True)

    def read_tables(timeout):
        con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
        try:
            return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()

    def write_lock(timeout):  # what Optuna needs: a write transaction, taken and given back at once
        con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
        finally:
            con.close()

    try:
        tables = patiently(read_tables)
    except sqlite3.DatabaseError as exc:  # OperationalError other than a lock, too
        raise StorageError(damaged.format(exc)) from None
    if tables and "studies" not in tables:
        raise StorageError(
            f"tune.storage: {str(path)!r} is an SQLite database without Optuna's tables (it holds "
            f"{', '.join(sorted(tables)[:5])}); it is not written to. Name another tune.storage or output.dir"
        )
    try:
        patiently(write_lock)
    except sqlite3.DatabaseError as exc:
        raise StorageError(damaged.format(exc)) from None


class _storage_errors:
    """Turns errors of the storage (SQLAlchemy, Optuna's storage layer) into one-line
    :class:`StorageError`."""

    def __init__(self, url: str, wait_s: float):
        self.url, self.wait_s = url, wait_s

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, PtyradError):
            return False
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__
        if cause is not None:
            text += f" ({type(cause).__name__}: {cause})"
        module = type(exc).__module__
        if not (
            module.startswith(("sqlalchemy", "optuna.exceptions", "optuna.storages", "sqlite3"))
            or "StorageInternalError" in type(exc).__name__
        ):
            return False
        path = _sqlite_path(self.url)
        where = str(path) if path is not None else self.url
        if "locked" in text or "busy" in text:
            raise StorageError(_locked_advice(Path(where), self.wait_s)) from None
        first = text.splitlines()[0][:300]
        raise StorageError(f"tune.storage: {where!r} failed: {first}") from None


def make_storage(tune: TuneSection, output_dir: Path):
    import optuna

    url = storage_url(tune, output_dir)
    if url.startswith("journal:"):
        path = Path(url.removeprefix("journal:")).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend

        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:  # a damaged journal: its lines are JSON records
            raise StorageError(
                f"tune.storage: the journal {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                "move it away or name another tune.storage"
            ) from None
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_sqlite(path, tune.storage_wait_s)
        with _storage_errors(url, tune.storage_wait_s):
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": tune.storage_wait_s}}
            )
    return url


class StudyLock:
    """The lock on ``output.dir`` shared by every process of one study.

    The first process takes :class:`~ptyrad_core.engine.outputs.FolderLock` (purpose ``tune study
    '<name>' (<storage>)``); a process of the same study (its ``--workers``, or the same
    ``tune`` command started again, on this machine or another) finds the lock held for that
    purpose and joins; a process of any other study (or a run) is refused with the holder's
    PID, host and start time. A process that joined takes the lock over when its holder has
    released it (:meth:`refresh`, before each trial), so the folder stays locked as long as any
    process of the study works in it.
    """

    def __init__(self, folder: Path, study_name: str, storage: str):
        from ptyrad_core.engine.outputs import FolderLock

        self.purpose = f"tune study {study_name!r} ({storage})"
        self.lock = FolderLock(folder, self.purpose, "output.dir")
        self.joined: dict | None = None

    @property
    def held(self) -> bool:
        return self.lock.held

    def _owner(self) -> dict:
        import json

        try:
            info = json.loads(self.lock.path.read_text(encoding="utf-8"))
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> StudyLock:
        if self.lock.held:
            return self
        try:
            self.lock.acquire()
            self.joined = None
        except OutputError:
            owner = self._owner()
            if owner.get("purpose") != self.purpose:
                raise
            if self.joined is None:
                log.info(
                    "tune: joined %s, whose lock process %s on %s holds",
                    self.purpose,
                    owner.get("pid"),
                    owner.get("host"),
                )
            self.joined = owner
        return self

    refresh = acquire

    def release(self) -> None:
        self.lock.release()
        self.joined = None


class _TrialReporter:
    """A lifecycle plugin that reports the objective to Optuna and stops pruned trials."""

    def __init__(self, trial, every: int, objective: str = "loss"):
        self.trial, self.every, self.pruned_at = trial, every, None
        self.heldout = objective == "heldout"

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        if iteration % self.every:
            return
        if self.heldout:
            # the held-out loss of the state the run would keep if it ended here, so that the last
            # value reported is the trial's objective; nothing on iterations without a held-out loss
            now = metrics.get("heldout_loss")
            if now is None or not math.isfinite(float(now)):
                return
            value = kept_heldout_loss(run, required=False)
        else:
            value = float(metrics["loss"])
        self.trial.report(value, step=iteration)
        if self.trial.should_prune():
            self.pruned_at = iteration
            raise TrialStopped(f"trial {self.trial.number} pruned at iteration {iteration}")


class TrialStopped(PtyradError):
    """Raised inside a trial's run when the pruner stops it."""


class _FileLock:
    """An exclusive ``fcntl`` lock on a file (blocks until free)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _fail_dead_trials(study) -> None:
    """Mark RUNNING trials of worker processes on this machine that no longer exist as FAIL."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker", "")
        if not owner.startswith(host + ":"):
            continue
        pid = int(owner.rsplit(":", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            study.tell(t.number, state=TrialState.FAIL)
        except PermissionError:
            pass


def validation_on(config) -> bool:
    """Whether a config's run holds data out (``recon.validation.fraction > 0``)."""
    validation = getattr(config.recon, "validation", None)
    return validation is not None and float(getattr(validation, "fraction", 0) or 0) > 0


def kept_heldout_loss(run, required: bool = True) -> float | None:
    """A trial's held-out objective (so far): with ``recon.stop.keep: best`` (the default) the
    held-out minimum by the run's own rule (an improvement is a value below ``best * (1 -
    min_delta)``; the state the run keeps is the latest tied with it, within ``recon.stop.tolerance``
    standard errors, so its loss is at most that far above), with ``keep: last`` the last evaluated
    one. The minimum, not the kept state's value: it is the trial's best evidence of how well its
    settings predict unseen data, and it does not depend on the tolerance.

    :raises ConfigError: ``required`` and the run has no held-out loss (validation off).
    """
    import numpy as np

    h = np.asarray(run.history.get("heldout_loss", []), dtype=np.float64)
    h = h[np.isfinite(h)]
    if h.size == 0:
        if required:
            raise ConfigError(
                "tune.objectives: 'heldout' needs held-out validation, but the trial's run has no held-out "
                "loss: set recon.validation.fraction > 0 (and do not search it down to 0) or choose 'loss'"
            )
        return None
    stop = getattr(run.config.recon, "stop", None)
    if (getattr(stop, "keep", None) or "best") == "last":
        return float(h[-1])
    from ptyrad_core.engine.loop import Tracker  # the run's own rule for a new minimum

    min_delta = float(getattr(stop, "min_delta", 0.0) or 0.0)
    tracker = Tracker()
    for value in h:
        if tracker.improves(value, min_delta):
            tracker.best_loss = float(value)
    return tracker.best_loss


def objective_values(run, objectives: list[str]) -> list[float]:
    out = []
    for name in objectives:
        if name == "heldout":
            out.append(kept_heldout_loss(run))
        elif name == "loss":
            out.append(float(run.history["loss"][-1]))
        elif name == "time":
            times = sorted(run.history["time_s"])
            out.append(float(times[len(times) // 2]))
        elif name == "contrast":
            import numpy as np

            from ptyrad_core.apps.metrics import projected_phase, scanned_region

            m = run.model
            phase = projected_phase(m.object_phase.detach().cpu().numpy(), m.occupancy.cpu().numpy())
            region = phase[scanned_region((m.crop.to(m.frac.dtype) + m.frac).cpu().numpy(), m.window)]
            norm = (region - region.min()) / max(float(np.ptp(region)), 1e-12)
            out.append(-float(norm.std() / (norm.mean() + 1e-8)))
        elif name.startswith("loss:"):
            term = name.removeprefix("loss:")
            if term not in run.history["loss_terms"]:
                raise ConfigError(
                    f"tune.objectives: no loss term {term!r}; terms: {', '.join(run.history['loss_terms'])}"
                )
            out.append(float(run.history["loss_terms"][term][-1]))
        else:
            raise ConfigError(f"tune.objectives: unknown objective {name!r}")
    return out


class Study:
    """A configured tuning study over a YAML config (native, with a ``tune`` section)."""

    def __init__(self, config_path: Path, overrides: list[str] | None = None, quiet: bool = True):
        from ptyrad_core.kernel.config import build_config
        from ptyrad_core.kernel.plugin_manager import get_plugin_manager
        from ptyrad_core.setup.config_file import apply_overrides, is_native, read_yaml, translate_file

        self.config_path = Path(config_path)
        raw, text = read_yaml(self.config_path)
        if is_native(raw):
            raw = apply_overrides(raw, overrides or [])
        else:  # another program's format (e.g. a PtyRAD params file with hypertune_params)
            translated = translate_file(self.config_path, raw, overrides)
            if translated is None:
                raw = apply_overrides(raw, overrides or [])
            else:
                raw, text = translated[0], ""
        self.raw, self.tune = split_config(raw)
        self.base_dir = self.config_path.resolve().parent
        base = build_config(
            self.raw, str(self.config_path), text, self.base_dir
        )  # the reconstruction part must be valid
        self.pm_modules = (base.plugins.modules, base.plugins.disable)
        self.output_dir = Path(base.output.dir)
        if "heldout" in self.tune.objectives and not validation_on(base):
            default = "" if "objectives" in (raw.get("tune") or {}) else " (the default objective)"
            raise ConfigError(
                f"tune.objectives: 'heldout'{default} needs held-out validation, but "
                f"recon.validation.fraction is 0 in {self.config_path}: set it > 0 (e.g. 0.05) or set "
                "tune.objectives to [loss]"
            )
        searched = [
            p for p in self.tune.params if p == "recon.validation" or p.startswith("recon.validation.")
        ]
        if "heldout" in self.tune.objectives and searched:
            raise ConfigError(
                f"tune.params[{searched[0]!r}]: the held-out split is what the 'heldout' objective measures "
                "on; trials with different splits do not compare. Fix it in recon.validation instead"
            )
        self.seed = self.tune.seed if self.tune.seed is not None else base.recon.seed
        self.quiet = quiet
        check_space(
            self.raw,
            self.tune,
            str(self.config_path),
            self.base_dir,
            get_plugin_manager(base.plugins.modules, base.plugins.disable, base_dir=self.base_dir),
        )
        name = self.tune.study_name or self.config_path.stem
        try:
            self.study_name = check_study_name(name)
        except ValueError as exc:
            raise ConfigError(f"tune.study_name: {exc}") from None
        self.study_dir = self.output_dir / self.study_name
        self.storage = storage_url(self.tune, self.output_dir)
        self._lock = StudyLock(self.output_dir, self.study_name, self.storage)

    def fingerprint(self) -> str:
        """What a study's trials mean: the reconstruction config (less ``output`` and ``recon.device``),
        the search space and the objectives. A study continues only with the same fingerprint."""
        import hashlib
        import json

        raw = copy.deepcopy(self.raw)
        raw.pop("output", None)
        (raw.get("recon") or {}).pop("device", None)
        what = {
            "config": raw,
            "params": {k: v.model_dump() for k, v in self.tune.params.items()},
            "objectives": list(self.tune.objectives),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def lock(self) -> StudyLock:
        """Take (or join) the lock of ``output.dir`` for this study; idempotent."""
        return self._lock.acquire()

    def close(self) -> None:
        """Release the folder lock (if this process holds it)."""
        self._lock.release()

    def open(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.lock()  # before anything is written into output.dir
        self.study_dir.mkdir(parents=True, exist_ok=True)
        directions = ["minimize"] * len(self.tune.objectives)
        storage = make_storage(self.tune, self.output_dir)
        with _storage_errors(self.storage, self.tune.storage_wait_s):
            study = optuna.create_study(
                storage=storage,
                study_name=self.study_name,
                load_if_exists=True,
                sampler=make_sampler(self.tune, self.seed),
                pruner=make_pruner(self.tune),
                directions=directions,
            )
            mark = study.user_attrs.get("ptyrad_core_fingerprint")
            if mark is None:
                study.set_user_attr("ptyrad_core_fingerprint", self.fingerprint())
        if mark is not None and mark != self.fingerprint():
            raise ConfigError(
                f"tune: study {self.study_name!r} in {self.storage} was started from another config, "
                "search space or objectives; its trials would not compare with these. Choose another "
                "tune.study_name (or output.dir), "
                "or run the study with the config it was started with"
            )
        return study

    def trial_dir(self, number: int) -> Path:
        return self.study_dir / f"trial_{number:04d}"

    def objective(self, trial):
        import optuna

        from ptyrad_core.engine.loop import Reconstruction
        from ptyrad_core.kernel.config import build_config
        from ptyrad_core.kernel.plugin_manager import get_plugin_manager

        values = {path: spec.suggest(trial, path) for path, spec in self.tune.params.items()}
        raw = apply_values(self.raw, values)
        raw.setdefault("output", {})
        raw["output"]["dir"] = str(self.trial_dir(trial.number))
        config = build_config(raw, str(self.config_path), base_dir=self.base_dir)
        # Optuna prunes single-objective studies only; a multi-objective trial runs to the end
        single = len(self.tune.objectives) == 1
        inline = [_TrialReporter(trial, self.tune.report_every, self.tune.objectives[0])] if single else []
        pm = get_plugin_manager(
            config.plugins.modules, config.plugins.disable, base_dir=self.base_dir, inline=inline
        )
        run = Reconstruction(config, pm=pm, quiet=True)
        try:
            run.run()
        except TrialStopped:
            run.save()
            raise optuna.TrialPruned() from None
        values_out = objective_values(run, self.tune.objectives)
        return values_out[0] if len(values_out) == 1 else values_out

    def optimize(self):
        """Run trials until the study holds ``n_trials`` finished ones (over every worker).

        Each worker claims a trial under a file lock in the output folder (count, then ask), so
        concurrent workers never exceed ``n_trials`` and never run a trial twice; trials left
        RUNNING by a dead worker process on this machine are marked FAIL and do not count.
        """
        import optuna
        from optuna.trial import TrialState

        study = self.open()
        started, failures = time.time(), 0
        alive = (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.RUNNING,
        )  # WAITING (enqueued) trials are taken by ask()
        guard = _storage_errors(self.storage, self.tune.storage_wait_s)
        while self.tune.timeout_s is None or time.time() - started < self.tune.timeout_s:
            self._lock.refresh()  # a joined process takes the folder lock over when its holder is gone
            with guard, _FileLock(self.study_dir / "tune.lock"):
                _fail_dead_trials(study)
                if len(study.get_trials(deepcopy=False, states=alive)) >= self.tune.n_trials:
                    break
                trial = study.ask()
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            try:
                value = self.objective(trial)
                with guard:
                    study.tell(trial, value)
                failures = 0
            except optuna.TrialPruned:
                with guard:
                    study.tell(trial, state=TrialState.PRUNED)
            except RunInterrupted as exc:
                with guard:
                    study.tell(trial, state=TrialState.FAIL)
                # a trial is not resumed with run --resume (its sampled settings live in the study):
                # the study goes on when the same tune command runs again
                raise RunInterrupted(
                    f"{signal.Signals(exc.signum).name} received: tune stopped in trial {trial.number} "
                    f"(marked failed); the study in {self.study_dir} keeps its finished trials: run the "
                    "same tune command again to continue it",
                    exc.signum,
                ) from exc
            except PtyradError as exc:
                if isinstance(exc, StorageError):
                    raise
                with guard:
                    study.tell(trial, state=TrialState.FAIL)
                log.warning("tune: trial %d failed: %s", trial.number, exc)
                failures += 1
                if failures >= 3:
                    raise PtyradError(f"tune: three trials in a row failed; the last: {exc}") from exc
        return study

    # -- the end of a study ----------------------------------------------------------------

    def best_trials(self, study, k: int | None = None):
        from optuna.trial import TrialState

        complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        complete.sort(key=lambda t: tuple(t.values))
        return complete if k is None else complete[:k]

    def finish(self, study) -> dict:
        """Keep the chosen trial folders, write the best config and Optuna's plots (all in ``study_dir``).

        Only folders of this study's finished trials (complete, pruned, failed) are removed, never
        one a worker is still running a trial in.
        """
        from optuna.trial import TrialState

        best = self.best_trials(study)
        if not best:
            raise PtyradError(f"tune: study {self.study_name!r} has no complete trial")
        keep = self.tune.keep
        if keep != "all":
            keep_numbers = {t.number for t in best[: (0 if keep == "none" else keep)]}
            finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            for t in study.get_trials(deepcopy=False, states=finished):
                folder = self.trial_dir(t.number)
                if t.number not in keep_numbers and folder.is_dir():
                    shutil.rmtree(folder)
        best_raw = apply_values(self.raw, best[0].params)
        best_path = self.study_dir / "best_config.yaml"
        best_raw_out = copy.deepcopy(best_raw)
        best_raw_out.setdefault("output", {})["dir"] = str(self.study_dir / "best")
        _resolve_paths(best_raw_out, self.base_dir)
        tmp = best_path.with_name(f".{best_path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(
                f"# best of study {self.study_name!r} (trial {best[0].number}, objectives {best[0].values})\n"
                + yaml.safe_dump(best_raw_out, sort_keys=False)
            )
            os.replace(tmp, best_path)
        finally:
            if tmp.exists():
                tmp.unlink()
        plots = _plots(study, self.study_dir, len(self.tune.objectives))
        return {"best": best[0], "best_config": best_path, "plots": plots}


def _resolve_paths(raw: dict, base_dir: Path) -> None:
    """Make the file paths of a config absolute, so the written config runs from anywhere."""
    for section, key in (("data", "path"), ("scan", "path")):
        node = raw.get(section) or {}
        if node.get(key) and not Path(node[key]).is_absolute():
            node[key] = str((base_dir / node[key]).resolve())
    mods = (raw.get("plugins") or {}).get("modules") or []
    for i, m in enumerate(mods):
        if m.endswith(".py") and not Path(m).is_absolute():
            mods[i] = str((base_dir / m).resolve())


def _plots(study, out_dir: Path, n_objectives: int) -> list[Path]:
    """Optuna's history, importance and slice plots as PNG (skipped, with a log line, when one
    cannot be drawn)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    written = []
    target = (lambda t: t.values[0]) if n_objectives > 1 else None
    for name, fn in (
        ("tune_history.png", ovm.plot_optimization_history),
        ("tune_importance.png", ovm.plot_param_importances),
        ("tune_slice.png", ovm.plot_slice),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = fn(study, target=target) if target else fn(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.savefig(out_dir / name, dpi=90, bbox_inches="tight")
            plt.close(fig)
            written.append(out_dir / name)
        except (
            Exception
        ) as exc:  # a plot Optuna cannot make (e.g. importance with one trial) must not fail the study
            log.warning("tune: %s not drawn: %s", name, exc)
    return written


def summary_table(study, tune: TuneSection, k: int = 10):
    from optuna.trial import TrialState
    from rich.table import Table

    table = Table(title=f"best trials of {study.study_name!r}")
    table.add_column("trial", justify="right")
    for name in tune.objectives:
        table.add_column(name, justify="right")
    for path in tune.params:
        table.add_column(path)
    complete = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: tuple(t.values)
    )
    for t in complete[:k]:
        table.add_row(
            str(t.number),
            *(f"{v:.6g}" for v in t.values),
            *(
                f"{t.params[p]:.6g}" if isinstance(t.params[p], float) else str(t.params[p])
                for p in tune.params
            ),
        )
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    table.caption = f"{len(complete)} complete, {pruned} pruned"
    return table


def start_workers(config_path: Path, overrides: list[str], n: int) -> list[subprocess.Popen]:
    """Start ``n`` worker processes (``ptyrad-core tune CONFIG --worker``) on the same study."""
    cmd = [sys.executable, "-m", "ptyrad_core.apps.cli", "tune", str(config_path), "--worker"]
    for o in overrides or []:
        cmd += ["--set", o]
    return [subprocess.Popen(cmd) for _ in range(n)]


def tune_command(
    config_path, overrides: list[str] | None = None, workers: int = 1, worker: bool = False, console=None
):
    """``ptyrad-core tune CONFIG [--workers N]``: run (or join) the study and summarise it."""
    from rich.console import Console

    console = console or Console()
    study_def = Study(Path(config_path), overrides)
    procs: list[subprocess.Popen] = []
    try:
        study_def.open()  # take the folder lock and create the study before workers race to
        procs = (
            start_workers(Path(config_path), overrides or [], workers - 1)
            if workers > 1 and not worker
            else []
        )
        t0 = time.time()
        study = study_def.optimize()
        for p in procs:
            p.wait()
        if worker:
            return None
        result = study_def.finish(study)
    finally:
        for p in procs:  # an error here: the workers are stopped, not left running unlocked
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
        study_def.close()
    console.print(summary_table(study, study_def.tune))
    console.print(f"best config: {result['best_config']} (study finished in {time.time() - t0:.0f} s)")
    return result

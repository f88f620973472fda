"""The optimizer loop.

One iteration is one pass over all scan positions in mini-batches: forward, weighted loss
terms, backward, and an optimizer step every ``grad_accumulation`` batches. After the last
batch the scheduled constraints run in config order, the lifecycle hook
``ptyrad_on_iter_end`` fires, and every ``output.save_every`` iterations the result file is
written. The hot path touches no pluggy machinery: components were resolved once.

Under ``torchrun`` the same loop runs data-parallel (:mod:`ptyrad_core.engine.distributed`): every
rank holds the model, runs the forward pass for its share of each batch, and the gradients are
averaged before each step. Rank 0 alone calls the lifecycle hooks (progress, log, figures) and
writes the result file.

Held-out validation (``recon.validation``, :mod:`ptyrad_core.engine.heldout`): a fraction of the
detector pixels of every pattern is kept out of the training loss and scored, from the same
forward pass, by ``recon.validation.score`` (the Poisson deviance, or loss terms); the kept
state is the latest one whose held-out loss is not significantly above the minimum
(``recon.stop.tolerance`` standard errors, :class:`Tracker`); ``recon.stop`` stops the run
``patience`` evaluated iterations after it, and decides whether the result file holds the kept
state (``keep: best``) or the last one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptyrad_core.engine import builder, outputs, results
from ptyrad_core.engine.builder import Settings
from ptyrad_core.engine.distributed import World
from ptyrad_core.engine.heldout import STATE_NAMES, Scorer, Split, held_prediction, tied, train_meas
from ptyrad_core.kernel.components import enforce
from ptyrad_core.kernel.config import Config
from ptyrad_core.kernel.errors import (
    ConfigError,
    DistributedError,
    NonFiniteLossError,
    NonFiniteStateError,
    OutputError,
    PluginError,
    PtyradError,
    RunInterrupted,
)
from ptyrad_core.kernel.model import PARAMETER_NAMES, Batch
from ptyrad_core.setup import runtime, sources
from ptyrad_core.setup.config_file import load_config

log = logging.getLogger("ptyrad_core")

RESULT_NAME = "result.h5"


@dataclass
class Tracker:
    """The held-out minimum, the state a run keeps, and the early-stop count.

    The kept state is the *latest* state whose held-out loss is not significantly above the
    minimum so far (:func:`~ptyrad_core.engine.heldout.tied`, ``tolerance`` standard errors of
    a paired difference over groups of positions), or the minimum itself. Where the held-out
    curve is flat within its noise (low dose) the minimum falls at an iteration the draw of the
    held-out pixels decides; the run keeps going, and keeps the latest state, until the
    held-out data show it worse (docs/validation.md).

    :ivar best_iteration: the iteration of the lowest held-out loss (-1: none yet).
    :ivar best_loss: that loss (``None``: none yet).
    :ivar best_groups: ``(G,)`` its per-group values (``None``: none or no groups).
    :ivar kept_iteration: the iteration of the kept state (-1: none yet).
    :ivar since_best: evaluated iterations since the last kept state (the early-stop count).
    :ivar stopped_at: the iteration the run stopped early at (-1: it did not).
    :ivar best_state: ``{name: tensor}`` copies of the model's
        :data:`~ptyrad_core.engine.heldout.STATE_NAMES` at ``kept_iteration``, on the model's
        device (``None`` unless kept).
    """

    best_iteration: int = -1
    best_loss: float | None = None
    since_best: int = 0
    stopped_at: int = -1
    best_state: dict | None = None
    best_groups: np.ndarray | None = None
    kept_iteration: int = -1
    #: the minimum's per-group values not evaluated yet: a callable that evaluates them
    #: (:meth:`~ptyrad_core.engine.heldout.Scorer.deferred_groups`), called when a later state is
    #: compared with the minimum (:meth:`reference_groups`) or the minimum is written
    pending_groups: Callable[[], np.ndarray | None] | None = None

    def improves(self, value: float, min_delta: float) -> bool:
        """True when ``value`` is a new minimum (``value < best * (1 - min_delta)``, or the first)."""
        return self.best_loss is None or value < self.best_loss * (1 - min_delta)

    def reference_groups(self) -> np.ndarray | None:
        """The minimum's per-group values, evaluated now if they were deferred."""
        if self.pending_groups is not None:
            self.best_groups, self.pending_groups = self.pending_groups(), None
        return self.best_groups

    def update(
        self,
        iteration: int,
        value: float,
        min_delta: float,
        model=None,
        groups: np.ndarray | Callable[[], np.ndarray | None] | None = None,
        tolerance: float = 0.0,
    ) -> bool:
        """Count one evaluated iteration; True when its state becomes the kept one: it improves
        on the minimum (:meth:`improves`) or is tied with it (``groups`` against the minimum's,
        within ``tolerance`` standard errors). ``groups``: the state's per-group values, or a
        callable that evaluates them, called only if the state is ever compared (a new minimum's
        are needed only when a later state is not one). With ``model``, the kept state's tensors
        are copied."""
        if self.improves(value, min_delta):
            self.best_iteration, self.best_loss = iteration, float(value)
            self.best_groups, self.pending_groups = (None, groups) if callable(groups) else (groups, None)
        elif not tied(groups() if callable(groups) else groups, self.reference_groups(), tolerance):
            self.since_best += 1
            return False
        self.kept_iteration, self.since_best = iteration, 0
        if model is not None:
            self.best_state = {n: getattr(model, n).detach().clone() for n in STATE_NAMES}
        return True

    def copy(self) -> Tracker:
        # the state tensors are replaced when a state is kept, never changed in place: shared, not copied
        state = dict(self.best_state) if self.best_state is not None else None
        return Tracker(
            self.best_iteration,
            self.best_loss,
            self.since_best,
            self.stopped_at,
            state,
            self.best_groups,
            self.kept_iteration,
            self.pending_groups,
        )


def blame(exc: BaseException, named: dict[int, str]) -> str | None:
    """The name of the component (by object identity) whose method raised ``exc``."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if owner is not None and id(owner) in named:
            found = named[id(owner)]
        tb = tb.tb_next
    return found


class Reconstruction:
    """A configured reconstruction: plugins, data, model, optimizer and history.

    :param config: a validated :class:`~ptyrad_core.kernel.config.Config`.
    :param pm: a plugin manager; by default one is built from ``config.plugins``.
    :param quiet: suppress the console progress display.

    In a process started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) it joins the
    process group (:attr:`world`); ranks other than 0 are quiet and write nothing.
    """

    def __init__(self, config: Config, pm=None, quiet: bool = False, *, resume=None, overwrite: bool = False):
        # the builder (engine/builder.py) reads the config; the loop keeps it only as a record for
        # the observers, which the lifecycle hooks hand the run
        self.config = config
        self.quiet = quiet
        self.overwrite = overwrite
        self.resume_path = Path(resume) if resume is not None else None
        self.resumed_from: tuple[Path, int] | None = None
        self.resume_notes: list[str] = []  # what a resume kept and what starts fresh, for run.log
        self._lock: outputs.FolderLock | None = None
        self._saved_iteration: int | None = None  # the iteration in the result file this object wrote last
        self.pm = pm or builder.plugin_manager(config)
        self.components, self.resolved_config = builder.resolve_components(config, self.pm)
        #: what the loop knows of the config (:class:`~ptyrad_core.engine.builder.Settings`)
        self.settings: Settings = builder.settings(config)
        if self.resume_path is not None:  # a missing, partial or foreign file: named before any data are read
            results.inspect(self.resume_path)
        self.pm.hook.ptyrad_configure.call_historic(kwargs=dict(config=config))
        self.device = World.device_for_rank(builder.select_device(config))
        self.world = World.from_env(self.device, self.settings.dist_timeout_s)
        self.quiet = quiet or not self.world.is_main
        # outputs are checked before the data are read: a folder that cannot be written, a result
        # that would be replaced, or another run in the folder is an error at second zero
        if self.world.is_main:
            outputs.prepare_folder(self.settings.output_dir, "output.dir")
            builder.check_step_outputs(config, self.components, overwrite=overwrite)
        folder = builder.output_folder(config)
        if folder is not None:
            self._claim_output(folder)
        #: peak resident memory of the process and peak allocated device memory (MiB; the maximum over ranks)
        self.peak_memory: dict[str, float] = {}
        torch.manual_seed(self.settings.seed)
        self.rng = np.random.default_rng(self.settings.seed)
        #: the parts the builder made (:class:`~ptyrad_core.engine.builder.Parts`); the main ones
        #: are attributes
        self.parts = parts = builder.build_parts(
            config, self.pm, self.components, self.device, self.rng, overwrite=overwrite
        )
        self.prepared = parts.prepared
        self.measurements = parts.measurements
        self.model = parts.model
        self.data = parts.data
        self.loss_terms = parts.loss_terms
        self.constraints = parts.constraints
        self.optimizer = parts.optimizer
        self.scheduler = parts.scheduler
        self.plan = parts.plan
        self._named = parts.labels
        self._measurement_stages = [d for d in self.model.detectors if d.transforms_measurements()]
        optimized = {
            id(p)
            for g in (self.optimizer.param_groups if self.optimizer is not None else [])
            for p in g["params"]
        }
        self._optimized = [
            (n, self.model.parameter(n)) for n in PARAMETER_NAMES if id(self.model.parameter(n)) in optimized
        ]
        self._plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

        self.iteration = 0
        self.history: dict = {"iteration": [], "loss": [], "time_s": [], "slice_thickness_A": []}
        self.history["loss_terms"] = {label: [] for label, _, _ in self.loss_terms}
        #: the held-out split (:class:`~ptyrad_core.engine.heldout.Split`): drawn at the first batch,
        #: when the compared grid is known, or read from the file a run resumes from
        self.split: Split | None = None
        #: the iteration's held-out loss, accumulated over its batches (with validation)
        self._scorer: Scorer | None = None
        # this iteration's per-group values, deferred (a new minimum's): handed to the tracker
        self._deferred_groups: Callable[[], np.ndarray | None] | None = None
        self.validating = self.settings.validation_fraction > 0
        #: best held-out loss, its iteration and state, early stop (:class:`Tracker`)
        self.tracker = Tracker()
        if self.validating:
            self.history["heldout_loss"] = []
        if folder is None:  # the folder's name needs the model's sizes: claimed now, before any work
            self._claim_output(parts.output_dir)
        self._guarded = [(name, self.model.parameter(name)) for name in PARAMETER_NAMES]
        self._stop_signal: int | None = None
        self._writing = False
        self._abort_after_write = False
        self._start_iteration = 0
        self._snapshot = None
        self._data_digest: str | None = None
        if self.resume_path is not None:
            self.resume(self.resume_path)

    def _claim_output(self, folder: Path) -> None:
        """Check the output folder before the work (every rank reads; rank 0 also proves it writable).

        Refused: a folder that already holds a result, unless this run resumes from that very
        file or ``overwrite`` was asked for (the message names the three ways on); a folder that
        another live process is running in. The folder's lock is taken when the loop starts
        (:meth:`run`), where both checks are made again.
        """
        self.output_dir = folder
        self.result_path = folder / RESULT_NAME
        self._check_result_slot()
        if self.world.is_main:
            outputs.prepare_folder(folder, "output.dir")
            outputs.FolderLock(folder, "check").check()

    def _check_result_slot(self) -> None:
        """The result file and every file an observer names (``ptyrad_output_files``): none is a
        file the run reads; an existing one is replaced only when it is this kind of output (the
        result: resumed from, or this run's own) or ``--overwrite`` was given."""
        results.check_slot(
            self.result_path,
            self.config,
            overwrite=self.overwrite,
            resume=self.resume_path,
            own=self._saved_iteration is not None,
        )
        if self.world.is_main:
            outputs.check_observer_files(self.pm, self, self.config, overwrite=self.overwrite)

    def close(self) -> None:
        """Release the output folder's lock and leave the process group (idempotent)."""
        if self._lock is not None:
            self._lock.release()
        self.world.close()

    @classmethod
    def from_file(cls, path, overrides: list[str] | None = None, **kwargs) -> Reconstruction:
        return cls(load_config(path, overrides), **kwargs)

    # -- pieces of an iteration ------------------------------------------------------------

    def batches(self) -> list[np.ndarray]:
        """This iteration's mini-batches of position indices
        (:class:`~ptyrad_core.engine.builder.BatchPlan`)."""
        return self.plan.batches(self.rng)

    def plugin_table(self) -> list[dict]:
        return [
            {"name": i.name, "source": i.source, "distribution": i.distribution, "version": i.version}
            for i in self.pm.info.values()
        ]

    def _loss(self, indices: torch.Tensor, iteration: int, score: bool = False):
        """Weighted loss terms ``(n_terms,)`` for one batch (on every rank: of the whole batch);
        with ``score`` the batch's held-out pixels go to the iteration's :class:`Scorer`.

        With validation the held-out pixels are left out of the training loss. In a data-parallel
        run every rank holds the gathered predictions and the measurements of the whole batch, so
        every rank computes the same held-out value and takes the same early-stop decision: no
        reduction over ranks is needed."""
        if self.world.enabled:
            start, stop = self.world.share(len(indices))
            local = indices[start:stop] if stop > start else indices[:1]  # an empty share runs one dummy row
            pred = self.world.gather_rows(self.model(local, iteration)[0], len(indices))
            if self.data.streamed:  # each rank reads only its share from disk
                with torch.no_grad():
                    meas = self.world.gather_rows(self.data.batch(local), len(indices))
            else:  # every rank holds all patterns: no need to send them
                meas = self.data.batch(indices)
            batch = Batch(indices, iteration, self.model)
        else:
            pred, batch = self.model(indices, iteration)
            meas = self.data.batch(indices)
        for stage in self._measurement_stages:
            meas = stage.measurements(meas, batch)
        if pred.shape != meas.shape:
            raise PtyradError(
                f"predicted patterns have shape {tuple(pred.shape[1:])} but the measurements "
                f"{tuple(meas.shape[1:])}: the forward extensions / detector model must produce the "
                "measured shape"
            )
        if self.validating:
            split = self._split(meas)
            pixels = split.pixels(indices)
            held = held_prediction(pred, pixels)
            if score:
                if self._scorer is None or self._scorer.split is not split:
                    s = self.settings
                    self._scorer = Scorer(
                        self.parts.score_terms,
                        split,
                        whole_scan=not self.data.streamed,
                        groups=s.tolerance > 0 and (s.keep == "best" or s.patience is not None),
                    )
                self._scorer.add(pred, meas, indices, None, batch, pixels, held)
            # in place where ``meas`` is this batch's own copy: rows gathered from the patterns in
            # memory, not a stream's block (it may map the file) nor a detector stage's output
            own = not self.data.streamed and not self._measurement_stages
            meas = train_meas(pred, meas, pixels, inplace=own, held=held)
        return torch.stack([w * term(pred, meas, batch) for _, w, term in self.loss_terms])

    def _split(self, meas: torch.Tensor) -> Split:
        """The held-out split, drawn at the first batch from ``recon.validation`` (the compared grid
        is the measurements' after the detector stages) or read from a resumed file (checked once)."""
        if self.split is None:
            s = self.settings
            self.split = Split.make(
                s.validation_seed, s.validation_fraction, self.model.n_positions, meas.shape[-2:]
            )
            self._split_checked = True
        elif not getattr(self, "_split_checked", False):
            self.split.check(
                tuple(meas.shape[-2:]), self.model.n_positions, "--resume: the file's held-out split"
            )
            self._split_checked = True
        return self.split

    def run_iteration(self, iteration: int) -> dict:
        """Run one iteration; return its metrics."""
        ga = self.settings.grad_accumulation
        t0 = _clock(self.device)
        active = self.model.set_iteration(iteration)
        batches = self.batches()
        sums = torch.zeros(len(self.loss_terms), dtype=torch.float64, device=self.device)
        score = self.validating and iteration % self.settings.validation_every == 0
        if score and self._scorer is not None:
            self._scorer.start()
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        for b, idx in enumerate(batches):
            indices = torch.as_tensor(idx, device=self.device)
            with torch.set_grad_enabled(bool(active)):
                values = self._loss(indices, iteration, score)
                total = values.sum()
            if not bool(torch.isfinite(total)):
                terms = {label: float(v) for (label, _, _), v in zip(self.loss_terms, values.detach().cpu())}
                raise NonFiniteLossError(
                    f"iteration {iteration}, batch {b}: the loss is not finite ({terms}); the model was not "
                    "updated with it. Lower the learning rates or check the data."
                )
            agreed = None
            if active:
                (total / ga).backward()
                if (b + 1) % ga == 0 or b + 1 == len(batches):
                    agreed = self._step(indices, iteration)
                    self._check_finite(iteration, self._optimized, None, b)
            sums += values.detach().to(torch.float64)
            if agreed is None:
                self._check_stop()
            elif agreed:  # a rank was asked to stop: every rank stops after this batch
                raise _Interrupted(int(agreed))
        with torch.no_grad():
            for label, constraint, schedule in self.constraints:
                if schedule.runs_at(iteration):
                    enforce(constraint, self.model, iteration)
                    self._check_finite(iteration, self._guarded, label)
        means = (sums / len(batches)).tolist()
        if self.scheduler is not None:
            if self._plateau:
                self.scheduler.step(float(sum(means)))
            elif self.settings.scheduler_step_unit == "iter":
                self.scheduler.step()
        groups = self._deferred_groups = None
        if self.validating:  # before the clock stops: its cost is the iteration's
            held = (
                float(self._scorer.value(iteration, self.model)) if score and self._scorer else float("nan")
            )
            if score and self._scorer is not None and np.isfinite(held):
                if self.tracker.improves(held, self.settings.min_delta):
                    # a new minimum's groups matter only if a later state is compared with it
                    self._deferred_groups = self._scorer.deferred_groups()
                else:  # compared with the minimum now (its groups evaluated, once, if deferred)
                    groups = self._scorer.groups()
                    self.tracker.reference_groups()
        elapsed = _clock(self.device) - t0
        terms = {label: v for (label, _, _), v in zip(self.loss_terms, means)}
        metrics = {"loss": float(sum(means)), "loss_terms": terms, "time_s": elapsed}
        if self.validating:
            if score and not np.isfinite(held):
                raise NonFiniteLossError(
                    f"iteration {iteration}: the held-out loss is not finite ({held}) while the training "
                    "loss "
                    "is: the model predicts NaN or Inf at held-out pixels. Lower the learning rates or check "
                    "the data."
                )
            metrics["heldout_loss"] = held
            if groups is not None:
                metrics["heldout_groups"] = groups
        return metrics

    def _check_finite(self, iteration: int, params, culprit: str | None, batch: int | None = None) -> None:
        """Raise :class:`NonFiniteStateError` if a parameter in ``params`` holds NaN or Inf.

        One sum per parameter (a single pass, no boolean copy of the tensor) decides; only when a
        sum is not finite are the parameters searched element-wise, to name the culprit (a finite
        array whose sum overflows is not flagged). ``culprit`` names the constraint that just ran;
        ``None`` means the optimizer step, and the message names each bad parameter with its
        learning rate.
        """
        if not params:
            return
        sums = torch.stack([p.detach().sum() for _, p in params])
        if bool(torch.isfinite(sums).all()):
            return
        bad = [name for name, p in params if not bool(torch.isfinite(p.detach()).all())]
        if not bad:
            return
        if culprit is None:
            lrs = (
                {g.get("name"): g["lr"] for g in self.optimizer.param_groups}
                if self.optimizer is not None
                else {}
            )
            what = ", ".join(f"{n!r} (lr {lrs[n]:g})" if n in lrs else repr(n) for n in bad)
            raise NonFiniteStateError(
                f"iteration {iteration}, batch {batch}: the {self.settings.optimizer} step made {what} "
                "non-finite "
                "(NaN or Inf); lower that learning rate or check the data"
            )
        raise NonFiniteStateError(
            f"iteration {iteration}: {culprit} made {', '.join(repr(n) for n in bad)} non-finite (NaN or "
            "Inf); "
            "check its options"
        )

    def _step(self, indices: torch.Tensor, iteration: int) -> float | None:
        """One optimizer step; closure-based optimizers (L-BFGS) re-evaluate the last batch.

        In a data-parallel run the stop requests of the ranks travel with the gradients: the
        largest signal number is returned (0: none); ``None`` when they were not exchanged.
        """
        agreed = None
        if isinstance(self.optimizer, torch.optim.LBFGS):

            def closure():
                self.optimizer.zero_grad(set_to_none=True)
                loss = self._loss(indices, iteration).sum()
                loss.backward()
                self.world.average_gradients(self.model.parameters())
                return loss

            self.optimizer.step(closure)
        else:
            agreed = self.world.average_gradients(self.model.parameters(), [float(self._stop_signal or 0)])
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and self.settings.scheduler_step_unit == "batch" and not self._plateau:
            self.scheduler.step()
        return None if agreed is None else (agreed[0] if agreed else 0.0)

    def _check_stop(self, measure: bool = False) -> None:
        """Raise if a stop signal reached this rank or (in a data-parallel run) any other one.

        With ``measure``, also update :attr:`peak_memory` (one collective for both).
        """
        local = [float(self._stop_signal or 0)]
        if measure:
            peaks = runtime.peak_memory_MiB(self.device)
            local += list(peaks.values())
        agreed = self.world.maximum(local) if self.world.enabled else local
        if measure:
            self.peak_memory = dict(zip(peaks, agreed[1:]))
        if agreed[0]:
            raise _Interrupted(int(agreed[0]))

    def _sync(self) -> None:
        """Make every rank's parameters rank 0's (they should already be: say so if not)."""
        drift = self.world.broadcast_parameters(self.model)
        if drift > 0:
            log.warning(
                "rank %d: parameters had drifted from rank 0's by up to %.3g by iteration %d (now reset): a "
                "component "
                "does not compute identically on every rank (random numbers, non-deterministic kernels?)",
                self.world.rank,
                drift,
                self.iteration,
            )

    def _lifecycle(self, hook: str, **kwargs) -> None:
        """Lifecycle hooks run on rank 0 only: observers write files and draw progress."""
        if self.world.is_main:
            self.pm.call_lifecycle(hook, **kwargs)

    def _record(self, iteration: int, metrics: dict) -> None:
        h = self.history
        h["iteration"].append(iteration)
        h["loss"].append(metrics["loss"])
        h["time_s"].append(metrics["time_s"])
        h["slice_thickness_A"].append(float(self.model.slice_thickness.detach()))
        for label, value in metrics["loss_terms"].items():
            h["loss_terms"][label].append(value)
        if "heldout_loss" in h:
            h["heldout_loss"].append(metrics.get("heldout_loss", float("nan")))

    def _track(self, iteration: int, metrics: dict) -> bool:
        """Update the best held-out loss (and the best state, ``keep: best``); True when the run
        should stop early (``patience`` evaluated iterations without an improvement)."""
        value = metrics.get("heldout_loss")
        if value is None or not np.isfinite(value):
            return False
        s = self.settings
        self.tracker.update(
            iteration,
            value,
            s.min_delta,
            self.model if s.keep == "best" else None,
            metrics.get("heldout_groups", self._deferred_groups),
            s.tolerance,
        )
        if s.patience is not None and self.tracker.since_best >= s.patience:
            self.tracker.stopped_at = iteration
            return True
        return False

    @property
    def data_digest(self) -> str:
        """SHA-256 of the measurement file (computed once, at the first save)."""
        if self._data_digest is None:
            self._data_digest = sources.file_digest(self.settings.data_file)
        return self._data_digest

    def save(self, final: bool = False) -> Path:
        """Write the result file (rank 0; other ranks write nothing and return its path).

        The write is atomic (a temporary file renamed over the old one): whatever stops it, the
        previous file stays intact. Ctrl-C or SIGTERM during the write are held until it ends.
        A failed write raises :class:`_SaveFailed` (the run stops; nothing is written again).
        ``final``: the run's end (its last iteration or an early stop): with ``recon.stop.keep:
        best`` the file's arrays then hold the state at the held-out minimum.
        """
        if not self.world.is_main:
            return self.result_path
        self._writing = True
        try:
            path = results.write_result(self.result_path, self, final=final)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            raise _SaveFailed(exc) from exc
        finally:
            self._writing = False
        self._saved_iteration = self.iteration
        if self._abort_after_write:  # a second Ctrl-C came during the write
            raise KeyboardInterrupt
        self.pm.call_lifecycle("ptyrad_on_save", run=self, path=path, iteration=self.iteration)
        return path

    def resume(self, path) -> Reconstruction:
        """Continue from a result file written by a run of the same config (its checkpoint).

        The config's hyperparameters apply (learning rates, iteration windows, constraints,
        iteration count); the optimizer state is carried for every parameter that the file's
        optimizer also updated, and fresh for the others (logged). Prefer passing ``resume=`` to
        the constructor, which checks the file and the output folder before any data are read.
        """
        self.resumed_from = (Path(path), results.read(path, self))
        if self.result_path.exists() and outputs.same_file(path, self.result_path):
            self._saved_iteration = self.iteration
        log.info("resumed from %s at iteration %d", path, self.iteration)
        return self

    # -- the loop --------------------------------------------------------------------------

    def run(self, iterations: int | None = None) -> Reconstruction:
        """Run ``iterations`` more iterations (default: up to ``recon.iterations``) and save.

        SIGINT and SIGTERM stop the run at the end of the current batch: the unfinished
        iteration is undone, a checkpoint of the last completed one is written and
        :class:`~ptyrad_core.kernel.errors.RunInterrupted` is raised. Any other failure does the same
        (the last completed iteration is kept or written, the error names its cause): a loss or
        a parameter that is not finite (:class:`~ptyrad_core.kernel.errors.NonFiniteLossError`,
        :class:`~ptyrad_core.kernel.errors.NonFiniteStateError`), a plugin that raises
        (:class:`~ptyrad_core.kernel.errors.PluginError`), running out of memory, a write that fails
        (:class:`~ptyrad_core.kernel.errors.OutputError`: the previous file stays intact). In a
        data-parallel run a process that dies or stops answering for ``recon.dist_timeout_s``
        makes the others raise :class:`~ptyrad_core.kernel.errors.DistributedError`, after rank 0
        wrote the last completed iteration.
        """
        last = self.settings.iterations if iterations is None else self.iteration + iterations
        if last <= self.iteration:
            log.warning(
                "already at iteration %d (recon.iterations = %d): nothing to run, %s left as it is",
                self.iteration,
                last,
                self.result_path,
            )
            return self
        save_every = self.settings.save_every
        runtime.tune_allocator()
        if self.world.is_main:
            outputs.prepare_folder(self.output_dir, "output.dir")
            if self._lock is None or not self._lock.held:
                self._lock = outputs.FolderLock(self.output_dir, f"run of {self.settings.source}").acquire()
            try:
                self._check_result_slot()  # another run may have finished here since this one was built
            except OutputError:
                self._lock.release()
                raise
        self._start_iteration = self.iteration
        self._lifecycle("ptyrad_on_run_start", run=self)
        previous = _catch_signals(self)
        try:
            self._snapshot = results.capture(self)
            if self.world.enabled:  # every rank starts from rank 0's parameters
                self.world.broadcast_parameters(self.model)
                self._snapshot = results.capture(self)
            for iteration in range(self.iteration + 1, last + 1):
                try:
                    metrics = self.run_iteration(iteration)
                except (PtyradError, KeyboardInterrupt, _Interrupted):
                    raise
                except Exception as exc:
                    culprit = blame(exc, self._named)
                    if culprit is None or _out_of_memory(exc):
                        raise
                    raise PluginError(
                        f"{culprit} raised at iteration {iteration}: {type(exc).__name__}: {exc}"
                    ) from exc
                self.iteration = iteration
                self._record(iteration, metrics)
                stop = self._track(iteration, metrics)
                self._snapshot = results.capture(self)
                self._lifecycle("ptyrad_on_iter_end", run=self, iteration=iteration, metrics=metrics)
                if stop:
                    log.info(
                        "stopped early at iteration %d: no state as good as the held-out minimum "
                        "(iteration %d) since iteration %d",
                        iteration,
                        self.tracker.best_iteration,
                        self.tracker.kept_iteration,
                    )
                    break
                if save_every and iteration % save_every == 0 and iteration != last:
                    self._sync()
                    self.save()
                self._check_stop(measure=True)
            self._sync()
            self.save(final=True)
        except DistributedError as exc:
            # the last completed iteration is the same on every rank: rank 0 keeps it
            results.restore(self, self._snapshot)
            path = self.save()
            written = (
                f"checkpoint of iteration {self.iteration} written to {path}"
                if self.world.is_main
                else f"rank 0, if it is still running, writes iteration {self.iteration} to {path}"
            )
            error = DistributedError(f"{exc}; {written} (continue with --resume)")
            self._lifecycle("ptyrad_on_exception", run=self, exc=error)
            raise error from None
        except BaseException as exc:
            if isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            error = self._fail(exc)
            self._lifecycle("ptyrad_on_exception", run=self, exc=error)
            raise error from (exc if error.__cause__ is None else error.__cause__)
        finally:
            _restore_signals(previous)
            if self._lock is not None:
                self._lock.release()
        self._lifecycle("ptyrad_on_run_end", run=self)
        return self

    def _fail(self, exc: BaseException) -> PtyradError:
        """After ``exc`` stopped the loop: restore the last completed iteration, keep or write
        it, and return the one error that names the cause, what was kept and how to go on."""
        if self._snapshot is not None:
            results.restore(self, self._snapshot)
        if isinstance(exc, _SaveFailed):
            kept = self._on_disk()
            cause = str(exc.exc).strip().splitlines()[0] if str(exc.exc).strip() else type(exc.exc).__name__
            return OutputError(
                f"writing {self.result_path} at iteration {self.iteration} failed "
                f"({type(exc.exc).__name__}: {cause}); "
                + (
                    f"the previous checkpoint, iteration {kept}, is intact there"
                    if kept is not None
                    else "no checkpoint was written"
                )
                + (
                    f" (continue with --resume {self.result_path} once the cause is fixed)"
                    if kept is not None
                    else ""
                )
            )
        where = self._keep_last_good()
        if isinstance(exc, _Interrupted):
            return RunInterrupted(
                f"{signal.Signals(exc.signum).name} received: stopped after iteration {self.iteration}; "
                f"{where}"
                f"{'' if self.world.is_main else ' (by rank 0)'}",
                exc.signum,
            )
        if isinstance(exc, KeyboardInterrupt):
            return RunInterrupted(
                f"interrupted (second Ctrl-C) after iteration {self.iteration}; {where}", signal.SIGINT
            )
        if isinstance(exc, (NonFiniteLossError, NonFiniteStateError)):
            return type(exc)(
                f"{str(exc).rstrip('.')}. Restored the state after iteration {self.iteration}; {where}"
            )
        if isinstance(exc, PtyradError):
            error = (
                type(exc)(f"{exc}; {where}")
                if type(exc).__init__ is PtyradError.__init__
                else PtyradError(f"{exc}; {where}")
            )
            error.__cause__ = exc.__cause__
            return error
        if _out_of_memory(exc):
            culprit = blame(exc, self._named)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            error = PtyradError(
                f"out of memory in iteration {self.iteration + 1}{f' in {culprit}' if culprit else ''} "
                f"({type(exc).__name__}{f': {first}' if first else ''}); lower recon.batch_size or set "
                f"recon.positions_per_pass; {where}"
            )
        else:
            error = PtyradError(
                f"unexpected {type(exc).__name__} in iteration {self.iteration + 1}: {exc} (--verbose shows "
                "the "
                f"traceback); {where}"
            )
        error.__cause__ = exc
        return error

    def _on_disk(self) -> int | None:
        """The iteration of the result file in the output folder, if there is a readable one."""
        import h5py

        try:
            with h5py.File(self.result_path, "r") as f:
                return int(f.attrs["iteration"])
        except Exception:
            return None

    def _keep_last_good(self) -> str:
        """Write the restored last completed iteration unless the result file already holds it
        (or something newer); say where it is and how to go on."""
        if not self.world.is_main:
            return f"rank 0 keeps iteration {self.iteration} in {self.result_path}"
        if self.iteration == self._saved_iteration:
            return f"its checkpoint in {self.result_path} is kept (continue with --resume {self.result_path})"
        if self.iteration == self._start_iteration:
            if self.resumed_from is not None:
                since = self.resumed_from[0]
                return f"nothing new since {since} (continue with --resume {since})"
            return "no iteration completed, nothing was written"
        on_disk = self._on_disk()
        if on_disk is not None and on_disk > self.iteration and self._saved_iteration is not None:
            return f"the newer checkpoint in {self.result_path} (iteration {on_disk}) is kept"
        try:
            path = self.save()
        except _SaveFailed as failed:
            kept = self._on_disk()
            return f"writing its checkpoint failed too ({type(failed.exc).__name__}: {failed.exc}); " + (
                f"{self.result_path} still holds iteration {kept}"
                if kept is not None
                else "nothing was written"
            )
        except KeyboardInterrupt:
            return f"the checkpoint write was abandoned; {self.result_path} is as it was"
        return f"checkpoint written to {path} (continue with --resume {path})"


def _out_of_memory(exc: BaseException) -> bool:
    """Host ``MemoryError`` or torch's device ``OutOfMemoryError``."""
    return isinstance(exc, MemoryError) or isinstance(exc, getattr(torch, "OutOfMemoryError", MemoryError))


class _SaveFailed(Exception):
    """Writing the result file failed; carries the cause."""

    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


class _Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _catch_signals(run) -> dict:
    """Turn SIGINT / SIGTERM into a request to stop after the current batch (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if run._stop_signal is not None and signum == signal.SIGINT:
            if run._writing:  # never break a checkpoint write: stop right after it
                run._abort_after_write = True
                return
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        run._stop_signal = signum

    run._stop_signal = None
    run._abort_after_write = False
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def run(
    config_or_path,
    overrides: list[str] | None = None,
    quiet: bool = True,
    *,
    resume=None,
    overwrite: bool = False,
) -> Reconstruction:
    """Run a reconstruction from a YAML path, a config dict or a
    :class:`~ptyrad_core.kernel.config.Config` (``ptyrad_core.run``); return it when done.

    :param overrides: ``--set`` style ``"dotted.key=value"`` strings, applied to a path or a dict
        (the caller's dict is not changed).
    :param resume: a result file to continue from (``--resume``).
    :param overwrite: replace a result already in the output folder (``--overwrite``).
    :return: the finished :class:`Reconstruction` (model, history, result path).
    """
    import copy

    from ptyrad_core.kernel.config import build_config
    from ptyrad_core.setup.config_file import apply_overrides

    if not isinstance(overwrite, bool):
        raise ConfigError(f"run: overwrite must be True or False, got {overwrite!r}")
    if isinstance(config_or_path, Config):
        if overrides:
            raise ConfigError("run: overrides apply to a YAML path or a dict, not to a built Config")
        config = config_or_path
    elif isinstance(config_or_path, dict):
        config = build_config(apply_overrides(copy.deepcopy(config_or_path), overrides or []))
    elif isinstance(config_or_path, (str, Path)):
        config = load_config(config_or_path, overrides)
    else:
        raise ConfigError(
            f"run: expected a YAML path, a config dict or a Config, got {type(config_or_path).__name__}"
        )
    rec = Reconstruction(config, quiet=quiet, resume=resume, overwrite=overwrite)
    try:
        rec.run()
    finally:
        rec.close()
    return rec

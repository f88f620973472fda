"""From a config and a plugin manager to the parts of a reconstruction.

The builder is the one place of the engine that reads the config. It hands the loop
(:class:`~ptyrad_core.engine.loop.Reconstruction`) a :class:`Settings` record and the
:class:`Parts`: model, data, weighted loss terms, scheduled constraints, optimizer, scheduler,
batch plan and output folder. Its steps are separate functions because the loop interleaves
them with checks that must come before the data are read:

1. :func:`resolve_components`: every plugin component resolved and its options validated
   (loader and result readers included), and the settings;
2. (the loop inspects ``--resume`` and claims ``output.dir``);
3. :func:`build_parts`: data read and preprocessed, model, components set up, optimizer,
   scheduler, batch plan and the output folder (named from the model's sizes when
   ``output.name`` is set; the loop claims it before any work).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ptyrad_core.engine.heldout import CountDeviance
from ptyrad_core.kernel.config import Config, resolved_dict, validate_components
from ptyrad_core.kernel.data import Measurements
from ptyrad_core.kernel.errors import OutputError, PtyradError
from ptyrad_core.kernel.model import PtychoModel
from ptyrad_core.kernel.plugin_manager import get_plugin_manager
from ptyrad_core.kernel.schedule import Schedule
from ptyrad_core.setup import initialize, naming, scan
from ptyrad_core.setup.optim_check import check_config

log = logging.getLogger("ptyrad_core")


@dataclass(frozen=True)
class Settings:
    """What the loop needs to know of the config, and nothing more.

    :ivar iterations: ``recon.iterations``, the last iteration of a run.
    :ivar save_every: ``output.save_every``: write the result file every so many iterations
        (0: at the end only).
    :ivar seed: ``recon.seed`` (recorded in the result file).
    :ivar grad_accumulation: ``recon.grad_accumulation``: batches per optimizer step.
    :ivar optimizer: ``optimizer.name`` (named in messages).
    :ivar scheduler_step_unit: ``optimizer.scheduler.step_unit`` (``"iter"`` or ``"batch"``),
        ``None`` without a scheduler.
    :ivar fft: ``recon.fft`` as configured: ``"auto"`` lets a resume keep the library of the file's run.
    :ivar data_file: the measurement file (absolute), whose digest the result file records.
    :ivar source: the config's name in messages (its file, or ``"<config>"``).
    :ivar output_dir: ``output.dir`` (the result's folder, or the parent of a named one).
    :ivar dist_timeout_s: ``recon.dist_timeout_s``: how long ranks wait for each other.
    :ivar validation_fraction: ``recon.validation.fraction``: detector pixels held out of every
        pattern (0: held-out validation off).
    :ivar validation_seed: ``recon.validation.seed``, or ``recon.seed`` when it is null.
    :ivar validation_every: ``recon.validation.every``: evaluate the held-out loss every N iterations.
    :ivar patience: ``recon.stop.patience``: evaluated iterations without a held-out improvement
        before the run stops (``None``: never early).
    :ivar min_delta: ``recon.stop.min_delta``: the relative improvement that counts.
    :ivar tolerance: ``recon.stop.tolerance``: standard errors within which a later state counts
        as tied with the held-out minimum (0: the minimum alone).
    :ivar keep: ``recon.stop.keep`` resolved: ``"best"`` or ``"last"``.
    """

    iterations: int
    save_every: int
    seed: int
    grad_accumulation: int
    optimizer: str
    scheduler_step_unit: str | None
    fft: str
    data_file: Path
    source: str
    output_dir: Path
    dist_timeout_s: float
    validation_fraction: float = 0.0
    validation_seed: int = 0
    validation_every: int = 1
    patience: int | None = None
    min_delta: float = 0.0
    tolerance: float = 0.0
    keep: str = "last"

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        sched = config.optimizer.scheduler
        return cls(
            iterations=config.recon.iterations,
            save_every=config.output.save_every,
            seed=config.recon.seed,
            grad_accumulation=config.recon.grad_accumulation,
            optimizer=config.optimizer.name,
            scheduler_step_unit=sched.step_unit if sched is not None else None,
            fft=config.recon.fft,
            data_file=config.resolve(config.data.path),
            source=config.origin.source,
            output_dir=Path(config.output.dir),
            dist_timeout_s=config.recon.dist_timeout_s,
            validation_fraction=float(config.recon.validation.fraction),
            validation_seed=(
                config.recon.validation.seed
                if config.recon.validation.seed is not None
                else config.recon.seed
            ),
            validation_every=config.recon.validation.every,
            patience=config.recon.stop.patience,
            min_delta=float(config.recon.stop.min_delta),
            tolerance=float(config.recon.stop.tolerance),
            keep=config.recon.keep,
        )


def settings(config: Config) -> Settings:
    """The loop's :class:`Settings` of ``config``."""
    return Settings.from_config(config)


def plugin_manager(config: Config):
    """A plugin manager with the installed plugins and ``plugins.modules``, without ``plugins.disable``."""
    return get_plugin_manager(config.plugins.modules, config.plugins.disable, base_dir=config.origin.folder)


class WeightedLoss(NamedTuple):
    """One loss term: its label in the history (``name``; ``name_2`` if repeated), weight and object."""

    label: str
    weight: float
    term: Any


class ScheduledConstraint(NamedTuple):
    """One constraint: its label in messages (``constraints[i] 'name'``), object and schedule."""

    label: str
    constraint: Any
    schedule: Schedule


@dataclass
class BatchPlan:
    """Which scan positions an iteration visits and how they are grouped into mini-batches.

    :ivar indices: ``(N,)`` the positions reconstructed (``recon.indices``).
    :ivar batch_size: positions per mini-batch.
    :ivar fixed: batches built once (``recon.grouping`` ``spread`` / ``compact``), visited in a
        new order every iteration; ``None``: random batches every iteration.
    """

    indices: np.ndarray
    batch_size: int
    fixed: list[np.ndarray] | None = None

    def batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """This iteration's batches, drawn with the run's generator ``rng``."""
        if self.fixed is None:
            return scan.make_batches(None, self.indices, self.batch_size, "random", rng)
        order = rng.permutation(len(self.fixed))
        return [self.fixed[i] for i in order]


@dataclass
class Parts:
    """Everything a reconstruction runs with (:func:`build_parts`).

    :ivar prepared: the preprocessed, calibrated data (:class:`~ptyrad_core.setup.initialize.Data`).
    :ivar measurements: the measurements on the host (released when the device holds a copy).
    :ivar data: the measurements as the loop reads them (on the compute device, or streamed).
    :ivar model: the :class:`PtychoModel` on the compute device.
    :ivar loss_terms: :class:`WeightedLoss` in config order.
    :ivar constraints: :class:`ScheduledConstraint` in config order.
    :ivar optimizer: the ``torch.optim`` optimizer, ``None`` when nothing is optimized.
    :ivar scheduler: the learning-rate scheduler, or ``None``.
    :ivar plan: the :class:`BatchPlan`.
    :ivar output_dir: the folder the result file goes to.
    :ivar labels: ``{id(component): label}`` of every component object (``loss[0] 'gaussian'``,
        ``constraints[1] 'probe_mask'``, ``forward[0] ...``, ``detector[0] ...``), to name one that raised.
    :ivar score_terms: :class:`WeightedLoss` the held-out pixels are scored with
        (``recon.validation.score``: the Poisson deviance, :class:`~ptyrad_core.engine.heldout.CountDeviance`,
        the listed terms, or ``loss_terms`` themselves for ``'loss'``).
    """

    prepared: initialize.Data
    measurements: Measurements
    data: Any
    model: PtychoModel
    loss_terms: list[WeightedLoss]
    constraints: list[ScheduledConstraint]
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    plan: BatchPlan
    output_dir: Path
    labels: dict[int, str]
    score_terms: list[WeightedLoss]


def weighted_terms(specs, where: tuple, components: dict, model: PtychoModel) -> list[WeightedLoss]:
    """The loss terms of ``specs`` (``loss``, or ``recon.validation.score``: YAML path ``where``),
    built from their resolved ``components`` and set up on ``model``; a name used twice is
    labelled ``name_2``, ``name_3``, ..."""
    terms = []
    counts: dict[str, int] = {}
    for i, spec in enumerate(specs):
        cls, options = components[(*where, i)]
        counts[spec.name] = counts.get(spec.name, 0) + 1
        label = spec.name if counts[spec.name] == 1 else f"{spec.name}_{counts[spec.name]}"
        terms.append(WeightedLoss(label, float(spec.weight), _setup(cls(options), model)))
    return terms


def check_step_outputs(config: Config, components: dict, overwrite: bool = False) -> None:
    """Before any data are read, what the preprocessing steps will write
    (:meth:`~ptyrad_core.kernel.components.Preprocessor.output_targets`): each folder created and
    proved writable, each file named in full neither a file the run reads nor a folder. Whether an
    existing file may be replaced (its own previous output, or ``--overwrite``) is judged when the
    step runs, when its shape is known.

    :raises OutputError: one line naming the step, its option and the path.
    """
    from ptyrad_core.engine.outputs import prepare_folder
    from ptyrad_core.setup.readonly import judge_new_file, same_file

    context = initialize.preprocess_context(config, overwrite=overwrite)
    # the run's own result file (its folder is known here unless output.name derives it from the model)
    result = Path(config.output.dir) / "result.h5" if config.output.name is None else None
    for label, step in initialize.preprocess_steps(config, components):
        for option, folder, file in step.output_targets(context):
            what = f"{label}: {option}"
            if file is not None:
                judge_new_file(file, what, inputs=context.input_paths(), overwrite=True)
                if result is not None and same_file(file, result):
                    raise OutputError(f"{what}: {str(file)!r} is the run's result file; choose another path")
            prepare_folder(folder, what)


def resolve_components(config: Config, pm) -> tuple[dict, dict]:
    """Every component resolved and its options validated, before any data are read.

    :return: ``(components, resolved config)``: ``{YAML path: (class, options)}``
        (:func:`~ptyrad_core.kernel.config.validate_components`) and the config as a dict with
        defaults and component options filled in (for the result file).
    """
    components = validate_components(config, pm, checks=(check_config,))  # optimizer and scheduler too
    return components, resolved_dict(config, components)


def select_device(config: Config) -> torch.device:
    """``recon.device`` (``auto``: CUDA when available)."""
    return initialize.select_device(config.recon.device)


def output_folder(config: Config, model: PtychoModel | None = None, n_positions: int = 0) -> Path | None:
    """The folder of the result file: ``output.dir``, or its sub-folder named from the config and
    the model's sizes when ``output.name`` is set (``None`` until ``model`` is known)."""
    if config.output.name is None:
        return Path(config.output.dir)
    if model is None:
        return None
    return Path(config.output.dir) / naming.folder_name(config, model, n_positions)


def build_parts(
    config: Config,
    pm,
    components: dict,
    device: torch.device,
    rng: np.random.Generator,
    *,
    overwrite: bool = False,
) -> Parts:
    """Read and prepare the data, build the model and the components that run on it.

    :param rng: the run's generator (jitter, object noise; then the batches).
    :param overwrite: ``--overwrite``, for preprocessing steps that write files.
    """
    prepared = initialize.prepare_data(config, pm, components, overwrite=overwrite)
    measurements = prepared.measurements
    model = initialize.build_model(config, prepared, components, device, rng, pm)
    data = measurements.to(device, config.data.device_dtype)
    if not data.streamed and (device.type != "cpu" or config.data.device_dtype != "float32"):
        measurements.release()  # the device holds its own copy: no second one on the host
    loss_terms = weighted_terms(config.loss, ("loss",), components, model)
    score = config.recon.validation.score
    if isinstance(score, list):
        score_terms = weighted_terms(score, ("recon", "validation", "score"), components, model)
    else:
        score_terms = [WeightedLoss("deviance", 1.0, CountDeviance())] if score == "deviance" else loss_terms
    constraints = []
    for i, spec in enumerate(config.constraints):
        cls, options = components[("constraints", i)]
        constraints.append(
            ScheduledConstraint(f"constraints[{i}] {spec.name!r}", _setup(cls(options), model), spec.schedule)
        )
    optimizer = make_optimizer(model, config.optimizer)
    scheduler = make_scheduler(optimizer, config.optimizer.scheduler)
    labels = {id(obj): f"loss[{i}] {label!r}" for i, (label, _, obj) in enumerate(loss_terms)}
    labels.update(
        {
            id(obj): f"recon.validation.score[{i}] {label!r}"
            for i, (label, _, obj) in enumerate(score_terms if isinstance(score, list) else [])
        }
    )
    labels.update({id(c.constraint): c.label for c in constraints})
    labels.update({id(e): f"forward[{i}] {config.forward[i].name!r}" for i, e in enumerate(model.extensions)})
    labels.update(
        {id(d): f"detector[{i}] {config.detector[i].name!r}" for i, d in enumerate(model.detectors)}
    )
    plan = batch_plan(config, model)
    return Parts(
        prepared,
        measurements,
        data,
        model,
        loss_terms,
        constraints,
        optimizer,
        scheduler,
        plan,
        output_folder(config, model, len(plan.indices)),
        labels,
        score_terms,
    )


def batch_plan(config: Config, model: PtychoModel) -> BatchPlan:
    """The positions to reconstruct (``recon.indices``) and their grouping (``recon.grouping``).

    Fixed groupings are built once, from the nominal positions, with their own generator (seeded
    by ``recon.seed``), so that the run's generator draws the same numbers whatever the grouping.
    """
    rc = config.recon
    ind = rc.indices
    if ind.mode != "full" and model.scan_shape is None:
        raise PtyradError("recon.indices: 'sub' and 'center' need a raster scan shape")
    indices = (
        scan.select_indices(model.scan_shape, ind.mode, ind.subscan)
        if ind.mode != "full"
        else np.arange(model.n_positions)
    )
    fixed = None
    if rc.grouping != "random":
        nominal = (model.crop.to(model.frac.dtype) + model.frac).cpu().numpy()
        fixed = scan.make_batches(
            nominal, indices, rc.batch_size, rc.grouping, np.random.default_rng([rc.seed, 1])
        )
    return BatchPlan(indices, rc.batch_size, fixed)


def make_optimizer(model, spec) -> torch.optim.Optimizer | None:
    """A ``torch.optim`` optimizer by name, one parameter group per parameter with lr > 0."""
    cls = getattr(torch.optim, spec.name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        names = sorted(
            n
            for n, c in vars(torch.optim).items()
            if isinstance(c, type) and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer
        )
        raise PtyradError(
            f"optimizer.name: {spec.name!r} is not a torch.optim optimizer; choose one of {', '.join(names)}"
        )
    groups = [
        {"params": [model.parameter(name)], "lr": sched.lr, "name": name}
        for name, sched in model.schedules.items()
        if sched.lr > 0
    ]
    if not groups:
        return None
    if cls is torch.optim.LBFGS:
        # L-BFGS takes one parameter group: it gets the smallest learning rate (as in PtyRAD)
        lr = min(g["lr"] for g in groups)
        log.warning("optimizer LBFGS has one learning rate for all parameters: using the smallest, %g", lr)
        groups = [{"params": [p for g in groups for p in g["params"]], "lr": lr}]
    if _fused_by_default(cls, spec.options):
        try:
            return cls(groups, **spec.options, fused=True)
        except Exception:  # a dtype or device without a fused kernel, or options it rejects: the default
            pass
    try:
        return cls(groups, **spec.options)
    except Exception as exc:
        raise PtyradError(
            f"optimizer: torch.optim.{spec.name} rejected the options {spec.options}: {exc}"
        ) from None


def _fused_by_default(cls, options: dict) -> bool:
    """Whether to ask ``cls`` for its fused implementation (one kernel per parameter for the
    whole update): where it has one and the config chose no implementation itself. The same
    update up to rounding, several times faster on the CPU for whole-object parameters
    (``docs/benchmarks.md``)."""
    if {"fused", "foreach", "differentiable"} & set(options):
        return False
    return "fused" in inspect.signature(cls.__init__).parameters


def make_scheduler(optimizer, spec):
    """A ``torch.optim.lr_scheduler`` by name, or ``None``."""
    if spec is None or optimizer is None:
        return None
    cls = getattr(torch.optim.lr_scheduler, spec.name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.lr_scheduler.LRScheduler)):
        raise PtyradError(f"optimizer.scheduler.name: {spec.name!r} is not a torch.optim.lr_scheduler class")
    try:
        return cls(optimizer, **spec.options)
    except Exception as exc:
        raise PtyradError(
            f"optimizer.scheduler: torch.optim.lr_scheduler.{spec.name} rejected {spec.options}: {exc}"
        ) from None


def _setup(component, model):
    setup = getattr(component, "setup", None)
    if callable(setup):
        setup(model)
    if isinstance(component, torch.nn.Module):
        component.to(next(model.parameters()).device)
    return component

"""Hook specifications: every extension point of ptyrad_core, in one module.

A plugin is a module (or object) with functions decorated by ``@ptyrad_core.hookimpl`` whose
names match the specifications below. Plugins are found through the ``ptyrad_core.plugins``
entry-point group (the built-in plugins use it too) and through ``plugins.modules`` in a config
(dotted module names or paths to ``.py`` files).

There are two kinds of hook:

* *Registration hooks* (``ptyrad_register_*``) are called once when the plugin manager is
  built. Each receives a :class:`~ptyrad_core.kernel.registry.Registry` and adds named component
  classes to it. A config then selects components by name; what it does not name never runs,
  and the hot path never goes through pluggy.
* *Lifecycle hooks* (``ptyrad_on_*``) observe a run. Their return values are ignored.

``docs/hooks.md`` is generated from the docstrings here (``ptyrad-core docs hooks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pluggy import HookimplMarker, HookspecMarker

# annotations only; ``run`` stays ``Any``: it is the engine's Reconstruction, and the kernel names
# no layer above it
if TYPE_CHECKING:
    from ptyrad_core.kernel.config import Config
    from ptyrad_core.kernel.registry import Registry

#: Marks the specifications below.
hookspec = HookspecMarker("ptyrad_core")
#: Marks a plugin's implementation of a hook: ``@hookimpl`` (import it from :mod:`ptyrad_core.plugin`).
hookimpl = HookimplMarker("ptyrad_core")


# --------------------------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------------------------


@hookspec(historic=True)
def ptyrad_configure(config: Config) -> None:
    """Receive the validated run configuration.

    Called once per run after the config and every plugin option validated, before data are
    loaded. Historic: a plugin registered later still receives the call.

    :param config: the validated :class:`~ptyrad_core.kernel.config.Config`.
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------


@hookspec
def ptyrad_register_loss_terms(registry: Registry) -> None:
    """Register loss terms.

    Called once when the plugin manager is built. Each loss term is a
    :class:`~ptyrad_core.plugin.LossTerm` subclass (a ``torch.nn.Module``) with a nested
    ``Options(PluginOptions)`` model and
    ``forward(pred, meas, batch) -> Tensor`` (a scalar), where ``pred`` and ``meas`` are
    ``(B, Ky, Kx)`` float32 patterns (zero frequency centred) and ``batch`` a
    :class:`~ptyrad_core.kernel.model.Batch`. The total loss is the sum of ``weight * term`` over the
    config's ``loss`` list, in list order.

    :param registry: the loss-term :class:`~ptyrad_core.kernel.registry.Registry`; call
        ``registry.add(name, cls)``.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_constraints(registry: Registry) -> None:
    """Register constraints.

    Called once when the plugin manager is built. Each constraint is a
    :class:`~ptyrad_core.plugin.Constraint` subclass with a nested ``Options(PluginOptions)``
    model and ``enforce(model, iteration)``, which changes the model's tensors in place (under
    ``torch.no_grad``). (A class that defines the old name ``apply`` instead still runs, with a
    DeprecationWarning.) The kernel enforces the config's ``constraints`` list in list
    order after the last batch of every iteration that the entry's ``start_iter / step /
    end_iter`` schedule selects.

    :param registry: the constraint :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_forward_extensions(registry: Registry) -> None:
    """Register forward-model extensions.

    Called once when the plugin manager is built. An extension is a
    :class:`~ptyrad_core.kernel.forward.ForwardExtension` subclass with a nested ``Options`` model; it
    overrides any of ``object``, ``probe``, ``propagator`` and ``patterns`` to transform that
    quantity inside the differentiable forward model. Extensions named in the config's
    ``forward`` list chain in list order.

    :param registry: the forward-extension :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_detectors(registry: Registry) -> None:
    """Register detector models.

    Called once when the plugin manager is built. A detector stage is a
    :class:`~ptyrad_core.kernel.detector.DetectorModel` subclass with a nested ``Options`` model; its
    ``forward(patterns, batch)`` maps far-field intensities to what the detector records, and it
    may also transform the measured patterns of each batch and set the grid the forward model
    simulates on. The config's ``detector`` list chains stages in list order; with none named,
    predicted patterns are compared as they are.

    :param registry: the detector :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_loaders(registry: Registry) -> None:
    """Register data loaders.

    Called once when the plugin manager is built. A loader is a
    :class:`~ptyrad_core.plugin.Loader` subclass with a nested ``Options(PluginOptions)`` model,
    constructed as ``cls(path, options)``, whose ``load()`` returns a
    :class:`~ptyrad_core.kernel.data.Measurements`.

    :param registry: the loader :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_preprocessors(registry: Registry) -> None:
    """Register preprocessing steps.

    Called once when the plugin manager is built. A step is a
    :class:`~ptyrad_core.kernel.preprocess.Preprocessor` subclass with a nested ``Options`` model
    whose ``transform(measurements, context)`` changes the measurements in place (the old name
    ``apply`` still runs, with a DeprecationWarning); the config's ``data.preprocess`` list runs
    the steps in list order on the loaded measurements, before calibration.

    :param registry: the preprocessing :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_register_result_readers(registry: Registry) -> None:
    """Register readers of previous reconstructions.

    Called once when the plugin manager is built. A reader is a
    :class:`~ptyrad_core.kernel.prior.ResultReader` subclass with a nested ``Options`` model, constructed
    as ``cls(path, options)``, whose ``read()`` returns a :class:`~ptyrad_core.kernel.prior.PriorResult`
    (probe, object, positions, tilts in ptyrad_core's conventions). Used when the config takes
    the probe, object, positions or tilts from a file (``source: result``).

    :param registry: the result-reader :class:`~ptyrad_core.kernel.registry.Registry`.
    :return: ignored. All implementations are called (registration order).

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def ptyrad_sniff_loader(path: Path) -> str | None:
    """Name the loader that can read ``path``.

    Called when the config's ``data.loader`` is ``auto``, once per run, before loading.

    :param path: a :class:`pathlib.Path` to an existing file or folder.
    :return: a registered loader name, or ``None`` if this plugin cannot tell.
        Stops at first non-None result.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def ptyrad_sniff_result(path: Path) -> str | None:
    """Name the result reader that can read the previous reconstruction at ``path``.

    Called when a config takes arrays from a result file with ``reader: auto``.

    :param path: a :class:`pathlib.Path` to an existing file.
    :return: a registered result-reader name, or ``None``. Stops at first non-None result.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def ptyrad_translate_config(raw: dict[str, Any], path: Path) -> tuple[dict[str, Any], list[str]] | None:
    """Translate a config written for another program into a native ptyrad_core config.

    Called when a YAML file is loaded whose top level is not a native config (e.g. a PtyRAD
    params file), before validation; also by ``ptyrad-core convert``.

    :param raw: the parsed YAML (a dict).
    :param path: the :class:`pathlib.Path` of the file.
    :return: ``(native config dict, list of notes)`` if this plugin recognises the format, else
        ``None``. Stops at first non-None result. Options the translation cannot carry over must
        raise :class:`~ptyrad_core.kernel.errors.ConfigError` naming them, never be dropped silently.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


@hookspec
def ptyrad_on_run_start(run: Any) -> None:
    """Observe the start of a reconstruction.

    Called once, after the model, data and optimizer exist and before the first iteration. In a
    data-parallel run (torchrun) only rank 0 calls it.

    :param run: the :class:`~ptyrad_core.engine.loop.Reconstruction` (config, model, data,
        output folder, iteration counter).
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_on_iter_end(run: Any, iteration: int, metrics: dict[str, Any]) -> None:
    """Observe the end of an iteration.

    Called once per iteration, after all batches and constraints of that iteration. In a
    data-parallel run (torchrun) only rank 0 calls it.

    :param run: the :class:`~ptyrad_core.engine.loop.Reconstruction`.
    :param iteration: the iteration just finished (1-based).
    :param metrics: a dict with ``loss`` (total, float), ``loss_terms`` (``{name: float}``,
        weighted, averaged over batches) and ``time_s`` (wall time of the iteration); with held-out
        validation also ``heldout_loss`` (float, NaN on an iteration not scored) and, on an iteration
        whose state is compared with the held-out minimum (one that is not a new minimum, in a
        run that compares states by groups of positions), ``heldout_groups`` (``(16,)`` float64
        numpy array, docs/validation.md).
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_output_files(run: Any) -> list[tuple[Path, str, Any]] | None:
    """Name the files an observer will write into the output folder, to be checked before any data
    are read (docs/reliability.md): never a file the run reads; an existing file only when it is a
    previous output of its kind, or with ``--overwrite``. Called on rank 0 when the folder is
    claimed, when the run starts, and by ``validate``; files named only later are not listed.

    :param run: ``output_dir`` and ``config`` are set (in ``validate``, the only attributes).
    :return: ``(path, kind, is_previous_output)``: ``kind`` for messages; ``is_previous_output(path)``
        recognises a file the observer wrote before (by its mark).

    .. versionadded:: 0.2
    """


@hookspec
def ptyrad_on_save(run: Any, path: Path, iteration: int) -> None:
    """Observe that a result file was written.

    Called after each atomic write of the result file (every ``output.save_every``
    iterations and at the end). Only rank 0 writes the file and calls it.

    :param run: the :class:`~ptyrad_core.engine.loop.Reconstruction`.
    :param path: the :class:`pathlib.Path` of the result file.
    :param iteration: the iteration the file holds.
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_on_run_end(run: Any) -> None:
    """Observe the end of a reconstruction.

    Called once after the last iteration and the final save. In a data-parallel run (torchrun) only
    rank 0 calls it.

    :param run: the :class:`~ptyrad_core.engine.loop.Reconstruction`.
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """


@hookspec
def ptyrad_on_exception(run: Any, exc: BaseException) -> None:
    """Observe an exception that ends a reconstruction.

    Called once when an exception (including ``KeyboardInterrupt``) leaves the optimizer loop,
    before it propagates. In a data-parallel run (torchrun) only rank 0 calls it.

    :param run: the :class:`~ptyrad_core.engine.loop.Reconstruction`.
    :param exc: the exception.
    :return: ignored. Return value ignored.

    .. versionadded:: 0.1
    """

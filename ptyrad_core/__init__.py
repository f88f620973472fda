"""ptyrad_core: plugin-based multislice electron ptychography by automatic differentiation."""

from ptyrad_core.kernel import __version__  # defined in the kernel, so the layers need not import the top
from ptyrad_core.kernel.hookspecs import hookimpl  # kept here for plugins written before ptyrad_core.plugin

__all__ = ["__version__", "hookimpl", "load_result", "run"]


def run(
    config_or_path,
    overrides: list[str] | None = None,
    quiet: bool = True,
    *,
    resume=None,
    overwrite: bool = False,
):
    """Run a reconstruction from a YAML path, a config dict or a :class:`~ptyrad_core.kernel.config.Config`.

    :param overrides: ``--set`` style ``"dotted.key=value"`` strings, applied to a path or a dict.
    :param resume: a result file to continue from (``--resume``).
    :param overwrite: replace a result already in the output folder (``--overwrite``).
    :return: the finished :class:`~ptyrad_core.engine.loop.Reconstruction` (model, history, result path).
    """
    from ptyrad_core.engine.loop import run as _run

    return _run(config_or_path, overrides, quiet, resume=resume, overwrite=overwrite)


def load_result(path):
    """Read a ``result.h5`` (or the output folder holding one) into a typed
    :class:`~ptyrad_core.apps.result_view.Result`: object amplitude / phase per mode and slice, probe
    modes and powers, nominal and refined positions, tilts, loss history per term, config,
    iteration, and ``plot_phase()`` / ``plot_probe()`` / ``plot_loss()`` / ... returning
    matplotlib figures.
    """
    from ptyrad_core.apps.result_view import load_result as _load_result

    return _load_result(path)

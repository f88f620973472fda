"""ptyrad_core: plugin-based multislice electron ptychography by automatic differentiation."""

from ptyrad_core.kernel import __version__  # defined in the kernel, so the layers need not import the top
from ptyrad_core.kernel.hookspecs import hookimpl  # kept here for plugins written before ptyrad_core.plugin

__all__ = ["__version__", "hookimpl", "load_result", "run"]


def __getattr__(name: str):
    # ``ptyrad_core.run`` is :func:`ptyrad_core.engine.loop.run`, imported on first use (torch is
    # heavy; ``import ptyrad_core`` for the version or hookimpl should not load it)
    if name == "run":
        from ptyrad_core.engine.loop import run

        return run
    raise AttributeError(f"module 'ptyrad_core' has no attribute {name!r}")


def load_result(path):
    """Read a ``result.h5`` (or the output folder holding one) into a typed
    :class:`~ptyrad_core.apps.result_view.Result`: object amplitude / phase per mode and slice, probe
    modes and powers, nominal and refined positions, tilts, loss history per term, config,
    iteration, and ``plot_phase()`` / ``plot_probe()`` / ``plot_loss()`` / ... returning
    matplotlib figures.
    """
    from ptyrad_core.apps.result_view import load_result as _load_result

    return _load_result(path)

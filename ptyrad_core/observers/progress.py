"""The console progress bar of a run, the core observer ``core.progress``.

Registered by :func:`~ptyrad_core.kernel.plugin_manager.get_plugin_manager` (module listed in
``DEFAULT_PLUGINS``); ``plugins.disable: [core.progress]`` turns it off. Nothing is shown when the
run is quiet (``quiet=True``, ``--quiet``, ranks other than 0). Writes to stderr, so a command's
standard output stays machine-readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ptyrad_core.kernel.hookspecs import hookimpl

#: the name this observer is registered under (and disabled by)
PLUGIN_NAME = "core.progress"


class ProgressObserver:
    """A rich progress bar: iteration, loss per term, held-out loss (``recon.validation``), time
    per iteration and ETA."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task = None

    @hookimpl
    def ptyrad_on_run_start(self, run):
        if run.quiet:
            return
        self.progress = Progress(
            TextColumn("[bold]iter"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(
            "recon", total=run.config.recon.iterations, completed=run.iteration, status="starting"
        )
        self.progress.start()

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        if self.progress is None:
            return
        terms = " ".join(f"{k}={v:.4g}" for k, v in metrics["loss_terms"].items())
        status = f"loss={metrics['loss']:.5g} ({terms})"
        held = metrics.get("heldout_loss")
        if held is not None and held == held:  # validation on and evaluated this iteration (not NaN)
            status += f" held-out={held:.5g}"
        status += f" {metrics['time_s']:.3f} s/iter"
        self.progress.update(self.task, completed=iteration, status=status)

    def _stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    @hookimpl
    def ptyrad_on_run_end(self, run):
        self._stop()

    @hookimpl
    def ptyrad_on_exception(self, run, exc):
        self._stop()


def make_plugin() -> ProgressObserver:
    """A fresh observer for one plugin manager (it holds the run's progress bar)."""
    return ProgressObserver()

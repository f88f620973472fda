"""``run.log`` in the output folder, the core observer ``core.logfile``.

Registered by :func:`~ptyrad_core.kernel.plugin_manager.get_plugin_manager` (module listed in
``DEFAULT_PLUGINS``); ``plugins.disable: [core.logfile]`` or ``output.log_file: false`` turns it
off. The log is appended to (a resumed run continues the same file): the settings at the start,
one line per iteration (loss per term, held-out loss, seconds per iteration), each save, the
peak memory at the end, and the error that stopped a run (into the file only: the console gets
it once, from the CLI).
"""

from __future__ import annotations

import logging

from ptyrad_core.kernel.hookspecs import hookimpl

log = logging.getLogger("ptyrad_core")

#: the name this observer is registered under (and disabled by)
PLUGIN_NAME = "core.logfile"


class LogFileObserver:
    """Writes ``run.log`` in the output folder: settings, one line per iteration, saves."""

    def __init__(self) -> None:
        self.handler: logging.Handler | None = None

    @hookimpl
    def ptyrad_output_files(self, run):
        # appended to, never replaced: any existing run.log may take more lines (a file the run
        # reads may not)
        if not run.config.output.log_file:
            return []
        return [(run.output_dir / "run.log", "run log", lambda path: True)]

    @hookimpl
    def ptyrad_on_run_start(self, run):
        if not run.config.output.log_file:
            return
        run.output_dir.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(run.output_dir / "run.log", mode="a")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self.handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        m = run.model
        log.info("run start: config %s, device %s", run.config.origin.source, run.device)
        if getattr(run, "resumed_from", None) is not None:
            log.info("resumed from %s at iteration %d", *run.resumed_from)
            for note in getattr(run, "resume_notes", []):
                log.info("%s", note)
        if getattr(run, "overwrite", False):
            log.info("--overwrite: the result in %s is replaced at the first save", run.output_dir)
        log.info(
            "data %s: %d patterns %s; object %s x %d slices x %d modes; probe %d modes; dx %.5g A",
            run.measurements.source,
            m.n_positions,
            m.window,
            m.object_shape,
            m.object_amplitude.shape[1],
            m.object_amplitude.shape[0],
            m.probe.shape[0],
            m.dx,
        )
        log.info("plugins: %s", ", ".join(f"{p['name']} ({p['source']})" for p in run.plugin_table()))

    @hookimpl
    def ptyrad_on_iter_end(self, run, iteration, metrics):
        if self.handler is None:
            return
        terms = ", ".join(f"{k}: {v:.6g}" for k, v in metrics["loss_terms"].items())
        held = metrics.get("heldout_loss")
        if held is not None and held == held:  # validation on and evaluated this iteration (not NaN)
            log.info(
                "iter %d: loss %.6g (%s), held-out %.6g in %.4f s",
                iteration,
                metrics["loss"],
                terms,
                held,
                metrics["time_s"],
            )
        else:
            log.info(
                "iter %d: loss %.6g (%s) in %.4f s", iteration, metrics["loss"], terms, metrics["time_s"]
            )

    @hookimpl
    def ptyrad_on_save(self, run, path, iteration):
        if self.handler is not None:
            log.info("saved %s at iteration %d", path, iteration)

    def _close(self):
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()
            self.handler = None

    @hookimpl
    def ptyrad_on_run_end(self, run):
        if self.handler is not None:
            peaks = ", ".join(f"{k} {v:.0f} MiB" for k, v in getattr(run, "peak_memory", {}).items())
            log.info("run end after %d iterations; peak memory: %s", run.iteration, peaks or "not measured")
        self._close()

    @hookimpl
    def ptyrad_on_exception(self, run, exc):
        if self.handler is not None:  # into run.log only: the console gets the error once, from the CLI
            record = log.makeRecord(
                log.name,
                logging.ERROR,
                __file__,
                0,
                "run stopped at iteration %d: %s: %s",
                (run.iteration, type(exc).__name__, exc),
                None,
            )
            self.handler.handle(record)
        self._close()


def make_plugin() -> LogFileObserver:
    """A fresh observer for one plugin manager (it holds the run's log handler)."""
    return LogFileObserver()

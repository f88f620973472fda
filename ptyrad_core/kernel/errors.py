"""Exceptions that reach the user.

Every error raised for bad input is a :class:`PtyradError` whose message names the file, the
config key (as a dotted YAML path) or the array, and says what was expected. The CLI prints the
message without a traceback; library users can catch the class.
"""

from __future__ import annotations


class PtyradError(Exception):
    """Base class of every error ptyrad_core raises on purpose."""


class ConfigError(PtyradError):
    """The config (a YAML file or a dict) is malformed, has unknown keys or bad values."""


class DataError(PtyradError):
    """A data file is missing, unreadable, or holds arrays of the wrong shape or values."""


class PluginError(PtyradError):
    """A plugin failed to load, is unknown, or raised while it ran."""


class PluginLoadError(PluginError):
    """A plugin module could not be imported or registered.

    Discovery records it instead of failing; it becomes fatal only when the config selects
    something only that plugin could have provided.
    """

    def __init__(self, name: str, source: str, exc: BaseException):
        self.name = name
        self.source = source
        self.exc = exc
        super().__init__(f"plugin {name!r} ({source}) failed to load: {one_line(exc)}")


class NonFiniteLossError(PtyradError):
    """The loss became NaN or infinite; the model was not updated with it."""


class RunInterrupted(PtyradError):
    """SIGINT or SIGTERM stopped a run; a checkpoint of the last completed iteration was written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class DistributedError(PtyradError):
    """A data-parallel run lost a process: a collective failed or timed out (``recon.dist_timeout_s``)."""


class OutputError(PtyradError):
    """An output cannot be written safely: the folder is not writable, a file would be clobbered, or
    another process holds the output folder."""


class NonFiniteStateError(PtyradError):
    """A parameter became NaN or infinite after an optimizer step or a constraint; the last finite
    state was restored."""


class MemoryBudgetError(PtyradError):
    """The estimated peak memory of a run exceeds the memory available to it (host or device);
    nothing large was allocated (``ptyrad_core.setup.memory``)."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for a library's text (h5py's spans lines) inside an error of ours."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"

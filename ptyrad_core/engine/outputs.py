"""Where results go, checked before the work: writable folders, no clobbering, one writer per folder.

Every command that writes files goes through this module, so the rules are the same everywhere
(docs/reliability.md):

- :func:`prepare_folder` creates an output folder and writes and removes a probe file in it, so
  that a read-only location or a path that is a file is an error at second zero, not after the
  last iteration.
- :func:`check_new_file` is the rule for a command that writes one file (``convert -o``,
  ``simulate -o``, a preprocessing export): never a file the command reads, never a folder, and
  an existing file only when it is a previous output of the same kind or ``--overwrite`` was
  given.
- :class:`FolderLock` marks a folder as in use by one run or tune study: a lock file with the
  owner's PID, host and command, created atomically (``O_CREAT | O_EXCL``). A second writer
  refuses; a lock whose process is gone (same host, PID not alive) is stale and taken over
  with a message.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
import weakref
from pathlib import Path

from ptyrad_core.kernel.errors import OutputError

# the one-file rule lives in setup (validate's dry run judges it before a run exists); re-exported here
from ptyrad_core.setup.readonly import judge_new_file, same_file  # noqa: F401

log = logging.getLogger("ptyrad_core")

LOCK_NAME = ".ptyrad-core.lock"


def prepare_folder(folder: Path | str, what: str) -> Path:
    """Create ``folder`` (with parents) and prove it writable by writing and removing a probe file.

    :param what: how the user names it in the config or on the command line (``output.dir``).
    :raises OutputError: one line naming ``what``, the path and the cause.
    """
    folder = Path(folder)
    for parent in (folder, *folder.parents):  # the nearest existing part must be a folder
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise OutputError(f"{what}: {str(parent)!r} is a file, not a folder; choose another {what}")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{what}: cannot create the folder {str(folder)!r}: {exc.strerror or exc}"
        ) from None
    probe = folder / f".ptyrad-core-write-test-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"ptyrad_core write test\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(
            f"{what}: the folder {str(folder)!r} is not writable: {exc.strerror or exc}"
        ) from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return folder


def check_new_file(path: Path | str, what: str, **rule) -> Path:
    """:func:`judge_new_file`, then create the folder ``path`` goes into and prove it writable
    (:func:`prepare_folder`): check ``path`` before the work that produces it."""
    path = Path(path)
    judge_new_file(path, what, **rule)
    prepare_folder(path.parent if str(path.parent) else Path("."), what)
    return path


def check_observer_files(pm, run, config, overwrite: bool = False) -> None:
    """Judge every file the observers will write into the output folder (the
    ``ptyrad_output_files`` hook; ``run`` needs ``output_dir`` and ``config`` only), without
    touching anything: none may be a file the run reads (even with ``--overwrite``); an existing
    one is replaced only when it is a previous output of its kind, or with ``overwrite``.

    :raises OutputError: one line naming the file, and the key of the input it would overwrite.
    """
    from ptyrad_core.setup.readonly import input_key, named_config_inputs

    named = named_config_inputs(config)
    for files in pm.hook.ptyrad_output_files(run=run):
        for path, kind, previous in files or []:
            key = input_key(path, named)
            if key is not None:
                raise OutputError(
                    f"output: the {kind} {str(path)!r} would be written onto {key}, a file this run "
                    "reads; it is never written to, even with --overwrite: set another output.dir"
                )
            judge_new_file(path, "output.dir", overwrite=overwrite, is_previous_output=previous, kind=kind)


# -- one writer per folder -------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read_lock(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class FolderLock:
    """An exclusive lock on an output folder, held by one process (``with`` or ``acquire`` / ``release``).

    :param folder: the output folder; the lock file is ``folder/.ptyrad-core.lock``.
    :param purpose: what holds it (``run``, ``tune study 'sto'``), written into the lock file.
    :param what: the config key that names the folder, for messages (``output.dir``).

    The lock is released by :meth:`release`, at garbage collection and at interpreter exit; a
    lock left by a process that died (SIGKILL, power loss) is recognised as stale when its PID
    no longer runs on this host, and taken over with a warning. A lock from another host cannot
    be checked: the message says which host holds it and how to remove it.
    """

    def __init__(self, folder: Path | str, purpose: str, what: str = "output.dir"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.what = what
        self.held = False
        self.took_over: dict | None = None
        self._finalizer = None

    def _info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "command": " ".join(sys.argv),
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }

    def acquire(self) -> FolderLock:
        if self.held:
            return self
        prepare_folder(self.folder, self.what)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _read_lock(self.path)
                if self._stale(owner):
                    log.warning(
                        "%s: took over the stale lock of process %s on %s (%s), which no longer runs",
                        self.folder,
                        owner.get("pid", "?"),
                        owner.get("host", "?"),
                        owner.get("purpose", "?"),
                    )
                    self.took_over = owner
                    _remove_leftovers(self.folder, owner.get("pid"))
                    try:
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                raise OutputError(self._busy_message(owner)) from None
            except OSError as exc:
                raise OutputError(
                    f"{self.what}: cannot create the lock file {str(self.path)!r}: {exc.strerror or exc}"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._info(), fh)
            self.held = True
            self._finalizer = weakref.finalize(self, _remove_lock, self.path, os.getpid())
            return self
        raise OutputError(
            f"{self.what}: could not take the lock {str(self.path)!r} (other processes keep taking it)"
        )

    def check(self) -> None:
        """Raise :class:`OutputError` if a live process (or another lock object of this one)
        holds the folder; a stale lock is left for :meth:`acquire` to take over."""
        if self.held or not self.path.exists():
            return
        owner = _read_lock(self.path)
        if not self._stale(owner) or owner.get("pid") == os.getpid():
            raise OutputError(self._busy_message(owner))

    def _stale(self, owner: dict) -> bool:
        if not owner:  # empty or unreadable: a writer died between create and write, or garbage
            try:  # give a live writer a moment: only a lock file older than a few seconds is stale
                import time

                return time.time() - self.path.stat().st_mtime > 5
            except OSError:
                return True
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        return isinstance(pid, int) and pid != os.getpid() and not _pid_alive(pid)

    def _busy_message(self, owner: dict) -> str:
        who = f"process {owner.get('pid', '?')} on {owner.get('host', '?')}"
        what = owner.get("purpose", "another run")
        since = f" since {owner['started']}" if owner.get("started") else ""
        if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            who = "this process (another run object in it)"
        advice = "wait for it to finish or choose another " + self.what
        if owner.get("host") not in (None, socket.gethostname()):
            advice += f"; if that process is gone, delete {self.path}"
        return f"{self.what}: {str(self.folder)!r} is in use by {what} ({who}{since}); {advice}"

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self.held = False

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _remove_leftovers(folder: Path, pid) -> None:
    """Remove the temporary files (``.NAME.tmp-PID``: a write in progress, renamed when complete)
    that the dead lock holder ``pid`` left in ``folder`` (a kill -9 during a save); each can be as
    large as a result."""
    if not isinstance(pid, int) or pid <= 0:
        return
    for leftover in Path(folder).glob(f".*.tmp-{pid}"):
        try:
            leftover.unlink()
            log.warning(
                "%s: removed %s, a write the stale lock's process did not finish", folder, leftover.name
            )
        except OSError:
            pass


def _remove_lock(path: Path, pid: int) -> None:
    """Remove the lock file if this process still owns it (never another process's lock)."""
    owner = _read_lock(path)
    if owner.get("pid") == pid and owner.get("host") == socket.gethostname():
        try:
            path.unlink()
        except OSError:
            pass

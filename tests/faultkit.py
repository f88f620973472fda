"""Fault injection: the helpers every ``tests/faults/test_faults_*.py`` module uses (``import faultkit``;
``tests/conftest.py`` makes them fixtures).

Each fault case asserts what docs/reliability.md promises: the exit code, no traceback on
stderr, a message that names the file / key / array, every input file byte-for-byte unchanged
(SHA-256), previous results unchanged, and no non-finite value in any array written.

Most cases run the CLI in this process (:func:`run_cli`, the ``cli`` fixture); ``run_cli(...,
subprocess=True)`` is the opt-in child process of the smoke tests, and :func:`cli_subprocess`
(a ``Popen``) is used where a signal or a second concurrent process is the point.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import subprocess
import subprocess as _subprocess  # run_cli's keyword argument is named subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # shown by pytest when an assertion on it fails
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_cli(
    *args, subprocess: bool = False, cwd=None, env: dict | None = None, timeout: float = 300
) -> Outcome:
    """``ptyrad-core ARGS``: stdout, stderr and the exit code.

    In this process by default (``cli.main(argv)``; argparse's ``SystemExit`` is caught and its
    code returned). ``subprocess=True`` runs ``python -m ptyrad_core.apps.cli ARGS`` as a child
    instead, for the one smoke test per command and wherever a fresh interpreter is the point
    (entry points installed after this process started, the console script's own exit path).
    ``cwd`` is the working folder in either mode; ``env`` (extra variables) needs a subprocess.
    """
    if subprocess:
        proc = _subprocess.run(
            [sys.executable, "-m", "ptyrad_core.apps.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=timeout,
            env=dict(os.environ, **(env or {})),
        )
        return Outcome(proc.returncode, proc.stdout, proc.stderr)
    if env:
        raise ValueError("run_cli: env= needs subprocess=True (this process's environment is shared)")
    from ptyrad_core.apps import cli

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    for h in root.handlers[:]:  # main() adds a stderr handler per call
        if h not in handlers:
            root.removeHandler(h)
    return Outcome(int(code or 0), out.getvalue(), err.getvalue())


def cli_subprocess(
    *args, timeout: float = 120, env: dict | None = None, cwd=None, **popen
) -> subprocess.Popen:
    """``ptyrad-core ARGS`` as a child process (for signals and concurrent processes)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "ptyrad_core.apps.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
        **popen,
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Frozen:
    """SHA-256 (and existence) of files and of every file under folders, to compare later."""

    def __init__(self, *paths):
        self.paths = [Path(p) for p in paths]
        self.before = self._digest()

    def _digest(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for p in self.paths:
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    if f.is_file() and not f.name.startswith(".ptyrad-core"):
                        out[str(f)] = sha256(f)
            else:
                out[str(p)] = sha256(p) if p.is_file() else None
        return out

    def assert_unchanged(self) -> None:
        after = self._digest()
        changed = [k for k in set(self.before) | set(after) if self.before.get(k) != after.get(k)]
        assert not changed, f"changed, added or removed: {sorted(changed)}"


def nonfinite_arrays(folder: Path) -> list[str]:
    """``file:dataset`` of every HDF5 dataset under ``folder`` holding NaN or Inf."""
    bad = []
    for f in sorted(Path(folder).rglob("*.h5")):
        try:
            with h5py.File(f, "r") as h:

                def visit(name, obj, f=f):
                    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fc":
                        if not np.all(np.isfinite(obj[()])):
                            bad.append(f"{f}:{name}")

                h.visititems(visit)
        except OSError:
            continue
    return bad


def assert_clean_error(outcome: Outcome, *names: str, code: int = 2) -> None:
    """A failure as the user must see it: exit ``code``, no traceback, a message naming ``names``."""
    assert outcome.code == code, str(outcome)
    assert "Traceback" not in outcome.err, str(outcome)
    for name in names:
        assert name in outcome.err, f"{name!r} not named\n{outcome}"

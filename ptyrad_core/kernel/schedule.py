"""When something runs: the one iteration-window rule of parameters and constraints.

A :class:`Schedule` is active at iterations ``start_iter, start_iter + step, ...`` up to, not
including, ``end_iter`` (iterations count from 1). ``start_iter: null`` means never and
``end_iter: null`` never stops. The ``update.<parameter>`` section (with ``lr``) and each
``constraints[i]`` entry (with ``step``) are read into this type; their config keys are
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """The iterations at which a parameter is optimized or a constraint runs.

    :ivar start_iter: first iteration (1-based), or ``None``: never.
    :ivar end_iter: the iteration from which it stops (exclusive), or ``None``: never stops.
    :ivar step: every ``step`` iterations from ``start_iter`` (constraints; parameters use 1).
    """

    start_iter: int | None = 1
    end_iter: int | None = None
    step: int = 1

    def runs_at(self, iteration: int) -> bool:
        """Whether it is active at ``iteration``."""
        if self.start_iter is None or iteration < self.start_iter:
            return False
        if self.end_iter is not None and iteration >= self.end_iter:
            return False
        return (iteration - self.start_iter) % self.step == 0

"""When something runs: the one iteration-window rule of parameters (``update.<parameter>``,
with ``lr``) and constraints (``constraints[i]``, with ``step``); their config keys are unchanged."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Active at iterations ``start_iter, start_iter + step, ...`` (1-based) up to, not including,
    ``end_iter``. ``start_iter`` ``None``: never; ``end_iter`` ``None``: never stops."""

    start_iter: int | None = 1
    end_iter: int | None = None
    step: int = 1

    def runs_at(self, iteration: int) -> bool:
        if self.start_iter is None or iteration < self.start_iter:
            return False
        if self.end_iter is not None and iteration >= self.end_iter:
            return False
        return (iteration - self.start_iter) % self.step == 0

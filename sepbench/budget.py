"""A wall-time budget spread over the cases left: the stopping rule `run` and `ab` share."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field


@dataclass
class Budget:
    """Seconds for the cases left. A case gets an equal share of what is left when it starts; a case that
    is done sooner leaves its time to the ones after it."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return max(self.seconds - (time.monotonic() - self.started), 0.0)

    def allowance(self, cases_left: int) -> float:
        return self.left() / max(cases_left, 1)

    def share(self, weight: float, weights_left: float) -> float:
        """A case's part of what is left when it starts, by its weight among the cases left (its own
        included): `allowance` where every case weighs the same."""
        return self.left() * weight / max(weights_left, 1e-12)


def minutes_up(seconds: float) -> str:
    """Seconds as minutes rounded up to a tenth: a budget that is surely enough, as --budget takes it."""
    return f"{math.ceil(seconds / 6) / 10:g}"

"""Deterministic assignment of users to an experiment's arms.

The arm of a unit (the user id; the event id when the request names no user) is a pure function of the
experiment's salt and the unit: u = first 8 bytes of SHA-256(salt + "\\x1f" + unit) as a big-endian
integer / 2^64, uniform in [0, 1); the arm is the first whose cumulative share exceeds u. Same salt, same
unit, same shares: same arm in every worker, after every restart, for the experiment's life. A new salt
(a new experiment) reshuffles users independently of the previous experiment.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from dataclasses import dataclass

from recommender.settings.experiments import Experiment

_SCALE = float(2**64)


def unit_position(salt: str, unit: str) -> float:
    """The unit's uniform position in [0, 1) for this salt."""
    digest = hashlib.sha256(f"{salt}\x1f{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


@dataclass(frozen=True)
class Assigner:
    """Arm lookup for one experiment: ``assigner(unit)`` -> arm name."""

    salt: str
    names: tuple[str, ...]
    bounds: tuple[float, ...]  # cumulative shares, the last forced to 1

    @classmethod
    def of(cls, experiment: Experiment) -> Assigner:
        names = tuple(arm.name for arm in experiment.arms)
        bounds = list(itertools.accumulate(arm.share for arm in experiment.arms))
        bounds[-1] = 1.0  # shares sum to 1 within rounding: nobody may fall off the end
        return cls(experiment.assignment_salt, names, tuple(bounds))

    def __call__(self, unit: str) -> str:
        index = bisect.bisect_right(self.bounds, unit_position(self.salt, unit))
        return self.names[min(index, len(self.names) - 1)]


def assignment_unit(user_id: str | None, event_id: str) -> str:
    """What is hashed: the user id, or the event id when the request names no user."""
    return f"u:{user_id}" if user_id else f"e:{event_id}"

"""``Outcome``: one logged outcome given as plain values (``Policy.learn_one``), checked once at that boundary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recommender.errors import PolicyError


@dataclass(frozen=True)
class Outcome:
    """Per slot s: candidate ``chosen[s]`` was shown with probability ``probabilities[s]`` in (0, 1] and earned
    ``rewards[s]`` (finite). Slots: 1 for a ``cb`` policy, 1 <= S <= K distinct indices for ``ccb``."""

    chosen: tuple[int, ...]
    probabilities: tuple[float, ...]
    rewards: tuple[float, ...]

    @classmethod
    def of(
        cls,
        chosen: int | Sequence[int],
        probability: float | Sequence[float],
        reward: float | Sequence[float],
        *,
        k: int,
        multi_slot: bool,
    ) -> Outcome:
        """The outcome of single values (one slot) or per-slot sequences over K candidates; PolicyError naming
        the field when they do not fit."""
        chosen_t = _per_slot("chosen", chosen)
        probability_t = _per_slot("probability", probability)
        reward_t = _per_slot("reward", reward)
        slots = len(chosen_t)
        if not multi_slot and slots != 1:
            raise PolicyError(f"{slots} slots need a multi-slot policy (policy.mode: ccb); give one chosen index")
        if len(probability_t) != slots or len(reward_t) != slots:
            raise PolicyError(f"one chosen index, probability and reward per slot: got {slots}, "
                              f"{len(probability_t)} and {len(reward_t)}")  # fmt: skip
        if slots > k:
            raise PolicyError(f"{slots} slots but only {k} candidates")
        for c in chosen_t:
            if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < k:
                raise PolicyError(f"chosen must be an index in [0, {k}), got {c!r}")
        if len(set(chosen_t)) != slots:
            raise PolicyError(f"chosen indices must differ between slots, got {list(chosen_t)}")
        for p in probability_t:
            if not _is_number(p) or not 0.0 < float(p) <= 1.0:
                raise PolicyError(f"probability must be a number in (0, 1], got {p!r}")
        for r in reward_t:
            if not _is_number(r) or not math.isfinite(float(r)):
                raise PolicyError(f"reward must be a finite number, got {r!r}")
        return cls(tuple(map(int, chosen_t)), tuple(map(float, probability_t)), tuple(map(float, reward_t)))


def _per_slot(name: str, value: object) -> tuple[object, ...]:
    """``value`` as a tuple of per-slot values: a single value is one slot."""
    if isinstance(value, str | bytes):
        raise PolicyError(f"{name} must be a number or a sequence of numbers, got {value!r}")
    if isinstance(value, Sequence | np.ndarray):
        if len(value) == 0:
            raise PolicyError(f"{name} must not be empty")
        return tuple(value)
    return (value,)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)

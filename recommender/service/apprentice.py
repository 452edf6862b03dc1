"""Apprentice mode: serve the baseline, and measure how often the model would have chosen the same.

The baseline (``trainer.apprentice_baseline: first``) is the first candidate the storefront sends, i.e. what
the storefront would show without us; in multi-slot pages slot s gets the (s+1)-th candidate. It is
deterministic, so it is logged with probability 1 for the item shown: truthful, and learnable (the trainer
learns what the baseline's choices earn), but offline evaluation cannot estimate another policy from such
a log (inverse propensity weights are 0 off the baseline's choice).

Agreement: for each apprentice decision the model's pmf is computed (no sampling, no side effects) and the
decision *agrees* when the baseline's item has strictly the highest probability, i.e. it is the model's
greedy choice. A model with no preference yet (all probabilities equal) does not agree with anything.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from recommender.records import Decision
from recommender.service.inputs import DecisionInput

BASELINE_VERSION = "baseline"


def baseline_decision(request: DecisionInput, *, degraded: bool, baseline: str = "first",
                      exploration: Mapping[str, object] | None = None) -> Decision:  # fmt: skip
    """The baseline's decision: slot s shows candidate s with probability 1; the ranking is the caller's
    order (the baseline's own). ``baseline`` is ``trainer.apprentice_baseline``; ``exploration``: how it is
    logged (default: the apprentice mode's baseline; an experiment's baseline arm gives its own)."""
    if baseline != "first":  # the config allows only "first"; a new baseline must be added here
        raise ValueError(f"unknown apprentice baseline {baseline!r}")
    k = len(request.candidate_ids)
    n_slots = request.slots or 1
    pmfs = tuple(tuple(1.0 if i == s else 0.0 for i in range(k)) for s in range(n_slots))
    return request.decision(
        pmfs=pmfs,
        chosen=tuple(range(n_slots)),
        ranking=tuple(range(k)),
        model_version=BASELINE_VERSION,
        exploration=exploration or {"algorithm": "baseline", "baseline": baseline, "mode": "apprentice"},
        degraded=degraded,
    )


def agrees(pmf: Sequence[float], index: int) -> bool:
    """True when candidate ``index`` has strictly the highest probability (the model's greedy choice)."""
    top = pmf[index]
    return all(p < top for i, p in enumerate(pmf) if i != index)


class AgreementTracker:
    """Agreement of the model with the baseline over the last ``window`` apprentice decisions (thread-safe)."""

    def __init__(self, window: int) -> None:
        self._recent: deque[bool] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.decisions = 0
        self.agreed = 0

    def resize(self, window: int) -> None:
        with self._lock:
            if window != self._recent.maxlen:
                self._recent = deque(self._recent, maxlen=window)

    def record(self, agreed: bool) -> float:
        """Record one decision; returns the rate over the window."""
        with self._lock:
            self._recent.append(agreed)
            self.decisions += 1
            self.agreed += int(agreed)
            return sum(self._recent) / len(self._recent)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            recent = len(self._recent)
            return {
                "window": self._recent.maxlen,
                "recent_decisions": recent,
                "rate": sum(self._recent) / recent if recent else None,
                "decisions": self.decisions,
                "agreed": self.agreed,
            }

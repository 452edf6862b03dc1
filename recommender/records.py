"""The records that flow through the system: Decision, Reward, JoinedEvent.

Frozen dataclasses validated when built. A ``FeatureRow`` is a read-only mapping from feature name to
value (float, str, list[str] or list[float]), exactly as the feature store returned it or the request
sent it.

Multi-slot pages: a decision has one pmf per slot. ``pmfs[s]`` is a distribution over *all* candidates in
``candidate_ids`` order (items already placed in earlier slots and excluded items get probability 0);
``chosen[s]`` is the index of the item shown in slot ``s``. A single-slot decision has one pmf and one
chosen index; ``pmf``, ``chosen_index`` and ``probability`` are shortcuts for slot 0.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from typing import Any

from recommender.errors import RecordError

FeatureRow = Mapping[str, Any]

# Tolerance on sum(pmf) == 1: VW computes probabilities in float32.
PMF_TOLERANCE = 1e-4
MAX_EVENT_ID_LENGTH = 128


def new_event_id() -> str:
    """A fresh random event id (uuid4, 36 characters)."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


def _require_utc(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
        raise RecordError(f"{name} must be a timezone-aware UTC datetime, got {value!r}")


def _check_event_id(event_id: str) -> None:
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_LENGTH:
        raise RecordError(f"event_id must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} characters")


@dataclass(frozen=True)
class Decision:
    """One ranking decision, with everything needed to learn from it and to evaluate it offline.

    Invariants checked at construction: candidate ids unique and aligned with candidate_features; one
    pmf per slot, each of length K = len(candidate_ids), entries in [0, 1], summing to 1 within
    PMF_TOLERANCE; chosen[s] has positive probability in pmfs[s]; no item chosen twice; ranking is a
    permutation of the non-excluded candidate indices starting with chosen[0].

    ``inputs_checked=True`` is for producers that validated the inputs already (``Policy.decide`` with
    ``inputs_checked=True`` and the scoring service's fallbacks, after its HTTP edge): the event id,
    timestamp and candidate checks are not repeated. The outcome (pmfs, chosen, ranking) is checked whoever
    builds the record.
    """

    event_id: str
    timestamp: datetime
    user_id: str | None
    user_features: FeatureRow
    context: FeatureRow
    candidate_ids: tuple[str, ...]
    candidate_features: tuple[FeatureRow, ...]
    pmfs: tuple[tuple[float, ...], ...]
    chosen: tuple[int, ...]
    ranking: tuple[int, ...]
    model_version: str
    exploration: Mapping[str, Any] = field(default_factory=dict)
    degraded: bool = False
    deferred: bool = False
    # The running experiment and the arm that decided (``recommender.experiments``); None outside experiments.
    experiment: str | None = None
    arm: str | None = None
    # The page's names of its slots, in slot order (Personalizer's multi-slot slot ids, which its rewards name);
    # () when the page names none (slots are known by position).
    slot_names: tuple[str, ...] = ()
    inputs_checked: InitVar[bool] = False

    def __post_init__(self, inputs_checked: bool) -> None:
        k = len(self.candidate_ids)
        if not inputs_checked:
            _check_event_id(self.event_id)
            _require_utc("timestamp", self.timestamp)
            if k == 0:
                raise RecordError("candidate_ids must not be empty")
            if len(set(self.candidate_ids)) != k:
                raise RecordError("candidate_ids must be unique")
            if len(self.candidate_features) != k:
                raise RecordError(f"candidate_features has {len(self.candidate_features)} rows for {k} candidates")
        if not self.pmfs or len(self.pmfs) != len(self.chosen):
            raise RecordError(f"need one pmf per slot: {len(self.pmfs)} pmfs, {len(self.chosen)} chosen")
        for slot, (pmf, chosen) in enumerate(zip(self.pmfs, self.chosen, strict=True)):
            if len(pmf) != k:
                raise RecordError(f"pmfs[{slot}] has {len(pmf)} entries for {k} candidates")
            # Built-in min/max/fsum rather than a per-entry generator: this runs for every decision served.
            total = math.fsum(pmf)  # NaN if any entry is NaN
            if math.isnan(total) or min(pmf) < 0.0 or max(pmf) > 1.0:
                raise RecordError(f"pmfs[{slot}] has a probability outside [0, 1]")
            if abs(total - 1.0) > PMF_TOLERANCE:
                raise RecordError(f"pmfs[{slot}] sums to {total}, not 1")
            if not 0 <= chosen < k or pmf[chosen] <= 0.0:
                raise RecordError(f"chosen[{slot}]={chosen} is not a candidate with positive probability")
        if len(set(self.chosen)) != len(self.chosen):
            raise RecordError("an item is chosen for two slots")
        if self.slot_names and (len(self.slot_names) != len(self.chosen) or len(set(self.slot_names)) != len(
                self.slot_names) or not all(isinstance(n, str) and n for n in self.slot_names)):  # fmt: skip
            raise RecordError(f"slot_names must be {len(self.chosen)} distinct non-empty strings, one per slot")
        if not self.ranking or self.ranking[0] != self.chosen[0]:
            raise RecordError("ranking must start with the chosen item")
        if len(set(self.ranking)) != len(self.ranking) or min(self.ranking) < 0 or max(self.ranking) >= k:
            raise RecordError("ranking must list distinct candidate indices")

    @property
    def pmf(self) -> tuple[float, ...]:
        """The slot-0 distribution over candidates."""
        return self.pmfs[0]

    @property
    def chosen_index(self) -> int:
        return self.chosen[0]

    @property
    def chosen_id(self) -> str:
        return self.candidate_ids[self.chosen[0]]

    @property
    def probability(self) -> float:
        """Probability with which the slot-0 item was drawn (the propensity used by OPE)."""
        return self.pmfs[0][self.chosen[0]]

    @property
    def num_slots(self) -> int:
        return len(self.chosen)


@dataclass(frozen=True)
class Reward:
    """A reward reported for a decision's slot (slot 0 for single-slot pages).

    ``reward_id``: the client's id of this report (optional); a second report with the same id for the same
    event is a retry of the first, not a second reward (``EventBus.add_reward``).
    """

    event_id: str
    value: float
    received_at: datetime
    slot: int = 0
    reward_id: str | None = None

    def __post_init__(self) -> None:
        _check_event_id(self.event_id)
        _require_utc("received_at", self.received_at)
        if not isinstance(self.value, int | float) or not math.isfinite(self.value):
            raise RecordError(f"reward value must be a finite number, got {self.value!r}")
        if not isinstance(self.slot, int) or self.slot < 0:
            raise RecordError(f"slot must be a non-negative integer, got {self.slot!r}")
        if self.reward_id is not None and (
            not isinstance(self.reward_id, str) or not self.reward_id or len(self.reward_id) > MAX_EVENT_ID_LENGTH
        ):
            raise RecordError(f"reward_id must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} characters")


@dataclass(frozen=True)
class JoinedEvent:
    """A decision with its aggregated reward per slot.

    ``rewards[s]`` is the aggregated reward of slot ``s``; ``reward_is_default[s]`` is True when no reward
    arrived for that slot within the wait time and the configured default was used.
    """

    decision: Decision
    rewards: tuple[float, ...]
    reward_is_default: tuple[bool, ...]
    joined_at: datetime

    def __post_init__(self) -> None:
        _require_utc("joined_at", self.joined_at)
        n = self.decision.num_slots
        if len(self.rewards) != n or len(self.reward_is_default) != n:
            raise RecordError(f"need one reward and one default flag per slot ({n} slots)")
        if any(not math.isfinite(r) for r in self.rewards):
            raise RecordError("rewards must be finite")

    @property
    def reward(self) -> float:
        """The slot-0 reward."""
        return self.rewards[0]

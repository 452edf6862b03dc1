"""The event bus: where a decision waits for its rewards until the joiner closes its window.

Two backends behind one interface (``EventBus``):

- ``MemoryEventBus`` (``recommender.events.memory_bus``): in-process, the embedded default (one worker
  process; ends with it, so a stopping service joins its open decisions early).
- ``RedisEventBus`` (``recommender.events.redis_bus``): Redis Streams, shared by every worker on every host,
  over ``bus.shards`` shards on one Redis or a Redis Cluster; its key layout is written down in that module.
  Its ``take_new`` and ``take_stale`` keep the order decisions were put in within a shard, not across shards.

``recommender.events.factory.open_bus`` opens the one the configuration names.

Serving side: ``put_decision`` (on /v1/score), ``add_reward``, ``activate``. Joiner side: ``take_new``,
``take_stale``, ``begin_batch``, ``close``, ``set_batch_files``, ``commit_batch``, ``open_batches``,
``adopt_batch`` (the joiner's protocol is described in ``recommender.events.joiner``).

Every call on the serving side gives up after ``bus.timeout_ms`` and raises ``BusUnavailable``. A reward
is accepted only while its decision's window is open; ``add_reward`` returning ACCEPTED means Redis has
acknowledged the write.

Remembered for ``recovery_seconds`` after a decision is joined (``commit_batch``): its event id (a new
decision with that id is refused like a pending duplicate, so one id never makes two log rows) and the
reward ids of its rewards (a retried reward is answered DUPLICATE, as it was while pending).
A decision a joiner has taken (``take_new``, ``take_stale``) does not expire until it is committed: only a
decision no joiner has taken expires, ``wait_seconds + recovery_seconds`` after it was put.

Early close (``Completion``, optional). Under aggregation ``first`` a slot's joined reward is fixed by its first
reward, and under ``max`` by a reward at the top of ``join.reward_range``: once every slot of a decision has
such a reward, nothing that can still arrive changes its joined event. The bus records that as the rewards
arrive (``add_reward``) and ``complete`` tells a joiner which of the decisions it holds are complete, so that it
joins them without waiting for the window's end. A deferred decision is complete only once activated. A
reward for a decision closed early, arriving within its window, is answered ACCEPTED and stored nowhere: it
could not have changed the joined event (the log is what it would have been at the window's end).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recommender.errors import RecommenderError
from recommender.records import Decision, Reward


class BusError(RecommenderError):
    """The event bus refused an operation."""


class BusUnavailable(BusError, ConnectionError):
    """The bus backend (Redis) could not be reached within its budget. The URL is redacted."""


class DuplicateEventError(BusError):
    """A decision with this event id is already pending, or was joined within the last ``recovery_seconds``."""


class ReusedEventError(DuplicateEventError):
    """A decision with this event id was joined within the last ``recovery_seconds`` (event ids are used once)."""


class RewardOutcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"  # no such event, its window has closed, or it was already joined
    BAD_SLOT = "bad_slot"  # the decision has fewer slots
    DUPLICATE = "duplicate"  # a reward with this reward id was accepted already: nothing added (a retry)


class CloseStatus(enum.Enum):
    READY = "ready"  # closed by this batch: join it
    EXPIRED = "expired"  # the decision is gone from the bus (kept too long past its window)
    TAKEN = "taken"  # another batch closed it first; that batch's owner (or its recoverer) joins it


@dataclass(frozen=True)
class Completion:
    """When a decision's joined reward is final before its window ends (module docstring, "Early close").

    ``aggregation`` is ``first`` (a slot is final at its first reward) or ``max`` (at a reward >= ``top``, the
    top of ``join.reward_range``). ``for_join`` gives None for ``sum`` and ``last``: any later reward changes
    those, so they never close early."""

    aggregation: str
    top: float

    @classmethod
    def for_join(cls, aggregation: str, reward_range: tuple[float, float]) -> Completion | None:
        return cls(aggregation, float(reward_range[1])) if aggregation in ("first", "max") else None

    def settles(self, value: float) -> bool:
        """True when a reward of ``value`` fixes its slot's joined reward."""
        return self.aggregation == "first" or value >= self.top


@dataclass(frozen=True)
class PendingDecision:
    """A bus entry a joiner has taken: which decision, and when its reward window closes."""

    entry_id: str
    event_id: str
    due_at: float  # epoch seconds


@dataclass(frozen=True)
class RewardEntry:
    slot: int
    value: float
    received_at: float  # epoch seconds


@dataclass(frozen=True)
class ClosedEvent:
    """What ``close`` found for one pending decision."""

    pending: PendingDecision
    status: CloseStatus
    decision: Decision | None = None
    rewards: tuple[RewardEntry, ...] = ()
    activated: bool = False


class EventBus(abc.ABC):
    """Pending decisions and their rewards, shared by the serving workers and the joiners."""

    # True when the pending decisions live in this process and end with it (nothing else can join them).
    in_process: bool = False

    def __init__(self, wait_seconds: float, recovery_seconds: float, completion: Completion | None = None) -> None:
        self.wait_seconds = wait_seconds
        self.recovery_seconds = recovery_seconds
        self.completion = completion  # None: every window runs to its end

    # ----- serving side ---------------------------------------------------------------------------
    @abc.abstractmethod
    def put_decision(self, decision: Decision) -> None:
        """Make ``decision`` pending; its window closes ``wait_seconds`` after its timestamp.

        Raises DuplicateEventError when that event id is already pending or was joined within the last
        ``recovery_seconds``, BusUnavailable when the backend cannot be reached within budget.
        """

    @abc.abstractmethod
    def add_reward(self, reward: Reward) -> RewardOutcome:
        """Append a reward to its pending decision, if that decision's window is still open (ACCEPTED without
        storing it when the decision was closed early: module docstring, "Early close").

        A reward with a ``reward_id`` the decision has accepted already (pending, or joined within the last
        ``recovery_seconds``) adds nothing and answers DUPLICATE, whatever the window says now.
        """

    @abc.abstractmethod
    def activate(self, event_id: str, now: float | None = None) -> bool:
        """Mark a pending decision as shown (for deferred decisions). False when unknown or closed."""

    @abc.abstractmethod
    def pending_slot_names(self, event_id: str) -> tuple[str, ...] | None:
        """The ``slot_names`` of the pending decision ``event_id`` (``()`` when it named none), on whichever
        worker it was made; None when no such decision is pending (unknown, or already joined into the log).
        Raises BusUnavailable when the backend cannot be reached within budget."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise BusUnavailable when the backend cannot be reached."""

    # ----- joiner side ----------------------------------------------------------------------------
    @abc.abstractmethod
    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        """Up to ``count`` decisions no joiner has taken yet, now assigned to ``consumer`` (without waiting:
        a decision is due only after its reward window, so the joiner polls). A taken decision no longer
        expires: it stays until committed (another joiner claims it with ``take_stale`` if this one dies)."""

    @abc.abstractmethod
    def complete(self, pending: Sequence[PendingDecision]) -> set[str]:
        """The entry ids among ``pending`` whose decisions are complete (``Completion``): every slot's joined
        reward is final, and a deferred decision has been activated. Always empty without a ``completion``."""

    @abc.abstractmethod
    def take_stale(self, consumer: str, min_idle_seconds: float, count: int) -> list[PendingDecision]:
        """Decisions another joiner took more than ``min_idle_seconds`` ago and never finished."""

    @abc.abstractmethod
    def begin_batch(self, batch_id: str, manifest: Mapping[str, Any]) -> None:
        """Record a batch's manifest before any of its decisions is closed."""

    @abc.abstractmethod
    def set_batch_files(self, batch_id: str, manifest: Mapping[str, Any]) -> None:
        """Replace a batch's manifest (once its staged files are written)."""

    @abc.abstractmethod
    def close(self, pending: Sequence[PendingDecision], batch_id: str) -> list[ClosedEvent]:
        """Close the reward windows of ``pending`` for ``batch_id`` and return what each collected.

        Idempotent per batch: closing again with the same batch id returns the same data.
        """

    @abc.abstractmethod
    def commit_batch(self, batch_id: str, pending: Sequence[PendingDecision]) -> None:
        """Acknowledge and delete ``pending`` (their events are in the log) and forget the batch. Their event
        ids and reward ids are remembered for ``recovery_seconds`` (see the module docstring)."""

    @abc.abstractmethod
    def open_batches(self) -> dict[str, dict[str, Any]]:
        """Manifests of batches begun and not committed."""

    @abc.abstractmethod
    def adopt_batch(self, batch_id: str, expected_stamp: str, owner: str, now: float) -> str | None:
        """Take over a batch whose manifest still carries ``expected_stamp`` (compare-and-set).

        Returns the manifest's new stamp, or None when the batch is gone or someone else adopted it.
        """

    def close_connections(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""

"""The in-process event bus: the embedded default (one worker process; nothing survives its exit)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recommender.events.bus import (
    ClosedEvent,
    CloseStatus,
    Completion,
    DuplicateEventError,
    EventBus,
    PendingDecision,
    ReusedEventError,
    RewardEntry,
    RewardOutcome,
)
from recommender.records import Decision, Reward


class MemoryEventBus(EventBus):
    """In-process bus: the embedded default. Thread-safe; one process only; nothing survives exit."""

    in_process = True

    @dataclass
    class _Pending:
        decision: Decision
        due: float
        activated: bool = False
        rewards: list[RewardEntry] | None = None
        batch: str | None = None
        reward_ids: set[str] = field(default_factory=set)
        settled: set[int] = field(default_factory=set)  # slots whose joined reward is final (Completion)

        @property
        def complete(self) -> bool:
            return len(self.settled) == self.decision.num_slots and (self.activated or not self.decision.deferred)

    def __init__(self, wait_seconds: float, recovery_seconds: float, completion: Completion | None = None) -> None:
        super().__init__(wait_seconds, recovery_seconds, completion)
        self._lock = threading.Lock()
        self._pending: dict[str, MemoryEventBus._Pending] = {}
        self._new: deque[PendingDecision] = deque()
        self._taken: dict[str, tuple[str, float, PendingDecision]] = {}  # entry id -> consumer, since, entry
        self._batches: dict[str, dict[str, Any]] = {}
        self._sequence = 0
        # Joined decisions remembered for recovery_seconds: event id -> (forget at, its reward ids, the end of its
        # window if it was closed early, else -inf), and the order they are forgotten in.
        self._closed: dict[str, tuple[float, tuple[str, ...], float]] = {}
        self._closed_order: deque[tuple[float, str]] = deque()

    def _forget_closed(self, now: float) -> None:
        while self._closed_order and self._closed_order[0][0] <= now:
            _, event_id = self._closed_order.popleft()
            remembered = self._closed.get(event_id)
            if remembered is not None and remembered[0] <= now:
                del self._closed[event_id]

    def put_decision(self, decision: Decision) -> None:
        due = decision.timestamp.timestamp() + self.wait_seconds
        with self._lock:
            if decision.event_id in self._pending:
                raise DuplicateEventError(f"event {decision.event_id!r} is already pending")
            self._forget_closed(time.time())
            if decision.event_id in self._closed:
                raise ReusedEventError(f"event {decision.event_id!r} was joined already (an event id is "
                                          f"remembered for {self.recovery_seconds:g} s after its join)")  # fmt: skip
            self._pending[decision.event_id] = self._Pending(decision, due, rewards=[])
            self._sequence += 1
            self._new.append(PendingDecision(str(self._sequence), decision.event_id, due))

    def _open(self, event_id: str, now: float) -> _Pending | None:
        entry = self._pending.get(event_id)
        if entry is None or entry.batch is not None or now > entry.due:
            return None
        return entry

    def add_reward(self, reward: Reward) -> RewardOutcome:
        received = reward.received_at.timestamp()
        with self._lock:
            if reward.reward_id is not None:
                pending = self._pending.get(reward.event_id)
                if pending is not None and reward.reward_id in pending.reward_ids:
                    return RewardOutcome.DUPLICATE
                self._forget_closed(time.time())
                closed = self._closed.get(reward.event_id)
                if pending is None and closed is not None and reward.reward_id in closed[1]:
                    return RewardOutcome.DUPLICATE
            entry = self._open(reward.event_id, received)
            if entry is None:
                return (
                    RewardOutcome.ACCEPTED if self._closed_early(reward.event_id, received) else RewardOutcome.UNKNOWN
                )
            if reward.slot >= entry.decision.num_slots:
                return RewardOutcome.BAD_SLOT
            assert entry.rewards is not None
            entry.rewards.append(RewardEntry(reward.slot, float(reward.value), received))
            if reward.reward_id is not None:
                entry.reward_ids.add(reward.reward_id)
            if self.completion is not None and self.completion.settles(float(reward.value)):
                entry.settled.add(reward.slot)
            return RewardOutcome.ACCEPTED

    def _closed_early(self, event_id: str, received: float) -> bool:
        """A decision closed early (complete) whose window was still open at ``received``: a reward then is
        accepted and dropped, as it could not change the joined event. Called under the lock."""
        pending = self._pending.get(event_id)
        if pending is not None:
            return pending.batch is not None and pending.complete and received <= pending.due
        closed = self._closed.get(event_id)
        return closed is not None and received <= closed[2]

    def activate(self, event_id: str, now: float | None = None) -> bool:
        with self._lock:
            entry = self._open(event_id, time.time() if now is None else now)
            if entry is None:
                return False
            entry.activated = True
            return True

    def pending_slot_names(self, event_id: str) -> tuple[str, ...] | None:
        with self._lock:
            entry = self._pending.get(event_id)
            return None if entry is None else entry.decision.slot_names

    def ping(self) -> None:
        return None

    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        with self._lock:
            taken = []
            now = time.monotonic()
            while self._new and len(taken) < count:
                entry = self._new.popleft()
                self._taken[entry.entry_id] = (consumer, now, entry)
                taken.append(entry)
            return taken

    def complete(self, pending: Sequence[PendingDecision]) -> set[str]:
        if self.completion is None:
            return set()
        with self._lock:
            out = set()
            for item in pending:
                entry = self._pending.get(item.event_id)
                if entry is not None and entry.complete:
                    out.add(item.entry_id)
            return out

    def take_stale(self, consumer: str, min_idle_seconds: float, count: int) -> list[PendingDecision]:
        now = time.monotonic()
        with self._lock:
            stale = [
                (entry_id, entry)
                for entry_id, (owner, since, entry) in self._taken.items()
                if owner != consumer and now - since >= min_idle_seconds
            ][:count]
            for entry_id, entry in stale:
                self._taken[entry_id] = (consumer, now, entry)
            return [entry for _, entry in stale]

    def begin_batch(self, batch_id: str, manifest: Mapping[str, Any]) -> None:
        with self._lock:
            self._batches[batch_id] = dict(manifest)

    set_batch_files = begin_batch

    def close(self, pending: Sequence[PendingDecision], batch_id: str) -> list[ClosedEvent]:
        results = []
        with self._lock:
            for item in pending:
                entry = self._pending.get(item.event_id)
                if entry is None:
                    results.append(ClosedEvent(item, CloseStatus.EXPIRED))
                elif entry.batch is not None and entry.batch != batch_id:
                    results.append(ClosedEvent(item, CloseStatus.TAKEN))
                else:
                    entry.batch = batch_id
                    rewards = tuple(entry.rewards or ())
                    results.append(ClosedEvent(item, CloseStatus.READY, entry.decision, rewards, entry.activated))
        return results

    def commit_batch(self, batch_id: str, pending: Sequence[PendingDecision]) -> None:
        forget_at = time.time() + self.recovery_seconds
        with self._lock:
            for item in pending:
                self._taken.pop(item.entry_id, None)
                entry = self._pending.get(item.event_id)
                if entry is not None and entry.batch in (None, batch_id):
                    del self._pending[item.event_id]
                    early_until = entry.due if entry.complete else -math.inf
                    # A tuple of strings, not a frozenset: the collector stops tracking such tuples, and a
                    # worker keeps recovery_seconds of closed events (~150,000 at 500 events/s) that every
                    # full collection would otherwise walk.
                    self._closed[item.event_id] = (forget_at, tuple(entry.reward_ids), early_until)
                    self._closed_order.append((forget_at, item.event_id))
            self._batches.pop(batch_id, None)

    def open_batches(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {batch_id: dict(manifest) for batch_id, manifest in self._batches.items()}

    def adopt_batch(self, batch_id: str, expected_stamp: str, owner: str, now: float) -> str | None:
        with self._lock:
            manifest = self._batches.get(batch_id)
            if manifest is None or manifest.get("stamp") != expected_stamp:
                return None
            stamp = uuid.uuid4().hex
            manifest.update(owner=owner, touched=now, stamp=stamp)
            return stamp

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

"""The joiner: joins decisions with their rewards and writes joined events to the Parquet log.

Semantics (docs/service.md, "Join"):

- A decision's reward window runs from its timestamp for ``join.reward_wait_time`` seconds. Rewards
  arriving in the window count; later ones are refused by the bus (404).
- Early close: under ``aggregation: first`` (or ``max``), a decision whose every slot has its first reward (a
  reward at the top of ``join.reward_range``) is joined at the next batch rather than at its window's end: no
  reward still to come could change its joined event, so the log holds exactly what it would have held at the
  window's end (``recommender.events.bus``, "Early close"; the bus's rule must be the one in force).
- Rewards of one slot are combined by ``join.aggregation`` (``sum``, ``first``, ``last``, ``max``, in
  arrival order), then clipped into ``join.reward_range`` (a sum of rewards each within the range may
  leave it; clipped slots are counted). A slot without any reward gets ``join.default_reward``, flagged
  ``reward_is_default``. A retried reward (same reward id) was never added twice (``EventBus.add_reward``).
- A deferred decision is joined only if it was activated within its window; otherwise it was never
  shown, so it is dropped (counted, not logged, not learned from).
- Joined events go to the event log (``recommender.events.log.write_events``), then to ``on_joined``
  (the in-process learner or, later, the trainer's feed).

Exactly once into the log, across crashes and several joiners sharing the bus. Each batch is:

1. ``begin_batch``: record a manifest (its entries, owner, a stamp) in the bus;
2. ``close`` the entries' windows for this batch id (an entry another batch closed is skipped: it is
   that batch's, and is not acknowledged here);
3. write the events under ``<log>/_staging/<batch>/`` (readers ignore ``_``-prefixed directories), fsync,
   and record the staged and final paths in the manifest;
4. rename each staged file to its final place (atomic, and skipped if the final file exists);
5. ``commit_batch``: acknowledge and delete the entries (in scripts of ``COMMIT_CHUNK`` decisions), then the
   manifest; committing again after a crash part way is harmless (idempotent).

A joiner that dies leaves its manifest behind. Any joiner finding a manifest untouched for a third of
``join.recovery_seconds`` adopts it (compare-and-set on its stamp) and resumes: from step 2 with the same
batch id if no files were recorded (closing again is idempotent), else from step 4. Decisions a dead
joiner had taken but not batched are claimed by another joiner once idle longer than their wait time
plus that same grace; taken decisions do not expire meanwhile, however long that takes (a Redis outage
included: ``recommender.events.redis_bus``, "Expiry"). This assumes every joiner sees the same
``join.event_log_dir`` (one host, or a shared volume) and that a live joiner finishes a batch well within
the grace.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recommender.events.bus import (
    BusError,
    ClosedEvent,
    CloseStatus,
    Completion,
    EventBus,
    PendingDecision,
    RewardEntry,
)
from recommender.events.log import write_events
from recommender.records import JoinedEvent
from recommender.settings.events import JoinConfig

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"


@dataclass(frozen=True)
class ArmJoinCounts:
    """One experiment arm's share of a batch: decisions joined and the sum of their slot-0 rewards (the
    default reward included where none came: the figure the experiment's analysis uses)."""

    experiment: str
    arm: str
    joined: int
    reward_sum: float


@dataclass(frozen=True)
class JoinStats:
    """Counts of one batch, for metrics."""

    joined: int = 0
    rewarded: int = 0  # joined events with at least one real reward
    slots: int = 0
    default_slots: int = 0
    expired: int = 0  # decisions that vanished from the bus before being joined (lost)
    dropped_deferred: int = 0  # deferred decisions never activated
    clipped_slots: int = 0  # slots whose aggregated reward was outside join.reward_range and was clipped into it
    arms: tuple[ArmJoinCounts, ...] = ()  # per experiment arm, for the decisions logged with one


def _arm_counts(events: Sequence[JoinedEvent]) -> tuple[ArmJoinCounts, ...]:
    by_arm: dict[tuple[str, str], list[float]] = {}
    for event in events:
        decision = event.decision
        if decision.experiment is not None and decision.arm is not None:
            by_arm.setdefault((decision.experiment, decision.arm), []).append(event.rewards[0])
    return tuple(ArmJoinCounts(e, a, len(r), math.fsum(r)) for (e, a), r in by_arm.items())


def aggregate(values: Sequence[float], how: str) -> float:
    """Combine the rewards of one slot, given in arrival order."""
    if how == "sum":
        return math.fsum(values)
    if how == "first":
        return values[0]
    if how == "last":
        return values[-1]
    if how == "max":
        return max(values)
    raise ValueError(f"unknown aggregation {how!r}")


def join_event(closed: ClosedEvent, settings: JoinConfig, joined_at: datetime) -> JoinedEvent:
    """The JoinedEvent of a closed decision under the current aggregation and default reward, every
    aggregated reward clipped into ``settings.reward_range`` (``clipped_slots`` counts the slots clipped)."""
    return _join_event(closed, settings, joined_at)[0]


def _join_event(closed: ClosedEvent, settings: JoinConfig, joined_at: datetime) -> tuple[JoinedEvent, int]:
    """``join_event`` and the number of its slots whose aggregated reward was clipped."""
    decision = closed.decision
    assert decision is not None
    low, high = settings.reward_range
    by_slot: dict[int, list[float]] = {}
    for entry in closed.rewards:
        by_slot.setdefault(entry.slot, []).append(entry.value)
    rewards = []
    defaults = []
    clipped = 0
    for slot in range(decision.num_slots):
        values = by_slot.get(slot)
        if not values:
            rewards.append(settings.default_reward)  # within the range (checked with the configuration)
        else:
            value = aggregate(values, settings.aggregation)
            if not low <= value <= high:
                clipped += 1
                value = min(max(value, low), high)
            rewards.append(value)
        defaults.append(not values)
    event = JoinedEvent(decision, rewards=tuple(rewards), reward_is_default=tuple(defaults), joined_at=joined_at)
    return event, clipped


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _entries_of(manifest: dict[str, Any]) -> list[PendingDecision]:
    return [PendingDecision(entry_id, event_id, due) for entry_id, event_id, due in manifest["entries"]]


class Joiner:
    """Joins the decisions of one bus into one event log; ``run_once`` is one cycle, ``start`` loops it.

    ``settings`` is called at every batch, so a hot-reloaded aggregation or default reward applies to
    the next batch. ``on_joined`` gets each batch's events after they are durable in the log (at most
    once: a batch resumed after a crash is not handed over again); its errors are logged, not raised.
    """

    def __init__(
        self,
        bus: EventBus,
        log_dir: str | Path,
        settings: Callable[[], JoinConfig],
        *,
        consumer: str | None = None,
        on_joined: Callable[[list[JoinedEvent]], None] | None = None,
        observer: Callable[[JoinStats], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.log_dir = Path(log_dir)
        self.settings = settings
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.on_joined = on_joined
        self.observer = observer
        self.clock = clock
        self._held: list[tuple[float, str, PendingDecision]] = []  # heap by due time: windows still open
        self._ready: list[PendingDecision] = []  # windows closed, waiting for the next batch
        self._held_ids: set[str] = set()  # entry ids in _held or _ready
        self._last_batch = -math.inf
        self._close_early_on_stop = False
        self._last_recovery = -math.inf
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # ----- one cycle ----------------------------------------------------------------------------------
    @property
    def grace_seconds(self) -> float:
        return self.settings().recovery_seconds / 3

    def run_once(self, *, flush: bool = False, close_early: bool = False) -> int:
        """Take new decisions, recover abandoned work, join the decisions whose window has closed.

        Due decisions are written in batches (``join.flush_seconds``, ``join.flush_max_events``): at
        most once per ``flush_seconds``, sooner when ``flush_max_events`` are due, and at once with
        ``flush``. Few large batches instead of one per decision: a batch's Redis round trips, Parquet
        file and fsyncs cost the same for one event as for a thousand. ``close_early`` (with ``flush``):
        join the decisions whose window is still open too, with the rewards they have so far. Returns the
        number of joined events written to the log.
        """
        settings = self.settings()
        now = self.clock()
        if now - self._last_recovery >= min(self.grace_seconds, 30.0):
            self._last_recovery = now
            self._recover_batches(now)
            self._hold(self.bus.take_stale(self.consumer, settings.reward_wait_time + self.grace_seconds, 1000))
        self._hold(self.bus.take_new(self.consumer, 10_000))
        now = self.clock()
        while self._held and (close_early or self._held[0][0] <= now):
            self._ready.append(heapq.heappop(self._held)[2])
        completion = self.bus.completion
        if completion is not None and completion == Completion.for_join(settings.aggregation, settings.reward_range):
            self._take_complete()
        written = 0
        while self._ready and (
            flush or len(self._ready) >= settings.flush_max_events or now - self._last_batch >= settings.flush_seconds
        ):
            due, self._ready = self._ready[: settings.flush_max_events], self._ready[settings.flush_max_events :]
            self._held_ids.difference_update(entry.entry_id for entry in due)
            self._last_batch = now
            written += self._run_batch(due)
        return written

    def _take_complete(self) -> None:
        """Move the held decisions the bus finds complete to the ready ones: their joined events can no longer
        change (``recommender.events.bus``, "Early close"), so they are joined now, not at their window's end."""
        held = [entry for _, _, entry in self._held]
        done = self.bus.complete(held) if held else set()
        if done:
            self._ready.extend(entry for entry in held if entry.entry_id in done)
            self._held = [h for h in self._held if h[1] not in done]
            heapq.heapify(self._held)

    def seconds_to_next_batch(self) -> float:
        """Seconds until ``run_once`` would write a batch (0 if it would now; at most ``flush_seconds``, so
        that new decisions are taken at least that often)."""
        settings = self.settings()
        now = self.clock()
        if self._ready:
            next_batch = self._last_batch + settings.flush_seconds
        elif self._held:
            next_batch = max(self._held[0][0], self._last_batch + settings.flush_seconds)
        else:
            next_batch = math.inf
        return max(0.0, min(settings.flush_seconds, next_batch - now))

    def _hold(self, entries: Sequence[PendingDecision]) -> None:
        for entry in entries:
            if entry.entry_id not in self._held_ids:
                self._held_ids.add(entry.entry_id)
                heapq.heappush(self._held, (entry.due_at, entry.entry_id, entry))

    # ----- batches ------------------------------------------------------------------------------------
    def _run_batch(self, entries: list[PendingDecision]) -> int:
        batch_id = uuid.uuid4().hex
        manifest = {
            "owner": self.consumer,
            "touched": self.clock(),
            "stamp": uuid.uuid4().hex,
            "entries": [[e.entry_id, e.event_id, e.due_at] for e in entries],
            "files": None,
        }
        self.bus.begin_batch(batch_id, manifest)
        return self._finish(batch_id, manifest, entries)

    def _finish(self, batch_id: str, manifest: dict[str, Any], entries: list[PendingDecision]) -> int:
        """Steps 2-5 of the batch protocol."""
        settings = self.settings()
        closed = self.bus.close(entries, batch_id)
        joined_at = datetime.now(UTC)
        events: list[JoinedEvent] = []
        mine: list[PendingDecision] = []
        expired = dropped = clipped = 0
        lost: list[str] = []
        for item in closed:
            if item.status is CloseStatus.TAKEN:
                continue
            mine.append(item.pending)
            if item.status is CloseStatus.EXPIRED:
                expired += 1
                lost.append(item.pending.event_id)
            elif item.decision is not None and item.decision.deferred and not item.activated:
                dropped += 1
            else:
                event, clipped_slots = _join_event(item, settings, joined_at)
                events.append(event)
                clipped += clipped_slots
        if expired:  # lost data, rewards included: an error, not a warning
            log.error("%d decisions expired from the bus before they could be joined (lost), e.g. %s", expired,
                      ", ".join(lost[:5]))  # fmt: skip
        if events:
            manifest = {**manifest, "files": self._stage(batch_id, events)}
            self.bus.set_batch_files(batch_id, manifest)
        self._publish(manifest.get("files") or [])
        self.bus.commit_batch(batch_id, mine)
        shutil.rmtree(self.log_dir / STAGING_DIR / batch_id, ignore_errors=True)
        self._notify(events, expired, dropped, clipped)
        return len(events)

    def _stage(self, batch_id: str, events: list[JoinedEvent]) -> list[list[str]]:
        staging = self.log_dir / STAGING_DIR / batch_id
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of an attempt that died mid-write
        files = []
        for path in write_events(events, staging):
            _fsync(path)
            final = self.log_dir / path.relative_to(staging)
            files.append([str(path), str(final)])
        return files

    @staticmethod
    def _publish(files: Sequence[Sequence[str]]) -> None:
        for staged, final in files:
            target = Path(final)
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staged, target)
            except FileNotFoundError:
                if not target.exists():  # neither staged nor final: the manifest lies
                    raise
            _fsync(target.parent)

    def _notify(self, events: list[JoinedEvent], expired: int, dropped: int, clipped: int = 0) -> None:
        if self.observer is not None:
            slots = sum(len(e.rewards) for e in events)
            default_slots = sum(sum(e.reward_is_default) for e in events)
            rewarded = sum(1 for e in events if not all(e.reward_is_default))
            self.observer(JoinStats(len(events), rewarded, slots, default_slots, expired, dropped, clipped,
                                    _arm_counts(events)))  # fmt: skip
        if self.on_joined is not None and events:
            try:
                self.on_joined(events)
            except Exception:  # the events are safe in the log; a failing consumer must not stop the join
                log.exception("the joined-events callback failed on %d events", len(events))

    def _recover_batches(self, now: float) -> None:
        """Adopt and finish batches whose owner stopped touching them (see the module docstring)."""
        for batch_id, manifest in self.bus.open_batches().items():
            # Our own open batches failed part way (the loop runs one batch at a time): retry them now.
            mine = manifest.get("owner") == self.consumer
            if not mine and now - float(manifest.get("touched", 0)) < self.grace_seconds:
                continue
            stamp = self.bus.adopt_batch(batch_id, manifest.get("stamp", ""), self.consumer, now)
            if stamp is None:
                continue
            log.warning("resuming batch %s of %s", batch_id, manifest.get("owner"))
            manifest = {**manifest, "owner": self.consumer, "touched": now, "stamp": stamp}
            entries = _entries_of(manifest)
            for entry in entries:  # it is this batch's now, not to be joined again from the heap
                self._held_ids.discard(entry.entry_id)
            adopted = {e.entry_id for e in entries}
            self._held = [h for h in self._held if h[1] not in adopted]
            heapq.heapify(self._held)
            self._ready = [e for e in self._ready if e.entry_id not in adopted]
            if manifest.get("files") is None:
                self._finish(batch_id, manifest, entries)
            else:
                self._publish(manifest["files"])
                self.bus.commit_batch(batch_id, entries)
                shutil.rmtree(self.log_dir / STAGING_DIR / batch_id, ignore_errors=True)

    # ----- background thread ------------------------------------------------------------------------
    def start(self) -> None:
        """Run cycles in a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="joiner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self.run_once()  # new decisions are taken at the next cycle, at most flush_seconds away
                self.last_error = None
                backoff = 0.1
                self._stop.wait(self.seconds_to_next_batch())
            except (BusError, OSError, ValueError) as exc:
                # Redis away or the disk refusing: nothing is acknowledged, so nothing is lost; retry.
                self.last_error = str(exc)
                log.warning("joiner cycle failed, retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:
                self.last_error = str(exc)
                log.exception("joiner cycle failed unexpectedly")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        try:  # decisions already due are written now rather than left to another joiner's recovery
            written = self.run_once(flush=True, close_early=self._close_early_on_stop)
            if self._close_early_on_stop and written:
                log.warning("stopping: joined %d events, closing the reward windows still open (the in-process "
                            "bus ends with this process)", written)  # fmt: skip
        except Exception:
            log.exception("joiner could not write the due decisions on stop; they stay pending on the bus")

    def stop(self, timeout: float = 10.0, *, close_early: bool = False) -> None:
        """Stop the thread after its current cycle, writing the decisions already due. Decisions not yet
        due stay pending on the bus, unless ``close_early``: then they are joined now with the rewards they
        have (for an in-process bus, which ends with the process: cut short rather than lost)."""
        self._close_early_on_stop = close_early
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


__all__ = ["ArmJoinCounts", "Joiner", "JoinStats", "RewardEntry", "aggregate", "join_event"]

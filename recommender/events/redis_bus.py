"""The Redis event bus: Redis Streams and Lua scripts, shared by every worker on every host.

With ``features.redis_store``, this module is the only place importing ``redis``. The request path's scripts
(decision, reward, activation) go through ``features.redis_store.DirectCommands``.

Redis key layout (``P`` = ``bus.key_prefix``; every key carries the hash tag ``{P}`` so the Lua scripts,
which touch several keys, also run on Redis Cluster):

- ``{P}:d:<event_id>``  hash: ``d`` decision JSON, ``slots``, ``due`` (epoch seconds when the reward
  window closes), ``deferred`` and ``activated`` ("0"/"1"), ``batch`` (set once the joiner closed it); with a
  ``Completion`` (``recommender.events.bus``, "Early close"): ``s<slot>`` "1" for each slot a reward has
  settled, ``settled`` their count, ``complete`` "1" once every slot is settled.
  TTL: wait time + ``join.recovery_seconds`` while no joiner has taken it; none once a joiner has (see
  "Expiry" below); deleted when its joined event is in the log.
- ``{P}:r:<event_id>``  list of rewards ``[slot, value, received_at]`` (JSON), in arrival order; same TTL
  as its decision.
- ``{P}:i:<event_id>``  set of the reward ids its rewards came with (idempotent retries); same TTL as its
  decision while pending, ``join.recovery_seconds`` once joined (a retry after the join is still a no-op).
- ``{P}:x:<event_id>``  string "1", or the end of its window (epoch seconds) if it was closed early: this event
  was joined; TTL ``join.recovery_seconds``. While it lives, a
  new decision with that event id is refused like a pending duplicate (one id, one log row).
- ``{P}:<stream>``       stream with one entry per decision (``e`` event id, ``due``), read by the joiners
  through the consumer group ``bus.group``; an entry is acknowledged and deleted only once its joined
  event is in the Parquet log.
- ``{P}:batches``        hash: batch id -> manifest JSON of the joiner's batches in flight.
- ``{P}:row:<digest>``  string: the JSON text of one candidate feature row, named by its content digest
  (``recommender.events.codec``); decisions refer to rows by digest. Written with the first decision that
  names it (and again by each worker once per wait + recovery seconds it uses it, and after it found Redis
  unavailable: Redis may be back empty), TTL 2 x (wait + recovery) + 10 minutes, so it outlives every
  pending decision naming it. Redis must not evict keys (``maxmemory-policy noeviction``, as for the
  stream); a decision whose rows were lost anyway is counted as expired, with an error logged.

Every call on the serving side gives up after ``bus.timeout_ms`` and raises ``BusUnavailable``;
``add_reward`` returning ACCEPTED means Redis has acknowledged the write.

Expiry. A decision's TTL is what lets Redis forget decisions no joiner ever comes for; it must never be
what loses a decision a joiner has taken. The TTL runs from the decision's write, while the idle time after
which another joiner may claim a dead joiner's decisions (``take_stale``: wait + a third of the recovery
time) runs from the take, and stops meaning anything across a Redis outage: every idle time is measured
again from 0 when Redis reloads its AOF (the consumer group's pending entries are replayed), while the TTLs
are absolute times and keep running. A joiner crash followed by an outage of a few seconds therefore let
the TTL win the race, and decisions with acknowledged rewards expired before anyone could claim them. So
``take_new`` and ``take_stale`` remove the TTL of the decisions they hand out (``redis_scripts.HOLD``, one script call
per ``HOLD_CHUNK``): a taken decision lives until a joiner commits it, however long the joiners or Redis
are away. Only a decision no joiner has taken expires (no joiner ran for wait + ``join.recovery_seconds``).
Its feature rows keep their own TTL (refreshed by every worker using them): a taken decision outlives its
rows only if no joiner takes over from a dead one within 2 x (wait + recovery) + 10 minutes; it is then
counted as expired with an error logged.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import redis

from features.redis_store import DirectCommands, redact_url
from recommender.events import redis_scripts
from recommender.events.bus import (
    BusError,
    BusUnavailable,
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
from recommender.events.codec import decode_decision, encode_decision, encoded_rows, from_json, row_of
from recommender.records import Decision, Reward

log = logging.getLogger(__name__)

_REWARD_OUTCOMES = {
    1: RewardOutcome.ACCEPTED,
    0: RewardOutcome.UNKNOWN,
    -1: RewardOutcome.BAD_SLOT,
    2: RewardOutcome.DUPLICATE,
    3: RewardOutcome.ACCEPTED,  # the decision was closed early: the reward could not change its joined event
}

# Entries in the per-process caches of row digests (stored ones on the serving side, rows on the joiner's).
ROW_CACHE_SIZE = 200_000
# Decisions closed by one Lua call, one call per round trip: one call instead of one per decision saves
# most of the client's per-command work, but a script holds Redis for its whole run (14-70 us per decision
# of 200 candidates, measured on a quiet and on a loaded machine), and the serving workers' reads and
# writes queue behind it; 10 bounds that wait to well under a millisecond.
CLOSE_CHUNK = 10
# Decisions whose completion (``complete``) one pipelined round trip reads.
COMPLETE_CHUNK = 1000
# Decisions acknowledged and deleted per transaction (see commit_batch), for the same reason.
COMMIT_CHUNK = 100
# Decisions whose TTL one call of the hold script removes (three PERSISTs each: a few microseconds).
HOLD_CHUNK = 200
# Extra lifetime of a stored feature row beyond what the decisions naming it can need.
ROW_TTL_MARGIN_SECONDS = 600


class RedisEventBus(EventBus):
    """Bus on Redis Streams with a consumer group of joiners (see the module docstring for keys)."""

    def __init__(
        self,
        url: str,
        *,
        wait_seconds: float,
        recovery_seconds: float,
        key_prefix: str = "rb",
        stream: str = "decisions",
        group: str = "joiner",
        timeout_ms: float = 50.0,
        completion: Completion | None = None,
    ) -> None:
        super().__init__(wait_seconds, recovery_seconds, completion)
        # The completion rule as the reward script's arguments ('' when windows always run to their end).
        self._rule = (completion.aggregation, repr(completion.top)) if completion is not None else ("", "0")
        self._url = redact_url(url)
        self._tag = f"{{{key_prefix}}}"
        self._stream = f"{self._tag}:{stream}"
        self._batches_key = f"{self._tag}:batches"
        self._group = group
        self._ttl_ms = int((wait_seconds + recovery_seconds) * 1000)
        self._recovery_ms = int(recovery_seconds * 1000)
        # A row is (re)stored by a worker once every ``_row_refresh`` seconds it is used (``_stored_rows``)
        # and lives ``_row_ttl_ms``: refresh + the longest a pending decision lives + a margin, so a row
        # outlives every decision that names it without being rewritten.
        self._row_refresh = wait_seconds + recovery_seconds
        self._row_ttl_ms = int((2 * (wait_seconds + recovery_seconds) + ROW_TTL_MARGIN_SECONDS) * 1000)
        self._rows_stored: set[str] = set()  # digests this process stored since _rows_generation
        self._rows_generation = time.monotonic()
        self._rows: dict[str, Mapping[str, Any]] = {}  # joiner side: digest -> row
        timeout = timeout_ms / 1000.0
        try:
            # Request path: short budget. Joiner: batch commits and large reads need longer.
            self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self._joiner = redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
        except (redis.RedisError, ValueError) as exc:
            raise BusUnavailable(f"cannot connect to Redis at {self._url}: {exc}") from exc
        # The request path's scripts (decision, reward, activation) skip redis-py's client layer
        # (features.redis_store.DirectCommands).
        self._direct = DirectCommands(self._client)
        self._put = self._client.register_script(redis_scripts.PUT)
        self._reward = self._client.register_script(redis_scripts.REWARD)
        self._activate = self._client.register_script(redis_scripts.ACTIVATE)
        self._close = self._joiner.register_script(redis_scripts.CLOSE)
        self._hold_script = self._joiner.register_script(redis_scripts.HOLD)
        self._adopt = self._joiner.register_script(redis_scripts.ADOPT)
        self._group_ready = False

    # ----- keys and errors ---------------------------------------------------------------------------
    def _dkey(self, event_id: str) -> str:
        return f"{self._tag}:d:{event_id}"

    def _rkey(self, event_id: str) -> str:
        return f"{self._tag}:r:{event_id}"

    def _ikey(self, event_id: str) -> str:
        return f"{self._tag}:i:{event_id}"

    def _xkey(self, event_id: str) -> str:
        return f"{self._tag}:x:{event_id}"

    def _row_key(self, digest: str) -> str:
        return f"{self._tag}:row:{digest}"

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise BusUnavailable(f"Redis at {self._url} unavailable while {action}: {exc}") from exc
        except redis.RedisError as exc:
            raise BusError(f"Redis at {self._url} refused {action}: {exc}") from exc

    # ----- serving side ------------------------------------------------------------------------------
    def put_decision(self, decision: Decision) -> None:
        due = decision.timestamp.timestamp() + self.wait_seconds
        rows = encoded_rows(decision.candidate_features)
        digests = list(map(itemgetter(2), rows))
        stored = self._stored_rows()
        # Usually every row is stored already: one C-level check instead of one per row.
        new_texts = {} if stored.issuperset(digests) else {d: text for _, text, d in rows if d not in stored}
        try:
            created = self._put_script(decision, due, digests, new_texts)
        except BusUnavailable:
            # A Redis that was away may come back empty (restarted without persistence): store every row again
            # rather than name rows it no longer has.
            self._rows_stored = set()
            raise
        if created == 0:  # the script stopped before writing anything, rows included
            raise DuplicateEventError(f"event {decision.event_id!r} is already pending")
        if created == -1:
            raise ReusedEventError(f"event {decision.event_id!r} was joined already (an event id is remembered "
                                      f"for {self.recovery_seconds:g} s after its join)")  # fmt: skip
        stored.update(new_texts)

    def _put_script(self, decision: Decision, due: float, digests: list[str], new_texts: dict[str, str]) -> int:
        """Run the decision script: 1 stored, 0 pending duplicate, -1 joined within the recovery time."""
        return int(
            self._call(
                "storing a decision",
                self._direct.run_script,
                self._put,
                keys=[
                    self._dkey(decision.event_id),
                    self._stream,
                    self._xkey(decision.event_id),
                    *map(self._row_key, new_texts),
                ],
                args=[
                    encode_decision(decision, digests),
                    decision.num_slots,
                    repr(due),
                    self._ttl_ms,
                    decision.event_id,
                    "1" if decision.deferred else "0",
                    self._row_ttl_ms,
                    *new_texts.values(),
                ],
            )
        )

    def _stored_rows(self) -> set[str]:
        """Digests of the rows this process stored in Redis within the last ``_row_refresh`` seconds.

        One set per period (a generation), replaced by an empty one when the period is over or the set is
        full: a row named in a new generation is stored again once, so every row a decision names was
        (re)stored at most ``_row_refresh`` seconds before that decision, and its TTL outlives the decision.
        """
        now = time.monotonic()
        if now - self._rows_generation > self._row_refresh or len(self._rows_stored) > ROW_CACHE_SIZE:
            self._rows_stored = set()  # threads holding the old set only store a row once more
            self._rows_generation = now
        return self._rows_stored

    def add_reward(self, reward: Reward) -> RewardOutcome:
        received = reward.received_at.timestamp()
        entry = json.dumps([reward.slot, float(reward.value), received])
        result = self._call(
            "storing a reward",
            self._direct.run_script,
            self._reward,
            keys=[self._dkey(reward.event_id), self._rkey(reward.event_id), self._ikey(reward.event_id),
                  self._xkey(reward.event_id)],  # fmt: skip
            args=[entry, reward.slot, repr(received), reward.reward_id or "", self._rule[0], repr(float(reward.value)),
                  self._rule[1]],  # fmt: skip
        )
        return _REWARD_OUTCOMES[int(result)]

    def activate(self, event_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        activated = self._call(
            "activating", self._direct.run_script, self._activate, keys=[self._dkey(event_id)], args=[repr(now)]
        )
        return bool(activated)

    def pending_slot_names(self, event_id: str) -> tuple[str, ...] | None:
        payload = self._call("reading a decision", self._client.hget, self._dkey(event_id), "d")
        if payload is None:
            return None
        return tuple(from_json(payload).get("slot_names", ()))  # absent in payloads older than slot names

    def ping(self) -> None:
        self._call("pinging", self._client.ping)

    # ----- joiner side -------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0: decisions written before the first joiner started are joined too.
            self._joiner.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _joiner_call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            self._ensure_group()
            return fn(*args, **kwargs)

        try:
            return self._call(action, attempt)
        except BusError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence): start over
                # The stream (and its group) is never deleted by the bus, so this is lost data, said loudly: the
                # decisions this joiner had taken are counted as expired when it closes them, but those written
                # since its last read, and their rewards, are gone without a trace to count.
                log.error("the decision stream %s has no consumer group %s any more: Redis at %s lost the event "
                          "bus's data (restarted without persistence?); decisions not yet joined and their rewards "
                          "are lost", self._stream, self._group, self._url)  # fmt: skip
                self._group_ready = False
                return self._call(action, attempt)
            raise

    @staticmethod
    def _entries(messages: Sequence[Any]) -> list[PendingDecision]:
        entries = []
        for entry_id, fields in messages:
            if not fields:  # deleted meanwhile
                continue
            entries.append(
                PendingDecision(
                    entry_id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
                    event_id=fields[b"e"].decode(),
                    due_at=float(fields[b"due"]),
                )
            )
        return entries

    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        reply = self._joiner_call(
            "reading decisions", self._joiner.xreadgroup, self._group, consumer, {self._stream: ">"}, count=count
        )
        return self._hold(self._entries(reply[0][1]) if reply else [])

    def _hold(self, entries: list[PendingDecision]) -> list[PendingDecision]:
        """Remove the TTL of the decisions just taken (module docstring, "Expiry"); returns ``entries``.

        If this call fails after the take, the decisions keep their TTL and the joiner's cycle fails and is
        retried; the next take of them (``take_stale``, by this joiner or another) holds them then."""

        def run() -> None:
            for start in range(0, len(entries), HOLD_CHUNK):
                chunk = entries[start : start + HOLD_CHUNK]
                keys = [key for item in chunk for key in (self._dkey(item.event_id), self._rkey(item.event_id),
                                                          self._ikey(item.event_id))]  # fmt: skip
                self._hold_script(keys=keys)

        if entries:
            self._call("holding taken decisions", run)
        return entries

    def complete(self, pending: Sequence[PendingDecision]) -> set[str]:
        if self.completion is None or not pending:
            return set()

        def run() -> list[Any]:
            # Plain reads, pipelined without a transaction in chunks: nothing else waits behind them for long.
            replies: list[Any] = []
            for start in range(0, len(pending), COMPLETE_CHUNK):
                pipe = self._joiner.pipeline(transaction=False)
                for item in pending[start : start + COMPLETE_CHUNK]:
                    pipe.hmget(self._dkey(item.event_id), "complete", "deferred", "activated")
                replies += pipe.execute()
            return replies

        replies = self._call("reading completed decisions", run)
        return {
            item.entry_id
            for item, (complete, deferred, activated) in zip(pending, replies, strict=True)
            if complete == b"1" and (deferred != b"1" or activated == b"1")
        }

    def take_stale(self, consumer: str, min_idle_seconds: float, count: int) -> list[PendingDecision]:
        reply = self._joiner_call(
            "claiming stale decisions",
            self._joiner.xautoclaim,
            self._stream,
            self._group,
            consumer,
            int(min_idle_seconds * 1000),
            start_id="0-0",
            count=count,
        )
        return self._hold(self._entries(reply[1]))

    def begin_batch(self, batch_id: str, manifest: Mapping[str, Any]) -> None:
        self._call("recording a batch", self._joiner.hset, self._batches_key, batch_id, json.dumps(manifest))

    set_batch_files = begin_batch

    def close(self, pending: Sequence[PendingDecision], batch_id: str) -> list[ClosedEvent]:
        if not pending:
            return []

        def run() -> list[Any]:
            # One script call per round trip, not one pipeline: Redis runs a client's pipelined commands back
            # to back, so a pipeline closing a whole batch would hold off every serving worker for all of it
            # (tens of ms at a few hundred decisions), and their requests' p99 with them.
            replies: list[Any] = []
            for start in range(0, len(pending), CLOSE_CHUNK):
                chunk = pending[start : start + CLOSE_CHUNK]
                keys = [key for item in chunk for key in (self._dkey(item.event_id), self._rkey(item.event_id))]
                replies += self._close(keys=keys, args=[batch_id])
            return replies

        replies = self._call("closing decisions", run)
        results: list[ClosedEvent] = []
        unseen: list[tuple[int, dict[str, Any]]] = []  # (index, payload) of decisions naming rows not cached
        for item, reply in zip(pending, replies, strict=True):
            if reply[0] == 0:
                results.append(ClosedEvent(item, CloseStatus.EXPIRED))
            elif reply[0] == 1:
                results.append(ClosedEvent(item, CloseStatus.TAKEN))
            else:
                # Decoded at once, so that the payload's lists die now rather than at the end of the batch (the
                # garbage collector would scan them many times over). Rows not yet cached: one MGET below.
                data = from_json(reply[1])
                try:
                    results.append(self._ready(item, reply, decode_decision(data, self._rows)))
                except KeyError:
                    unseen.append((len(results), data))
                    results.append(ClosedEvent(item, CloseStatus.EXPIRED))  # unless its rows are found below
        if unseen:
            lost = self._fetch_rows(set().union(*(data["candidate_rows"] for _, data in unseen)))
            for index, data in unseen:
                item = pending[index]
                if lost.isdisjoint(data["candidate_rows"]):
                    results[index] = self._ready(item, replies[index], decode_decision(data, self._rows))
                else:
                    # Only if Redis lost keys (eviction, a restart without persistence): the decision cannot be
                    # rebuilt, so it is counted with the expired ones, not logged, and said loudly.
                    log.error("decision %s names feature rows Redis no longer has; counted as expired", item.event_id)
        return results

    @staticmethod
    def _ready(item: PendingDecision, reply: Sequence[Any], decision: Decision) -> ClosedEvent:
        """The ClosedEvent of a decision this batch closed (``reply``: the close script's answer for it)."""
        rewards = tuple(RewardEntry(int(s), float(v), float(t)) for s, v, t in map(json.loads, reply[3]))
        return ClosedEvent(item, CloseStatus.READY, decision, rewards, reply[2] == b"1")

    def _fetch_rows(self, digests: set[str]) -> set[str]:
        """Make sure this process knows the rows of ``digests``, bringing the others from Redis (one MGET
        per 1,000). Returns the digests whose rows Redis does not have either (normally none)."""
        missing = [digest for digest in digests if digest not in self._rows]
        if len(self._rows) + len(missing) > ROW_CACHE_SIZE:
            self._rows.clear()
            missing = list(digests)
        lost = set()
        for start in range(0, len(missing), 1000):
            chunk = missing[start : start + 1000]
            texts = self._call("reading feature rows", self._joiner.mget, [self._row_key(d) for d in chunk])
            for digest, text in zip(chunk, texts, strict=True):
                if text is None:
                    lost.add(digest)
                else:
                    self._rows[digest] = row_of(text.decode())
        return lost

    def commit_batch(self, batch_id: str, pending: Sequence[PendingDecision]) -> None:
        # One transaction per COMMIT_CHUNK decisions, the manifest last: a transaction blocks Redis for
        # its whole length (about 1 ms per 100 decisions), and the serving workers' reads queue behind it.
        # A joiner dying between chunks leaves the manifest, and whoever finishes the batch commits it
        # again: acknowledging and deleting are idempotent.
        def run(chunk: Sequence[PendingDecision], last: bool) -> None:
            early = self.complete(chunk) if chunk else set()  # closed early: a later reward is a no-op (accepted)
            pipe = self._joiner.pipeline(transaction=True)
            if chunk:
                ids = [item.entry_id for item in chunk]
                pipe.xack(self._stream, self._group, *ids)
                pipe.xdel(self._stream, *ids)
                keys = [key for item in chunk for key in (self._dkey(item.event_id), self._rkey(item.event_id))]
                pipe.delete(*keys)
                for item in chunk:  # remembered for the recovery time: a reused id is refused, a retry a no-op
                    marker = repr(item.due_at) if item.entry_id in early else "1"
                    pipe.set(self._xkey(item.event_id), marker, px=self._recovery_ms)
                    pipe.pexpire(self._ikey(item.event_id), self._recovery_ms)
            if last:
                pipe.hdel(self._batches_key, batch_id)
            pipe.execute()

        starts = range(0, len(pending), COMMIT_CHUNK) or [0]
        for start in starts:
            self._call("committing a batch", run, pending[start : start + COMMIT_CHUNK], start == starts[-1])

    def open_batches(self) -> dict[str, dict[str, Any]]:
        raw = self._call("listing batches", self._joiner.hgetall, self._batches_key)
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    def adopt_batch(self, batch_id: str, expected_stamp: str, owner: str, now: float) -> str | None:
        stamp = uuid.uuid4().hex
        adopted = self._call(
            "adopting a batch",
            self._adopt,
            keys=[self._batches_key],
            args=[batch_id, expected_stamp, owner, repr(now), stamp],
        )
        return stamp if adopted else None

    def pending_count(self) -> int:
        """Decisions in the stream not yet acknowledged (an approximation of the join backlog)."""
        return int(self._call("counting", self._joiner.xlen, self._stream))

    def close_connections(self) -> None:
        self._direct.close()
        self._client.close()
        self._joiner.close()

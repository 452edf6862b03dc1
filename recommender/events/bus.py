"""The event bus: where a decision waits for its rewards until the joiner closes its window.

Two backends behind one interface (``EventBus``):

- ``MemoryEventBus``: in-process, the embedded default (one worker process; ends with it, so a stopping
  service joins its open decisions early).
- ``RedisEventBus``: Redis Streams, shared by every worker on every host. With ``redis``, this module
  and ``features.redis_store`` are the only places importing ``redis``.

Serving side: ``put_decision`` (on /v1/score), ``add_reward``, ``activate``. Joiner side: ``take_new``,
``take_stale``, ``begin_batch``, ``close``, ``set_batch_files``, ``commit_batch``, ``open_batches``,
``adopt_batch`` (the joiner's protocol is described in ``recommender.events.joiner``).

Redis key layout (``P`` = ``bus.key_prefix``; every key carries the hash tag ``{P}`` so the Lua scripts,
which touch several keys, also run on Redis Cluster):

- ``{P}:d:<event_id>``  hash: ``d`` decision JSON, ``slots``, ``due`` (epoch seconds when the reward
  window closes), ``deferred`` and ``activated`` ("0"/"1"), ``batch`` (set once the joiner closed it).
  TTL: wait time + ``join.recovery_seconds``.
- ``{P}:r:<event_id>``  list of rewards ``[slot, value, received_at]`` (JSON), in arrival order; same TTL.
- ``{P}:<stream>``       stream with one entry per decision (``e`` event id, ``due``), read by the joiners
  through the consumer group ``bus.group``; an entry is acknowledged and deleted only once its joined
  event is in the Parquet log.
- ``{P}:batches``        hash: batch id -> manifest JSON of the joiner's batches in flight.
- ``{P}:row:<digest>``  string: the JSON text of one candidate feature row, named by its content digest
  (``recommender.events.codec``); decisions refer to rows by digest. Written with the first decision that
  names it (and again by each worker once per wait + recovery seconds it uses it), TTL 2 x (wait +
  recovery) + 10 minutes, so it outlives every pending decision naming it. Redis must not evict keys
  (``maxmemory-policy noeviction``, as for the stream); a decision whose rows were lost anyway is counted
  as expired, with an error logged.

Every call on the serving side gives up after ``bus.timeout_ms`` and raises ``BusUnavailable``. A reward
is accepted only while its decision's window is open; ``add_reward`` returning ACCEPTED means Redis has
acknowledged the write.
"""

from __future__ import annotations

import abc
import enum
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from recommender.errors import RecommenderError
from recommender.events.codec import encoded_rows, from_json, row_of, to_json
from recommender.records import Decision, Reward
from recommender.settings.loading import AppConfig

log = logging.getLogger(__name__)


class BusError(RecommenderError):
    """The event bus refused an operation."""


class BusUnavailable(BusError, ConnectionError):
    """The bus backend (Redis) could not be reached within its budget. The URL is redacted."""


class DuplicateEventError(BusError):
    """A decision with this event id is already pending."""


class RewardOutcome(enum.Enum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"  # no such event, its window has closed, or it was already joined
    BAD_SLOT = "bad_slot"  # the decision has fewer slots


class CloseStatus(enum.Enum):
    READY = "ready"  # closed by this batch: join it
    EXPIRED = "expired"  # the decision is gone from the bus (kept too long past its window)
    TAKEN = "taken"  # another batch closed it first; that batch's owner (or its recoverer) joins it


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


def _epoch(value: datetime) -> float:
    return value.timestamp()


# ----- decision codec (JSON), shared with nothing else: the Parquet log has its own schema ------------
# A decision over 200 candidates carries 200 item feature rows (~50 KB of JSON). The payload names each
# row by its content digest (recommender.events.codec); the Redis bus stores each distinct row's text once
# under that digest, so a pending decision costs a few KB in Redis instead of ~50 KB, and the worker and
# the joiner move and parse a few KB per decision. What remains (200 ids, digests, probabilities and
# ranks) goes through pydantic_core's JSON codec (row_codec.to_json/from_json): the same JSON document the
# json module would write, at half its cost to write and a third to read, so workers and joiners of either
# version read each other's payloads; floats round-trip exactly (the pmfs are propensities).
def encode_decision(decision: Decision, row_digests: Sequence[str]) -> bytes:
    """Compact UTF-8 JSON of a decision; its candidates' feature rows appear as ``row_digests`` (in order).

    Raises ValueError on a non-finite number and TypeError on a value JSON cannot hold."""
    return to_json(
        {
            "event_id": decision.event_id,
            "timestamp": decision.timestamp.isoformat(),
            "user_id": decision.user_id,
            # Plain dicts: pydantic_core would otherwise call back into Python for each read-only mapping.
            "user_features": dict(decision.user_features),
            "context": dict(decision.context),
            "candidate_ids": decision.candidate_ids,
            "candidate_rows": row_digests,
            "pmfs": decision.pmfs,
            "chosen": decision.chosen,
            "ranking": decision.ranking,
            "model_version": decision.model_version,
            "exploration": dict(decision.exploration),
            "degraded": decision.degraded,
            "deferred": decision.deferred,
        }
    )


def decode_decision(data: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> Decision:
    """Inverse of ``encode_decision`` (``data`` is its parsed JSON, ``row_codec.from_json``; ``rows`` maps
    digests to read-only rows and must hold every digest the decision names: KeyError otherwise). The
    Decision validates itself."""
    return Decision(
        event_id=data["event_id"],
        timestamp=datetime.fromisoformat(data["timestamp"]).astimezone(UTC),
        user_id=data["user_id"],
        user_features=data["user_features"],
        context=data["context"],
        candidate_ids=tuple(data["candidate_ids"]),
        candidate_features=tuple(map(rows.__getitem__, data["candidate_rows"])),
        pmfs=tuple(map(tuple, data["pmfs"])),
        chosen=tuple(data["chosen"]),
        ranking=tuple(data["ranking"]),
        model_version=data["model_version"],
        exploration=data["exploration"],
        degraded=data["degraded"],
        deferred=data["deferred"],
    )


class EventBus(abc.ABC):
    """Pending decisions and their rewards, shared by the serving workers and the joiners."""

    # True when the pending decisions live in this process and end with it (nothing else can join them).
    in_process: bool = False

    def __init__(self, wait_seconds: float, recovery_seconds: float) -> None:
        self.wait_seconds = wait_seconds
        self.recovery_seconds = recovery_seconds

    # ----- serving side ---------------------------------------------------------------------------
    @abc.abstractmethod
    def put_decision(self, decision: Decision) -> None:
        """Make ``decision`` pending; its window closes ``wait_seconds`` after its timestamp.

        Raises DuplicateEventError when that event id is already pending, BusUnavailable when the
        backend cannot be reached within budget.
        """

    @abc.abstractmethod
    def add_reward(self, reward: Reward) -> RewardOutcome:
        """Append a reward to its pending decision, if that decision's window is still open."""

    @abc.abstractmethod
    def activate(self, event_id: str, now: float | None = None) -> bool:
        """Mark a pending decision as shown (for deferred decisions). False when unknown or closed."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise BusUnavailable when the backend cannot be reached."""

    # ----- joiner side ----------------------------------------------------------------------------
    @abc.abstractmethod
    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        """Up to ``count`` decisions no joiner has taken yet, now assigned to ``consumer`` (without waiting:
        a decision is due only after its reward window, so the joiner polls)."""

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
        """Acknowledge and delete ``pending`` (their events are in the log) and forget the batch."""

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


# ===================================================================================================
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

    def __init__(self, wait_seconds: float, recovery_seconds: float) -> None:
        super().__init__(wait_seconds, recovery_seconds)
        self._lock = threading.Lock()
        self._pending: dict[str, MemoryEventBus._Pending] = {}
        self._new: deque[PendingDecision] = deque()
        self._taken: dict[str, tuple[str, float, PendingDecision]] = {}  # entry id -> consumer, since, entry
        self._batches: dict[str, dict[str, Any]] = {}
        self._sequence = 0

    def put_decision(self, decision: Decision) -> None:
        due = _epoch(decision.timestamp) + self.wait_seconds
        with self._lock:
            if decision.event_id in self._pending:
                raise DuplicateEventError(f"event {decision.event_id!r} is already pending")
            self._pending[decision.event_id] = self._Pending(decision, due, rewards=[])
            self._sequence += 1
            self._new.append(PendingDecision(str(self._sequence), decision.event_id, due))

    def _open(self, event_id: str, now: float) -> _Pending | None:
        entry = self._pending.get(event_id)
        if entry is None or entry.batch is not None or now > entry.due:
            return None
        return entry

    def add_reward(self, reward: Reward) -> RewardOutcome:
        received = _epoch(reward.received_at)
        with self._lock:
            entry = self._open(reward.event_id, received)
            if entry is None:
                return RewardOutcome.UNKNOWN
            if reward.slot >= entry.decision.num_slots:
                return RewardOutcome.BAD_SLOT
            assert entry.rewards is not None
            entry.rewards.append(RewardEntry(reward.slot, float(reward.value), received))
            return RewardOutcome.ACCEPTED

    def activate(self, event_id: str, now: float | None = None) -> bool:
        with self._lock:
            entry = self._open(event_id, time.time() if now is None else now)
            if entry is None:
                return False
            entry.activated = True
            return True

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
        with self._lock:
            for item in pending:
                self._taken.pop(item.entry_id, None)
                entry = self._pending.get(item.event_id)
                if entry is not None and entry.batch in (None, batch_id):
                    del self._pending[item.event_id]
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


# ===================================================================================================
# KEYS: decision, stream, then rows to (re)store. ARGV: decision JSON, slots, due, decision TTL ms, event id,
# deferred, row TTL ms, then the rows' texts. 1 stored, 0 the event id is already pending.
_PUT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 5], 'PX', ARGV[7]) end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'slots', ARGV[2], 'due', ARGV[3], 'deferred', ARGV[6], 'activated', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[5], 'due', ARGV[3])
return 1
"""

# KEYS: decision, rewards. ARGV: reward JSON, slot, now. 1 accepted, 0 unknown/closed, -1 bad slot.
_REWARD = """
local h = redis.call('HMGET', KEYS[1], 'due', 'slots', 'batch')
if not h[1] or h[3] or tonumber(ARGV[3]) > tonumber(h[1]) then return 0 end
if tonumber(ARGV[2]) >= tonumber(h[2]) then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
return 1
"""

_ACTIVATE = """
local h = redis.call('HMGET', KEYS[1], 'due', 'batch')
if not h[1] or h[2] or tonumber(ARGV[1]) > tonumber(h[1]) then return 0 end
redis.call('HSET', KEYS[1], 'activated', '1')
return 1
"""

# KEYS: decision and rewards keys of each decision, in pairs. ARGV: batch id. Per decision, in order:
# {0} expired, {1} taken, {2, decision, activated, rewards}. One call closes up to CLOSE_CHUNK decisions.
_CLOSE = """
local out = {}
for i = 1, #KEYS, 2 do
  local h = redis.call('HMGET', KEYS[i], 'd', 'batch', 'activated')
  if not h[1] then
    out[#out + 1] = {0}
  elseif h[2] and h[2] ~= ARGV[1] then
    out[#out + 1] = {1}
  else
    redis.call('HSET', KEYS[i], 'batch', ARGV[1])
    out[#out + 1] = {2, h[1], h[3] or '0', redis.call('LRANGE', KEYS[i + 1], 0, -1)}
  end
end
return out
"""

# KEYS: batches hash. ARGV: batch id, expected stamp, owner, now, new stamp.
_ADOPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local manifest = cjson.decode(raw)
if manifest['stamp'] ~= ARGV[2] then return 0 end
manifest['owner'] = ARGV[3]
manifest['touched'] = tonumber(ARGV[4])
manifest['stamp'] = ARGV[5]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(manifest))
return 1
"""


# Entries in the per-process caches of row digests (stored ones on the serving side, rows on the joiner's).
ROW_CACHE_SIZE = 200_000
# Decisions closed by one Lua call, one call per round trip: one call instead of one per decision saves
# most of the client's per-command work, but a script holds Redis for its whole run (14-70 us per decision
# of 200 candidates, measured on a quiet and on a loaded machine), and the serving workers' reads and
# writes queue behind it; 10 bounds that wait to well under a millisecond.
CLOSE_CHUNK = 10
# Decisions acknowledged and deleted per transaction (see commit_batch), for the same reason.
COMMIT_CHUNK = 100
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
    ) -> None:
        super().__init__(wait_seconds, recovery_seconds)
        import redis  # the Redis backend is imported only when chosen

        from features.redis_store import DirectCommands, redact_url

        self._redis = redis
        self._url = redact_url(url)
        self._tag = f"{{{key_prefix}}}"
        self._stream = f"{self._tag}:{stream}"
        self._batches_key = f"{self._tag}:batches"
        self._group = group
        self._ttl_ms = int((wait_seconds + recovery_seconds) * 1000)
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
        self._put = self._client.register_script(_PUT)
        self._reward = self._client.register_script(_REWARD)
        self._activate = self._client.register_script(_ACTIVATE)
        self._close = self._joiner.register_script(_CLOSE)
        self._adopt = self._joiner.register_script(_ADOPT)
        self._group_ready = False

    # ----- keys and errors ---------------------------------------------------------------------------
    def _dkey(self, event_id: str) -> str:
        return f"{self._tag}:d:{event_id}"

    def _rkey(self, event_id: str) -> str:
        return f"{self._tag}:r:{event_id}"

    def _row_key(self, digest: str) -> str:
        return f"{self._tag}:row:{digest}"

    def _call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise BusUnavailable(f"Redis at {self._url} unavailable while {action}: {exc}") from exc
        except self._redis.RedisError as exc:
            raise BusError(f"Redis at {self._url} refused {action}: {exc}") from exc

    # ----- serving side ------------------------------------------------------------------------------
    def put_decision(self, decision: Decision) -> None:
        due = _epoch(decision.timestamp) + self.wait_seconds
        rows = encoded_rows(decision.candidate_features)
        digests = list(map(itemgetter(2), rows))
        stored = self._stored_rows()
        # Usually every row is stored already: one C-level check instead of one per row.
        new_texts = {} if stored.issuperset(digests) else {d: text for _, text, d in rows if d not in stored}
        created = self._call(
            "storing a decision",
            self._direct.run_script,
            self._put,
            keys=[self._dkey(decision.event_id), self._stream, *map(self._row_key, new_texts)],
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
        if not created:  # the script stopped before writing anything, rows included
            raise DuplicateEventError(f"event {decision.event_id!r} is already pending")
        stored.update(new_texts)

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
        received = _epoch(reward.received_at)
        entry = json.dumps([reward.slot, float(reward.value), received])
        result = self._call(
            "storing a reward",
            self._direct.run_script,
            self._reward,
            keys=[self._dkey(reward.event_id), self._rkey(reward.event_id)],
            args=[entry, reward.slot, repr(received)],
        )
        return {1: RewardOutcome.ACCEPTED, 0: RewardOutcome.UNKNOWN, -1: RewardOutcome.BAD_SLOT}[int(result)]

    def activate(self, event_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        activated = self._call(
            "activating", self._direct.run_script, self._activate, keys=[self._dkey(event_id)], args=[repr(now)]
        )
        return bool(activated)

    def ping(self) -> None:
        self._call("pinging", self._client.ping)

    # ----- joiner side -------------------------------------------------------------------------------
    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From id 0: decisions written before the first joiner started are joined too.
            self._joiner.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except self._redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _joiner_call(self, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def attempt() -> Any:
            self._ensure_group()
            return fn(*args, **kwargs)

        try:
            return self._call(action, attempt)
        except BusError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence): start over
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
        return self._entries(reply[0][1]) if reply else []

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
        return self._entries(reply[1])

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
            pipe = self._joiner.pipeline(transaction=True)
            if chunk:
                ids = [item.entry_id for item in chunk]
                pipe.xack(self._stream, self._group, *ids)
                pipe.xdel(self._stream, *ids)
                keys = [key for item in chunk for key in (self._dkey(item.event_id), self._rkey(item.event_id))]
                pipe.delete(*keys)
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



def bus_backend(config: AppConfig) -> str:
    """``memory`` or ``redis``: ``bus.backend``, where ``auto`` follows the feature store's backend."""
    backend = config.bus.backend
    return config.features.backend if backend == "auto" else backend


def open_bus(config: AppConfig) -> EventBus:
    """The bus the configuration names; Redis at ``bus.redis_url`` or else the feature store's URL."""
    join = config.join
    if bus_backend(config) == "memory":
        return MemoryEventBus(join.reward_wait_time, join.recovery_seconds)
    settings = config.bus
    return RedisEventBus(
        settings.redis_url or config.features.redis.url,
        wait_seconds=join.reward_wait_time,
        recovery_seconds=join.recovery_seconds,
        key_prefix=settings.key_prefix,
        stream=settings.stream,
        group=settings.group,
        timeout_ms=settings.timeout_ms,
    )

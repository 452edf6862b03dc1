"""The joiner's side of the Redis event bus (``recommender.events.redis_bus``): taking decisions from every
shard's stream through the consumer group, closing them, committing batches. A mixin of ``RedisEventBus``,
whose constructor sets the attributes declared below; the key layout is in ``recommender.events.redis_bus``.

Every shard's stream is read by every joiner through the group ``bus.group``: each entry goes to one joiner
(exactly once into the log, ``recommender.events.joiner``), and a take reads the shards in turn, starting one
shard further each time, so that a joiner taking few entries at a time still serves every shard. Entries are
closed, held and acknowledged on the shard their entry id names (``redis_bus_shards.split_entry_id``).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from recommender.events.bus import BusError, ClosedEvent, CloseStatus, Completion, PendingDecision, RewardEntry
from recommender.events.codec import decode_decision, from_json, row_of
from recommender.events.redis_bus_layout import Layout, LayoutFollower
from recommender.events.redis_bus_shards import ShardNodes, entry_id, split_entry_id
from recommender.records import Decision

log = logging.getLogger(__name__)

# Entries in the per-process caches of row digests (stored ones on the serving side, rows on the joiner's).
ROW_CACHE_SIZE = 200_000
# Each of the joiner's commands holds Redis for its whole run, and the serving workers' reads and writes queue
# behind it: the chunks below bound that wait to a few hundred microseconds, about a request's round trip, at
# the cost of one round trip of the joiner's per chunk (docs/benchmarks.md, "Joiner alone": with 3,000 decisions
# due, one read of every new entry held Redis 5-10 ms, and a commit of 100 decisions about 2 ms).
# Decisions closed by one Lua call, one call per round trip: one call instead of one per decision saves
# most of the client's per-command work, but a script runs 14-70 us per decision of 200 candidates (measured on a
# quiet and on a loaded machine).
CLOSE_CHUNK = 10
# Decisions whose completion (``complete``) one pipelined round trip reads.
COMPLETE_CHUNK = 1000
# Decisions acknowledged and deleted per script (see commit_batch): about 20 us of Redis each (XACK, XDEL and
# four keys).
COMMIT_CHUNK = 20
# Decisions whose TTL one call of the hold script removes (three PERSISTs each: about 5 us).
HOLD_CHUNK = 50
# Stream entries one XREADGROUP or XAUTOCLAIM returns (about 3 us each); a take of more reads in turns.
READ_CHUNK = 100
# Feature rows one MGET reads (a new joiner's first batches; later only rows it has not seen): 1,000 held Redis
# for 0.6-0.9 ms.
ROWS_CHUNK = 200

T = TypeVar("T")
# Reads stream entries for a take: (client, stream, at most, cursor) -> (entries, the next read's cursor or None).
Reader = Callable[[redis.Redis, str, int, str], tuple[list[Any], str | None]]


def by_shard(items: Sequence[T], shard_of: Callable[[T], int]) -> dict[int, list[tuple[int, T]]]:
    """``items`` grouped by shard, each with its index in ``items``, in order within a shard."""
    groups: dict[int, list[tuple[int, T]]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[shard_of(item)].append((index, item))
    return groups


def _entry_shard(item: PendingDecision) -> int:
    return split_entry_id(item.entry_id)[0]


class RedisJoinerSide:
    """The joiner-side methods of ``RedisEventBus`` (``recommender.events.bus.EventBus``'s contracts)."""

    completion: Completion | None
    _url: str
    _tag: str  # the bus's home tag: the batches hash is there
    _group: str
    _batches_key: str
    _recovery_ms: int
    _nodes: ShardNodes
    _layout: LayoutFollower
    _groups_ready: set[str]
    _next_shard: int
    _rows: dict[str, Mapping[str, Any]]
    _close: Script
    _hold_script: Script
    _adopt: Script
    _commit: Script
    _call: Callable[..., Any]

    def _joiner_layout(self) -> Layout:
        return self._call("reading the shard count", self._layout.for_joiner)

    def _joiner_call(self, action: str, layout: Layout, shard: int,
                     fn: Callable[[redis.Redis, str], Any]) -> Any:  # fmt: skip
        """``fn(joiner client, stream)`` on ``shard``, once its consumer group exists."""
        stream = layout.streams[shard]

        def attempt() -> Any:
            client = self._nodes.clients(layout.tags[shard]).joiner
            if stream not in self._groups_ready:
                try:
                    # From id 0: decisions written before the first joiner started are joined too.
                    client.xgroup_create(stream, self._group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._groups_ready.add(stream)
            return fn(client, stream)

        try:
            return self._call(action, attempt)
        except BusError as exc:
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence): start over
                # The stream (and its group) is never deleted by the bus, so this is lost data, said loudly: the
                # decisions this joiner had taken are counted as expired when it closes them, but those written
                # since its last read, and their rewards, are gone without a trace to count.
                log.error("the decision stream %s has no consumer group %s any more: Redis at %s lost the event "
                          "bus's data (restarted without persistence?); decisions not yet joined and their rewards "
                          "are lost", stream, self._group, self._url)  # fmt: skip
                self._groups_ready.discard(stream)
                return self._call(action, attempt)
            raise

    @staticmethod
    def _entries(shard: int, messages: Sequence[Any]) -> list[PendingDecision]:
        entries = []
        for raw_id, fields in messages:
            if not fields:  # deleted meanwhile
                continue
            stream_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            entries.append(PendingDecision(entry_id(shard, stream_id), fields[b"e"].decode(), float(fields[b"due"])))
        return entries

    def _take(self, action: str, count: int, read: Reader) -> list[PendingDecision]:
        """Up to ``count`` entries from each shard in turn (starting one shard further each time), then held
        (``_hold``). ``read(client, stream, at_most, cursor)`` gives at most ``READ_CHUNK`` entries a call and
        where the next read starts (None: the shard has no more now); the first read of a shard starts at 0-0."""
        layout = self._joiner_layout()
        start, self._next_shard = self._next_shard % layout.count, self._next_shard + 1
        taken: list[PendingDecision] = []
        for step in range(layout.count):
            shard = (start + step) % layout.count
            cursor: str | None = "0-0"
            while cursor is not None and len(taken) < count:
                at_most = min(count - len(taken), READ_CHUNK)
                messages, cursor = self._joiner_call(
                    action, layout, shard, lambda client, stream, n=at_most, c=cursor: read(client, stream, n, c)
                )
                taken += self._entries(shard, messages)
        return self._hold(layout, taken)

    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        def read(client: redis.Redis, stream: str, at_most: int, cursor: str) -> tuple[list[Any], str | None]:
            reply = client.xreadgroup(self._group, consumer, {stream: ">"}, count=at_most)
            messages = reply[0][1] if reply else []
            return messages, (cursor if len(messages) == at_most else None)  # a full read: there may be more

        return self._take("reading decisions", count, read)

    def take_stale(self, consumer: str, min_idle_seconds: float, count: int) -> list[PendingDecision]:
        def read(client: redis.Redis, stream: str, at_most: int, cursor: str) -> tuple[list[Any], str | None]:
            reply = client.xautoclaim(stream, self._group, consumer, int(min_idle_seconds * 1000), start_id=cursor,
                                      count=at_most)  # fmt: skip
            following = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            return reply[1], (None if following == "0-0" else following)  # 0-0: the scan is through

        return self._take("claiming stale decisions", count, read)

    def _hold(self, layout: Layout, entries: list[PendingDecision]) -> list[PendingDecision]:
        """Remove the TTL of the decisions just taken (module docstring, "Expiry"); returns ``entries``.

        If this call fails after the take, the decisions keep their TTL and the joiner's cycle fails and is
        retried; the next take of them (``take_stale``, by this joiner or another) holds them then."""

        def run() -> None:
            for shard, items in by_shard(entries, _entry_shard).items():
                tag = layout.tags[shard]
                client = self._nodes.clients(tag).joiner
                for start in range(0, len(items), HOLD_CHUNK):
                    keys = [key for _, item in items[start : start + HOLD_CHUNK]
                            for key in (f"{tag}:d:{item.event_id}", f"{tag}:r:{item.event_id}",
                                        f"{tag}:i:{item.event_id}")]  # fmt: skip
                    self._hold_script(keys=keys, client=client)

        if entries:
            self._call("holding taken decisions", run)
        return entries

    def complete(self, pending: Sequence[PendingDecision]) -> set[str]:
        if self.completion is None or not pending:
            return set()
        layout = self._call("reading the shard count", self._layout.current)

        def run() -> list[tuple[PendingDecision, Any]]:
            # Plain reads, pipelined without a transaction in chunks: nothing else waits behind them for long.
            replies: list[tuple[PendingDecision, Any]] = []
            for shard, items in by_shard(pending, _entry_shard).items():
                tag = layout.tags[shard]
                for start in range(0, len(items), COMPLETE_CHUNK):
                    chunk = [item for _, item in items[start : start + COMPLETE_CHUNK]]
                    pipe = self._nodes.clients(tag).joiner.pipeline(transaction=False)
                    for item in chunk:
                        pipe.hmget(f"{tag}:d:{item.event_id}", "complete", "deferred", "activated")
                    replies += zip(chunk, pipe.execute(), strict=True)
            return replies

        return {
            item.entry_id
            for item, (complete, deferred, activated) in self._call("reading completed decisions", run)
            if complete == b"1" and (deferred != b"1" or activated == b"1")
        }

    def begin_batch(self, batch_id: str, manifest: Mapping[str, Any]) -> None:
        self._call("recording a batch", lambda: self._nodes.clients(self._tag).joiner.hset(
            self._batches_key, batch_id, json.dumps(manifest)))  # fmt: skip

    set_batch_files = begin_batch

    def close(self, pending: Sequence[PendingDecision], batch_id: str) -> list[ClosedEvent]:
        if not pending:
            return []
        layout = self._call("reading the shard count", self._layout.current)

        def run() -> list[Any]:
            # One script call per round trip, not one pipeline: Redis runs a client's pipelined commands back
            # to back, so a pipeline closing a whole batch would hold off every serving worker for all of it
            # (tens of ms at a few hundred decisions), and their requests' p99 with them.
            replies: list[Any] = [None] * len(pending)
            for shard, items in by_shard(pending, _entry_shard).items():
                tag = layout.tags[shard]
                client = self._nodes.clients(tag).joiner
                for start in range(0, len(items), CLOSE_CHUNK):
                    chunk = items[start : start + CLOSE_CHUNK]
                    keys = [
                        key for _, item in chunk for key in (f"{tag}:d:{item.event_id}", f"{tag}:r:{item.event_id}")
                    ]
                    for (index, _), reply in zip(chunk, self._close(keys=keys, args=[batch_id], client=client),
                                                 strict=True):  # fmt: skip
                        replies[index] = reply
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
            wanted: dict[int, set[str]] = defaultdict(set)
            for index, data in unseen:
                wanted[_entry_shard(pending[index])].update(data["candidate_rows"])
            lost = self._fetch_rows(layout, wanted)
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

    def _fetch_rows(self, layout: Layout, wanted: Mapping[int, set[str]]) -> set[str]:
        """Make sure this process knows the rows of the digests ``wanted`` from each shard, bringing the others
        from Redis (one MGET per ``ROWS_CHUNK``). Returns the digests whose rows Redis does not have either (normally
        none)."""
        if len(self._rows) + sum(map(len, wanted.values())) > ROW_CACHE_SIZE:
            self._rows.clear()
        lost = set()
        for shard, digests in wanted.items():
            tag = layout.tags[shard]
            missing = [digest for digest in digests if digest not in self._rows]
            for start in range(0, len(missing), ROWS_CHUNK):
                chunk = missing[start : start + ROWS_CHUNK]
                texts = self._call("reading feature rows", lambda c=chunk, t=tag: self._nodes.clients(t).joiner.mget(
                    [f"{t}:row:{d}" for d in c]))  # fmt: skip
                for digest, text in zip(chunk, texts, strict=True):
                    if text is None:
                        lost.add(digest)
                    else:
                        self._rows[digest] = row_of(text.decode())
        return lost

    def commit_batch(self, batch_id: str, pending: Sequence[PendingDecision]) -> None:
        # One script per COMMIT_CHUNK decisions of a shard, the manifest last: a script blocks Redis
        # for its whole length (about 20 us per decision), and the serving workers' reads queue behind it.
        # A joiner dying between chunks leaves the manifest, and whoever finishes the batch commits it
        # again: acknowledging and deleting are idempotent. With one shard the manifest goes with the last
        # chunk; with more it is on the bus's home tag, deleted by a command of its own after every chunk.
        layout = self._call("reading the shard count", self._layout.current)

        def run(chunk: Sequence[PendingDecision], last: bool, shard: int) -> None:
            tag, stream = layout.tags[shard], layout.streams[shard]
            early = self.complete(chunk) if chunk else set()  # closed early: a later reward is a no-op (accepted)
            keys, args = [stream], [self._group, self._recovery_ms, "1" if last else "0", batch_id]
            for item in chunk:
                event = item.event_id
                keys += (f"{tag}:d:{event}", f"{tag}:r:{event}", f"{tag}:x:{event}", f"{tag}:i:{event}")
                args += (split_entry_id(item.entry_id)[1], repr(item.due_at) if item.entry_id in early else "1")
            if last:
                keys.append(self._batches_key)
            self._commit(keys=keys, args=args, client=self._nodes.clients(tag).joiner)

        chunks = [(shard, [item for _, item in items[start : start + COMMIT_CHUNK]])
                  for shard, items in sorted(by_shard(pending, _entry_shard).items())
                  for start in range(0, len(items), COMMIT_CHUNK)] or [(0, [])]  # fmt: skip
        single = layout.tags[0] == self._tag  # one shard: the manifest shares its tag
        for position, (shard, chunk) in enumerate(chunks):
            self._call("committing a batch", run, chunk, single and position == len(chunks) - 1, shard)
        if not single:
            self._call("committing a batch", lambda: self._nodes.clients(self._tag).joiner.hdel(
                self._batches_key, batch_id))  # fmt: skip

    def open_batches(self) -> dict[str, dict[str, Any]]:
        raw = self._call("listing batches", lambda: self._nodes.clients(self._tag).joiner.hgetall(self._batches_key))
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    def adopt_batch(self, batch_id: str, expected_stamp: str, owner: str, now: float) -> str | None:
        stamp = uuid.uuid4().hex
        adopted = self._call(
            "adopting a batch",
            lambda: self._adopt(
                keys=[self._batches_key],
                args=[batch_id, expected_stamp, owner, repr(now), stamp],
                client=self._nodes.clients(self._tag).joiner,
            ),  # fmt: skip
        )
        return stamp if adopted else None

    def pending_count(self) -> int:
        """Decisions in the streams not yet acknowledged (an approximation of the join backlog)."""
        layout = self._call("reading the shard count", self._layout.current)
        return sum(int(self._call("counting", lambda t=tag, s=stream: self._nodes.clients(t).joiner.xlen(s)))
                   for tag, stream in zip(layout.tags, layout.streams, strict=True))  # fmt: skip

"""The Redis event bus: Redis Streams and Lua scripts, shared by every worker on every host.

With ``features.redis_store``, this module and ``redis_bus_shards`` are the only places importing ``redis``.
The request path's scripts (decision, reward, activation) go through ``features.redis_store.DirectCommands``.

Shards (``bus.shards``, ``recommender.events.redis_bus_shards``): each event's keys carry the hash tag ``T``
of its shard, chosen from its event id alone; with one shard (the default) ``T`` is ``{P}`` (``P`` =
``bus.key_prefix``), the bus's keys as they were before shards. Each shard has its own stream, read by every
joiner through the consumer group ``bus.group``; on Redis Cluster (``bus.cluster``) each shard's commands go
to the node holding its tag. The count in force is recorded in Redis and changes only once the bus is
drained (``recommender.events.redis_bus_layout``).

Redis key layout, per shard (``T``):

- ``T:d:<event_id>``  hash: ``d`` decision JSON, ``slots``, ``due`` (epoch seconds when the reward
  window closes), ``deferred`` and ``activated`` ("0"/"1"), ``batch`` (set once the joiner closed it); with a
  ``Completion`` (``recommender.events.bus``, "Early close"): ``s<slot>`` "1" for each slot a reward has
  settled, ``settled`` their count, ``complete`` "1" once every slot is settled.
  TTL: wait time + ``join.recovery_seconds`` while no joiner has taken it; none once a joiner has (see
  "Expiry" below); deleted when its joined event is in the log.
- ``T:r:<event_id>``  list of rewards ``[slot, value, received_at]`` (JSON), in arrival order; same TTL
  as its decision.
- ``T:i:<event_id>``  set of the reward ids its rewards came with (idempotent retries); same TTL as its
  decision while pending, ``join.recovery_seconds`` once joined (a retry after the join is still a no-op).
- ``T:x:<event_id>``  string "1", or the end of its window (epoch seconds) if it was closed early: this event
  was joined; TTL ``join.recovery_seconds``. While it lives, a new decision with that event id is refused like
  a pending duplicate (one id, one log row).
- ``T:<stream>``       stream with one entry per decision (``e`` event id, ``due``), read by the joiners
  through the consumer group ``bus.group``; an entry is acknowledged and deleted only once its joined
  event is in the Parquet log.
- ``T:row:<digest>``  string: the JSON text of one candidate feature row, named by its content digest
  (``recommender.events.codec``); decisions refer to rows by digest (a row is stored in each shard whose
  decisions name it). Written with the first decision of the shard that names it (and again by each worker
  once per wait + recovery seconds it uses it, and after it found Redis unavailable: Redis may be back
  empty), TTL 2 x (wait + recovery) + 10 minutes, so it outlives every pending decision naming it. Redis
  must not evict keys (``maxmemory-policy noeviction``, as for the stream); a decision whose rows were lost
  anyway is counted as expired, with an error logged.
- ``T:retired``       "1" on the shards of a shard count no longer in force (``redis_bus_layout``).

And once per bus, under ``{P}`` whatever the count: ``{P}:batches`` (hash: batch id -> manifest JSON of the
joiner's batches in flight) and ``{P}:shards`` (the shard count in force; absent: 1).

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
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import redis
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisClusterException

from features.redis_store import redact_url
from recommender.events import redis_scripts
from recommender.events.bus import (
    BusError,
    BusUnavailable,
    Completion,
    DuplicateEventError,
    EventBus,
    ReusedEventError,
    RewardOutcome,
)
from recommender.events.codec import encode_decision, encoded_rows, from_json
from recommender.events.redis_bus_joiner import (  # noqa: F401 - the chunk sizes are this bus's settings too
    CLOSE_CHUNK,
    COMMIT_CHUNK,
    COMPLETE_CHUNK,
    HOLD_CHUNK,
    ROW_CACHE_SIZE,
    RedisJoinerSide,
)
from recommender.events.redis_bus_layout import Layout, LayoutFollower, LayoutRecord, ShardLayoutError
from recommender.events.redis_bus_shards import (
    ClusterNodes,
    NodeClients,
    RedisServerNodes,
    ShardNodes,
)
from recommender.records import Decision, Reward

log = logging.getLogger(__name__)

_REWARD_OUTCOMES = {
    1: RewardOutcome.ACCEPTED,
    0: RewardOutcome.UNKNOWN,
    -1: RewardOutcome.BAD_SLOT,
    2: RewardOutcome.DUPLICATE,
    3: RewardOutcome.ACCEPTED,  # the decision was closed early: the reward could not change its joined event
}
RETIRED = -2  # what the request path's scripts answer on a retired shard (redis_scripts)

# Extra lifetime of a stored feature row beyond what the decisions naming it can need.
ROW_TTL_MARGIN_SECONDS = 600


class RedisEventBus(RedisJoinerSide, EventBus):
    """Bus on Redis Streams with a consumer group of joiners, over ``shards`` shards on one Redis server or on
    a Redis Cluster (``cluster``: ``url`` names any of its nodes); see the module docstring for keys."""

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
        shards: int = 1,
        cluster: bool = False,
    ) -> None:
        super().__init__(wait_seconds, recovery_seconds, completion)
        # The completion rule as the reward script's arguments ('' when windows always run to their end).
        self._rule = (completion.aggregation, repr(completion.top)) if completion is not None else ("", "0")
        self._url = redact_url(url)
        self._tag = f"{{{key_prefix}}}"  # the bus's home tag: the one shard's when there is one
        self._group = group
        self._ttl_ms = int((wait_seconds + recovery_seconds) * 1000)
        self._recovery_ms = int(recovery_seconds * 1000)
        # A row is (re)stored by a worker once every ``_row_refresh`` seconds it is used (``_stored_rows``)
        # and lives ``_row_ttl_ms``: refresh + the longest a pending decision lives + a margin, so a row
        # outlives every decision that names it without being rewritten.
        self._row_refresh = wait_seconds + recovery_seconds
        self._row_ttl_ms = int((2 * (wait_seconds + recovery_seconds) + ROW_TTL_MARGIN_SECONDS) * 1000)
        self._rows_stored: dict[str, set[str]] = {}  # tag -> digests this process stored since _rows_generation
        self._rows_generation = time.monotonic()
        self._rows: dict[str, Mapping[str, Any]] = {}  # joiner side: digest -> row
        timeout = timeout_ms / 1000.0
        try:
            self._nodes: ShardNodes = ClusterNodes(url, timeout) if cluster else RedisServerNodes(url, timeout)
        except (redis.RedisError, ValueError) as exc:
            raise BusUnavailable(f"cannot connect to Redis at {self._url}: {exc}") from exc
        self._record = LayoutRecord(key_prefix, stream, self._nodes.clients, self._call)
        self._layout = LayoutFollower(self._record, shards)
        self._batches_key = self._record.batches_key
        # Registered on a client that never connects: a script is its text and SHA1, run on each shard's node.
        scripts = redis.Redis()
        self._put = scripts.register_script(redis_scripts.PUT)
        self._reward = scripts.register_script(redis_scripts.REWARD)
        self._activate = scripts.register_script(redis_scripts.ACTIVATE)
        self._close = scripts.register_script(redis_scripts.CLOSE)
        self._hold_script = scripts.register_script(redis_scripts.HOLD)
        self._adopt = scripts.register_script(redis_scripts.ADOPT)
        self._commit = scripts.register_script(redis_scripts.COMMIT)
        self._groups_ready: set[str] = set()  # streams whose consumer group this process has made sure of
        self._next_shard = 0  # where the next take starts, so that no shard waits behind the others

    # ----- shards, nodes and errors ------------------------------------------------------------------
    @property
    def shards(self) -> int:
        """The shard count in force (the record in Redis; ``bus.shards`` once the bus switched to it)."""
        return self._call("reading the shard count", self._layout.current).count

    @property
    def shard_tags(self) -> tuple[str, ...]:
        """The hash tags of the shards in force, shard 0 first."""
        return self._call("reading the shard count", self._layout.current).tags

    def _node(self, tag: str) -> NodeClients:
        return self._call("reaching Redis", self._nodes.clients, tag)

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BusError:
            raise
        except (redis.ConnectionError, redis.TimeoutError, ClusterDownError, RedisClusterException) as exc:
            self._nodes.invalidate()  # a cluster node may have failed over: ask the cluster again next time
            raise BusUnavailable(f"Redis at {self._url} unavailable while {action}: {exc}") from exc
        except AskError as exc:  # MOVED or ASK: the cluster moved the shard's slot to another node
            self._nodes.invalidate()
            raise BusUnavailable(f"Redis Cluster at {self._url} moved a shard while {action}: {exc}") from exc
        except redis.RedisError as exc:
            raise BusError(f"Redis at {self._url} refused {action}: {exc}") from exc

    def _call_on(self, action: str, tag: str, use: Callable[[NodeClients], Any]) -> Any:
        """``use(clients)`` through ``_call`` on the node holding ``tag``. A MOVED reply (the cluster moved the
        slot, e.g. while resharding) means the command did not run: the slot map is read again and ``use``
        runs once more on the node that holds the slot now, so the caller sees no error."""
        try:
            return self._call(action, use, self._node(tag))
        except BusUnavailable as exc:
            if not isinstance(exc.__cause__, MovedError):
                raise
        return self._call(action, use, self._node(tag))  # _call forgot the old slot map

    def _retired(self, action: str) -> ShardLayoutError:
        return ShardLayoutError(f"the event bus's shard count changed twice while {action}; retry")

    # ----- serving side ------------------------------------------------------------------------------
    def put_decision(self, decision: Decision) -> None:
        due = decision.timestamp.timestamp() + self.wait_seconds
        rows = encoded_rows(decision.candidate_features)
        digests = list(map(itemgetter(2), rows))
        try:
            for _ in range(2):
                created = self._put_on(self._call("reading the shard count", self._layout.for_put), decision, due,
                                       rows, digests)  # fmt: skip
                if created != RETIRED:
                    break
                self._call("reading the shard count", self._layout.stale)  # the count changed: put it again
            else:
                raise self._retired("storing a decision")
        except BusUnavailable:
            # A Redis that was away may come back empty (restarted without persistence): store every row again
            # rather than name rows it no longer has.
            self._rows_stored = {}
            raise
        if created == 0:  # the script stopped before writing anything, rows included
            raise DuplicateEventError(f"event {decision.event_id!r} is already pending")
        if created == -1:
            raise ReusedEventError(f"event {decision.event_id!r} was joined already (an event id is remembered "
                                      f"for {self.recovery_seconds:g} s after its join)")  # fmt: skip

    def _put_on(self, layout: Layout, decision: Decision, due: float, rows: Sequence[tuple[Any, str, str]],
                digests: list[str]) -> int:  # fmt: skip
        """Run the decision script on the decision's shard of ``layout``: 1 stored, 0 pending duplicate, -1
        joined within the recovery time, -2 the shard is retired."""
        shard = layout.shard(decision.event_id)
        tag = layout.tags[shard]
        stored = self._stored_rows(tag)
        # Usually every row is stored already: one C-level check instead of one per row.
        new_texts = {} if stored.issuperset(digests) else {d: text for _, text, d in rows if d not in stored}
        event_id = decision.event_id
        keys = [f"{tag}:d:{event_id}", layout.streams[shard], f"{tag}:x:{event_id}", layout.retired_key(shard),
                *(f"{tag}:row:{digest}" for digest in new_texts)]  # fmt: skip
        args = [encode_decision(decision, digests), decision.num_slots, repr(due), self._ttl_ms, event_id,
                "1" if decision.deferred else "0", self._row_ttl_ms, *new_texts.values()]  # fmt: skip
        created = int(self._call_on("storing a decision", tag,
                                    lambda node: node.direct.run_script(self._put, keys=keys, args=args)))
        if created == 1:
            stored.update(new_texts)
        return created

    def _stored_rows(self, tag: str) -> set[str]:
        """Digests of the rows this process stored in shard ``tag`` within the last ``_row_refresh`` seconds.

        One set per shard and period (a generation), replaced by empty ones when the period is over or the
        sets are full: a row named in a new generation is stored again once, so every row a decision names was
        (re)stored at most ``_row_refresh`` seconds before that decision, and its TTL outlives the decision.
        """
        now = time.monotonic()
        stored = self._rows_stored
        if now - self._rows_generation > self._row_refresh or sum(map(len, stored.values())) > ROW_CACHE_SIZE:
            self._rows_stored = stored = {}  # threads holding an old set only store a row once more
            self._rows_generation = now
        found = stored.get(tag)
        if found is None:
            found = stored[tag] = set()
        return found

    def _on_shard(self, action: str, event_id: str, run: Callable[[Layout, int, str], Any]) -> Any:
        """``run(layout, shard, tag)`` on ``event_id``'s shard of the layout in force, once more on the new
        layout if it answered RETIRED (the shard count changed meanwhile)."""
        for _ in range(2):
            layout = self._call("reading the shard count", self._layout.current)
            shard = layout.shard(event_id)
            result = run(layout, shard, layout.tags[shard])
            if result != RETIRED:
                return result
            self._call("reading the shard count", self._layout.stale)
        raise self._retired(action)

    def add_reward(self, reward: Reward) -> RewardOutcome:
        received = reward.received_at.timestamp()
        entry = json.dumps([reward.slot, float(reward.value), received])
        event_id = reward.event_id

        def run(layout: Layout, shard: int, tag: str) -> int:
            keys = [f"{tag}:d:{event_id}", f"{tag}:r:{event_id}", f"{tag}:i:{event_id}", f"{tag}:x:{event_id}",
                    layout.retired_key(shard)]  # fmt: skip
            args = [entry, reward.slot, repr(received), reward.reward_id or "", self._rule[0],
                    repr(float(reward.value)), self._rule[1]]  # fmt: skip
            return int(self._call_on("storing a reward", tag,
                                     lambda node: node.direct.run_script(self._reward, keys=keys, args=args)))

        return _REWARD_OUTCOMES[self._on_shard("storing a reward", event_id, run)]

    def activate(self, event_id: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now

        def run(layout: Layout, shard: int, tag: str) -> int:
            keys = [f"{tag}:d:{event_id}", layout.retired_key(shard)]
            return int(self._call_on("activating", tag, lambda node: node.direct.run_script(
                self._activate, keys=keys, args=[repr(now)])))  # fmt: skip

        return self._on_shard("activating", event_id, run) == 1

    def pending_slot_names(self, event_id: str) -> tuple[str, ...] | None:
        def run(layout: Layout, shard: int, tag: str) -> bytes | int | None:
            def read(node: NodeClients) -> list[Any]:
                pipe = node.client.pipeline(transaction=False)
                return pipe.hget(f"{tag}:d:{event_id}", "d").exists(layout.retired_key(shard)).execute()

            payload, retired = self._call_on("reading a decision", tag, read)
            return RETIRED if retired else payload

        payload = self._on_shard("reading a decision", event_id, run)
        if payload is None:
            return None
        return tuple(from_json(payload).get("slot_names", ()))  # absent in payloads older than slot names

    def ping(self) -> None:
        layout = self._call("reading the shard count", self._layout.current)
        for node in {node.name: node for node in map(self._node, layout.tags)}.values():
            self._call("pinging", node.client.ping)

    def close_connections(self) -> None:
        self._nodes.close()

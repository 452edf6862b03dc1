"""The shards of the Redis event bus: which hash tag an event's keys carry, and the connection that reaches it.

A bus of ``bus.shards`` = N shards keeps each pending decision, its rewards and its stream entry under one of
N hash tags, chosen from the event id alone (``shard_of``: CRC-32 of its UTF-8 bytes, modulo N), so every
process (any worker, any joiner, any host) finds an event's shard without asking anyone. A Lua script touches
the keys of one event only, all under its shard's tag, so each runs on the one node holding that tag.

Tags (``shard_tags``): N = 1 keeps the bus's historical single tag ``{P}`` (``P`` = ``bus.key_prefix``). For
N > 1, shard ``s`` is ``{P:N.s}``, or ``{P:N.s.k}`` for the smallest k >= 1 that puts it in the s-th of N equal
bands of the 16,384 Redis Cluster hash slots. A cluster whose nodes own equal ranges of slots (what
``redis-cli --cluster create`` makes) therefore holds N / nodes shards on each node when N is a multiple of
the node count. The count is part of every tag: two counts never share a shard, which is what lets the bus
change its count safely (``recommender.events.redis_bus_layout``).

Entry ids. A joiner sees a decision as its stream entry; ``PendingDecision.entry_id`` is the stream's own id
(``<ms>-<seq>``) on shard 0 and ``<s>/<ms>-<seq>`` on shard s > 0: unique across shards, and naming the shard
its entry came from (``split_entry_id``) so that closing and acknowledging never depend on routing.

Connections (``ShardNodes``): one Redis server holds every shard (``RedisServerNodes``), or a Redis Cluster
does (``ClusterNodes``), reached through redis-py's cluster client: it discovers the nodes and which one owns
each tag's slot; each shard then talks to its own node's client (every command a shard sends names keys of
its tag only), and a MOVED reply or a lost node makes the bus ask the cluster again.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from features.redis_store import DirectCommands


def shard_of(event_id: str, count: int) -> int:
    """The shard (0 .. count - 1) of ``event_id``: stable across processes, hosts and Python versions."""
    return 0 if count == 1 else zlib.crc32(event_id.encode()) % count


def shard_tags(prefix: str, count: int) -> tuple[str, ...]:
    """The hash tags (with their braces) of the ``count`` shards of the bus with key prefix ``prefix``."""
    if count == 1:
        return (f"{{{prefix}}}",)
    tags = []
    for shard in range(count):
        low, high = shard * REDIS_CLUSTER_HASH_SLOTS // count, (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        candidate, k = f"{prefix}:{count}.{shard}", 0
        while not low <= key_slot(candidate.encode()) < high:
            k += 1
            candidate = f"{prefix}:{count}.{shard}.{k}"
        tags.append(f"{{{candidate}}}")
    return tuple(tags)


def entry_id(shard: int, stream_id: str) -> str:
    """The ``PendingDecision.entry_id`` of stream entry ``stream_id`` of ``shard`` (module docstring)."""
    return stream_id if shard == 0 else f"{shard}/{stream_id}"


def split_entry_id(entry: str) -> tuple[int, str]:
    """(shard, stream id) of an ``entry_id``."""
    shard, _, stream_id = entry.rpartition("/")
    return (int(shard) if shard else 0), stream_id


@dataclass(frozen=True)
class NodeClients:
    """The clients of the node holding one shard: ``client`` (request path, ``bus.timeout_ms``), ``joiner``
    (long budget: batch commits, large reads) and ``direct`` (the request path's scripts, skipping redis-py's
    client layer: ``features.redis_store.DirectCommands``). Shards on the same node share one NodeClients."""

    name: str
    client: redis.Redis
    joiner: redis.Redis
    direct: DirectCommands


class ShardNodes:
    """Which node's clients serve a tag. Thread-safe."""

    def clients(self, tag: str) -> NodeClients:
        raise NotImplementedError

    def invalidate(self) -> None:  # noqa: B027 - a single server's topology never changes
        """Forget where tags live: the next ``clients`` asks again (after MOVED, or a node out of reach)."""

    def close(self) -> None:
        raise NotImplementedError


class RedisServerNodes(ShardNodes):
    """Every shard on one Redis server (``url``). Nothing connects before the first command."""

    def __init__(self, url: str, timeout: float) -> None:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        joiner = redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
        self._node = NodeClients(url, client, joiner, DirectCommands(client))

    def clients(self, tag: str) -> NodeClients:
        return self._node

    def close(self) -> None:
        self._node.direct.close()
        self._node.client.close()
        self._node.joiner.close()


class ClusterNodes(ShardNodes):
    """Shards on a Redis Cluster reached from ``url`` (any node). The cluster clients (one per time budget)
    are made at the first command, so a bus opens while the cluster is away; ``RedisCluster`` asks a node
    for the slot map then (``CLUSTER SLOTS``) and again after ``invalidate``."""

    def __init__(self, url: str, timeout: float) -> None:
        self._url = url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._clusters: tuple[RedisCluster, RedisCluster] | None = None
        self._by_tag: dict[str, NodeClients] = {}
        self._by_node: dict[str, NodeClients] = {}  # node name -> clients
        self._stale = False

    def _cluster_clients(self) -> tuple[RedisCluster, RedisCluster]:
        if self._clusters is None:
            timeout = self._timeout
            request = RedisCluster.from_url(self._url, socket_timeout=timeout, socket_connect_timeout=timeout)
            joiner = RedisCluster.from_url(self._url, socket_timeout=30.0, socket_connect_timeout=5.0)
            self._clusters = (request, joiner)
        elif self._stale:
            for cluster in self._clusters:
                cluster.nodes_manager.initialize()
            self._stale = False
        return self._clusters

    def clients(self, tag: str) -> NodeClients:
        found = self._by_tag.get(tag)
        if found is not None:
            return found
        with self._lock:
            request, joiner = self._cluster_clients()
            node = request.get_node_from_key(tag)
            client = request.get_redis_connection(node)
            clients = self._by_node.get(node.name)
            if clients is None or clients.client is not client:  # new, or its client remade by a refresh
                if clients is not None:
                    clients.direct.close()
                joiner_node = joiner.get_node_from_key(tag)
                clients = NodeClients(node.name, client, joiner.get_redis_connection(joiner_node),
                                      DirectCommands(client))  # fmt: skip
                self._by_node[node.name] = clients
            self._by_tag[tag] = clients
            return clients

    def invalidate(self) -> None:
        with self._lock:
            self._by_tag = {}
            self._stale = self._clusters is not None

    def close(self) -> None:
        with self._lock:
            for clients in self._by_node.values():
                clients.direct.close()
            if self._clusters is not None:
                for cluster in self._clusters:
                    cluster.close()
            self._clusters, self._by_tag, self._by_node = None, {}, {}

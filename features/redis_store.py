"""The Redis feature store (production backend). The only module of ``features`` importing ``redis``.

Key layout (specified in docs/feature-store.md; ``P`` is ``redis.key_prefix``, ``G`` the group name):

- ``{P:G}:live``      string: the live version id, e.g. ``v7``
- ``{P:G}:seq``       integer: version counter (``INCR`` gives the next id)
- ``{P:G}:versions``  set: version ids that exist
- row of entity ``E`` in version ``V``: ``{P:G:V}:E`` when the group is ``shard_by: group`` (the whole
  version in one hash slot) or ``P:G:V:{E}`` when ``shard_by: entity`` (spread over the cluster).

Reads resolve the live versions without an extra round trip: the process remembers the version it last
saw for each group and fetches the live pointers in the same MGET as the rows. If a pointer moved, the
read is repeated with the new version (once per switch), so a read never mixes two versions.

On a single server that read is one MGET; on Redis Cluster it is one pipeline of GETs, which redis-py
sends as one round trip per node touched (``shard_by: group`` keeps a whole catalog on one node). The
pipeline is not atomic across nodes, so on a cluster a read that finds a row missing reads the pointers
once more before trusting it (a version's rows only vanish when it is dropped, after a switch).

Row cache (single server, groups without a TTL other than the user group, ``redis.row_cache_size`` > 0;
a request reads one user, mostly a new one, so caching users would only grow each process): each process
keeps the rows it read, tagged with the live version and the group's *change token* ``{P:G}:changed``, a random
value that every single-entity write (upsert, delete) replaces in the same MULTI/EXEC as the row. Each
read fetches the live pointer and the token in its MGET beside the rows not cached; MGET is atomic, so
when the token is the one the cache is tagged with, no write has touched the group since the cached rows
were read, and they are exactly what Redis holds. When it differs, the cache is dropped and the read
repeated. A batch load writes a new version (a new tag), so it needs no token. A catalog read of 200
items is then an MGET of a few keys instead of 201: less CPU in the worker and in Redis.
"""

from __future__ import annotations

import collections
import inspect
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from features.config import FeatureStoreConfig
from features.errors import FeatureStoreError, FeatureStoreUnavailable, UnsupportedRedisVersion
from features.store import FeatureStore, ReadRequest

# Batch writes and version drops may take far longer than the read budget.
ADMIN_TIMEOUT_SECONDS = 30.0
# A read retries when a live pointer moved between the version it assumed and the one it saw.
MAX_POINTER_RETRIES = 5


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


# The redis-py releases whose internals DirectCommands was tested with: setup.cfg pins redis to >=5.0,<9.
TESTED_REDIS_VERSIONS = "5.0.0, 6.4.0, 7.4.1 and 8.1.0"


# Methods of the connection class DirectCommands calls, each with the keyword it needs defaulting to True.
_CONNECTION_METHODS = (
    ("send_command", None),
    ("send_packed_command", "check_health"),
    ("read_response", "disconnect_on_error"),
    ("disconnect", None),
)


def missing_direct_internals(client: redis.Redis) -> list[str]:
    """The redis-py internals ``DirectCommands`` relies on that ``client`` (its pool, its connection class)
    lacks; empty when every one is there. What it relies on, beyond redis-py's public client API:

    - ``client.connection_pool.connection_class`` and ``.connection_kwargs``: enough to build a connection
      as the pool's own ``make_connection`` does, but outside the pool;
    - on that connection class: ``send_command(*args, check_health=False)`` (passed on to
      ``send_packed_command``'s ``check_health``), which connects when not connected and drops the
      connection on a socket error, a timeout or an interruption; ``read_response()``, which returns the raw
      reply (no response callbacks), raises an error reply as ``ResponseError`` (``NoScriptError`` for
      NOSCRIPT) and, with ``disconnect_on_error`` on by default, drops the connection on a failed read, so a
      late reply is never read as the next command's; and ``disconnect()``;
    - a registered script's ``sha`` and ``script`` (``run_script`` sends ``EVALSHA``/``SCRIPT LOAD`` itself).

    The behaviours are exercised against a real server by tests/features/test_redis_direct.py; this check
    looks for the names and parameters, so a redis-py that lacks one fails at start, not on a request.
    """
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return [f"{type(client).__name__}.connection_pool"]
    missing: list[str] = []
    connection_class = getattr(pool, "connection_class", None)
    if not isinstance(connection_class, type):
        missing.append(f"{type(pool).__name__}.connection_class")
    if not isinstance(getattr(pool, "connection_kwargs", None), Mapping):
        missing.append(f"{type(pool).__name__}.connection_kwargs")
    if isinstance(connection_class, type):
        name = connection_class.__name__
        for method, parameter in _CONNECTION_METHODS:
            found = getattr(connection_class, method, None)
            if not callable(found):
                missing.append(f"{name}.{method}()")
            elif parameter is not None and not _defaults_to_true(found, parameter):
                missing.append(f"{name}.{method}({parameter}=True)")
    script = client.register_script("return 1")  # computes the SHA1 locally: no round trip
    missing += [f"Script.{attribute}" for attribute in ("sha", "script") if not hasattr(script, attribute)]
    return missing


def _defaults_to_true(method: Callable[..., object], parameter: str) -> bool:
    """Whether ``method`` takes ``parameter`` and it defaults to True."""
    try:
        found = inspect.signature(method).parameters.get(parameter)
    except (TypeError, ValueError):
        return False
    return found is not None and found.default is True


def check_direct_internals(client: redis.Redis) -> None:
    """Raise UnsupportedRedisVersion, naming the installed redis-py version and what is missing, unless
    ``client`` has every internal ``DirectCommands`` relies on (see ``missing_direct_internals``)."""
    missing = missing_direct_internals(client)
    if missing:
        raise UnsupportedRedisVersion(
            f"redis-py {redis.__version__} lacks {', '.join(missing)}, which features.redis_store.DirectCommands "
            f"relies on (tested with redis-py {TESTED_REDIS_VERSIONS}; setup.cfg pins the supported range)"
        )


class DirectCommands:
    """Single Redis commands on the request path, sent over an idle connection taken off a stack.

    ``redis.Redis.execute_command`` spends about as much CPU in its client layer (pool checkout and
    release, the retry wrapper, event dispatch, observability hooks, response callbacks) as in the socket
    I/O of a small command: ~90 µs against ~50 µs for a 4-key MGET, measured. The scoring path sends two
    small commands per request (this store's MGET, the event bus's decision script), so they take an idle
    connection (built from the client's pool settings: URL, timeouts, protocol) off a stack, pack, send
    and read on it, and put it back. As many connections exist as commands ever ran at once: the serving
    threads of a gunicorn worker, or the threads of a server that starts one per request, which reuse them.

    Errors are redis-py's own: ``redis.ConnectionError`` / ``redis.TimeoutError`` after the connection was
    dropped (its next command reconnects), ``redis.ResponseError`` for an error reply (the connection stays
    usable). No retries: request-path callers have a time budget and a circuit breaker of their own.
    Single-server clients only (a cluster routes commands by key slot; use its client there).
    Thread-safe. A forked child never uses its parent's connections; ``close()`` disconnects every
    connection, idle ones at once and ones in use when they come back.

    This relies on redis-py internals (listed in ``missing_direct_internals``); the constructor checks
    them and raises UnsupportedRedisVersion, naming the installed version, when one is missing.
    """

    def __init__(self, client: redis.Redis) -> None:
        check_direct_internals(client)
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: collections.deque[Any] = collections.deque()  # append/pop are atomic: no lock needed
        self._pid = os.getpid()
        self._generation = 0  # bumped by close(): connections taken before it are dropped when they return

    def _take(self) -> tuple[Any, int]:
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use or close
            self._idle = collections.deque()
            self._pid = os.getpid()
        generation = self._generation
        try:
            return self._idle.pop(), generation
        except IndexError:
            return self._connection_class(**self._connection_kwargs), generation

    def _give_back(self, connection: Any, generation: int) -> None:
        if generation == self._generation:
            self._idle.append(connection)
        else:
            connection.disconnect()

    def execute(self, *args: Any) -> Any:
        """One command's raw reply (bytes, not decoded; no response callbacks), e.g. ``execute("MGET", *keys)``."""
        connection, generation = self._take()
        try:
            # send_command and read_response drop the connection themselves on a socket error, a timeout or
            # an interruption, so a late reply can never be read as the answer to the next command.
            connection.send_command(*args, check_health=False)
            return connection.read_response()
        finally:
            self._give_back(connection, generation)

    def run_script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``EVALSHA`` of a registered script; loads it once when the server does not know it (a restarted
        or flushed Redis), as ``Script.__call__`` does."""
        try:
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            self.execute("SCRIPT", "LOAD", script.script)
            return self.execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def close(self) -> None:
        """Disconnect every connection (commands after this make new ones)."""
        self._generation += 1
        while True:
            try:
                connection = self._idle.pop()
            except IndexError:
                return
            connection.disconnect()


@dataclass
class _RowCache:
    """Encoded rows of one group as they were in ``version`` while its change token was ``token``."""

    version: str
    token: bytes | None
    rows: dict[str, bytes] = field(default_factory=dict)


class RedisFeatureStore(FeatureStore):
    """Feature store on a Redis server or Redis Cluster (``redis.cluster: true``)."""

    def __init__(self, config: FeatureStoreConfig) -> None:
        super().__init__(config)
        settings = config.redis
        self._url = redact_url(settings.url)
        self._prefix = settings.key_prefix
        self._cluster = settings.cluster
        timeout = settings.timeout_ms / 1000.0
        client_class = RedisCluster if settings.cluster else redis.Redis
        try:
            self._reader = client_class.from_url(settings.url, socket_timeout=timeout, socket_connect_timeout=timeout)
            self._admin = client_class.from_url(
                settings.url, socket_timeout=ADMIN_TIMEOUT_SECONDS, socket_connect_timeout=ADMIN_TIMEOUT_SECONDS
            )
        except (redis.RedisError, ValueError) as exc:
            raise FeatureStoreUnavailable(f"cannot connect to Redis at {self._url}: {exc}") from exc
        # The request path's MGET skips redis-py's client layer (DirectCommands); a cluster routes by slot.
        self._direct = None if settings.cluster else DirectCommands(self._reader)
        self._assumed_live: dict[str, str | None] = {}
        self._assumed_lock = threading.Lock()
        # Groups whose rows may be cached (see the module docstring); a cache object is replaced, never
        # cleared, so a thread still filling an outdated one cannot put old rows into the current one.
        self._cacheable = frozenset(
            name for name, group in config.groups.items()
            if settings.row_cache_size > 0 and not settings.cluster and group.ttl_seconds is None
            and name != config.user_group
        )  # fmt: skip
        self._caches: dict[str, _RowCache] = {}

    # ----- keys ---------------------------------------------------------------------------------
    def meta_key(self, group: str, name: str) -> str:
        """Key of a group's metadata ``name`` (``live``, ``seq`` or ``versions``)."""
        return f"{{{self._prefix}:{group}}}:{name}"

    def _row_key_prefix(self, group: str, version: str) -> str:
        if self.config.groups[group].shard_by == "group":
            return f"{{{self._prefix}:{group}:{version}}}:"
        return f"{self._prefix}:{group}:{version}:"

    def row_keys(self, group: str, version: str, ids: Sequence[str]) -> list[str]:
        """Keys of the rows of ``ids`` in ``version`` of ``group``, in order (see the module docstring)."""
        prefix = self._row_key_prefix(group, version)
        if self.config.groups[group].shard_by == "group":
            return [prefix + entity for entity in ids]
        return [f"{prefix}{{{entity}}}" for entity in ids]

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise FeatureStoreUnavailable(f"Redis at {self._url} unavailable while {action}: {exc}") from exc
        except redis.RedisError as exc:
            raise FeatureStoreError(f"Redis at {self._url} refused {action}: {exc}") from exc

    # ----- reads --------------------------------------------------------------------------------
    def _get_many(self, keys: list[str]) -> list[bytes | None]:
        """Values of ``keys``: one MGET on a single server; on a cluster, where MGET may not cross
        slots and redis-py refuses MGET in cluster pipelines, one pipeline of GETs (one round trip
        per node touched)."""
        if self._direct is not None:
            return self._direct.execute("MGET", *keys)
        pipe = self._reader.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return pipe.execute()

    def _fetch_raw(self, request: ReadRequest) -> list[list[bytes | None] | None]:
        groups = list(dict.fromkeys(group for group, _ in request))
        tokened = [group for group in groups if group in self._cacheable]
        for _ in range(MAX_POINTER_RETRIES):
            assumed = {group: self._assumed_live.get(group) for group in groups}
            caches = {group: self._caches.get(group) for group in tokened}
            caches = {g: c for g, c in caches.items() if c is not None and c.version == assumed[g]}
            keys = [self.meta_key(group, "live") for group in groups]
            keys += [self.meta_key(group, "changed") for group in tokened]
            plans = []  # per request entry: (cached values or None, positions fetched, start in values)
            served = set()  # groups some of whose rows come from the cache
            for group, ids in request:
                version = assumed[group]
                cache = caches.get(group)
                if version is None:
                    plans.append((None, [], len(keys)))
                    continue
                if cache is None:
                    cached, wanted = None, range(len(ids))
                else:
                    cached = list(map(cache.rows.get, ids))
                    wanted = [i for i, raw in enumerate(cached) if raw is None] if None in cached else []
                if len(wanted) < len(ids):
                    served.add(group)
                plans.append((cached, wanted, len(keys)))
                keys.extend(self.row_keys(group, version, [ids[i] for i in wanted]))
            with self._errors("reading features"):
                values = self._get_many(keys)
            seen = {group: None if raw is None else raw.decode() for group, raw in zip(groups, values, strict=False)}
            if self._cluster and seen == assumed and None in values[len(groups) :]:
                # A cluster pipeline is not atomic: the pointers may have been read before a switch and the
                # rows after the old version was dropped. A version's rows vanish only that way (a drop), so
                # a read missing a row is confirmed by the pointers read again after it: unchanged, nothing
                # was dropped before the rows were read.
                with self._errors("reading features"):
                    again = self._get_many(keys[: len(groups)])
                seen = {group: None if raw is None else raw.decode() for group, raw in zip(groups, again, strict=True)}
            if seen != assumed:
                with self._assumed_lock:
                    self._assumed_live.update(seen)
                continue
            tokens = dict(zip(tokened, values[len(groups) : len(groups) + len(tokened)], strict=True))
            stale = [g for g in served if caches[g].token != tokens[g]]
            if stale:  # written since these rows were cached: drop them, read again
                for group in stale:
                    self._caches[group] = _RowCache(seen[group], tokens[group])
                continue
            return [
                self._assemble(group, ids, plan, values, seen[group], tokens.get(group))
                for (group, ids), plan in zip(request, plans, strict=True)
            ]
        raise FeatureStoreError(f"live versions of {groups} kept changing during a read; try again")

    def _assemble(self, group: str, ids: Sequence[str], plan: tuple, values: list[bytes | None],
                  version: str | None, token: bytes | None) -> list[bytes | None] | None:  # fmt: skip
        """One request entry's values in id order: cached ones and fetched ones (which are then cached);
        None when the group has no live version."""
        cached, wanted, start = plan
        if version is None:
            return None
        fetched = values[start : start + len(wanted)]
        if group not in self._cacheable:
            return fetched
        cache = self._caches.get(group)
        if cache is None or cache.version != version or cache.token != token:
            cache = self._caches[group] = _RowCache(version, token)
        elif len(cache.rows) + len(wanted) > self.config.redis.row_cache_size:
            cache = self._caches[group] = _RowCache(version, token)  # full: start afresh (constant memory)
        merged = list(cached) if cached is not None else fetched
        for i, raw in zip(wanted, fetched, strict=True):
            if raw is not None:
                cache.rows[ids[i]] = raw
            if cached is not None:
                merged[i] = raw
        return merged

    # ----- versions and writes ------------------------------------------------------------------
    def live_version(self, group: str) -> str | None:
        self._group(group)
        with self._errors(f"reading the live version of {group!r}"):
            raw = self._admin.get(self.meta_key(group, "live"))
        return None if raw is None else raw.decode()

    def versions(self, group: str) -> list[str]:
        self._group(group)
        with self._errors(f"listing versions of {group!r}"):
            members = self._admin.smembers(self.meta_key(group, "versions"))
        return sorted((m.decode() for m in members), key=lambda v: int(v[1:]))

    def _new_version(self, group: str) -> str:
        with self._errors(f"creating a version of {group!r}"):
            version = f"v{self._admin.incr(self.meta_key(group, 'seq'))}"
            self._admin.sadd(self.meta_key(group, "versions"), version)
        return version

    def _write(self, group: str, version: str, rows: Sequence[tuple[str, bytes]]) -> None:
        ttl = self.config.groups[group].ttl_seconds
        keys = self.row_keys(group, version, [entity for entity, _ in rows])
        with self._errors(f"writing {len(rows)} rows of {group!r}"):
            pipe = self._admin.pipeline(transaction=False)
            for key, (_, encoded) in zip(keys, rows, strict=True):
                pipe.set(key, encoded, ex=ttl)
            pipe.execute()

    def _write_entity(self, group: str, version: str, entity_id: str, encoded: bytes) -> None:
        ttl = self.config.groups[group].ttl_seconds
        with self._errors(f"writing {entity_id!r} of {group!r}"):
            pipe = self._changing(group)
            pipe.set(self.row_keys(group, version, [entity_id])[0], encoded, ex=ttl)
            pipe.execute()

    def _delete(self, group: str, version: str, entity_id: str) -> bool:
        with self._errors(f"deleting {entity_id!r} from {group!r}"):
            pipe = self._changing(group)
            pipe.delete(self.row_keys(group, version, [entity_id])[0])
            return bool(pipe.execute()[-1])

    def _changing(self, group: str) -> redis.client.Pipeline:
        """A pipeline for a write to the live version of ``group``. On a single server it is a MULTI/EXEC
        that first replaces the group's change token, so a reader sees the token and the row change
        together (see the module docstring). Every writer keeps the token, whatever its own cache
        setting, because readers with a cache rely on it."""
        if self._cluster:  # no MULTI across slots; cluster readers never cache
            return self._admin.pipeline(transaction=False)
        pipe = self._admin.pipeline(transaction=True)
        pipe.set(self.meta_key(group, "changed"), uuid.uuid4().bytes)
        return pipe

    def _set_live(self, group: str, version: str) -> None:
        with self._errors(f"switching {group!r} to {version!r}"):
            self._admin.set(self.meta_key(group, "live"), version)

    def drop_version(self, group: str, version: str) -> None:
        self._group(group)
        if self.live_version(group) == version:
            raise FeatureStoreError(f"refusing to drop live version {version!r} of group {group!r}")
        pattern = self._row_key_prefix(group, version) + "*"
        nodes = [node.redis_connection for node in self._admin.get_primaries()] if self._cluster else [self._admin]
        with self._errors(f"dropping version {version!r} of {group!r}"):
            for node in nodes:
                batch: list[bytes] = []
                for key in node.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 1000:
                        self._unlink(batch)
                        batch = []
                if batch:
                    self._unlink(batch)
            self._admin.srem(self.meta_key(group, "versions"), version)

    def _unlink(self, keys: list[bytes]) -> None:
        pipe = self._admin.pipeline(transaction=False)
        for key in keys:
            pipe.unlink(key)
        pipe.execute()

    def ping(self) -> None:
        with self._errors("pinging"):
            self._reader.ping()

    def _live_versions(self) -> dict[str, str | None]:
        groups = list(self.config.groups)
        with self._errors("reading the live versions"):
            values = self._get_many([self.meta_key(group, "live") for group in groups])
        return {group: None if raw is None else raw.decode() for group, raw in zip(groups, values, strict=True)}

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        self._reader.close()
        self._admin.close()

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
sends as one round trip per node touched (``shard_by: group`` keeps a whole catalog on one node).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster

from features.config import FeatureStoreConfig
from features.errors import FeatureStoreError, FeatureStoreUnavailable
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
        self._assumed_live: dict[str, str | None] = {}
        self._assumed_lock = threading.Lock()

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
        if not self._cluster:
            return self._reader.mget(keys)
        pipe = self._reader.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        return pipe.execute()

    def _fetch_raw(self, request: ReadRequest) -> list[list[bytes | None]]:
        groups = list(dict.fromkeys(group for group, _ in request))
        for _ in range(MAX_POINTER_RETRIES):
            assumed = {group: self._assumed_live.get(group) for group in groups}
            keys = [self.meta_key(group, "live") for group in groups]
            spans = []
            for group, ids in request:
                version = assumed[group]
                start = len(keys)
                if version is not None:
                    keys.extend(self.row_keys(group, version, ids))
                spans.append((start, len(keys)))
            with self._errors("reading features"):
                values = self._get_many(keys)
            seen = {group: None if raw is None else raw.decode() for group, raw in zip(groups, values, strict=False)}
            if seen == assumed:
                return [
                    values[start:stop] if stop > start else [None] * len(ids)
                    for (start, stop), (_, ids) in zip(spans, request, strict=True)
                ]
            with self._assumed_lock:
                self._assumed_live.update(seen)
        raise FeatureStoreError(f"live versions of {groups} kept changing during a read; try again")

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

    def _delete(self, group: str, version: str, entity_id: str) -> bool:
        with self._errors(f"deleting {entity_id!r} from {group!r}"):
            return bool(self._admin.delete(self.row_keys(group, version, [entity_id])[0]))

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

    def close(self) -> None:
        self._reader.close()
        self._admin.close()

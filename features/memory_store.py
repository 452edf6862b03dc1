"""The in-process feature store: the embedded default, no server.

Rows are kept encoded, exactly as Redis keeps them, so both backends share the encoding, the decode
cache and the contract tests. Writers take a lock; readers do not (they look up the live version's dict
once and read from it; replacing a dict entry is atomic under the GIL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from features.config import FeatureStoreConfig
from features.errors import FeatureStoreError
from features.store import FeatureStore, ReadRequest

# An entity's stored value: encoded row and expiry (time.monotonic() seconds) or None.
_Stored = tuple[bytes, float | None]


class MemoryFeatureStore(FeatureStore):
    """Feature store held in this process's memory. Lost when the process exits."""

    def __init__(self, config: FeatureStoreConfig) -> None:
        super().__init__(config)
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, dict[str, _Stored]]] = {group: {} for group in config.groups}
        self._live: dict[str, str] = {}
        self._sequence: dict[str, int] = {group: 0 for group in config.groups}

    def _fetch_raw(self, request: ReadRequest) -> list[list[bytes | None] | None]:
        now = time.monotonic()
        result: list[list[bytes | None] | None] = []
        for group, ids in request:
            version = self._live.get(group)
            if version is None:
                result.append(None)
                continue
            rows = self._data[group].get(version, {})
            values: list[bytes | None] = []
            for entity in ids:
                stored = rows.get(entity)
                if stored is None or (stored[1] is not None and stored[1] <= now):
                    values.append(None)
                else:
                    values.append(stored[0])
            result.append(values)
        return result

    def _new_version(self, group: str) -> str:
        with self._lock:
            self._sequence[group] += 1
            version = f"v{self._sequence[group]}"
            self._data[group][version] = {}
            return version

    def _write(self, group: str, version: str, rows: Sequence[tuple[str, bytes]]) -> None:
        ttl = self.config.groups[group].ttl_seconds
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            target = self._data[group].get(version)
            if target is None:
                raise FeatureStoreError(f"group {group!r} has no version {version!r}")
            for entity, encoded in rows:
                target[entity] = (encoded, expires)

    def _delete(self, group: str, version: str, entity_id: str) -> bool:
        with self._lock:
            return self._data[group].get(version, {}).pop(entity_id, None) is not None

    def live_version(self, group: str) -> str | None:
        self._group(group)
        return self._live.get(group)

    def versions(self, group: str) -> list[str]:
        self._group(group)
        return sorted(self._data[group], key=lambda v: int(v[1:]))

    def _set_live(self, group: str, version: str) -> None:
        with self._lock:
            self._live[group] = version

    def drop_version(self, group: str, version: str) -> None:
        self._group(group)
        with self._lock:
            if self._live.get(group) == version:
                raise FeatureStoreError(f"refusing to drop live version {version!r} of group {group!r}")
            self._data[group].pop(version, None)

    def ping(self) -> None:
        return None

    def _live_versions(self) -> dict[str, str | None]:
        return {group: self._live.get(group) for group in self.config.groups}

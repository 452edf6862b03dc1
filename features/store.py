"""The feature-store interface shared by the in-process and Redis backends.

Data model: each feature group has numbered *versions*; one is *live*. Reads and single-entity writes go
to the live version. A batch materialization writes a new version beside the live one, then switches
the live pointer atomically and drops the old version, so a reader sees either the old snapshot or the
new one, never a mixture, and a failed load leaves the live version untouched.

Every entity's row is one encoded value (see ``features.encoding``): a reader never sees an entity half
written. Missing entities come back with the group's defaults and are listed as missing, not raised.

A group with no live version (nothing was ever loaded, or Redis restarted empty) reads as all defaults too,
and the read result says so (``EntityRows.loaded``, ``UserItemFeatures.unloaded``): the live pointer is read
in the same round trip as the rows, so this costs nothing. The store logs a warning once when a group is
found unloaded (and once when it is loaded again), not on every read.

Backends implement the small set of ``_``-prefixed primitives; everything else lives here once.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.config import FeatureGroup, FeatureStoreConfig
from features.encoding import DecodeCache, FeatureRow, default_row, encode_row, normalize_row
from features.errors import FeatureLoadError, FeatureSchemaError, FeatureStoreError
from features.frames import check_structure, iter_encoded_chunks, read_parquet

# (group name, entity ids) pairs fetched together in one round trip.
ReadRequest = Sequence[tuple[str, Sequence[str]]]
ProgressCallback = Callable[[int], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntityRows:
    """Rows of one group for the requested ids, in request order (defaults for missing ids)."""

    group: str
    ids: tuple[str, ...]
    rows: tuple[FeatureRow, ...]
    missing: tuple[str, ...]
    # False: the group has no live version (nothing loaded), so every row is the default.
    loaded: bool = True


@dataclass(frozen=True)
class UserItemFeatures:
    """What a scoring request needs: one user's row and the candidates' rows, in candidate order."""

    user: FeatureRow
    user_missing: bool
    items: tuple[FeatureRow, ...]
    missing_items: tuple[str, ...]
    # Groups read that have no live version (nothing loaded: their rows are all defaults).
    unloaded: tuple[str, ...] = ()


def unloaded_reason(groups: Iterable[str]) -> str:
    """What a read of groups with no live version means, for a degraded decision or a health check."""
    names = [repr(group) for group in groups]
    if len(names) == 1:
        return f"feature group {names[0]} has no live version (not loaded): its features are the defaults"
    return f"feature groups {', '.join(names)} have no live version (not loaded): their features are the defaults"


@dataclass(frozen=True)
class LoadReport:
    """Outcome of a batch materialization."""

    group: str
    version: str
    rows: int
    activated: bool
    previous_version: str | None


class FeatureStore(abc.ABC):
    """Read and write feature rows of the configured groups. Thread-safe."""

    def __init__(self, config: FeatureStoreConfig) -> None:
        self.config = config
        # Decoded rows are remembered for the groups read many at a time and again and again (the catalog),
        # not for the user group: one user row per request, a new user most of the time, so caching them
        # only grows each process (to decode_cache_size rows, ~0.5 KB each) for a rare hit.
        self._decoders = {
            name: DecodeCache(0 if name == config.user_group else config.decode_cache_size) for name in config.groups
        }
        self._defaults = {name: default_row(group) for name, group in config.groups.items()}
        self._unloaded: frozenset[str] = frozenset()  # groups last found with no live version (for the log)
        self._unloaded_lock = threading.Lock()

    # ----- primitives each backend provides -------------------------------------------------------
    @abc.abstractmethod
    def _fetch_raw(self, request: ReadRequest) -> list[list[bytes | None] | None]:
        """Encoded rows of the live versions, one list per request entry, in ONE round trip; None for an
        entry whose group has no live version."""

    @abc.abstractmethod
    def _new_version(self, group: str) -> str:
        """Reserve a fresh version id for ``group`` (not live, empty)."""

    @abc.abstractmethod
    def _write(self, group: str, version: str, rows: Sequence[tuple[str, bytes]]) -> None:
        """Write encoded rows into ``version`` in one round trip (applying the group's TTL)."""

    @abc.abstractmethod
    def _delete(self, group: str, version: str, entity_id: str) -> bool:
        """Delete one entity from ``version``; True when it existed."""

    @abc.abstractmethod
    def live_version(self, group: str) -> str | None:
        """The live version of ``group``, or None when nothing was ever written."""

    @abc.abstractmethod
    def versions(self, group: str) -> list[str]:
        """Every version of ``group`` that exists (live, loading, or not yet dropped)."""

    @abc.abstractmethod
    def _set_live(self, group: str, version: str) -> None:
        """Point ``group`` at ``version`` atomically."""

    @abc.abstractmethod
    def drop_version(self, group: str, version: str) -> None:
        """Delete every row of a version that is not live. Refuses to drop the live version."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise FeatureStoreUnavailable when the backend cannot be reached."""

    @abc.abstractmethod
    def _live_versions(self) -> dict[str, str | None]:
        """The live version of every configured group (None: none), in one round trip within the read
        budget (``redis.timeout_ms``). Raises FeatureStoreUnavailable like a read."""

    def unloaded_groups(self) -> list[str]:
        """Configured groups with no live version, in configuration order: one round trip, bounded by the
        read budget, and a ping too (raises FeatureStoreUnavailable). For health checks."""
        live = self._live_versions()
        unloaded = [group for group in self.config.groups if live.get(group) is None]
        self._note_unloaded(unloaded, checked=self.config.groups)
        return unloaded

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""

    # ----- reads -------------------------------------------------------------------------------
    def _group(self, name: str) -> FeatureGroup:
        try:
            return self.config.groups[name]
        except KeyError:
            declared = sorted(self.config.groups)
            raise FeatureStoreError(f"unknown feature group {name!r} (declared: {declared})") from None

    def _rows(self, group: str, ids: Sequence[str], raw: list[bytes | None] | None) -> EntityRows:
        if raw is None:  # no live version
            default = self._defaults[group]
            return EntityRows(group=group, ids=tuple(ids), rows=(default,) * len(ids), missing=tuple(ids),
                              loaded=False)  # fmt: skip
        # 200 catalog rows per request: the common case (all present, all decoded before) runs in C.
        decoder = self._decoders[group]
        rows = decoder.known(raw)
        if None in rows:
            default, decode = self._defaults[group], decoder.decode
            rows = [row if row is not None else default if value is None else decode(value)
                    for row, value in zip(rows, raw, strict=True)]  # fmt: skip
        missing = tuple(entity for entity, value in zip(ids, raw, strict=True) if value is None) if None in raw else ()
        return EntityRows(group=group, ids=tuple(ids), rows=tuple(rows), missing=missing)

    def read_many(self, request: ReadRequest) -> list[EntityRows]:
        """Rows for several groups at once, in one round trip to the backend."""
        for group, _ in request:
            self._group(group)
        raw = self._fetch_raw(request)
        if None in raw or self._unloaded:
            self._note_unloaded({group for (group, _), values in zip(request, raw, strict=True) if values is None},
                                checked={group for group, _ in request})  # fmt: skip
        return [self._rows(group, ids, values) for (group, ids), values in zip(request, raw, strict=True)]

    def _note_unloaded(self, unloaded: Iterable[str], checked: Iterable[str]) -> None:
        """Log groups found with no live version, and groups found loaded again, once per change."""
        checked = set(checked)
        now = (self._unloaded - checked) | set(unloaded)
        if now == self._unloaded:
            return
        with self._unloaded_lock:
            before, self._unloaded = self._unloaded, frozenset(now)
        for group in sorted(now - before):
            log.warning("feature group %r has no live version (nothing loaded, or the store restarted empty): "
                        "every read of it gives the group's defaults until it is loaded", group)  # fmt: skip
        for group in sorted(before - now):
            log.info("feature group %r has a live version again", group)

    def read(self, group: str, ids: Sequence[str]) -> EntityRows:
        """Rows of ``ids`` in ``group`` (defaults for missing ones), one round trip."""
        return self.read_many([(group, ids)])[0]

    def read_user_items(self, user_id: str | None, item_ids: Sequence[str]) -> UserItemFeatures:
        """One user's row and the candidates' rows in one round trip. ``user_id=None``: defaults."""
        user_group, item_group = self.config.user_group, self.config.item_group
        request: list[tuple[str, Sequence[str]]] = [(item_group, item_ids)]
        if user_id is not None:
            request.append((user_group, [user_id]))
        results = self.read_many(request)
        items = results[0]
        if user_id is None:
            unloaded = () if items.loaded else (item_group,)
            return UserItemFeatures(self._defaults[user_group], True, items.rows, items.missing, unloaded)
        user = results[1]
        unloaded = tuple(r.group for r in results if not r.loaded)
        return UserItemFeatures(user.rows[0], bool(user.missing), items.rows, items.missing, unloaded)

    # ----- writes ------------------------------------------------------------------------------
    def _live_or_new(self, group: str) -> str:
        version = self.live_version(group)
        if version is None:
            version = self._new_version(group)
            self._set_live(group, version)
        return version

    def upsert(self, group: str, entity_id: str, values: dict[str, Any]) -> None:
        """Validate and write one entity's whole row into the live version (replacing it at once)."""
        spec = self._group(group)
        if not isinstance(entity_id, str) or not entity_id:
            raise FeatureSchemaError(f"group {group!r}: entity id must be a non-empty string, got {entity_id!r}")
        row = normalize_row(group, spec, values, where=f", entity {entity_id!r}")
        self._write_entity(group, self._live_or_new(group), entity_id, encode_row(row))

    def _write_entity(self, group: str, version: str, entity_id: str, encoded: bytes) -> None:
        """Write one entity's row into the live ``version`` (a backend may also record the change)."""
        self._write(group, version, [(entity_id, encoded)])

    def delete(self, group: str, entity_id: str) -> bool:
        """Remove one entity from the live version; True when it existed."""
        self._group(group)
        version = self.live_version(group)
        return False if version is None else self._delete(group, version, entity_id)

    def activate(self, group: str, version: str) -> None:
        """Make ``version`` live (atomically). It must exist."""
        self._group(group)
        if version not in self.versions(group):
            raise FeatureStoreError(f"group {group!r} has no version {version!r} (have {self.versions(group)})")
        self._set_live(group, version)

    def load_frame(
        self,
        group: str,
        frame: pd.DataFrame,
        *,
        activate: bool = True,
        drop_previous: bool = True,
        progress: ProgressCallback | None = None,
    ) -> LoadReport:
        """Materialize a whole group from ``frame`` into a new version.

        The frame needs the group's key column and one column per declared feature. Rows are validated,
        encoded and written in pipelined chunks of ``redis.write_chunk_size``; ``progress`` is called
        with the number of rows written after each chunk. With ``activate`` the new version becomes live
        atomically when complete (and with ``drop_previous`` the old one is then deleted); without it,
        call ``activate`` later. On any failure the partial version is dropped, the live version is
        untouched, and FeatureLoadError says how many rows had been written.
        """
        spec = self._group(group)
        check_structure(group, spec, frame)  # before a version exists: nothing to undo
        chunks = iter_encoded_chunks(group, spec, frame, self.config.redis.write_chunk_size)
        version = self._new_version(group)
        written = 0
        try:
            for chunk in chunks:
                self._write(group, version, chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        except Exception as exc:
            self._discard(group, version)
            raise FeatureLoadError(
                f"loading group {group!r} failed after {written} of {len(frame)} rows; the live version "
                f"{self.live_version(group)!r} is unchanged: {exc}",
                rows_written=written,
            ) from exc
        previous = self.live_version(group)
        if activate:
            self._set_live(group, version)
            if drop_previous and previous is not None and previous != version:
                self.drop_version(group, previous)
        return LoadReport(group=group, version=version, rows=written, activated=activate, previous_version=previous)

    def load_parquet(self, group: str, path: str | Path, **options: Any) -> LoadReport:
        """``load_frame`` from a Parquet file or dataset directory."""
        return self.load_frame(group, read_parquet(path), **options)

    def _discard(self, group: str, version: str) -> None:
        # The load error is the one worth reporting; an orphan version is harmless.
        with contextlib.suppress(FeatureStoreError):
            self.drop_version(group, version)

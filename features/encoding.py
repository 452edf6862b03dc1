"""Validation and the on-the-wire encoding of one entity's feature row.

A row is encoded as one compact JSON object (UTF-8 bytes): safe to decode (never pickle), readable
with ``redis-cli``, and one value per entity so that a write replaces the whole row at once and a
reader never sees a half-written entity.

Decoding goes through ``DecodeCache``, keyed by the encoded bytes themselves: item features change
rarely and are read 200 at a time, so most reads are a dictionary hit instead of a JSON parse, and a
changed value is a different key, so the cache can never serve a stale row.

A row the cache decodes keeps its JSON text and content digest with it (``ROW_ENCODINGS``): the encoded bytes
are ``encode_row``'s compact JSON, the same text the decision log writes for that row, so a decision naming the
row by digest (``recommender.events.codec``) finds both without re-encoding it, and the digest is computed
once, when the row is loaded, rather than in a request.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from features.config import FeatureGroup, FeatureSpec, FeatureType
from features.errors import FeatureSchemaError

FeatureRow = Mapping[str, Any]

DIGEST_BYTES = 12
ENCODINGS_SIZE = 100_000
# id(row) -> (row, text, digest) of read-only rows whose compact JSON text is known; the entry holds its row,
# so that the id cannot be reused while it is cached. Emptied when full (constant memory, no bookkeeping).
ROW_ENCODINGS: dict[int, tuple[FeatureRow, str, str]] = {}


def row_digest(text: str | bytes) -> str:
    """The content digest of a row's JSON text (BLAKE2b, 96 bits): 24 hex characters."""
    return hashlib.blake2b(text.encode() if isinstance(text, str) else text, digest_size=DIGEST_BYTES).hexdigest()


def remember_encoding(row: FeatureRow, text: str, digest: str | None = None) -> tuple[FeatureRow, str, str]:
    """Record that read-only ``row`` is encoded as ``text`` (its digest computed unless given); returns the
    ``(row, text, digest)`` entry of ``ROW_ENCODINGS``."""
    entry = (row, text, row_digest(text) if digest is None else digest)
    if len(ROW_ENCODINGS) >= ENCODINGS_SIZE:
        ROW_ENCODINGS.clear()
    ROW_ENCODINGS[id(row)] = entry
    return entry


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def normalize_value(spec: FeatureSpec, value: Any, *, where: str) -> Any:
    """Check ``value`` against ``spec`` and return it in canonical JSON-ready form.

    Canonical forms: numeric -> float; categorical -> str; tags -> list[str]; vector -> list[float]
    of length ``spec.dim``. Null/NaN becomes the default when the spec is nullable. ``where`` names the
    place (group, feature, row) for the error message.
    """
    if _is_null(value):
        if spec.nullable:
            return spec.default_value()
        raise FeatureSchemaError(f"{where}: null/NaN is not allowed (declare nullable: true to use the default)")
    kind = spec.type
    if kind is FeatureType.NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise FeatureSchemaError(f"{where}: expected a number, got {type(value).__name__} {value!r:.40}")
        number = float(value)
        if not math.isfinite(number):
            raise FeatureSchemaError(f"{where}: expected a finite number, got {number}")
        return number
    if kind is FeatureType.CATEGORICAL:
        if not isinstance(value, str):
            raise FeatureSchemaError(f"{where}: expected a string, got {type(value).__name__} {value!r:.40}")
        return value
    if isinstance(value, str) or not isinstance(value, list | tuple | np.ndarray):
        raise FeatureSchemaError(f"{where}: expected a list, got {type(value).__name__} {value!r:.40}")
    if kind is FeatureType.TAGS:
        if not all(isinstance(tag, str) for tag in value):
            raise FeatureSchemaError(f"{where}: every tag must be a string")
        return list(value)
    try:
        vector = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FeatureSchemaError(f"{where}: expected a list of numbers") from exc
    if vector.shape != (spec.dim,):
        raise FeatureSchemaError(f"{where}: expected a vector of length {spec.dim}, got shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise FeatureSchemaError(f"{where}: vector has a NaN or infinite entry")
    return vector.tolist()


def normalize_row(group_name: str, group: FeatureGroup, values: Mapping[str, Any], *, where: str = "") -> dict:
    """Validate a whole row against the group's schema; return it with every feature present.

    Unknown feature names are refused; a feature absent from ``values`` is treated like a null.
    """
    unknown = set(values) - set(group.features)
    if unknown:
        raise FeatureSchemaError(f"group {group_name!r}{where}: unknown features {sorted(unknown)}")
    return {
        name: normalize_value(spec, values.get(name), where=f"group {group_name!r}{where}, feature {name!r}")
        for name, spec in group.features.items()
    }


def default_row(group: FeatureGroup) -> FeatureRow:
    """The read-only row a missing entity gets: every feature at its default."""
    return MappingProxyType({name: spec.default_value() for name, spec in group.features.items()})


def encode_row(row: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes of a normalized row."""
    return json.dumps(row, separators=(",", ":"), allow_nan=False).encode()


class DecodeCache:
    """Decodes encoded rows into read-only mappings, remembering up to ``capacity`` of them.

    When full the cache is emptied and refilled (constant memory, no per-hit bookkeeping: the hot path
    is a single dict lookup). Rows returned are ``MappingProxyType`` and must be treated as read-only. A row it
    caches is recorded in ``ROW_ENCODINGS`` with ``raw`` as its text: ``raw`` must be ``encode_row``'s bytes
    (what the store writes), which are the compact JSON ``json.dumps`` writes of the decoded row again.
    Not locked: concurrent use from threads is safe because dict operations are atomic under the GIL
    and a racing insert only duplicates work.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: dict[bytes, FeatureRow] = {}

    def decode(self, raw: bytes) -> FeatureRow:
        row = self._rows.get(raw)
        if row is None:
            row = MappingProxyType(json.loads(raw))
            if self.capacity:
                if len(self._rows) >= self.capacity:
                    self._rows.clear()
                self._rows[raw] = row
                remember_encoding(row, raw.decode(), row_digest(raw))
        return row

    def known(self, raws: Sequence[bytes | None]) -> list[FeatureRow | None]:
        """The cached row of each encoded value, None where it is not cached (or the value is None)."""
        return list(map(self._rows.get, raws))

    def __len__(self) -> int:
        return len(self._rows)

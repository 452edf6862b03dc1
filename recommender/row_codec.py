"""JSON text of feature rows, and their content digests, shared by the event bus and the Parquet event log.

A decision over 200 candidates carries 200 item feature rows. The rows come from the feature store's
decode cache, so the same read-only row object recurs across decisions; re-encoding it for the bus and
again for the log would dominate the cost of logging. Here a read-only row (``MappingProxyType``) is
encoded (and digested) once per object, and a text is decoded once into a read-only row that remembers
its text, so ``row_text(row_of(text))`` is a dictionary hit. Both caches are bounded and emptied when full.

The digest (BLAKE2b, 96 bits, hex) names a row's text: the Redis event bus stores each distinct row once
under its digest and lets decisions refer to it, instead of copying 200 rows into every pending decision.

Thread-safety: dict operations are atomic under the GIL; a race only repeats an encoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

CACHE_SIZE = 100_000
DIGEST_BYTES = 12
_by_row: dict[int, tuple[Mapping[str, Any], str, str]] = {}  # id(row) -> (row, text, digest)
_row_by_text: dict[str, Mapping[str, Any]] = {}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"feature value of type {type(value).__name__} is not JSON-serializable")


def dumps(value: Any) -> str:
    """Compact JSON (no NaN/infinity; numpy values as plain numbers and lists)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_json_default)


def digest_of(text: str) -> str:
    """The content digest of a row's JSON text: 24 hex characters."""
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).hexdigest()


def _remember(row: Mapping[str, Any], text: str) -> tuple[str, str]:
    digest = digest_of(text)
    if len(_by_row) >= CACHE_SIZE:
        _by_row.clear()
    _by_row[id(row)] = (row, text, digest)  # holds the row, so its id cannot be reused while cached
    return text, digest


def row_text_and_digest(row: Mapping[str, Any]) -> tuple[str, str]:
    """(compact JSON text, digest) of a feature row; read-only rows are encoded once per object."""
    if type(row) is not MappingProxyType:
        text = dumps(dict(row))
        return text, digest_of(text)
    cached = _by_row.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1], cached[2]
    return _remember(row, dumps(dict(row)))


def row_text(row: Mapping[str, Any]) -> str:
    """Compact JSON object of a feature row; read-only rows are encoded once per object."""
    return row_text_and_digest(row)[0]


def row_of(text: str) -> Mapping[str, Any]:
    """The read-only row a JSON object text encodes; the same text gives the same row object."""
    row = _row_by_text.get(text)
    if row is None:
        row = MappingProxyType(json.loads(text))
        if len(_row_by_text) >= CACHE_SIZE:
            _row_by_text.clear()
        _row_by_text[text] = row
        _remember(row, text)
    return row

"""JSON text of feature rows, shared by the event bus payloads and the Parquet event log.

A decision over 200 candidates carries 200 item feature rows. The rows come from the feature store's
decode cache, so the same read-only row object recurs across decisions; re-encoding it for the bus and
again for the log would dominate the cost of logging. Here a read-only row (``MappingProxyType``) is
encoded once per object, and a text is decoded once into a read-only row that remembers its text, so
``row_text(row_of(text))`` is a dictionary hit. Both caches are bounded and emptied when full.

Thread-safety: dict operations are atomic under the GIL; a race only repeats an encoding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

CACHE_SIZE = 100_000
_text_by_row: dict[int, tuple[Mapping[str, Any], str]] = {}
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


def _remember(row: Mapping[str, Any], text: str) -> None:
    if len(_text_by_row) >= CACHE_SIZE:
        _text_by_row.clear()
    _text_by_row[id(row)] = (row, text)  # holds the row, so its id cannot be reused while cached


def row_text(row: Mapping[str, Any]) -> str:
    """Compact JSON object of a feature row; read-only rows are encoded once per object."""
    if type(row) is not MappingProxyType:
        return dumps(dict(row))
    cached = _text_by_row.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1]
    text = dumps(dict(row))
    _remember(row, text)
    return text


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

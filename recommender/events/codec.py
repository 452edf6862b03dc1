"""The JSON encodings of the event bus and the event log: feature rows with their content digests (shared by
the bus and the Parquet event log), and the bus's decision payload (``encode_decision``/``decode_decision``).

A decision over 200 candidates carries 200 item feature rows. The rows come from the feature store's
decode cache, so the same read-only row object recurs across decisions; re-encoding it for the bus and
again for the log would dominate the cost of logging. A row the feature store's decode cache loads comes with
its text and digest already (``features.encoding.ROW_ENCODINGS``: its stored bytes are that text, digested
once at the load); any other read-only row (``MappingProxyType``) is encoded (and digested) once per object,
into the same cache; and a text is decoded once into a read-only row that remembers its text, so
``row_text(row_of(text))`` is a dictionary hit. Both caches are bounded and emptied when full.

The digest (BLAKE2b, 96 bits, hex) names a row's text: the Redis event bus stores each distinct row once
under its digest and lets decisions refer to it, instead of copying 200 rows into every pending decision.

Row texts are written by the ``json`` module (``dumps``), so a row's text and digest never change with the
encoder's version. Larger documents made of many numbers and short strings (the bus's decision payloads,
the service's HTTP responses) go through ``to_json``/``from_json`` instead: the same JSON, by
pydantic_core's Rust codec, two to three times faster (more on lists of floats); floats round-trip
exactly either way (shortest repr, correctly rounded parse).

Thread-safety: dict operations are atomic under the GIL; a race only repeats an encoding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import pydantic_core

from features.encoding import ROW_ENCODINGS, remember_encoding, row_digest
from recommender.records import Decision

CACHE_SIZE = 100_000
# (row, text, digest), the result of ``encoded_rows``; the row is held so that its id cannot be reused.
EncodedRow = tuple[Mapping[str, Any], str, str]
# id(row) -> (row, text, digest), read-only rows only: the feature store's, which records the rows it decodes
# (with their stored text) as it loads them, and the rows encoded or decoded here.
_by_row: dict[int, EncodedRow] = ROW_ENCODINGS
_row_by_text: dict[str, Mapping[str, Any]] = {}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):  # a read-only row nested in a document (pydantic_core needs a dict)
        return dict(value)
    raise TypeError(f"feature value of type {type(value).__name__} is not JSON-serializable")


# One encoder for every call: json.dumps with non-default options builds a new JSONEncoder each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default)


def dumps(value: Any) -> str:
    """Compact JSON (no NaN/infinity; numpy values as plain numbers and lists)."""
    return _ENCODER.encode(value)


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``: for JSON values (and numpy ones, read-only mappings) the document
    ``dumps`` describes, spelled a little differently (``1e-7`` for ``1e-07``, raw UTF-8 for ``\\u00e9``), in
    half its time. Raises ValueError on NaN or infinity like ``dumps``. Unlike ``dumps``, it also writes a
    few Python types that are no feature values (datetimes, bytes and enums as strings, sets as arrays);
    other values raise TypeError."""
    try:
        text = pydantic_core.to_json(value, fallback=_json_default)
    except pydantic_core.PydanticSerializationError:
        # A value only ``dumps`` can write (a lone surrogate: pydantic_core refuses it) or cannot write at
        # all: let it decide, with its errors.
        return dumps(value).encode()
    # pydantic_core writes NaN/Infinity where ``dumps`` refuses them. Those words may also be inside a
    # string; only then (rarely) does ``dumps`` look again, and raise ValueError if a number is not finite.
    if b"NaN" in text or b"Infinity" in text:
        return dumps(value).encode()
    return text


def from_json(data: bytes | str) -> Any:
    """Parse JSON written by ``to_json`` or ``dumps`` (pydantic_core; floats parse exactly)."""
    try:
        # Only keys are worth pydantic_core's string cache: a payload's values (ids, digests) are mostly
        # distinct, and caching them costs a quarter of the parse.
        return pydantic_core.from_json(data, cache_strings="keys")
    except ValueError:  # e.g. the escape of a lone surrogate, which only the json module reads
        return json.loads(data)


def digest_of(text: str) -> str:
    """The content digest of a row's JSON text: 24 hex characters (``features.encoding.row_digest``)."""
    return row_digest(text)


_remember = remember_encoding


def _encoded(row: Mapping[str, Any]) -> EncodedRow:
    if type(row) is not MappingProxyType:  # a mutable row may change: never cached
        text = dumps(dict(row))
        return row, text, digest_of(text)
    cached = _by_row.get(id(row))
    if cached is not None and cached[0] is row:
        return cached
    return _remember(row, dumps(dict(row)))


def encoded_rows(rows: Sequence[Mapping[str, Any]]) -> list[EncodedRow]:
    """``(row, text, digest)`` of each of ``rows``, in order; read-only rows are encoded once per object.

    The cached case (every row a read-only row seen before) is one C-level pass over ``rows``: an entry of
    the cache is found only by its own row's id, because the entry keeps that row alive, and two live
    objects never share an id (so a mutable row, never cached, is never found either).
    """
    entries = list(map(_by_row.get, map(id, rows)))
    if not all(entries):  # a miss (None); an entry is a non-empty tuple
        return [_encoded(row) if entry is None else entry for row, entry in zip(rows, entries, strict=True)]
    return entries  # type: ignore[return-value]  # no None left


def row_text(row: Mapping[str, Any]) -> str:
    """Compact JSON object of a feature row; read-only rows are encoded once per object."""
    return _encoded(row)[1]


def passing_row_text(row: Mapping[str, Any]) -> str:
    """Compact JSON object of a row that passes once (a user's: the user group is never cached, so every read
    is a new object): its recorded text if it has one, else encoded afresh and *not* recorded. Recording
    every decision's user row would keep up to ``features.encoding.ENCODINGS_SIZE`` dead rows alive for the
    garbage collector to scan (measured: full collections growing past 100 ms in a serving worker)."""
    cached = _by_row.get(id(row))
    if cached is not None and cached[0] is row:
        return cached[1]
    return dumps(dict(row))


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


# ----- decision codec (JSON) of the bus, shared with nothing else: the Parquet log has its own schema ----
# A decision over 200 candidates carries 200 item feature rows (~50 KB of JSON). The payload names each
# row by its content digest (``digest_of``); the Redis bus stores each distinct row's text once
# under that digest, so a pending decision costs a few KB in Redis instead of ~50 KB, and the worker and
# the joiner move and parse a few KB per decision. What remains (200 ids, digests, probabilities and
# ranks) goes through pydantic_core's JSON codec (``to_json``/``from_json``): the same JSON document the
# json module would write, at half its cost to write and a third to read, so workers and joiners of either
# version read each other's payloads; floats round-trip exactly (the pmfs are propensities).
def encode_decision(decision: Decision, row_digests: Sequence[str]) -> bytes:
    """Compact UTF-8 JSON of a decision; its candidates' feature rows appear as ``row_digests`` (in order).

    Raises ValueError on a non-finite number and TypeError on a value JSON cannot hold."""
    return to_json(
        {
            "event_id": decision.event_id,
            "timestamp": decision.timestamp.isoformat(),
            "user_id": decision.user_id,
            # Plain dicts: pydantic_core would otherwise call back into Python for each read-only mapping.
            "user_features": dict(decision.user_features),
            "context": dict(decision.context),
            "candidate_ids": decision.candidate_ids,
            "candidate_rows": row_digests,
            "pmfs": decision.pmfs,
            "chosen": decision.chosen,
            "ranking": decision.ranking,
            "model_version": decision.model_version,
            "exploration": dict(decision.exploration),
            "degraded": decision.degraded,
            "deferred": decision.deferred,
            "experiment": decision.experiment,
            "arm": decision.arm,
            "slot_names": decision.slot_names,
        }
    )


def decode_decision(data: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> Decision:
    """Inverse of ``encode_decision`` (``data`` is its parsed JSON, ``from_json``; ``rows`` maps
    digests to read-only rows and must hold every digest the decision names: KeyError otherwise). The
    Decision checks its outcome (pmfs, chosen, ranking); its inputs (event id, UTC timestamp, unique candidates
    aligned with their rows) were checked when the encoded Decision was built, and ``encode_decision`` writes
    them as they were, so they are not checked again (``inputs_checked``)."""
    return Decision(
        event_id=data["event_id"],
        timestamp=datetime.fromisoformat(data["timestamp"]).astimezone(UTC),
        user_id=data["user_id"],
        user_features=data["user_features"],
        context=data["context"],
        candidate_ids=tuple(data["candidate_ids"]),
        candidate_features=tuple(map(rows.__getitem__, data["candidate_rows"])),
        pmfs=tuple(map(tuple, data["pmfs"])),
        chosen=tuple(data["chosen"]),
        ranking=tuple(data["ranking"]),
        model_version=data["model_version"],
        exploration=data["exploration"],
        degraded=data["degraded"],
        deferred=data["deferred"],
        # Absent in payloads written before experiments existed.
        experiment=data.get("experiment"),
        arm=data.get("arm"),
        slot_names=tuple(data.get("slot_names", ())),  # absent in payloads written before slot names existed
        inputs_checked=True,
    )

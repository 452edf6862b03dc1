"""A row the decode cache loads keeps its stored text and digest with it: the decision log's encoding of that
row (``recommender.events.codec``) is found, not recomputed, and is what encoding the row afresh gives."""

from __future__ import annotations

import json

from features.encoding import ROW_ENCODINGS, DecodeCache, encode_row, row_digest
from recommender.events.codec import digest_of, dumps, encoded_rows, row_text

ROWS = [
    {"brand": "b1", "price": 10.0, "tags": ["dry", "oily"], "embedding": [0.1, -0.0, 1e-07, 1e22, 3.141592653589793]},
    {"brand": "Crème \u00e9t\u00e9 \u2603", "price": -0.5, "tags": [], "embedding": [2.5e-308, 1.7976931348623157e308]},
    {"name": "quote \" backslash \\ tab \t", "n": 0.0},
]


def test_the_stored_bytes_are_the_text_the_log_writes():
    for row in ROWS:
        raw = encode_row(row)
        assert raw.decode() == dumps(dict(json.loads(raw)))


def test_a_loaded_row_comes_with_its_text_and_digest():
    cache = DecodeCache(100)
    raws = [encode_row(row) for row in ROWS]
    rows = [cache.decode(raw) for raw in raws]
    for row, raw in zip(rows, raws, strict=True):
        assert ROW_ENCODINGS[id(row)] == (row, raw.decode(), row_digest(raw))
    # Found by identity, identical to encoding the same values afresh.
    assert encoded_rows(rows) == [(row, raw.decode(), digest_of(dumps(dict(row)))) for row, raw in zip(
        rows, raws, strict=True)]  # fmt: skip
    assert [row_text(row) for row in rows] == [raw.decode() for raw in raws]


def test_rows_not_cached_are_not_recorded():
    uncached = DecodeCache(0)  # the user group's: a row per request, never reused
    row = uncached.decode(encode_row(ROWS[0]))
    assert id(row) not in ROW_ENCODINGS

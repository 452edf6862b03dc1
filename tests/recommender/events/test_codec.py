"""The JSON codecs of rows and bus payloads: exact floats, numpy values, the json module's refusals kept,
rows encoded once per read-only object; the Redis bus's decision payload round-trips a Decision exactly."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np
import pytest

from recommender.events.codec import (
    decode_decision,
    digest_of,
    dumps,
    encode_decision,
    encoded_rows,
    from_json,
    row_of,
    row_text,
    to_json,
)
from recommender.records import Decision


def awkward_floats() -> list[float]:
    rng = np.random.default_rng(5)
    values = [
        *rng.random(20_000).tolist(),
        *rng.random(20_000).astype(np.float32).astype(np.float64).tolist(),  # VW's probabilities are float32
        *(rng.random(5_000) * 1e-300).tolist(),
        *np.exp(rng.normal(size=5_000) * 100).tolist(),
        0.0, -0.0, 1.0, 0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-7, 1e22,
    ]
    return [v for v in values if math.isfinite(v)]


def test_floats_round_trip_exactly_through_to_json_and_from_json():
    values = awkward_floats()
    back = from_json(to_json(values))
    assert [v.hex() for v in back] == [v.hex() for v in values]  # bit for bit, the sign of -0.0 included
    assert json.loads(to_json(values)) == values  # and the json module reads the same numbers
    assert from_json(dumps(values)) == values  # and from_json reads what dumps wrote


def test_to_json_writes_numpy_values_and_read_only_rows_like_dumps():
    row = {"e": np.array([0.5, 0.25]), "n": np.int64(3), "f": np.float32(0.1), "b": np.bool_(True)}
    value = {"row": MappingProxyType(row), "tuple": (1, 2.5, "é")}
    assert from_json(to_json(value)) == json.loads(dumps(value))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_to_json_refuses_what_dumps_refuses(bad):
    with pytest.raises(ValueError):
        to_json({"pmfs": [[0.5, bad]]})
    with pytest.raises(TypeError):
        to_json({"x": object()})


def test_strings_that_look_like_non_finite_numbers_and_lone_surrogates_are_fine():
    value = {"ids": ["NaN", "Infinity", "-Infinity"], "odd": "\ud800 lone surrogate"}
    assert from_json(to_json(value)) == value


def test_read_only_rows_are_encoded_once_and_mutable_rows_every_time():
    shared = MappingProxyType({"brand": "x", "price": 1.5})
    mutable = {"brand": "y"}
    first = encoded_rows([shared, mutable, shared])
    assert [text for _, text, _ in first] == ['{"brand":"x","price":1.5}', '{"brand":"y"}', '{"brand":"x","price":1.5}']
    assert first[0] is first[2] and first[0] is encoded_rows([shared])[0]  # one cache entry per object
    assert [digest for _, _, digest in first] == [digest_of(row_text(r)) for r in (shared, mutable, shared)]
    mutable["brand"] = "z"
    assert encoded_rows([mutable])[0][1] == '{"brand":"z"}'
    assert row_text(row_of('{"a":1}')) == '{"a":1}'


def test_a_decision_round_trips_exactly_through_the_bus_payload():
    rows = (MappingProxyType({"price": 9.39, "embedding": [0.1, -0.2]}), MappingProxyType({"price": 12.0}), {"x": "é"})
    pmf = (0.10000000149011612, 0.8999999761581421 - 1e-17, 1 - 0.10000000149011612 - (0.8999999761581421 - 1e-17))
    decision = Decision(
        event_id="e-1", timestamp=datetime(2026, 11, 24, 9, 30, 1, 123456, tzinfo=UTC), user_id=None,
        user_features={"embedding": np.array([0.5, 0.25]), "n": np.int64(3)}, context={"device": "web", "hour": 21},
        candidate_ids=("a", "b", "c"), candidate_features=rows, pmfs=(pmf, (0.0, 0.5, 0.5)), chosen=(0, 2),
        ranking=(0, 2, 1), model_version="m1", exploration={"algorithm": "epsilon_greedy", "epsilon": 0.1},
        degraded=True, deferred=True,
    )  # fmt: skip
    digests = [digest_of(row_text(row)) for row in rows]
    payload = encode_decision(decision, digests)
    back = decode_decision(from_json(payload), dict(zip(digests, rows, strict=True)))
    assert back.pmfs == decision.pmfs and [p.hex() for p in back.pmfs[0]] == [p.hex() for p in pmf]
    assert back.user_features == {"embedding": [0.5, 0.25], "n": 3}
    assert back == Decision(**{**decision.__dict__, "user_features": back.user_features})
    # Payloads the json module wrote (earlier versions of the bus, still pending during an upgrade) decode the same.
    old_payload = json.dumps(json.loads(payload), separators=(",", ":"))
    assert decode_decision(from_json(old_payload.encode()), dict(zip(digests, rows, strict=True))) == back

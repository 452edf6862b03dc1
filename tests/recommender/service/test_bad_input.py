"""Every malformed request gets a 4xx JSON body {"error", "message", "field"} naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.recommender.served_app import CANDIDATES_20, ServedApp, service_document, write_config

MANY = [f"item-{i:04d}" for i in range(1, 502)]


@pytest.fixture(scope="module")
def client(catalog_redis, tmp_path_factory) -> Iterator:
    tmp_path = tmp_path_factory.mktemp("bad-input")
    config = write_config(tmp_path / "config.yaml", service_document(tmp_path, catalog_redis.url,
                                                                     service={"max_body_bytes": 65536}))  # fmt: skip
    served = ServedApp(config)
    yield served.client()
    served.stop()


SCORE_CASES = [
    # (body, status, error code, field)
    (b"{", 400, "invalid_json", None),
    (b"", 400, "invalid_json", None),
    (b"\xff\xfe\x00", 400, "invalid_json", None),
    (b"[]", 400, "invalid_request", "(body)"),
    (b'"candidates"', 400, "invalid_request", "(body)"),
    ({}, 400, "invalid_request", "candidates"),
    ({"candidates": []}, 400, "invalid_request", "candidates"),
    ({"candidates": "item-0001"}, 400, "invalid_request", "candidates"),
    ({"candidates": [1, 2]}, 400, "invalid_request", "candidates[0]"),
    ({"candidates": [""]}, 400, "invalid_request", "candidates[0]"),
    ({"candidates": ["a" * 129]}, 400, "invalid_request", "candidates[0]"),
    ({"candidates": ["item-0001", "item-0001"]}, 400, "invalid_request", "candidates"),
    ({"candidates": ["item-0001", {"id": "item-0001"}]}, 400, "invalid_request", "candidates"),
    ({"candidates": MANY}, 400, "invalid_request", "candidates"),
    ({"candidates": [{"id": "x", "extra": 1}]}, 400, "invalid_request", "candidates[0].extra"),
    ({"candidates": [{"features": {}}]}, 400, "invalid_request", "candidates[0].id"),
    ({"candidates": [{"id": "x", "features": {"price": "cheap"}}]}, 400, "invalid_request",
     "candidates[0].features.price"),
    ({"candidates": [{"id": "x", "features": {"embedding": [1.0, 2.0]}}]}, 400, "invalid_request",
     "candidates[0].features.embedding"),
    ({"candidates": [{"id": "x", "features": {"colour": "red"}}]}, 400, "invalid_request",
     "candidates[0].features.colour"),
    ({"candidates": CANDIDATES_20, "unknown": True}, 400, "invalid_request", "unknown"),
    ({"candidates": CANDIDATES_20, "user_id": 42}, 400, "invalid_request", "user_id"),
    ({"candidates": CANDIDATES_20, "event_id": "x" * 129}, 400, "invalid_request", "event_id"),
    ({"candidates": CANDIDATES_20, "event_id": "a\nb"}, 400, "invalid_request", "event_id"),
    ({"candidates": CANDIDATES_20, "context": []}, 400, "invalid_request", "context"),
    ({"candidates": CANDIDATES_20, "context": {"hour": True}}, 400, "invalid_request", "context.hour"),
    ({"candidates": CANDIDATES_20, "context": {"hour": None}}, 400, "invalid_request", "context.hour"),
    ({"candidates": CANDIDATES_20, "context": {"x": {"nested": 1}}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"bad name": 1}}, 400, "invalid_request", "context.bad name"),
    ({"candidates": CANDIDATES_20, "context": {"x": [1, "a"]}}, 400, "invalid_request", "context.x[0]"),
    ({"candidates": CANDIDATES_20, "context": {"x": 10**30}}, 200, None, None),  # a big number is a number
    (b'{"candidates": ["item-0001"], "context": {"x": 1e999}}', 400, "invalid_request", "context.x"),
    (b'{"candidates": ["item-0001"], "context": {"x": NaN}}', 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "excluded": "item-0001"}, 400, "invalid_request", "excluded"),
    ({"candidates": ["item-0001"], "excluded": ["item-0001"]}, 400, "invalid_request", "excluded"),
    ({"candidates": CANDIDATES_20, "slots": 0}, 400, "invalid_request", "slots"),
    ({"candidates": CANDIDATES_20, "slots": "2"}, 400, "invalid_request", "slots"),
    ({"candidates": CANDIDATES_20, "slots": 2}, 400, "invalid_request", "slots"),  # single-slot policy
    ({"candidates": ["item-0001"], "slots": 1}, 200, None, None),
    ({"candidates": CANDIDATES_20, "defer_activation": "yes"}, 400, "invalid_request", "defer_activation"),
    ({"candidates": CANDIDATES_20, "defer_activation": 1}, 400, "invalid_request", "defer_activation"),
    (b'{"candidates": ["item-0001"], "candidates": []}', 400, "invalid_request", "candidates"),
    ({"candidates": ["x" * 100] + [f"{i}" for i in range(499)], "context": {"t": "y" * 512}}, 413, None, None),
]


@pytest.mark.parametrize(("body", "status", "code", "field"), SCORE_CASES)
def test_bad_score_requests(client, body, status, code, field):
    if status == 413:  # over max_body_bytes (64 KiB in this test)
        body = json.dumps(body).encode() + b" " * 70_000
    response = client.post("/v1/score", body)
    assert response.status == status, response.body
    if status == 200:
        return
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) <= {"error", "message", "field", "details"}
    if code is not None:
        assert payload["error"] == code
        assert payload["field"] == field
        if field is not None:
            assert field.split("[")[0].split(".")[0] in payload["message"]
    else:
        assert payload["error"] == "request_entity_too_large"


REWARD_CASES = [
    ({"event_id": "e", "reward": 1.5}, 400, "reward"),
    ({"event_id": "e", "reward": -1.01}, 400, "reward"),
    ({"event_id": "e", "reward": "1"}, 400, "reward"),
    ({"event_id": "e", "reward": True}, 400, "reward"),
    ({"event_id": "e"}, 400, "reward"),
    ({"reward": 1.0}, 400, "event_id"),
    ({"event_id": "", "reward": 1.0}, 400, "event_id"),
    ({"event_id": "e", "reward": 1.0, "slot": -1}, 400, "slot"),
    ({"event_id": "e", "reward": 1.0, "slot": 1.5}, 400, "slot"),
    ({"event_id": "e", "reward": 1.0, "extra": 1}, 400, "extra"),
    ({"event_id": "never-scored", "reward": 1.0}, 404, "event_id"),
]


@pytest.mark.parametrize(("body", "status", "field"), REWARD_CASES)
def test_bad_reward_requests(client, body, status, field):
    response = client.post("/v1/reward", body)
    assert response.status == status, response.body
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/score", 405, "method_not_allowed"),
        ("DELETE", "/v1/reward", 405, "method_not_allowed"),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("POST", "/v1/events/" + "x" * 200 + "/activate", 400, "invalid_request"),
    ],
)
def test_http_errors_are_json(client, method, path, status, code):
    response = client.request(method, path)
    assert response.status == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code


def test_error_lists_every_problem(client):
    response = client.post("/v1/score", {"candidates": [], "slots": 0, "zzz": 1})
    fields = {detail["field"] for detail in response.json()["details"]}
    assert fields == {"candidates", "slots", "zzz"}

"""Every malformed request gets a 4xx JSON body {"error", "message", "field"} naming the field (the app over
HTTP; gunicorn's own refusals are in test_gunicorn_refusals.py)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from tests.recommender.served_app import CANDIDATES_20, ServedApp, service_document, write_config

MANY = [f"item-{i:04d}" for i in range(1, 502)]


@pytest.fixture(scope="module")
def served(catalog_redis, tmp_path_factory) -> Iterator[ServedApp]:
    tmp_path = tmp_path_factory.mktemp("bad-input")
    config = write_config(tmp_path / "config.yaml", service_document(tmp_path, catalog_redis.url,
                                                                     service={"max_body_bytes": 65536}))  # fmt: skip
    served = ServedApp(config)
    yield served
    served.stop()


@pytest.fixture(scope="module")
def client(served):
    return served.client()


@pytest.fixture(scope="module")
def served_url(served) -> str:
    return served.url


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
    # Numbers within +-(2^53 - 1) (JSON's interoperable integers), integer or not; beyond, refused, not rounded.
    ({"candidates": CANDIDATES_20, "context": {"x": 2**53 - 1, "y": -(2**53 - 1), "z": 9.0e15}}, 200, None, None),
    ({"candidates": CANDIDATES_20, "context": {"x": 2**53}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"x": 2**53 + 1}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"x": -(2**63)}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"x": 10**30}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"x": 1e30}}, 400, "invalid_request", "context.x"),
    ({"candidates": CANDIDATES_20, "context": {"x": [1, 2**60]}}, 400, "invalid_request", "context.x[1]"),
    ({"candidates": [{"id": "x", "features": {"price": 2**64}}]}, 400, "invalid_request",
     "candidates[0].features.price"),
    ({"candidates": CANDIDATES_20, "slots": 2**64}, 400, "invalid_request", "slots"),
    # Ids hold no control characters: C0, DEL, C1 (U+0080..U+009F); other non-ASCII characters are fine.
    ({"candidates": CANDIDATES_20, "event_id": "a\u0085b"}, 400, "invalid_request", "event_id"),
    ({"candidates": CANDIDATES_20, "event_id": "a\u009fb"}, 400, "invalid_request", "event_id"),
    ({"candidates": CANDIDATES_20, "event_id": "a\u007fb"}, 400, "invalid_request", "event_id"),
    ({"candidates": CANDIDATES_20, "user_id": "u\u0080"}, 400, "invalid_request", "user_id"),
    ({"candidates": ["item-0001", "item\u0090"]}, 400, "invalid_request", "candidates[1]"),
    ({"candidates": CANDIDATES_20, "excluded": ["x\u0081"]}, 400, "invalid_request", "excluded[0]"),
    ({"candidates": ["item-0001"], "event_id": "caf\u00e9-\u00a0-\u4e2d"}, 200, None, None),
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
    ({"event_id": "e", "reward": 2**53}, 400, "reward"),
    ({"event_id": "e", "reward": 1.0, "slot": 2**53}, 400, "slot"),
    ({"event_id": "e\u0085", "reward": 1.0}, 400, "event_id"),
    ({"event_id": "e", "reward": 1.0, "reward_id": "r\u009b"}, 400, "reward_id"),
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
        ("POST", "/v1/events/a%01b/activate", 400, "invalid_request"),
        ("POST", "/v1/events/a%7Fb/activate", 400, "invalid_request"),
        ("POST", "/v1/events/a%C2%85b/activate", 400, "invalid_request"),  # NEL, a C1 control character
        ("POST", "/v1/events/a%C2%9Fb/activate", 400, "invalid_request"),
        ("POST", "/v1/events/caf%C3%A9/activate", 404, "unknown_event"),  # a valid id, never scored
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


def test_activation_path_id_is_checked_and_published_like_body_ids(client):
    response = client.post("/v1/events/a%C2%85b/activate")
    assert response.json()["field"] == "event_id"
    document = client.get("/openapi.json").json()
    parameter = document["paths"]["/v1/events/{event_id}/activate"]["post"]["parameters"][0]
    reward_body = document["paths"]["/v1/reward"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert reward_body == {"$ref": "#/components/schemas/RewardRequest"}
    body_id = document["components"]["schemas"]["RewardRequest"]["properties"]["event_id"]
    assert parameter["schema"] == {key: value for key, value in body_id.items() if key != "title"}
    assert parameter["schema"]["pattern"] == "^[^\\x00-\\x1f\\x7f-\\x9f]+$"


def test_published_numbers_are_bounded_like_the_checks(client):
    context = client.get("/openapi.json").json()["components"]["schemas"]["ScoreRequest"]["properties"]["context"]
    members = next(iter(context["patternProperties"].values()))["anyOf"]
    numbers = [m for m in members if m["type"] in ("number", "integer")]
    numbers += [m for m in members if m["type"] == "array" and "anyOf" in m["items"] for m in m["items"]["anyOf"]]
    assert sorted(m["type"] for m in numbers) == ["integer", "integer", "number", "number"]
    assert {(m["minimum"], m["maximum"]) for m in numbers} == {(-(2**53 - 1), 2**53 - 1)}


SCORE = json.dumps({"candidates": CANDIDATES_20}).encode()


def raw_post(served_url: str, path: str, body: bytes, headers: dict[str, str]):
    """A POST with exactly ``headers`` (http.client adds Host, Content-Length and Accept-Encoding only)."""
    host, port = served_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({}, "Content-Type"),
        ({"Content-Type": "text/plain"}, "Content-Type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "Content-Type"),
        ({"Content-Type": "multipart/form-data; boundary=x"}, "Content-Type"),
        ({"Content-Type": "application/jsonx"}, "Content-Type"),
        ({"Content-Type": "application/json; charset=latin-1"}, "Content-Type"),
        ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, "Content-Encoding"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/score", "/v1/reward"])
def test_a_body_that_is_not_json_gets_415_naming_the_accepted_type(served_url, path, headers, field):
    status, response_headers, body = raw_post(served_url, path, SCORE, headers)
    assert status == 415, body
    assert response_headers["content-type"] == "application/json"
    payload = json.loads(body)
    assert payload["error"] == "unsupported_media_type"
    assert payload["field"] == field
    if field == "Content-Type":
        assert "application/json" in payload["message"]
        assert response_headers["accept-post"] == "application/json"
    else:
        assert "gzip" in payload["message"] and "identity" in payload["message"]
        assert response_headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON; charset=UTF-8"])  # fmt: skip
def test_json_bodies_are_accepted_with_or_without_a_utf8_charset(served_url, content_type):
    status, _, body = raw_post(served_url, "/v1/score", SCORE, {"Content-Type": content_type})
    assert status == 200, body


def test_a_request_without_a_body_needs_no_content_type(served_url):
    status, _, body = raw_post(served_url, "/v1/events/never-scored/activate", b"", {"Content-Type": "text/plain"})
    assert status == 404 and json.loads(body)["error"] == "unknown_event"

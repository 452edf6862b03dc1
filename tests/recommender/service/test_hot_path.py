"""The usual ``POST /v1/score`` is answered in front of Flask (``recommender.service.hot_path``), every other
request by Flask, and both entries answer alike: the same statuses, error bodies and metrics (the app over
HTTP). A body sent as ``application/json; charset=utf-8`` is accepted as JSON but is not the usual request, so
it takes Flask's entry: the comparisons send each body both ways."""

from __future__ import annotations

import json
import re

import pytest
from werkzeug.test import EnvironBuilder

from recommender.service import scoring
from recommender.service.hot_path import ENDPOINT
from tests.recommender.served_app import CANDIDATES_20, ServedApp, service_document, write_config
from tests.recommender.service import test_bad_input
from tests.recommender.service.test_bad_input import SCORE_CASES

USUAL = {"Content-Type": "application/json"}
VIA_FLASK = {"Content-Type": "application/json; charset=utf-8"}


# The bad-input tests' app (64 KiB bodies at most), a module's own instance here.
served = test_bad_input.served
client = test_bad_input.client


def counted(client, status: int) -> float:
    """``recommender_responses_total`` of the score endpoint with ``status``, from /metrics."""
    text = client.get("/metrics").body.decode()
    pattern = rf'^recommender_responses_total\{{endpoint="{ENDPOINT}",status="{status}"\}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_usual_request_does_not_reach_the_flask_view_and_the_others_do(served, client, monkeypatch):
    calls = []
    view = served.app.view_functions["scoring.score"]

    def counting_view():
        calls.append(1)
        return view()

    monkeypatch.setitem(served.app.view_functions, "scoring.score", counting_view)
    usual = client.post("/v1/score", {"candidates": CANDIDATES_20}, headers=USUAL)
    assert usual.status == 200 and calls == []
    other = client.post("/v1/score", {"candidates": CANDIDATES_20}, headers=VIA_FLASK)
    assert other.status == 200 and calls == [1]
    assert set(usual.json()) == set(other.json())
    assert usual.headers["content-type"] == other.headers["content-type"] == "application/json"


# The refusals of the bad-input tests (their accepted bodies carry fixed event ids: sent twice, the second is a
# duplicate; the over-long body goes to Flask on both entries).
REFUSED = [(body, status) for body, status, _, _ in SCORE_CASES if status not in (200, 413)]


@pytest.mark.parametrize(("body", "status"), REFUSED)
def test_both_entries_answer_every_bad_input_alike(client, body, status):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    usual = client.post("/v1/score", raw, headers=USUAL)
    other = client.post("/v1/score", raw, headers=VIA_FLASK)
    assert usual.status == other.status == status, (usual.body, other.body)
    assert usual.json() == other.json()
    assert usual.headers["content-type"] == other.headers["content-type"] == "application/json"


def test_refusals_written_in_flask_stay_there(served, client, catalog_redis, tmp_path):
    too_long = json.dumps({"candidates": CANDIDATES_20}).encode() + b" " * 70_000
    assert client.post("/v1/score", too_long, headers=USUAL).status == 413
    assert client.post("/v1/score", b'{"candidates": ["item-0001"]}', headers={"Content-Type": "text/plain"}).status \
        == 415  # fmt: skip
    gzipped = client.post("/v1/score", b"{}", headers={**USUAL, "Content-Encoding": "gzip"})
    assert gzipped.status == 415 and gzipped.json()["field"] == "Content-Encoding"
    assert client.get("/v1/score").status == 405
    keyed = ServedApp(write_config(tmp_path / "keyed.yaml", service_document(
        tmp_path, catalog_redis.url, service={"protect_score": True, "api_keys": ["k" * 32]})))  # fmt: skip
    try:
        assert keyed.client().post("/v1/score", {"candidates": CANDIDATES_20}, headers=USUAL).status == 401
        with_key = {**USUAL, "Authorization": f"Bearer {'k' * 32}"}
        assert keyed.client().post("/v1/score", {"candidates": CANDIDATES_20}, headers=with_key).status == 200
    finally:
        keyed.stop()


def test_both_entries_count_their_answers_under_the_score_endpoint(client):
    ok_before, bad_before = counted(client, 200), counted(client, 400)
    for headers in (USUAL, VIA_FLASK):
        assert client.post("/v1/score", {"candidates": CANDIDATES_20}, headers=headers).status == 200
        assert client.post("/v1/score", {"candidates": []}, headers=headers).status == 400
    assert counted(client, 200) == ok_before + 2
    assert counted(client, 400) == bad_before + 2


def test_a_failure_inside_is_a_logged_500_with_the_same_body_on_both_entries(client, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(scoring, "render", broken)
    usual = client.post("/v1/score", {"candidates": CANDIDATES_20}, headers=USUAL)
    other = client.post("/v1/score", {"candidates": CANDIDATES_20}, headers=VIA_FLASK)
    assert usual.status == other.status == 500
    assert usual.json() == other.json() and usual.json()["error"] == "internal_error"
    assert "boom" not in usual.body.decode()
    assert sum("unhandled error while serving a request" in record.message for record in caplog.records) == 2


def test_a_content_length_of_other_digits_goes_to_flask_instead_of_failing(served):
    """``"²"`` passes ``str.isdigit`` but not ``int``: such a header must not make the hot path raise."""
    environ = EnvironBuilder(path="/v1/score", method="POST", data=b'{"candidates": ["item-0001"]}',
                             content_type="application/json").get_environ()  # fmt: skip
    environ["CONTENT_LENGTH"] = "\u00b2"
    answered = []
    body = b"".join(served.app(environ, lambda status, headers, exc_info=None: answered.append(status)))
    assert answered and int(answered[0].split()[0]) < 500, (answered, body)

"""``parse_score_request``: plain ids take the fast model, with the value the full model gives; candidates with
inline features, and every invalid body, are the full model's (its value, its errors)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from recommender.service.schemas import Candidate, PlainScoreRequest, ScoreRequest, parse_score_request

PLAIN = {"user_id": "user-00001", "context": {"device": "app", "hour": 3}, "candidates": ["a", "b", "c"],
         "excluded": ["b"], "slots": 2, "event_id": "e-1"}  # fmt: skip


def test_plain_ids_take_the_fast_model_with_the_full_models_value() -> None:
    body = json.dumps(PLAIN).encode()
    parsed = parse_score_request(body)
    assert type(parsed) is PlainScoreRequest
    assert parsed.model_dump() == ScoreRequest.model_validate_json(body).model_dump()


def test_candidates_with_features_are_parsed_by_the_full_model() -> None:
    body = json.dumps({"candidates": ["a", {"id": "b", "features": {"price": 2.5}}]}).encode()
    parsed = parse_score_request(body)
    assert type(parsed) is ScoreRequest
    assert parsed.candidates == ["a", Candidate(id="b", features={"price": 2.5})]


@pytest.mark.parametrize("candidates", [["a", "a"], ["a", 3], [], ["a\x01"], ["a", {"id": "a"}], "a"])
def test_invalid_bodies_get_the_full_models_errors(candidates: object) -> None:
    body = json.dumps({"candidates": candidates}).encode()
    with pytest.raises(ValidationError) as full:
        ScoreRequest.model_validate_json(body)
    with pytest.raises(ValidationError) as parsed:
        parse_score_request(body)
    assert parsed.value.title == "ScoreRequest"
    # include_context=False: a validator's ValueError in the context is a new object each time
    assert parsed.value.errors(include_context=False) == full.value.errors(include_context=False)


def test_a_body_of_candidate_objects_goes_to_the_full_model_without_trying_the_plain_one(monkeypatch) -> None:
    tried: list[bytes] = []
    plain = PlainScoreRequest.model_validate_json

    def counting(body: bytes) -> PlainScoreRequest:
        tried.append(body)
        return plain(body)

    monkeypatch.setattr(PlainScoreRequest, "model_validate_json", counting)
    many = {"context": {"device": "app"}, "candidates": [{"id": f"i{n}", "features": {"price": 1.0}} for n in range(3)]}
    assert type(parse_score_request(json.dumps(many).encode())) is ScoreRequest
    assert tried == []  # the plain model would have made an error of every object first
    one = {"candidates": ["a", {"id": "b"}]}  # two braces: tried, fails on the one object, the full model decides
    assert parse_score_request(json.dumps(one).encode()).candidates == ["a", Candidate(id="b")]
    assert len(tried) == 1
    assert type(parse_score_request(json.dumps(PLAIN).encode())) is PlainScoreRequest

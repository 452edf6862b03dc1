"""No input produces a 5xx: a schema-driven fuzzer (schemathesis, generating from the live /openapi.json,
valid and invalid requests) and hypothesis junk (arbitrary bytes and JSON) against the real app over HTTP,
with a real redis-server behind it. Bounded: a fixed number of examples, derandomized."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.recommender.served_app import Client, ServedApp, service_document, write_config

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                database=None)  # fmt: skip


@pytest.fixture(scope="module")
def served(catalog_redis, tmp_path_factory) -> Iterator[ServedApp]:
    tmp_path = tmp_path_factory.mktemp("fuzz")
    config = write_config(tmp_path / "config.yaml", service_document(tmp_path, catalog_redis.url,
                                                                     service={"max_body_bytes": 65536}))  # fmt: skip
    app = ServedApp(config)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def schema(served):
    document = Client(served.url).get("/openapi.json").json()  # the published contract, over HTTP
    # A body over service.max_body_bytes is refused with 413: that is a refusal of invalid data too.
    refusals = ["400", "401", "404", "405", "409", "413", "415", "422"]
    config = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": refusals}}})
    return schemathesis.openapi.from_dict(document, config=config)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_driven_fuzzing_finds_no_server_error(served, schema, mode):
    @FUZZ
    @given(case=schema.as_strategy(mode))
    def check(case) -> None:
        response = case.call(base_url=served.url)
        assert response.status_code < 500 or (case.path == "/readyz" and response.status_code == 503), (
            f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
        )
        # Status codes, content types and bodies as documented in /openapi.json; invalid data refused. Not
        # "valid data accepted": a few rules are beyond JSON Schema (candidate ids unique across the string
        # and object forms, slots <= candidates left after exclusion), and docs/service.md says so.
        case.validate_response(response, excluded_checks=[positive_data_acceptance])

    check()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
FIELDS = st.sampled_from(["event_id", "user_id", "context", "candidates", "excluded", "slots", "defer_activation",
                          "reward", "slot", "features", "id"])  # fmt: skip
NEAR_VALID = st.fixed_dictionaries(
    {"candidates": st.lists(st.text(max_size=8) | st.fixed_dictionaries({"id": st.text(max_size=8)},
                                                                        optional={"features": JSON}), max_size=6)},
    optional={name: JSON for name in ("event_id", "user_id", "context", "excluded", "slots", "defer_activation")},
)  # fmt: skip
BODIES = (
    st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(FIELDS, JSON, max_size=6).map(lambda v: json.dumps(v).encode())
    | NEAR_VALID.map(lambda v: json.dumps(v).encode())
)


@FUZZ
@given(path=st.sampled_from(["/v1/score", "/v1/reward", "/v1/events/x/activate"]), body=BODIES,
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_junk_bodies_get_a_json_4xx_or_a_decision(served, path, body, content_type):
    client = Client(served.url)
    try:
        response = client.post(path, body, headers={"Content-Type": content_type})
    finally:
        client.close()
    assert response.status < 500, response.body
    if response.status >= 400:
        payload = response.json()
        assert isinstance(payload["error"], str) and isinstance(payload["message"], str)

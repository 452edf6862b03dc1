"""The floor: the least a Flask scoring app on gunicorn can do per request with this work, for ``bench_versus``.

Same server and shape as the afternoon build (``benchmarks.afternoon_app``: gunicorn gthread, 2 workers x 2
threads), same Redis keys and stream, same request and response. At start each worker reads every
pre-built line once and parses it into a VW example (``users`` and ``items`` by id); per request it does
only what cannot be done once:

1. one ``MGET`` of the same keys as the afternoon build (the round trip; the values are not parsed);
2. one VW ``predict`` (same ``VW_ARGS``) over the pre-built examples: the user's shared example and the
   candidates' action examples, no text parsing, no context namespace (a shared example holds one user's
   features; the context's two features would need a parse);
3. sampling, one ``XADD`` of the same decision fields, one orjson response (``ranking_body``).

``GET /readyz`` answers 200. Environment: ``AFTERNOON_REDIS_URL``, ``AFTERNOON_PREFIX``. Run:
``gunicorn -k gthread -w 2 --threads 2 'benchmarks.floor_app:create_app()'``.
"""

from __future__ import annotations

import os
import random
import threading
import uuid

import orjson
import redis
import vowpalwabbit
from flask import Flask, Response, request
from vowpalwabbit.pyvw import Example

from benchmarks.afternoon_app import DEFAULT_PREFIX, STREAM_LENGTH, VW_ARGS, ranking_body


def parsed_lines(client: redis.Redis, vw: vowpalwabbit.Workspace, prefix: str, kind: str) -> dict[str, list[Example]]:
    """Every ``<prefix>:<kind>:<id>`` line parsed once, by id (a list of one ``pyvw.Example`` each)."""
    keys = sorted(client.scan_iter(match=f"{prefix}:{kind}:*", count=1000))
    parsed = {}
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        for key, line in zip(chunk, client.mget(chunk), strict=True):
            parsed[key.decode().rsplit(":", 1)[1]] = vw.parse(line.decode())
    return parsed


def create_app() -> Flask:
    """One worker's app: the examples parsed after fork, in the worker's own VW workspace."""
    client = redis.Redis.from_url(os.environ["AFTERNOON_REDIS_URL"])
    prefix = os.environ.get("AFTERNOON_PREFIX", DEFAULT_PREFIX)
    stream = f"{prefix}:decisions"
    vw = vowpalwabbit.Workspace(VW_ARGS)
    users = parsed_lines(client, vw, prefix, "u")
    items = {item_id: examples[0] for item_id, examples in parsed_lines(client, vw, prefix, "i").items()}
    lock = threading.Lock()
    app = Flask(__name__)

    @app.post("/v1/score")
    def score() -> Response:
        body = orjson.loads(request.get_data())
        user_id, candidates = body["user_id"], body["candidates"]
        event_id = body.get("event_id") or uuid.uuid4().hex
        client.mget([f"{prefix}:u:{user_id}", *(f"{prefix}:i:{c}" for c in candidates)])
        examples = [*users[user_id], *(items[c] for c in candidates)]
        with lock:  # the examples are shared by the worker's threads, and so is the workspace
            pmf = vw.predict(examples)
        chosen = random.choices(range(len(candidates)), weights=pmf)[0]
        client.xadd(stream, {"event_id": event_id, "user": user_id, "candidates": orjson.dumps(candidates),
                             "pmf": orjson.dumps(pmf), "chosen": candidates[chosen]},
                    maxlen=STREAM_LENGTH, approximate=True)  # fmt: skip
        return Response(ranking_body(event_id, candidates, pmf, chosen), mimetype="application/json")

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(b"ok", mimetype="text/plain")

    return app

"""The "afternoon build": the scoring service a competent engineer writes in an afternoon without this project.

The baseline of ``bench_versus``. Flask under gunicorn (2 workers x 2 threads, gthread). The catalog is in
Redis as pre-built VW text lines (``load_lines``): ``<prefix>:u:<user_id>`` holds ``shared |u ...`` and
``<prefix>:i:<item_id>`` holds ``|a ...``. ``POST /v1/score`` with the service's body (``user_id``,
``context``, ``candidates``, optional ``event_id``) does, per request:

1. one ``MGET`` of the user's line and the candidates' lines;
2. pyvw's text ``predict`` (``VW_ARGS``: ``--cb_explore_adf --epsilon 0.1 -q ua -q ca``) over the shared line
   with the context appended (``|c device=mobile hour:13``) and one action line per candidate, under a lock
   (a VW workspace is not thread-safe);
3. sampling an item from the pmf;
4. one ``XADD`` of the decision (event id, user, candidate ids, pmf, chosen) to the ``<prefix>:decisions``
   stream, trimmed to about ``STREAM_LENGTH`` entries (something downstream would consume it; here nothing
   does, and Redis's memory must stay bounded);
5. an orjson response shaped like the service's: ``event_id``, ``ranking`` (chosen first, then by
   probability; ``id`` and ``probability``) and ``reward_action_id``.

``GET /readyz`` answers 200. Settings from the environment: ``AFTERNOON_REDIS_URL``, ``AFTERNOON_PREFIX``
(default ``aft``). Run: ``gunicorn -k gthread -w 2 --threads 2 'benchmarks.afternoon_app:create_app()'``.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import redis
import vowpalwabbit
from flask import Flask, Response, request

from features.sample_catalog import items_frame, users_frame

VW_ARGS = "--cb_explore_adf --epsilon 0.1 -q ua -q ca --quiet"
STREAM_LENGTH = 10_000
DEFAULT_PREFIX = "aft"


def _token(value: object) -> str:
    """A VW text token: no spaces, bars or colons."""
    return str(value).replace(" ", "_").replace("|", "_").replace(":", "_")


def user_line(row: Mapping[str, Any]) -> str:
    """``shared |u segment=... skin_type=... pref=... e0:0.12 ...`` of a sample-catalog user row."""
    parts = [f"segment={_token(row['segment'])}", f"skin_type={_token(row['skin_type'])}"]
    parts += [f"pref={_token(c)}" for c in row["preferred_categories"]]
    parts += [f"e{i}:{v:g}" for i, v in enumerate(row["embedding"])]
    return "shared |u " + " ".join(parts)


def item_line(row: Mapping[str, Any]) -> str:
    """``|a brand=... category=... price:12.5 ...`` of a sample-catalog item row."""
    parts = [f"{name}={_token(row[name])}" for name in ("brand", "category", "price_band")]
    if row["shade_family"] is not None:
        parts.append(f"shade={_token(row['shade_family'])}")
    parts += [f"skin={_token(s)}" for s in row["skin_types"]]
    parts.append(f"price:{row['price']:g}")
    parts += [f"e{i}:{v:g}" for i, v in enumerate(row["embedding"])]
    return "|a " + " ".join(parts)


def load_lines(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> int:
    """The sample catalog's users and items as VW text lines under ``prefix`` (the build's offline step).
    Returns the number of keys written."""
    lines = {f"{prefix}:u:{row['user_id']}": user_line(row) for row in users_frame().to_dict("records")}
    lines.update({f"{prefix}:i:{row['item_id']}": item_line(row) for row in items_frame().to_dict("records")})
    keys = list(lines)
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(keys), 1000):
        pipe.mset({key: lines[key] for key in keys[start:start + 1000]})
    pipe.execute()
    return len(keys)


def context_namespace(context: Mapping[str, Any]) -> str:
    """`` |c device=mobile hour:13``: strings as ``name=value``, numbers as ``name:value``."""
    parts = [f"{_token(k)}:{v}" if isinstance(v, int | float) and not isinstance(v, bool)
             else f"{_token(k)}={_token(v)}" for k, v in context.items()]  # fmt: skip
    return " |c " + " ".join(parts)


def ranking_body(event_id: str, candidates: list[str], pmf: list[float], chosen: int) -> bytes:
    """The response: chosen first, then the others by probability."""
    order = sorted(range(len(candidates)), key=pmf.__getitem__, reverse=True)
    order.remove(chosen)
    ranking = [{"id": candidates[i], "probability": pmf[i]} for i in (chosen, *order)]
    return orjson.dumps({"event_id": event_id, "ranking": ranking, "reward_action_id": candidates[chosen]})


def create_app() -> Flask:
    """One worker's app (gunicorn calls this after fork: a VW workspace and a Redis pool per process)."""
    client = redis.Redis.from_url(os.environ["AFTERNOON_REDIS_URL"])
    prefix = os.environ.get("AFTERNOON_PREFIX", DEFAULT_PREFIX)
    stream = f"{prefix}:decisions"
    vw = vowpalwabbit.Workspace(VW_ARGS)
    lock = threading.Lock()
    app = Flask(__name__)

    @app.post("/v1/score")
    def score() -> Response:
        body = orjson.loads(request.get_data())
        user_id, candidates = body["user_id"], body["candidates"]
        event_id = body.get("event_id") or uuid.uuid4().hex
        lines = client.mget([f"{prefix}:u:{user_id}", *(f"{prefix}:i:{c}" for c in candidates)])
        shared = (lines[0] or b"shared |u").decode() + context_namespace(body.get("context") or {})
        examples = [shared, *((line or b"|a").decode() for line in lines[1:])]
        with lock:
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

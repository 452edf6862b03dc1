"""Times Feast's ``FeatureStore.get_online_features`` for benchmarks/bench_feast.py, inside a Feast virtualenv.

Run as ``<feast-venv>/bin/python worker.py REPO_PATH``: it imports only Feast and the standard library
(it never sees our packages) and speaks JSON lines, one request on stdin, one reply on stdout:

- ``{"op": "info"}`` -> ``{"feast": version, "entity_key_serialization_version": n, "go": bool}``
- ``{"op": "read", "user": id, "items": [ids]}`` -> ``{"user": {feature: value}, "items": [{feature: value}]}``
  (one-call shape, Python values; the caller checks them against our store's read)
- ``{"op": "time", "shape": "one_call" | "two_calls", "requests": [[user, [items]], ...]}``
  -> ``{"fetch_us": [...], "to_dict_us": [...]}``, one figure per request, in microseconds:
  ``fetch_us`` is ``get_online_features`` itself, ``to_dict_us`` the ``OnlineResponse.to_dict()`` that turns
  its protobuf values into Python values.
- ``{"op": "profile", "shape": ..., "requests": [...]}`` -> ``{"total_s": s, "top": [[function, share], ...]}``:
  under cProfile, the functions with the largest own time and their share of the total.

Shapes: ``one_call`` asks for user and item features in one call, so every entity row must carry both join
keys (Feast requires all rows to have the same keys) and the user id is repeated on each of the 200 rows;
both views have an ``embedding`` feature, so ``full_feature_names=True`` is required. ``two_calls`` reads
the user's view with one row and the items' view with 200.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time

from feast import FeatureStore
from feast.version import get_version

USER_FEATURES = ["users:segment", "users:skin_type", "users:preferred_categories", "users:embedding"]
ITEM_FEATURES = [
    "items:brand", "items:category", "items:price_band", "items:shade_family", "items:skin_types", "items:price",
    "items:embedding",
]  # fmt: skip


def _one_call(store: FeatureStore, user: str, items: list[str]):
    rows = [{"user_id": user, "item_id": item} for item in items]
    return [store.get_online_features(features=USER_FEATURES + ITEM_FEATURES, entity_rows=rows,
                                      full_feature_names=True)]  # fmt: skip


def _two_calls(store: FeatureStore, user: str, items: list[str]):
    return [
        store.get_online_features(features=USER_FEATURES, entity_rows=[{"user_id": user}]),
        store.get_online_features(features=ITEM_FEATURES, entity_rows=[{"item_id": item} for item in items]),
    ]


SHAPES = {"one_call": _one_call, "two_calls": _two_calls}


def _time(store: FeatureStore, shape: str, requests: list) -> dict:
    call = SHAPES[shape]
    fetch_us, to_dict_us = [], []
    for user, items in requests:
        start = time.perf_counter()
        responses = call(store, user, items)
        fetched = time.perf_counter()
        for response in responses:
            response.to_dict()
        fetch_us.append((fetched - start) * 1e6)
        to_dict_us.append((time.perf_counter() - fetched) * 1e6)
    return {"fetch_us": fetch_us, "to_dict_us": to_dict_us}


def _profile(store: FeatureStore, shape: str, requests: list, top: int = 10) -> dict:
    profiler = cProfile.Profile()
    profiler.runcall(_time, store, shape, requests)
    stats = pstats.Stats(profiler)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda entry: entry[1][2], reverse=True)[:top]
    named = [[f"{os.path.basename(file)}:{line}({name})", own / total]
             for (file, line, name), (_, _, own, _, _) in rows]  # fmt: skip
    return {"total_s": total, "top": named}


def _read(store: FeatureStore, user: str, items: list[str]) -> dict:
    (response,) = _one_call(store, user, items)
    columns = response.to_dict()
    user_row = {name.split("__", 1)[1]: values[0] for name, values in columns.items() if name.startswith("users__")}
    item_rows = [
        {name.split("__", 1)[1]: values[i] for name, values in columns.items() if name.startswith("items__")}
        for i in range(len(items))
    ]
    return {"user": user_row, "items": item_rows}


def main() -> int:
    store = FeatureStore(repo_path=sys.argv[1])
    if getattr(store.config, "go_feature_retrieval", False):
        # 0.29 routes a read to Go only once its embedded server exists (`go_feature_retrieval and
        # self._go_server`), and nothing but this private initialiser creates it: start it here.
        store._lazy_init_go_server()
    # Feast logs and warns on stdout in places: keep the protocol on its own descriptor.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "info":
            reply = {"feast": get_version(), "go": getattr(store, "_go_server", None) is not None,
                     "entity_key_serialization_version": store.config.entity_key_serialization_version}  # fmt: skip
        elif op == "read":
            reply = _read(store, request["user"], request["items"])
        elif op == "time":
            reply = _time(store, request["shape"], request["requests"])
        elif op == "profile":
            reply = _profile(store, request["shape"], request["requests"])
        else:
            reply = {"error": f"unknown op {op!r}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

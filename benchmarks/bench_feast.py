"""Feature fetch against Feast: 1 user + 200 items of the sample catalog, from the same redis-server.

Feast (with its Redis online store) runs in virtualenvs of its own that this benchmark creates under var/
(reused when they already hold the pinned version): the current release's Python read path, and the newest
release whose PyPI wheel ships the embedded Go feature server (see benchmarks/feast/environment.py). The
sample catalog goes to Parquet offline sources, ``feast apply`` registers the entities and feature views,
``feast materialize`` writes them into the redis-server that our store uses, and a worker process in the
Feast virtualenv times ``FeatureStore.get_online_features``. Ours is ``FeatureStore.read_user_items``, the
call the scoring path makes, timed in this process. The paths run in interleaved rounds of the same
requests, so machine noise hits all alike; the ratio of medians is the figure of merit (target >= 10).
"""

from __future__ import annotations

import json
import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.feast.environment import (
    GO,
    PYTHON,
    VAR,
    WINDOW,
    Variant,
    Worker,
    ensure_venv,
    feast_cli,
    interpreter_for,
    offline_frames,
    write_repo,
)
from features import open_store
from features.sample_catalog import load_sample_catalog
from features.store import FeatureStore
from recommender.settings.loading import load_config
from tests.redis_harness import RedisServer

N_ITEMS = 200
SHAPES = ("one_call", "two_calls")
TARGET = 10.0


@dataclass
class Prepared:
    """A Feast variant set up against the benchmark's Redis (or why it could not be)."""

    variant: Variant
    install_s: float | None = None  # how long creating the virtualenv took (None: unknown)
    reused: bool = False  # the virtualenv was there already
    apply_s: float = 0.0
    materialize_s: float = 0.0
    worker: Worker | None = None
    info: dict = field(default_factory=dict)
    failure: str = ""


def _prepare(variant: Variant, redis_port: int, frames: tuple[pd.DataFrame, pd.DataFrame]) -> Prepared:
    prepared = Prepared(variant)
    interpreter = interpreter_for(variant)
    if interpreter is None:
        prepared.failure = "no Python 3.10 interpreter here (set FEAST_GO_PYTHON); its wheels are for CPython 3.7-3.10"
        return prepared
    try:
        prepared.install_s, prepared.reused = ensure_venv(variant, interpreter)
        write_repo(variant, redis_port, frames)
        prepared.apply_s = feast_cli(variant, "apply")
        prepared.materialize_s = feast_cli(variant, "materialize", *WINDOW)
        prepared.worker = Worker(variant)
        prepared.info = prepared.worker.ask({"op": "info"})
    except RuntimeError as exc:
        prepared.failure = str(exc)
    return prepared


def _same(ours: object, theirs: object) -> bool:
    if isinstance(ours, float) and isinstance(theirs, float):
        return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(ours, list | tuple) and isinstance(theirs, list | tuple):
        return len(ours) == len(theirs) and all(_same(a, b) for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def _disagreements(store: FeatureStore, worker: Worker, user: str, items: list[str]) -> list[str]:
    """Where Feast's values for ``user`` + ``items`` differ from our store's (empty: they agree)."""
    ours = store.read_user_items(user, items)
    theirs = worker.ask({"op": "read", "user": user, "items": items})
    rows = [(user, ours.user, theirs["user"])] + list(zip(items, ours.items, theirs["items"], strict=True))
    return [f"{entity}.{name}: ours {value!r:.60}, Feast {their_row.get(name)!r:.60}"
            for entity, our_row, their_row in rows for name, value in our_row.items()
            if not _same(value, their_row.get(name))]  # fmt: skip


def _time_ours(store: FeatureStore, requests: Sequence[tuple[str, list[str]]]) -> list[float]:
    samples = []
    for user, items in requests:
        start = time.perf_counter()
        found = store.read_user_items(user, items)
        samples.append((time.perf_counter() - start) * 1e6)
        assert not found.missing_items and not found.user_missing
    return samples


def _p50_p99(samples_us: Sequence[float]) -> tuple[float, float]:
    return statistics.median(samples_us), float(np.percentile(samples_us, 99))


def run(quick: bool = False) -> str:
    calls, rounds = (60, 3) if quick else (500, 10)
    rng = random.Random(0)
    requests = [
        (f"user-{rng.randint(1, 10_000):05d}", [f"item-{i:04d}" for i in rng.sample(range(1, 1001), N_ITEMS)])
        for _ in range(calls + 1)
    ]
    check, requests = requests[0], requests[1:]
    server = RedisServer().start()
    prepared: list[Prepared] = []
    try:
        base = load_config()
        features = base.features.model_copy(
            update={"backend": "redis", "redis": base.features.redis.model_copy(update={"url": server.url})}
        )
        # A generous read budget: the 50 ms default is the service's cue to degrade, and a busy machine's
        # stall must not end the run (Feast's redis-py client has no timeout at all).
        features = features.model_copy(update={"redis": features.redis.model_copy(update={"timeout_ms": 5000.0})})
        store = open_store(features)
        load_sample_catalog(store)
        # The same read without the row cache (row_cache_size 0; also what Redis Cluster reads do).
        uncached = open_store(features.model_copy(
            update={"redis": features.redis.model_copy(update={"row_cache_size": 0})}
        ))  # fmt: skip
        frames = offline_frames()
        prepared = [_prepare(variant, server.port, frames) for variant in (PYTHON, GO)]
        live = []
        for p in prepared:
            if p.worker is None:
                continue
            wrong = _disagreements(store, p.worker, *check)
            if wrong:
                p.failure = f"values differ from ours in {len(wrong)} places, e.g. {wrong[0]}"
            else:
                live.append(p)
        paths: dict[str, Callable[[Sequence[tuple[str, list[str]]]], Mapping[str, list[float]]]] = {
            "ours": lambda chunk: {"ours": _time_ours(store, chunk)},
            "ours_uncached": lambda chunk: {"ours_uncached": _time_ours(uncached, chunk)},
        }
        for p in live:
            for shape in SHAPES:
                paths[f"{p.variant.name}/{shape}"] = (
                    lambda chunk, worker=p.worker, shape=shape, key=f"{p.variant.name}/{shape}": {
                        key: (reply := worker.ask({"op": "time", "shape": shape, "requests": chunk}))["fetch_us"],
                        f"{key}+to_dict": [a + b for a, b in zip(reply["fetch_us"], reply["to_dict_us"], strict=True)],
                    }
                )
        for timed in paths.values():  # warm-up: connections, registries, caches
            timed(requests[: min(50, calls)])
        samples: dict[str, list[float]] = {}
        per_round = calls // rounds
        names = list(paths)
        for r in range(rounds):
            chunk = requests[r * per_round : (r + 1) * per_round]
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
                for key, values in paths[name](chunk).items():
                    samples.setdefault(key, []).extend(values)
        profiles = {p.variant.name: p.worker.ask({"op": "profile", "shape": "one_call", "requests": requests[:50]})
                    for p in live}  # fmt: skip
        store.close()
        uncached.close()
    finally:
        for p in prepared:
            if p.worker is not None:
                p.worker.close()
        server.stop()
    # The raw figures, kept beside the virtualenvs so that a run can be re-rendered.
    (VAR / "feast-results.json").write_text(json.dumps({
        "calls": calls, "rounds": rounds, "samples": samples, "profiles": profiles,
        "prepared": [{"variant": p.variant.name, "install_s": p.install_s, "reused": p.reused, "apply_s": p.apply_s,
                      "materialize_s": p.materialize_s, "info": p.info, "failure": p.failure} for p in prepared],
    }, default=repr))  # fmt: skip
    return _section(calls, rounds, prepared, samples, profiles)


def _section(calls: int, rounds: int, prepared: list[Prepared], samples: dict[str, list[float]],
             profiles: dict[str, dict]) -> str:  # fmt: skip
    figures = {key: _p50_p99(values) for key, values in samples.items()}
    ours_p50, uncached_p50 = figures["ours"][0], figures["ours_uncached"][0]
    labels = {"ours": "ours: `read_user_items` (row cache on: the scoring path's default)",
              "ours_uncached": "ours: `read_user_items`, no row cache (as on Redis Cluster)"}  # fmt: skip
    rows = []
    for key, (p50, p99) in figures.items():
        if key.startswith("ours"):
            label, vs = labels[key], ""
        else:
            name, _, shape = key.partition("/")
            shape, _, plus = shape.partition("+")
            version = next(p.info.get("feast", "?") for p in prepared if p.variant.name == name)
            label = f"Feast {version} {'Go' if name == 'go' else 'Python'}, {shape.replace('_', ' ')}" + (
                ", + `to_dict()`" if plus else ""
            )
            vs = f"{p50 / ours_p50:.1f}x / {p50 / uncached_p50:.1f}x"
        rows.append(f"| {label} | {p50 / 1000:.2f} | {p99 / 1000:.2f} | {vs} |")
    table = "\n".join(rows)
    setup = []
    for p in prepared:
        v = p.variant
        took = "" if p.install_s is None else f"created and installed in {p.install_s:.0f} s"
        installed = f"reused ({took or 'install time unknown'})" if p.reused else took
        if p.failure:
            setup.append(f"- `{' '.join(v.requirements)}` ({v.name}): **not measured**: {p.failure}")
            continue
        where = v.venv.relative_to(v.venv.parents[1])
        setup.append(f"- `{' '.join(v.requirements)}` ({v.name}) in {where}: {installed}; "
                     f"`feast apply` {p.apply_s:.1f} s, `feast materialize` {p.materialize_s:.1f} s; "
                     f"entity key serialisation v{p.info.get('entity_key_serialization_version')}"
                     f"{', Go feature server on' if p.info.get('go') else ''}; values agree with ours")  # fmt: skip
    verdicts = []
    for p in prepared:
        key = f"{p.variant.name}/one_call"
        if key in figures:
            best = min(figures[f"{p.variant.name}/{shape}"][0] for shape in SHAPES)
            ratio, plain = best / ours_p50, best / uncached_p50
            verdicts.append(f"Feast {p.info.get('feast')} {p.variant.name.capitalize()} (its faster shape, "
                            f"`get_online_features` alone) / ours: **{ratio:.1f}x** with the row cache, "
                            f"**{plain:.1f}x** without (target >= {TARGET:.0f}x: "
                            f"{'meets' if min(ratio, plain) >= TARGET else 'misses'}).")  # fmt: skip
    profile_lines = []
    for name, profile in profiles.items():
        top = ", ".join(f"`{function}` {share:.0%}" for function, share in profile["top"][:6])
        profile_lines.append(f"- {name}: {top}")
    setup_text, verdict_text, profile_text = "\n".join(setup), "\n".join(verdicts), "\n".join(profile_lines)
    return f"""## Feature fetch against Feast: 1 user + {N_ITEMS} items from the same Redis

{calls} reads of random users and {N_ITEMS} random items of the sample catalog (1,000 items, 10,000 users)
per path, in {rounds} interleaved rounds of the same requests, after a warm-up; one redis-server on loopback
holds both our store and Feast's online store. Feast runs in its own virtualenv, in a worker process timing
`FeatureStore.get_online_features` around the call. Ours runs in this process.

{setup_text}

How Feast makes you ask: *one call* puts the user's and the items' feature views in one
`get_online_features`, and since every entity row must carry the same join keys, that is 200 rows of
`{{"user_id": u, "item_id": i}}` (Feast reads the user once); both views have an `embedding`, so the call
needs `full_feature_names=True`. *Two calls* reads the users view with 1 row, then the items view with 200.
`get_online_features` returns protobuf values; `+ to_dict()` adds turning them into Python values, which
our read returns (decoded rows with defaults and a missing report).

| path | p50 (ms) | p99 (ms) | p50 / ours (row cache / none) |
|---|---:|---:|---:|
{table}

{verdict_text}

For scale, Feast's published p99 at 100 entities: 22 ms for its Go feature server, 125 ms for the Python
one (over the network, on other hardware). *One call* is Feast's slower shape here: the response has 200
rows, and the user's features are filled into each of them.

The Go rows are Feast {GO.version}, the newest release whose PyPI wheel carries the compiled embedded Go
server (cp310 and older only, so it gets a Python 3.10 virtualenv of its own): 0.30.2's wheel and
{PYTHON.version}'s are pure Python ({PYTHON.version}'s `go` extra adds only `cffi`), and Feast's current Go
feature server is built from source or shipped as a container image, not installable from PyPI.
{GO.version} needs `numpy<2` and `dask<2024` beside it (its pins leave them open; today's releases break its
pandas 1.5 at import), and its `go_feature_retrieval: True` takes effect only once the private
`FeatureStore._lazy_init_go_server()` has run (the flag is checked together with the server object that
only that call creates), so the worker calls it. That server reads Redis in Go but hands Arrow arrays back
to Python, which turns them into protobuf values (the profile below), so it is no faster than the Python path.

Redis layout: Feast keeps one hash per entity, keyed by the serialised entity key (join key names and
values) followed by the project name, with one field per feature (a 4-byte murmur3 hash of
`view:feature`) holding a serialised protobuf `Value`, and a `_ts:view` field holding a protobuf
`Timestamp`; a read is one pipelined `HMGET` per entity and view (201 for this request, all views of a call
in one pipeline), then a protobuf decode of each of the 201 x (features + 1) fields. Ours keeps one
compact-JSON string per entity and reads the 201 rows with one `MGET` (plus the live pointers), decoding
through a cache keyed by the bytes.

Where Feast's time goes (cProfile over 50 one-call reads, own time, largest first):

{profile_text}
"""

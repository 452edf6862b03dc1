"""Personalizer's Rank against our /v1/score in the same service and the same run.

One service (gunicorn, 2 workers x 2 threads, features and bus on a real Redis, ``benchmarks.service_setup``)
answers both:

- ``rank``: ``POST /personalizer/v1.0/rank`` with 50 actions, each carrying Personalizer-style features
  (a list of JSON objects: strings, numbers, a nested object of booleans), and context features (two
  objects, one nested), as a storefront written for Personalizer sends them; the action ids are not in
  the feature store (the read still happens, and returns the declared defaults). An action carries the
  same features whenever it appears (its catalog attributes); ``rank, new features`` sends new ones every
  time, the worst case for the policy's item cache;
- ``score``: ``POST /v1/score`` with 50 candidates of the sample catalog, whose features come from the store.

For each, alternating so that the machine's drift hits both alike (``REPEATS`` rounds): closed loop (the
load generator of ``benchmarks.http_load``: 2 processes x 4 keep-alive connections, as fast as answers
come) gives the saturation throughput and its latencies; then both are paced at 70% of the lower
saturation (open loop) and the response time from the send is measured. Figures are medians over the
rounds; the ratio rank/score is per round, then the median.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.http_load import build_request, run_load
from benchmarks.service_setup import ServiceOnRedis

N_ACTIONS = 50
CLIENT_PROCESSES = 2
CONNECTIONS = 4
PACED_SHARE = 0.7
COLORS = ["red", "blue", "green", "black", "white", "gold"]


def _action(rng: random.Random, number: int) -> dict[str, Any]:
    basics = {"category": rng.choice(["lips", "eyes", "skin", "hair"]), "brand": f"b{rng.randint(1, 40)}",
              "price": round(rng.uniform(3, 80), 2)}  # fmt: skip
    return {"id": f"p-{number:05d}",
            "features": [basics, {"colors": {c: True for c in rng.sample(COLORS, 2)}, "rating": rng.randint(1, 5)}]}


CATALOG = [_action(random.Random(number), number) for number in range(1, 5001)]


def rank_bodies(count: int, seed: int, *, fresh: bool = False) -> list[bytes]:
    """Rank requests over 50 actions. ``fresh=False``: each action carries the same features whenever it
    appears (a storefront sending its catalog's attributes), so the policy's item cache can serve it;
    ``fresh=True``: new features every time (the worst case, every action example built anew)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        numbers = rng.sample(range(1, 5001), N_ACTIONS)
        actions = [_action(rng, n) if fresh else CATALOG[n - 1] for n in numbers]
        context = [{"timeOfDay": rng.choice(["Morning", "Afternoon", "Evening"]), "hour": rng.randint(0, 23)},
                   {"device": {"os": rng.choice(["ios", "android", "web"]), "mobile": rng.random() < 0.6}}]  # fmt: skip
        out.append(json.dumps({"contextFeatures": context, "actions": actions}))  # the service makes the event id
    return [body.encode() for body in out]


def score_bodies(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    items = [f"item-{i:04d}" for i in range(1, 1001)]
    return [json.dumps({"user_id": f"user-{rng.randint(1, 10_000):05d}",
                        "context": {"device": rng.choice(["mobile", "desktop", "app"]), "hour": rng.randint(0, 23)},
                        "candidates": rng.sample(items, N_ACTIONS)}).encode()
            for _ in range(count)]  # fmt: skip


def _requests(path: str, bodies: list[bytes]) -> list[bytes]:
    return [build_request(path, body) for body in bodies]


def run(quick: bool) -> str:
    seconds = 3.0 if quick else 10.0
    repeats = 1 if quick else 3
    budget = 20_000 if quick else 100_000
    service = ServiceOnRedis({"service": {"queue_budget_ms": 0}, "join": {"reward_wait_time": 1.0}},
                             workdir=Path(tempfile.mkdtemp(prefix="bench-personalizer-")), keep_logs=False)  # fmt: skip
    rounds: list[dict[str, Any]] = []
    try:
        service.start()
        port = service.port
        rank = "/personalizer/v1.0/rank"
        kinds = {"score": _requests("/v1/score", score_bodies(512, 7)), "rank": _requests(rank, rank_bodies(512, 8)),
                 "rank, new features": _requests(rank, rank_bodies(512, 9, fresh=True))}  # fmt: skip
        for requests in kinds.values():  # warm-up: item caches, connections
            run_load(port, requests, processes=CLIENT_PROCESSES, connections=2, rate=None, max_requests=1_000,
                     seconds=3.0)  # fmt: skip

        def load(requests: list[bytes], rate: float | None) -> dict[str, Any]:
            return run_load(port, requests, processes=CLIENT_PROCESSES, connections=CONNECTIONS, rate=rate,
                            max_requests=budget, seconds=seconds)  # fmt: skip

        for _ in range(repeats):
            closed = {kind: load(requests, None) for kind, requests in kinds.items()}
            rate = PACED_SHARE * min(c["rps"] for c in closed.values())
            paced = {kind: load(requests, rate) for kind, requests in kinds.items()}
            rounds.append({"closed": closed, "paced": paced, "rate": rate})
    finally:
        service.stop()
    return _report(rounds)


def _median(rounds: list[dict[str, Any]], phase: str, kind: str, key: str) -> float:
    return statistics.median(r[phase][kind][key] for r in rounds)


def _report(rounds: list[dict[str, Any]]) -> str:
    ratios = {kind: statistics.median(r["closed"]["score"]["rps"] / r["closed"][kind]["rps"] for r in rounds)
              for kind in rounds[0]["closed"] if kind != "score"}  # fmt: skip
    errors = sum(r[phase][kind]["errors"] for r in rounds for phase in ("closed", "paced") for kind in r[phase])
    lines = [
        "## Personalizer Rank vs /v1/score",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_personalizer.py` on {os.cpu_count()} cores "
        f"shared with the load generator ({CLIENT_PROCESSES} client processes x {CONNECTIONS} keep-alive "
        f"connections): one service (2 workers x 2 threads, Redis), {N_ACTIONS} actions per request. `rank`: "
        "Personalizer's Rank with schema-free features on every action and in the context (ids unknown to the "
        "store), each action with the same features whenever it appears; `rank, new features`: new features every "
        "time (no item-cache hit); `score`: /v1/score over catalog items with the store's features. Medians over "
        f"{len(rounds)} alternating rounds; {errors} errors.",
        "",
        "| request | saturation req/s | p50 / p99 ms at saturation | paced req/s | p50 / p99 ms (from send) paced |",
        "|---|---|---|---|---|",
    ]
    for kind in rounds[0]["closed"]:
        closed = [_median(rounds, "closed", kind, key) for key in ("rps", "p50_ms", "p99_ms")]
        paced = [_median(rounds, "paced", kind, key) for key in ("rps", "p50_sent_ms", "p99_sent_ms")]
        lines.append(f"| {kind} | {closed[0]:.0f} | {closed[1]:.1f} / {closed[2]:.1f} | {paced[0]:.0f} | "
                     f"{paced[1]:.2f} / {paced[2]:.2f} |")  # fmt: skip
    rate = statistics.median(r["rate"] for r in rounds)
    shown = "; ".join(f"{kind} {ratio:.2f}" for kind, ratio in ratios.items())
    lines += ["", f"score's saturation over each rank's (per round, median): {shown}. Paced at {PACED_SHARE:.0%} "
              f"of the lowest saturation ({rate:.0f} req/s)."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))

"""Personalizer's Rank against our /v1/score in the same service and the same run.

One service (gunicorn, 2 workers x 2 threads, features and bus on a real Redis, ``benchmarks.service_setup``)
answers both:

- ``rank``: ``POST /personalizer/v1.0/rank`` with 50 actions, each carrying Personalizer-style features
  (a list of JSON objects: strings, numbers, a nested object of booleans), and context features (two
  objects, one nested), as a storefront written for Personalizer sends them; the action ids are not in
  the feature store (the read still happens, and returns the declared defaults). An action carries the
  same features whenever it appears (its catalog attributes); ``rank, new features`` sends new ones with
  every request (no request repeats another's), the worst case for the policy's item cache. The 5,000
  distinct actions need ``policy.item_cache_size`` above 5,000 to stay cached (``ITEM_CACHE_SIZE``; the
  default 4096 would rebuild about a fifth of them on every request), as a deployment sizes it to its catalog;
- ``score``: ``POST /v1/score`` with 50 candidates of the sample catalog, whose features come from the store.

For each, alternating so that the machine's drift hits both alike (3 rounds): closed loop (``wrk``, 1 thread x 4
keep-alive connections, as fast as answers come: a C load generator, so that the service gets the cores) gives
the saturation throughput, its latencies, and the workers' CPU time per request (from /proc: the figure the
machine's other load disturbs least); then each is paced at 70% of the lowest saturation (wrk's per-connection
delay) and its latencies measured. Figures are medians over the rounds; the ratio score/rank is per round,
then the median.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.service_setup import ServiceOnRedis, process_roles
from benchmarks.soak import ensure_wrk

N_ACTIONS = 50
ITEM_CACHE_SIZE = 8192  # holds the 5,000 distinct actions, as docs/migrating-from-personalizer.md advises
CONNECTIONS = 4
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
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
    ``fresh=True``: new features every time (the worst case, every action example built anew): each price
    ends in ``FRESH``, which the load generator replaces by a number of its own for every request, so no
    request repeats another's features however often the bodies are sent."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        numbers = rng.sample(range(1, 5001), N_ACTIONS)
        actions = [_action(rng, n) if fresh else CATALOG[n - 1] for n in numbers]
        context = [{"timeOfDay": rng.choice(["Morning", "Afternoon", "Evening"]), "hour": rng.randint(0, 23)},
                   {"device": {"os": rng.choice(["ios", "android", "web"]), "mobile": rng.random() < 0.6}}]  # fmt: skip
        body = json.dumps({"contextFeatures": context, "actions": actions})  # the service makes the event id
        out.append(re.sub(r'("price": \d+\.\d+)', rf"\g<1>{FRESH}", body) if fresh else body)
    return [body.encode() for body in out]


def score_bodies(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    items = [f"item-{i:04d}" for i in range(1, 1001)]
    return [json.dumps({"user_id": f"user-{rng.randint(1, 10_000):05d}",
                        "context": {"device": rng.choice(["mobile", "desktop", "app"]), "hour": rng.randint(0, 23)},
                        "candidates": rng.sample(items, N_ACTIONS)}).encode()
            for _ in range(count)]  # fmt: skip


# wrk's script: the bodies in turn, each connection pausing ``pause_ms`` before each request (0: closed loop);
# ``FRESH`` in a body becomes the digits of the request's number, counted from ``start`` (distinct per run).
FRESH = "@N@"
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local counter = %(start)d
function delay() return %(pause_ms)f end
function request()
  counter = counter + 1
  local body = string.gsub(bodies[(counter %% #bodies) + 1], "%(fresh)s", tostring(counter))
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
end
"""
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def _wrk(wrk: str, port: int, script: Path, seconds: float, workers: list[int]) -> dict[str, Any]:
    before = _cpu_seconds(workers)
    command = [wrk, "-t", "1", "-c", str(CONNECTIONS), "-d", f"{int(seconds)}s", "--latency", "-s", str(script),
               f"http://127.0.0.1:{port}"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = _cpu_seconds(workers) - before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
            "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
            "cpu_ms": 1000.0 * cpu / max(requests, 1),
            "errors": (int(errors.group(1)) if errors else 0)
            + (sum(map(int, socket_errors.groups())) if socket_errors else 0)}  # fmt: skip


def run(quick: bool) -> str:
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("bench_personalizer needs wrk (apt-get install wrk)")
    seconds = 3.0 if quick else 10.0
    repeats = 1 if quick else 3
    workdir = Path(tempfile.mkdtemp(prefix="bench-personalizer-"))
    service = ServiceOnRedis({"service": {"queue_budget_ms": 0}, "join": {"reward_wait_time": 1.0},
                              "policy": {"item_cache_size": ITEM_CACHE_SIZE}},
                             workdir=workdir, keep_logs=False)  # fmt: skip
    rounds: list[dict[str, Any]] = []
    rank = "/personalizer/v1.0/rank"
    kinds = {"score": ("/v1/score", score_bodies(512, 7)), "rank": (rank, rank_bodies(512, 8)),
             "rank, new features": (rank, rank_bodies(512, 9, fresh=True))}  # fmt: skip
    try:
        service.start()
        assert service.server is not None
        workers = process_roles(service.server.pid)["workers"]

        starts = itertools.count(10**6, 10**8)  # each run's request numbers apart from every other run's

        def script(kind: str, pause_ms: float) -> Path:
            path, bodies = kinds[kind]
            out = workdir / f"{kind.replace(', ', '-').replace(' ', '-')}-{pause_ms:.0f}.lua"
            quoted = ",".join(json.dumps(body.decode()) for body in bodies)
            start = next(starts)
            out.write_text(WRK_SCRIPT % {"bodies": quoted, "pause_ms": pause_ms, "path": path, "start": start,
                                         "fresh": FRESH})  # fmt: skip
            return out

        for kind in kinds:  # warm-up: item caches, connections
            _wrk(wrk, service.port, script(kind, 0.0), 3.0, workers)
        for _ in range(repeats):
            closed = {kind: _wrk(wrk, service.port, script(kind, 0.0), seconds, workers) for kind in kinds}
            rate = PACED_SHARE * min(c["rps"] for c in closed.values())
            pause_ms = CONNECTIONS * 1000.0 / rate
            paced = {kind: _wrk(wrk, service.port, script(kind, pause_ms), seconds, workers) for kind in kinds}
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
        f"shared with the load generator (wrk, 1 thread x {CONNECTIONS} keep-alive connections): one service "
        f"(2 workers x 2 threads, Redis), {N_ACTIONS} actions per request. `rank`: Personalizer's Rank with "
        "schema-free features on every action and in the context (ids unknown to the store), each action with "
        "the same features whenever it appears (5,000 distinct actions; `policy.item_cache_size` "
        f"{ITEM_CACHE_SIZE:,} to hold them); `rank, new features`: new features in every request (no request "
        "repeats another's: no item-cache hit); `score`: /v1/score over catalog items with the store's features. "
        f"Worker CPU: the workers' CPU time per request at saturation. Medians over {len(rounds)} alternating "
        f"rounds; {errors} errors.",
        "",
        "| request | saturation req/s | p50 / p99 ms at saturation | worker CPU ms / request | paced req/s "
        "| p50 / p99 ms paced |",
        "|---|---|---|---|---|---|",
    ]
    for kind in rounds[0]["closed"]:
        closed = [_median(rounds, "closed", kind, key) for key in ("rps", "p50_ms", "p99_ms", "cpu_ms")]
        paced = [_median(rounds, "paced", kind, key) for key in ("rps", "p50_ms", "p99_ms")]
        lines.append(f"| {kind} | {closed[0]:.0f} | {closed[1]:.1f} / {closed[2]:.1f} | {closed[3]:.2f} | "
                     f"{paced[0]:.0f} | {paced[1]:.2f} / {paced[2]:.2f} |")  # fmt: skip
    rate = statistics.median(r["rate"] for r in rounds)
    shown = "; ".join(f"{kind} {ratio:.2f}" for kind, ratio in ratios.items())
    lines += ["", f"score's saturation over each rank's (per round, median): {shown}. Paced at {PACED_SHARE:.0%} "
              f"of the lowest saturation ({rate:.0f} req/s)."]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))

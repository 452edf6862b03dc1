"""The scoring service side by side with what a user would build instead, and with the floor of that work.

Three services on one redis-server, each 2 processes x 2 threads of gunicorn, driven in turn by the same wrk
load (``benchmarks.wrk_load``: closed loop over keep-alive connections, random users, contexts and
candidates of the sample catalog, a fresh event id per request):

- ours: ``recommender serve`` (``benchmarks.service_setup.ServiceOnRedis``: ``InlineWorker``, the feature
  store and the event bus on that Redis, the joiner process), exploring epsilon-greedy 0.1 like the others,
  shedding off (``service.queue_budget_ms`` 0), a 1 s reward window so that joining happens during the runs;
- the afternoon build (``benchmarks.afternoon_app``): Flask on gunicorn gthread, one MGET of pre-built VW
  text lines, pyvw text predict, sampling, one XADD, an orjson response;
- the floor (``benchmarks.floor_app``): the same server and round trips over examples parsed at start.

For 20 and 200 candidates and 1, 2, 4 and 8 connections, the three runs of a point follow each other
(interleaved; the order turns each repetition), ``REPETITIONS`` times. Per run: requests/s, latency p50 / p99
(wrk's), errors, and CPU per request of the service's whole process tree from /proc (ours: master, workers
and the joiner, which is waited for until it is idle after the run: the time it then needed beyond the
reward window is added to the run's duration, so that our requests/s include joining), and apart from it
the redis-server's CPU per request. Ratios are taken between runs of the same repetition, against the
afternoon build (throughput, latency) and the floor (CPU).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from benchmarks.afternoon_app import load_lines
from benchmarks.service_setup import ServiceOnRedis, cpu_seconds, descendants, wait_for_joiner
from benchmarks.wrk_load import drive, ensure_wrk
from benchmarks.wsgi_servers import ServedProcesses, gunicorn_command
from tests.redis_harness import free_port

SIZES = (20, 200)
CONNECTIONS = (1, 2, 4, 8)
REPETITIONS = 2
REWARD_WAIT_SECONDS = 1.0
EXPLORATION = {"algorithm": "epsilon_greedy", "epsilon": 0.1}  # the afternoon build's --epsilon 0.1
TARGET_THROUGHPUT = {200: 1.5, 20: 1.2}  # ours / afternoon, at every connection count
TARGET_CPU_TO_FLOOR = 2.0  # ours / floor, CPU per request
SERVICES = ("ours", "afternoon", "floor")


class EpsilonService(ServiceOnRedis):
    """``ServiceOnRedis`` exploring like the afternoon build (the whole exploration section replaced: a deep
    merge would keep the default algorithm's other keys)."""

    def build_document(self) -> dict[str, Any]:
        document = super().build_document()
        document["policy"]["exploration"] = dict(EXPLORATION)
        return document


class Target:
    """One service under load: its port, its process tree (a function: workers may be replaced), its joiner."""

    def __init__(self, port: int, pids: Callable[[], list[int]],
                 joiner: Callable[[], list[int]] | None = None) -> None:  # fmt: skip
        self.port, self.pids, self.joiner = port, pids, joiner


def measure(target: Target, n_candidates: int, connections: int, seconds: float, wrk: str | None,
            redis_pid: int) -> dict[str, Any]:  # fmt: skip
    """One closed-loop run: the load's figures plus ``cpu_ms`` (the service's process tree) and ``redis_ms``
    per request; with a joiner, ``rps`` counts the time it needed after the run beyond the reward window."""
    if target.joiner is not None:
        wait_for_joiner(target.joiner(), 1.0)  # the previous run's joining is not this run's
    group = target.pids()
    before, redis_before = cpu_seconds(group), cpu_seconds([redis_pid])
    load = drive(target.port, n_candidates, connections, seconds, wrk=wrk)
    catch_up = 0.0
    if target.joiner is not None:
        catch_up = max(0.0, wait_for_joiner(target.joiner(), 1.0) - REWARD_WAIT_SECONDS)
    requests = max(1, load["requests"])
    result: dict[str, Any] = {**load, "run_rps": load["rps"], "catch_up_s": catch_up}
    result["rps"] = load["requests"] / (load["requests"] / load["rps"] + catch_up) if load["rps"] else 0.0
    result["cpu_ms"] = 1000 * (cpu_seconds(group) - before) / requests
    result["redis_ms"] = 1000 * (cpu_seconds([redis_pid]) - redis_before) / requests
    return result


def start_baselines(redis_url: str, workdir: Path) -> dict[str, ServedProcesses]:
    """The afternoon build and the floor on ``redis_url`` (their lines loaded first), both ready."""
    load_lines(redis.Redis.from_url(redis_url))
    groups = {}
    for name in ("afternoon", "floor"):
        port = free_port()
        command = gunicorn_command(f"benchmarks.{name}_app:create_app()", port)
        groups[name] = ServedProcesses(name, [command], port, workdir, env={"AFTERNOON_REDIS_URL": redis_url})
        groups[name].start()
    return groups


def run(quick: bool) -> str:
    seconds = 2.0 if quick else 8.0
    repetitions = 1 if quick else REPETITIONS
    connection_counts = (CONNECTIONS[0], CONNECTIONS[-1]) if quick else CONNECTIONS
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-versus-"))
    service = EpsilonService({"service": {"queue_budget_ms": 0},
                              "join": {"reward_wait_time": REWARD_WAIT_SECONDS, "flush_seconds": 1.0}},
                             workdir=workdir, keep_logs=False)  # fmt: skip
    groups: dict[str, ServedProcesses] = {}
    runs: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    try:
        service.start()
        assert service.server is not None and service.redis.process is not None
        server_pid, redis_pid = service.server.pid, service.redis.process.pid
        groups = start_baselines(service.redis.url, workdir)
        targets = {"ours": Target(service.port, lambda: descendants(server_pid), lambda: service.roles()["joiner"])}
        targets.update({name: Target(group.port, group.pids) for name, group in groups.items()})
        for n in SIZES:  # warm-up: caches, connections, the first model load
            for target in targets.values():
                drive(target.port, n, 2, 1.0 if quick else 3.0, wrk=wrk)
        for repetition in range(repetitions):
            order = SERVICES if repetition % 2 == 0 else SERVICES[::-1]
            for n in SIZES:
                for connections in connection_counts:
                    for name in order:
                        result = measure(targets[name], n, connections, seconds, wrk, redis_pid)
                        runs.setdefault((n, connections, name), []).append(result)
    finally:
        for group in groups.values():
            group.stop()
        service.stop()
    return report(runs, repetitions, seconds)


def connection_counts_of(runs: dict[tuple[int, int, str], Any]) -> list[int]:
    """The connection counts measured (keys ``(candidates, connections, service)``)."""
    return sorted({connections for _, connections, _ in runs})


def span(values: Sequence[float], digits: int = 0) -> str:
    """``a-b`` (min-max) of the repetitions' values, or the one value."""
    low, high = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return low if low == high else f"{low}-{high}"


def _ratios(runs: dict, n: int, connections: int, key: str, over: str) -> list[float]:
    """ours / ``over`` of figure ``key``, one per repetition."""
    pairs = zip(runs[(n, connections, "ours")], runs[(n, connections, over)], strict=True)
    return [mine[key] / theirs[key] if theirs[key] else float("nan") for mine, theirs in pairs]


def report(runs: dict[tuple[int, int, str], list[dict[str, Any]]], repetitions: int, seconds: float) -> str:
    """The Markdown section from ``runs[(candidates, connections, service)]`` (one dict per repetition)."""
    tool = next(iter(runs.values()))[0]["tool"]
    lines = [
        "## Versus: the service against the afternoon build and the floor (`bench_versus`)",
        "",
        f"One redis-server, three services of 2 gunicorn processes x 2 threads on the same {os.cpu_count()} cores "
        f"as the load generator ({tool}, closed loop, keep-alive): ours (`recommender serve`, `InlineWorker`, "
        "the joiner process, epsilon-greedy 0.1, shedding off, 1 s reward window), the afternoon build "
        "(`benchmarks/afternoon_app.py`: Flask on gthread, one MGET of pre-built VW text lines, pyvw text "
        "predict `--cb_explore_adf --epsilon 0.1 -q ua -q ca`, sampling, one XADD, orjson) and the floor "
        "(`benchmarks/floor_app.py`: the same round trips and response over VW examples parsed at start). "
        f"Random users, contexts and candidates of the sample catalog, a fresh event id per request; {seconds:g} s "
        f"per run, the three services' runs of a point in turn, {repetitions} repetition(s) (ranges are "
        "min-max over them). CPU: each service's whole process tree per request (ours: master, workers and "
        "the joiner; our req/s include the time the joiner needed after the run beyond the reward window, and "
        "are also shown without it); Redis's CPU apart. Ratios: ours against the afternoon build and the floor, "
        "between runs of the same repetition.",
        "",
        "| candidates | connections | req/s ours / afternoon / floor | ours req/s during the run "
        "| p50 ms ours / afternoon / floor "
        "| p99 ms ours / afternoon / floor | CPU ms/req ours / afternoon / floor | Redis CPU ms/req ours / afternoon "
        "| errors | throughput x afternoon | CPU x floor |",
        "|---:|---:|---|---:|---|---|---|---|---:|---:|---:|",
    ]
    for n in SIZES:
        for c in connection_counts_of(runs):
            figures = {name: runs[(n, c, name)] for name in SERVICES}

            def cells(key: str, digits: int, names: Sequence[str] = SERVICES) -> str:
                return " / ".join(span([r[key] for r in figures[name]], digits) for name in names)  # noqa: B023

            errors = sum(r["errors"] for name in SERVICES for r in figures[name])
            throughput, cpu = _ratios(runs, n, c, "rps", "afternoon"), _ratios(runs, n, c, "cpu_ms", "floor")
            lines.append(
                f"| {n} | {c} | {cells('rps', 0)} | {cells('run_rps', 0, ('ours',))} | {cells('p50_ms', 2)} "
                f"| {cells('p99_ms', 2)} | {cells('cpu_ms', 2)} "
                f"| {cells('redis_ms', 2, ('ours', 'afternoon'))} | {errors} | {span(throughput, 2)} "
                f"| {span(cpu, 2)} |"
            )
    lines += ["", *[f"- {verdict}" for verdict in verdicts(runs)]]
    return "\n".join(lines)


def verdicts(runs: dict[tuple[int, int, str], list[dict[str, Any]]]) -> list[str]:
    """The issue's targets, each judged on the median over repetitions of the per-repetition ratio."""
    out = []
    counts = connection_counts_of(runs)
    for n in sorted(TARGET_THROUGHPUT, reverse=True):
        target = TARGET_THROUGHPUT[n]
        ratios = {c: statistics.median(_ratios(runs, n, c, "rps", "afternoon")) for c in counts}
        met = [c for c, ratio in ratios.items() if ratio >= target]
        worst = min(ratios, key=ratios.__getitem__)
        out.append(f"Throughput at {n} candidates (target >= {target:g}x the afternoon build at every connection "
                   f"count): {'met' if len(met) == len(counts) else 'NOT met'}, at {len(met)} of "
                   f"{len(counts)}; lowest {ratios[worst]:.2f}x at {worst} connection(s)")  # fmt: skip
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        points = [(n, c) for n in SIZES for c in counts]
        worse = [(n, c) for n, c in points if statistics.median(_ratios(runs, n, c, key, "afternoon")) > 1]
        where = ", ".join(f"{n} candidates x {c}" for n, c in worse)
        verdict = "met" if not worse else f"NOT met, worse at {len(worse)} of {len(points)} points: {where}"
        out.append(f"{label} no worse than the afternoon build's at any point (target): {verdict}")
    for n in SIZES:
        ratios = {c: statistics.median(_ratios(runs, n, c, "cpu_ms", "floor")) for c in counts}
        worst = max(ratios, key=ratios.__getitem__)
        out.append(f"CPU per request at {n} candidates against the floor's (target <= {TARGET_CPU_TO_FLOOR:g}x): "
                   f"{'met' if ratios[worst] <= TARGET_CPU_TO_FLOOR else 'NOT met'}; highest {ratios[worst]:.2f}x "
                   f"at {worst} connection(s)")  # fmt: skip
    return out

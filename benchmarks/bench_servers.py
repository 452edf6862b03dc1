"""The scoring service under different WSGI servers: does ``InlineWorker`` pay for itself?

One service configuration (``ServiceOnRedis``: the feature store and the event bus on one redis-server,
shedding off, a 1 s reward window), served side by side by:

- ``recommender serve``: gunicorn with ``InlineWorker`` (2 workers x 2 threads) and the joiner process;
- plain gunicorn ``gthread`` (2 x 2), uWSGI (2 processes x 2 threads, ``--lazy-apps``, HTTP/1.1 keep-alive
  socket), granian's WSGI mode (2 workers x 2 blocking threads) and bjoern (2 single-threaded processes on one
  port): each serving ``benchmarks.ours_wsgi:application``, the same app from the same config file.

The optional servers are installed into this virtualenv when missing (``wsgi_servers.ensure_server``); one
that cannot be installed or started is reported as not available, with the reason. All share the one joiner
(``recommender serve``'s), whose CPU is counted with whichever server is under load. The load and the
accounting are ``bench_versus``'s: the same wrk runs (closed loop, random requests), each server's runs of a
point in turn, CPU per request of its process tree plus the joiner (Redis apart), requests/s including the
joiner's catch-up after the run.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_versus import REWARD_WAIT_SECONDS, Target, connection_counts_of, measure, span
from benchmarks.service_setup import ServiceOnRedis, descendants
from benchmarks.wrk_load import drive, ensure_wrk
from benchmarks.wsgi_servers import ServedProcesses, ensure_server, server_commands
from tests.redis_harness import free_port

SERVERS = ("inline", "gthread", "uwsgi", "granian", "bjoern")
LABELS = {"inline": "gunicorn + `InlineWorker` (`recommender serve`)", "gthread": "gunicorn gthread",
          "uwsgi": "uWSGI", "granian": "granian (WSGI)", "bjoern": "bjoern (2 processes x 1 thread)"}  # fmt: skip
SIZES = (20, 200)
CONNECTIONS = (2, 8)
REPETITIONS = 2


def start_servers(service: ServiceOnRedis, workdir: Path) -> tuple[dict[str, ServedProcesses], dict[str, str]]:
    """Every other server that can run, ready; and why the others cannot (``not available: ...``)."""
    started, missing = {}, {}
    for name in SERVERS[1:]:
        reason = ensure_server(name)
        if reason is None:
            port = free_port()
            # Metrics shared by the server's processes through a directory, as `recommender serve` sets up.
            metrics_dir = workdir / f"metrics-{name}"
            metrics_dir.mkdir()
            env = {"BENCH_SERVICE_CONFIG": str(service.config_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
            group = ServedProcesses(name, server_commands(name, port), port, workdir, env=env)
            try:
                started[name] = group.start()
            except RuntimeError as exc:
                group.stop()
                tail = group.log_text().strip().splitlines()[-1:] or [""]
                reason = f"{exc}; {tail[0][:200]}"
        if reason is not None:
            missing[name] = f"not available: {reason}"
    return started, missing


def run(quick: bool) -> str:
    seconds = 2.0 if quick else 8.0
    repetitions = 1 if quick else REPETITIONS
    connection_counts = CONNECTIONS[-1:] if quick else CONNECTIONS
    wrk = ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    service = ServiceOnRedis({"service": {"queue_budget_ms": 0},
                              "join": {"reward_wait_time": REWARD_WAIT_SECONDS, "flush_seconds": 1.0}},
                             workdir=workdir, keep_logs=False)  # fmt: skip
    groups: dict[str, ServedProcesses] = {}
    runs: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    try:
        service.start()
        assert service.server is not None and service.redis.process is not None
        server_pid, redis_pid = service.server.pid, service.redis.process.pid

        def joiner() -> list[int]:
            return service.roles()["joiner"]

        targets = {"inline": Target(service.port, lambda: descendants(server_pid), joiner)}
        groups, missing = start_servers(service, workdir)
        for name, group in groups.items():
            targets[name] = Target(group.port, lambda group=group: group.pids() + joiner(), joiner)
        for n in SIZES:  # warm-up
            for target in targets.values():
                drive(target.port, n, 2, 1.0 if quick else 3.0, wrk=wrk)
        names = list(targets)
        for repetition in range(repetitions):
            order = names if repetition % 2 == 0 else names[::-1]
            for n in SIZES:
                for connections in connection_counts:
                    for name in order:
                        result = measure(targets[name], n, connections, seconds, wrk, redis_pid)
                        runs.setdefault((n, connections, name), []).append(result)
    finally:
        for group in groups.values():
            group.stop()
        service.stop()
    return report(runs, names, missing, repetitions, seconds)


def report(runs: dict[tuple[int, int, str], list[dict[str, Any]]], names: list[str], missing: dict[str, str],
           repetitions: int, seconds: float) -> str:  # fmt: skip
    tool = next(iter(runs.values()))[0]["tool"]
    lines = [
        "## WSGI servers: the service under `InlineWorker` and under other servers (`bench_servers`)",
        "",
        f"The same app and config (features and event bus on one redis-server, shedding off, a 1 s reward "
        f"window) under each server, 2 processes x 2 threads unless said, on the same {os.cpu_count()} cores as "
        f"the load generator ({tool}, closed loop, keep-alive, random requests of the sample catalog, a fresh "
        f"event id each); {seconds:g} s per run, the servers' runs of a point in turn, {repetitions} "
        "repetition(s) (min-max). Every server's processes share their metrics through a directory "
        "(`PROMETHEUS_MULTIPROC_DIR`), as under `recommender serve`. CPU: the server's process tree plus the "
        "joiner process, per request (Redis "
        "apart); req/s include the joiner's catch-up after the run. Ratios against `InlineWorker` in the same "
        "repetition.",
        "",
        "| server | candidates | connections | req/s | p50 ms | p99 ms | CPU ms/req | errors | req/s x inline "
        "| CPU x inline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        for c in connection_counts_of(runs):
            inline = runs[(n, c, "inline")]
            for name in names:
                mine = runs[(n, c, name)]
                rps = [a["rps"] / b["rps"] if b["rps"] else float("nan") for a, b in zip(mine, inline, strict=True)]
                cpu = [a["cpu_ms"] / b["cpu_ms"] for a, b in zip(mine, inline, strict=True)]
                lines.append(
                    f"| {LABELS[name]} | {n} | {c} | {span([r['rps'] for r in mine])} "
                    f"| {span([r['p50_ms'] for r in mine], 2)} | {span([r['p99_ms'] for r in mine], 2)} "
                    f"| {span([r['cpu_ms'] for r in mine], 2)} | {sum(r['errors'] for r in mine)} "
                    f"| {span(rps, 2)} | {span(cpu, 2)} |"
                )
    lines += ["", *[f"- {line}" for line in summary(runs, names)]]
    lines += [f"- {LABELS[name]}: {reason}" for name, reason in missing.items()]
    return "\n".join(lines).rstrip()


def summary(runs: dict[tuple[int, int, str], list[dict[str, Any]]], names: list[str]) -> list[str]:
    """Per server, the median over every point and repetition of its req/s and CPU/req against
    ``InlineWorker``'s in the same repetition."""
    out = []
    for name in names[1:]:
        rps, cpu = [], []
        for (n, c, server), mine in runs.items():
            if server == name:
                for a, b in zip(mine, runs[(n, c, "inline")], strict=True):
                    rps.append(a["rps"] / b["rps"] if b["rps"] else float("nan"))
                    cpu.append(a["cpu_ms"] / b["cpu_ms"])
        out.append(f"{LABELS[name]} against `InlineWorker`, median over all points: req/s "
                   f"{statistics.median(rps):.2f}x, CPU/req {statistics.median(cpu):.2f}x")  # fmt: skip
    return out

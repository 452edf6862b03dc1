"""Where one ``POST /v1/score`` costs its CPU: ours, the afternoon build and the floor, part by part.

``bench_versus`` measures the three services whole, under load. This benchmark takes them apart, on one
redis-server, in the same run:

- *server*: what the HTTP server costs a worker per request before any app runs. A bare WSGI app (it reads
  the body and answers ``{}``) under one gunicorn worker x 2 threads, ours (``InlineWorker``) and stock
  gthread (the afternoon build's and the floor's), driven by wrk over 4 keep-alive connections with the
  score load's bodies; the server's processes' CPU per request from /proc, runs alternated.
- *app*: each service's WSGI app called directly in a loop (no server, no sockets to the client), on the
  same random requests as the load (``bench_service.score_bodies``): this thread's CPU per request
  (``time.thread_time``), the framework included (ours: its hot path in front of Flask; the others: Flask).
  The apps run in a child process with
  ``PROMETHEUS_MULTIPROC_DIR`` set, as ``recommender serve``'s workers do (metrics written to shared files).
  Rounds of the three apps alternate.
- *ours by step*: the same loop with timers around the parse (``parse_score_request``: pydantic), the
  feature read (``Runtime.read_features``, one MGET), the decision (``Runtime.decide``: the policy), the bus
  (``DecisionPublisher.publish``: the decision script, one EVALSHA) and the view as a whole
  (``scoring.answer_score``, which ours' hot path in front of Flask calls for the usual request,
  ``recommender.service.hot_path``); what remains of the view is building the decision's input and the
  response body, and the app outside the view is the hot path (the body read, the response's JSON,
  metrics, the clock). Timed in a run of its own after each round, on the same requests: the timers add about
  2 us each.
- *joiner*: after ours' rounds, once the reward window has passed, the runtime's joiner joins those
  decisions (``Joiner.run_once(flush=True)``: close, Parquet write, commit); its CPU per decision. The
  afternoon build and the floor have none: their stream is read by nothing.
- *Redis*: the redis-server's CPU per request during each app's rounds (ours: and per decision during the
  join). Beside it, what one bare round trip (``PING``) costs the client.

The sum of the parts is what one request of each service costs the two cores, wrk's share apart; the
report sets it beside what a given throughput ratio would need.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import redis
from flask import Flask

from benchmarks import afternoon_app, floor_app
from benchmarks.bench_service import score_bodies
from benchmarks.bench_versus import REWARD_WAIT_SECONDS, TARGET_THROUGHPUT, EpsilonService
from benchmarks.service_setup import ROOT, cpu_seconds, load_catalog
from benchmarks.wrk_load import ensure_wrk, run_wrk
from benchmarks.wsgi_servers import ServedProcesses
from features.redis_store import DirectCommands
from recommender.service import create_app, hot_path, scoring
from tests.redis_harness import free_port

SIZES = (20, 200)
SERVICES = ("ours", "afternoon", "floor")
SERVERS = {"ours (gunicorn + InlineWorker)": "recommender.service.gunicorn.worker.InlineWorker",
           "afternoon and floor (gunicorn gthread)": "gthread"}  # fmt: skip
INNER_STEPS = ("parse", "feature read", "decision", "bus")  # within the view
WARM_UP = 300
JOIN_LIMIT_SECONDS = 120.0
ROUND_TRIPS = 2000


def bare_application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The least a WSGI app can do with a score request: read the body, answer ``{}``."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


# ----- server cost (wrk against a bare app) ------------------------------------------------------------
def server_costs(repetitions: int, seconds: float, workdir: Path) -> dict[str, list[float]]:
    """Worker CPU us per request of the bare app under each of ``SERVERS``, one figure per repetition."""
    wrk = ensure_wrk()
    if wrk is None:
        raise RuntimeError("wrk is neither installed nor installable (apt-get install wrk)")
    costs: dict[str, list[float]] = {name: [] for name in SERVERS}
    for repetition in range(repetitions):
        names = list(SERVERS) if repetition % 2 == 0 else list(SERVERS)[::-1]
        for name in names:
            port = free_port()
            command = [sys.executable, "-m", "gunicorn", "-k", SERVERS[name], "-w", "1", "--threads", "2",
                       "-b", f"127.0.0.1:{port}", "--keep-alive", "75", "--log-level", "warning",
                       "benchmarks.bench_anatomy:bare_application"]  # fmt: skip
            group = ServedProcesses("bare", [command], port, workdir).start()
            try:
                run_wrk(wrk, port, 20, 4, 1.0)  # warm-up
                pids = group.pids()
                before = cpu_seconds(pids)
                load = run_wrk(wrk, port, 20, 4, seconds)
                costs[name].append(1e6 * (cpu_seconds(pids) - before) / max(1, load["requests"]))
            finally:
                group.stop()
    return costs


# ----- the apps, in process (run in a child: see measure_apps) -----------------------------------------
def _environ(body: bytes) -> WSGIEnvironment:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/score", "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False}  # fmt: skip


def _call(app: WSGIApplication, bodies: list[bytes], statuses: list[str]) -> float:
    """This thread's CPU seconds for one WSGI call per body (answers read whole, closed)."""

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        statuses.append(status)

    started = time.thread_time()
    for body in bodies:
        answer = app(_environ(body), start_response)
        b"".join(answer)
        close = getattr(answer, "close", None)
        if close is not None:
            close()
    return time.thread_time() - started


class StepTimers:
    """Timers (this thread's CPU) around named callables, summed per name."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def around(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[name] = self.spent.get(name, 0.0) + time.thread_time() - started

        return timed


def _timed_ours(app: Flask, timers: StepTimers) -> Callable[[], None]:
    """Put ``timers`` around ours' steps; returns the function that takes them off again."""
    rt = app.extensions["recommender"]
    view = hot_path.answer_score
    parse = scoring.parse_score_request
    rt.read_features = timers.around("feature read", rt.read_features)
    rt.decide = timers.around("decision", rt.decide)
    rt.publisher.publish = timers.around("bus", rt.publisher.publish)
    scoring.parse_score_request = timers.around("parse", parse)
    hot_path.answer_score = timers.around("view", view)

    def untime() -> None:
        for name in ("read_features", "decide"):
            delattr(rt, name)
        del rt.publisher.publish
        scoring.parse_score_request = parse
        hot_path.answer_score = view

    return untime


def measure_apps(rounds: int, batch: int) -> dict[str, Any]:
    """The app, step, joiner and Redis figures of every size (see the module docstring), in this process."""
    service = EpsilonService({"service": {"queue_budget_ms": 0},
                              "join": {"reward_wait_time": REWARD_WAIT_SECONDS, "flush_seconds": 1.0}})  # fmt: skip
    service.redis.start()
    try:
        config = service.write_config(service.build_document())
        load_catalog(config)
        afternoon_app.load_lines(redis.Redis.from_url(service.redis.url))
        client = redis.Redis.from_url(service.redis.url)
        ours = create_app(config, config_path=service.config_path, run_joiner=False)
        apps = {"ours": ours, **_baseline_apps(service.redis.url)}
        results: dict[str, Any] = {}
        try:
            for n in SIZES:
                results[str(n)] = _measure_size(apps, n, rounds, batch, client)
        finally:
            ours.extensions["recommender"].stop()
        return results
    finally:
        service.redis.stop()


def _baseline_apps(redis_url: str) -> dict[str, Flask]:
    """The afternoon build and the floor on ``redis_url`` (their factories read it from the environment, which
    is left as it was)."""
    before = os.environ.get("AFTERNOON_REDIS_URL")
    os.environ["AFTERNOON_REDIS_URL"] = redis_url
    try:
        return {"afternoon": afternoon_app.create_app(), "floor": floor_app.create_app()}
    finally:
        if before is None:
            del os.environ["AFTERNOON_REDIS_URL"]
        else:
            os.environ["AFTERNOON_REDIS_URL"] = before


def redis_cpu_seconds(client: redis.Redis) -> float:
    """The redis-server's user + system CPU seconds so far (``INFO cpu``: microsecond resolution, where /proc
    counts clock ticks of 10 ms)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _measure_size(apps: dict[str, Flask], n: int, rounds: int, batch: int, client: redis.Redis) -> dict[str, Any]:
    bodies = score_bodies(n, batch * 4, seed=n)
    statuses: list[str] = []
    for app in apps.values():
        _call(app, bodies[:WARM_UP], statuses)
    app_us: dict[str, list[float]] = {name: [] for name in apps}
    redis_us: dict[str, list[float]] = {name: [] for name in apps}
    steps_us: dict[str, list[float]] = {}
    for index in range(rounds):
        chunk = bodies[(index % 4) * batch : (index % 4 + 1) * batch]
        for name in SERVICES if index % 2 == 0 else SERVICES[::-1]:
            redis_before = redis_cpu_seconds(client)
            app_us[name].append(1e6 * _call(apps[name], chunk, statuses) / batch)
            redis_us[name].append(1e6 * (redis_cpu_seconds(client) - redis_before) / batch)
        # Ours once more on the same requests with its steps timed (new event ids: the bodies carry none).
        timers = StepTimers()
        untime = _timed_ours(apps["ours"], timers)
        try:
            whole = _call(apps["ours"], chunk, statuses)
        finally:
            untime()
        for name, spent in [*timers.spent.items(), ("whole app, timed", whole)]:
            steps_us.setdefault(name, []).append(1e6 * spent / batch)
    steps = {name: _median(values) for name, values in steps_us.items()}
    joiner = apps["ours"].extensions["recommender"].joiner
    decided = min(WARM_UP, len(bodies)) + 2 * rounds * batch  # ours' decisions of this size, timed runs included
    time.sleep(REWARD_WAIT_SECONDS + 0.2)
    redis_before, started, joined = redis_cpu_seconds(client), time.thread_time(), 0
    deadline = time.monotonic() + JOIN_LIMIT_SECONDS
    while joined < decided:
        joined += joiner.run_once(flush=True)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the joiner joined {joined} of {decided} decisions in {JOIN_LIMIT_SECONDS:g} s")
    joiner_cpu, redis_join = time.thread_time() - started, redis_cpu_seconds(client) - redis_before
    refused = [status for status in statuses if not status.startswith("200")]
    if refused:
        raise RuntimeError(f"{len(refused)} requests were not answered 200, e.g. {refused[:3]}")
    direct = DirectCommands(client)
    started = time.thread_time()
    for _ in range(ROUND_TRIPS):
        direct.execute("PING")
    round_trip = (time.thread_time() - started) / ROUND_TRIPS
    per_decision = 1e6 / max(1, joined)
    return {"app_us": app_us, "redis_us": redis_us, "steps_us": steps, "joined": joined,
            "joiner_us": joiner_cpu * per_decision, "redis_join_us": redis_join * per_decision,
            "round_trip_us": 1e6 * round_trip}  # fmt: skip


def _apps_in_child(rounds: int, batch: int, workdir: Path) -> dict[str, Any]:
    """``measure_apps`` in a child process with a metrics directory of its own, as a served worker has."""
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    out = workdir / "apps.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-m", "benchmarks.bench_anatomy", str(rounds), str(batch), str(out)],
                   env=env, cwd=ROOT, check=True, timeout=1800)  # fmt: skip
    return json.loads(out.read_text())


# ----- report -------------------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(apps: dict[str, Any], servers: dict[str, list[float]], rounds: int, batch: int, seconds: float) -> str:
    ours_server = _median(servers["ours (gunicorn + InlineWorker)"])
    stock_server = _median(servers["afternoon and floor (gunicorn gthread)"])
    lines = [
        "## Where a score request's CPU goes: ours, the afternoon build and the floor (`bench_anatomy`)",
        "",
        "One redis-server. *Server*: a bare WSGI app (reads the body, answers `{}`) under one gunicorn worker x 2 "
        f"threads, wrk over 4 keep-alive connections, {seconds:g} s per run, {len(servers[next(iter(servers))])} "
        "runs per server alternated (medians; the server's processes' CPU per request). *App*: each service's WSGI app "
        f"called in a loop in one process, {rounds} rounds of {batch} random requests of the sample catalog per "
        "app, the three alternated (medians of the rounds; this thread's CPU, the framework included: ours' hot "
        "path in front of Flask, the others' Flask; metrics in files "
        "as under `recommender serve`). *Ours by step*: timers around each step, in a timed run of ours after "
        "each round (medians). "
        "*Joiner*: the runtime's joiner joining those decisions after the reward window. *Redis*: the "
        "redis-server's CPU per request during each app's rounds, and per decision during the join. The "
        "afternoon build's and the floor's decisions are read by nothing. CPU in microseconds per request.",
        "",
        "| part | 20: ours | 20: afternoon | 20: floor | 200: ours | 200: afternoon | 200: floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    by_size = {n: apps[str(n)] for n in SIZES}

    def row(label: str, values: Callable[[int, str], float | None]) -> str:
        cells = []
        for n in SIZES:
            for name in SERVICES:
                value = values(n, name)
                cells.append("" if value is None else f"{value:,.0f}")
        return f"| {label} | " + " | ".join(cells) + " |"

    def step(name: str) -> Callable[[int, str], float | None]:
        return lambda n, service: by_size[n]["steps_us"][name] if service == "ours" else None

    def view_rest(n: int, service: str) -> float | None:
        if service != "ours":
            return None
        steps = by_size[n]["steps_us"]
        return steps["view"] - sum(steps[name] for name in INNER_STEPS)

    def around_view(n: int, service: str) -> float | None:
        if service != "ours":
            return None
        steps = by_size[n]["steps_us"]
        return steps["whole app, timed"] - steps["view"]

    def server(n: int, service: str) -> float:
        return ours_server if service == "ours" else stock_server

    def app(n: int, service: str) -> float:
        return _median(by_size[n]["app_us"][service])

    def joiner(n: int, service: str) -> float:
        return by_size[n]["joiner_us"] if service == "ours" else 0.0

    def redis_cpu(n: int, service: str) -> float:
        extra = by_size[n]["redis_join_us"] if service == "ours" else 0.0
        return _median(by_size[n]["redis_us"][service]) + extra

    def total(n: int, service: str) -> float:
        return server(n, service) + app(n, service) + joiner(n, service) + redis_cpu(n, service)

    lines += [
        row("server (bare app under the service's server)", server),
        row("app (WSGI call, framework included)", app),
        row("&nbsp;&nbsp;ours: parse (pydantic)", step("parse")),
        row("&nbsp;&nbsp;ours: feature read (one MGET)", step("feature read")),
        row("&nbsp;&nbsp;ours: decision (the policy)", step("decision")),
        row("&nbsp;&nbsp;ours: bus (decision script, one EVALSHA)", step("bus")),
        row("&nbsp;&nbsp;ours: rest of the view (decision input, response body, bookkeeping)", view_rest),
        row("&nbsp;&nbsp;ours: around the view (hot path: body read, response JSON, metrics)", around_view),
        row("joiner, per decision", joiner),
        row("Redis (requests, and ours' join)", redis_cpu),
        row("**sum**", total),
        row("ours: the app in its timed runs (steps above; the timers' cost included)", step("whole app, timed")),
        "",
    ]
    for n in SIZES:
        ours, afternoon, floor = (total(n, name) for name in SERVICES)
        fixed = server(n, "ours") + joiner(n, "ours") + redis_cpu(n, "ours")
        allowed = afternoon / TARGET_THROUGHPUT[n]
        lines.append(f"- {n} candidates: ours costs {ours / afternoon:.2f}x the afternoon build's CPU per request "
                     f"and {ours / floor:.2f}x the floor's ({by_size[n]['joined']:,} decisions joined). For "
                     f"{TARGET_THROUGHPUT[n]:g}x the afternoon build's throughput (`bench_versus`'s target) ours "
                     f"could cost {allowed:,.0f} us; its server, joiner and Redis take {fixed:,.0f}, which leaves "
                     f"{allowed - fixed:,.0f} us for the app: ours' is {app(n, 'ours'):,.0f}, the floor's "
                     f"{app(n, 'floor'):,.0f}.")  # fmt: skip
    round_trip = _median([apps[str(n)]["round_trip_us"] for n in SIZES])
    lines.append(f"- One Redis round trip (`PING` over `DirectCommands`, the request path's client) costs this "
                 f"process {round_trip:,.0f} us of CPU; ours makes two per request (the feature read, the bus), "
                 "as the afternoon build and the floor do.")  # fmt: skip
    return "\n".join(lines)


def run(quick: bool = False) -> str:
    rounds, batch = (4, 100) if quick else (20, 250)
    repetitions, seconds = (1, 2.0) if quick else (3, 5.0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-anatomy-"))
    servers = server_costs(repetitions, seconds, workdir)
    apps = _apps_in_child(rounds, batch, workdir)
    return report(apps, servers, rounds, batch, seconds)


if __name__ == "__main__":
    Path(sys.argv[3]).write_text(json.dumps(measure_apps(int(sys.argv[1]), int(sys.argv[2]))))

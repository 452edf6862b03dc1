"""Closed-loop HTTP load with ``wrk`` (a C load generator; Debian package ``wrk``), random score requests.

``drive(port, n_candidates, connections, seconds)`` runs wrk over ``connections`` keep-alive connections for
``seconds``, each connection sending its next ``POST /v1/score`` as soon as the answer is in. wrk's Lua script
(``WRK_SCRIPT``) makes every request anew, like the service benchmark's bodies (``bench_service.score_bodies``):
a random user of the sample catalog's 10,000, a random context (device, hour), ``n_candidates`` distinct
items drawn from its 1,000, and a fresh event id (a per-run random prefix, the thread's number and a
counter: never one a service has seen before). Its ``done`` hook prints one ``WRK_RESULT`` line (requests,
duration, errors by kind, latency p50 / p99 / mean in microseconds), parsed here, so no figure is scraped
from wrk's human-readable summary.

Without wrk (and when it cannot be installed, ``ensure_wrk``) the same load is driven by this package's
Python client (``benchmarks.http_load``, closed loop, the same connection count) over pre-built random
bodies without an event id (the services make one). ``tool`` in the result says which one ran.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

from benchmarks.bench_service import score_bodies
from benchmarks.http_load import build_request, run_load

N_USERS = 10_000  # the sample catalog's users and items (features.sample_catalog)
N_ITEMS = 1_000

WRK_SCRIPT = """
local n_candidates = %(candidates)d
local n_items = %(items)d
local n_users = %(users)d
local run_id = "%(run_id)s"
local path = "%(path)s"
local devices = {"mobile", "desktop", "app"}
local headers = {["Content-Type"] = "application/json"}
local threads = 0
local items = {}
local counter = 0
local prefix = ""

function setup(thread)
  threads = threads + 1
  thread:set("index", threads)
end

function init(args)
  prefix = run_id .. "-" .. tostring(index)
  math.randomseed(tonumber(string.sub(run_id, 1, 8), 16) + index)
  for i = 1, n_items do items[i] = string.format('"item-%%04d"', i) end
end

function request()
  counter = counter + 1
  for i = 1, n_candidates do  -- a partial Fisher-Yates shuffle: the first n_candidates, distinct
    local j = math.random(i, n_items)
    items[i], items[j] = items[j], items[i]
  end
  local body = string.format(
    '{"event_id":"%%s-%%d","user_id":"user-%%05d","context":{"device":"%%s","hour":%%d},"candidates":[%%s]}',
    prefix, counter, math.random(1, n_users), devices[math.random(1, 3)], math.random(0, 23),
    table.concat(items, ",", 1, n_candidates))
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %%d %%d %%d %%d %%d %%d %%d %%.1f %%.1f %%.1f\\n", summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(99), latency.mean))
end
"""


class LoadResult(TypedDict):
    """One closed-loop run: requests answered, errors (connection/read/write errors, timeouts and non-2xx/3xx
    answers), requests/s over the run, latency p50 / p99 / mean in ms, and which load generator ran."""

    tool: str
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


def apt_install(package: str) -> bool:
    """``apt-get install -y package`` (after ``apt-get update`` if the first try fails: a fresh machine has no
    package lists); False when not root, without apt-get, or when both tries fail."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    print(f"apt-get install -y {package}", file=sys.stderr)
    install = ["apt-get", "install", "-y", package]
    if subprocess.run(install, check=False, capture_output=True).returncode == 0:
        return True
    subprocess.run(["apt-get", "update"], check=False, capture_output=True)
    return subprocess.run(install, check=False, capture_output=True).returncode == 0


def ensure_wrk() -> str | None:
    """The wrk binary: on PATH, or installed with apt-get (``apt_install``); None otherwise."""
    found = shutil.which("wrk")
    if found is None and apt_install("wrk"):
        found = shutil.which("wrk")
    return found


def parse_result(output: str) -> LoadResult:
    """The figures of the ``done`` hook's ``WRK_RESULT`` line in wrk's output; ValueError without one."""
    for line in output.splitlines():
        if line.startswith("WRK_RESULT "):
            fields = line.split()[1:]
            requests, duration_us, *errors = (int(x) for x in fields[:7])
            p50, p99, mean = (float(x) / 1000 for x in fields[7:10])
            return LoadResult(tool="wrk", requests=requests, errors=sum(errors), rps=requests / (duration_us / 1e6),
                              p50_ms=p50, p99_ms=p99, mean_ms=mean)  # fmt: skip
    raise ValueError(f"no WRK_RESULT line in wrk's output: {output[-2000:]!r}")


def run_wrk(wrk: str, port: int, n_candidates: int, connections: int, seconds: float,
            path: str = "/v1/score") -> LoadResult:  # fmt: skip
    """One wrk run (``min(connections, 2)`` threads: the machine's cores are the services' too)."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        script = Path(tmp) / "score.lua"
        script.write_text(WRK_SCRIPT % {"candidates": n_candidates, "items": N_ITEMS, "users": N_USERS,
                                        "run_id": secrets.token_hex(6), "path": path})  # fmt: skip
        argv = [wrk, "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{seconds:g}s",
                "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout[-500:]}")
    return parse_result(done.stdout)


def run_python(port: int, n_candidates: int, connections: int, seconds: float, path: str = "/v1/score") -> LoadResult:
    """The same closed loop from ``benchmarks.http_load`` (when there is no wrk)."""
    requests = [build_request(path, body) for body in score_bodies(n_candidates, 512, seed=connections)]
    processes = min(connections, 2)
    result = run_load(port, requests, processes=processes, connections=math.ceil(connections / processes),
                      rate=None, max_requests=10**9, seconds=seconds)  # fmt: skip
    return LoadResult(tool="python (benchmarks.http_load)", requests=result["requests"], errors=result["errors"],
                      rps=result["rps"], p50_ms=result["p50_ms"], p99_ms=result["p99_ms"],
                      mean_ms=float("nan"))  # fmt: skip


def drive(port: int, n_candidates: int, connections: int, seconds: float, *, wrk: str | None) -> LoadResult:
    """``run_wrk`` with ``wrk`` (from ``ensure_wrk``), or ``run_python`` when it is None."""
    if wrk is not None:
        return run_wrk(wrk, port, n_candidates, connections, seconds)
    return run_python(port, n_candidates, connections, seconds)

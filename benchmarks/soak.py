"""Soak: the service on Redis (2 workers, the joiner, a trainer publishing every few seconds) driven at a
fixed rate for a long time; the figure is the resident memory (RSS) of every process at start and end.

``make soak`` runs it for 10 minutes at 60 requests/s (``--minutes``, ``--rate`` to change). The load is
``wrk`` when it is installed (installed with apt-get when missing and possible; each connection waits
``connections / rate`` seconds between requests, a fixed rate with a unique event id per request), else this
package's open-loop client (``benchmarks.http_load``). RSS is read from /proc every ``--sample-seconds``;
"start" is after a warm-up minute (caches filled, the first model versions swapped in), so that the
figure is growth, not warm-up. Also reported: requests, non-2xx answers, model versions published, and the
series of ``recommender_model_info`` at the end (one per worker: the current version).

Not part of ``make bench`` (it takes minutes by design): ``python -m benchmarks.soak --minutes 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.bench_service import _bodies, _get, _process_roles, _wait_ready
from benchmarks.http_load import build_request, run_load
from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from tests.redis_harness import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
WARM_UP_SECONDS = 60.0
CONNECTIONS = 4

# wrk's script: POST /v1/score with a fresh event id each time, paced per connection.
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local counter = 0
local thread_id = 0
local pause_ms = %(pause_ms)f
function setup(thread) thread:set("id", tostring(math.random(1, 1000000000))) end
function init(args) thread_id = id end
function delay() return pause_ms end
function request()
  counter = counter + 1
  local body = string.format('{"event_id":"soak-%%s-%%d",%%s', thread_id, counter,
                             string.sub(bodies[(counter %% #bodies) + 1], 2))
  return wrk.format("POST", "/v1/score", {["Content-Type"] = "application/json"}, body)
end
"""


def rss_mb(pid: int) -> float | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except (FileNotFoundError, ProcessLookupError):
        return None


def ensure_wrk() -> str | None:
    """The wrk binary: on PATH, or installed with apt-get (as root, when apt is there); None otherwise."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    print("wrk not found: apt-get install -y wrk", file=sys.stderr)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def drive_with_wrk(wrk: str, port: int, bodies: list[bytes], rate: float, seconds: float, workdir: Path) -> dict:
    script = workdir / "soak.lua"
    quoted = ",".join(json.dumps(body.decode()) for body in bodies)
    script.write_text(WRK_SCRIPT % {"bodies": quoted, "pause_ms": CONNECTIONS * 1000.0 / rate})
    result = subprocess.run(
        [wrk, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{int(seconds)}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    text = result.stdout
    requests = re.search(r"(\d+) requests in", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    return {"tool": "wrk", "requests": int(requests.group(1)) if requests else 0,
            "errors": int(non_2xx.group(1)) if non_2xx else 0, "socket_errors": errors.group(1) if errors else "none",
            "p99": p99.group(1) if p99 else "?"}  # fmt: skip


def drive_with_python(port: int, bodies: list[bytes], rate: float, seconds: float) -> dict:
    requests = [build_request("/v1/score", body) for body in bodies]
    result = run_load(port, requests, processes=2, connections=CONNECTIONS // 2, rate=rate,
                      max_requests=int(rate * seconds * 2), seconds=seconds)  # fmt: skip
    return {"tool": "python (benchmarks.http_load)", "requests": result["requests"], "errors": result["errors"],
            "p99": f"{result['p99_ms']:.1f}ms"}  # fmt: skip


class Sampler(threading.Thread):
    """RSS of every process, every ``interval`` seconds."""

    def __init__(self, pids: dict[str, int], interval: float) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.samples: list[tuple[float, dict[str, float | None]]] = []
        self.stop = threading.Event()

    def sample(self) -> None:
        self.samples.append((time.monotonic(), {name: rss_mb(pid) for name, pid in self.pids.items()}))

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sample()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time after the warm-up")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second")
    parser.add_argument("--update-interval", type=float, default=5.0, help="trainer.model_update_interval")
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--warm-up", type=float, default=WARM_UP_SECONDS, help="seconds before the start figure")
    parser.add_argument("--python-load", action="store_true", help="use the Python client even if wrk is there")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    redis = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    port = free_port()
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["features"].update(backend="redis", redis={**document["features"]["redis"], "url": redis.url})
    document["policy"]["model_dir"] = str(workdir / "models")
    document["service"].update(port=port, workers=2, threads=2)
    document["join"].update(event_log_dir=str(workdir / "events"), reward_wait_time=5.0)
    document["trainer"].update(model_update_interval=args.update_interval)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(document))
    config = load_config(config_path)
    store = open_store(config.features)
    load_sample_catalog(store)
    store.close()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = [sys.executable, "-m", "recommender.cli.main", "--config", str(config_path)]
    quiet = {"env": env, "cwd": workdir, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen([*base, "serve", "--log-level", "warning"], **quiet)
    trainer = subprocess.Popen([*base, "train"], **quiet)
    wrk = None if args.python_load else ensure_wrk()
    seconds = args.minutes * 60.0
    bodies = _bodies(20, 500, seed=3)
    try:
        _wait_ready(port)
        time.sleep(2.0)  # the joiner process starts after the workers
        roles = _process_roles(server.pid)
        pids = {"master": server.pid, "trainer": trainer.pid, "redis": redis.process.pid}
        pids.update({f"worker-{i + 1}": pid for i, pid in enumerate(sorted(roles["workers"]))})
        if roles["joiner"]:
            pids["joiner"] = roles["joiner"][0]
        sampler = Sampler(pids, args.sample_seconds)
        load: dict = {}

        def drive() -> None:
            total = args.warm_up + seconds
            load.update(drive_with_wrk(wrk, port, bodies, args.rate, total, workdir) if wrk
                        else drive_with_python(port, bodies, args.rate, total))  # fmt: skip

        driver = threading.Thread(target=drive)
        driver.start()
        time.sleep(args.warm_up)
        sampler.sample()
        sampler.start()
        driver.join()
        sampler.stop.set()
        sampler.sample()
        metrics = _get(port, "/metrics")[1].decode()
    finally:
        for process in (trainer, server):
            process.terminate()
        for process in (trainer, server):
            process.wait(timeout=60)
        redis.stop()
    versions = len(list((workdir / "models" / "versions").iterdir())) if (workdir / "models").is_dir() else 0
    model_series = [line for line in metrics.splitlines() if line.startswith("recommender_model_info{")]
    start, end = sampler.samples[0], sampler.samples[-1]
    minutes = (end[0] - start[0]) / 60.0
    print(f"soak: {minutes:.1f} min measured after {args.warm_up:.0f} s of warm-up, {args.rate:g} requests/s "
          f"offered, load by {load.get('tool')}: {load.get('requests')} requests, {load.get('errors')} non-2xx, "
          f"p99 {load.get('p99')}")  # fmt: skip
    print(f"model versions in the store at the end: {versions}; recommender_model_info series: {len(model_series)}")
    print("| process | RSS start (MB) | RSS end (MB) | growth (MB/min) |")
    print("|---|---:|---:|---:|")
    figures = {}
    for name in pids:
        first, last = start[1].get(name), end[1].get(name)
        slope = (last - first) / minutes if first is not None and last is not None and minutes > 0 else None
        figures[name] = {"start_mb": first, "end_mb": last, "mb_per_minute": slope}
        show = [f"{v:.1f}" if v is not None else "gone" for v in (first, last)]
        print(f"| {name} | {show[0]} | {show[1]} | {'' if slope is None else f'{slope:+.2f}'} |")
    if args.json is not None:
        samples = [{name: value for name, value in values.items()} for _, values in sampler.samples]
        args.json.write_text(json.dumps({"load": load, "minutes": minutes, "rss": figures, "samples": samples,
                                         "model_versions": versions, "model_info_series": len(model_series)},
                                        indent=2))  # fmt: skip
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Soak: the service on Redis (2 workers, the joiner, a trainer publishing every few seconds) driven at a
fixed rate for a long time; the figure is the resident memory (RSS) of every process at start and end.

``make soak`` runs it for 10 minutes at 60 requests/s (``--minutes``, ``--rate`` to change). The load is
``wrk`` when it is installed (installed with apt-get when missing and possible; each connection waits
``connections / rate`` seconds between requests, a fixed rate with a unique event id per request), else this
package's open-loop client (``benchmarks.http_load``). RSS is read from /proc every ``--sample-seconds``;
"start" is after a warm-up minute (caches filled, the first model versions swapped in), so that the
figure is growth, not warm-up. Also reported: requests, non-2xx answers, model versions published, and the
series of ``recommender_model_info`` at the end (one per worker: the current version).
``--doc`` (``make soak``) stores the figures in docs/benchmarks.md between ``<!-- bench:soak -->`` markers.

Not part of ``make bench`` (it takes minutes by design): ``python -m benchmarks.soak --minutes 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from benchmarks.bench_service import score_bodies
from benchmarks.doc_sections import DOC, store_section
from benchmarks.http_load import build_request, run_load
from benchmarks.service_setup import ServiceOnRedis, get
from benchmarks.wrk_load import ensure_wrk

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
    parser.add_argument("--doc", action="store_true", help="store the figures in docs/benchmarks.md")
    args = parser.parse_args(argv)

    changes = {"join": {"reward_wait_time": 5.0}, "trainer": {"model_update_interval": args.update_interval}}
    service = ServiceOnRedis(changes, trainer=True, keep_logs=False)
    workdir, port = service.workdir, service.port
    wrk = None if args.python_load else ensure_wrk()
    seconds = args.minutes * 60.0
    bodies = score_bodies(20, 500, seed=3)
    try:
        service.start()
        assert service.server is not None and service.trainer is not None and service.redis.process is not None
        roles = service.roles()
        pids = {"master": service.server.pid, "trainer": service.trainer.pid, "redis": service.redis.process.pid}
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
        metrics = get(port, "/metrics")[1].decode()
    finally:
        service.stop()
    versions = len(list((workdir / "models" / "versions").iterdir())) if (workdir / "models").is_dir() else 0
    model_series = [line for line in metrics.splitlines() if line.startswith("recommender_model_info{")]
    first, last = sampler.samples[0], sampler.samples[-1]
    minutes = (last[0] - first[0]) / 60.0
    figures = {}
    for name in pids:
        start, end = first[1].get(name), last[1].get(name)
        slope = (end - start) / minutes if start is not None and end is not None and minutes > 0 else None
        figures[name] = {"start_mb": start, "end_mb": end, "mb_per_minute": slope}
    result = {"load": load, "minutes": minutes, "rss": figures, "model_versions": versions,
              "model_info_series": len(model_series), "rate": args.rate, "warm_up": args.warm_up,
              "update_interval": args.update_interval, "sample_seconds": args.sample_seconds,
              "samples": [dict(values) for _, values in sampler.samples]}  # fmt: skip
    text = report(result)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    if args.doc:
        DOC.write_text(store_section(DOC.read_text(), "soak", text))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(result: dict) -> str:
    """The soak's Markdown section from the figures ``main`` collects (also its ``--json`` file)."""
    load, figures, minutes = result["load"], result["rss"], result["minutes"]
    lines = [
        "## Soak (`make soak`)",
        "",
        f"`recommender serve` on Redis (2 workers x 2 threads, the joiner process) and `recommender train` "
        f"publishing a model version every {result['update_interval']:g} s, {result['rate']:g} requests/s "
        f"offered by {load.get('tool')} for {minutes:.1f} minutes after {result['warm_up']:.0f} s of warm-up: "
        f"{load.get('requests')} requests, {load.get('errors')} non-2xx, p99 {load.get('p99')}. Model versions "
        f"in the store at the end: {result['model_versions']} (retention); `recommender_model_info` series: "
        f"{result['model_info_series']}. RSS read from /proc every {result['sample_seconds']:g} s; start: after "
        "the warm-up.",
        "",
        "| process | RSS start (MB) | RSS end (MB) | growth (MB/min) | median, first / last 3 min (MB) "
        "| min - max (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    window = max(1, round(180 / result["sample_seconds"]) + 1)  # samples in 3 minutes, both ends included
    for name, figure in figures.items():
        show = [f"{v:.1f}" if v is not None else "gone" for v in (figure["start_mb"], figure["end_mb"])]
        slope = figure["mb_per_minute"]
        values = [v for v in (sample.get(name) for sample in result["samples"]) if v is not None]
        medians = f"{statistics.median(values[:window]):.1f} / {statistics.median(values[-window:]):.1f}" \
            if values else ""  # fmt: skip
        spread = f"{min(values):.1f} - {max(values):.1f}" if values else ""
        lines.append(f"| {name} | {show[0]} | {show[1]} | {'' if slope is None else f'{slope:+.2f}'} | {medians} "
                     f"| {spread} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

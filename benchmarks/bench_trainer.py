"""The trainer's speed: ``Policy.learn`` against raw VW text learning on the same events, and the embedded
service's learning keeping up with 500 rewarded events/s.

1. Per event, in one process: the configured policy (configs/default.yaml) learns joined events over the
   sample catalog (20 candidates each, decided by the policy, read back from a Parquet event log as the
   trainer reads them). Against it, the same events as VW text lines written the way a user would (a
   namespace per record, ``name=value`` for strings, ``name:value`` for numbers, one token per tag and per
   vector element) parsed and learned by pyvw (``VWModel.learn_text``: parse, learn, finish), both with
   the text lines built in the loop (what replaying a log costs) and with them built beforehand (VW's
   parse + learn alone). Each repetition learns all events once on a fresh model per path, the paths
   interleaved; the figures are medians over repetitions, the ratios taken in the same run.
2. The embedded service (``recommender serve`` on configs/default.yaml unchanged but for its port and
   directories: one worker with the in-process bus and joiner, and the trainer process beside it, as ``make
   run``) driven over HTTP by ``wrk`` (a C load generator, so that the load does not take the service's core)
   at 500 scores/s, each decision rewarded a few requests later on the same wrk thread (500 rewards/s, 1 in 10
   a click), in ``PERIODS`` measured periods one after the other (the median of their rates is the figure). At every
   published version: its lag, from the reward-window close of the newest decision it learned to its
   publication, and its backlog, the events joined (the service's ``recommender_joined_events_total``) but
   not yet in the published model. The learner alone is part 1: ``1e6 / (us per event)`` events/s per core.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.service_setup import wait_ready
from benchmarks.wrk_load import ensure_wrk
from features import open_store
from features.sample_catalog import load_sample_catalog
from recommender.events.log import read_events, write_events
from recommender.policy.examples import cost_from_reward
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.policy.vw import VWModel
from recommender.records import JoinedEvent, utc_now
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from tests.redis_harness import free_port

ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = 1000
N_USERS = 10_000
K = 20


# ----- 1. per event -------------------------------------------------------------------------------------
def _events(n: int, seed: int, log_dir: Path) -> list[JoinedEvent]:
    """``n`` joined events decided by a fresh default policy over the sample catalog, through the log."""
    rng = random.Random(seed)
    config = load_config()
    store = open_store(config.features)
    load_sample_catalog(store, n_items=N_ITEMS, n_users=N_USERS)
    policy = Policy.create(config.policy, config.user_group, config.item_group)
    events = []
    for i in range(n):
        user_id = f"user-{rng.randint(1, N_USERS):05d}"
        ids = [f"item-{j:04d}" for j in rng.sample(range(1, N_ITEMS + 1), K)]
        features = store.read_user_items(user_id, ids)
        context = {"device": rng.choice(["mobile", "desktop", "app"]), "hour": rng.randrange(24)}
        decision = policy.decide(event_id=f"ev-{i}", user_id=user_id, user_features=features.user, context=context,
                                 candidate_ids=ids, candidate_features=features.items)  # fmt: skip
        reward = 1.0 if rng.random() < (0.3 if hash(ids[decision.chosen_index]) % 5 == 0 else 0.05) else 0.0
        events.append(JoinedEvent(decision, (reward,), (False,), utc_now()))
    policy.close()
    store.close()
    write_events(events, log_dir)
    return read_events(log_dir)


def _namespace(name: str, row: Mapping[str, Any]) -> str:
    """A namespace as a user writes it from a feature dict."""
    tokens = [f"|{name}"]
    for key, value in row.items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            tokens.append(f"{key}={value.replace(' ', '_')}")
        elif isinstance(value, int | float):
            tokens.append(f"{key}:{value}")
        else:
            for i, element in enumerate(value):
                tokens.append(
                    f"{key}={element.replace(' ', '_')}" if isinstance(element, str) else f"{key}{i}:{element}"
                )
    return " ".join(tokens)


def user_lines(event: JoinedEvent) -> list[str]:
    """The event as the VW text lines a user would write (cb_explore_adf: shared line, one line per item,
    the chosen one labelled ``0:<cost>:<probability>``)."""
    d = event.decision
    chosen = d.chosen[0]
    lines = [f"shared {_namespace('User', d.user_features)} {_namespace('Context', d.context)}"]
    for i, row in enumerate(d.candidate_features):
        label = f"0:{cost_from_reward(event.reward)}:{d.pmfs[0][chosen]} " if i == chosen else ""
        lines.append(label + _namespace("Item", row))
    return lines


def _per_event(events: Sequence[JoinedEvent], repetitions: int) -> dict[str, float]:
    """Mean microseconds per event of each path: ``<path>`` the median over ``repetitions`` passes after a
    first one, ``<path>_cold`` that first pass (ours: item cache empty). One model per path for all passes,
    as a trainer keeps its model and its item cache."""
    config = load_config()
    args = config.policy.vw_args()
    prebuilt = [user_lines(e) for e in events]
    policy = Policy.create(config.policy, config.user_group, config.item_group)
    text, text_prebuilt = VWModel(args), VWModel(args)
    times: dict[str, list[float]] = {"ours": [], "text": [], "text_prebuilt": []}
    for _ in range(repetitions + 1):
        t0 = time.perf_counter()
        for event in events:  # as the trainer does: one event at a time
            policy.learn([event])
        times["ours"].append((time.perf_counter() - t0) / len(events))
        t0 = time.perf_counter()
        for event in events:
            text.learn_text(user_lines(event))
        times["text"].append((time.perf_counter() - t0) / len(events))
        t0 = time.perf_counter()
        for lines in prebuilt:
            text_prebuilt.learn_text(lines)
        times["text_prebuilt"].append((time.perf_counter() - t0) / len(events))
    for model in (policy, text, text_prebuilt):
        model.close()
    out = {name: statistics.median(samples[1:]) * 1e6 for name, samples in times.items()}
    out.update({f"{name}_cold": samples[0] * 1e6 for name, samples in times.items()})
    return out


# ----- 2. the embedded service at 500 rewarded events/s -------------------------------------------------
# wrk's script: each thread alternates a score of a fresh event with the reward of the event it scored `lag`
# scores before (about REWARD_SECONDS earlier, so that the decision has been answered), paced per connection.
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local pause_ms = %(pause_ms)f
local lag = %(lag)d
local thread_id, counter, scored = 0, 0, 0
local next_id = 0
function setup(thread) next_id = next_id + 1; thread:set("id", next_id) end
function init(args) thread_id = id; math.randomseed(1000 + thread_id) end
local sending = false
function delay() sending = true; return pause_ms end
function request()
  -- wrk builds one request on the first thread before any connection's first delay, to check the script, and
  -- never sends it: that one must not use up an event id that a reward will name.
  if not sending then return wrk.format("POST", "/v1/score", {["Content-Type"] = "application/json"}, "{}") end
  counter = counter + 1
  if counter %% 2 == 1 or scored <= lag then
    scored = scored + 1
    local body = string.format('{"event_id":"%(prefix)st%%d-%%d",%%s', thread_id, scored,
                               string.sub(bodies[(scored %% #bodies) + 1], 2))
    return wrk.format("POST", "/v1/score", {["Content-Type"] = "application/json"}, body)
  end
  local value = 0
  if math.random() < 0.1 then value = 1 end
  local body = string.format('{"event_id":"%(prefix)st%%d-%%d","reward":%%d}', thread_id, scored - lag, value)
  return wrk.format("POST", "/v1/reward", {["Content-Type"] = "application/json"}, body)
end
"""
WRK_THREADS = 2
WRK_CONNECTIONS = 64
REWARD_SECONDS = 1.0  # a reward follows its decision by about this much (its answer is in by then)
WARM_UP_EXTRA_SECONDS = 5.0  # load before the measured period, past the first reward window's close
PERIODS = 3  # measured periods of the same load, one after the other


def _service_config(work: Path, port: int) -> Path:
    """configs/default.yaml as shipped, but for the port and the directories."""
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["policy"]["model_dir"] = str(work / "models")
    document["join"]["event_log_dir"] = str(work / "events")
    document["service"]["port"] = port
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _score_bodies(n: int, seed: int) -> list[str]:
    """Score request bodies without an event id (the wrk script puts one first): random user, context and
    K candidates of the sample catalog."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(n):
        ids = [f"item-{j:04d}" for j in rng.sample(range(1, N_ITEMS + 1), K)]
        body = {"user_id": f"user-{rng.randint(1, N_USERS):05d}", "candidates": ids,
                "context": {"device": rng.choice(["mobile", "desktop", "app"]), "hour": rng.randrange(24)}}  # fmt: skip
        bodies.append(json.dumps(body))
    return bodies


def _wrk_milliseconds(text: str) -> float:
    """A wrk duration ("812.00us", "1.20ms", "2.01s") in milliseconds."""
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def _pause_ms(rate: float) -> float:
    """How long a connection waits after each answer for ``rate`` scores/s (and as many rewards/s)."""
    return 0.8 * WRK_CONNECTIONS * 1000.0 / (2 * rate)


def _drive_with_wrk(wrk: str, port: int, rate: float, seconds: float, work: Path, prefix: str = "") -> dict[str, float]:
    """``rate`` scores/s and as many rewards/s for ``seconds``; wrk's counts and latency percentiles. Event ids
    start with ``prefix`` (each run of wrk its own)."""
    script = work / "learn.lua"
    bodies = ",".join(json.dumps(body) for body in _score_bodies(500, seed=5))
    # A connection waits pause_ms after each answer: 20% less than the even share, for the time answering takes
    # (the model publications pause the one worker now and then, and a paced connection cannot catch up).
    pause_ms = _pause_ms(rate)
    lag = int(REWARD_SECONDS * rate / WRK_THREADS)
    script.write_text(WRK_SCRIPT % {"bodies": bodies, "pause_ms": pause_ms, "lag": lag, "prefix": prefix})
    result = subprocess.run(
        [wrk, "-t", str(WRK_THREADS), "-c", str(WRK_CONNECTIONS), "-d", f"{int(seconds)}s", "--latency",
         "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True,
    )  # fmt: skip
    text = result.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": _wrk_milliseconds(percentiles["50"]),
        "p99_ms": _wrk_milliseconds(percentiles["99"]),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
    }


def _metric(port: int, name: str) -> dict[str, float]:
    """The samples of one metric on the service's /metrics, by their label text (``""`` without labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    pattern = rf"^{name}(\{{[^}}]*\}})? ([0-9.e+]+)$"
    return {labels or "": float(value) for labels, value in re.findall(pattern, text, re.MULTILINE)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> dict[str, int]:
    """The service's worker and trainer processes under its gunicorn master ``pid``, by role."""
    roles = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        roles["trainer" if b"train" in command else "worker"] = int(child)
    return roles


def _joined_total(port: int) -> float:
    return sum(_metric(port, "recommender_joined_events_total").values())


def _service_lag(seconds: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        work = Path(tmp)
        port = free_port()
        config_path = _service_config(work, port)
        wait = load_config(config_path).join.reward_wait_time
        wrk = ensure_wrk()
        if wrk is None:
            raise RuntimeError("wrk is not installed and cannot be (apt-get install wrk)")
        log_file = (work / "service.log").open("w")
        command = [sys.executable, "-m", "recommender.cli.main", "--config", str(config_path), "serve"]
        service = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ}, cwd=ROOT)
        samples: list[tuple[float, float, int, float]] = []  # (published at, lag s, backlog events, learned)
        stop = threading.Event()
        try:
            wait_ready(port, process=service)
            store = ModelStore(work / "models")
            seen: set[str] = set()

            def watch() -> None:
                while not stop.is_set():
                    current = store.current_version()
                    if current is not None and current not in seen:
                        seen.add(current)
                        version = store.version(current)
                        joined = _joined_total(port)
                        if version.event_range is not None:
                            closed = version.event_range.last_timestamp.timestamp() + wait
                            published = version.created_at.timestamp()
                            count = version.event_range.count
                            samples.append((published, published - closed, int(joined - count), count))
                    stop.wait(0.2)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            # Warm-up: until the first reward windows have closed the trainer has nothing to learn, and the
            # worker's one core serves alone; the measured period starts once learning runs beside serving.
            _drive_with_wrk(wrk, port, rate, wait + WARM_UP_EXTRA_SECONDS, work, prefix="w")
            processes = _children(service.pid)
            cpu_before = {role: _cpu_seconds(pid) for role, pid in processes.items()}
            started = datetime.now(UTC).timestamp()
            loads = [_drive_with_wrk(wrk, port, rate, seconds, work, prefix=f"m{i}") for i in range(PERIODS)]
            measured = datetime.now(UTC).timestamp() - started
            cpu = {role: (_cpu_seconds(pid) - cpu_before[role]) / measured for role, pid in processes.items()}
            interval = load_config(config_path).trainer.model_update_interval
            time.sleep(wait + 2 * interval + 2.0)  # the last windows close, are joined, learned and published
            stop.set()
            watcher.join()
            responses = _metric(port, "recommender_responses_total")
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=60)
            except subprocess.TimeoutExpired:
                service.kill()
            log_file.close()
    during = [s for s in samples if started <= s[0] <= started + measured]
    lags = [s[1] for s in during] or [float("nan")]
    backlogs = [s[2] for s in during] or [0]
    failed = sum(count for labels, count in responses.items() if not re.search(r'status="2\d\d"', labels))
    score_200 = re.compile(r'endpoint="(\w+\.)?score",status="200"')
    scored = [count for labels, count in responses.items() if score_200.search(labels)]
    decisions = sum(scored)
    return {
        "loads": loads,
        "cpu": cpu,
        "failed": int(failed),
        "responses": responses,
        "versions": len(samples),
        "lag_p50": float(np.median(lags)),
        "lag_max": float(np.max(lags)),
        "backlog_p50": float(np.median(backlogs)),
        "backlog_max": int(np.max(backlogs)),
        "learned": int(samples[-1][3]) if samples else 0,
        "decisions": int(decisions),
        "wait": wait,
        "interval": interval,
        "late_lag": samples[-1][1] if samples else float("nan"),
    }


def _listed(loads: Sequence[Mapping[str, float]], key: str, spec: str) -> str:
    """``key`` of each period's load, formatted with ``spec``, comma-separated."""
    return ", ".join(format(load[key], spec) for load in loads)


def run(quick: bool = False) -> str:
    load_before = os.getloadavg()[0]
    n_events = 300 if quick else 2000
    repetitions = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-trainer-log-") as tmp:
        events = _events(n_events, seed=0, log_dir=Path(tmp))
    per_event = _per_event(events, repetitions)
    seconds = 8.0 if quick else 20.0
    lag = _service_lag(seconds, rate=500.0)
    ours, text, prebuilt = per_event["ours"], per_event["text"], per_event["text_prebuilt"]
    loads = lag["loads"]
    rates = sorted(load["rps"] for load in loads)
    median_rps = statistics.median(rates)
    cpu = lag["cpu"]
    keeps_up = lag["learned"] == lag["decisions"] and lag["lag_max"] <= 2 * lag["interval"]
    load_after = os.getloadavg()[0]
    lines = [
        "## Trainer",
        "",
        f"Machine load (1-minute load average, 2 cores) at the start and at the end: {load_before:.1f} / "
        f"{load_after:.1f}; above 2 other processes were competing for the cores and the figures suffer.",
        "",
        f"Learning one joined event (1 user + {K} candidates of the sample catalog, the default policy), "
        f"{n_events:,} events read back from a Parquet log; microseconds per event. *ours*: `Policy.learn` event "
        "by event, as the trainer calls it (item examples from the item cache, the chosen item's labelled "
        "example built afresh). *VW text*: the same events as the VW text lines a user would write, parsed and "
        "learned by pyvw; *VW parse + learn*: the same with the lines written beforehand. One model per path "
        f"learns all the events {repetitions + 1} times, the paths interleaved: *warm* is the median of the "
        "passes after the first (a running trainer: the catalog's items cached), *cold* the first pass (ours "
        "builds every item's example once).",
        "",
        "| path | warm us/event | ours faster by | cold us/event | ours faster by |",
        "|---|---:|---:|---:|---:|",
        f"| ours (`Policy.learn`) | {ours:.0f} | | {per_event['ours_cold']:.0f} | |",
        f"| VW text (lines written in the loop) | {text:.0f} | {text / ours:.2f}x | {per_event['text_cold']:.0f} "
        f"| {per_event['text_cold'] / per_event['ours_cold']:.2f}x |",
        f"| VW parse + learn (lines written beforehand) | {prebuilt:.0f} | {prebuilt / ours:.2f}x "
        f"| {per_event['text_prebuilt_cold']:.0f} | {per_event['text_prebuilt_cold'] / per_event['ours_cold']:.2f}x |",
        "",
        f"Target: >= 2x faster per event than raw VW text learning: **{text / ours:.2f}x** warm "
        f"({'met' if text / ours >= 2 else 'NOT met'}), {per_event['text_cold'] / per_event['ours_cold']:.2f}x "
        f"cold. Against VW's parse + learn of ready-made lines alone: {prebuilt / ours:.2f}x (VW's C++ parser "
        "reads ready-made lines about as fast as the Python side builds the shared and the chosen example).",
        "",
        f"The service's learning (`recommender serve` on the shipped configuration, as `make run`: one worker with "
        f"the in-process bus and joiner, the trainer a process beside it; reward window {lag['wait']:.0f} s, a model "
        f"published every {lag['interval']:.0f} s), driven by wrk ({WRK_THREADS} threads x {WRK_CONNECTIONS} "
        f"connections, paced) for {PERIODS} periods of {seconds:.0f} s after a warm-up of "
        f"{lag['wait'] + WARM_UP_EXTRA_SECONDS:.0f} s under the same load (so that the trainer is learning "
        "throughout), at 500 scores/s, each decision rewarded "
        f"about {REWARD_SECONDS:.0f} s later (500 rewards/s; each connection waits {_pause_ms(500.0):.0f} ms after an "
        f"answer, so the load is up to {WRK_CONNECTIONS * 1000 / _pause_ms(500.0):.0f} req/s when answers are instant "
        "and falls as they take longer): "
        f"{sum(load['requests'] for load in loads):,} requests answered at "
        f"{_listed(loads, 'rps', '.0f')} req/s in the {PERIODS} periods, "
        f"{lag['failed']} not answered 2xx, response time p50 "
        f"{_listed(loads, 'p50_ms', '.1f')} ms, p99 "
        f"{_listed(loads, 'p99_ms', '.0f')} ms. CPU, in cores: the worker "
        f"{cpu.get('worker', float('nan')):.2f}, the trainer process {cpu.get('trainer', float('nan')):.2f}. "
        f"{lag['versions']} versions published; during the load, the lag from a decision's window closing to the "
        f"published model having learned it: p50 {lag['lag_p50']:.1f} s, max {lag['lag_max']:.1f} s; events "
        f"joined but not yet published: p50 {lag['backlog_p50']:.0f}, max {lag['backlog_max']}. At the end the "
        f"model had learned {lag['learned']:,} of {lag['decisions']:,} decisions (lag of the last version "
        f"{lag['late_lag']:.1f} s). The learner alone (part 1, warm) learns {1e6 / ours:,.0f} events/s on one core.",
        "",
        f"Target: keeps up with 500 rewarded events/s: the service answered **{median_rps / 2:.0f} rewarded "
        f"events/s** (median of the periods; {rates[0] / 2:.0f}-{rates[-1] / 2:.0f}) "
        f"({'met' if median_rps / 2 >= 500 else 'NOT met'}); the learner "
        f"{'kept up' if keeps_up else 'fell behind'} (every decision answered was learned, and no version's lag "
        f"exceeded two publication intervals: max {lag['lag_max']:.1f} s against {2 * lag['interval']:.0f} s).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))

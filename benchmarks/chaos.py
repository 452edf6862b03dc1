"""Faults under load: the service on Redis (2 gunicorn workers, the joiner process, a trainer) driven by a
storefront-like client while one thing at a time goes wrong.

Scenarios (``SCENARIOS``), run one after the other on the same service:

- ``redis-sigstop``: redis-server stopped (SIGSTOP) for ``--outage`` seconds, then continued (SIGCONT);
- ``redis-kill``: redis-server killed (SIGKILL) and started again after ``--outage`` seconds on the same
  files. With AOF (``appendonly yes``, ``appendfsync always`` by default) it comes back with its data;
  without it (``--no-aof``) it comes back empty: the catalog is loaded again when ``/healthz/full`` says it
  is missing (what ops would do), and what was lost must be reported, not silent;
- ``joiner-kill``: the joiner process killed (SIGKILL); the master's supervisor starts another;
- ``trainer-kill``: the trainer killed (SIGKILL) and started again (as its process manager would);
- ``worker-kill``: one gunicorn worker killed (SIGKILL); the master starts another.

The client (``benchmarks.chaos_load``) sends ``POST /v1/score`` at a fixed rate with event ids naming the
scenario in force, and a reward (with a reward id, retried on 503 or a broken connection, as a storefront
would) for every other decision. Per scenario: answers by status (any 5xx but a reward's 503 "retry" is a
failure), degraded answers, the time to recover (from the end of the fault until the service answers
without ``degraded`` again and the killed process has a replacement doing its job), rewards acknowledged
(204) against rewards in the Parquet event log, decisions missing from the log, duplicate event ids in the
log, and what the service reported lost (``recommender_expired_decisions_total``, the bus-reset errors).

``make chaos`` runs every scenario with AOF and the Redis kill without it, and prints a Markdown table
(``--doc`` also stores it in docs/benchmarks.md between ``<!-- bench:faults -->`` markers). The test suite
runs a short version (``tests/recommender/service/test_chaos.py``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.chaos_load import Load
from benchmarks.doc_sections import DOC, store_section
from benchmarks.service_setup import ServiceOnRedis, get, load_catalog
from recommender.events.log import read_table
from recommender.policy.model_store import open_model_store

AOF_ARGS = ("--appendonly", "yes", "--appendfsync", "always")
# Short windows, so that a run drains in seconds: a reward counts for 4 s after its decision, a dead joiner's
# batches are adopted after 2 s (a third of recovery_seconds), its taken decisions claimed after 4 + 2 s.
CHANGES = {
    "service": {"config_reload_seconds": 0.5, "redis_retry_seconds": 0.3},
    "join": {"reward_wait_time": 4.0, "flush_seconds": 0.2, "recovery_seconds": 6},
    "trainer": {"model_update_interval": 2},
}
NO_PERSISTENCE = "no persistence"
LOST_MARKERS = ("expired from the bus", "lost the event bus", "Redis no longer has")


@dataclass
class Outcome:
    """What one scenario did: when its fault ended and when the service had recovered (monotonic s)."""

    name: str
    fault_end: float
    recovered_at: float | None = None
    note: str = ""


@dataclass
class Figures:
    """One scenario's row of the report (see the module docstring)."""

    name: str
    decisions: int
    server_errors: int
    retried_503: int
    connection_errors: int
    degraded: int
    recover_seconds: float | None
    rewards_acked: int
    rewards_logged: int
    decisions_missing: int
    duplicates: int
    note: str = ""
    reasons: Counter[str | None] = field(default_factory=Counter)

    @property
    def lossless(self) -> bool:
        """Every acknowledged reward and every answered decision is in the log."""
        return self.rewards_acked == self.rewards_logged and not self.decisions_missing


def _wait(condition: Callable[[], object], timeout: float, interval: float = 0.1) -> float | None:
    """Monotonic time when ``condition()`` first held, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(interval)
    return None


def _metric(port: int, name: str) -> float:
    text = get(port, "/metrics")[1].decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ----- the faults ---------------------------------------------------------------------------------------
def redis_sigstop(service: ServiceOnRedis, outage: float) -> Outcome:
    assert service.redis.process is not None
    pid = service.redis.process.pid
    os.kill(pid, signal.SIGSTOP)
    time.sleep(outage)
    os.kill(pid, signal.SIGCONT)
    return Outcome("redis-sigstop", time.monotonic())


def redis_kill(service: ServiceOnRedis, outage: float) -> Outcome:
    args = service.redis.args
    persistent = any(a == "--appendonly" and b == "yes" for a, b in zip(args, args[1:], strict=False))
    service.redis.stop()  # SIGKILL
    time.sleep(outage)
    service.redis.start()
    outcome = Outcome("redis-kill", time.monotonic())
    if not persistent:
        # Back empty: the service must say the catalog is missing; ops load it again.
        said = _wait(lambda: b"no live version" in get(service.port, "/healthz/full")[1], 10.0)
        assert service.config is not None
        load_catalog(service.config)
        outcome.note = "catalog missing reported" if said else "catalog missing NOT reported"
    return outcome


def joiner_kill(service: ServiceOnRedis, outage: float) -> Outcome:
    (old,) = service.roles()["joiner"]
    joined = _metric(service.port, "recommender_joined_events_total")
    os.kill(old, signal.SIGKILL)
    outcome = Outcome("joiner-kill", time.monotonic())
    started = _wait(lambda: [pid for pid in service.roles()["joiner"] if pid != old], 30.0)
    # At work: the joined-events counter (summed over the joiner processes, dead ones included) moves again.
    working = started and _wait(lambda: _metric(service.port, "recommender_joined_events_total") > joined, 30.0)
    outcome.recovered_at = working or None
    outcome.note = "no new joiner" if not started else \
        f"new joiner started after {started - outcome.fault_end:.1f} s, joining after " + \
        (f"{working - outcome.fault_end:.1f} s" if working else "never")  # fmt: skip
    return outcome


def trainer_kill(service: ServiceOnRedis, outage: float) -> Outcome:
    assert service.trainer is not None and service.config is not None
    store = open_model_store(service.config)
    service.trainer.kill()
    service.trainer.wait(timeout=10)
    outcome = Outcome("trainer-kill", time.monotonic())
    before = store.current_version()
    service.start_trainer()
    published = _wait(lambda: store.current_version() != before, 60.0, 0.2)
    outcome.recovered_at = published
    outcome.note = f"new model version after {published - outcome.fault_end:.1f} s" if published else \
        "no new model version"  # fmt: skip
    return outcome


def worker_kill(service: ServiceOnRedis, outage: float) -> Outcome:
    old = set(service.roles()["workers"])
    os.kill(min(old), signal.SIGKILL)
    outcome = Outcome("worker-kill", time.monotonic())
    # Serving: its runtime is up (its per-worker gauges are in /metrics), not just forked.
    back = _wait(lambda: _worker_pids(service.port) - old, 30.0)
    outcome.recovered_at = back
    outcome.note = f"new worker serving after {back - outcome.fault_end:.1f} s" if back else "no new worker"
    return outcome


def _worker_pids(port: int) -> set[int]:
    """The pids of the workers whose runtime reports to /metrics (the per-worker exploration gauges)."""
    text = get(port, "/metrics")[1].decode()
    return {int(pid) for pid in re.findall(r'^recommender_exploration_setting\{[^}]*pid="(\d+)"', text, re.M)}


SCENARIOS: dict[str, Callable[[ServiceOnRedis, float], Outcome]] = {
    "redis-sigstop": redis_sigstop,
    "redis-kill": redis_kill,
    "joiner-kill": joiner_kill,
    "trainer-kill": trainer_kill,
    "worker-kill": worker_kill,
}


# ----- a run --------------------------------------------------------------------------------------------
@dataclass
class ChaosResult:
    figures: list[Figures]
    expired_reported: float  # recommender_expired_decisions_total at the end
    lost_lines: list[str]  # ERROR lines of the service's log saying what was lost
    log_rows: int
    decisions_missing: int  # over the whole run (warm-up and cool-down included)
    rewards_lost: int  # acknowledged rewards not in the log with their value, over the whole run
    duplicates: int  # extra rows of one event id in the whole log
    trainer_learned: int | None  # events the trainer says it learned in total at the end (None: no trainer)

    @property
    def lossless(self) -> bool:
        """Every answered decision and every acknowledged reward of the whole run is in the log."""
        return not self.decisions_missing and not self.rewards_lost


def run_chaos(names: list[str], *, aof: bool = True, rate: float = 20.0, threads: int = 2, settle: float = 4.0,
              outage: float = 2.0, drain_timeout: float = 60.0, redis_args: tuple[str, ...] | None = None,
              workdir: Path | None = None) -> ChaosResult:  # fmt: skip
    """Run the scenarios ``names`` in order on one service under load; ``settle`` seconds of load before
    and after each fault. Returns each scenario's figures once every decision the client was answered is
    in the event log (or ``drain_timeout`` seconds passed)."""
    args = (AOF_ARGS if aof else ()) if redis_args is None else redis_args
    service = ServiceOnRedis(CHANGES, trainer="trainer-kill" in names, redis_args=args, workdir=workdir)
    outcomes: list[Outcome] = []
    with service:
        load = Load(service.port, rate=rate, threads=threads, tag="warm-up",
                    reward_window=CHANGES["join"]["reward_wait_time"])  # fmt: skip
        load.start()
        try:
            time.sleep(settle)
            for name in names:
                load.tag = name
                time.sleep(settle)
                outcome = SCENARIOS[name](service, outage)
                # Recovered: answers without degraded again (and the process replaced, for a process fault).
                healthy = _wait(lambda since=outcome.fault_end: load.healthy_since(since), 60.0)
                outcome.recovered_at = max(t for t in (outcome.recovered_at, healthy) if t is not None) \
                    if healthy is not None else None  # fmt: skip
                outcomes.append(outcome)
                time.sleep(settle)
            load.tag = "cool-down"
            time.sleep(1.0)
        finally:
            load.stop()
        expected = load.decided()
        log_dir = service.workdir / "events"
        _wait(lambda: expected <= set(_read_log(log_dir)[0]), drain_timeout, 0.5)
        time.sleep(1.0)  # a late duplicate would show now
        expired = _metric(service.port, "recommender_expired_decisions_total")
        ids, rewarded = _read_log(log_dir)
        learned = None
        if service.with_trainer:  # the trainer catches up with the log: each row learned once
            _wait(lambda: (_learned(service) or 0) >= len(ids), 20.0, 0.5)
            learned = _learned(service)
    lost_lines = [line for line in service.log_text("serve").splitlines()
                  if "ERROR" in line and any(marker in line for marker in LOST_MARKERS)]  # fmt: skip
    figures = [_figures(outcome, load, ids, rewarded) for outcome in outcomes]
    rewards_lost = sum(1 for event_id, value in load.acked.items() if rewarded.get(event_id) != value)
    return ChaosResult(figures, expired, lost_lines, len(ids), len(expected - set(ids)), rewards_lost,
                       len(ids) - len(set(ids)), learned)  # fmt: skip


def _learned(service: ServiceOnRedis) -> int | None:
    """The trainer's last "(N events learned in total)"."""
    found = re.findall(r"\((\d+) events learned in total\)", service.log_text("trainer"))
    return int(found[-1]) if found else None


def _read_log(log_dir: Path) -> tuple[list[str], dict[str, float]]:
    """Every event id of the log (duplicates included) and the slot-0 reward of those with a real one."""
    if not any(log_dir.glob("date=*/hour=*/*.parquet")):
        return [], {}
    table = read_table(log_dir).select(["event_id", "rewards", "reward_is_default"]).to_pydict()
    rows = zip(table["event_id"], table["rewards"], table["reward_is_default"], strict=True)
    rewarded = {event_id: rewards[0] for event_id, rewards, default in rows if not default[0]}
    return table["event_id"], rewarded


def _figures(outcome: Outcome, load: Load, ids: list[str], rewarded: dict[str, float]) -> Figures:
    answers = [a for a in load.answers if a.tag == outcome.name]
    scores = [a for a in answers if a.kind == "score"]
    decided = {a.event_id for a in scores if a.status == 200}
    acked = {event_id: value for event_id, value in load.acked.items() if event_id.startswith(outcome.name + ".")}
    counts = Counter(ids)
    logged = set(counts)
    return Figures(
        name=outcome.name,
        decisions=len(decided),
        server_errors=sum(1 for a in answers if a.status >= 500 and not (a.kind == "reward" and a.status == 503)),
        retried_503=sum(1 for a in answers if a.kind == "reward" and a.status == 503),
        connection_errors=sum(1 for a in answers if a.status == 0),
        degraded=sum(1 for a in scores if a.degraded),
        recover_seconds=None if outcome.recovered_at is None else outcome.recovered_at - outcome.fault_end,
        rewards_acked=len(acked),
        rewards_logged=sum(1 for event_id, value in acked.items() if rewarded.get(event_id) == value),
        decisions_missing=len(decided - logged),
        duplicates=sum(n - 1 for event_id, n in counts.items() if event_id in decided and n > 1),
        note=outcome.note,
        reasons=Counter(a.reason for a in scores if a.degraded),
    )


# ----- the report ---------------------------------------------------------------------------------------
def report(results: dict[str, ChaosResult], rate: float, outage: float) -> str:
    lines = [
        "## Faults (`make chaos`)",
        "",
        f"`recommender serve` on Redis (2 workers x 2 threads, the joiner process) and `recommender train` "
        f"(a model version every {CHANGES['trainer']['model_update_interval']} s), driven at {rate:g} decisions/s "
        f"by a client sending a reward for every other decision (retried on 503); reward window "
        f"{CHANGES['join']['reward_wait_time']:g} s, outages {outage:g} s. Recover: seconds from the end of the "
        "fault until answers are no longer degraded and the killed process's replacement works (a new joiner, "
        "a new worker, a new model version). Rewards: acknowledged (204) and found in the Parquet log with "
        "their value. Missing: answered decisions not in the log. Duplicates: extra rows of one event id. "
        f"Client and service share the {os.cpu_count()} cores (load average over the last 5 minutes of the run: "
        f"{os.getloadavg()[1]:.1f}): `shed` answers are requests that waited for a busy worker.",
        "",
        "| Redis | scenario | decisions | 5xx | reward 503 (retried) | connection errors | degraded (reasons) "
        "| recover s | rewards acked | rewards in log | missing | duplicates | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for redis_mode, result in results.items():
        for f in result.figures:
            reasons = ", ".join(f"{reason} {n}" for reason, n in f.reasons.most_common())
            recover = "never" if f.recover_seconds is None else f"{f.recover_seconds:.1f}"
            lines.append(f"| {redis_mode} | {f.name} | {f.decisions} | {f.server_errors} | {f.retried_503} "
                         f"| {f.connection_errors} | {f.degraded}{f' ({reasons})' if reasons else ''} | {recover} "
                         f"| {f.rewards_acked} | {f.rewards_logged} | {f.decisions_missing} | {f.duplicates} "
                         f"| {f.note} |")  # fmt: skip
    lines.append("")
    for redis_mode, result in results.items():
        learned = "" if result.trainer_learned is None else f"; the trainer learned {result.trainer_learned} events"
        lines.append(f"- {redis_mode}: {result.log_rows} rows in the log ({result.duplicates} duplicates){learned}; "
                     "over the whole run "
                     f"{result.decisions_missing} answered decisions and {result.rewards_lost} acknowledged rewards "
                     f"missing from it; the service reported {result.expired_reported:.0f} decisions lost "
                     f"(`recommender_expired_decisions_total`) in {len(result.lost_lines)} ERROR lines")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="decisions per second offered")
    parser.add_argument("--threads", type=int, default=4, help="client threads (keep-alive connections)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before and after each fault")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds Redis stays stopped or down")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="these scenarios only")
    parser.add_argument("--doc", action="store_true", help="store the table in docs/benchmarks.md")
    args = parser.parse_args(argv)
    names = args.only or list(SCENARIOS)
    kwargs = {"rate": args.rate, "threads": args.threads, "settle": args.settle, "outage": args.outage}
    results = {"AOF, appendfsync always": run_chaos(names, aof=True, **kwargs)}
    if "redis-kill" in names:
        results["AOF, appendfsync everysec"] = run_chaos(
            ["redis-kill"], redis_args=("--appendonly", "yes", "--appendfsync", "everysec"), **kwargs)  # fmt: skip
        results[NO_PERSISTENCE] = run_chaos(["redis-kill"], aof=False, **kwargs)
    text = report(results, args.rate, args.outage)
    print(text)
    if args.doc:
        DOC.write_text(store_section(DOC.read_text(), "faults", text))
    failed = [f"{mode}: {f.name}" for mode, result in results.items() for f in result.figures
              if f.server_errors or f.duplicates or (mode != NO_PERSISTENCE and not f.lossless)]  # fmt: skip
    failed += [f"{mode}: the whole run" for mode, result in results.items()
               if result.duplicates or (mode != NO_PERSISTENCE and not result.lossless)]  # fmt: skip
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

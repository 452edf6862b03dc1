"""The joiner alone: events/s and CPU per event of ``Joiner.run_once`` on a Redis bus fed beforehand, at 20 and
200 candidates, the share of it that builds and writes the Parquet batch, and a profile of where the rest goes.

The bus (one redis-server, one shard) is fed first with N decisions and one reward each (``put_decision`` +
``add_reward``, as a serving worker does), so that the timed part is the joiner's alone: once every window has
closed, ``run_once(flush=True)`` until all N are joined (take, hold, close, join, Parquet write with fsyncs,
commit), in batches of ``join.flush_max_events`` (the default, 1,000). CPU is this process's
(``time.process_time``; Redis's own is not counted). The Parquet share: the events the joiner handed over
(``on_joined``) built into a table (``events_to_table``) and written (``pq.write_table`` through
``write_events``) again, timed apart. The profile (cProfile, one more pass per size: its overhead inflates the
Python-heavy parts) gives each step's share of the joiner's time. A warm-up batch first, so that connections and
the joiner's row cache are those of a joiner that has been running.

How long the joiner holds Redis: the commands Redis ran during the timed part for ``LOGGED_US`` or longer, from
its slow log (only the joiner talks to this Redis then), the longest and how many took 0.5 ms or more: a
serving worker's request waits behind each. (The threshold is not 0: logging every command a script runs
would add the log's own work to the script's time.) Measured for the chunk sizes in force
(``recommender.events.redis_bus_joiner``) and, in the same run, interleaved, for the earlier ones
(``EARLIER_CHUNKS``).
"""

from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import pstats
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import redis

from benchmarks.bench_bus import CATALOG, decisions
from features.encoding import ROW_ENCODINGS, DecodeCache, encode_row, remember_encoding, row_digest
from recommender.events import redis_bus_joiner
from recommender.events.codec import encode_decision, encoded_rows
from recommender.events.joiner import Joiner
from recommender.events.log import EVENT_LOG_SCHEMA, events_to_table, write_table
from recommender.events.redis_bus import RedisEventBus
from recommender.records import JoinedEvent, Reward
from recommender.settings.events import JoinConfig
from tests.redis_harness import RedisServer

WAIT = 0.5  # seconds of reward window: short, so that the joiner's pass follows the feed at once
SETTINGS = JoinConfig(reward_wait_time=WAIT, recovery_seconds=30, flush_seconds=0.01)
SIZES = (20, 200)
# The joiner's chunk sizes before they were bounded by how long one command holds Redis: commits of 100
# decisions, holds of 200, and every new stream entry in one read (the joiner asks for up to 10,000).
EARLIER_CHUNKS = {"COMMIT_CHUNK": 100, "HOLD_CHUNK": 200, "READ_CHUNK": 10_000}
SLOW_US = 500  # a command holding Redis this long or longer is counted
LOGGED_US = 100  # the slow log's threshold while the joiner runs
# The profile's rows: a label and the functions (file suffix, name) whose cumulative time it reports.
STEPS = (
    ("take + hold (XREADGROUP, hold script)", ("redis_bus_joiner.py", "take_new"),
     ("redis_bus_joiner.py", "take_stale")),
    ("close (script, payload decode, Decision)", ("redis_bus_joiner.py", "close")),
    ("  of which decode_decision", ("codec.py", "decode_decision")),
    ("join (rewards per slot, JoinedEvent)", ("joiner.py", "_join_event")),
    ("Parquet: build the table", ("log.py", "events_to_table")),
    ("Parquet: write + fsync", ("log.py", "write_table"), ("joiner.py", "_fsync")),
    ("commit (ack, delete, markers)", ("redis_bus_joiner.py", "commit_batch")),
)


# The layout written before dictionary-encoded candidate cells: plain ``list<string>`` cells.
PLAIN_SCHEMA = pa.schema([pa.field(f.name, pa.list_(pa.string()), nullable=f.nullable) if f.name in (
    "candidate_ids", "candidate_features") else f for f in EVENT_LOG_SCHEMA])  # fmt: skip


@dataclass
class Run:
    joined_per_s: float
    cpu_us: float  # joiner CPU per event
    build_us: float  # events_to_table per event
    write_us: float  # write_table (pq.write_table, without the joiner's fsync and rename) per event
    file_bytes: float  # Parquet bytes per event
    plain_build_us: float  # the earlier layout: the same table with every cell's text materialized
    plain_write_us: float
    longest_us: float  # the longest command Redis ran for the joiner
    slow_commands: int  # commands that held Redis SLOW_US or longer


def feed(bus: RedisEventBus, candidates: int, count: int, offset: int) -> None:
    for made in decisions(count, candidates, offset):
        bus.put_decision(made)
        bus.add_reward(Reward(made.event_id, 1.0, datetime.now(UTC)))


def _buses(url: str) -> tuple[RedisEventBus, RedisEventBus]:
    prefix = f"benchj{uuid.uuid4().hex[:8]}"
    return tuple(RedisEventBus(url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds, key_prefix=prefix,
                               timeout_ms=5000) for _ in range(2))  # type: ignore[return-value]  # fmt: skip


def _join_all(joiner: Joiner, count: int) -> None:
    time.sleep(WAIT + 0.05)
    joined = 0
    while joined < count:
        joined += joiner.run_once(flush=True)


def _parquet_share(events: list[JoinedEvent], directory: Path) -> tuple[float, float, float, float, float]:
    """CPU seconds of building the table of ``events`` and of writing it, the bytes written, and the same two
    times for the earlier layout (the cast to plain text cells counted with its build)."""
    directory.mkdir(parents=True, exist_ok=True)
    started = time.process_time()
    table = events_to_table(events)
    build = time.process_time() - started
    started = time.process_time()
    write_table(table, directory / "coded.parquet")
    write = time.process_time() - started
    started = time.process_time()
    plain = table.cast(PLAIN_SCHEMA)
    plain_build = build + time.process_time() - started
    started = time.process_time()
    write_table(plain, directory / "plain.parquet")
    plain_write = time.process_time() - started
    return build, write, float((directory / "coded.parquet").stat().st_size), plain_build, plain_write


@contextlib.contextmanager
def chunk_sizes(sizes: Mapping[str, int]) -> Iterator[None]:
    """The joiner's chunk constants set to ``sizes`` for the block (empty: those in force)."""
    before = {name: getattr(redis_bus_joiner, name) for name in sizes}
    for name, value in sizes.items():
        setattr(redis_bus_joiner, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(redis_bus_joiner, name, value)


def _redis_holds(client: redis.Redis) -> tuple[float, int]:
    """(the longest command's microseconds, how many took SLOW_US or more) in Redis's slow log, then reset."""
    durations = [entry["duration"] for entry in client.slowlog_get(1_000_000)
                 if not entry["command"].upper().startswith(b"SLOWLOG")]  # fmt: skip
    client.slowlog_reset()
    return float(max(durations, default=0)), sum(duration >= SLOW_US for duration in durations)


def measure(url: str, candidates: int, count: int, profile: cProfile.Profile | None = None,
            sizes: Mapping[str, int] | None = None) -> Run:
    """One pass of the joiner over ``count`` decisions of ``candidates``, with the chunk ``sizes`` (None: those
    in force)."""
    with chunk_sizes(sizes or {}):
        return _measure(url, candidates, count, profile)


def _measure(url: str, candidates: int, count: int, profile: cProfile.Profile | None) -> Run:
    worker, joiner_bus = _buses(url)
    admin = redis.Redis.from_url(url)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-joiner-"))
    handed: list[JoinedEvent] = []
    try:
        joiner = Joiner(joiner_bus, log_dir / "log", lambda: SETTINGS, consumer="bench", on_joined=handed.extend)
        feed(worker, candidates, 50, 0)  # warm-up batch
        _join_all(joiner, 50)
        handed.clear()
        feed(worker, candidates, count, 50)
        time.sleep(WAIT + 0.05)
        admin.config_set("slowlog-max-len", 1_000_000)
        admin.config_set("slowlog-log-slower-than", LOGGED_US)
        admin.slowlog_reset()
        if profile is not None:
            profile.enable()
        cpu_before, started = time.process_time(), time.perf_counter()
        _join_all(joiner, count)
        wall, cpu = time.perf_counter() - started - WAIT - 0.05, time.process_time() - cpu_before
        if profile is not None:
            profile.disable()
        admin.config_set("slowlog-log-slower-than", 10_000)
        longest, slow = _redis_holds(admin)
        totals = [0.0] * 5
        for start in range(0, len(handed), SETTINGS.flush_max_events):  # the joiner's batches
            shares = _parquet_share(handed[start : start + SETTINGS.flush_max_events], log_dir / "again")
            totals = [total + share for total, share in zip(totals, shares, strict=True)]
        build, write, size, plain_build, plain_write = (total / count for total in totals)
        return Run(count / wall, cpu / count * 1e6, build * 1e6, write * 1e6, size, plain_build * 1e6,
                   plain_write * 1e6, longest, slow)  # fmt: skip
    finally:
        worker.close_connections()
        joiner_bus.close_connections()
        admin.close()
        shutil.rmtree(log_dir, ignore_errors=True)


def profile_shares(profile: cProfile.Profile) -> list[tuple[str, float]]:
    """Each of ``STEPS``'s cumulative time as a share of the profiled ``run_once`` calls."""
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}

    def cumulative(targets: tuple[tuple[str, str], ...]) -> float:
        return sum(entry[3] for (file, _, name), entry in stats.items()
                   if any(file.endswith(suffix) and name == fn for suffix, fn in targets))  # fmt: skip

    total = cumulative((("joiner.py", "run_once"),))
    return [(label, cumulative(targets) / total) for label, *targets in STEPS]


def _cpu_us(function: Callable[[], object], repeats: int) -> float:
    """Median CPU microseconds of one call of ``function`` over ``repeats`` calls, in 5 rounds."""
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeats):
            function()
        rounds.append((time.process_time() - started) / repeats * 1e6)
    return statistics.median(rounds)


def record_costs(candidates: int, repeats: int) -> tuple[float, float, float, float, float, float]:
    """Per-request CPU (us) of the decision record's encoding for the bus: the candidate rows' texts and digests
    (``encoded_rows``) with the rows the feature store loaded (their encodings recorded at the load), and with
    rows not recorded (as every request paid for a row first seen: its JSON encoded and digested); the payload
    (``encode_decision``); what recording the rows' encodings adds to their load (``DecodeCache.decode``, per
    request's worth of rows); and the Decision's checks, all of them and without the inputs'."""
    raws = [encode_row(dict(row)) for row in CATALOG[:candidates]]
    decision = dataclasses.replace(decisions(1, candidates, 0)[0])
    loaded = DecodeCache(len(raws) + 1)
    rows = [loaded.decode(raw) for raw in raws]
    known = _cpu_us(lambda: encoded_rows(rows), repeats)
    fresh_rows = [type(row)(dict(row)) for row in rows]  # the same values, objects no cache has seen

    def first_seen() -> None:
        for row in fresh_rows:
            ROW_ENCODINGS.pop(id(row), None)
        encoded_rows(fresh_rows)

    unknown = _cpu_us(first_seen, max(1, repeats // 10))
    digests = [digest for _, _, digest in encoded_rows(rows)]
    payload = _cpu_us(lambda: encode_decision(decision, digests), repeats)

    pairs = list(zip(rows, raws, strict=True))
    recording = _cpu_us(lambda: [remember_encoding(row, raw.decode(), row_digest(raw)) for row, raw in pairs],
                        max(1, repeats // 10))  # what DecodeCache.decode adds per row it loads  # fmt: skip
    checks_all = _cpu_us(lambda: dataclasses.replace(decision), repeats)
    checks_outcome = _cpu_us(lambda: dataclasses.replace(decision, inputs_checked=True), repeats)
    return known, unknown, payload, recording, checks_all, checks_outcome


def run(quick: bool = False) -> str:
    count, repetitions = (300, 1) if quick else (3000, 5)
    server = RedisServer().start()
    try:
        results: dict[int, list[Run]] = {size: [] for size in SIZES}
        earlier: dict[int, list[Run]] = {size: [] for size in SIZES}
        for repetition in range(repetitions):
            for size in SIZES:
                order = ((results, None), (earlier, EARLIER_CHUNKS))
                for runs, sizes in order if repetition % 2 == 0 else order[::-1]:
                    runs[size].append(measure(server.url, size, count, sizes=sizes))
        costs = {size: record_costs(size, 200 if quick else 2000) for size in SIZES}
        shares = {}
        for size in SIZES:
            profile = cProfile.Profile(time.process_time)  # CPU, not wall: waiting on Redis is not the joiner's
            measure(server.url, size, count, profile)
            shares[size] = profile_shares(profile)
    finally:
        server.stop()
    lines = [
        "## Joiner alone (`bench_joiner`)",
        "",
        f"A Redis bus (one redis-server, one shard) fed beforehand with {count} decisions and one reward each; then "
        "`Joiner.run_once(flush=True)` until all are joined (take, hold, close, join, Parquet write with fsyncs, "
        f"commit; batches of {SETTINGS.flush_max_events}). CPU: the joiner's process (`time.process_time`), Redis's "
        "not counted. Parquet build + write: the same events' table built (`events_to_table`) and written "
        "(`write_table`, without the joiner's fsync) again, timed apart; the earlier layout's: the same table cast to "
        "plain `list<string>` candidate cells (the cast counted with the build), as the writer before "
        f"dictionary-encoded cells made them. Medians of {repetitions} repetitions, sizes interleaved.",
        "",
        "| candidates | joined /s | joiner CPU us/event | Parquet build + write us/event | share of the joiner CPU "
        "| file bytes/event | earlier layout (plain text cells): build + write us/event |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, runs in results.items():
        cpu, build, write, plain_build, plain_write = (statistics.median(getattr(r, f) for r in runs) for f in (
            "cpu_us", "build_us", "write_us", "plain_build_us", "plain_write_us"))  # fmt: skip
        lines.append(
            f"| {size} | {statistics.median(r.joined_per_s for r in runs):,.0f} | {cpu:,.0f} "
            f"| {build:,.0f} + {write:,.0f} | {(build + write) / cpu:.0%} "
            f"| {statistics.median(r.file_bytes for r in runs):,.0f} | {plain_build:,.0f} + {plain_write:,.0f} |"
        )
    lines += [
        "",
        f"How long the joiner's commands held Redis (its slow log at {LOGGED_US} us during the timed part, medians of "
        f"the repetitions), with the chunk sizes in force (close {redis_bus_joiner.CLOSE_CHUNK}, commit "
        f"{redis_bus_joiner.COMMIT_CHUNK}, hold {redis_bus_joiner.HOLD_CHUNK}, read {redis_bus_joiner.READ_CHUNK}) "
        f"and the earlier ones (commit {EARLIER_CHUNKS['COMMIT_CHUNK']}, hold {EARLIER_CHUNKS['HOLD_CHUNK']}, every "
        "new entry in one read), interleaved:",
        "",
        "| candidates | chunks | joined /s | joiner CPU us/event | longest command us | commands >= 0.5 ms |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        for label, runs in (("in force", results[size]), ("earlier", earlier[size])):
            lines.append(
                f"| {size} | {label} | {statistics.median(r.joined_per_s for r in runs):,.0f} "
                f"| {statistics.median(r.cpu_us for r in runs):,.0f} "
                f"| {statistics.median(r.longest_us for r in runs):,.0f} "
                f"| {statistics.median(r.slow_commands for r in runs):,.0f} |"
            )
    lines += [
        "",
        "Where the joiner's time goes (cProfile of one more pass per size, cumulative time as a share of "
        "`run_once`, CPU time; the profiler's own overhead weighs on the Python-heavy steps):",
        "",
        "| step | " + " | ".join(f"{size} candidates" for size in SIZES) + " |",
        "|---|" + "---:|" * len(SIZES),
    ]
    for index, (label, *_) in enumerate(STEPS):
        lines.append(f"| {label} | " + " | ".join(f"{shares[size][index][1]:.0%}" for size in SIZES) + " |")
    lines += [
        "",
        "The decision record's encoding for the bus, per request (CPU us, medians of 5 rounds): the candidate rows' "
        "JSON texts and digests (`encoded_rows`) for rows the feature store loaded, which come with both "
        "(recorded when the decode cache loads a row: its stored bytes are the text, digested once), and for rows "
        "not recorded (a row first seen: encoded and digested in the request, as every row's first request did "
        "before); the rest of the payload (`encode_decision`); what recording costs the load, per request's worth "
        "of rows (paid once per row, not per request); the Decision's checks, all of them and without the inputs' "
        "(the joiner's decode of a bus payload now skips the inputs', which the worker's record checked).",
        "",
        "| candidates | rows' texts + digests: loaded rows | first-seen rows | payload | recording at load "
        "| Decision checks: all | outcome only |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in SIZES:
        lines.append(f"| {size} | " + " | ".join(f"{value:,.1f}" for value in costs[size]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick=True))

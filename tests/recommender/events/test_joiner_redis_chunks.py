"""The joiner's commands each carry a bounded amount of work, because Redis runs one command at a time and a
serving worker's request waits behind whatever the joiner sent before it (``redis_bus_joiner``'s chunk sizes;
the hold times are measured in docs/benchmarks.md, "Joiner alone").

Read from Redis's own slow log at threshold 0: every command the joiner sent, with its arguments.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import redis

from recommender.events import redis_bus_joiner, redis_scripts
from recommender.events.joiner import Joiner
from recommender.events.log import read_events
from recommender.events.redis_bus import RedisEventBus
from recommender.records import Reward
from recommender.settings.events import JoinConfig
from tests.recommender.events.test_sharded_bus import decision
from tests.redis_harness import RedisServer

WAIT = 0.3
SETTINGS = JoinConfig(reward_wait_time=WAIT, recovery_seconds=5, flush_seconds=0.05)
DECISIONS = 250
# Decisions per command at most (what one command may hold Redis for: about 20 us per decision committed, 5 per
# decision held, 3 per stream entry read, on the 2-core machine of docs/benchmarks.md).
MOST_COMMITTED, MOST_HELD, MOST_CLOSED, MOST_READ = 20, 50, 10, 100


def sha(script: str) -> bytes:
    return hashlib.sha1(script.encode()).hexdigest().encode()


def test_each_joiner_command_carries_at_most_a_chunk_of_decisions(tmp_path: Path) -> None:
    server = RedisServer().start()  # its own: nothing but this test's joiner talks to it while it is logged
    worker = joiner_bus = admin = None
    try:
        worker, joiner_bus = (RedisEventBus(server.url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                                            key_prefix="holds", timeout_ms=5000) for _ in range(2))  # fmt: skip
        for index in range(DECISIONS):
            worker.put_decision(decision(f"e{index}"))
            worker.add_reward(Reward(f"e{index}", 1.0, datetime.now(UTC)))
        time.sleep(WAIT + 0.05)
        admin = redis.Redis.from_url(server.url)
        for script in (redis_scripts.COMMIT, redis_scripts.HOLD, redis_scripts.CLOSE):
            admin.script_load(script)  # else each script's first call is logged twice (NOSCRIPT, then again)
        admin.config_set("slowlog-max-len", 100_000)
        admin.config_set("slowlog-log-slower-than", 0)
        admin.slowlog_reset()

        joiner = Joiner(joiner_bus, tmp_path / "log", lambda: SETTINGS, consumer="c")
        joined = 0
        for _ in range(20):
            joined += joiner.run_once(flush=True)
            if joined >= DECISIONS:
                break
        admin.config_set("slowlog-log-slower-than", 10_000)
        # Raw entries (id, time, duration, arguments, ...): the first 32 arguments of each command, kept apart.
        entries = admin.execute_command("SLOWLOG", "GET", 100_000)
    finally:
        for bus in (worker, joiner_bus):
            if bus is not None:
                bus.close_connections()
        if admin is not None:
            admin.close()
        server.stop()

    assert joined == DECISIONS
    assert len(read_events(tmp_path / "log")) == DECISIONS
    scripts = {sha(redis_scripts.COMMIT): "commit", sha(redis_scripts.HOLD): "hold", sha(redis_scripts.CLOSE): "close"}
    per_call: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        arguments = entry[3]
        name = arguments[0].upper()
        if name == b"EVALSHA" and arguments[1] in scripts:
            keys = int(arguments[2])
            script = scripts[arguments[1]]
            # Keys per decision: commit 4 (after the stream; the batches hash with the last chunk), hold 3, close 2.
            per_call[script].append({"commit": (keys - 1) // 4, "hold": keys // 3, "close": keys // 2}[script])
        elif name in (b"XREADGROUP", b"XAUTOCLAIM"):
            upper = [argument.upper() for argument in arguments]
            per_call["read"].append(int(arguments[upper.index(b"COUNT") + 1]))
    assert sum(per_call["commit"]) == DECISIONS and sum(per_call["hold"]) == DECISIONS
    assert sum(per_call["close"]) == DECISIONS
    assert max(per_call["commit"]) <= MOST_COMMITTED
    assert max(per_call["hold"]) <= MOST_HELD
    assert max(per_call["close"]) <= MOST_CLOSED
    assert max(per_call["read"]) <= MOST_READ


def test_a_take_of_more_than_a_read_gets_every_entry_new_and_stale(redis_server, unique_prefix) -> None:
    """A take reads in turns of at most ``READ_CHUNK`` entries and still gets all it asked for: new entries,
    and the stale entries of a joiner that died (read on from where the last read stopped)."""
    worker, dead, alive = (RedisEventBus(redis_server.url, wait_seconds=WAIT, recovery_seconds=5,
                                         key_prefix=unique_prefix, timeout_ms=5000) for _ in range(3))  # fmt: skip
    try:
        for index in range(DECISIONS):
            worker.put_decision(decision(f"e{index}"))
        taken = dead.take_new("dead", 10_000)
        assert len(taken) == DECISIONS > redis_bus_joiner.READ_CHUNK
        assert dead.take_new("dead", 10_000) == []
        time.sleep(0.05)
        claimed = alive.take_stale("alive", 0.01, 1000)
        assert sorted(entry.event_id for entry in claimed) == sorted(entry.event_id for entry in taken)
        assert len(alive.take_stale("other", 10.0, 1000)) == 0  # just claimed: not idle
    finally:
        for bus in (worker, dead, alive):
            bus.close_connections()

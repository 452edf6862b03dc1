"""The joiner on a real redis-server: aggregation, and exactly-once into the Parquet log when a joiner
dies at any step of a batch (another joiner finishes its work, nothing lost, nothing twice)."""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
import redis

from recommender.events.bus import CloseStatus, Completion, DuplicateEventError, RewardOutcome
from recommender.events.joiner import Joiner, aggregate
from recommender.events.memory_bus import MemoryEventBus
from recommender.events.redis_bus import CLOSE_CHUNK, COMMIT_CHUNK, RedisEventBus
from recommender.records import Decision, Reward
from recommender.settings.events import JoinConfig
from tests.recommender.served_app import events_in
from tests.redis_harness import RedisServer

WAIT = 0.2
SETTINGS = JoinConfig(reward_wait_time=WAIT, recovery_seconds=5, flush_seconds=0.1)


class Crash(Exception):
    """Stands for the process dying at that point."""


def decision(event_id: str, ago: float = 0.0) -> Decision:
    return Decision(
        event_id=event_id, timestamp=datetime.now(UTC) - timedelta(seconds=ago), user_id="u", user_features={},
        context={"device": "web"}, candidate_ids=("a", "b"), candidate_features=({"price": 1.0}, {"price": 2.0}),
        pmfs=((0.75, 0.25),), chosen=(0,), ranking=(0, 1), model_version="m", exploration={"epsilon": 0.5},
    )  # fmt: skip


@pytest.fixture
def bus(redis_server):
    bus = RedisEventBus(redis_server.url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                        key_prefix=f"j{uuid.uuid4().hex[:8]}")  # fmt: skip
    yield bus
    bus.close_connections()


def publish(bus, n: int) -> list[str]:
    ids = [f"e{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    for event_id in ids:
        bus.put_decision(decision(event_id))
        bus.add_reward(Reward(event_id, 0.5, datetime.now(UTC)))
    time.sleep(WAIT + 0.05)  # every window closed
    return ids


@pytest.mark.parametrize(("how", "expected"), [("sum", 1.5), ("first", 1.0), ("last", -0.5), ("max", 1.0)])
def test_aggregations(how, expected):
    assert aggregate([1.0, 1.0, -0.5], how) == expected


def test_a_batch_abandoned_before_writing_is_joined_once_by_another_joiner(bus, tmp_path):
    ids = publish(bus, 5)

    class DiesBeforeWriting(Joiner):
        def _stage(self, batch_id, events):
            raise Crash

    with pytest.raises(Crash):
        DiesBeforeWriting(bus, tmp_path, lambda: SETTINGS, consumer="a").run_once()
    assert events_in(tmp_path) == {}
    assert bus.add_reward(Reward(ids[0], 1.0, datetime.now(UTC))).value == "unknown"  # the windows stay closed

    later = time.time() + SETTINGS.recovery_seconds  # past the grace: "a" is presumed dead
    survivor = Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b", clock=lambda: later)
    survivor.run_once()
    events = events_in(tmp_path)
    assert sorted(events) == sorted(ids)
    assert all(e.rewards == (0.5,) for e in events.values())
    assert bus.open_batches() == {}
    survivor.run_once()
    assert len(list(tmp_path.glob("date=*/hour=*/*.parquet"))) == 1  # nothing written twice


def test_a_batch_abandoned_between_staging_and_publishing_is_published_once(bus, tmp_path):
    ids = publish(bus, 4)

    class DiesBeforePublishing(Joiner):
        def _publish(self, files):
            if files:
                raise Crash

    with pytest.raises(Crash):
        DiesBeforePublishing(bus, tmp_path, lambda: SETTINGS, consumer="a").run_once()
    assert events_in(tmp_path) == {}  # staged only: readers see nothing yet
    assert list(tmp_path.glob("_staging/*/date=*/hour=*/*.parquet"))

    later = time.time() + SETTINGS.recovery_seconds
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b", clock=lambda: later).run_once()
    assert sorted(events_in(tmp_path)) == sorted(ids)
    assert bus.open_batches() == {} and not list(tmp_path.glob("_staging/*"))


def test_a_batch_abandoned_after_publishing_is_not_written_again(bus, tmp_path):
    ids = publish(bus, 3)

    def die(*args):
        raise Crash

    joiner = Joiner(bus, tmp_path, lambda: SETTINGS, consumer="a")
    original_commit = bus.commit_batch
    bus.commit_batch = die  # the process dies after publishing the file, before acknowledging in Redis
    with pytest.raises(Crash):
        joiner.run_once()
    bus.commit_batch = original_commit
    assert sorted(events_in(tmp_path)) == sorted(ids)

    later = time.time() + SETTINGS.recovery_seconds
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b", clock=lambda: later).run_once()
    assert len(list(tmp_path.glob("date=*/hour=*/*.parquet"))) == 1
    assert sorted(events_in(tmp_path)) == sorted(ids)
    assert bus.open_batches() == {}


def test_due_decisions_are_batched_at_most_once_per_flush_interval_or_when_enough_are_due(bus, tmp_path):
    settings = JoinConfig(reward_wait_time=WAIT, recovery_seconds=5, flush_seconds=30, flush_max_events=4)
    offset = [0.0]
    joiner = Joiner(bus, tmp_path, lambda: settings, consumer="a", clock=lambda: time.time() + offset[0])

    def files() -> int:
        return len(list(tmp_path.glob("date=*/hour=*/*.parquet")))

    first = publish(bus, 3)
    assert joiner.run_once() == 3 and files() == 1  # no batch yet: written at once
    second = publish(bus, 2)
    assert joiner.run_once() == 0 and files() == 1  # due, but the last batch was under 30 s ago
    assert 0 < joiner.seconds_to_next_batch() <= 30
    third = publish(bus, 2)
    assert joiner.run_once() == 4 and files() == 2  # 4 due = flush_max_events: written without waiting
    fourth = publish(bus, 1)
    assert joiner.run_once() == 0
    offset[0] = 30.0
    assert joiner.seconds_to_next_batch() == 0
    assert joiner.run_once() == 1 and files() == 3
    fifth = publish(bus, 1)
    assert joiner.run_once() == 0
    assert joiner.run_once(flush=True) == 1  # e.g. on stop
    assert sorted(events_in(tmp_path)) == sorted(first + second + third + fourth + fifth)
    assert bus.pending_count() == 0


def test_the_background_loop_writes_due_decisions_when_stopped(bus, tmp_path):
    settings = JoinConfig(reward_wait_time=WAIT, recovery_seconds=5, flush_seconds=60)
    joiner = Joiner(bus, tmp_path, lambda: settings, consumer="a")
    early = publish(bus, 2)
    joiner.start()
    deadline = time.monotonic() + 10
    while len(events_in(tmp_path)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    late = publish(bus, 2)  # due now, but the next batch is a minute away...
    time.sleep(0.2)
    joiner.stop()  # ...so stopping writes them
    assert sorted(events_in(tmp_path)) == sorted(early + late)


def test_stopping_with_an_in_process_bus_joins_the_open_windows_instead_of_losing_them(tmp_path):
    bus = MemoryEventBus(wait_seconds=60, recovery_seconds=5)
    settings = JoinConfig(reward_wait_time=60, recovery_seconds=5, flush_seconds=0.1)
    joiner = Joiner(bus, tmp_path, lambda: settings, consumer="a")
    joiner.start()
    rewarded, silent = decision(f"r-{uuid.uuid4().hex[:6]}"), decision(f"s-{uuid.uuid4().hex[:6]}")
    for d in (rewarded, silent):
        bus.put_decision(d)
    bus.add_reward(Reward(rewarded.event_id, 0.5, datetime.now(UTC)))
    time.sleep(0.3)  # taken by the joiner, windows open for another minute
    joiner.stop(close_early=True)
    events = events_in(tmp_path)
    assert events[rewarded.event_id].rewards == (0.5,) and events[rewarded.event_id].reward_is_default == (False,)
    assert events[silent.event_id].reward_is_default == (True,)
    assert bus.add_reward(Reward(silent.event_id, 1.0, datetime.now(UTC))) is RewardOutcome.UNKNOWN  # closed


def test_a_joiner_dying_between_commit_chunks_leaves_the_batch_for_another_to_finish(bus, tmp_path):
    ids = publish(bus, COMMIT_CHUNK + 20)
    original_call = bus._call
    commits = []

    def dies_on_the_second_chunk(action, fn, *args, **kwargs):
        if action == "committing a batch":
            commits.append(args)
            if len(commits) == 2:
                raise Crash
        return original_call(action, fn, *args, **kwargs)

    bus._call = dies_on_the_second_chunk
    with pytest.raises(Crash):
        Joiner(bus, tmp_path, lambda: SETTINGS, consumer="a").run_once()
    bus._call = original_call
    assert len(commits[0][0]) == COMMIT_CHUNK  # the first chunk was committed, the manifest kept
    assert bus.pending_count() == 20 and len(bus.open_batches()) == 1

    later = time.time() + SETTINGS.recovery_seconds
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b", clock=lambda: later).run_once()
    assert sorted(events_in(tmp_path)) == sorted(ids)  # each once
    assert bus.pending_count() == 0 and bus.open_batches() == {}


def test_decisions_taken_by_a_dead_joiner_are_claimed_after_their_idle_time(bus, tmp_path):
    ids = [f"d{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for event_id in ids:
        bus.put_decision(decision(event_id))
    assert len(bus.take_new("dead", 100)) == 3  # taken, then the joiner died holding them
    survivor = Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b")
    survivor.run_once()
    assert events_in(tmp_path) == {}  # not yet: the dead joiner might only be slow
    time.sleep(WAIT + SETTINGS.recovery_seconds / 3 + 0.2)
    survivor._last_recovery = float("-inf")  # the next cycle looks for abandoned work
    survivor.run_once()
    events = events_in(tmp_path)
    assert sorted(events) == sorted(ids)
    assert all(e.reward_is_default == (True,) for e in events.values())


def wide_decision(event_id: str, prices: list[float]) -> Decision:
    k = len(prices)
    return Decision(
        event_id=event_id, timestamp=datetime.now(UTC), user_id="u", user_features={}, context={},
        candidate_ids=tuple(f"sku-{i}" for i in range(k)),
        candidate_features=tuple(MappingProxyType({"price": p, "brand": "Solis" * 20}) for p in prices),
        pmfs=((1.0 / k,) * k,), chosen=(0,), ranking=tuple(range(k)), model_version="m", exploration={},
    )  # fmt: skip


def test_feature_rows_are_stored_once_and_decisions_name_them(bus, redis_server, tmp_path):
    raw = redis.Redis.from_url(redis_server.url)
    prefix = bus._tag
    first = wide_decision(f"w1-{uuid.uuid4().hex[:6]}", [float(i) for i in range(200)])
    # Same 200 rows (as the same objects, as the feature store hands them out) plus one new row.
    new_row = MappingProxyType({"price": -1.0})
    second = replace(first, event_id=f"w2-{uuid.uuid4().hex[:6]}",
                     candidate_ids=(*first.candidate_ids[:199], "sku-new"),
                     candidate_features=(*first.candidate_features[:199], new_row))  # fmt: skip
    bus.put_decision(first)
    rows_after_first = len(raw.keys(f"{prefix}:row:*"))
    bus.put_decision(second)
    assert rows_after_first == 200 and len(raw.keys(f"{prefix}:row:*")) == 201
    # A pending decision holds digests, not 200 copies of the rows.
    assert len(raw.hget(f"{prefix}:d:{first.event_id}", "d")) < 10_000
    assert raw.pttl(next(iter(raw.keys(f"{prefix}:row:*")))) > (WAIT + SETTINGS.recovery_seconds) * 2 * 1000

    # A joiner in another process (a fresh bus: no rows cached) rebuilds the decisions exactly.
    time.sleep(WAIT + 0.05)
    other = RedisEventBus(redis_server.url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                          key_prefix=prefix.strip("{}"))  # fmt: skip
    Joiner(other, tmp_path, lambda: SETTINGS, consumer="c").run_once()
    events = events_in(tmp_path)
    assert events[first.event_id].decision.candidate_features == first.candidate_features
    assert events[second.event_id].decision.candidate_features[-1] == {"price": -1.0}
    other.close_connections()


def test_a_decision_whose_rows_redis_lost_is_counted_expired_not_written(bus, redis_server, tmp_path, caplog):
    raw = redis.Redis.from_url(redis_server.url)
    lost = wide_decision(f"lost-{uuid.uuid4().hex[:6]}", [1.0, 2.0])
    bus.put_decision(lost)
    raw.delete(*raw.keys(f"{bus._tag}:row:*"))  # as an evicting or restarted Redis would
    time.sleep(WAIT + 0.05)
    other = RedisEventBus(redis_server.url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                          key_prefix=bus._tag.strip("{}"))  # fmt: skip
    joiner = Joiner(other, tmp_path, lambda: SETTINGS, consumer="c")
    joiner.run_once()
    assert events_in(tmp_path) == {}
    assert "names feature rows Redis no longer has" in caplog.text
    assert other.pending_count() == 0  # acknowledged: not retried forever
    other.close_connections()


def test_a_refused_duplicate_does_not_count_its_rows_as_stored(bus, redis_server, tmp_path):
    raw = redis.Redis.from_url(redis_server.url)
    taken = wide_decision(f"dup-{uuid.uuid4().hex[:6]}", [1.0])
    bus.put_decision(taken)
    # Same event id again, now with a row never seen: refused before anything is written...
    duplicate = wide_decision(taken.event_id, [7.0])
    with pytest.raises(DuplicateEventError):
        bus.put_decision(duplicate)
    # ...so the next decision naming that row must still store it.
    later = wide_decision(f"later-{uuid.uuid4().hex[:6]}", [7.0])
    later = replace(later, candidate_features=duplicate.candidate_features)
    bus.put_decision(later)
    assert len(raw.keys(f"{bus._tag}:row:*")) == 2
    time.sleep(WAIT + 0.05)
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="c").run_once()
    assert events_in(tmp_path)[later.event_id].decision.candidate_features == ({"price": 7.0, "brand": "Solis" * 20},)


def test_closing_more_decisions_than_one_script_call_keeps_each_status_in_order(bus, redis_server):
    raw = redis.Redis.from_url(redis_server.url)
    n = CLOSE_CHUNK * 2 + 7
    ids = [f"c{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    for i, event_id in enumerate(ids):
        bus.put_decision(wide_decision(event_id, [float(i), float(i) + 0.5]))
        if i % 5 == 1:
            bus.add_reward(Reward(event_id, 0.25 * (i % 4), datetime.now(UTC)))
    pending = bus.take_new("c", n)
    assert [p.event_id for p in pending] == ids
    bus.close([pending[i] for i in range(n) if i % 7 == 3], "other-batch")  # taken by another batch first
    raw.delete(*(f"{bus._tag}:d:{ids[i]}" for i in range(n) if i % 11 == 4))  # gone from Redis
    closed = bus.close(pending, "mine")
    for i, item in enumerate(closed):
        assert item.pending == pending[i]
        if i % 11 == 4:
            assert item.status is CloseStatus.EXPIRED
        elif i % 7 == 3:
            assert item.status is CloseStatus.TAKEN
        else:
            assert item.status is CloseStatus.READY and item.decision.event_id == ids[i]
            assert item.decision.candidate_features == wide_decision("x", [float(i), float(i) + 0.5]).candidate_features
            assert [r.value for r in item.rewards] == ([0.25 * (i % 4)] if i % 5 == 1 else [])
    assert [c.status for c in bus.close(pending, "mine")] == [c.status for c in closed]  # idempotent per batch


def test_a_worker_stores_its_rows_again_once_per_refresh_period(bus, redis_server):
    raw = redis.Redis.from_url(redis_server.url)
    rows = wide_decision("x", [1.0, 2.0]).candidate_features
    bus.put_decision(replace(wide_decision(f"g1-{uuid.uuid4().hex[:6]}", [1.0, 2.0]), candidate_features=rows))
    raw.delete(*raw.keys(f"{bus._tag}:row:*"))  # stands for the rows' TTL running out
    bus.put_decision(replace(wide_decision(f"g2-{uuid.uuid4().hex[:6]}", [1.0, 2.0]), candidate_features=rows))
    assert raw.keys(f"{bus._tag}:row:*") == []  # stored within the period: not written again
    bus._rows_generation -= bus._row_refresh + 1  # the period is over
    bus.put_decision(replace(wide_decision(f"g3-{uuid.uuid4().hex[:6]}", [1.0, 2.0]), candidate_features=rows))
    assert len(raw.keys(f"{bus._tag}:row:*")) == 2


def test_a_joiner_crash_then_a_redis_outage_loses_no_acknowledged_reward(tmp_path):
    # The reported failure, shortened: the least recovery time the configuration allows, an outage longer than
    # the decisions' TTL (wait + recovery). The mechanism does not depend on the numbers.
    server = RedisServer().start()
    bus = RedisEventBus(server.url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                        key_prefix=f"j{uuid.uuid4().hex[:8]}", timeout_ms=5000)  # fmt: skip
    try:
        ids = [f"o{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
        for event_id in ids:
            bus.put_decision(decision(event_id))
            assert bus.add_reward(Reward(event_id, 0.5, datetime.now(UTC))) is RewardOutcome.ACCEPTED
        assert len(bus.take_new("dead", 100)) == 20  # a joiner took them, then crashed
        os.kill(server.process.pid, signal.SIGSTOP)  # Redis stalls (a stop, a failover, a long fork)...
        time.sleep(WAIT + SETTINGS.recovery_seconds + 0.5)
        os.kill(server.process.pid, signal.SIGCONT)  # ...and comes back, its clock past every TTL
        survivor = Joiner(bus, tmp_path, lambda: SETTINGS, consumer="b")
        survivor.run_once()  # the dead joiner's decisions are idle long enough: claimed and joined
        events = events_in(tmp_path)
        assert sorted(events) == sorted(ids)  # nothing expired: every acknowledged reward is in the log
        assert all(e.rewards == (0.5,) and e.reward_is_default == (False,) for e in events.values())
        assert bus.pending_count() == 0
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        bus.close_connections()
        server.stop()


def test_a_decision_lost_from_the_bus_is_logged_as_an_error(bus, redis_server, tmp_path, caplog):
    raw = redis.Redis.from_url(redis_server.url)
    ids = publish(bus, 2)
    raw.delete(f"{bus._tag}:d:{ids[0]}")  # as only Redis itself can lose it now (eviction, no persistence)
    stats = []
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="c", observer=stats.append).run_once()
    assert sorted(events_in(tmp_path)) == [ids[1]] and stats[0].expired == 1
    [record] = [r for r in caplog.records if "expired from the bus" in r.getMessage()]
    assert record.levelno == logging.ERROR and ids[0] in record.getMessage()


def test_an_aggregated_reward_is_clipped_into_the_reward_range_and_counted(bus, tmp_path):
    event_id = f"clip-{uuid.uuid4().hex[:6]}"
    bus.put_decision(decision(event_id))
    for _ in range(2):  # each within [-1, 1]; their sum is not
        assert bus.add_reward(Reward(event_id, 0.75, datetime.now(UTC))) is RewardOutcome.ACCEPTED
    time.sleep(WAIT + 0.05)
    stats = []
    Joiner(bus, tmp_path, lambda: SETTINGS, consumer="c", observer=stats.append).run_once()
    assert events_in(tmp_path)[event_id].rewards == (1.0,)  # not 1.5
    assert stats[0].clipped_slots == 1


@pytest.mark.parametrize("how", ["first", "max"])
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_early_close_joins_complete_decisions_at_once_and_logs_what_the_window_end_would(tmp_path, redis_server,
                                                                                        how, backend):  # fmt: skip
    wait = 1.5
    settings = JoinConfig(reward_wait_time=wait, recovery_seconds=5, flush_seconds=0.05, aggregation=how)
    completion = Completion.for_join(how, settings.reward_range)

    def open_bus(rule):
        if backend == "memory":
            return MemoryEventBus(wait, 5, rule)
        return RedisEventBus(redis_server.url, wait_seconds=wait, recovery_seconds=5, completion=rule,
                             key_prefix=f"j{uuid.uuid4().hex[:8]}")  # fmt: skip

    early, late = open_bus(completion), open_bus(None)  # the same traffic, closed early / at the window's end
    ids = {name: f"{name}-{uuid.uuid4().hex[:6]}" for name in ("settled", "open", "silent")}
    made = {name: decision(event_id) for name, event_id in ids.items()}
    rewards = {"settled": [0.25, 1.0, -0.5], "open": [0.5, 0.75]}  # first: both complete; max: only "settled"
    for bus in (early, late):
        for name, d in made.items():
            bus.put_decision(d)
            for value in rewards.get(name, []):
                assert bus.add_reward(Reward(d.event_id, value, datetime.now(UTC))) is RewardOutcome.ACCEPTED
    early_log, late_log = tmp_path / "early", tmp_path / "late"
    joiners = [Joiner(early, early_log, lambda: settings, consumer="a"), Joiner(late, late_log, lambda: settings)]
    for joiner in joiners:
        joiner.run_once()
    complete = {"settled", "open"} if how == "first" else {"settled"}
    assert set(events_in(early_log)) == {ids[name] for name in complete}  # joined within the window
    assert not late_log.exists() or not events_in(late_log)
    # Rewards after the early join: accepted by both; they cannot change what the early join wrote.
    for bus in (early, late):
        assert bus.add_reward(Reward(ids["settled"], 0.0, datetime.now(UTC))) is RewardOutcome.ACCEPTED
        assert bus.add_reward(Reward(ids["open"], 1.0, datetime.now(UTC))) is RewardOutcome.ACCEPTED
    time.sleep(wait + 0.1)
    for joiner in joiners:
        joiner.run_once(flush=True)
    at_end, closed_early = events_in(late_log), events_in(early_log)
    assert set(at_end) == set(closed_early) == set(ids.values())
    for event_id, event in at_end.items():
        same = closed_early[event_id]
        assert (same.decision, same.rewards, same.reward_is_default) == (event.decision, event.rewards,
                                                                          event.reward_is_default)  # fmt: skip
    assert at_end[ids["settled"]].rewards == ((0.25,) if how == "first" else (1.0,))
    for bus in (early, late):
        bus.close_connections()


def test_a_hot_reloaded_aggregation_the_bus_was_not_opened_with_closes_no_window_early(tmp_path):
    bus = MemoryEventBus(60, 5, Completion.for_join("first", (-1.0, 1.0)))
    settings = JoinConfig(reward_wait_time=60, recovery_seconds=5, flush_seconds=0.05, aggregation="sum")
    d = decision(f"e-{uuid.uuid4().hex[:6]}")
    bus.put_decision(d)
    bus.add_reward(Reward(d.event_id, 1.0, datetime.now(UTC)))
    assert Joiner(bus, tmp_path, lambda: settings).run_once() == 0  # under sum, a later reward would count

"""The event-bus contract: every backend (in-process, Redis, Redis Cluster) must pass all of it.

Each test opens its buses through ``open_bus`` from the default configuration, with a short reward window and
its own key prefix. Times are controlled through the records: a reward counts by its ``received_at``, an
activation by its ``now``, so only the idle time of ``take_stale`` is waited for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from recommender.events.bus import (
    BusError,
    BusUnavailable,
    ClosedEvent,
    CloseStatus,
    DuplicateEventError,
    EventBus,
    PendingDecision,
    RewardEntry,
    RewardOutcome,
)
from recommender.events.factory import open_bus
from recommender.events.redis_bus_shards import split_entry_id
from recommender.records import Decision, Reward
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_document, parse_config
from tests.redis_harness import RedisServer, free_port

WAIT = 0.3  # seconds of reward window
RECOVERY = 5.0  # the least the configuration allows; every test ends well within it
IDLE = 0.5  # min idle seconds of take_stale

BusFactory = Callable[[], EventBus]


def bus_config(join: dict[str, Any] | None = None, **bus: Any) -> AppConfig:
    """configs/default.yaml (no environment overrides) with a short window and the ``bus`` settings given."""
    document = load_document(DEFAULT_CONFIG_PATH, env={})
    document["join"].update(reward_wait_time=WAIT, recovery_seconds=RECOVERY, **(join or {}))
    # A generous budget: this suite checks what the backends do, not how fast (the service tests do that).
    document["bus"].update({"timeout_ms": 5000, **bus})
    return parse_config(document)


# Shards of the sharded kinds: on one server, and on the 3-node cluster (two per node: redis_bus_shards).
SHARDS = {"redis-sharded": 3, "redis-cluster-sharded": 6}


@pytest.fixture(params=["memory", "redis", "redis-cluster", "redis-sharded", "redis-cluster-sharded"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def aggregation() -> str:
    """``join.aggregation`` of the buses (tests of early close override it)."""
    return "sum"


@pytest.fixture
def buses(request, kind, unique_prefix, aggregation) -> Iterator[BusFactory]:
    """A factory of buses of one backend kind on this test's key prefix: each bus stands for one process."""
    join = {"aggregation": aggregation}
    if kind == "memory":
        config = bus_config(join, backend="memory")
    elif kind == "redis":
        config = bus_config(join, backend="redis", redis_url=request.getfixturevalue("redis_server").url,
                            key_prefix=unique_prefix)  # fmt: skip
    elif kind == "redis-sharded":
        config = bus_config(join, backend="redis", redis_url=request.getfixturevalue("redis_server").url,
                            key_prefix=unique_prefix, shards=SHARDS[kind])  # fmt: skip
    else:  # through redis-py's cluster client, from any node: each shard's commands go to its tag's node
        url = request.getfixturevalue("redis_cluster")[0].url
        config = bus_config(join, backend="redis", redis_url=url, key_prefix=unique_prefix, cluster=True,
                            shards=SHARDS.get(kind, 1))  # fmt: skip
    opened: list[EventBus] = []
    put_order: dict[str, int] = {}  # shared by the buses of one test, as the processes of one deployment

    def factory() -> EventBus:
        bus = open_bus(config)
        opened.append(bus)
        return InPutOrder(bus, put_order) if kind in SHARDS else bus

    yield factory
    for bus in opened:
        bus.close_connections()


class InPutOrder:
    """A sharded bus whose takes are sorted in the order the decisions were put, the one thing its contract
    has less of: entries come in order within a shard, and shards in turn (the tests of ``take_new`` and
    ``take_stale`` with a ``count`` check that on ``unsharded``). Everything else is the bus's own."""

    def __init__(self, bus: EventBus, put_order: dict[str, int]) -> None:
        self.unsharded = bus
        self._order = put_order

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unsharded, name)

    def put_decision(self, made: Decision) -> None:
        self.unsharded.put_decision(made)
        self._order.setdefault(made.event_id, len(self._order))

    def _sorted(self, pending: list[PendingDecision]) -> list[PendingDecision]:
        return sorted(pending, key=lambda item: self._order[item.event_id])

    def take_new(self, consumer: str, count: int) -> list[PendingDecision]:
        return self._sorted(self.unsharded.take_new(consumer, count))

    def take_stale(self, consumer: str, min_idle_seconds: float, count: int) -> list[PendingDecision]:
        return self._sorted(self.unsharded.take_stale(consumer, min_idle_seconds, count))


def shard_of_entry(item: PendingDecision) -> int:
    return split_entry_id(item.entry_id)[0]


def in_order_within_shards(pending: list[PendingDecision], put: list[str]) -> bool:
    """Whether the entries of each shard in ``pending`` come in the order their decisions were ``put``."""
    return all(
        [p.event_id for p in pending if shard_of_entry(p) == shard]
        == sorted((p.event_id for p in pending if shard_of_entry(p) == shard), key=put.index)
        for shard in {shard_of_entry(p) for p in pending}
    )


@pytest.fixture
def bus(buses) -> EventBus:
    return buses()


T0 = datetime.now(UTC).replace(microsecond=250_000)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def decision(event_id: str, *, slots: int = 1, deferred: bool = False, user_id: str = "u1") -> Decision:
    k = 3
    pmf = (0.5, 0.25, 0.25)
    return Decision(
        event_id=event_id, timestamp=T0, user_id=user_id, user_features={"segment": "vip"},
        context={"device": "web"}, candidate_ids=("a", "b", "c"),
        candidate_features=tuple({"price": 1.5 * i, "brand": f"B{i}"} for i in range(k)),
        pmfs=(pmf,) * slots, chosen=tuple(range(slots)), ranking=(0, 1, 2), model_version="m1",
        exploration={"epsilon": 0.2}, deferred=deferred,
    )  # fmt: skip


def reward(event_id: str, value: float, seconds: float, slot: int = 0) -> Reward:
    return Reward(event_id, value, at(seconds), slot)


def entry(value: float, seconds: float, slot: int = 0) -> RewardEntry:
    return RewardEntry(slot, value, at(seconds).timestamp())


def ids(pending: list[PendingDecision]) -> list[str]:
    return [item.event_id for item in pending]


# ----- serving side -----------------------------------------------------------------------------------
def test_rewards_within_the_window_are_accepted_and_closed_with_their_decision(bus):
    made = decision("e1")
    bus.put_decision(made)
    assert bus.add_reward(reward("e1", 1.0, 0.1)) is RewardOutcome.ACCEPTED
    assert bus.add_reward(reward("e1", -0.5, 0.2)) is RewardOutcome.ACCEPTED
    pending = bus.take_new("a", 10)
    assert ids(pending) == ["e1"] and pending[0].due_at == T0.timestamp() + WAIT
    closed = bus.close(pending, "b1")
    # The decision as it was put, with its rewards in arrival order and their exact times.
    assert closed == [ClosedEvent(pending[0], CloseStatus.READY, made, (entry(1.0, 0.1), entry(-0.5, 0.2)))]
    assert closed[0].activated is False


def test_a_reward_after_the_window_is_unknown_and_not_joined(bus):
    bus.put_decision(decision("e1"))
    assert bus.add_reward(reward("e1", 1.0, WAIT - 0.01)) is RewardOutcome.ACCEPTED
    assert bus.add_reward(reward("e1", 0.5, WAIT + 0.01)) is RewardOutcome.UNKNOWN
    [closed] = bus.close(bus.take_new("a", 10), "b1")
    assert closed.rewards == (entry(1.0, WAIT - 0.01),)


def test_a_reward_for_an_unknown_event_is_unknown_and_creates_nothing(bus):
    assert bus.add_reward(reward("never-decided", 1.0, 0.1)) is RewardOutcome.UNKNOWN
    assert bus.activate("never-decided", now=at(0.1).timestamp()) is False
    assert bus.take_new("a", 10) == []


def test_a_reward_for_a_slot_the_decision_does_not_have_is_refused(bus):
    bus.put_decision(decision("one"))
    bus.put_decision(decision("two", slots=2))
    assert bus.add_reward(reward("one", 1.0, 0.1, slot=1)) is RewardOutcome.BAD_SLOT
    assert bus.add_reward(reward("two", 1.0, 0.1, slot=1)) is RewardOutcome.ACCEPTED
    assert bus.add_reward(reward("two", 1.0, 0.1, slot=2)) is RewardOutcome.BAD_SLOT
    one, two = bus.close(bus.take_new("a", 10), "b1")
    assert one.rewards == () and two.rewards == (entry(1.0, 0.1, slot=1),)


def test_a_duplicate_event_id_is_refused_and_the_first_decision_stays(bus):
    first = decision("e1")
    bus.put_decision(first)
    with pytest.raises(DuplicateEventError, match="'e1' is already pending"):
        bus.put_decision(decision("e1", user_id="someone-else"))
    assert issubclass(DuplicateEventError, BusError)
    pending = bus.take_new("a", 10)
    assert ids(pending) == ["e1"]  # one entry: the refused decision was not queued
    assert [c.decision for c in bus.close(pending, "b1")] == [first]


def test_the_slot_names_of_a_pending_decision_are_read_from_every_process_until_its_join(buses, kind):
    serving = buses()
    other = serving if kind == "memory" else buses()  # an in-process bus is one process's
    named = dataclasses.replace(decision("e-named", slots=2), slot_names=("Main", "Side"))
    serving.put_decision(named)
    serving.put_decision(decision("e-plain", slots=2))
    assert other.pending_slot_names("e-named") == ("Main", "Side")
    assert other.pending_slot_names("e-plain") == ()
    assert other.pending_slot_names("never-made") is None
    pending = serving.take_new("a", 10)
    [closed, _] = serving.close(pending, "b1")
    assert closed.decision.slot_names == ("Main", "Side")  # decoded with the decision
    assert other.pending_slot_names("e-named") == ("Main", "Side")  # closed, not yet in the log: still pending
    serving.commit_batch("b1", pending)
    assert other.pending_slot_names("e-named") is None


def test_a_deferred_decision_is_activated_only_while_its_window_is_open(bus):
    bus.put_decision(decision("shown", deferred=True))
    bus.put_decision(decision("late", deferred=True))
    bus.put_decision(decision("never", deferred=True))
    assert bus.activate("shown", now=at(0.1).timestamp()) is True
    assert bus.activate("late", now=at(WAIT + 0.01).timestamp()) is False  # its window has closed
    closed = bus.close(bus.take_new("a", 10), "b1")
    assert [(c.decision.event_id, c.decision.deferred, c.activated) for c in closed] == [
        ("shown", True, True), ("late", True, False), ("never", True, False),
    ]  # fmt: skip
    assert bus.activate("never", now=at(0.2).timestamp()) is False  # closed by the batch


def test_ping_answers_and_in_process_says_whether_decisions_end_with_the_process(buses, kind):
    bus, other_process = buses(), buses()
    assert bus.ping() is None
    assert bus.in_process is (kind == "memory")
    bus.put_decision(decision("e1"))
    # Only a shared backend lets a joiner in another process take the decision.
    assert ids(other_process.take_new("a", 10)) == ([] if bus.in_process else ["e1"])


# ----- joiner side: taking decisions ----------------------------------------------------------------------
def test_take_new_hands_each_decision_to_one_consumer_once_in_order(bus, kind):
    put = [f"e{i}" for i in range(5)]
    for event_id in put:
        bus.put_decision(decision(event_id))
    if kind in SHARDS:  # in order within each shard, at most ``count``, each decision once
        first, rest = bus.unsharded.take_new("a", 2), bus.unsharded.take_new("b", 10)
        assert len(first) == 2 and sorted(ids(first + rest)) == put
        assert in_order_within_shards(first, put) and in_order_within_shards(rest, put)
        assert len({shard_of_entry(p) for p in first + rest}) > 1  # spread over the shards
    else:
        first = bus.take_new("a", 2)
        rest = bus.take_new("b", 10)
        assert ids(first) == ["e0", "e1"] and ids(rest) == ["e2", "e3", "e4"]
    assert len({item.entry_id for item in first + rest}) == 5
    assert all(item.due_at == T0.timestamp() + WAIT for item in first + rest)
    assert bus.take_new("a", 10) == [] and bus.take_new("b", 10) == []


def test_a_stale_decision_is_claimed_by_another_consumer_after_its_min_idle_time(bus, kind):
    for i in range(3):
        bus.put_decision(decision(f"e{i}"))
    taken = bus.take_new("dead", 10)
    assert bus.take_stale("b", IDLE, 10) == []  # not yet idle long enough: the first joiner may be slow
    time.sleep(IDLE + 0.1)
    if kind in SHARDS:  # at most ``count``, from the shards in turn: the same entries, each claimed once
        claimed = bus.unsharded.take_stale("b", IDLE, 2)
        assert len(claimed) == 2 and set(claimed) < set(taken)
        assert bus.take_stale("b", IDLE, 10) == [item for item in taken if item not in claimed]
    else:
        claimed = bus.take_stale("b", IDLE, 2)
        assert claimed == taken[:2]  # the same entries, at most ``count``
        assert bus.take_stale("b", IDLE, 10) == taken[2:]  # the other two are b's now and fresh
    assert bus.take_stale("c", IDLE, 10) == []  # b's claims restarted their idle time
    assert bus.take_new("c", 10) == []  # claimed decisions are not new
    bus.commit_batch("b1", taken)
    assert bus.take_stale("c", 0.0, 10) == []  # committed decisions are no one's to claim


# ----- joiner side: batches -------------------------------------------------------------------------------
def test_close_is_idempotent_per_batch_and_a_decision_is_closed_by_one_batch_only(bus):
    bus.put_decision(decision("e1"))
    bus.add_reward(reward("e1", 1.0, 0.1))
    pending = bus.take_new("a", 10)
    first = bus.close(pending, "b1")
    assert first[0].status is CloseStatus.READY
    assert bus.add_reward(reward("e1", 0.5, 0.2)) is RewardOutcome.UNKNOWN  # closed, though within the window
    assert bus.close(pending, "b1") == first  # the same data again
    assert bus.close(pending, "b2") == [ClosedEvent(pending[0], CloseStatus.TAKEN)]


def test_closing_a_decision_gone_from_the_bus_says_expired(bus):
    gone = PendingDecision("1-0", "never-decided", T0.timestamp() + WAIT)
    assert bus.close([gone], "b1") == [ClosedEvent(gone, CloseStatus.EXPIRED)]
    assert bus.close([], "b1") == []


def test_a_batch_is_recorded_updated_and_forgotten_on_commit_with_its_decisions(bus):
    for event_id in ("e1", "e2", "e3"):
        bus.put_decision(decision(event_id, deferred=True))
    pending = bus.take_new("a", 10)
    manifest = {"entries": [[p.entry_id, p.event_id, p.due_at] for p in pending], "owner": "a",
                "touched": 1000.5, "stamp": "s1"}  # fmt: skip
    bus.begin_batch("b1", manifest)
    bus.begin_batch("b2", {"entries": [], "owner": "x", "touched": 1.0, "stamp": "s2"})
    assert bus.open_batches() == {"b1": manifest, "b2": {"entries": [], "owner": "x", "touched": 1.0, "stamp": "s2"}}
    closed = bus.close(pending[:2], "b1")
    with_files = {**manifest, "files": [["_staging/b1/part.parquet", "date=2024-05-01/hour=12/part.parquet"]]}
    bus.set_batch_files("b1", with_files)
    assert bus.open_batches()["b1"] == with_files

    bus.commit_batch("b1", pending[:2])
    assert set(bus.open_batches()) == {"b2"}
    # The committed decisions are gone: closed by no batch, rewarded and activated no more...
    assert bus.close(pending[:2], "b1") == [ClosedEvent(p, CloseStatus.EXPIRED) for p in pending[:2]]
    assert bus.add_reward(reward("e1", 1.0, 0.1)) is RewardOutcome.UNKNOWN
    assert bus.activate("e2", now=at(0.1).timestamp()) is False
    # ...and no longer pending, but remembered for the recovery time: the id may be used again only after it
    # (test_a_joined_event_id_is_refused_for_the_recovery_time_then_free_and_taken_decisions_never_expire).
    with pytest.raises(DuplicateEventError, match="'e1' was joined already"):
        bus.put_decision(decision("e1"))
    assert ids(bus.take_new("a", 10)) == []
    # ...while the decision left out of the commit is still pending and open.
    assert bus.add_reward(reward("e3", 1.0, 0.1)) is RewardOutcome.ACCEPTED
    assert [c.status for c in closed] == [CloseStatus.READY] * 2
    [last] = bus.close(pending[2:], "b3")
    assert last.status is CloseStatus.READY and last.rewards == (entry(1.0, 0.1),)

    bus.commit_batch("b2", [])  # a batch without decisions is forgotten too
    assert bus.open_batches() == {}


def test_a_reward_retried_with_its_reward_id_is_a_no_op_while_pending_and_after_the_join(bus):
    bus.put_decision(decision("e1"))
    first = Reward("e1", 0.75, at(0.1), reward_id="r-1")
    assert bus.add_reward(first) is RewardOutcome.ACCEPTED
    assert bus.add_reward(Reward("e1", 0.75, at(0.15), reward_id="r-1")) is RewardOutcome.DUPLICATE  # a retry
    assert bus.add_reward(Reward("e1", 0.25, at(0.2), reward_id="r-2")) is RewardOutcome.ACCEPTED  # another one
    assert bus.add_reward(Reward("e1", 0.5, at(0.25))) is RewardOutcome.ACCEPTED  # no id: counted every time
    # A retry after the window closed is still the no-op its first attempt made it, not a 404.
    assert bus.add_reward(Reward("e1", 0.75, at(WAIT + 0.1), reward_id="r-1")) is RewardOutcome.DUPLICATE
    bus.put_decision(decision("e2"))
    assert bus.add_reward(Reward("e2", 1.0, at(0.1), reward_id="r-1")) is RewardOutcome.ACCEPTED  # per event
    pending = bus.take_new("a", 10)
    one, two = bus.close(pending, "b1")
    assert one.rewards == (entry(0.75, 0.1), entry(0.25, 0.2), entry(0.5, 0.25))  # the retry added nothing
    assert two.rewards == (entry(1.0, 0.1),)
    bus.commit_batch("b1", pending)
    # Joined: a retry of an accepted reward is still a no-op (what it answered before), a new reward unknown.
    assert bus.add_reward(Reward("e1", 0.75, at(0.3), reward_id="r-1")) is RewardOutcome.DUPLICATE
    assert bus.add_reward(Reward("e1", 0.75, at(0.3), reward_id="r-3")) is RewardOutcome.UNKNOWN
    assert bus.add_reward(Reward("never-decided", 1.0, at(0.1), reward_id="r-1")) is RewardOutcome.UNKNOWN


def test_a_joined_event_id_is_refused_for_the_recovery_time_then_free_and_taken_decisions_never_expire(bus):
    bus.put_decision(decision("joined"))
    bus.put_decision(decision("taken"))
    assert bus.add_reward(reward("taken", 0.5, 0.1)) is RewardOutcome.ACCEPTED
    joined, taken = bus.take_new("a", 10)
    bus.close([joined], "b1")
    bus.commit_batch("b1", [joined])
    with pytest.raises(DuplicateEventError, match="'joined' was joined already"):
        bus.put_decision(decision("joined"))  # one event id, one decision, one log row
    # Past the recovery time: "joined" is forgotten, while "taken" (its joiner died, say, and no one claimed
    # it yet) is still there with its acknowledged reward, however long past the window plus the recovery.
    time.sleep(WAIT + RECOVERY + 0.3)
    bus.put_decision(decision("joined"))
    assert ids(bus.take_new("a", 10)) == ["joined"]
    [closed] = bus.close([taken], "b2")
    assert closed.status is CloseStatus.READY and closed.rewards == (entry(0.5, 0.1),)


def test_adopting_a_batch_is_a_compare_and_set_on_its_stamp(bus):
    manifest = {"entries": [["1-0", "e1", 1000.25]], "owner": "a", "touched": 1000.0, "stamp": "s1", "files": None}
    bus.begin_batch("b1", manifest)
    stamp = bus.adopt_batch("b1", "s1", "b", 2000.5)
    assert isinstance(stamp, str) and stamp != "s1"
    adopted = {**manifest, "owner": "b", "touched": 2000.5, "stamp": stamp}
    assert bus.open_batches() == {"b1": adopted}
    assert bus.adopt_batch("b1", "s1", "c", 3000.0) is None  # someone else adopted it first
    assert bus.open_batches() == {"b1": adopted}
    again = bus.adopt_batch("b1", stamp, "c", 3000.0)
    assert again is not None and again != stamp
    assert bus.open_batches()["b1"]["owner"] == "c"
    assert bus.adopt_batch("missing", "s1", "c", 3000.0) is None
    bus.commit_batch("b1", [])
    assert bus.adopt_batch("b1", again, "d", 4000.0) is None  # gone


# ----- a Redis backend out of reach -----------------------------------------------------------------------
def test_an_unreachable_redis_bus_raises_bus_unavailable_with_the_password_redacted():
    bus = open_bus(bus_config(backend="redis", redis_url=f"redis://:secret@127.0.0.1:{free_port()}/0",
                              timeout_ms=200))  # fmt: skip
    try:
        calls = {
            "ping": bus.ping,
            "put_decision": lambda: bus.put_decision(decision("e1")),
            "add_reward": lambda: bus.add_reward(reward("e1", 1.0, 0.1)),
            "activate": lambda: bus.activate("e1", now=at(0.1).timestamp()),
            "take_new": lambda: bus.take_new("a", 10),
            "open_batches": bus.open_batches,
        }
        for name, call in calls.items():
            with pytest.raises(BusUnavailable) as raised:
                call()
            assert "***" in str(raised.value) and "secret" not in str(raised.value), name
    finally:
        bus.close_connections()


def test_serving_calls_on_a_stalled_redis_give_up_within_their_budget_and_recover():
    server = RedisServer().start()
    bus = open_bus(bus_config(backend="redis", redis_url=server.url, timeout_ms=200))
    admin = redis.Redis.from_url(server.url)
    try:
        bus.ping()
        paused_at = time.monotonic()
        admin.execute_command("CLIENT", "PAUSE", 1500)  # every client's commands wait 1.5 s
        calls = {
            "put_decision": lambda: bus.put_decision(decision("e1")),
            "add_reward": lambda: bus.add_reward(reward("e1", 1.0, 0.1)),
            "activate": lambda: bus.activate("e1", now=at(0.1).timestamp()),
            "ping": bus.ping,
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(BusUnavailable):
                call()
            assert time.monotonic() - started < 0.6, name  # the 200 ms budget, not the 1.5 s pause
        time.sleep(max(0.0, paused_at + 1.6 - time.monotonic()))
        bus.put_decision(decision("e1"))  # Redis answers again: so does the bus
        assert bus.add_reward(reward("e1", 1.0, 0.1)) is RewardOutcome.ACCEPTED
    finally:
        admin.close()
        bus.close_connections()
        server.stop()


# ----- early close (bus.py, "Early close") --------------------------------------------------------------
@pytest.mark.parametrize("aggregation", ["sum", "last"])
def test_without_a_completion_rule_no_decision_is_ever_complete(bus, aggregation):
    assert bus.completion is None
    bus.put_decision(decision("e1"))
    bus.add_reward(reward("e1", 1.0, 0.1))
    assert bus.complete(bus.take_new("a", 10)) == set()


@pytest.mark.parametrize("aggregation", ["first"])
def test_under_first_a_decision_is_complete_once_every_slot_has_a_reward(bus, aggregation):
    bus.put_decision(decision("two", slots=2))
    bus.put_decision(decision("silent"))
    pending = bus.take_new("a", 10)
    assert bus.complete(pending) == set()
    assert bus.add_reward(reward("two", 0.0, 0.1, slot=1)) is RewardOutcome.ACCEPTED
    assert bus.add_reward(reward("two", 0.5, 0.12, slot=1)) is RewardOutcome.ACCEPTED
    assert bus.complete(pending) == set()  # slot 0 has no reward yet
    assert bus.add_reward(reward("two", -1.0, 0.15)) is RewardOutcome.ACCEPTED
    assert bus.complete(pending) == {pending[0].entry_id}
    # Closed early: later rewards within the window are accepted and dropped (they cannot change the join) ...
    closed = bus.close(pending[:1], "b1")
    assert closed[0].rewards == (entry(0.0, 0.1, 1), entry(0.5, 0.12, 1), entry(-1.0, 0.15))
    assert bus.add_reward(reward("two", 1.0, 0.2)) is RewardOutcome.ACCEPTED
    assert bus.close(pending[:1], "b1")[0].rewards == closed[0].rewards
    bus.commit_batch("b1", pending[:1])
    assert bus.add_reward(reward("two", 1.0, 0.25, slot=1)) is RewardOutcome.ACCEPTED
    # ... and refused after the window's end, as for any decision.
    assert bus.add_reward(reward("two", 1.0, WAIT + 0.05)) is RewardOutcome.UNKNOWN
    assert bus.add_reward(reward("silent", 1.0, WAIT + 0.05)) is RewardOutcome.UNKNOWN


@pytest.mark.parametrize("aggregation", ["first"])
def test_a_deferred_decision_is_complete_only_once_activated(bus, aggregation):
    bus.put_decision(decision("later", deferred=True))
    pending = bus.take_new("a", 10)
    bus.add_reward(reward("later", 1.0, 0.1))
    assert bus.complete(pending) == set()
    assert bus.activate("later", now=at(0.15).timestamp())
    assert bus.complete(pending) == {pending[0].entry_id}


@pytest.mark.parametrize("aggregation", ["max"])
def test_under_max_a_slot_is_settled_only_by_a_reward_at_the_top_of_the_range(bus, aggregation):
    bus.put_decision(decision("e1"))
    pending = bus.take_new("a", 10)
    bus.add_reward(reward("e1", 0.99, 0.1))
    assert bus.complete(pending) == set()
    bus.add_reward(reward("e1", 1.0, 0.15))  # the default reward_range's top
    assert bus.complete(pending) == {pending[0].entry_id}

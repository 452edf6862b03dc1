"""The sharded Redis bus on a real 3-node Redis Cluster and a real redis-server: decisions spread over the
shards and the nodes, every reward finds its decision, two joiners join each event exactly once, a reward
for a decision the worker still holds is stored, and a change of ``bus.shards`` never strands a pending event.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from recommender.events.bus import BusUnavailable, RewardOutcome
from recommender.events.joiner import Joiner
from recommender.events.log import read_events
from recommender.events.redis_bus import RedisEventBus
from recommender.events.redis_bus_layout import ShardLayoutError
from recommender.events.redis_bus_shards import shard_of, shard_tags
from recommender.records import Decision, Reward
from recommender.service.breaker import FAILURES_TO_OPEN, CircuitBreaker
from recommender.service.publisher import DecisionPublisher
from recommender.settings.events import JoinConfig
from tests.redis_harness import free_port

WAIT = 0.3
SETTINGS = JoinConfig(reward_wait_time=WAIT, recovery_seconds=5, flush_seconds=0.05)


def decision(event_id: str) -> Decision:
    return Decision(
        event_id=event_id, timestamp=datetime.now(UTC), user_id="u", user_features={}, context={"device": "web"},
        candidate_ids=("a", "b"), candidate_features=({"price": 1.0}, {"price": 2.0}), pmfs=((0.75, 0.25),),
        chosen=(0,), ranking=(0, 1), model_version="m", exploration={"epsilon": 0.5},
    )  # fmt: skip


@pytest.fixture
def open_bus(unique_prefix) -> Iterator:
    """``open_bus(url, shards, cluster)``: a bus on this test's prefix; each one stands for one process."""
    opened: list[RedisEventBus] = []

    def make(url: str, shards: int, cluster: bool = False) -> RedisEventBus:
        bus = RedisEventBus(url, wait_seconds=WAIT, recovery_seconds=SETTINGS.recovery_seconds,
                            key_prefix=unique_prefix, shards=shards, cluster=cluster, timeout_ms=5000)  # fmt: skip
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        bus.close_connections()


def joined(log_dir: Path) -> Counter:
    """How many log rows each event id has."""
    return Counter(event.decision.event_id for event in read_events(log_dir)) if any(log_dir.rglob("*.parquet")) \
        else Counter()  # fmt: skip


def test_six_shards_spread_over_the_three_nodes_and_two_joiners_join_every_reward_once(
    redis_cluster, open_bus, unique_prefix, tmp_path
):
    seed = redis_cluster[0].url  # any node: the cluster client finds each shard's node
    serving, other_host = open_bus(seed, 6, cluster=True), open_bus(seed, 6, cluster=True)
    # Two joiners, each reading every shard's stream through the consumer group, taking turns as decisions come.
    joiners = [Joiner(open_bus(seed, 6, cluster=True), tmp_path, lambda: SETTINGS, consumer=name)
               for name in ("a", "b")]  # fmt: skip
    for bus in (serving, other_host, *(joiner.bus for joiner in joiners)):
        bus.ping()  # connected (the cluster's slot map read) before the first decision's short window starts
    # Fixed ids, so the spread is the same every run (27, 30, 17, 9, 16, 21 over the six shards); the keys are
    # still this test's own through the prefix.
    ids = [f"e{i}-sharded" for i in range(120)]
    written = Counter()
    # Every reward comes through another process than its decision's, and finds it from the event id alone.
    for i, event_id in enumerate(ids):
        (serving if i % 2 else other_host).put_decision(decision(event_id))
        reward = Reward(event_id, 0.25 + (i % 3) / 4, datetime.now(UTC), reward_id=f"r{i}")
        assert (other_host if i % 2 else serving).add_reward(reward) is RewardOutcome.ACCEPTED
        if i % 30 == 29:
            joiner = joiners[i // 30 % 2]
            written[joiner.consumer] += joiner.run_once()  # takes what is new; joins once the windows close

    # Spread: every shard holds decisions, and the shards are on all three nodes (two on each).
    tags = shard_tags(unique_prefix, 6)
    per_shard = Counter(tags[shard_of(event_id, 6)] for event_id in ids)
    assert set(per_shard) == set(tags) and min(per_shard.values()) >= 8
    cluster = RedisCluster.from_url(seed)
    try:
        nodes = Counter(cluster.get_node_from_key(tag).name for tag in tags)
    finally:
        cluster.close()
    assert sorted(nodes.values()) == [2, 2, 2]
    for server in redis_cluster:  # the events really are on each node, under that node's tags: pending (d), or
        node = redis.Redis.from_url(server.url)  # joined already by a joiner's turn (x, kept for the recovery time)
        on_node = {key.split(b":")[-1] for key in node.scan_iter(match=f"{{{unique_prefix}:6.*}}:[dx]:*")}
        node.close()
        assert len(on_node) >= 16 and on_node <= {event_id.encode() for event_id in ids}

    time.sleep(WAIT + 0.05)
    deadline = time.monotonic() + 20
    while sum(written.values()) < len(ids) and time.monotonic() < deadline:
        for joiner in joiners:
            written[joiner.consumer] += joiner.run_once(flush=True)
    counts = joined(tmp_path)
    assert counts == Counter({event_id: 1 for event_id in ids})  # every event, exactly once
    assert written["a"] > 0 and written["b"] > 0  # both joiners did part of the work
    events = {event.decision.event_id: event for event in read_events(tmp_path)}
    assert all(events[event_id].rewards == (0.25 + (i % 3) / 4,) for i, event_id in enumerate(ids))
    assert serving.pending_count() == 0 and serving.open_batches() == {}
    # Joined: a retried reward is still the no-op it was, on whichever process and shard.
    assert other_host.add_reward(Reward(ids[1], 1.0, datetime.now(UTC), reward_id="r1")) is RewardOutcome.DUPLICATE


def test_a_reward_for_a_decision_the_worker_still_holds_is_stored_on_the_decisions_shard(redis_cluster, open_bus,
                                                                                          tmp_path):  # fmt: skip
    # What the reward route does (recommender.service.rewards.store_reward): a reward the bus does not know yet
    # makes the worker write out the decision it holds, then the reward is stored. Per shard: one decision on
    # each of the six.
    bus = open_bus(redis_cluster[0].url, 6, cluster=True)
    breaker = CircuitBreaker("bus", retry_seconds=60.0)
    for _ in range(FAILURES_TO_OPEN):
        breaker.failure("Redis away")  # open: decisions are held by the worker
    publisher = DecisionPublisher(bus, breaker, buffer_size=100)
    ids: dict[int, str] = {}
    while len(ids) < 6:
        event_id = f"h-{uuid.uuid4().hex[:8]}"
        ids.setdefault(shard_of(event_id, 6), event_id)
    for event_id in ids.values():
        assert publisher.publish(decision(event_id)) is False  # held, not on the bus
    assert publisher.buffered == 6
    for event_id in ids.values():
        reward = Reward(event_id, 1.0, datetime.now(UTC))
        assert bus.add_reward(reward) is RewardOutcome.UNKNOWN  # the bus has not seen it yet...
        assert publisher.write_held(event_id) is True  # ...so the worker writes it out first
        assert bus.add_reward(reward) is RewardOutcome.ACCEPTED
    assert publisher.buffered == 0
    time.sleep(WAIT + 0.05)
    joiner = Joiner(bus, tmp_path, lambda: SETTINGS, consumer="a")
    joiner.run_once(flush=True)
    events = {event.decision.event_id: event for event in read_events(tmp_path)}
    assert set(events) == set(ids.values()) and all(event.rewards == (1.0,) for event in events.values())


def test_a_new_shard_count_waits_for_the_pending_events_of_the_old_then_takes_over(
    redis_server, open_bus, unique_prefix, tmp_path
):
    old = open_bus(redis_server.url, 1)
    pending = [f"old-{i}" for i in range(5)]
    for event_id in pending:
        old.put_decision(decision(event_id))
    old.add_reward(Reward(pending[0], 1.0, datetime.now(UTC)))  # acknowledged under the old count

    new = open_bus(redis_server.url, 3)
    with pytest.raises(ShardLayoutError, match="bus.shards is 3 but the event bus at this prefix runs 1"):
        new.put_decision(decision("new-0"))  # refused (held by its worker) while the old layout has work
    assert new.shards == 1
    # Meanwhile the new process works on the layout in force: rewards reach the old decisions, its joiner
    # joins them.
    assert new.add_reward(Reward(pending[1], 0.5, datetime.now(UTC))) is RewardOutcome.ACCEPTED
    time.sleep(WAIT + 0.05)
    joiner = Joiner(open_bus(redis_server.url, 3), tmp_path, lambda: SETTINGS, consumer="new-joiner")
    joiner.run_once(flush=True)
    assert joined(tmp_path) == Counter(pending)
    events = {event.decision.event_id: event for event in read_events(tmp_path)}
    assert events[pending[0]].rewards == (1.0,) and events[pending[1]].rewards == (0.5,)

    time.sleep(1.1)  # the next switch attempt (redis_bus_layout.SWITCH_CHECK_SECONDS): drained, so it switches
    new.put_decision(decision("new-0"))
    assert new.shards == 3
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.get(f"{{{unique_prefix}}}:shards") == b"3" and raw.exists(f"{{{unique_prefix}}}:retired")
    raw.close()
    # The old process has not read the record since: its put meets the retired shard, it reads the record and
    # is refused in turn, never writing where no joiner looks; its rewards go to the new layout.
    with pytest.raises(ShardLayoutError, match="bus.shards is 1 but the event bus at this prefix runs 3"):
        old.put_decision(decision("old-late"))
    assert old.add_reward(Reward("new-0", 1.0, datetime.now(UTC))) is RewardOutcome.ACCEPTED
    assert old.add_reward(Reward("old-late", 1.0, datetime.now(UTC))) is RewardOutcome.UNKNOWN  # never put
    time.sleep(WAIT + 0.05)
    joiner.run_once(flush=True)
    assert joined(tmp_path) == Counter([*pending, "new-0"])


def test_a_bus_never_used_takes_its_shard_count_at_once(redis_server, open_bus, unique_prefix):
    bus = open_bus(redis_server.url, 4)
    bus.put_decision(decision("first"))  # nothing pending under the (absent) record: switched on the spot
    assert bus.shards == 4
    assert bus.add_reward(Reward("first", 1.0, datetime.now(UTC) + timedelta(milliseconds=1))) is RewardOutcome.ACCEPTED
    assert [p.event_id for p in bus.take_new("a", 10)] == ["first"]
    assert open_bus(redis_server.url, 4).shards == 4  # another process follows the record


def test_shard_tags_are_stable_and_spread_over_equal_bands_of_slots():
    assert shard_tags("rb", 1) == ("{rb}",)  # one shard: the keys of buses older than shards
    tags = shard_tags("rb", 6)
    assert tags == shard_tags("rb", 6) and len(set(tags)) == 6
    assert all(tag.startswith("{rb:6.") for tag in tags)
    assert [redis.crc.key_slot(tag.encode()) * 6 // 16384 for tag in tags] == list(range(6))
    assert [shard_of(f"e{i}", 6) for i in range(6)] == [shard_of(f"e{i}", 6) for i in range(6)]
    assert shard_of("anything", 1) == 0


def test_an_unreachable_cluster_bus_raises_bus_unavailable_with_the_password_redacted():
    bus = RedisEventBus(f"redis://:secret@127.0.0.1:{free_port()}/0", wait_seconds=WAIT, recovery_seconds=5,
                        shards=6, cluster=True, timeout_ms=200)  # fmt: skip
    try:
        for call in (bus.ping, lambda: bus.put_decision(decision("e1")), lambda: bus.take_new("a", 10)):
            with pytest.raises(BusUnavailable) as raised:
                call()
            assert "***" in str(raised.value) and "secret" not in str(raised.value)
    finally:
        bus.close_connections()



def test_a_shard_moved_to_another_node_is_followed_within_the_call(redis_cluster, open_bus, unique_prefix, tmp_path):
    # Resharding moves a slot while workers hold the old slot map: the old node answers MOVED, and the bus reads
    # the map again and runs the command there, so the decision, its reward and the join see no error.
    bus = open_bus(redis_cluster[0].url, 6, cluster=True)
    # The bus takes its shard count at its first decision (on shard 1), and every shard's node is looked up
    # (and remembered) while the slots are where the cluster put them.
    bus.put_decision(decision(next(f"first-{i}" for i in range(1000) if shard_of(f"first-{i}", 6) == 1)))
    bus.ping()
    tag = shard_tags(unique_prefix, 6)[0]
    slot = redis.crc.key_slot(tag.encode())
    cluster = RedisCluster.from_url(redis_cluster[0].url)
    try:
        port = cluster.get_node_from_key(tag).port
    finally:
        cluster.close()
    nodes = [redis.Redis.from_url(server.url) for server in redis_cluster]
    try:
        owner = next(i for i, server in enumerate(redis_cluster) if server.port == port)
        target = (owner + 1) % len(nodes)
        assert nodes[owner].execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0  # nothing to migrate
        move_slot(nodes, slot, owner, target)
        event_id = next(f"moved-{i}" for i in range(1000) if shard_of(f"moved-{i}", 6) == 0)
        bus.put_decision(decision(event_id))  # the remembered node answers MOVED: followed, not an error
        assert nodes[target].exists(f"{tag}:d:{event_id}")  # on the node that holds the slot now
        assert bus.add_reward(Reward(event_id, 1.0, datetime.now(UTC))) is RewardOutcome.ACCEPTED
        time.sleep(WAIT + 0.05)
        Joiner(bus, tmp_path, lambda: SETTINGS, consumer="a").run_once(flush=True)
        assert {event.decision.event_id: event.rewards for event in read_events(tmp_path)}[event_id] == (1.0,)
    finally:  # the cluster as it was, for the other tests: the slot emptied and given back
        for key in nodes[target].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000):
            nodes[target].delete(key)
        move_slot(nodes, slot, target, owner)
        for node in nodes:
            node.close()


def move_slot(nodes: list[redis.Redis], slot: int, source: int, target: int) -> None:
    """Give the empty ``slot`` of node ``source`` to node ``target``, as resharding does (the target importing,
    the source migrating, then every node told; the target's claim wins with a new config epoch)."""
    source_id, target_id = (nodes[i].execute_command("CLUSTER", "MYID") for i in (source, target))
    nodes[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    nodes[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    for i in (target, source, *(i for i in range(len(nodes)) if i not in (source, target))):
        nodes[i].execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

"""Feature importance of Personalizer's JSON namespaces: a DSJSON log where one context namespace carries the
reward signal and another none; keys the log does not have are refused by name."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.events.log import write_events
from recommender.records import Decision, JoinedEvent
from recommender.settings.policy import PolicyConfig
from simulators.dsjson_export import export_dsjson
from simulators.errors import BanditDataError, TargetSpecError
from simulators.feature_importance import candidate_keys, rank_feature_importance
from simulators.optimize import OptimizeConfig
from simulators.readers import read_log
from simulators.replay import make_setting
from simulators.replay_log import ReplayLog

ITEMS = tuple(f"item-{j}" for j in range(6))
CATEGORY = {item: "abc"[j % 3] for j, item in enumerate(ITEMS)}
SEGMENTS = ("s0", "s1", "s2")
FAVOURITE = {"s0": "a", "s1": "b", "s2": "c"}  # the category each segment clicks most: the signal is in "user"
DEVICES = ("mobile", "desktop", "tablet")  # drawn independently of everything: "device" carries no signal
N_DECISIONS = 3000
SETTING = make_setting(PolicyConfig(interactions=(("user", "item"),)), "exploration.algorithm=epsilon_greedy,"
                       "exploration.epsilon=0.1", label="configured")  # fmt: skip
JSON_KEYS = ["context.user", "context.device", "action.product"]


def _events(n: int, seed: int) -> list[JoinedEvent]:
    """A uniform logger over ``ITEMS`` whose context and actions carry Personalizer's JSON namespaces."""
    rng = random.Random(seed)
    start = datetime(2025, 3, 1, tzinfo=UTC)
    rows = tuple({" ": {"product": {"category": CATEGORY[item], "price": 10.0 + j}}} for j, item in enumerate(ITEMS))
    pmf = tuple(1.0 / len(ITEMS) for _ in ITEMS)
    events = []
    for i in range(n):
        segment, device = rng.choice(SEGMENTS), rng.choice(DEVICES)
        chosen = rng.randrange(len(ITEMS))
        clicked = rng.random() < (0.75 if CATEGORY[ITEMS[chosen]] == FAVOURITE[segment] else 0.15)
        user = {"segment": segment, "geo": {"region": rng.choice("nsew")}, "history": {"visits": rng.randint(1, 9)}}
        context = {" ": {"user": user, "device": {"type": device}}}
        ts = start + timedelta(seconds=i)
        decision = Decision(
            event_id=f"ev-{i:05d}",
            timestamp=ts,
            user_id=None,
            user_features={},
            context=context,
            candidate_ids=ITEMS,
            candidate_features=rows,
            pmfs=(pmf,),
            chosen=(chosen,),
            ranking=(chosen, *[j for j in range(len(ITEMS)) if j != chosen]),
            model_version="personalizer",
        )
        events.append(JoinedEvent(decision, (1.0 if clicked else 0.0,), (False,), ts + timedelta(seconds=1)))
    return events


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the event log, its DSJSON export written by the project's exporter)."""
    root = tmp_path_factory.mktemp("json-importance")
    write_events(_events(N_DECISIONS, seed=4), root / "events")
    export_dsjson(root / "events", root / "personalizer.json")
    return root / "events", root / "personalizer.json"


def _groups() -> dict[str, FeatureGroup]:
    none = {"none": FeatureSpec(type=FeatureType.NUMERIC)}
    return {
        "user_group": FeatureGroup(entity="user", key="user_id", features=none),
        "item_group": FeatureGroup(entity="item", key="item_id", features=none),
    }


def test_the_signal_namespace_ranks_first_and_the_noise_namespace_covers_zero(logs, tmp_path):
    bandit = read_log(logs[1]).bandit
    replay_log = ReplayLog.build(bandit, tmp_path / "log")
    assert set(replay_log.json_keys) >= {*JSON_KEYS, "context.user.geo", "context.user.history"}
    # Default keys: the JSON namespaces, and the groups of "user" (it has two): named as in the JSON.
    assert [k for k in candidate_keys(replay_log) if "." in k and not k.startswith(("user.", "item."))] == [
        "context.device", "context.user", "action.product", "context.user.geo", "context.user.history",
    ]  # fmt: skip
    rows = rank_feature_importance(replay_log, bandit, SETTING, OptimizeConfig(), tmp_path, keys=JSON_KEYS)
    by_key = {row.left_out: row for row in rows}
    assert rows[0].left_out == "context.user" and rows[0].drop.low > 0.05, rows
    device = by_key["context.device"].drop
    assert device.low <= 0.0 <= device.high, device
    assert by_key["context.user"].drop.m == len(JSON_KEYS)  # Bonferroni over the keys tried


def test_leaving_a_namespace_out_removes_it_from_the_written_examples(logs, tmp_path):
    # our event log: its raw decisions, the JSON namespaces as VW namespaces (the first rows suffice)
    bandit = read_log(logs[0]).bandit.subset(np.arange(600))
    full = ReplayLog.build(bandit, tmp_path / "full", **_groups())
    exported = ReplayLog.build(read_log(logs[1]).bandit, tmp_path / "dsjson")
    assert full.json_keys == exported.json_keys  # the same keys from the log and from its DSJSON export
    without = ReplayLog.build(bandit, tmp_path / "without", leave_out=("context.device",), **_groups())
    text, reduced = full.path.read_text(), without.path.read_text()
    assert "|device typemobile" in text and "|device" not in reduced
    assert reduced.count("|user segments") == text.count("|user segments") > 0  # the rest is untouched
    group = ReplayLog.build(bandit, tmp_path / "group", leave_out=("context.user.geo",), **_groups())
    assert "|geo" in text and "|geo" not in group.path.read_text() and "|user segments" in group.path.read_text()


def test_a_key_the_log_does_not_have_is_refused_by_name(logs, tmp_path):
    bandit = read_log(logs[1]).bandit
    replay_log = ReplayLog.build(bandit, tmp_path / "log")
    with pytest.raises(TargetSpecError, match=r"'context\.weather'.*no such key.*context\.user"):
        rank_feature_importance(replay_log, bandit, SETTING, OptimizeConfig(), tmp_path, keys=["context.weather"])
    with pytest.raises(BanditDataError, match=r"'action\.colour'.*no such key"):
        ReplayLog.build(bandit, tmp_path / "bad", leave_out=("action.colour",))
    events = read_log(logs[0]).bandit.subset(np.arange(100))
    with pytest.raises(BanditDataError, match=r"'context\.weather'.*no such key"):
        ReplayLog.build(events, tmp_path / "bad-events", leave_out=("context.weather",), **_groups())

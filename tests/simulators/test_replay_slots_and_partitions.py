"""A converted log in partition files replays exactly as one file; tasks carry paths; multi-slot logs are
replayed slot by slot, each over the candidates and propensities the log records for it."""

from __future__ import annotations

import json
import pickle
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import yaml

from recommender.cli.main import main
from recommender.events.log import write_events
from recommender.records import Decision, JoinedEvent
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_document, parse_config
from recommender.settings.policy import PolicyConfig
from simulators.data import LoggedBandit
from simulators.errors import BanditDataError, TargetSpecError
from simulators.log_optimization import optimize_log
from simulators.optimize import OptimizeConfig, run_sweep, settings_from
from simulators.readers import read_log
from simulators.replay import as_action_dist, make_setting, replay_probs
from simulators.replay_log import ReplayLog
from simulators.replay_tasks import RowEvaluator, SettingJob, setting_task
from simulators.synthetic import SyntheticEnvironment, UniformPolicy
from tests.simulators.log_files import write_obd

BASE = PolicyConfig(interactions=(("user", "item"),))
IPW = OptimizeConfig(estimators=("ipw",), primary="ipw", time_bins=1)


def _app(tmp_path, dim: int = 5):
    document = load_document(DEFAULT_CONFIG_PATH)
    vector = {"embedding": {"type": "vector", "dim": dim}}
    document["features"]["groups"] = {
        "users": {"entity": "user", "key": "user_id", "features": vector},
        "items": {"entity": "item", "key": "item_id", "features": vector},
    }
    document["policy"]["interactions"] = [["user", "item"]]
    document["policy"]["exploration"] = {"algorithm": "epsilon_greedy", "epsilon": 0.1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, parse_config(document)


def test_partition_files_replay_exactly_as_one_file(tmp_path):
    env = SyntheticEnvironment(n_users=40, n_items=6, seed=3)
    log = env.generate_log(UniformPolicy(), 900, seed=1).bandit
    whole = ReplayLog.build(log, tmp_path / "whole")
    parts = ReplayLog.build(log, tmp_path / "parts", rows_per_partition=250)
    assert len(whole.paths) == 1 and len(parts.paths) == 4
    assert [p.read_text().count("\n\n") for p in parts.paths] == [250, 250, 250, 150]  # time order, in turn
    assert "".join(p.read_text() for p in parts.paths) == whole.path.read_text()
    with pytest.raises(BanditDataError, match="4 partition files"):
        parts.path  # noqa: B018 - the property refuses a partitioned log
    for overrides in ("default", "exploration.algorithm=bagging,exploration.bags=3", "exploration.algorithm=squarecb"):
        args = make_setting(BASE, overrides).vw_args()
        # the learner's state carries across partitions: the same pmfs, to the last digit
        one_file = replay_probs(whole.paths, whole.counts, args)
        assert np.array_equal(one_file, replay_probs(parts.paths, parts.counts, args))
    settings = settings_from(make_setting(BASE, {}), [make_setting(BASE, "exploration.epsilon=0.3")], [])
    config = OptimizeConfig(estimators=("ipw", "snipw", "dr"))
    assert run_sweep(whole, settings, config).to_dict() == run_sweep(parts, settings, config).to_dict()


def test_a_setting_task_carries_paths_and_returns_its_result_not_the_pmfs(tmp_path):
    env = SyntheticEnvironment(n_users=40, n_items=10, seed=3)
    log = env.generate_log(UniformPolicy(), 4000, seed=1).bandit
    converted = ReplayLog.build(log, tmp_path / "log", rows_per_partition=1000)
    evaluator = RowEvaluator.build(converted, OptimizeConfig())
    setting = make_setting(BASE, "exploration.epsilon=0.2")
    job = SettingJob(str(evaluator.save(tmp_path)), "listed", setting)
    pmfs_size = log.n_rounds * log.n_actions * 8
    assert len(pickle.dumps(job)) < 5_000 < pmfs_size  # paths and the setting: no rows
    result = setting_task(job)
    assert len(pickle.dumps(result)) < pmfs_size / 10
    # the same numbers as evaluating the pmfs in this process
    probs = replay_probs(converted.paths, converted.counts, setting.vw_args())
    local = evaluator.result(setting.label, "listed", as_action_dist(converted, probs, setting.label), setting)
    assert result.to_dict() == local.to_dict()


def test_a_refused_setting_over_partitions_leaves_no_writer_waiting(tmp_path):
    env = SyntheticEnvironment(n_users=20, n_items=4, seed=0)
    log = env.generate_log(UniformPolicy(), 300, seed=0).bandit
    parts = ReplayLog.build(log, tmp_path / "p", rows_per_partition=100)
    raised: list[BaseException] = []

    def replay() -> None:
        try:
            replay_probs(parts.paths, parts.counts, ["--cb_explore_adf", "--no_such_option"])
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            raised.append(exc)

    thread = threading.Thread(target=replay, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and len(raised) == 1 and isinstance(raised[0], TargetSpecError)


def test_every_position_of_a_multi_position_log_is_replayed_against_its_own_truth(tmp_path):
    env = SyntheticEnvironment(n_users=60, n_items=6, n_positions=3, seed=4)
    log = env.generate_log(UniformPolicy(), 1500, seed=4)
    _, app = _app(tmp_path)
    config = OptimizeConfig(estimators=("ipw",), primary="ipw", alpha=0.01)
    run = optimize_log(log.bandit, app_config=app, config=config, workdir=tmp_path)
    assert [r.position for r in run.slots] == [0, 1, 2] and not run.refused and run.result is run.slots[0]
    values = []
    for slot in run.slots:
        assert slot.n_rows == 1500
        rows = log.bandit.position == slot.position
        converted = ReplayLog.build(log.bandit, tmp_path / f"check-{slot.position}", position=slot.position)
        probs = replay_probs(converted.paths, converted.counts, slot.base.vw_args())
        exact = float(np.mean(np.sum(probs * env.click_prob[log.users[rows], :, slot.position], axis=1)))
        estimate = slot.policy("configured").evaluation.estimate("ipw")
        assert estimate.interval("normal").covers(exact), (slot.position, estimate.value, exact)
        values.append(exact)
    assert values[0] > values[1] > values[2]  # the position bias: the slots are told apart
    assert [p.name for p in optimize_log(log.bandit, app_config=app, config=config, position=2).slots[0].policies][
        :3
    ] == ["logged", "baseline", "uniform"]


def _two_slot_events(env: SyntheticEnvironment, n: int, rng: np.random.Generator) -> list[JoinedEvent]:
    """Two-slot ranks of a uniform logger: slot 0 over all items, slot 1 over the items left; slot 1's
    clicks at half the rate (position bias)."""
    k = env.n_items
    ids = tuple(f"item-{a:04d}" for a in range(k))
    items = tuple({"embedding": [float(v) for v in row]} for row in env.item_features)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events = []
    for i in range(n):
        u = int(rng.integers(env.n_users))
        first = int(rng.integers(k))
        rest = [j for j in range(k) if j != first]
        second = int(rng.choice(rest))
        pmf1 = tuple(0.0 if j == first else 1.0 / (k - 1) for j in range(k))
        p = env.click_prob[u, :, 0]
        rewards = (float(rng.random() < p[first]), float(rng.random() < 0.5 * p[second]))
        ts = start + timedelta(seconds=i)
        decision = Decision(
            event_id=f"two-{i:06d}",
            timestamp=ts,
            user_id=f"user-{u:05d}",
            user_features={"embedding": [float(v) for v in env.user_features[u]]},
            context={},
            candidate_ids=ids,
            candidate_features=items,
            pmfs=((1.0 / k,) * k, pmf1),
            chosen=(first, second),
            ranking=(first, second, *[j for j in rest if j != second]),
            model_version="synthetic",
        )
        events.append(JoinedEvent(decision, rewards, (False, False), ts + timedelta(seconds=1)))
    return events


def test_the_lower_slot_of_our_event_log_is_replayed_over_the_candidates_left(tmp_path):
    env = SyntheticEnvironment(n_users=60, n_items=6, seed=5)
    rng = np.random.default_rng(5)
    events = _two_slot_events(env, 1500, rng)
    write_events(events, tmp_path / "events")
    _, app = _app(tmp_path)
    config = OptimizeConfig(estimators=("ipw", "snipw"), primary="ipw", alpha=0.01)
    setting = "exploration.epsilon=0.3"
    run = optimize_log(tmp_path / "events", app_config=app, settings=[setting], config=config)
    assert [r.position for r in run.slots] == [0, 1] and not run.refused
    bandit = read_log(tmp_path / "events").bandit
    groups = {"user_group": app.user_group, "item_group": app.item_group}
    lower = ReplayLog.build(bandit, tmp_path / "slot-1", position=1, **groups)
    assert np.all(lower.counts == 5)  # the item shown above is not a candidate
    assert lower.path.read_text().split("\n\n")[0].count("\n") == 5  # shared line + 5 candidates
    pmfs = replay_probs(lower.paths, lower.counts, make_setting(app.policy, setting).vw_args())
    full = as_action_dist(lower, pmfs, setting).probs[:, :, 0]
    first = np.array([e.decision.chosen[0] for e in events])[lower.bandit.round_id]
    assert np.all(full[np.arange(lower.n_rows), first] == 0.0)  # never the item above
    users = np.array([int(e.decision.user_id.split("-")[1]) for e in events])[lower.bandit.round_id]
    exact = float(np.mean(np.sum(full * 0.5 * env.click_prob[users, :, 0], axis=1)))
    estimate = run.slots[1].policy(setting).evaluation.estimate("ipw")
    assert estimate.interval("normal").covers(exact), (estimate.value, exact)
    assert run.slots[1].policy(setting).value("ipw") < run.slots[0].policy(setting).value("ipw")


def _without_slot_1_candidates(log: LoggedBandit) -> LoggedBandit:
    """The log as a logger that recorded only the shown item (propensity 1) at slot 1 would have it."""
    lower = log.position == 1
    items = np.tile(np.arange(log.n_actions), (log.n_rounds, 1))
    items[lower] = -1
    items[lower, log.action[lower]] = log.action[lower]
    dist = np.array(log.logging_dist)
    dist[lower] = 0.0
    dist[lower, log.action[lower]] = 1.0
    pscore = np.where(lower, 1.0, log.pscore)
    return LoggedBandit(
        context=log.context, action=log.action, position=log.position, reward=log.reward, pscore=pscore,
        n_actions=log.n_actions, action_context=log.action_context, candidate_items=items,
        round_id=log.round_id, timestamp=log.timestamp, logging_dist=dist, item_ids=log.item_ids,
    )  # fmt: skip


def test_a_slot_the_log_records_no_choice_for_is_refused_with_the_reason(tmp_path, capsys):
    env = SyntheticEnvironment(n_users=30, n_items=5, n_positions=2, seed=2)
    log = _without_slot_1_candidates(env.generate_log(UniformPolicy(), 400, seed=2).bandit)
    _, app = _app(tmp_path)
    run = optimize_log(log, app_config=app, config=IPW)
    assert [r.position for r in run.slots] == [0]
    assert run.refused == ("slot 1: the log records one candidate per row at this slot: there is no choice to replay",)
    with pytest.raises(BanditDataError, match="slot 1: the log records one candidate per row"):
        optimize_log(log, app_config=app, config=IPW, position=1)


def test_cli_replays_every_obd_position_and_reports_per_slot(tmp_path, capsys):
    rows = [
        f"2019-11-24 00:{i // 60:02d}:{i % 60:02d},{(i // 3) % 3},{1 + i % 3},{int(i % 7 == 1)},0.3333,f{i % 2},0.1"
        for i in range(600)
    ]
    obd = write_obd(tmp_path / "obd", rows)
    argv = ["optimize", "--log", str(obd / "all.csv"), "--estimators", "ipw", "--primary", "ipw", "--quiet"]
    argv += ["--partition-rows", "64"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [slot["log"]["position"] for slot in document["slots"]] == [0, 1, 2]
    assert all(slot["log"]["rows"] == 200 for slot in document["slots"]) and document["refused_slots"] == []
    assert main([*argv, "--json", "--position", "1"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["log"]["position"] == 1 and one["policies"] == document["slots"][1]["policies"]
    assert main([*argv, "--report", str(tmp_path / "r.html")]) == 0
    table = capsys.readouterr().out
    assert "== slot 0 ==" in table and "== slot 2 ==" in table
    assert (tmp_path / "r.html").read_text().count("<h1>Slot ") == 3

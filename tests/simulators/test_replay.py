"""Replay of learning settings (counterfactual progressive validation), checked against truth.

In a synthetic world the exact value of a replayed setting is known: at row t the setting's learner
(trained on the logged rows before t) has distribution pi_t over the candidates, and the world's click
model gives its expected reward sum_a pi_t(a) p(u_t, a). The average over the log is the value of serving
the setting's successive policies on this event stream, which is what the replay estimates.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.policy.vw import VWModel, read_action_probs, run_driver
from recommender.settings.policy import PolicyConfig
from simulators.optimize import OptimizeConfig, RowEvaluator, run_sweep, settings_from
from simulators.readers import read_log
from simulators.replay import as_action_dist, make_setting, replay_probs
from simulators.replay_log import ReplayLog
from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment, UniformPolicy
from tests.simulators.log_files import cb_line, write_obd

BASE = PolicyConfig(interactions=(("user", "item"),))


def _converted(tmp_path, env, logging, n, seed):
    log = env.generate_log(logging, n, seed=seed)
    return log, ReplayLog.build(log.bandit, tmp_path / f"log-{seed}")


def _true_value(env, log, probs):
    """sum_a pi_t(a) p(u_t, a), averaged over rows: the exact value of the replayed policies."""
    return float(np.mean(np.sum(probs * env.click_prob[log.users, :, 0], axis=1)))


@pytest.mark.parametrize(
    "overrides",
    [
        "default",
        "exploration.algorithm=bagging,exploration.bags=3",
        "exploration.algorithm=squarecb",
        "exploration.algorithm=softmax,exploration.lambda=5",
        "exploration.algorithm=online_cover,exploration.policies=2",
        "exploration.epsilon=0.3,learning.learning_rate=0.05",
        "learning.cb_type=ips",
        "learning.cb_type=dr",
    ],
)
def test_driver_pmfs_equal_a_per_row_predict_then_learn_loop(tmp_path, overrides):
    env = SyntheticEnvironment(n_users=40, n_items=6, seed=3)
    _, replay_log = _converted(tmp_path, env, UniformPolicy(), 400, seed=1)
    setting = make_setting(BASE, overrides)
    run_driver(setting.vw_args(), replay_log.path, tmp_path / "predictions.txt")
    driver = read_action_probs(tmp_path / "predictions.txt", replay_log.counts, normalise=False)
    examples = [block.splitlines() for block in replay_log.path.read_text().split("\n\n") if block.strip()]
    assert len(examples) == replay_log.n_rows == driver.shape[0]
    model = VWModel(setting.vw_args())
    try:
        loop = np.zeros_like(driver)
        for i, lines in enumerate(examples):
            loop[i] = model.predict_text(lines)  # before learning from the row ...
            model.learn_text(lines)  # ... then learn from it
    finally:
        model.close()
    # VW writes -p probabilities to 6 decimal places (error <= 5e-7); otherwise the same computation.
    assert np.abs(driver - loop).max() < 1e-6
    normalised = replay_probs(replay_log.path, replay_log.counts, setting.vw_args())
    assert np.abs(normalised - loop / loop.sum(axis=1, keepdims=True)).max() < 1e-5
    assert not np.allclose(driver[0], driver[-1])  # it learned along the way


SETTINGS = (
    "exploration.epsilon=0.1",
    "exploration.epsilon=0.4,learning.learning_rate=0.05",
    "exploration.algorithm=squarecb,learning.learning_rate=1.0",
    "exploration.algorithm=bagging,exploration.bags=3,exploration.epsilon=0.05",
)


@pytest.mark.parametrize(
    ("logging", "estimator"),
    [(UniformPolicy(), "ipw"), (UniformPolicy(), "dr"), (EpsilonGreedyPolicy(epsilon=0.5), "ipw")],
    ids=["uniform-ipw", "uniform-dr", "epsilon-ipw"],
)
def test_replay_intervals_cover_the_exact_value_in_90_percent_of_seeds(tmp_path, logging, estimator):
    settings = [make_setting(BASE, s) for s in SETTINGS]
    config = OptimizeConfig(estimators=(estimator,), primary=estimator, time_bins=1)
    covered, total, errors = 0, 0, []
    for seed in range(15):
        env = SyntheticEnvironment(n_users=60, n_items=8, seed=100 + seed)
        log, replay_log = _converted(tmp_path, env, logging, 1200, seed=seed)
        evaluator = RowEvaluator.build(replay_log, config)  # what run_sweep evaluates every policy with
        for setting in settings:
            probs = replay_probs(replay_log.path, replay_log.counts, setting.vw_args())
            truth = _true_value(env, log, probs)
            estimate = evaluator.evaluate(as_action_dist(replay_log, probs, setting.label)).estimate(estimator)
            covered += estimate.interval("normal").covers(truth)
            total += 1
            errors.append(estimate.value - truth)
    assert covered / total >= 0.90, (covered, total)
    # and not by being uselessly wide: the errors are centred and small
    assert abs(np.mean(errors)) < 0.01 and np.std(errors) < 0.06


def test_the_settings_differ_live_so_the_coverage_test_means_something(tmp_path):
    env = SyntheticEnvironment(n_users=60, n_items=8, seed=100)
    log, replay_log = _converted(tmp_path, env, UniformPolicy(), 1200, seed=0)
    values = [
        _true_value(env, log, replay_probs(replay_log.path, replay_log.counts, make_setting(BASE, s).vw_args()))
        for s in SETTINGS
    ]
    assert max(values) - min(values) > 0.05, values


def test_replay_reads_dsjson_with_its_features(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for t in range(300):
        index = int(rng.integers(3))
        cost = -1.0 if rng.random() < (0.8 if index == 2 else 0.2) else 0.0
        lines.append(
            cb_line(
                index,
                [1 / 3, 1 / 3, 1 / 3],
                cost=cost,
                EventId=f"e{t}",
                Timestamp=f"2024-03-01T12:{t // 60:02d}:{t % 60:02d}Z",
            )
        )
    path = tmp_path / "log.json"
    path.write_text("\n".join(lines) + "\n")
    replay_log = ReplayLog.build(read_log(path).bandit, tmp_path / "log")
    text = replay_log.path.read_text()
    assert "|User" in text and "|Item" in text and "id=item2" in text  # the features of the lines
    result = run_sweep(
        replay_log, settings_from(make_setting(BASE, {}), [], []), OptimizeConfig(estimators=("ipw",), primary="ipw")
    )
    # item 2 is the best choice for everyone; a learner finds it
    assert result.policy("default").value("ipw") > 0.5


def test_replay_reads_the_obd_layout_with_its_features(tmp_path):
    rows = [
        f"2019-11-24 00:{i // 60:02d}:{i % 60:02d},{i % 3},1,{int(i % 3 == 1)},0.3333,f{i % 2},0.1" for i in range(200)
    ]
    bandit = read_log(write_obd(tmp_path / "obd", rows)).bandit
    replay_log = ReplayLog.build(bandit, tmp_path / "log")
    assert replay_log.n_rows == 200 and set(replay_log.namespaces) == {"user", "item"}
    assert "x[0]" in replay_log.path.read_text()  # item features of item_context.csv
    result = run_sweep(
        replay_log,
        settings_from(make_setting(BASE, {}), [], []),
        OptimizeConfig(estimators=("ipw", "snipw"), primary="snipw"),
    )
    assert json.loads(result.to_json())["policies"][3]["name"] == "default"

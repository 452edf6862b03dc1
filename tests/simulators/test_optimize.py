"""``optimize``: the sweep ranks and recommends against truth, feature importance, the command line, Dask."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from distributed import LocalCluster

from recommender.cli.main import main
from recommender.events.log import write_events
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config, load_document, parse_config
from recommender.settings.policy import PolicyConfig
from simulators.dask_backend import replay_map
from simulators.errors import TargetSpecError
from simulators.feature_importance import rank_feature_importance
from simulators.log_optimization import optimize_log
from simulators.optimize import MIN_REPLAY_ESS, OptimizeConfig, run_sweep, settings_from, write_atomically
from simulators.optimize_report import config_snippet
from simulators.readers import read_log
from simulators.replay import make_setting, replay_probs
from simulators.replay_log import ReplayLog
from simulators.search_space import load_search_space
from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment, UniformPolicy, to_joined_events

BASE = PolicyConfig(interactions=(("user", "item"),))
SEPARATED = ("exploration.epsilon=0.02", "exploration.epsilon=0.3", "exploration.epsilon=0.7")


def _true_value(env, log, probs):
    return float(np.mean(np.sum(probs * env.click_prob[log.users, :, 0], axis=1)))


def test_the_sweep_ranks_settings_in_their_live_order_and_recommends_the_best(tmp_path):
    env = SyntheticEnvironment(n_users=80, n_items=8, seed=7)
    log = env.generate_log(UniformPolicy(), 2500, seed=7)
    replay_log = ReplayLog.build(log.bandit, tmp_path / "log")
    settings = [make_setting(BASE, s) for s in SEPARATED]
    live = {
        s.label: _true_value(env, log, replay_probs(replay_log.path, replay_log.counts, s.vw_args())) for s in settings
    }
    assert min(np.diff(sorted(live.values()))) > 0.04  # clearly separated
    result = run_sweep(replay_log, settings_from(None, settings, []), OptimizeConfig())
    ranked = [p.name for p in result.settings]
    assert ranked == sorted(live, key=lambda name: -live[name])
    best = result.recommended
    assert best is not None and best.name == ranked[0] and best.difference.low > 0
    assert best.difference.m == len(settings) + 2 and best.difference.level == pytest.approx(1 - 0.05 / 5)


def test_nothing_is_recommended_over_a_near_optimal_logger(tmp_path):
    env = SyntheticEnvironment(n_users=80, n_items=8, seed=7)
    # the logger knows the click model exactly and exploits it 90% of the time
    log = env.generate_log(EpsilonGreedyPolicy(epsilon=0.1, noise=0.0), 2500, seed=7)
    replay_log = ReplayLog.build(log.bandit, tmp_path / "log")
    settings = [make_setting(BASE, s) for s in SEPARATED]
    result = run_sweep(replay_log, settings_from(None, settings, []), OptimizeConfig())
    assert result.recommended is None and "Nothing beat the logged policy" in result.recommendation.reason
    assert all(p.difference.low <= 0 for p in result.settings)  # refused by the intervals, not only the ESS
    assert "nothing to change" in config_snippet(result, BASE)


def test_on_a_world_where_no_setting_is_better_nothing_is_recommended_in_95_percent_of_seeds(tmp_path):
    settings = [make_setting(BASE, s) for s in (*SEPARATED, "exploration.algorithm=squarecb")]
    config = OptimizeConfig(estimators=("ipw",), primary="ipw", time_bins=1)
    recommended = 0
    seeds = 40
    for seed in range(seeds):
        # scale 0: every item has the same click probability, so every policy has the logged value
        env = SyntheticEnvironment(n_users=50, n_items=6, scale=0.0, seed=seed)
        log = env.generate_log(UniformPolicy(), 800, seed=seed)
        replay_log = ReplayLog.build(log.bandit, tmp_path / f"log-{seed}")
        result = run_sweep(replay_log, settings_from(None, settings, []), config)
        recommended += result.recommended is not None
        # enough effective rows that the decision rests on the intervals, not on the low-ESS refusal
        assert min(p.evaluation.diagnostics.ess for p in result.settings) >= MIN_REPLAY_ESS
    assert recommended <= 0.05 * seeds, recommended


def _events_with_a_noise_feature(env, log, rng):
    noise = rng.normal(size=(env.n_users, 4))
    events = []
    for event, user in zip(to_joined_events(env, log), log.users, strict=True):
        features = {"embedding": event.decision.user_features["embedding"], "noise": noise[user].tolist()}
        events.append(dataclasses.replace(event, decision=dataclasses.replace(event.decision, user_features=features)))
    return events


def _app_config(tmp_path, users: dict, items: dict):
    document = load_document(DEFAULT_CONFIG_PATH)
    document["features"]["groups"] = {
        "users": {"entity": "user", "key": "user_id", "features": users},
        "items": {"entity": "item", "key": "item_id", "features": items},
    }
    document["policy"]["interactions"] = [["user", "item"]]
    # The settings below override epsilon: an epsilon-greedy section to override, whatever the shipped one.
    document["policy"]["exploration"] = {"algorithm": "epsilon_greedy", "epsilon": 0.1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path, parse_config(document)


def test_feature_importance_ranks_the_signal_first_and_the_noise_covers_zero(tmp_path):
    env = SyntheticEnvironment(n_users=80, n_items=8, seed=11)
    log = env.generate_log(UniformPolicy(), 3000, seed=11)
    write_events(_events_with_a_noise_feature(env, log, np.random.default_rng(0)), tmp_path / "events")
    _, app = _app_config(
        tmp_path,
        {"embedding": {"type": "vector", "dim": 5}, "noise": {"type": "vector", "dim": 4}},
        {"embedding": {"type": "vector", "dim": 5}},
    )
    bandit = read_log(tmp_path / "events").bandit
    groups = {"user_group": app.features.groups["users"], "item_group": app.features.groups["items"]}
    replay_log = ReplayLog.build(bandit, tmp_path / "log", **groups)
    setting = make_setting(app.policy, {}, label="configured")
    rows = rank_feature_importance(replay_log, bandit, setting, OptimizeConfig(), tmp_path, **groups)
    by_key = {row.left_out: row for row in rows}
    assert set(by_key) == {"user", "item", "user.embedding", "user.noise"}
    noise = by_key["user.noise"].drop
    assert noise.low <= 0.0 <= noise.high
    assert rows[-1].left_out == "user.noise"
    assert rows[0].left_out in ("item", "user", "user.embedding") and rows[0].drop.low > 0
    assert by_key["user.embedding"].drop.low > 0 and by_key["user.embedding"].rank < by_key["user.noise"].rank
    assert [row.rank for row in rows] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def event_log(tmp_path_factory):
    """A uniform-logging event log of a synthetic world and a configuration whose groups fit it."""
    root = tmp_path_factory.mktemp("optimize")
    env = SyntheticEnvironment(n_users=60, n_items=6, seed=5)
    write_events(to_joined_events(env, env.generate_log(UniformPolicy(), 1500, seed=5)), root / "events")
    vector = {"embedding": {"type": "vector", "dim": 5}}
    config_path, _ = _app_config(root, vector, vector)
    return root / "events", config_path


def test_cli_optimize_writes_table_json_html_and_a_config_that_keeps_the_model(event_log, tmp_path, capsys):
    events, config = event_log
    outputs = {name: tmp_path / name for name in ("out.json", "report.html", "snippet.yaml")}
    code = main(
        [
            "--config",
            str(config),
            "optimize",
            "--log",
            str(events),
            "--no-configured",
            "--quiet",
            "--setting",
            "exploration.epsilon=0.05",
            "--search",
            "exploration.epsilon=0.6|0.9",
            "--importance",
            "--json-out",
            str(outputs["out.json"]),
            "--report",
            str(outputs["report.html"]),
            "--write-config",
            str(outputs["snippet.yaml"]),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "exploration.epsilon=0.05" in table and "beats the logged policy" in table
    document = json.loads(outputs["out.json"].read_text())
    assert document["recommendation"]["setting"] == "exploration.epsilon=0.05"
    assert [p["kind"] for p in document["policies"]][:3] == ["logged", "baseline", "uniform"]
    assert len(document["policies"]) == 6 and document["feature_importance"]
    html = outputs["report.html"].read_text()
    assert "Recommendation" in html and html.count("data:image/png;base64,") == 2
    snippet = outputs["snippet.yaml"].read_text()
    assert "KEEPS THE MODEL" in snippet
    applied = yaml.safe_load(snippet)["policy"]
    assert applied == {"exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.05}}
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_recommended_interactions_or_bits_change_needs_a_new_model(event_log, tmp_path):
    events, config = event_log
    app = load_config(config)
    run = optimize_log(events, app_config=app, include_configured=False, settings=["exploration.epsilon=0.05,bits=16"])
    snippet = config_snippet(run.result, app.policy)
    assert "NEEDS A NEW MODEL" in snippet and yaml.safe_load(snippet)["policy"]["bits"] == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--setting", "exploration.bogus=1"], "exploration.bogus"),
        (["--setting", "learning.learning_rate=-1"], "learning.learning_rate"),
        (["--search", "exploration.epsilon"], "KEY=V1|V2"),
        (["--primary", "sndr"], "primary estimator"),
        (["--since", "2030-01-01"], "no rows in the time range"),
    ],
)
def test_cli_optimize_bad_input_is_one_line_and_exit_2(event_log, capsys, argv, message):
    events, config = event_log
    assert main(["--config", str(config), "optimize", "--log", str(events), "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("recommender: error:")


def test_cli_optimize_on_an_empty_log_is_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["optimize", "--log", str(empty), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recommender: error:") and len(err.splitlines()) == 1


def test_an_interrupted_run_leaves_no_output_and_no_converted_log(event_log, tmp_path):
    events, config = event_log

    def interrupted(function, jobs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optimize_log(events, app_config=load_config(config), map_function=interrupted, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "out.json"
    target.write_text("old")
    write_atomically(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_replays_on_a_dask_cluster_equal_the_in_process_run(event_log):
    events, config = event_log
    app = load_config(config)
    kwargs = {
        "app_config": app,
        "settings": ["exploration.epsilon=0.05", "exploration.algorithm=squarecb"],
        "importance": True,
    }
    local = optimize_log(events, **kwargs).result.to_dict()
    with replay_map(workers=2) as cluster_map:
        distributed = optimize_log(events, map_function=cluster_map, **kwargs).result.to_dict()
    assert distributed == local


def test_a_search_space_file_expands_grids_samples_a_budget_and_skips_invalid_points(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mode": "grid",
                "space": [
                    {"exploration.epsilon": [0.01, 0.1], "learning.learning_rate": [0.1, 1.0]},
                    {
                        "exploration.algorithm": ["squarecb"],
                        "learning.cb_type": ["mtr", "ips"],  # squarecb takes mtr only: one point is skipped
                        "interactions": [[["user", "item"]], [["user", "item"], ["context", "item"]]],
                    },
                ],
            }
        )
    )
    settings, skipped = load_search_space(path).expand(BASE)
    assert len(settings) == 4 + 2 and len(skipped) == 2 and all("cb_type" in s for s in skipped)
    assert {s.config.exploration.algorithm for s in settings} == {"epsilon_greedy", "squarecb"}
    sampled, _ = load_search_space(path, budget=3, seed=1).expand(BASE)
    assert len(sampled) <= 3 and {s.label for s in sampled} <= {s.label for s in settings}
    assert load_search_space(path, budget=3, seed=1).points() == load_search_space(path, budget=3, seed=1).points()
    flags = load_search_space(None, ["exploration.epsilon=0.01|0.2", "bits=16|18"]).points()
    assert flags[0] == {"exploration.epsilon": 0.01, "bits": 16} and len(flags) == 4
    path.write_text("spaces: {}\n")
    with pytest.raises(TargetSpecError, match="unknown key 'spaces'"):
        load_search_space(path)


def test_cli_optimize_on_an_existing_dask_scheduler_prints_the_in_process_document(event_log, capsys):
    events, config = event_log
    argv = [
        "--config",
        str(config),
        "optimize",
        "--log",
        str(events),
        "--quiet",
        "--json",
        "--setting",
        "exploration.algorithm=squarecb",
    ]
    assert main(argv) == 0
    local = json.loads(capsys.readouterr().out)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert json.loads(capsys.readouterr().out) == local


def test_a_log_that_does_not_fit_the_configured_groups_is_replayed_with_groups_inferred_from_it(event_log):
    """`recommender simulate` writes 5-dimensional embeddings; configs/default.yaml declares 8."""
    events, fitting_config = event_log
    default = load_config(DEFAULT_CONFIG_PATH)
    settings = ["exploration.algorithm=epsilon_greedy,exploration.epsilon=0.05"]
    quick = OptimizeConfig(estimators=("ipw",), primary="ipw")
    inferred = optimize_log(events, app_config=default, settings=settings, include_configured=False, config=quick)
    fitting = optimize_log(events, app_config=load_config(fitting_config), settings=settings,
                           include_configured=False, config=quick)  # fmt: skip
    assert inferred.inferred_groups is not None and "expected a vector of 8 numbers, got 5" in inferred.inferred_groups
    assert fitting.inferred_groups is None
    # The inferred groups are the fitting config's (one 5-vector per side): the same replay, the same value.
    values = [run.result.settings[0].value("ipw") for run in (inferred, fitting)]
    assert values[0] == pytest.approx(values[1], abs=1e-12)

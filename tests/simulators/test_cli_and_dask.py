"""The ``recommender evaluate`` / ``simulate`` commands end to end, the HTML report, and the Dask backend."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from distributed import Client, LocalCluster

from recommender.cli.main import main
from simulators.dask_backend import evaluate_on_cluster, list_event_log_partitions
from simulators.data import LoggedBandit
from simulators.evaluate import EvaluationConfig, evaluate_partitioned, evaluate_policy
from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment
from simulators.targets import UniformTarget


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "events"
    assert main(["simulate", "--out", str(out), "--rounds", "4000", "--items", "6", "--seed", "3"]) == 0
    return out, json.loads((out / "_truth.json").read_text())


def test_simulate_then_evaluate_json_covers_the_truth(simulated, capsys):
    out, truth = simulated
    capsys.readouterr()
    code = main(
        [
            "evaluate",
            "--log",
            str(out),
            "--target",
            "uniform",
            "--target",
            "greedy",
            "--estimators",
            "ipw,snipw,dr",
            "--bootstrap",
            "100",
            "--json",
        ]
    )
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["log"]["n_rows"] == 4000 and document["read_report"]["rows_kept"] == 4000
    for evaluation in document["evaluations"]:
        exact = truth[evaluation["target"]]
        assert [e["estimator"] for e in evaluation["estimates"]] == ["ipw", "snipw", "dr"]
        for estimate in evaluation["estimates"]:
            bernstein = next(i for i in estimate["intervals"] if i["method"] == "bernstein")
            assert bernstein["low"] <= exact <= bernstein["high"], (evaluation["target"], estimate)
        assert evaluation["diagnostics"]["support_violations"] == 0
    # The logged policy's mean reward is an unbiased estimate of its exact value.
    low, high = document["log"]["mean_reward_interval"]["low"], document["log"]["mean_reward_interval"]["high"]
    assert low - 0.02 <= truth["logged"] <= high + 0.02


def test_evaluate_table_html_report_and_json_file(simulated, tmp_path, capsys):
    out, _ = simulated
    report, json_out = tmp_path / "report.html", tmp_path / "out.json"
    code = main(
        [
            "evaluate",
            "--log",
            str(out),
            "--target",
            "epsilon:0.1",
            "--estimators",
            "ipw,dm,dr-os:lambda=10",
            "--bootstrap",
            "0",
            "--report",
            str(report),
            "--json-out",
            str(json_out),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "epsilon:0.1" in table and "dr-os(lambda=10)" in table and "ESS" in table and "bootstrap" not in table
    assert json.loads(json_out.read_text())["settings"]["estimators"] == ["ipw", "dm", "dr-os(lambda=10)"]
    page = report.read_text()
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "<script" not in page and "http" not in page.split("<body>")[1]  # self-contained


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "uniform"], "does not exist"),
        (["--target", "bogus"], "unknown target 'bogus'"),
        (["--target", "uniform", "--estimators", "ipw,magic"], "unknown estimator 'magic'"),
        (["--target", "uniform", "--alpha", "2"], r"alpha must lie in \(0, 1\)"),
    ],
)
def test_evaluate_errors_are_one_line(simulated, tmp_path, capsys, argv, message):
    out, _ = simulated
    log = str(tmp_path / "missing") if message == "does not exist" else str(out)
    assert main(["evaluate", "--log", log, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recommender: error: ") and "\n" not in err and re.search(message, err)


def test_a_log_too_short_for_the_reward_models_folds_says_what_to_do(tmp_path, capsys):
    """Two decisions cannot be cross-fitted in 3 folds: DM/DR refuse with the way out; IPW alone evaluates."""
    out = tmp_path / "events"
    assert main(["simulate", "--out", str(out), "--rounds", "2", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--log", str(out), "--target", "uniform"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recommender: error: 2 rounds cannot be split into 3 folds") and "\n" not in err, err
    assert "--folds" in err and "ipw, snipw" in err, err
    assert main(["evaluate", "--log", str(out), "--target", "uniform", "--estimators", "ipw,snipw", "--json"]) == 0
    (evaluation,) = json.loads(capsys.readouterr().out)["evaluations"]
    assert [e["estimator"] for e in evaluation["estimates"]] == ["ipw", "snipw"]


def test_dask_local_cluster_matches_in_process(simulated):
    out, _ = simulated
    # The simulated event log's hour partitions on disk (4000 rounds, one a second: two hours), and
    # in-memory multi-position logs.
    env = SyntheticEnvironment(n_users=80, n_items=5, n_positions=2, seed=9)
    logs = [env.generate_log(EpsilonGreedyPolicy(epsilon=0.3), 800, seed=s).bandit for s in range(3)]
    config = EvaluationConfig(n_bootstrap=50, seed=4)
    paths = list_event_log_partitions(out)
    assert len(paths) >= 2
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        for partitions in (paths, logs):
            remote = evaluate_on_cluster(client, partitions, "uniform", ["ipw", "snipw", "dr"], config)
            local = evaluate_partitioned(partitions, "uniform", ["ipw", "snipw", "dr"], config)
            for a, b in zip(remote.estimates, local.estimates, strict=True):
                assert a.value == pytest.approx(b.value, rel=1e-12)
                for i, j in zip(a.intervals, b.intervals, strict=True):
                    assert (i.low, i.high) == pytest.approx((j.low, j.high), rel=1e-12)
            assert remote.diagnostics == local.diagnostics
    # Model-free estimators over partitions equal the whole log evaluated at once.
    whole = np.concatenate
    merged = LoggedBandit(
        context=whole([g.context for g in logs]),
        action=whole([g.action for g in logs]),
        position=whole([g.position for g in logs]),
        reward=whole([g.reward for g in logs]),
        pscore=whole([g.pscore for g in logs]),
        n_actions=5,
        round_id=whole([g.round_id + 10_000 * i for i, g in enumerate(logs)]),
    )
    at_once = evaluate_policy(merged, UniformTarget().apply(merged).dist, ["ipw", "snipw"], None, config)
    by_parts = evaluate_partitioned(logs, "uniform", ["ipw", "snipw"], config)
    for a, b in zip(at_once.estimates, by_parts.estimates, strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-12)
        assert a.interval("normal").low == pytest.approx(b.interval("normal").low, rel=1e-9)


def test_simulate_into_an_unwritable_place_is_one_line_and_exit_2(capsys):
    assert main(["simulate", "--out", "/proc/x", "--rounds", "10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("recommender: error: cannot write the log to /proc/x") and "\n" not in err

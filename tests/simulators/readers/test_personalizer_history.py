"""A Personalizer-shaped DSJSON history is read, evaluated and optimized directly (Python and the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from simulators import OptimizeConfig, evaluate_log, optimize_log
from simulators.readers import read_log
from tests.simulators.readers.personalizer_history import ACTIONS, best_value, history, uniform_value

N_DECISIONS = 1500


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("personalizer") / "personalizer-export.json"
    path.write_text("\n".join(history(N_DECISIONS, seed=3)) + "\n", encoding="utf-8")
    return path


def test_the_history_reads_with_every_line_accounted_for(history_file):
    loaded = read_log(history_file)
    report, log = loaded.report, loaded.bandit
    assert report.rows_read == report.rows_kept == N_DECISIONS and not report.counts
    assert any("30 without a decision" in note and "30 inactive (_skipLearn)" in note for note in report.notes)
    assert any("pdrop 0.5" in note and "unchanged" in note for note in report.notes)
    assert log.item_ids == tuple(sorted(ACTIONS))  # items are the actions' ids (_tag)
    assert log.n_positions == 2 and log.n_decisions == N_DECISIONS
    assert log.timestamp is not None and str(log.timestamp[1]) == "2025-03-01T08:00:01.000000"


def test_evaluate_finds_the_exact_values(history_file):
    run = evaluate_log(history_file, ["uniform", "logged"], ["ipw", "snipw", "dr"])
    uniform, logged = run.report.evaluations
    log = run.log
    for estimate in uniform.estimates:
        low, high = estimate.intervals[0].low, estimate.intervals[0].high
        assert abs(estimate.value - uniform_value()) < 0.05 and low <= uniform_value() <= high, estimate
    ipw = next(e for e in logged.estimates if e.estimator == "ipw")
    assert ipw.value == pytest.approx(float(np.mean(log.reward)), abs=1e-12)  # weights are all 1


def test_optimize_recommends_a_learner_over_the_logged_policy(history_file):
    run = optimize_log(
        history_file,
        app_config=load_config(DEFAULT_CONFIG_PATH),
        settings=["exploration.algorithm=epsilon_greedy,exploration.epsilon=0.05"],
        config=OptimizeConfig(estimators=("ipw", "snipw"), primary="ipw"),
    )
    result = run.result
    assert run.read_report is not None and run.read_report.rows_kept == N_DECISIONS
    values = {p.name: p.value("ipw") for p in result.policies}
    assert values["exploration.algorithm=epsilon_greedy,exploration.epsilon=0.05"] > values["logged"] + 0.1, values
    assert values["exploration.algorithm=epsilon_greedy,exploration.epsilon=0.05"] < best_value() + 0.05
    assert result.recommended is not None and result.recommended.name != "logged"


def test_the_cli_evaluates_the_export(history_file, tmp_path):
    out = tmp_path / "estimates.json"
    command = [sys.executable, "-m", "recommender.cli.main", "evaluate", "--log", str(history_file)]
    command += ["--target", "uniform", "--estimators", "ipw,snipw", "--bootstrap", "0", "--json-out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    estimates = {e["estimator"]: e["value"] for e in document["evaluations"][0]["estimates"]}
    assert abs(estimates["ipw"] - uniform_value()) < 0.05, estimates
    assert "pdrop 0.5" in json.dumps(document)

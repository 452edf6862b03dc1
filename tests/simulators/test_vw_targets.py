"""VW-backed targets on a real event log written by a real VW policy: ``model:`` and ``vw:``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recommender.cli.main import main
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from simulators.errors import TargetSpecError, TargetUnavailableError
from simulators.evaluate import EvaluationConfig
from simulators.log_evaluation import evaluate_log
from simulators.readers import read_log
from simulators.target_specs import parse_target
from tests.simulators.log_files import write_policy_log

APP = load_config(DEFAULT_CONFIG_PATH)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A log of decisions made by a published (fixed, untrained) policy, and its model store."""
    root = tmp_path_factory.mktemp("vw")
    version = write_policy_log(APP, root / "events", root / "models")
    return root, version


def test_saved_model_scoring_reproduces_the_logged_pmfs(logged):
    root, version = logged
    log = read_log(root / "events").bandit
    applied = parse_target(f"model:{root / 'models'}@{version}").apply(log)
    # The model that logged the decisions, scored again on the logged contexts: every weight is 1.
    np.testing.assert_allclose(applied.dist.at_positions(log.position), log.logging_dist, atol=1e-6)
    run = evaluate_log(log, [f"model:{root / 'models'}"], ["ipw", "snipw"], EvaluationConfig(n_bootstrap=0))
    assert run.report.evaluations[0].estimate("ipw").value == pytest.approx(log.reward.mean(), abs=1e-5)
    assert run.report.evaluations[0].diagnostics.max_weight == pytest.approx(1.0, abs=1e-5)


def test_vw_target_trains_on_the_prefix_and_evaluates_the_rest(logged, capsys):
    root, _ = logged
    assert (
        main(
            [
                "evaluate",
                "--log",
                str(root / "events"),
                "--target",
                "vw:exploration.algorithm=epsilon_greedy,exploration.epsilon=0.3,learning.learning_rate=0.3;train_fraction=0.6",
                "--estimators",
                "ipw,snipw,dr",
                "--bootstrap",
                "0",
                "--json",
            ]
        )
        == 0
    )
    evaluation = json.loads(capsys.readouterr().out)["evaluations"][0]
    # 40% of 300 decisions are held out.
    assert evaluation["diagnostics"]["n_rows"] == 120
    assert evaluation["target"].startswith("vw:exploration.algorithm=epsilon_greedy,exploration.epsilon=0.3")
    values = [e["value"] for e in evaluation["estimates"]]
    assert all(v is not None and 0.0 <= v <= 1.5 for v in values)
    assert evaluation["diagnostics"]["support_violations"] == 0


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ("vw:exploration.epsilon=7", TargetSpecError, "exploration.epsilon"),
        ("vw:bits", TargetSpecError, "is not KEY=VALUE"),
        ("vw:default;train_fraction=0.001", TargetSpecError, "leave no training or test part"),
        ("model:{root}/nowhere", TargetUnavailableError, "no current model version"),
        ("model:{root}/models@0123456789abcdef0123", TargetUnavailableError, "does not exist"),
    ],
)
def test_vw_target_errors(logged, spec, error, message):
    root, _ = logged
    log = read_log(root / "events").bandit
    with pytest.raises(error, match=message):
        parse_target(spec.format(root=root), APP).apply(log)


def test_vw_targets_need_our_event_log(tmp_path):
    path = tmp_path / "log.json"
    path.write_text(
        '{"_label_cost": 0, "_label_probability": 0.5, "_labelIndex": 0, "a": [1, 2], "p": [0.5, 0.5],'
        ' "c": {"U": {"x": 1}, "_multi": [{"i": {"id": 1}}, {"i": {"id": 2}}]}}\n'
    )
    with pytest.raises(TargetUnavailableError, match="raw features"):
        parse_target("vw:default").apply(read_log(path).bandit)

"""``recommender experiment report`` (table, JSON, HTML) against the log, and ``promote`` writing the config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from recommender.cli.main import main
from recommender.events.log import write_events
from recommender.experiments.arm_learning import arm_app_config
from recommender.policy.model_store import ModelStore, open_model_store
from recommender.policy.policy import Policy
from recommender.settings.loading import load_config
from tests.recommender.sample_events import default_schema_events
from tests.recommender.served_app import service_document, write_config

EXPERIMENT = {
    "name": "eps",
    "control": "bandit",
    "arms": [
        {"name": "bandit", "kind": "policy", "share": 0.5},
        {
            "name": "eps05",
            "kind": "policy",
            "share": 0.5,
            "exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.05},
        },
    ],
}


def test_report_and_promote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = tmp_path / "config.yaml"
    config = write_config(config_path, service_document(tmp_path, None, experiments={"current": EXPERIMENT}))
    events = default_schema_events(40, 4)
    rng = np.random.default_rng(0)
    arms = ["bandit" if rng.random() < 0.5 else "eps05" for _ in events]
    write_events([dataclasses.replace(e, decision=dataclasses.replace(e.decision, experiment="eps", arm=a))
                  for e, a in zip(events, arms, strict=True)], config.join.event_log_dir)  # fmt: skip
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["--config", str(config_path), "experiment", "report", "--json", str(out_json),
                 "--html", str(out_html)]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "decision: keep running" in table
    figures = json.loads(out_json.read_text())
    by_arm = {a["arm"]: a for a in figures["arms"]}
    for name in ("bandit", "eps05"):
        rewards = [e.reward for e, a in zip(events, arms, strict=True) if a == name]
        assert by_arm[name]["n"] == len(rewards) and by_arm[name]["mean"] == pytest.approx(np.mean(rewards))
    assert out_html.read_text().count("data:image/png;base64,") == 2

    assert main(["--config", str(config_path), "experiment", "promote", "nope"]) == 2
    assert "not an arm" in capsys.readouterr().err
    assert main(["--config", str(config_path), "experiment", "promote", "eps05"]) == 0
    promoted = load_config(config_path)
    assert promoted.experiments.current is None and promoted.policy.exploration.epsilon == 0.05
    assert main(["--config", str(config_path), "experiment", "report"]) == 2
    assert "no experiment is running" in capsys.readouterr().err


def test_promoting_the_baseline_ends_the_experiment_and_keeps_the_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = {"name": "vs-baseline", "control": "baseline", "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.5},
        {"name": "slow", "kind": "policy", "share": 0.5, "learning": {"learning_rate": 0.1}},
    ]}  # fmt: skip
    config_path = tmp_path / "config.yaml"
    before = write_config(config_path, service_document(tmp_path, None, experiments={"current": experiment}))
    assert main(["--config", str(config_path), "experiment", "promote", "slow"]) == 2
    assert "has published no model version yet" in capsys.readouterr().err
    assert load_config(config_path).experiments.current is not None  # refused: nothing written
    assert ModelStore(before.policy.model_dir).current_version() is None
    assert main(["--config", str(config_path), "experiment", "promote", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "experiment 'vs-baseline' ended" in out and "policy section unchanged" in out
    assert "every request gets the configured policy again" in out
    after = load_config(config_path)
    assert after.experiments.current is None and after.policy == before.policy


def test_promoting_an_arm_with_its_own_model_makes_its_model_main_then_writes_its_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment = {"name": "own", "control": "bandit", "arms": [
        {"name": "bandit", "kind": "policy", "share": 0.5},
        {"name": "slow", "kind": "policy", "share": 0.5, "learning": {"learning_rate": 0.1},
         "interactions": [["user", "item"]], "exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.2}},
    ]}  # fmt: skip
    config_path = tmp_path / "config.yaml"
    before = write_config(config_path, service_document(tmp_path, None, experiments={"current": experiment}))
    arm = before.experiments.current.arm("slow")
    main_store = open_model_store(before)
    # The main model and the arm's each learned the log (their own trainers would).
    for store, config in ((main_store, before), (main_store.arm_store("own", "slow"), arm_app_config(before, arm))):
        policy = Policy.create(config.policy, config.user_group, config.item_group)
        policy.learn(default_schema_events(30, 1))
        store.publish(policy, checkpoint={"format": 1, "note": store.root.name})
        policy.close()
    old_main = main_store.current_version()
    arm_version = main_store.arm_store("own", "slow").version(main_store.arm_store("own", "slow").current_version())

    assert main(["--config", str(config_path), "experiment", "promote", "slow"]) == 0
    out = capsys.readouterr().out
    after = load_config(config_path)
    assert after.experiments.current is None
    assert after.policy == arm.policy_config(before.policy)  # its exploration, learning and interactions
    promoted = main_store.version(main_store.current_version())
    assert promoted.id != old_main and f"main model version {promoted.id}" in out
    assert promoted.vw_args == arm_version.vw_args
    assert promoted.checkpoint == arm_version.checkpoint and promoted.event_range == arm_version.event_range
    assert promoted.policy["learning"] == arm_version.policy["learning"]
    assert main_store.history()[-2:] == [old_main, promoted.id]  # old one kept as a rollback target
    # What a worker loads next: the promoted weights under the promoted settings.
    served = open_model_store(after).load(exploration=after.policy.exploration)
    own = main_store.arm_store("own", "slow").load()
    assert served.config == after.policy
    for event in default_schema_events(5, 9):  # the arm's weights: the same pmfs as the arm's own model
        d = event.decision
        assert served.predict_pmf(d.user_features, d.context, d.candidate_features) == pytest.approx(
            own.predict_pmf(d.user_features, d.context, d.candidate_features))  # fmt: skip
    served.close()
    own.close()

"""``recommender export --format dsjson``: our event log as DSJSON that real VW trains on and that reads back
to the same rows and the same estimates."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recommender.events.log import read_events, write_events
from recommender.policy.vw import read_action_probs, run_driver
from recommender.records import Decision, JoinedEvent
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from simulators import evaluate_log
from simulators.dsjson_export import export_dsjson
from simulators.readers import read_log
from tests.simulators.log_files import write_policy_log

ARRAYS = ("context", "action", "position", "pscore", "reward", "logging_dist", "candidate_items", "action_context")
ARRAYS += ("timestamp", "round_id")
TARGETS = ["uniform", "greedy", "epsilon:0.1"]


@pytest.fixture(scope="module")
def policy_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 decisions of a real VW policy over items with string, list, numeric and missing features."""
    root = tmp_path_factory.mktemp("policy-log")
    write_policy_log(load_config(DEFAULT_CONFIG_PATH), root / "events", root / "models")
    return root / "events"


def _two_slot(event: JoinedEvent, i: int) -> JoinedEvent:
    """The decision with a second slot: uniform over the candidates slot 0 did not show."""
    d = event.decision
    k = len(d.candidate_ids)
    first = d.chosen_index
    second = (first + 1 + i % (k - 1)) % k
    pmf2 = tuple(0.0 if j == first else 1.0 / (k - 1) for j in range(k))
    ranking = (first, second, *[j for j in range(k) if j not in (first, second)])
    decision = replace(d, pmfs=(d.pmf, pmf2), chosen=(first, second), ranking=ranking)
    assert isinstance(decision, Decision)
    return JoinedEvent(decision, (event.reward, float(i % 3 == 0)), (False, i % 5 == 0), event.joined_at)


def _assert_same_log(events_path: Path, dsjson_path: Path) -> None:
    a, b = read_log(events_path).bandit, read_log(dsjson_path).bandit
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.item_ids == b.item_ids and list(a.event_id) == list(b.event_id)
    ea = evaluate_log(events_path, TARGETS, ["ipw", "snipw", "dr"])
    eb = evaluate_log(dsjson_path, TARGETS, ["ipw", "snipw", "dr"])
    for x, y in zip(ea.report.evaluations, eb.report.evaluations, strict=True):
        assert [(e.estimator, e.value) for e in x.estimates] == [(e.estimator, e.value) for e in y.estimates]
        assert [e.intervals for e in x.estimates] == [e.intervals for e in y.estimates]


def test_round_trip_gives_the_same_rows_and_estimates(policy_log, tmp_path):
    result = export_dsjson(policy_log, tmp_path / "export.json")
    assert result.decisions == 300 and result.report.rows_kept == 300
    _assert_same_log(policy_log, tmp_path / "export.json")
    first = json.loads((tmp_path / "export.json").read_text().splitlines()[0])
    assert set(first["c"]) == {"User", "Context", "_multi"} and first["c"]["_multi"][0]["_tag"] == "item-00"
    assert first["_label_cost"] == -first["o"][0]["v"] and first["Timestamp"].endswith("0Z")


def test_multi_slot_round_trip(policy_log, tmp_path):
    events = [_two_slot(e, i) for i, e in enumerate(read_events(policy_log))]
    write_events(events, tmp_path / "events")
    result = export_dsjson(tmp_path / "events", tmp_path / "export.json")
    assert result.decisions == 300
    line = json.loads((tmp_path / "export.json").read_text().splitlines()[0])
    assert [o["_id"] for o in line["_outcomes"]] == ["slot-0", "slot-1"]
    assert len(line["_outcomes"][1]["_a"]) == len(line["c"]["_multi"]) - 1  # the slot-0 item is gone
    _assert_same_log(tmp_path / "events", tmp_path / "export.json")


def test_real_vw_trains_on_the_export(policy_log, tmp_path):
    export_dsjson(policy_log, tmp_path / "export.json")
    model, predictions = tmp_path / "vw.model", tmp_path / "predictions.txt"
    run_driver(["--cb_explore_adf", "--dsjson", "--epsilon", "0.2", "-q", "UI", "-f", str(model)],
               tmp_path / "export.json", predictions)  # fmt: skip
    log = read_log(policy_log).bandit
    counts = log.candidate_mask.sum(axis=1)
    probs = read_action_probs(predictions, counts)  # one pmf per exported decision, over its candidates
    assert probs.shape == (300, 8) and model.stat().st_size > 0
    # VW learned something: its greedy choice is no longer the same item for everyone.
    assert len(set(np.argmax(probs[-100:], axis=1))) > 1


def test_the_cli_exports_and_reports(policy_log, tmp_path):
    out = tmp_path / "export.dsjson"
    command = [sys.executable, "-m", "recommender.cli.main", "export", "--format", "dsjson"]
    result = subprocess.run([*command, "--log", str(policy_log), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote 300 decisions" in result.stderr and len(out.read_text().splitlines()) == 300
    missing = subprocess.run([*command, "--log", str(tmp_path / "nowhere"), "--out", str(out)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("recommender: error: ") and "nowhere" in missing.stderr

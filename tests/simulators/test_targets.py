"""Target policies: SPEC parsing, built-in targets, distribution files, and their validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulators.data import ActionDist, LoggedBandit
from simulators.errors import BanditDataError, TargetSpecError, TargetUnavailableError
from simulators.target_specs import parse_target
from simulators.targets import DistributionFile, EpsilonGreedyTarget, UniformTarget


@pytest.fixture()
def log() -> LoggedBandit:
    # Three rows over candidate lists of different lengths (row 2 has two candidates).
    return LoggedBandit(
        context=np.zeros((3, 1)),
        action=[0, 2, 1],
        position=[0, 0, 0],
        reward=[1.0, 0.0, 1.0],
        pscore=[0.5, 0.25, 0.5],
        n_actions=3,
        candidate_items=[[0, 1, 2], [2, 0, 1], [1, 0, -1]],
        logging_dist=[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]],
        item_ids=("a", "b", "c"),
        event_id=["e0", "e1", "e2"],
    )


def test_uniform_respects_each_rows_candidates(log):
    probs = UniformTarget().apply(log).dist.at_positions(log.position)
    np.testing.assert_allclose(probs, [[1 / 3] * 3, [1 / 3] * 3, [0.5, 0.5, 0.0]])


def test_logged_greedy_and_epsilon(log):
    np.testing.assert_allclose(parse_target("logged").apply(log).dist.probs[:, :, 0], log.logging_dist)
    greedy = parse_target("greedy").apply(log).dist.probs[:, :, 0]
    np.testing.assert_allclose(greedy, [[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    eps = parse_target("epsilon:0.3").apply(log).dist.probs[:, :, 0]
    np.testing.assert_allclose(eps[0], [0.7 + 0.1, 0.1, 0.1])
    np.testing.assert_allclose(eps[2], [0.7 + 0.15, 0.15, 0.0])


def test_targets_needing_logging_distributions_refuse_logs_without_them(log):
    bare = LoggedBandit(context=np.zeros((1, 0)), action=[0], position=[0], reward=[1.0], pscore=[0.5], n_actions=2)
    with pytest.raises(TargetSpecError, match="full distributions"):
        parse_target("greedy").apply(bare)


def test_distribution_files(tmp_path, log):
    probs = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    np.save(tmp_path / "d.npy", probs)
    np.testing.assert_allclose(parse_target(f"dist:{tmp_path / 'd.npy'}").apply(log).dist.probs[:, :, 0], probs)
    long = pd.DataFrame(
        {
            "event_id": ["e0", "e0", "e1", "e2"],
            "item_id": ["a", "c", "b", "b"],
            "probability": [0.4, 0.6, 1.0, 1.0],
        }
    )
    long.to_parquet(tmp_path / "d.parquet")
    applied = parse_target(f"dist:{tmp_path / 'd.parquet'}").apply(log)
    # Row 1's candidates are [c, a, b]: item b is its candidate 2; row 2's are [b, a]: item b is candidate 0.
    np.testing.assert_allclose(applied.dist.probs[:, :, 0], [[0.4, 0.0, 0.6], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    pd.DataFrame({"row": [0, 1, 2], "action": [1, 0, 1], "probability": [1.0, 1.0, 1.0]}).to_csv(
        tmp_path / "d.csv", index=False
    )
    applied = parse_target(f"dist:{tmp_path / 'd.csv'}").apply(log)
    np.testing.assert_allclose(applied.dist.probs[:, :, 0], [[0, 1, 0], [1, 0, 0], [0, 1, 0]])


@pytest.mark.parametrize(
    "frame, message",
    [
        ({"row": [0, 1], "action": [0, 0], "probability": [1.0, 1.0]}, "no distribution for 1 rows"),
        ({"row": [0, 1, 2], "action": [0, 0, 0], "probability": [1.0, 0.5, 1.0]}, "does not sum to 1"),
        ({"row": [0, 1, 9], "action": [0, 0, 0], "probability": [1.0, 1.0, 1.0]}, "rows the log does not have"),
        ({"row": [0, 1, 2], "action": [0, 0, 5], "probability": [1.0, 1.0, 1.0]}, "candidate indices"),
        ({"row": [0, 1, 2], "action": [0, 0, 2], "probability": [1.0, 1.0, 1.0]}, "slot the row does not have"),
        ({"row": [0], "item_id": ["zz"], "probability": [1.0]}, "'zz' is not a candidate"),
        ({"row": [0], "action": [0]}, "needs a 'probability' column"),
    ],
)
def test_bad_distribution_tables(tmp_path, log, frame, message):
    pd.DataFrame(frame).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises((TargetSpecError, BanditDataError), match=message):
        applied = DistributionFile(tmp_path / "bad.csv").apply(log)
        applied.dist.check_fits(applied.log)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("random", "unknown target 'random'"),
        ("epsilon:lots", "epsilon must be a number"),
        ("epsilon:1.5", r"epsilon must lie in \[0, 1\]"),
        ("dist:", "unknown target"),
        ("vw:default;train_fraction=2", r"train_fraction must lie in \(0, 1\)"),
        ("vw:default;folds=2", "unknown option 'folds=2'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(TargetSpecError, match=message):
        parse_target(spec)


def test_missing_distribution_file(tmp_path, log):
    with pytest.raises(TargetSpecError, match="does not exist"):
        parse_target(f"dist:{tmp_path / 'nope.npy'}").apply(log)


def test_action_dist_validation():
    with pytest.raises(BanditDataError, match="does not sum to 1"):
        ActionDist([[0.5, 0.4]])
    with pytest.raises(BanditDataError, match="outside"):
        ActionDist([[1.5, -0.5]])
    with pytest.raises(BanditDataError, match="shape"):
        ActionDist(np.ones(3))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"pscore": [0.0]}, r"pscore must lie in \(0, 1\]"),
        ({"pscore": [1.2]}, r"pscore must lie in \(0, 1\]"),
        ({"action": [3]}, r"action must lie in \[0, 2\)"),
        ({"reward": [float("nan")]}, "reward has non-finite values"),
        ({"position": [-1]}, "position must be non-negative"),
        ({"context": np.zeros((2, 1))}, "context has 2 rows"),
        ({"logging_dist": [[0.3, 0.7]]}, "disagrees with pscore"),
        ({"action": []}, "at least one row"),
    ],
)
def test_logged_bandit_validation(changes, message):
    fields = dict(context=np.zeros((1, 1)), action=[0], position=[0], reward=[1.0], pscore=[0.5], n_actions=2)
    if changes.get("action") == []:
        fields.update(context=np.zeros((0, 1)), position=[], reward=[], pscore=[])
    fields.update(changes)
    with pytest.raises(BanditDataError, match=message):
        LoggedBandit(**fields)


def test_logged_bandit_arrays_are_read_only():
    log = LoggedBandit(context=np.zeros((1, 1)), action=[0], position=[0], reward=[1.0], pscore=[0.5], n_actions=2)
    with pytest.raises(ValueError, match="read-only"):
        log.reward[0] = 2.0


def test_vw_targets_refuse_logs_without_raw_decisions(log):
    with pytest.raises(TargetUnavailableError, match="raw features"):
        parse_target("vw:exploration.epsilon=0.2").apply(log)
    assert EpsilonGreedyTarget(0.0).name == "greedy"

"""Every estimator against values computed by hand on a 4-row log (formulas as in OBP's estimators.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.data import ActionDist, LoggedBandit
from simulators.errors import EstimatorError
from simulators.estimators import (
    ALL_ESTIMATORS,
    DirectMethod,
    DoublyRobust,
    DoublyRobustWithShrinkage,
    InverseProbabilityWeighting,
    SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting,
    SwitchDoublyRobust,
    make_estimator,
)
from simulators.evaluate import EvaluationConfig, evaluate_policy, prepare_inputs
from simulators.log_evaluation import evaluate_log
from simulators.reward_model import RewardPredictions

# Four rows, two actions, one position.
#   action  pscore  reward  pi_e(.|x)     q_hat(x, .)
#   0       0.5     1       [0.2, 0.8]    [0.5, 0.3]
#   1       0.25    0       [0.6, 0.4]    [0.2, 0.6]
#   0       0.8     1       [1.0, 0.0]    [0.9, 0.1]
#   1       0.5     1       [0.5, 0.5]    [0.4, 0.7]
# w = pi_e(a)/pscore = [0.2/0.5, 0.4/0.25, 1.0/0.8, 0.5/0.5] = [0.4, 1.6, 1.25, 1.0]      sum w = 4.25
# w r = [0.4, 0, 1.25, 1.0]                                                                sum   = 2.65
# q_hat(x, pi_e) = [0.1 + 0.24, 0.12 + 0.24, 0.9, 0.2 + 0.35] = [0.34, 0.36, 0.9, 0.55]  sum   = 2.15
# q_hat(x, a) = [0.5, 0.6, 0.9, 0.7];  r - q_hat(x, a) = [0.5, -0.6, 0.1, 0.3]
# w (r - q_hat(x, a)) = [0.2, -0.96, 0.125, 0.3]                                           sum   = -0.335
ACTION = [0, 1, 0, 1]
PSCORE = [0.5, 0.25, 0.8, 0.5]
REWARD = [1.0, 0.0, 1.0, 1.0]
PI_E = [[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]]
Q_HAT = [[0.5, 0.3], [0.2, 0.6], [0.9, 0.1], [0.4, 0.7]]

HAND = {
    # E_n[w r] = 2.65 / 4
    "ipw": 0.6625,
    # min(w, 1.2) = [0.4, 1.2, 1.2, 1.0]; E_n[min(w, 1.2) r] = (0.4 + 1.2 + 1.0) / 4
    "ipw:lambda=1.2": 0.65,
    # E_n[w r] / E_n[w] = 2.65 / 4.25
    "snipw": 2.65 / 4.25,
    # E_n[q_hat(x, pi_e)] = 2.15 / 4
    "dm": 0.5375,
    # (2.15 - 0.335) / 4
    "dr": 0.45375,
    # min(w, 1.5) = [0.4, 1.5, 1.25, 1.0]: corrections [0.2, -0.9, 0.125, 0.3] sum -0.275; (2.15 - 0.275) / 4
    "dr:lambda=1.5": 0.46875,
    # 2.15 / 4 + (-0.335) / 4.25
    "sndr": 0.5375 - 0.335 / 4.25,
    # 1{w <= 1.3} = [1, 0, 1, 1]: corrections [0.2, 0, 0.125, 0.3] sum 0.625; (2.15 + 0.625) / 4
    "switch-dr:lambda=1.3": 0.69375,
    # lambda = 0: no weight passes, Switch-DR is DM
    "switch-dr:lambda=0": 0.5375,
    # w_hat = w / (w^2 + 1) = [0.4/1.16, 1.6/3.56, 1.25/2.5625, 1/2]
    # corrections = [0.5 * 0.4/1.16, -0.6 * 1.6/3.56, 0.1 * 1.25/2.5625, 0.3 * 0.5]
    "dr-os:lambda=1": (2.15 + 0.5 * 0.4 / 1.16 - 0.6 * 1.6 / 3.56 + 0.1 * 1.25 / 2.5625 + 0.15) / 4,
    # lambda = inf is DR; lambda = 0 is DM
    "dr-os:lambda=inf": 0.45375,
    "dr-os:lambda=0": 0.5375,
}


@pytest.fixture()
def small():
    log = LoggedBandit(
        context=np.zeros((4, 0)), action=ACTION, position=[0, 0, 0, 0], reward=REWARD, pscore=PSCORE, n_actions=2
    )
    return log, ActionDist(PI_E), RewardPredictions(np.array(Q_HAT))


@pytest.mark.parametrize("spec, expected", sorted(HAND.items()))
def test_estimate_matches_hand_computation(small, spec, expected):
    log, target, rewards = small
    inputs, _ = prepare_inputs(log, target, rewards)
    assert make_estimator(spec).estimate(inputs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("spec, expected", sorted(HAND.items()))
def test_evaluate_policy_reports_the_same_value(small, spec, expected):
    log, target, rewards = small
    result = evaluate_policy(log, target, [spec], rewards, EvaluationConfig(n_bootstrap=0))
    assert result.estimates[0].value == pytest.approx(expected, abs=1e-12)


def test_weights_intermediates(small):
    log, target, rewards = small
    inputs, violations = prepare_inputs(log, target, rewards)
    np.testing.assert_allclose(inputs.weight, [0.4, 1.6, 1.25, 1.0])
    np.testing.assert_allclose(inputs.q_pi, [0.34, 0.36, 0.9, 0.55])
    np.testing.assert_allclose(inputs.q_factual, [0.5, 0.6, 0.9, 0.7])
    assert violations is None  # no full logging distribution in this log


def test_multi_position_rows_use_their_own_position():
    # Two positions: row 0 is evaluated at position 0, row 1 at position 1 (OBP's action_dist[i, :, pos_i]).
    probs = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.3, 0.5], [0.7, 0.5]]])  # (n=2, K=2, P=2)
    log = LoggedBandit(
        context=np.zeros((2, 0)), action=[1, 1], position=[0, 1], reward=[1.0, 1.0], pscore=[0.5, 0.5], n_actions=2
    )
    inputs, _ = prepare_inputs(log, ActionDist(probs))
    # Row 0: pi_e(a=1 | pos 0) = probs[0, 1, 0] = 0.0; row 1: pi_e(a=1 | pos 1) = probs[1, 1, 1] = 0.5.
    np.testing.assert_allclose(inputs.weight, [0.0, 1.0])
    assert InverseProbabilityWeighting().estimate(inputs) == pytest.approx(0.5)


def test_all_seven_estimators_are_registered_with_names():
    assert ALL_ESTIMATORS == ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dr-os")
    classes = (
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
        DirectMethod,
        DoublyRobust,
        SelfNormalizedDoublyRobust,
        SwitchDoublyRobust,
        DoublyRobustWithShrinkage,
    )
    for cls in classes:
        assert cls.name and "=" in (cls.__doc__ or ""), cls  # paper name and formula in the docstring


def test_label_shows_non_default_parameters():
    assert InverseProbabilityWeighting().label == "ipw"
    assert InverseProbabilityWeighting(lambda_=50.0).label == "ipw(lambda=50)"
    assert DoublyRobustWithShrinkage().label == "dr-os"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ipx", r"unknown estimator 'ipx'; choose from ipw, .*ips \(= ipw\)"),
        ("ipw:lambda=-1", "non-negative"),
        ("ipw:lambda=abc", "must be a number"),
        ("ipw:alpha=2", "unknown parameter"),
        ("snipw:lambda=3", "takes no parameters"),
        ("dr:lambda=nan", "non-negative"),
    ],
)
def test_bad_estimator_specs(spec, message):
    with pytest.raises(EstimatorError, match=message):
        make_estimator(spec)


def test_model_based_estimators_need_a_reward_model(small):
    log, target, _ = small
    inputs, _ = prepare_inputs(log, target)
    with pytest.raises(EstimatorError, match="needs reward-model predictions"):
        DoublyRobust().estimate(inputs)


def test_snipw_is_undefined_when_every_weight_is_zero():
    log = LoggedBandit(
        context=np.zeros((2, 0)), action=[0, 0], position=[0, 0], reward=[1.0, 0.0], pscore=[0.5, 0.5], n_actions=2
    )
    result = evaluate_policy(log, ActionDist([[0.0, 1.0], [0.0, 1.0]]), ["ipw", "snipw"], None, EvaluationConfig())
    assert result.estimate("ipw").value == 0.0
    assert math.isnan(result.estimate("snipw").value)
    assert "zero weight" in result.estimate("snipw").note
    assert result.diagnostics.zero_share == 1.0


# A heavy weight, to tell the defaults of Switch-DR and DR-OS apart, and a zero weight (0/0 in DR-OS at lambda 0).
#   action  pscore  reward  pi_e(.|x)   q_hat(x, .)   w     q_hat(x, pi_e)  q_hat(x, a)  w (r - q_hat(x, a))
#   0       0.005   1       [1, 0]      [0.2, 0.5]    200   0.2             0.2          160
#   1       0.5     0       [0.5, 0.5]  [0.4, 0.6]    1     0.5             0.6          -0.6
#   1       0.5     1       [1, 0]      [0.3, 0.9]    0     0.3             0.9          0
HEAVY = {
    "dm": (0.2 + 0.5 + 0.3) / 3,
    "dr": (1.0 + 160 - 0.6) / 3,
    # OBP's default lambda = inf: Switch-DR is DR
    "switch-dr": (1.0 + 160 - 0.6) / 3,
    # the former default, 100, switched row 0 to the reward model alone
    "switch-dr:lambda=100": (1.0 - 0.6) / 3,
    # OBP's default lambda = 0: DR-OS is DM (and finite at w = 0)
    "dr-os": (0.2 + 0.5 + 0.3) / 3,
    "dr-os:lambda=0": (0.2 + 0.5 + 0.3) / 3,
    # w_hat = 100 w / (w^2 + 100) = [20000 / 40100, 100 / 101, 0]
    "dr-os:lambda=100": (1.0 + 0.8 * 20000 / 40100 - 0.6 * 100 / 101) / 3,
    # ips is IPW: E_n[w r] = 200 / 3
    "ips": 200 / 3,
    "IPS:lambda=50": 50 / 3,
    "snips": 200 / 201,
}


@pytest.fixture()
def heavy():
    log = LoggedBandit(
        context=np.zeros((3, 0)), action=[0, 1, 1], position=[0, 0, 0], reward=[1.0, 0.0, 1.0],
        pscore=[0.005, 0.5, 0.5], n_actions=2,
    )  # fmt: skip
    target = ActionDist([[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]])
    return log, target, RewardPredictions(np.array([[0.2, 0.5], [0.4, 0.6], [0.3, 0.9]]))


@pytest.mark.parametrize("spec, expected", sorted(HEAVY.items()))
def test_defaults_are_obps_on_a_heavy_weight(heavy, spec, expected):
    log, target, rewards = heavy
    inputs, _ = prepare_inputs(log, target, rewards)
    assert make_estimator(spec).estimate(inputs) == pytest.approx(expected, abs=1e-12)


def test_default_lambdas_are_obps():
    assert SwitchDoublyRobust().lambda_ == math.inf  # obp.ope.SwitchDoublyRobust(lambda_=np.inf)
    assert DoublyRobustWithShrinkage().lambda_ == 0.0  # obp.ope.DoublyRobustWithShrinkage(lambda_=0.0)
    assert SwitchDoublyRobust(lambda_=100.0).label == "switch-dr(lambda=100)"


def test_ips_and_snips_name_ipw_and_snipw():
    assert make_estimator("ips") == InverseProbabilityWeighting()
    assert make_estimator(" IPS:lambda=5 ") == InverseProbabilityWeighting(lambda_=5.0)
    assert make_estimator("snips") == SelfNormalizedInverseProbabilityWeighting()


def test_evaluate_log_accepts_ips(small):
    # The path the CLI's --estimators takes: names go through make_estimator.
    log, _, _ = small
    run = evaluate_log(log, ["uniform"], estimators=["ips", "snips"], config=EvaluationConfig(n_bootstrap=0))
    assert [e.estimator for e in run.report.evaluations[0].estimates] == ["ipw", "snipw"]
    assert run.report.settings["estimators"] == ["ipw", "snipw"]


def _obp_q_hat(q_2d: np.ndarray, position: np.ndarray, n_positions: int) -> np.ndarray:
    """OBP's (n, K, len_list) layout: row i's own position holds q_2d[i], the others hold decoys."""
    q = np.full((q_2d.shape[0], q_2d.shape[1], n_positions), 0.99)
    q[np.arange(q_2d.shape[0]), :, position] = q_2d
    return q


def test_reward_predictions_accept_obps_positions_layout(small):
    log, target, _ = small
    position = np.array([0, 1, 1, 0])
    q3 = _obp_q_hat(np.array(Q_HAT), position, 2)
    predictions = RewardPredictions(q3, position=position)
    np.testing.assert_array_equal(predictions.q_hat, Q_HAT)
    assert predictions.position is None
    inputs, _ = prepare_inputs(log, target, predictions)
    assert DoublyRobust().estimate(inputs) == pytest.approx(HAND["dr"], abs=1e-12)
    # len_list = 1 needs no positions
    np.testing.assert_array_equal(RewardPredictions(np.array(Q_HAT)[:, :, None]).q_hat, Q_HAT)


@pytest.mark.parametrize(
    "q_hat, position, message",
    [
        (np.zeros((4, 2, 3)), None, r"predicts 3 positions: pass position=log\.position"),
        (np.zeros((4, 2, 3)), np.array([0, 1, 2]), r"shape \(4,\)"),
        (np.zeros((4, 2, 3)), np.array([0, 1, 2, 3]), r"lie in \[0, 3\)"),
        (np.zeros((4, 2, 3)), np.array([0.0, 1.0, 2.0, 0.0]), "integer array"),
        (np.zeros((4, 2)), np.array([0, 0, 0, 0]), "position is only for"),
        (np.zeros(4), None, r"or OBP's \(n_rows, n_actions, n_positions\) with position=log\.position"),
    ],
)
def test_reward_predictions_refuse_bad_shapes(q_hat, position, message):
    with pytest.raises(EstimatorError, match=message):
        RewardPredictions(q_hat, position=position)

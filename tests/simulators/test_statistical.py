"""Statistical properties against exact ground truth, over 200 fixed seeds of synthetic worlds and logs.

Each seed draws a world (users, items, click model with position bias), logs 1,500 rounds of two
positions from an epsilon-greedy policy on a noisy model, and evaluates a softmax target whose exact
value the environment computes. Asserted:

- IPW and DR are unbiased: the mean error over seeds is within 3 standard errors of that mean;
- their 95% intervals (normal and bootstrap) cover the truth in at least 90% of seeds, and the
  empirical Bernstein interval in at least 95%;
- DR has lower error than IPW when the reward model is good (the true click model, and a cross-fitted
  logistic model on user x item features).
"""

from __future__ import annotations

import numpy as np
import pytest

from simulators.evaluate import EvaluationConfig, evaluate_policy
from simulators.reward_model import fit_reward_model
from simulators.synthetic import EpsilonGreedyPolicy, SoftmaxPolicy, SyntheticEnvironment

SEEDS = range(200)
ROUNDS = 1500


def _one_seed(seed: int) -> dict[str, object]:
    env = SyntheticEnvironment(n_users=100, n_items=6, user_dim=3, item_dim=3, n_positions=2, seed=seed)
    logging = EpsilonGreedyPolicy(epsilon=0.3, noise=1.0, seed=seed + 1000)
    target_table = SoftmaxPolicy(temperature=0.7, noise=0.3, seed=seed + 2000).table(env)
    log = env.generate_log(logging, ROUNDS, seed=seed + 3000)
    target = env.action_dist(target_table, log)
    config = EvaluationConfig(n_bootstrap=200, seed=seed)
    fitted = evaluate_policy(
        log.bandit, target, ["ipw", "dr"], fit_reward_model(log.bandit, n_folds=2, random_state=seed), config
    )
    oracle = evaluate_policy(log.bandit, target, ["dr"], env.expected_rewards(log), EvaluationConfig(n_bootstrap=0))
    return {
        "truth": env.policy_value(target_table),
        "ipw": fitted.estimate("ipw"),
        "dr": fitted.estimate("dr"),
        "dr_oracle": oracle.estimate("dr"),
    }


@pytest.fixture(scope="module")
def runs() -> list[dict[str, object]]:
    return [_one_seed(seed) for seed in SEEDS]


def _errors(runs, key: str) -> np.ndarray:
    return np.array([r[key].value - r["truth"] for r in runs])


@pytest.mark.parametrize("key", ["ipw", "dr", "dr_oracle"])
def test_unbiased_within_standard_error(runs, key):
    errors = _errors(runs, key)
    standard_error = errors.std(ddof=1) / np.sqrt(len(errors))
    print(f"{key}: mean error {errors.mean():+.5f}, standard error of the mean {standard_error:.5f}")
    assert abs(errors.mean()) <= 3 * standard_error


@pytest.mark.parametrize("key", ["ipw", "dr"])
@pytest.mark.parametrize("method, minimum", [("normal", 0.90), ("bootstrap", 0.90), ("bernstein", 0.95)])
def test_interval_coverage(runs, key, method, minimum):
    covered = np.mean([r[key].interval(method).covers(r["truth"]) for r in runs])
    print(f"{key} {method}: coverage {covered:.3f}")
    assert covered >= minimum


def test_dr_beats_ipw_with_a_good_reward_model(runs):
    rmse = {key: float(np.sqrt(np.mean(_errors(runs, key) ** 2))) for key in ("ipw", "dr", "dr_oracle")}
    print(f"RMSE: {rmse}")
    assert rmse["dr"] < rmse["ipw"]
    assert rmse["dr_oracle"] < rmse["dr"]
    # And seed by seed, DR is the closer one most of the time.
    closer = np.mean(np.abs(_errors(runs, "dr")) < np.abs(_errors(runs, "ipw")))
    assert closer > 0.5


def test_standard_errors_match_the_spread_over_seeds(runs):
    # The reported standard error should be an honest measure of the estimator's spread.
    for key in ("ipw", "dr"):
        spread = _errors(runs, key).std(ddof=1)
        mean_se = float(np.mean([r[key].std_error for r in runs]))
        print(f"{key}: spread over seeds {spread:.4f}, mean reported standard error {mean_se:.4f}")
        assert 0.75 < mean_se / spread < 1.33

"""Off-policy evaluation throughput: a 1,000,000-row log through all seven estimators.

Measured: ``evaluate_policy`` with all estimators, reward-model predictions given (q_hat precomputed),
no bootstrap: weights, per-row terms, mergeable statistics, normal and empirical-Bernstein intervals and
weight diagnostics. Baseline in the same run: a bare NumPy IPW one-liner over the same arrays. Also
reported once each: the same evaluation with 200 Poisson-bootstrap replicates, and cross-fitting the
default reward model (logistic, 3 folds) on the log, since those dominate an end-to-end run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from simulators.data import ActionDist, LoggedBandit
from simulators.evaluate import EvaluationConfig, evaluate_policy
from simulators.reward_model import RewardPredictions, fit_reward_model

N_ROWS = 1_000_000
N_ACTIONS = 10


def _log(n: int, rng: np.random.Generator) -> tuple[LoggedBandit, ActionDist, RewardPredictions]:
    logits = rng.normal(size=(n, N_ACTIONS))
    logging = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    logging = 0.8 * logging + 0.2 / N_ACTIONS
    action = (logging.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(0, N_ACTIONS - 1)
    q = 1.0 / (1.0 + np.exp(-logits))
    reward = (rng.random(n) < q[np.arange(n), action]).astype(np.float64)
    target = np.exp(2 * logits) / np.exp(2 * logits).sum(axis=1, keepdims=True)
    log = LoggedBandit(
        context=rng.normal(size=(n, 4)),
        action=action,
        position=np.zeros(n, dtype=np.int64),
        reward=reward,
        pscore=logging[np.arange(n), action],
        n_actions=N_ACTIONS,
        logging_dist=logging,
    )
    return log, ActionDist(target), RewardPredictions(np.clip(q + rng.normal(0, 0.05, q.shape), 0, 1))


def _time(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def run(quick: bool) -> str:
    rng = np.random.default_rng(0)
    n = 100_000 if quick else N_ROWS
    repeats = 2 if quick else 7
    log, target, rewards = _log(n, rng)
    no_boot = EvaluationConfig(n_bootstrap=0)
    pi = target.probs[:, :, 0]
    rows = np.arange(n)

    def bare_ipw() -> float:
        return float(np.mean(log.reward * pi[rows, log.action] / log.pscore))

    def all_estimators() -> object:
        return evaluate_policy(log, target, None, rewards, no_boot)

    baseline = _time(bare_ipw, repeats)
    full = _time(all_estimators, repeats)
    boot = _time(lambda: evaluate_policy(log, target, None, rewards, EvaluationConfig(n_bootstrap=200)), 1)
    fit_rows = min(n, 200_000)
    fit = _time(lambda: fit_reward_model(log.subset(np.arange(fit_rows)), n_folds=3), 1)
    median, p_max = statistics.median(full), max(full)
    base = statistics.median(baseline)
    return f"""## Off-policy evaluation (`bench_ope`)

{n:,} rows, {N_ACTIONS} actions, one position; q_hat given; median of {repeats} runs. The seven estimators:
ipw, snipw, dm, dr, sndr, switch-dr, dr-os.

| what | time |
|---|---|
| all 7 estimators, normal + Bernstein intervals, diagnostics | {median:.2f} s (max {p_max:.2f} s) |
| baseline: bare NumPy IPW point estimate | {base * 1000:.1f} ms |
| ratio all-estimators / bare IPW | {median / base:.0f}x |
| the same with 200 Poisson-bootstrap replicates (one run) | {boot[0]:.2f} s |
| cross-fitting the logistic reward model, 3 folds, {fit_rows:,} rows x {N_ACTIONS} actions (one run) | {fit[0]:.2f} s |

The estimators are vectorized NumPy over the rows: the cost is a few passes over (n, K) arrays per
estimator plus one (rounds x 4) statistics pass; the reward model, when it has to be fitted, dominates.
"""

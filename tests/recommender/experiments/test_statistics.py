"""The experiment statistics against truth, with fixed seeds: A/A false positives under continuous monitoring,
detection of a truly better arm on a synthetic storefront, the sample-size plan, the sample-ratio check."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from recommender.experiments.analysis import PROMOTE, analyze, difference_sequence
from recommender.experiments.arm_stats import ArmStats
from recommender.experiments.fixed_horizon import sample_size, welch_test
from recommender.experiments.sample_ratio import sample_ratio_check
from simulators.synthetic import EpsilonGreedyPolicy, SyntheticEnvironment, UniformPolicy

ALPHA = 0.05
LOOK_EVERY = 100


def _cumulative_at_looks(arm: np.ndarray, reward: np.ndarray, which: int, looks: np.ndarray):
    """(n, sum, sum of squares) of arm ``which``'s rewards after each look, per simulation: (sims, looks)."""
    mask = arm == which
    r = np.where(mask, reward, 0.0)
    return (
        np.cumsum(mask, axis=1)[:, looks],
        np.cumsum(r, axis=1)[:, looks],
        np.cumsum(r * r, axis=1)[:, looks],
    )


def test_aa_continuous_monitoring_keeps_false_positives_within_alpha_and_peeking_does_not() -> None:
    sims, events, rate = 200, 10_000, 0.1
    rng = np.random.default_rng(20240617)
    arm = (rng.random((sims, events)) < 0.5).astype(np.int8)  # two identical arms, a fair split
    reward = (rng.random((sims, events)) < rate).astype(np.float64)
    looks = np.arange(LOOK_EVERY, events + 1, LOOK_EVERY) - 1  # after every 100 events
    control, treatment = (_cumulative_at_looks(arm, reward, k, looks) for k in (0, 1))
    diff, half = difference_sequence(control, treatment, alpha=ALPHA, mixture_scale=0.02)
    sequential = np.any(np.abs(diff) > half, axis=1)
    # The classical fixed-horizon z test, looked at after every 100 events, stopping at the first p < alpha.
    (nc, sc, qc), (na, sa, qa) = control, treatment
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (qa - sa * sa / na) / (na - 1) / na + (qc - sc * sc / nc) / (nc - 1) / nc
        z = np.abs(diff) / np.sqrt(var)
    peeked = np.any(np.nan_to_num(z) > scipy_stats.norm.ppf(1 - ALPHA / 2), axis=1)
    final_only = np.nan_to_num(z[:, -1]) > scipy_stats.norm.ppf(1 - ALPHA / 2)
    print(
        f"A/A over {sims} runs, {len(looks)} looks: sequential {sequential.mean():.3f}, "
        f"fixed-horizon peeked {peeked.mean():.3f}, fixed-horizon at the end only {final_only.mean():.3f}"
    )
    assert sequential.mean() <= ALPHA
    assert peeked.mean() > 2 * ALPHA  # why the sequential test is needed
    assert final_only.mean() <= 2 * ALPHA  # the classical test is fine when looked at once


def test_a_truly_better_arm_is_detected_and_the_time_to_detection_reported() -> None:
    env = SyntheticEnvironment(n_users=200, n_items=10, seed=3)
    control_table, arm_table = UniformPolicy().table(env), EpsilonGreedyPolicy(epsilon=0.9).table(env)
    margin = env.policy_value(arm_table) - env.policy_value(control_table)
    assert margin == pytest.approx(0.0395, abs=5e-4)  # the set margin the arm is truly better by
    events, sims = 20_000, 20
    detected_at: list[int] = []
    for seed in range(sims):
        rng = np.random.default_rng(seed)
        arm = (rng.random(events) < 0.5).astype(np.int8)
        logs = [
            env.generate_log(table, events, seed=100 + 2 * seed + k)
            for k, table in enumerate((control_table, arm_table))
        ]
        # The k-th event of an arm takes that arm's next logged row: each arm's rows follow its own policy.
        position = np.cumsum(arm == 1) - 1, np.cumsum(arm == 0) - 1
        reward = np.where(arm == 1, logs[1].bandit.reward[position[0]], logs[0].bandit.reward[position[1]])
        looks = np.arange(LOOK_EVERY, events + 1, LOOK_EVERY) - 1
        control, treatment = (_cumulative_at_looks(arm[None], reward[None], k, looks) for k in (0, 1))
        diff, half = difference_sequence(control, treatment, alpha=ALPHA, mixture_scale=0.02)
        hits = np.flatnonzero(diff[0] - half[0] > 0.0)
        assert hits.size, f"seed {seed}: the better arm was never detected in {events} events"
        assert np.all(diff[0] + half[0] > 0.0)  # never declared worse
        detected_at.append(int(looks[hits[0]] + 1))
    median = float(np.median(detected_at))
    plan = sample_size(baseline_mean=env.policy_value(control_table), minimum_effect=margin)
    print(
        f"margin {margin:.4f}: detected in every run, median {median:.0f} events (max {max(detected_at)}); "
        f"fixed-horizon plan {plan.total}"
    )
    assert median < events / 2


def test_analysis_promotes_the_better_arm_and_matches_the_vectorized_sequence() -> None:
    rng = np.random.default_rng(7)
    stats = {"control": ArmStats.of(rng.random(5000) < 0.10), "bandit": ArmStats.of(rng.random(5000) < 0.14)}
    analysis = analyze("exp", stats, {"control": 0.5, "bandit": 0.5}, "control", alpha=ALPHA)
    assert analysis.decision == PROMOTE and analysis.winner == "bandit"
    comparison = analysis.comparisons[0]
    assert comparison.likelihood_ratio >= 1 / ALPHA  # the mSPRT rejects exactly when the sequence excludes 0
    s = stats["control"], stats["bandit"]
    diff, half = difference_sequence(
        *((np.float64(a.n), np.float64(a.total), np.float64(a.total_sq)) for a in s), alpha=ALPHA, mixture_scale=0.02
    )
    assert comparison.sequence == pytest.approx((float(diff - half), float(diff + half)))
    # The fixed-horizon interval is narrower than the always-valid one (the price of looking at any time).
    lo, hi = comparison.fixed_horizon.interval
    assert comparison.sequence[0] < lo < hi < comparison.sequence[1]


def test_welch_test_agrees_with_scipy_on_raw_samples() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.0, 1.0, 300), rng.normal(0.3, 2.0, 500)
    result = welch_test(ArmStats.of(a), ArmStats.of(b))
    expected = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert result.statistic == pytest.approx(expected.statistic) and result.p_value == pytest.approx(expected.pvalue)


def test_sample_size_matches_the_hand_computed_value() -> None:
    # 10% baseline click rate, +2 points, alpha 0.05 two-sided, power 0.8, 50/50:
    # (1.959964 + 0.841621)^2 * (0.1 * 0.9 + 0.12 * 0.88) / 0.02^2 = 7.848879 * 0.1956 / 0.0004 = 3838.1 per arm.
    plan = sample_size(baseline_mean=0.10, minimum_effect=0.02, alpha=0.05, power=0.8)
    assert plan.per_arm == (3839, 3839) and plan.total == 7678
    # Unequal shares need more events in total for the same precision.
    assert sample_size(baseline_mean=0.10, minimum_effect=0.02, shares=(0.8, 0.2)).total > plan.total
    with pytest.raises(ValueError):
        sample_size(baseline_mean=0.10, minimum_effect=0.0)


def test_sample_ratio_mismatch_flags_52_48_at_large_n_and_not_a_fair_split() -> None:
    assert sample_ratio_check([52_000, 48_000], [0.5, 0.5]).mismatch
    assert not sample_ratio_check([50_110, 49_890], [0.5, 0.5]).mismatch
    assert not sample_ratio_check([52, 48], [0.5, 0.5]).mismatch  # too few to tell
    rng = np.random.default_rng(5)
    fair = np.bincount(rng.choice(3, size=100_000, p=[0.5, 0.3, 0.2]), minlength=3)
    assert not sample_ratio_check(fair.tolist(), [0.5, 0.3, 0.2]).mismatch
    analysis = analyze(
        "exp", {"a": ArmStats(52_000, 5200, 5200), "b": ArmStats(48_000, 4800, 4800)}, {"a": 0.5, "b": 0.5}, "a"
    )
    assert analysis.decision == "stop" and "sample ratio" in analysis.reason
    assert math.isclose(sum(analysis.shares.values()), 1.0)

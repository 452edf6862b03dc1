"""Intervals and weight diagnostics against direct computations, and the merge property Dask relies on."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import norm

from simulators.data import ActionDist, LoggedBandit
from simulators.diagnostics import MIN_TRUSTED_ESS, weight_diagnostics
from simulators.evaluate import EvaluationConfig, evaluate_policy
from simulators.log_evaluation import evaluate_log
from simulators.results import Interval
from simulators.stats import Clusters, Terms, TermStats
from simulators.text_report import format_table

Z = norm.ppf(0.975)


def _stats(terms: Terms, round_id=None, n_bootstrap=0, seed=0, range_bound=1.0):
    round_id = np.arange(terms.plain.shape[0]) if round_id is None else np.asarray(round_id)
    return TermStats.from_terms(
        terms,
        Clusters.from_round_ids(round_id),
        range_bound=range_bound,
        n_bootstrap=n_bootstrap,
        rng=np.random.default_rng(seed),
    )


def test_normal_interval_of_a_mean_is_the_textbook_one():
    values = [0.4, 0.0, 1.25, 1.0]  # the IPW terms of the 4-row example in test_estimators
    stats = _stats(Terms(plain=np.array(values)))
    half = Z * statistics.stdev(values) / math.sqrt(4)
    low, high = stats.normal_interval(0.05)
    assert stats.value() == pytest.approx(0.6625)
    assert (low, high) == pytest.approx((0.6625 - half, 0.6625 + half))


def test_normal_interval_of_a_ratio_uses_the_delta_method():
    w = np.array([0.4, 1.6, 1.25, 1.0])
    r = np.array([1.0, 0.0, 1.0, 1.0])
    stats = _stats(Terms(plain=np.zeros(4), ratio_num=w * r, ratio_den=w))
    ratio = (w * r).sum() / w.sum()
    # Linearization of sum(w r) / sum(w): psi_i = (w_i r_i - ratio w_i) / mean(w).
    psi = (w * r - ratio * w) / w.mean()
    expected_se = statistics.stdev(psi) / 2.0
    assert stats.value() == pytest.approx(ratio)
    assert stats.standard_error() == pytest.approx(expected_se)


def test_rounds_are_resampled_together():
    # Two rows per round: the standard error comes from the 3 round totals, not from 6 independent rows.
    values = np.array([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    stats = _stats(Terms(plain=values), round_id=[7, 7, 8, 8, 9, 9])
    round_means = [1.0, 0.0, 0.5]
    assert stats.standard_error() == pytest.approx(statistics.stdev(round_means) / math.sqrt(3))
    assert stats.n_rounds == 3 and stats.max_round_rows == 2


def test_bernstein_interval_follows_maurer_pontil():
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 2, size=500)
    stats = _stats(Terms(plain=values), range_bound=2.0)
    log_term = math.log(4 / 0.05)
    half = math.sqrt(2 * statistics.variance(values) * log_term / 500) + 7 * 2.0 * log_term / (3 * 499)
    assert stats.bernstein_interval(0.05) == pytest.approx((values.mean() - half, values.mean() + half))
    # Wider than the normal interval: it pays for holding in finite samples.
    assert stats.bernstein_interval(0.05)[1] > stats.normal_interval(0.05)[1]


def test_bernstein_interval_is_unbounded_when_the_weight_bound_is_infinite():
    stats = _stats(Terms(plain=np.ones(10)), range_bound=math.inf)
    assert stats.bernstein_interval(0.05) == (-math.inf, math.inf)


def test_bootstrap_percentile_interval_is_reproducible_and_near_normal():
    rng = np.random.default_rng(0)
    values = rng.normal(1.0, 1.0, size=2000)
    a = _stats(Terms(plain=values), n_bootstrap=400, seed=5).bootstrap_interval(0.05)
    b = _stats(Terms(plain=values), n_bootstrap=400, seed=5).bootstrap_interval(0.05)
    normal = _stats(Terms(plain=values)).normal_interval(0.05)
    assert a == b
    assert a[0] == pytest.approx(normal[0], abs=0.02) and a[1] == pytest.approx(normal[1], abs=0.02)
    assert _stats(Terms(plain=values)).bootstrap_interval(0.05) is None  # no replicates requested


def test_statistics_of_parts_merge_to_those_of_the_whole():
    rng = np.random.default_rng(1)
    w = rng.exponential(size=300)
    terms = Terms(plain=rng.normal(size=300), ratio_num=w * rng.random(300), ratio_den=w)
    rounds = np.repeat(np.arange(150), 2)
    whole = _stats(terms, rounds)
    first = _stats(Terms(terms.plain[:100], terms.ratio_num[:100], terms.ratio_den[:100]), rounds[:100])
    second = _stats(Terms(terms.plain[100:], terms.ratio_num[100:], terms.ratio_den[100:]), rounds[100:])
    merged = first.merge(second)
    assert merged.value() == pytest.approx(whole.value(), rel=1e-12)
    assert merged.standard_error() == pytest.approx(whole.standard_error(), rel=1e-9)
    assert merged.n_rounds == whole.n_rounds == 150


def test_weight_diagnostics_by_hand():
    w = np.array([0.0] * 50 + [1.0] * 149 + [51.0])  # n = 200, sum w = 200
    d = weight_diagnostics(w, support_violations=3)
    assert d.ess == pytest.approx(200**2 / (149 + 51**2))
    assert d.ess_ratio == pytest.approx(d.ess / 200)
    assert d.mean_weight == pytest.approx(1.0)
    assert d.max_weight == 51.0
    # The top 1% is ceil(200 / 100) = 2 weights: 51 + 1 of the 200 total.
    assert d.top1_share == pytest.approx(52 / 200)
    assert d.zero_share == pytest.approx(0.25)
    assert d.support_violations == 3


def test_uniform_weights_have_full_effective_sample_size():
    d = weight_diagnostics(np.ones(1000))
    assert d.ess == pytest.approx(1000) and d.top1_share == pytest.approx(0.01)


def _heavy_weight_log() -> tuple[LoggedBandit, ActionDist]:
    """200 rows, 0/1 rewards; the logging policy shows action 1 with probability 0.01 and did so on rows
    0-3 (one click, row 0); the target always shows action 1, so w = 100 there and 0 elsewhere."""
    n = 200
    action = np.zeros(n, dtype=np.int64)
    action[:4] = 1
    reward = np.zeros(n)
    reward[0] = 1.0
    reward[10:60] = 1.0  # clicks on action 0, which the target never shows
    logging = np.tile([0.99, 0.01], (n, 1))
    log = LoggedBandit(
        context=np.zeros((n, 0)), action=action, position=np.zeros(n, dtype=np.int64), reward=reward,
        pscore=logging[np.arange(n), action], n_actions=2, logging_dist=logging,
    )  # fmt: skip
    return log, ActionDist(np.tile([0.0, 1.0], (n, 1)))


def test_intervals_of_a_heavy_weight_log_are_clipped_to_the_reward_range():
    log, target = _heavy_weight_log()
    result = evaluate_policy(log, target, ["ipw"], config=EvaluationConfig(n_bootstrap=0)).estimate("ipw")
    # IPW terms: one 100 and 199 zeros. V = 0.5; sample variance (99.5^2 + 199 * 0.5^2) / 199 = 50, se = 0.5.
    assert result.value == pytest.approx(0.5) and result.std_error == pytest.approx(0.5)
    unclipped_normal = (0.5 - Z * 0.5, 0.5 + Z * 0.5)  # [-0.48, 1.48]
    assert unclipped_normal[0] < 0 and unclipped_normal[1] > 1
    assert (result.interval("normal").low, result.interval("normal").high) == (0.0, 1.0)
    # Bernstein: range bound 100 (weight bound 100 x reward span 1): 0.5 +- 6.62 before clipping.
    half = math.sqrt(2 * 50 * math.log(80) / 200) + 7 * 100 * math.log(80) / (3 * 199)
    assert half == pytest.approx(6.618, abs=0.001)
    assert (result.interval("bernstein").low, result.interval("bernstein").high) == (0.0, 1.0)


def test_clipping_keeps_intervals_inside_and_collapses_those_outside():
    values = np.array([0.4, 0.0, 1.25, 1.0])
    inside = _stats(Terms(plain=values, bounds=(0.0, 2.0)))
    half = Z * statistics.stdev(values) / 2
    assert inside.normal_interval(0.05) == pytest.approx((0.6625 - half, 0.6625 + half))  # not binding
    assert inside.clip(-1.0, 3.0) == (0.0, 2.0)
    assert inside.clip(2.5, 3.0) == (2.0, 2.0) and inside.clip(-3.0, -1.0) == (0.0, 0.0)
    low, high = inside.clip(math.nan, math.nan)
    assert math.isnan(low) and math.isnan(high)
    unbounded = _stats(Terms(plain=np.ones(10), bounds=(0.0, 1.0)), range_bound=math.inf)
    assert unbounded.bernstein_interval(0.05) == (0.0, 1.0)
    assert _stats(Terms(plain=values)).clip(-1.0, 3.0) == (-1.0, 3.0)  # no bounds, no clipping


def test_merged_bounds_are_the_union_of_the_parts():
    a = _stats(Terms(plain=np.zeros(3), bounds=(0.0, 0.0)))
    b = _stats(Terms(plain=np.ones(3), bounds=(0.0, 1.0)))
    assert a.merge(b).bounds == (0.0, 1.0)
    assert a.merge(_stats(Terms(plain=np.ones(3)))).bounds is None


def test_interval_record_says_what_it_was_clipped_to():
    clipped = Interval("bernstein", 0.95, 0.0, 1.0, clipped_to=(0.0, 1.0))
    assert clipped.to_dict() == {
        "method": "bernstein",
        "level": 0.95,
        "low": 0.0,
        "high": 1.0,
        "clipped_to": [0.0, 1.0],
    }
    assert "clipped_to" not in Interval("normal", 0.95, 0.1, 0.2).to_dict()


def test_effective_sample_size_below_the_threshold_is_flagged():
    assert MIN_TRUSTED_ESS == 100
    assert weight_diagnostics(np.ones(99)).low_ess and not weight_diagnostics(np.ones(100)).low_ess
    w = np.array([0.0] * 50 + [1.0] * 149 + [51.0])  # the hand-computed example above: ESS = 14.5
    assert weight_diagnostics(w).low_ess and weight_diagnostics(w).to_dict()["low_ess"] is True
    assert weight_diagnostics(np.zeros(10)).low_ess  # no weight at all: ESS 0


def test_low_effective_sample_size_is_shown_in_the_json_and_the_table():
    log, _ = _heavy_weight_log()  # uniform target: w = 0.5 / 0.01 = 50 on rows 0-3, 0.5 / 0.99 elsewhere
    run = evaluate_log(log, ["uniform"], estimators=["ipw"], config=EvaluationConfig(n_bootstrap=0))
    evaluation = run.report.evaluations[0]
    assert evaluation.diagnostics.ess == pytest.approx(
        (4 * 50 + 196 * 0.5 / 0.99) ** 2 / (4 * 50**2 + 196 * (0.5 / 0.99) ** 2), rel=1e-9
    )
    document = run.report.to_dict()["evaluations"][0]
    assert document["low_ess"] is True and document["diagnostics"]["low_ess"] is True
    table = format_table(run.report)
    assert "uniform !" in table
    assert "! effective sample size below 100: too few effectively weighted rows" in table


def test_table_footnotes_clipped_intervals_and_default_lambdas():
    log, _ = _heavy_weight_log()
    config = EvaluationConfig(n_bootstrap=0)
    report = evaluate_log(log, ["uniform"], estimators=["ipw", "switch-dr", "dr-os:lambda=5"], config=config).report
    table = format_table(report)
    assert "switch-dr at its default lambda (Open Bandit Pipeline's) is dr" in table
    assert "dr-os at its default" not in table  # given a lambda: no footnote
    # The evaluation records the range it clipped to (the log's 0/1 rewards), and the footnote names it.
    assert "intervals clipped to the reward range [0, 1], where every policy's value lies" in table
    evaluation = report.evaluations[0]
    assert all(i.clipped_to == (0.0, 1.0) for e in evaluation.estimates for i in e.intervals)
    ipw = evaluation.estimates[0]
    unnamed = replace(ipw, intervals=tuple(replace(i, clipped_to=None) for i in ipw.intervals))
    unnamed_report = replace(report, evaluations=(replace(evaluation, estimates=(unnamed,)),))
    assert "intervals clipped to the reward range, where every policy's value lies" in format_table(unnamed_report)

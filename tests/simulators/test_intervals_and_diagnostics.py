"""Intervals and weight diagnostics against direct computations, and the merge property Dask relies on."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy.stats import norm

from simulators.diagnostics import weight_diagnostics
from simulators.stats import Clusters, Terms, TermStats

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

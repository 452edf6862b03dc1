"""The event-id-seeded sampler: exact, reproducible, never picks a zero-probability item."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare, kstest

from recommender.policy.sampling import (
    ccb_seed,
    ranking_from,
    sample_from_event_id,
    sample_index,
    uniform_from_event_id,
)


def test_uniform_is_deterministic_and_uniform() -> None:
    us = [uniform_from_event_id(f"event-{i}") for i in range(20_000)]
    assert us == [uniform_from_event_id(f"event-{i}") for i in range(20_000)]
    assert all(0.0 <= u < 1.0 for u in us)
    assert kstest(us, "uniform").pvalue > 0.001
    assert uniform_from_event_id("a", salt="x") != uniform_from_event_id("a")


def test_inverse_cdf_boundaries() -> None:
    pmf = np.array([0.25, 0.0, 0.5, 0.25])
    assert sample_index(pmf, 0.0) == 0
    assert sample_index(pmf, 0.2499999) == 0
    assert sample_index(pmf, 0.25) == 2  # item 1 has an empty interval
    assert sample_index(pmf, 0.75) == 3
    assert sample_index(pmf, 1 - 2**-53) == 3
    assert sample_index(np.array([0.5, 0.5, 0.0]), 1 - 2**-53) == 1  # top of the CDF: never a zero item
    with pytest.raises(ValueError, match=r"u must be in \[0, 1\)"):
        sample_index(pmf, 1.0)


@pytest.mark.parametrize("pmf", [[0.91, 0.03, 0.03, 0.03], [0.1, 0.0, 0.2, 0.3, 0.4], [1.0], [0.5, 0.5]])
def test_choices_have_the_pmf_frequencies(pmf: list[float]) -> None:
    p = np.array(pmf)
    n = 30_000
    counts = np.bincount([sample_from_event_id(p, f"id-{i}") for i in range(n)], minlength=len(p))
    assert counts[p == 0].sum() == 0
    positive = p > 0
    if positive.sum() > 1:
        assert chisquare(counts[positive], p[positive] * n).pvalue > 0.001


def test_ranking_puts_chosen_first_then_descending_with_stable_ties() -> None:
    pmf = np.array([0.1, 0.4, 0.1, 0.3, 0.1])
    assert ranking_from(pmf, (3,)) == (3, 1, 0, 2, 4)
    assert ranking_from(pmf, (4, 0)) == (4, 0, 1, 3, 2)


def test_ccb_seeds_are_tag_safe_and_distinct_per_slot() -> None:
    seeds = [ccb_seed("event with spaces|and:colons", s) for s in range(3)]
    assert len(set(seeds)) == 3
    assert all(seed.replace("-", "").isalnum() for seed in seeds)
    assert seeds == [ccb_seed("event with spaces|and:colons", s) for s in range(3)]

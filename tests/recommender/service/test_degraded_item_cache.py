"""A degraded decision (default rows in place of the store's, e.g. a feature read that timed out) must not
evict the item cache's real examples: the next normal decision finds every item cached."""

from __future__ import annotations

from types import MappingProxyType

from recommender.policy.policy import Policy
from recommender.settings.policy import PolicyConfig
from tests.recommender.policy import synthetic_policy_problem as sp


def _decide(policy: Policy, event_id: str, rows, degraded: bool):
    ctx = sp.contexts(1, seed=3)[0]
    return policy.decide(event_id=event_id, user_id=ctx.user_id, user_features=ctx.user_features,
                         context=ctx.context, candidate_ids=sp.CANDIDATE_IDS, candidate_features=rows,
                         degraded=degraded)  # fmt: skip


def test_a_degraded_decision_keeps_the_cached_examples_of_real_rows() -> None:
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    real = [MappingProxyType(dict(row)) for row in sp.CANDIDATES]
    default = MappingProxyType({name: spec.default_value() for name, spec in sp.ITEM_GROUP.features.items()})
    k = len(real)
    _decide(policy, "warm", real, degraded=False)
    assert policy.cache_info()["misses"] == k
    degraded = _decide(policy, "degraded", [default] * k, degraded=True)
    assert degraded.degraded
    misses = policy.cache_info()["misses"]
    _decide(policy, "after", real, degraded=False)
    info = policy.cache_info()
    assert info["misses"] == misses, "the degraded decision evicted real examples"
    assert info["size"] == k

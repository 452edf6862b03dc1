"""SquareCB's gamma_scale as a live dial: a model whose VW reduction was built at one scale serves another
exactly (recommender.policy.squarecb_scale), on real VW, without reloading the workspace."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.errors import ExplorationChangeError
from recommender.policy.policy import Policy
from recommender.policy.squarecb_scale import rescale_pmf
from recommender.settings.policy import PolicyConfig
from tests.recommender.policy import synthetic_policy_problem as sp

PROBES = sp.contexts(12, seed=77)
# Candidate sets of several sizes; "tie" repeats item 3 (same features, another id: the same predicted cost),
# "tie-best" repeats every item, so the best cost is always shared by two candidates.
CANDIDATE_SETS = {
    "K=2": [0, 1],
    "K=3": [2, 5, 7],
    "K=8": list(range(8)),
    "tie": [3, 3, 1, 6],
    "tie-best": [0, 0, 1, 1, 2, 2],
}


def squarecb(gamma_scale: float, **extra: object) -> PolicyConfig:
    return PolicyConfig.model_validate({
        "exploration": {"algorithm": "squarecb", "gamma_scale": gamma_scale, **extra},
        "learning": {"learning_rate": 1.0},
    })  # fmt: skip


def candidates(name: str) -> tuple[list[str], list[dict]]:
    rows = CANDIDATE_SETS[name]
    return [f"c{j}-{i}" for j, i in enumerate(rows)], [sp.CANDIDATES[i] for i in rows]


def pmfs(policy: Policy) -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for name in CANDIDATE_SETS:
        ids, rows = candidates(name)
        for p, ctx in enumerate(PROBES):
            out[name, p] = policy.predict_pmf(ctx.user_features, ctx.context, rows, candidate_ids=ids)
    return out


def test_the_rescale_is_the_squarecb_rule_at_the_new_gamma() -> None:
    """Pure arithmetic: VW's rule at gamma g, rescaled by r, is VW's rule at r * g (ties included)."""
    rng = np.random.default_rng(3)

    def rule(costs: np.ndarray, gamma: float) -> np.ndarray:
        best = int(np.argmin(costs))  # the first minimum, as VW
        p = 1.0 / (len(costs) + gamma * (costs - costs[best]))
        p[best] = 0.0
        p[best] = 1.0 - p.sum()
        return p

    for k in (1, 2, 3, 10, 50):
        for _ in range(20):
            costs = rng.normal(size=k).round(1)  # rounding makes ties, best ones too
            for gamma, ratio in ((0.0, 4.0), (3.0, 0.2), (40.0, 5.0), (500.0, 1.0)):
                np.testing.assert_allclose(rescale_pmf(rule(costs, gamma), ratio), rule(costs, gamma * ratio),
                                           rtol=1e-9, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize(("s_model", "s_served"), [(50.0, 10.0), (10.0, 50.0), (50.0, 400.0)])
def test_a_model_served_at_another_scale_matches_vw_built_at_that_scale(s_model: float, s_served: float) -> None:
    """Same events, same seed: the model built at s_model, served at s_served, gives VW's own pmf at s_served
    at every t (examples learned), for several K and with ties."""
    trained = Policy.create(squarecb(s_model), sp.USER_GROUP, sp.ITEM_GROUP)
    reference = Policy.create(squarecb(s_served), sp.USER_GROUP, sp.ITEM_GROUP)
    served = trained.with_exploration({"algorithm": "squarecb", "gamma_scale": s_served})
    assert served.model_exploration.gamma_scale == s_model  # VW keeps the model's own scale
    events = sp.uniform_events(400, seed=11)
    done = 0
    for t in (0, 1, 10, 400):
        assert trained.learn(events[done:t]) == reference.learn(events[done:t]) == t - done
        done = t
        want, got, own = pmfs(reference), pmfs(served), pmfs(trained)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-5, err_msg=f"t={t} {key}")
        if t >= 10:  # not vacuous: the model's own scale gives another pmf
            assert max(np.abs(own[key] - want[key]).max() for key in want) > 0.05
    ctx = PROBES[0]
    ids, rows = candidates("K=8")
    decisions = [p.decide(event_id="ev-1", user_id=ctx.user_id, user_features=ctx.user_features,
                          context=ctx.context, candidate_ids=ids, candidate_features=rows)
                 for p in (served, reference)]  # fmt: skip
    np.testing.assert_allclose(decisions[0].pmf, decisions[1].pmf, atol=1e-5)
    assert decisions[0].chosen_index == decisions[1].chosen_index
    assert decisions[0].exploration == {"algorithm": "squarecb", "gamma_scale": s_served, "gamma_exponent": 0.5,
                                        "elim": False}  # fmt: skip


def test_gamma_exponent_zero_rescales_from_the_first_decision() -> None:
    """With exponent 0 gamma = gamma_scale even at t = 0, so the pmf is not uniform before any learning."""
    trained = Policy.create(squarecb(5.0, gamma_exponent=0.0), sp.USER_GROUP, sp.ITEM_GROUP)
    reference = Policy.create(squarecb(80.0, gamma_exponent=0.0), sp.USER_GROUP, sp.ITEM_GROUP)
    events = sp.uniform_events(50, seed=4)
    trained.learn(events)
    reference.learn(events)
    served = trained.with_exploration({"algorithm": "squarecb", "gamma_scale": 80.0, "gamma_exponent": 0.0})
    want, got = pmfs(reference), pmfs(served)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5, err_msg=str(key))


def test_a_scale_change_shares_the_workspace_and_its_learning() -> None:
    policy = Policy.create(squarecb(50.0), sp.USER_GROUP, sp.ITEM_GROUP)
    policy.learn(sp.uniform_events(100, seed=1))
    changed = policy.with_exploration({"algorithm": "squarecb", "gamma_scale": 20.0})
    assert changed.model_version == policy.model_version
    assert changed.config.exploration.gamma_scale == 20.0 and changed.model_exploration.gamma_scale == 50.0
    assert changed.with_exploration({"algorithm": "squarecb", "gamma_scale": 50.0}).model_exploration == \
        policy.model_exploration  # back to the model's own: no rescale, same workspace  # fmt: skip
    policy.close()  # the old one goes; the workspace stays for the policy still serving it
    changed.learn(sp.uniform_events(10, seed=2))
    assert changed.model_version.endswith("+110")
    ctx = PROBES[0]
    assert changed.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES).sum() == pytest.approx(1.0)
    changed.close()


@pytest.mark.parametrize(
    ("start", "new", "mode", "message"),
    [
        ({"elim": True}, {"elim": True, "gamma_scale": 20.0}, "cb", r"exploration\.gamma_scale from 50\.0 to 20\.0"),
        ({}, {"gamma_scale": 20.0}, "ccb", r"exploration\.gamma_scale from 50\.0 to 20\.0"),
        ({}, {"gamma_exponent": 0.3}, "cb", r"exploration\.gamma_exponent"),
        ({"elim": True}, {"elim": False}, "cb", r"exploration\.elim from True to False"),  # VW would keep it
        ({}, {"elim": True, "gamma_scale": 20.0}, "cb", r"exploration\.gamma_scale from 50\.0 to 20\.0"),
    ],
)
def test_squarecb_changes_vw_must_make_stay_refused(start: dict, new: dict, mode: str, message: str) -> None:
    config = PolicyConfig.model_validate({"mode": mode, "exploration": {"algorithm": "squarecb", "gamma_scale": 50.0,
                                                                        **start}})  # fmt: skip
    policy = Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP)
    with pytest.raises(ExplorationChangeError, match=message):
        policy.with_exploration({"algorithm": "squarecb", "gamma_scale": 50.0, **start, **new})
    policy.close()


def test_elim_can_be_turned_on_keeping_the_models_own_scale() -> None:
    """VW takes --elim on a model trained without it (not the other way round)."""
    policy = Policy.create(squarecb(50.0), sp.USER_GROUP, sp.ITEM_GROUP)
    policy.learn(sp.uniform_events(50, seed=6))
    elim = policy.with_exploration({"algorithm": "squarecb", "gamma_scale": 50.0, "elim": True})
    assert elim.model_exploration.elim and elim.model_version == policy.model_version
    ctx = PROBES[0]
    assert elim.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES).sum() == pytest.approx(1.0)
    for p in (policy, elim):
        p.close()

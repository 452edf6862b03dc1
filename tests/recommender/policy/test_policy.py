"""The VW policy end to end, on real VW with fixed seeds, against a problem with a known best item."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from recommender.errors import ExampleError, ExplorationChangeError, PolicyError
from recommender.policy.policy import Policy
from recommender.settings.policy import PolicyConfig
from tests.recommender.policy import synthetic_policy_problem as sp

HELD_OUT = sp.contexts(300, seed=999)


def make_policy(**overrides) -> Policy:
    return Policy.create(PolicyConfig.model_validate(overrides), sp.USER_GROUP, sp.ITEM_GROUP)


def decide(policy: Policy, ctx: sp.Context, event_id: str, **kwargs):
    return policy.decide(
        event_id=event_id,
        user_id=ctx.user_id,
        user_features=ctx.user_features,
        context=ctx.context,
        candidate_ids=sp.CANDIDATE_IDS,
        candidate_features=sp.CANDIDATES,
        **kwargs,
    )


def pmf_of(policy: Policy, ctx: sp.Context) -> np.ndarray:
    return policy.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES, candidate_ids=sp.CANDIDATE_IDS)


@pytest.fixture(scope="module")
def trained() -> Policy:
    """Trained on 20,000 uniform-random logged decisions."""
    policy = make_policy(exploration={"algorithm": "epsilon_greedy", "epsilon": 0.1})
    assert policy.learn(sp.uniform_events(20_000, seed=1)) == 20_000
    return policy


def test_learns_the_known_best_item_for_held_out_contexts(trained: Policy) -> None:
    greedy = trained.with_exploration({"algorithm": "greedy"})
    picks = [decide(greedy, ctx, f"held-{i}").chosen_index for i, ctx in enumerate(HELD_OUT)]
    accuracy = np.mean([pick == ctx.best for pick, ctx in zip(picks, HELD_OUT, strict=True)])
    assert accuracy >= 0.9, accuracy
    # The greedy decision is the argmax of the exploring policy's pmf too.
    assert all(int(np.argmax(pmf_of(trained, ctx))) == pick for ctx, pick in zip(HELD_OUT, picks, strict=True))


@pytest.mark.parametrize("epsilon", [0.05, 0.2, 0.5])
def test_epsilon_greedy_gives_exact_probabilities(trained: Policy, epsilon: float) -> None:
    policy = trained.with_exploration({"algorithm": "epsilon_greedy", "epsilon": epsilon})
    for ctx in HELD_OUT[:100]:
        pmf = pmf_of(policy, ctx)
        greedy = int(np.argmax(pmf))
        assert pmf[greedy] == pytest.approx(1 - epsilon + epsilon / sp.K, abs=1e-6)
        others = np.delete(pmf, greedy)
        np.testing.assert_allclose(others, epsilon / sp.K, atol=1e-6)
        assert abs(pmf.sum() - 1.0) < 1e-6


EXPLORATIONS = [
    {"algorithm": "epsilon_greedy", "epsilon": 0.1},
    {"algorithm": "greedy"},
    {"algorithm": "softmax", "lambda": 5.0, "epsilon": 0.02},
    {"algorithm": "bagging", "bags": 3, "epsilon": 0.05},
    {"algorithm": "online_cover", "policies": 2, "psi": 1.0},
    {"algorithm": "squarecb", "gamma_scale": 10.0},
    {"algorithm": "rnd", "networks": 2},
    {"algorithm": "explore_first", "tau": 50},
]


@pytest.mark.parametrize("mode", ["cb", "ccb"])
@pytest.mark.parametrize("exploration", EXPLORATIONS, ids=lambda e: e["algorithm"])
def test_every_exploration_gives_valid_decisions(exploration: dict, mode: str) -> None:
    interactions = [["user", "item"], ["context", "item"]]
    policy = make_policy(exploration=exploration, mode=mode, interactions=interactions, seed=3)
    slots = 2 if mode == "ccb" else 1
    policy.learn(sp.uniform_events(300, seed=7, slots=slots))
    for i, ctx in enumerate(HELD_OUT[:40]):
        decision = decide(policy, ctx, f"e-{i}", slots=slots if mode == "ccb" else None)
        for pmf in decision.pmfs:
            assert abs(sum(pmf) - 1.0) < 1e-6 and min(pmf) >= 0.0
        assert decision.exploration == policy.exploration_settings()
        assert decision.exploration["algorithm"] == exploration["algorithm"]
        assert abs(policy.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES).sum() - 1.0) < 1e-6


def test_same_event_id_gives_the_same_choice(trained: Policy) -> None:
    policy = trained.with_exploration({"algorithm": "epsilon_greedy", "epsilon": 0.5})
    ctx = HELD_OUT[0]
    first = [decide(policy, ctx, f"evt-{i}") for i in range(200)]
    again = [decide(policy, ctx, f"evt-{i}") for i in range(200)]
    assert [d.chosen for d in first] == [d.chosen for d in again]
    assert [d.pmfs for d in first] == [d.pmfs for d in again]
    assert len({d.chosen_index for d in first}) > 3  # different ids explore different items


def test_choices_follow_the_logged_pmf(trained: Policy) -> None:
    """Over many event ids, the chosen item's frequencies match the pmf (chi-square, fixed ids)."""
    from scipy.stats import chisquare

    policy = trained.with_exploration({"algorithm": "softmax", "lambda": 1.0})
    ctx = HELD_OUT[3]
    n = 20_000
    decisions = [decide(policy, ctx, f"freq-{i}") for i in range(n)]
    pmf = np.array(decisions[0].pmf)
    counts = np.bincount([d.chosen_index for d in decisions], minlength=sp.K)
    assert all(d.pmf == decisions[0].pmf for d in decisions)
    assert chisquare(counts, pmf * n).pvalue > 0.001
    assert all(d.probability == d.pmf[d.chosen_index] > 0 for d in decisions)


def test_ranking_is_chosen_first_then_descending_probability(trained: Policy) -> None:
    policy = trained.with_exploration({"algorithm": "softmax", "lambda": 2.0})
    for i, ctx in enumerate(HELD_OUT[:50]):
        decision = decide(policy, ctx, f"rank-{i}")
        assert decision.ranking[0] == decision.chosen_index
        assert sorted(decision.ranking) == list(range(sp.K))  # every candidate once, nothing else
        rest = [decision.pmf[j] for j in decision.ranking[1:]]
        assert rest == sorted(rest, reverse=True)


def test_only_the_given_candidates_get_probability(trained: Policy) -> None:
    keep = [0, 2, 5]  # the caller excluded the others before asking
    ctx = HELD_OUT[1]
    decision = trained.decide(
        event_id="subset",
        user_id=None,
        user_features=ctx.user_features,
        context=ctx.context,
        candidate_ids=[sp.CANDIDATE_IDS[i] for i in keep],
        candidate_features=[sp.CANDIDATES[i] for i in keep],
    )
    assert decision.candidate_ids == tuple(sp.CANDIDATE_IDS[i] for i in keep)
    assert len(decision.pmf) == 3 and sorted(decision.ranking) == [0, 1, 2]


def test_exploration_change_keeps_greedy_choices_and_changes_only_the_pmf(trained: Policy) -> None:
    before = [pmf_of(trained, ctx) for ctx in HELD_OUT]
    for settings in (
        {"algorithm": "epsilon_greedy", "epsilon": 0.3},
        {"algorithm": "greedy"},
        {"algorithm": "softmax", "lambda": 3.0},
    ):
        changed = trained.with_exploration(settings)
        after = [pmf_of(changed, ctx) for ctx in HELD_OUT]
        assert [int(np.argmax(p)) for p in after] == [int(np.argmax(p)) for p in before]
        assert not all(np.allclose(a, b) for a, b in zip(after, before, strict=True))
        assert changed.model_version == trained.model_version
        assert changed.exploration_settings()["algorithm"] == settings["algorithm"]
    # The original policy is untouched.
    assert all(np.allclose(pmf_of(trained, ctx), b) for ctx, b in zip(HELD_OUT, before, strict=True))


def test_exploration_change_within_bagging_keeps_its_ensemble() -> None:
    policy = make_policy(exploration={"algorithm": "bagging", "bags": 3, "epsilon": 0.0}, seed=5)
    policy.learn(sp.uniform_events(3000, seed=2))
    changed = policy.with_exploration({"algorithm": "bagging", "bags": 3, "epsilon": 0.2})
    for ctx in HELD_OUT[:50]:
        a, b = pmf_of(policy, ctx), pmf_of(changed, ctx)
        assert int(np.argmax(a)) == int(np.argmax(b))
        assert b.min() >= 0.2 / sp.K - 1e-6


@pytest.mark.parametrize(
    ("start", "new", "message"),
    [
        ({"algorithm": "epsilon_greedy"}, {"algorithm": "bagging", "bags": 3}, "from 'epsilon_greedy' to 'bagging'"),
        ({"algorithm": "epsilon_greedy"}, {"algorithm": "rnd"}, "from 'epsilon_greedy' to 'rnd'"),
        ({"algorithm": "softmax"}, {"algorithm": "epsilon_greedy"}, "from 'softmax' to 'epsilon_greedy'"),
        ({"algorithm": "bagging", "bags": 3}, {"algorithm": "bagging", "bags": 5}, r"exploration\.bags from 3 to 5"),
        ({"algorithm": "online_cover"}, {"algorithm": "online_cover", "psi": 0.5}, r"exploration\.psi"),
        (
            {"algorithm": "online_cover", "epsilon": 0.05},
            {"algorithm": "online_cover"},
            r"exploration\.epsilon from 0\.05 to unset",
        ),
        (  # without elim, gamma_scale is a live dial (test_squarecb_scale.py); with elim VW must apply it
            {"algorithm": "squarecb", "elim": True},
            {"algorithm": "squarecb", "elim": True, "gamma_scale": 50},
            r"exploration\.gamma_scale",
        ),
        ({"algorithm": "squarecb"}, {"algorithm": "squarecb", "gamma_exponent": 0.3}, r"exploration\.gamma_exponent"),
        ({"algorithm": "explore_first", "tau": 5}, {"algorithm": "explore_first", "tau": 9}, r"exploration\.tau"),
        (
            {"algorithm": "epsilon_greedy"},
            {"algorithm": "epsilon_greedy", "epsilon": 2},
            r"exploration\.epsilon: must be <= 1",
        ),
        ({"algorithm": "epsilon_greedy"}, {"algorithm": "boltzmann"}, "does not match any of the expected tags"),
    ],
)
def test_exploration_changes_that_cannot_keep_the_weights_are_refused(start: dict, new: dict, message: str) -> None:
    policy = make_policy(exploration=start)
    with pytest.raises(ExplorationChangeError, match=message):
        policy.with_exploration(new)


def test_online_cover_defaults_to_vws_decaying_epsilon() -> None:
    """Without an epsilon VW's cover floors probabilities at min(1/K, 1/sqrt(t K)) after t learned examples;
    with one, at epsilon/K. A fixed epsilon can be set later on the same weights."""
    decaying = make_policy(exploration={"algorithm": "online_cover", "policies": 2})
    fixed = make_policy(exploration={"algorithm": "online_cover", "policies": 2, "epsilon": 0.05})
    assert "--epsilon" not in decaying.vw_args
    for policy in (decaying, fixed):
        assert min(pmf_of(policy, HELD_OUT[0])) == pytest.approx(1 / sp.K)  # t = 0: uniform floor for both
        policy.learn(sp.uniform_events(200, seed=3))
    floors = {"decaying": 1 / np.sqrt(200 * sp.K), "fixed": 0.05 / sp.K}  # 0.0250 and 0.00625
    for name, policy in (("decaying", decaying), ("fixed", fixed)):
        lowest = min(min(pmf_of(policy, ctx)) for ctx in HELD_OUT[:20])
        assert lowest == pytest.approx(floors[name], rel=1e-5), name
    changed = decaying.with_exploration({"algorithm": "online_cover", "policies": 2, "epsilon": 0.2})
    assert min(min(pmf_of(changed, ctx)) for ctx in HELD_OUT[:20]) == pytest.approx(0.2 / sp.K, rel=1e-5)


def test_identical_exploration_returns_the_same_policy(trained: Policy) -> None:
    assert trained.with_exploration(trained.exploration_settings()) is trained


def test_predict_pmf_has_no_side_effects() -> None:
    # Explore-first counts learned examples: predictions must not consume its uniform phase.
    policy = make_policy(exploration={"algorithm": "explore_first", "tau": 3})
    events = sp.uniform_events(3, seed=11)
    policy.learn(events[:2])
    ctx = HELD_OUT[0]
    for _ in range(20):
        np.testing.assert_allclose(policy.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES), 1 / sp.K)
        decide(policy, ctx, "still-uniform")
    policy.learn(events[2:])
    assert policy.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES).max() == pytest.approx(1.0)


def test_cached_and_uncached_predictions_agree_and_changed_items_are_rebuilt(trained: Policy) -> None:
    ctx = HELD_OUT[2]
    cached = pmf_of(trained, ctx)
    fresh = trained.predict_pmf(ctx.user_features, ctx.context, sp.CANDIDATES)
    np.testing.assert_allclose(cached, fresh, atol=1e-12)
    hits = trained.cache_info()["hits"]
    pmf_of(trained, ctx)
    assert trained.cache_info()["hits"] == hits + sp.K
    # Same ids, but item-0 and the user's best item swap features: the cache must not serve old examples.
    ctx = next(c for c in HELD_OUT if c.best != 0)
    assert int(np.argmax(pmf_of(trained, ctx))) == ctx.best
    rows = list(sp.CANDIDATES)
    rows[0], rows[ctx.best] = dict(sp.CANDIDATES[ctx.best]), dict(sp.CANDIDATES[0])
    swapped = trained.predict_pmf(ctx.user_features, ctx.context, rows, candidate_ids=sp.CANDIDATE_IDS)
    np.testing.assert_allclose(swapped, trained.predict_pmf(ctx.user_features, ctx.context, rows), atol=1e-12)
    assert int(np.argmax(swapped)) == 0


def test_item_cache_is_bounded() -> None:
    policy = make_policy(item_cache_size=5)
    ctx = HELD_OUT[0]
    decide(policy, ctx, "bounded")
    assert policy.cache_info()["size"] == 5


def test_concurrent_decisions_match_sequential_ones(trained: Policy) -> None:
    policy = trained.with_exploration({"algorithm": "epsilon_greedy", "epsilon": 0.4})
    expected = {i: decide(policy, HELD_OUT[i % 50], f"thr-{i}").pmfs for i in range(400)}
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for i in range(offset, 400, 4):
                results[i] = decide(policy, HELD_OUT[i % 50], f"thr-{i}").pmfs
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(o,)) for o in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == expected


def test_multi_slot_pages_use_conditional_bandits() -> None:
    policy = make_policy(mode="ccb", interactions=[["user", "item"], ["context", "item"], ["slot", "item"]])
    policy.learn(sp.uniform_events(12_000, seed=8, slots=2))
    greedy = policy.with_exploration({"algorithm": "greedy"})
    first_right = second_right = 0
    for i, ctx in enumerate(HELD_OUT[:200]):
        decision = decide(policy, ctx, f"slate-{i}", slots=3)
        assert decision.num_slots == 3 and len(set(decision.chosen)) == 3
        for s, (pmf, chosen) in enumerate(zip(decision.pmfs, decision.chosen, strict=True)):
            assert abs(sum(pmf) - 1) < 1e-6 and pmf[chosen] > 0
            assert all(pmf[c] == 0.0 for c in decision.chosen[:s])  # no item twice
        assert decision.ranking[:3] == decision.chosen
        assert decide(policy, ctx, f"slate-{i}", slots=3).chosen == decision.chosen  # reproducible
        slate = decide(greedy, ctx, f"greedy-{i}", slots=2).chosen
        first_right += slate[0] == ctx.best
        second_right += slate[1] == ctx.best_second_slot
    assert first_right / 200 >= 0.9, first_right
    assert second_right / 200 >= 0.8, second_right


def _decide_kwargs(**overrides):
    ctx = HELD_OUT[0]
    kwargs = dict(
        event_id="bad",
        user_id=None,
        user_features=ctx.user_features,
        context=ctx.context,
        candidate_ids=sp.CANDIDATE_IDS,
        candidate_features=sp.CANDIDATES,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"candidate_ids": (), "candidate_features": ()}, PolicyError, "no candidates"),
        ({"candidate_ids": sp.CANDIDATE_IDS[:3]}, PolicyError, "3 candidate ids but 8 feature rows"),
        ({"candidate_ids": ("a",) * 8}, PolicyError, "must be unique"),
        ({"slots": 2}, PolicyError, r"needs a multi-slot policy \(policy.mode: ccb\)"),
        ({"slots": 0}, PolicyError, "slots must be a positive integer"),
        (
            {"candidate_features": ({**sp.CANDIDATES[0], "price": float("nan")},) + sp.CANDIDATES[1:]},
            ExampleError,
            r"candidate 'item-0': item feature 'price': nan is not a finite number",
        ),
        ({"user_features": {"embedding": [1.0, 2.0]}}, ExampleError, "expected a vector of 4 numbers, got 2"),
        # A nested object is a JSON namespace (VW's JSON parser); a bad value inside it is named by its path.
        ({"context": {"hour": {"nested": float("nan")}}}, ExampleError, "context feature 'hour.nested': nan is not"),
        ({"event_id": ""}, ValueError, "event_id must be a non-empty string"),
    ],
)
def test_decide_refuses_bad_input(overrides: dict, error: type, message: str) -> None:
    policy = make_policy()
    with pytest.raises(error, match=message):
        policy.decide(**_decide_kwargs(**overrides))


def test_too_many_slots_for_the_candidates_is_refused() -> None:
    policy = make_policy(mode="ccb")
    with pytest.raises(PolicyError, match="slots=9 but only 8 candidates"):
        policy.decide(**_decide_kwargs(slots=9))


def test_decision_records_model_version_flags_and_time(trained: Policy) -> None:
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    decision = trained.decide(**_decide_kwargs(event_id="flags", timestamp=when, degraded=True, deferred=True))
    assert decision.timestamp == when and decision.degraded and decision.deferred
    assert decision.model_version == trained.model_version and "+" in decision.model_version

"""The policy section: dispatch table, VW arguments, and invalid settings refused naming the key."""

from __future__ import annotations

import itertools

import pytest

from recommender.errors import ConfigError, PolicyError
from recommender.policy.policy import Policy
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config, load_document, parse_config
from recommender.settings.policy import EXPLORATION_ALGORITHMS, EpsilonGreedy, PolicyConfig, SquareCB, parse_exploration
from tests.recommender.policy import synthetic_policy_problem as sp


def test_default_config_loads() -> None:
    policy = load_config().policy
    assert policy.mode == "cb"
    assert policy.exploration == SquareCB(gamma_scale=50)
    assert policy.interactions == (("user", "item"), ("context", "item"))


def test_exploration_without_algorithm_means_epsilon_greedy() -> None:
    assert PolicyConfig.model_validate({"exploration": {"epsilon": 0.3}}).exploration == EpsilonGreedy(epsilon=0.3)


@pytest.mark.parametrize(
    ("settings", "args"),
    [
        ({"algorithm": "epsilon_greedy", "epsilon": 0.2}, ["--epsilon", "0.2"]),
        ({"algorithm": "greedy"}, ["--epsilon", "0"]),
        ({"algorithm": "softmax", "lambda": 4}, ["--softmax", "--lambda", "4.0", "--epsilon", "0.0"]),
        ({"algorithm": "bagging", "bags": 4, "greedify": True}, ["--bag", "4", "--epsilon", "0.0", "--greedify"]),
        # No --epsilon by default: VW's cover then decays its epsilon from 1 (see test_policy.py).
        (
            {"algorithm": "online_cover", "policies": 2, "nounif": True},
            ["--cover", "2", "--psi", "1.0", "--nounif"],
        ),
        (
            {"algorithm": "online_cover", "policies": 2, "epsilon": 0.05},
            ["--cover", "2", "--psi", "1.0", "--epsilon", "0.05"],
        ),
        (
            {"algorithm": "squarecb", "gamma_scale": 20, "elim": True},
            ["--squarecb", "--gamma_scale", "20.0", "--gamma_exponent", "0.5", "--elim"],
        ),
        (
            {"algorithm": "rnd", "networks": 2},
            ["--rnd", "2", "--rnd_alpha", "0.1", "--rnd_invlambda", "0.1", "--epsilon", "0.0"],
        ),
        ({"algorithm": "explore_first", "tau": 10}, ["--first", "10", "--epsilon", "0.0"]),
    ],
)
def test_each_algorithm_maps_to_vw_arguments(settings: dict, args: list[str]) -> None:
    assert parse_exploration(settings).vw_args() == args


def test_full_command_line() -> None:
    config = PolicyConfig.model_validate(
        {
            "mode": "ccb",
            "learning": {"cb_type": "dr", "learning_rate": 0.1, "power_t": 0, "l2": 1e-6},
            "bits": 20,
            "seed": 7,
            "interactions": [["user", "item"], ["slot", "item", "user"]],
        }
    )
    assert config.vw_args() == [
        "--ccb_explore_adf", "--epsilon", "0.1", "--cb_type", "dr", "-l", "0.1", "--power_t", "0.0",
        "--l2", "1e-06", "--interactions", "UI", "--interactions", "SIU", "-b", "20", "--quiet", "--random_seed", "7",
    ]  # fmt: skip
    assert "--random_seed" not in config.vw_args(reload=True)  # VW keeps its own seed in saved models


def _policy_document(policy: dict) -> dict:
    document = load_document(DEFAULT_CONFIG_PATH, env={})
    document["policy"] = policy
    return document


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"exploration": {"epsilon": 2}}, "policy.exploration.epsilon: must be <= 1"),
        ({"exploration": {"epsilon": -0.1}}, "policy.exploration.epsilon: must be >= 0"),
        ({"exploration": {"epsilon": float("nan")}}, "policy.exploration.epsilon: must be a finite number"),
        ({"exploration": {"algorithm": "softmax", "lambda": -1}}, "policy.exploration.lambda: must be >= 0"),
        ({"exploration": {"algorithm": "bagging", "bags": 1}}, "policy.exploration.bags: Input should be greater"),
        ({"exploration": {"algorithm": "bagging", "bag": 3}}, "policy.exploration.bag: Extra inputs are not permitted"),
        ({"exploration": {"algorithm": "squarecb", "gamma_scale": 0}}, "policy.exploration.gamma_scale: must be > 0"),
        ({"exploration": {"algorithm": "thompson"}}, "policy.exploration: Input tag 'thompson'"),
        (
            {"exploration": {"algorithm": "squarecb"}, "learning": {"cb_type": "ips"}},
            "policy.learning.cb_type: exploration 'squarecb' supports only cb_type 'mtr', not 'ips'",
        ),
        ({"learning": {"cb_type": "dm"}}, "policy.learning.cb_type: Input should be 'mtr', 'ips' or 'dr'"),
        ({"learning": {"learning_rate": 0}}, "policy.learning.learning_rate: must be > 0"),
        ({"interactions": [["user", "basket"]]}, "policy.interactions: .*unknown namespace 'basket'"),
        ({"interactions": [["user"]]}, "policy.interactions: .*crosses 2 or 3 namespaces"),
        (
            {"interactions": [["user", "item"], ["item", "user"]]},
            r"policy.interactions: \['item', 'user'\] is listed twice",
        ),
        ({"interactions": [["slot", "item"]]}, "policy.interactions: the 'slot' namespace exists only in mode 'ccb'"),
        ({"bits": 33}, "policy.bits: Input should be less than or equal to 32"),
        ({"bits": 30, "exploration": {"algorithm": "bagging", "bags": 8}}, r"policy.bits: 2\^30 weights x 8 ensemble"),
        ({"mode": "slates"}, "policy.mode: Input should be 'cb' or 'ccb'"),
        ({"explore": {}}, "policy.explore: Extra inputs are not permitted"),
    ],
)
def test_invalid_policy_settings_are_refused_naming_the_key(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_policy_document(policy), source="configs/test.yaml")


ALGORITHM_EXAMPLES = {
    "epsilon_greedy": {"epsilon": 0.2},
    "greedy": {},
    "softmax": {"lambda": 2.0},
    "bagging": {"bags": 2},
    "online_cover": {"policies": 2},
    "squarecb": {},
    "rnd": {"networks": 2},
    "explore_first": {"tau": 5},
}


@pytest.mark.parametrize(
    ("algorithm", "cb_type", "mode"),
    list(itertools.product(sorted(EXPLORATION_ALGORITHMS), ["mtr", "ips", "dr"], ["cb", "ccb"])),
)
def test_the_validation_table_agrees_with_vw(algorithm: str, cb_type: str, mode: str) -> None:
    """Every combination the config accepts, VW accepts; every one it refuses, VW refuses too."""
    settings = {"algorithm": algorithm, **ALGORITHM_EXAMPLES[algorithm]}
    document = {"mode": mode, "exploration": settings, "learning": {"cb_type": cb_type}, "bits": 12}
    try:
        config = PolicyConfig.model_validate(document)
    except ValueError:
        config = None
    # Build the same command line by hand so that VW can judge the refused combinations too.
    forced = PolicyConfig.model_validate({**document, "learning": {"cb_type": "mtr"}})
    args = forced.vw_args()
    args[args.index("--cb_type") + 1] = cb_type
    from recommender.policy.vw import VWModel

    if config is not None:
        Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP).close()
    else:
        with pytest.raises(PolicyError, match="cb_type"):
            VWModel(args)


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        ({}, {"epsilon": 0.1}, False),  # VW takes a fixed epsilon on a model trained without one
        ({"epsilon": 0.1}, {"epsilon": 0.3}, False),
        ({"epsilon": 0.1}, {}, True),  # VW would keep the stored 0.1: the decaying default cannot apply
        ({}, {"nounif": True}, False),
    ],
)
def test_online_cover_epsilon_changes_follow_what_vw_stores(old: dict, new: dict, refused: bool) -> None:
    before = parse_exploration({"algorithm": "online_cover", **old})
    refusal = before.change_refusal(parse_exploration({"algorithm": "online_cover", **new}), mode="cb")
    if refused:
        assert refusal is not None and "exploration.epsilon from 0.1 to unset" in refusal
    else:
        assert refusal is None


def test_online_cover_epsilon_defaults_to_unset_and_keeps_explicit_values() -> None:
    assert parse_exploration({"algorithm": "online_cover"}).epsilon is None
    assert parse_exploration({"algorithm": "online_cover"}).as_dict()["epsilon"] is None
    # Settings logged or stored with an explicit epsilon (as every cover model had before) still parse.
    assert parse_exploration({"algorithm": "online_cover", "epsilon": 0.05}).epsilon == 0.05

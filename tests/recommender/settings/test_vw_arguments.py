"""Personalizer learning policies (VW argument strings) <-> the policy section, and their CLI commands."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest
import yaml

from recommender.policy.vw import VWModel, model_file_arguments
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from recommender.settings.policy import (
    RND,
    Bagging,
    EpsilonGreedy,
    ExploreFirst,
    Greedy,
    OnlineCover,
    PolicyConfig,
    Softmax,
    SquareCB,
)
from recommender.settings.vw_arguments import (
    LearningPolicy,
    VWArgumentsError,
    arguments_from_policy,
    learning_policy_from_json,
    policy_from_arguments,
)

BASE = load_config(DEFAULT_CONFIG_PATH).policy
PERSONALIZER_DEFAULT = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
# The pairs of User, Context and Item in the order VW crosses them for -q :: over those three namespaces.
ALL_PAIRS = (
    ("context", "context"), ("context", "item"), ("context", "user"),
    ("item", "item"), ("item", "user"), ("user", "user"),
)  # fmt: skip


def test_personalizers_default_learning_policy():
    policy = policy_from_arguments(PERSONALIZER_DEFAULT, BASE)
    assert policy.mode == "cb" and policy.exploration == EpsilonGreedy(epsilon=0.2)
    assert (policy.learning.cb_type, policy.learning.learning_rate, policy.learning.power_t) == ("mtr", 0.001, 0.0)
    assert policy.interactions == (("any", "any"),)  # VW's wildcard stays one: VW expands it per example
    assert (policy.item_cache_size, policy.model_dir) == (BASE.item_cache_size, BASE.model_dir)


@pytest.mark.parametrize(
    ("arguments", "exploration"),
    [
        ("--cb_explore_adf", EpsilonGreedy(epsilon=0.05)),  # cb_explore_adf's own default
        ("--cb_explore_adf --epsilon 0", Greedy()),
        ("--cb_explore_adf --softmax --lambda 4 --epsilon 0.01", Softmax(lambda_=4.0, epsilon=0.01)),
        ("--cb_explore_adf --bag 7 --greedify", Bagging(bags=7, greedify=True, epsilon=0.0)),
        ("--cb_explore_adf --cover 4 --psi 0.5 --nounif", OnlineCover(policies=4, psi=0.5, nounif=True)),
        ("--cb_explore_adf --squarecb --gamma_scale 20 --elim", SquareCB(gamma_scale=20.0, elim=True)),
        ("--cb_explore_adf --rnd 2 --rnd_alpha 0.3", RND(networks=2, alpha=0.3)),
        ("--cb_explore_adf --first 50", ExploreFirst(tau=50)),
    ],
)
def test_each_exploration_algorithm(arguments, exploration):
    assert policy_from_arguments(arguments, BASE).exploration == exploration


def test_model_header_arguments_map_too():
    # What VW reports for a model saved with the default learning policy: float32 values, implied reductions.
    stored = (
        "--bit_precision 18 --cb_adf --cb_explore_adf --cb_type mtr --csoaa_ldf multiline --csoaa_rank "
        "--epsilon 0.200000002980232 --initial_regressor /x/model --learning_rate 0.00100000004749745 "
        "--no_stdin --power_t 0 --quadratic :: --quiet"
    )
    assert policy_from_arguments(stored, BASE) == policy_from_arguments(PERSONALIZER_DEFAULT, BASE)


def test_ccb_mode_and_letters():
    policy = policy_from_arguments("--ccb_explore_adf --epsilon=0.1 -q UI --interactions CIS -b 20", BASE)
    assert policy.mode == "ccb" and policy.bits == 20
    assert policy.interactions == (("user", "item"), ("context", "item", "slot"))
    wildcards = policy_from_arguments("--cb_explore_adf -q U: --cubic ::I -q ::", BASE)
    assert wildcards.interactions == (("user", "any"), ("any", "any", "item"), ("any", "any"))
    assert "--interactions U: --interactions ::I" in arguments_from_policy(wildcards)
    assert arguments_from_policy(wildcards).endswith(" -q ::")


# A shared line with our namespaces and schema-free (JSON) ones, as serving writes them for a Personalizer request.
ACTIONS = ["|Item id=espresso |i constant idespresso |j topicnews len:2", "|Item id=tea |i constant idtea |j topicx",
           "|Item id=juice |i constant idjuice |j len:3"]  # fmt: skip


def _example(tier: str, device: str, label: tuple[int, float] | None = None) -> list[str]:
    lines = [f"shared |User tier={tier} |Context device={device} | tod{device} |device os{tier}"]
    return lines + [(f"0:{label[1]}:0.3333 " if label and label[0] == j else "") + a for j, a in enumerate(ACTIONS)]


def test_an_imported_q_wildcard_model_scores_the_same_under_the_mapped_policy(tmp_path):
    """A model real VW trained with Personalizer's ``-q ::`` (softmax, so the pmf follows the scores) reloaded
    under the policy its arguments map to gives VW's own scores; spelled out as the pairs of our three
    namespaces, the crosses of the JSON namespaces are lost and the scores change."""
    arguments = "--cb_explore_adf --softmax --lambda 3 --power_t 0 -l 0.01 --cb_type mtr -q ::"
    trained = VWModel([*arguments.split(), "--quiet"])
    rng = random.Random(0)
    for _ in range(3000):
        tier, device, chosen = rng.choice(["gold", "silver"]), rng.choice(["ios", "web"]), rng.randrange(3)
        clicked = chosen == ((2 if tier == "gold" else 1) if device == "ios" else 0)
        trained.learn_text(_example(tier, device, (chosen, -1.0 if clicked else 0.0)))
    path = tmp_path / "personalizer.model"
    trained.save(path)
    trained.close()

    def pmfs(args: list[str]) -> np.ndarray:
        model = VWModel(args, initial_model=path)
        try:
            return np.array([model.predict_text(_example(t, d)) for t in ("gold", "silver") for d in ("ios", "web")])
        finally:
            model.close()

    own = pmfs(["--quiet"])
    mapped = policy_from_arguments(model_file_arguments(path), BASE)
    assert mapped.interactions == (("any", "any"),)
    np.testing.assert_array_equal(pmfs(mapped.vw_args(reload=True)), own)
    spelled_out = mapped.model_copy(update={"interactions": ALL_PAIRS})
    assert np.abs(pmfs(spelled_out.vw_args(reload=True)) - own).max() > 0.1
    # And a fresh model under the mapped policy crosses what VW's -q :: crosses: learning the same stream
    # gives the same model.
    fresh, theirs = VWModel(mapped.vw_args()), VWModel([*arguments.split(), "--quiet", "--random_seed", "0"])
    for _ in range(200):
        example = _example(rng.choice(["gold", "silver"]), rng.choice(["ios", "web"]), (rng.randrange(3), -1.0))
        fresh.learn_text(example)
        theirs.learn_text(example)
    probe = _example("gold", "ios")
    np.testing.assert_array_equal(fresh.predict_text(probe), theirs.predict_text(probe))
    fresh.close()
    theirs.close()


@pytest.mark.parametrize(
    "config",
    [BASE, policy_from_arguments(PERSONALIZER_DEFAULT, BASE), policy_from_arguments("--ccb_explore_adf -q U:", BASE)],
)
def test_export_then_import_is_the_identity(config):
    assert policy_from_arguments(arguments_from_policy(config), config) == config


def test_the_default_exports_as_personalizer_writes_it():
    arguments = arguments_from_policy(policy_from_arguments(PERSONALIZER_DEFAULT, BASE))
    assert arguments.startswith("--cb_explore_adf --epsilon 0.2 ") and arguments.endswith(" -q ::")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ("--cb_explore_adf --marginal A --coin --ignore B", ["--marginal A", "--coin", "--ignore B"]),
        ("--cb_explore_adf -q GA", ["-q GA (namespaces here are U (user), C (context), I (item))"]),
        ("--cb_explore_adf -q UIC", ["-q UIC (an interaction of 2 namespaces)"]),
        ("--cb_explore_adf --lambda 3", ["--lambda (an option of --softmax, which is not used)"]),
        ("--cb_explore_adf --bag 3 --cover 2", ["more than one exploration algorithm (--bag, --cover)"]),
        ("--epsilon 0.1", ["one of --cb_explore_adf or --ccb_explore_adf is required"]),
        ("--cb_adf --cb_explore_adf --cb_type dm", ["cb_type"]),
        ("--cb_explore_adf --epsilon 2", ["epsilon"]),
    ],
)
def test_unsupported_arguments_are_each_named(arguments, named):
    with pytest.raises(VWArgumentsError) as info:
        policy_from_arguments(arguments, BASE)
    for name in named:
        assert name in str(info.value)


def test_learning_policy_files():
    text = json.dumps({"name": "shop", "arguments": PERSONALIZER_DEFAULT})
    learning_policy = learning_policy_from_json(text, BASE)
    assert learning_policy.name == "shop"
    assert learning_policy_from_json(learning_policy.to_json(), BASE) == learning_policy
    for bad, message in [("[]", "is {"), ('{"arguments": 1}', "is {"), ("{", "JSON object"),
                         (json.dumps({"arguments": "--cb_explore_adf", "x": 1}), "unknown keys .*x")]:  # fmt: skip
        with pytest.raises(VWArgumentsError, match=message):
            learning_policy_from_json(bad, BASE)
    assert isinstance(learning_policy, LearningPolicy)


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "recommender.cli.main", "--config", str(DEFAULT_CONFIG_PATH), "policy", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_cli_round_trip(tmp_path):
    source = tmp_path / "learning-policy.json"
    source.write_text(json.dumps({"name": "Personalizer default", "arguments": PERSONALIZER_DEFAULT}))
    result = _cli("import-personalizer", str(source), "--out", str(tmp_path / "policy.yaml"))
    assert result.returncode == 0, result.stderr
    section = yaml.safe_load((tmp_path / "policy.yaml").read_text())["policy"]
    imported = PolicyConfig.model_validate({**BASE.model_dump(by_alias=True), **section})
    assert imported == policy_from_arguments(PERSONALIZER_DEFAULT, BASE)
    exported = _cli("export-personalizer", "--name", "ours")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document["name"] == "ours" and policy_from_arguments(document["arguments"], BASE) == BASE
    source.write_text(json.dumps({"arguments": "--cb_explore_adf --marginal A --coin"}))
    refused = _cli("import-personalizer", str(source))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--marginal A; --coin" in refused.stderr

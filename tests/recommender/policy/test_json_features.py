"""Schema-free (JSON) features give exactly the features of Vowpal Wabbit's own JSON parser (the one Azure
Personalizer trained with): the same namespaces, feature hashes and values for each JSON shape, compared with
real VW parsing the same JSON with ``--json``; and a model VW trained on JSON predicts the same here."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pylibvw
import pytest
from vowpalwabbit import pyvw

from features.config import FeatureGroup, FeatureSpec, FeatureType
from recommender.errors import ExampleError
from recommender.policy.examples import ExampleBuilder, ExampleFeatures
from recommender.policy.vw import VWModel, cb_text
from recommender.service.personalizer.features import action_features, context_row
from recommender.settings.policy import PolicyConfig

ARGS = ["--cb_explore_adf", "--epsilon", "0.2", "--quiet", "-b", "18"]
# Declared groups whose defaults give no features: the examples hold the JSON namespaces only.
USERS = FeatureGroup(entity="user", key="user_id", features={"age": FeatureSpec(type=FeatureType.NUMERIC)})
ITEMS = FeatureGroup(entity="item", key="item_id", features={"price": FeatureSpec(type=FeatureType.NUMERIC)})
BUILDER = ExampleBuilder(USERS, ITEMS)

Hashes = dict[str, list[tuple[int, float]]]


def example_hashes(workspace: pyvw.Workspace, example: pyvw.Example) -> Hashes:
    """Namespace index (as a character) -> sorted (feature index within the weight table, value)."""
    mask = workspace.num_weights() * workspace.get_stride() - 1
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for n in range(pylibvw.example.num_namespaces(example)):
        index = pylibvw.example.namespace(example, n)
        for j in range(pylibvw.example.num_features_in(example, index)):
            feature = pylibvw.example.feature(example, index, j) & mask
            out[chr(index)].append((feature, round(pylibvw.example.feature_weight(example, index, j), 5)))
    return {ns: sorted(features) for ns, features in out.items()}


def vw_json_hashes(shared: dict[str, Any], action: dict[str, Any]) -> list[Hashes]:
    """What real VW's JSON parser makes of a cb_adf example: the shared object with one action in _multi."""
    workspace = pyvw.Workspace(arg_list=[*ARGS, "--json"])
    examples = workspace.parse(json.dumps({**shared, "_multi": [action]}))
    hashes = [example_hashes(workspace, e) for e in examples]
    workspace.finish_example(examples)
    workspace.finish()
    return hashes


def our_hashes(shared: ExampleFeatures, item: ExampleFeatures) -> list[Hashes]:
    """The same through our builder's examples in VW's text format (replay's route; the example API hashes
    like it: tests/recommender/policy/test_examples.py)."""
    workspace = pyvw.Workspace(arg_list=ARGS)
    examples = workspace.parse(cb_text(shared, [item]))
    hashes = [example_hashes(workspace, e) for e in examples]
    workspace.finish_example(examples)
    workspace.finish()
    return hashes


SHAPES = {
    "string: key and value concatenated": {"a": "b"},
    "string with VW's separators": {"a": "b c|d:e\tf"},
    "empty string: the key alone": {"e": ""},
    "numbers (0 is no feature)": {"n": 2.5, "z": 0, "neg": -3, "big": 123456},
    "booleans and null": {"t": True, "f": False, "nothing": None},
    "all-digit names": {"12": 3, "7": "8"},
    "nested object: a namespace named by its key": {"user": {"tier": "gold", "visits": 3}},
    "deeper objects: namespaces by their own keys": {"user": {"geo": {"city": "Oslo", "lat": 59.9}}, "x": 1},
    "array of numbers: positions in the key's namespace": {"v": [1.5, 0, 2, None, 4]},
    "array of objects: their features in the key's namespace": {"ao": [{"x": "y"}, {"w": 3, "in": {"d": 1}}]},
    "metadata keys and _text": {"_meta": 1, "_tag": "t", "_text": "hello big:world  again", "k": "v"},
    "same first letter: one VW namespace index": {"user": {"a": 1}, "urgency": {"b": 2}},
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_each_json_shape_gives_vw_json_parsers_features(shape: dict[str, Any]) -> None:
    action = {"i": {"constant": 1, "id": "mocha"}, "j": [{"roast": "light", "grams": [400, 800]}]}
    ours = our_hashes(BUILDER.shared({}, {" ": shape}), BUILDER.item({" ": {**action, "j": action["j"][0]}}))
    assert ours == vw_json_hashes(shape, action)


TWICE = {"namespace named twice (by nested keys)": {"u": {"geo": {"x": 1}}, "v": {"geo": {"y": 2}}}}


@pytest.mark.parametrize("shape", [*SHAPES.values(), *TWICE.values()], ids=[*SHAPES, *TWICE])
def test_the_example_api_hashes_like_the_text_parser(shape: dict[str, Any]) -> None:
    """Serving's route (examples built through VW's example API, one call for every namespace) gives the very
    features and hashes of replay's route (VW parsing our text lines), a namespace named twice included."""
    shared, item = BUILDER.shared({}, {" ": shape}), BUILDER.item({" ": shape})
    model = VWModel(ARGS)
    built = [
        example_hashes(model._vw, model._example(shared, "shared")),
        example_hashes(model._vw, model._example(item, None)),
    ]
    model.close()
    assert built == our_hashes(shared, item)


def test_personalizer_requests_give_the_features_of_personalizers_logged_examples() -> None:
    """A rank request's features, as the HTTP edge lays them out, are VW's parse of the line Personalizer logged
    for it (VW's dsjson_cb.json shape: context objects in ``c``, an action as ``_tag``, ``i``, ``j``)."""
    context = [{"timeOfDay": "Morning"}, {"device": {"os": "ios", "screen": {"width": 390}}}]
    features = [{"topic": "news", "length": 3}, {"editorial": {"tone": "serious"}, "scores": [0.5, 1]}]
    shared = BUILDER.shared({}, context_row(context))
    item = BUILDER.item(action_features(features, "actions[0].features", "news"))
    logged_context = {"timeOfDay": "Morning", "device": {"os": "ios", "screen": {"width": 390}}}
    logged_action = {"_tag": "news", "i": {"constant": 1, "id": "news"}, "j": features}
    assert our_hashes(shared, item) == vw_json_hashes(logged_context, logged_action)


def test_what_vw_json_parser_refuses_is_refused() -> None:
    workspace = pyvw.Workspace(arg_list=[*ARGS, "--json"])
    with pytest.raises(Exception, match="Unexpected token"):
        workspace.parse(json.dumps({"tags": ["a", "b"], "_multi": [{"x": 1}]}))
    workspace.finish()
    with pytest.raises(ExampleError, match=r"context feature 'tags'\[0\]: expected a number, got str"):
        BUILDER.shared({}, {" ": {"tags": ["a", "b"]}})
    with pytest.raises(ExampleError, match=r"expected a number, got bool"):
        BUILDER.item({" ": {"flags": [True]}})


def test_a_model_vw_trained_on_json_predicts_the_same_on_our_examples(tmp_path: Path) -> None:
    """Models carry over: VW learns from Personalizer-shaped JSON lines (``-q ::``, Personalizer's default);
    loaded here, it gives the same probabilities on the examples our builder makes of the same features."""
    rng = np.random.default_rng(7)
    args = ["--cb_explore_adf", "--epsilon", "0.2", "--quiet", "-b", "18", "--interactions", "::"]
    actions = {a: [{"kind": a, "price": float(p)}] for a, p in (("coffee", 3), ("wine", 9), ("tea", 2))}
    trainer = pyvw.Workspace(arg_list=[*args, "--json"])
    for _ in range(300):
        time = str(rng.choice(["Morning", "Evening"]))
        chosen = int(rng.integers(3))
        best = 0 if time == "Morning" else 1
        multi = [{"_tag": a, "i": {"constant": 1, "id": a}, "j": f} for a, f in actions.items()]
        label = {"_label_cost": -1.0 if chosen == best else 0.0, "_label_probability": 1 / 3, "_labelIndex": chosen}
        examples = trainer.parse(json.dumps({**label, "timeOfDay": time, "_multi": multi}))
        trainer.learn(examples)
        trainer.finish_example(examples)
    path = tmp_path / "personalizer.vw"
    trainer.save(str(path))
    trainer.finish()

    model = VWModel(args, initial_model=path)
    reference = pyvw.Workspace(arg_list=[*args, "--json", "-i", str(path)])
    items = [BUILDER.item(action_features(f, "features", a)) for a, f in actions.items()]
    for time in ("Morning", "Evening"):
        ours = model.predict_cb_uncached(BUILDER.shared({}, context_row([{"timeOfDay": time}])), items)
        multi = [{"_tag": a, "i": {"constant": 1, "id": a}, "j": f} for a, f in actions.items()]
        examples = reference.parse(json.dumps({"timeOfDay": time, "_multi": multi}))
        theirs = np.asarray(reference.predict(examples), dtype=np.float64)  # action order
        reference.finish_example(examples)
        np.testing.assert_allclose(ours, theirs / theirs.sum(), atol=1e-6)
        assert np.argmax(ours) == (0 if time == "Morning" else 1)  # the context counts, through -q ::
    reference.finish()
    model.close()


def _learned_choice(interactions: list[list[str]]) -> dict[str, int]:
    """The best action per time of day a policy with ``interactions`` learns from Personalizer-style rows where
    coffee wins in the morning and wine in the evening (the context is in VW's default namespace, the
    actions' features in ``j``: neither is the Context or Item namespace)."""
    config = PolicyConfig(interactions=interactions, exploration={"algorithm": "epsilon_greedy", "epsilon": 0.2})
    model = VWModel(config.vw_args())
    actions = {a: [{"kind": a}] for a in ("coffee", "wine", "tea")}
    items = [BUILDER.item(action_features(f, "features", a)) for a, f in actions.items()]
    rng = np.random.default_rng(3)
    for _ in range(400):
        time = str(rng.choice(["Morning", "Evening"]))
        chosen = int(rng.integers(3))
        best = 0 if time == "Morning" else 1
        shared = BUILDER.shared({}, context_row([{"timeOfDay": time}]))
        model.learn_cb(shared, items, chosen, -1.0 if chosen == best else 0.0, 1 / 3)
    choice = {}
    for time in ("Morning", "Evening"):
        choice[time] = int(np.argmax(model.predict_cb_uncached(BUILDER.shared({}, context_row([{"timeOfDay": time}])),
                                                               items)))  # fmt: skip
    model.close()
    return choice


def test_interactions_cross_json_namespaces_through_any() -> None:
    assert PolicyConfig(interactions=[["any", "any"]]).interaction_args() == ["--interactions", "::"]
    assert PolicyConfig(interactions=[["context", "any"]]).interaction_args() == ["--interactions", "C:"]
    assert _learned_choice([["any", "any"]]) == {"Morning": 0, "Evening": 1}
    # user x item and context x item cross the declared namespaces only: the JSON context cannot change the
    # ranking (a shared feature adds the same score to every action without a cross).
    default = _learned_choice([["user", "item"], ["context", "item"]])
    assert default["Morning"] == default["Evening"]

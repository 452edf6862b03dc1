"""Separately learned experiment arms: config, the model-store namespace, and two arms with their own learning
settings learning over HTTP on the embedded default (storefront -> /v1/score -> clicks -> joiner -> event log ->
the in-process trainer's arm learners -> each arm's versions -> the workers swap them per arm)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender.errors import ConfigError, ModelStoreError
from recommender.experiments.arm_learning import separately_learned_arms
from recommender.policy.model_store import ModelStore
from recommender.settings.loading import DEFAULT_CONFIG_PATH
from simulators.storefronts import SHAPES
from tests.recommender.served_app import events_in, wait_for, write_config

N_EVENTS = 2_400  # 24 s at 100 requests/s
RATE = 100.0
EXPERIMENT: dict[str, Any] = {
    "name": "own-learners",
    "control": "baseline",
    "arms": [
        {"name": "baseline", "kind": "baseline", "share": 0.2},
        # another exploration family than the shipped squarecb, and another learning rate
        {"name": "eps-fast", "kind": "policy", "share": 0.4, "exploration": {"algorithm": "epsilon_greedy",
         "epsilon": 0.05}, "learning": {"learning_rate": 1.0}},
        # the shipped exploration with a smaller learning rate and no context x item cross
        {"name": "sq-slow", "kind": "policy", "share": 0.4, "learning": {"learning_rate": 0.5},
         "interactions": [["user", "item"]]},
    ],
}  # fmt: skip
LEARNED = ("eps-fast", "sq-slow")


def shipped_document(tmp_path: Path, experiment: dict[str, Any] = EXPERIMENT) -> dict[str, Any]:
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    document["policy"]["model_dir"] = str(tmp_path / "models")
    document["join"]["event_log_dir"] = str(tmp_path / "events")
    document["join"]["reward_wait_time"] = 2
    document["service"]["config_reload_seconds"] = 0.5
    document["experiments"] = {"current": experiment}
    return document


def test_which_arms_learn_separately_and_bad_arm_settings_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", shipped_document(tmp_path))
    assert sorted(arm for _, arm in separately_learned_arms(config)) == sorted(LEARNED)
    # The configured exploration with a field VW does not store in the model: the same weights, shared.
    exploration = {**config.policy.exploration.model_dump(mode="json", by_alias=True), "elim": True}
    shared = {"name": "elim", "kind": "policy", "share": 0.4, "exploration": exploration}
    experiment = {**EXPERIMENT, "arms": [EXPERIMENT["arms"][0], EXPERIMENT["arms"][1], shared]}
    config = write_config(tmp_path / "c.yaml", shipped_document(tmp_path, experiment))
    assert [arm for _, arm in separately_learned_arms(config)] == ["eps-fast"]
    bad = {**EXPERIMENT, "arms": [*EXPERIMENT["arms"][:2], {**EXPERIMENT["arms"][2], "learning": {"cb_type": "ips"}}]}
    with pytest.raises(ConfigError, match=r"experiments.current.arms.2.learning.cb_type: exploration 'squarecb' "
                                          r"supports only cb_type 'mtr'"):  # fmt: skip
        write_config(tmp_path / "c.yaml", shipped_document(tmp_path, bad))
    with pytest.raises(ConfigError, match=r"experiments.current.name: .*must be 1-128 letters"):
        write_config(tmp_path / "c.yaml", shipped_document(tmp_path, {**EXPERIMENT, "name": "../up"}))
    with pytest.raises(ModelStoreError, match="cannot name a folder"):
        ModelStore(tmp_path).arm_store("..", "x")


def _fraction(outcomes: list) -> float:
    """How far the answered probabilities were from uniform (0) to the oracle (1), over ``outcomes``."""
    served = math.fsum(o.p_policy - o.p_uniform for o in outcomes)
    return served / math.fsum(o.p_oracle - o.p_uniform for o in outcomes)


def test_two_arms_with_their_own_learning_settings_learn_and_are_swapped_over_http(serve, tmp_path: Path) -> None:
    served = serve(shipped_document(tmp_path))
    assert served.runtime.trainer is not None and served.runtime.trainer.arms is not None
    storefront = SHAPES["affinity20"].storefront(served.url, seed=5, event_prefix="arm")
    outcomes = storefront.run(N_EVENTS, rate=RATE, max_seconds=N_EVENTS / RATE + 30)
    storefront.close()
    assert len(outcomes) == N_EVENTS
    served.stop()  # learns and publishes what is left: the main model and each arm

    events = wait_for(lambda: (e := events_in(served.config.join.event_log_dir)) and len(e) >= N_EVENTS and e)
    decisions = {int(event_id.split("-")[1]): event.decision for event_id, event in events.items()}
    main = ModelStore(served.config.policy.model_dir)
    main_versions = {v.id for v in main.versions()}
    for arm in LEARNED:
        store = main.arm_store(EXPERIMENT["name"], arm)
        versions = {v.id for v in store.versions()}
        assert len(versions) >= 3 and not versions & main_versions  # its own namespace, its own versions
        final = store.version(store.current_version())
        # The documented choice: every logged event of every arm, with its propensity.
        assert final.event_range is not None and final.event_range.count == N_EVENTS
        assert final.policy["learning"] == served.config.experiments.current.arm(arm).policy_config(
            served.config.policy).learning.model_dump(mode="json")  # fmt: skip
        mine = [o for o in outcomes if decisions[o.index].arm == arm]
        served_versions = {decisions[o.index].model_version.split("+")[0] for o in mine}
        assert len(served_versions & versions) >= 2  # the worker swapped the arm's published versions in
        assert not served_versions & main_versions
        early, late = _fraction(mine[: len(mine) // 4]), _fraction(mine[-len(mine) // 4 :])
        print(f"{arm}: {len(mine)} events, {len(versions)} versions, fraction first quarter {early:.3f}, "
              f"last quarter {late:.3f}")  # fmt: skip
        assert late >= 0.2 and late > early + 0.15, (arm, early, late)
    baseline = [o for o in outcomes if decisions[o.index].arm == "baseline"]
    assert abs(_fraction(baseline[-len(baseline) // 2 :])) < 0.15  # the storefront's order: no learning

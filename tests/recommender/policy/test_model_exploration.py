"""A saved model keeps the exploration its VW reduction was built with (its own gamma_scale): every load --
serving, rollback, import, a model saved before it was recorded -- gives VW that value and serves the
configured one by rescaling the pmf."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender.policy.model_dir import METADATA_FILE
from recommender.policy.model_import import import_vw_model
from recommender.policy.model_store import ModelStore, load_serving_model, open_model_store
from recommender.policy.policy import Policy
from recommender.settings.app import AppConfig
from recommender.settings.loading import DEFAULT_CONFIG_PATH, load_config
from recommender.settings.policy import PolicyConfig, SquareCB
from tests.recommender.policy import synthetic_policy_problem as sp
from tests.recommender.sample_events import default_schema_events

HELD_OUT = sp.contexts(30, seed=55)


def squarecb(gamma_scale: float) -> dict:
    return {"algorithm": "squarecb", "gamma_scale": gamma_scale}


def pmfs(policy: Policy) -> np.ndarray:
    return np.array([policy.predict_pmf(c.user_features, c.context, sp.CANDIDATES) for c in HELD_OUT])


@pytest.fixture()
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models", user_group=sp.USER_GROUP, item_group=sp.ITEM_GROUP)


@pytest.fixture()
def trained() -> Policy:
    config = PolicyConfig.model_validate({"exploration": squarecb(50.0), "learning": {"learning_rate": 1.0}})
    policy = Policy.create(config, sp.USER_GROUP, sp.ITEM_GROUP)
    policy.learn(sp.uniform_events(500, seed=8))
    return policy


def test_a_version_records_the_models_own_exploration_beside_the_served_one(trained, store) -> None:
    served = trained.with_exploration(squarecb(20.0))
    version = store.publish(served)
    assert version.exploration["gamma_scale"] == 20.0  # what was served
    assert version.model_exploration == {**squarecb(50.0), "gamma_exponent": 0.5, "elim": False}
    scale = version.vw_args.index("--gamma_scale")
    assert version.vw_args[scale + 1] == "50.0"  # the command line of the reduction inside model.vw
    document = json.loads((version.path / METADATA_FILE).read_text())
    assert document["model_exploration"]["gamma_scale"] == 50.0

    as_saved = store.load(version.id)  # serves what was served, VW runs the model's own
    assert as_saved.config.exploration == SquareCB(gamma_scale=20.0)
    assert as_saved.model_exploration == SquareCB(gamma_scale=50.0)
    np.testing.assert_allclose(pmfs(as_saved), pmfs(served), atol=1e-6)
    for scale in (50.0, 5.0, 300.0):
        loaded = store.load(version.id, exploration=squarecb(scale))
        assert loaded.model_exploration.gamma_scale == 50.0
        np.testing.assert_allclose(pmfs(loaded), pmfs(trained.with_exploration(squarecb(scale))), atol=1e-6)


def test_a_model_saved_before_its_own_exploration_was_recorded_still_loads(trained, store) -> None:
    """Metadata without ``model_exploration``: the model's own is the stored policy's exploration (no field VW
    stores could change on a trained model then), so VW sees no disagreeing value."""
    version = store.publish(trained)
    path = version.path / METADATA_FILE
    document = json.loads(path.read_text())
    del document["model_exploration"]
    path.write_text(json.dumps(document))
    old = store.version(version.id)
    assert old.recorded_model_exploration is None and old.model_exploration["gamma_scale"] == 50.0
    loaded = store.load(version.id, exploration=squarecb(10.0))
    assert loaded.model_exploration.gamma_scale == 50.0 and loaded.config.exploration.gamma_scale == 10.0
    np.testing.assert_allclose(pmfs(loaded), pmfs(trained.with_exploration(squarecb(10.0))), atol=1e-6)
    # Saving it again records its own exploration.
    loaded.learn(sp.uniform_events(5, seed=9))
    assert store.publish(loaded).model_exploration["gamma_scale"] == 50.0


def test_a_rollback_serves_the_configured_scale_on_the_old_models_own(trained, store) -> None:
    first = store.publish(trained)
    trained.learn(sp.uniform_events(100, seed=10))
    store.publish(trained.with_exploration(squarecb(80.0)))
    store.rollback(first.id)
    rolled_back = store.load(exploration=squarecb(80.0))
    assert rolled_back.model_version == first.id and rolled_back.model_exploration.gamma_scale == 50.0
    assert rolled_back.config.exploration.gamma_scale == 80.0


def config_with(tmp_path: Path, gamma_scale: float) -> AppConfig:
    config = load_config(DEFAULT_CONFIG_PATH)
    policy = config.policy.model_copy(update={"model_dir": str(tmp_path / "models"),
                                              "exploration": SquareCB(gamma_scale=gamma_scale)})  # fmt: skip
    return config.model_copy(update={"policy": policy})


def test_an_imported_model_keeps_the_scale_in_its_file_and_serves_the_configured_one(tmp_path) -> None:
    config = config_with(tmp_path, 20.0)
    elsewhere = Policy.create(config_with(tmp_path, 50.0).policy, config.user_group, config.item_group)
    elsewhere.learn(default_schema_events(200, seed=3))
    model_file = tmp_path / "exported.vw"
    elsewhere.write_model_file(model_file)
    store = open_model_store(config)
    imported = import_vw_model(model_file, store, config)
    assert imported.policy.exploration.gamma_scale == 50.0  # read from the file's own arguments
    assert imported.version.model_exploration["gamma_scale"] == 50.0

    serving, version = load_serving_model(store, config)  # configured 20, the file's own 50
    assert version is not None and version.id == imported.version.id
    assert serving.config.exploration.gamma_scale == 20.0 and serving.model_exploration.gamma_scale == 50.0
    event = default_schema_events(1, seed=4)[0].decision
    want = elsewhere.with_exploration(squarecb(20.0))
    np.testing.assert_allclose(
        serving.predict_pmf(event.user_features, event.context, event.candidate_features),
        want.predict_pmf(event.user_features, event.context, event.candidate_features),
        atol=1e-6,
    )

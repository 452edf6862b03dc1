"""Model versions: publish, metadata, atomic current pointer, schema and corruption checks, rollback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features.config import FeatureSpec, FeatureType
from recommender.errors import (
    ExplorationChangeError,
    ModelCorruptError,
    ModelNotFoundError,
    ModelSchemaMismatchError,
    ModelStoreError,
)
from recommender.policy.model_dir import MODEL_FILE, read_model_dir, write_model_dir
from recommender.policy.model_store import ModelStore
from recommender.policy.policy import Policy
from recommender.settings.policy import PolicyConfig
from recommender.settings.trainer import RetentionConfig
from tests.recommender.policy import synthetic_policy_problem as sp

HELD_OUT = sp.contexts(60, seed=321)


def pmfs(policy: Policy) -> list[np.ndarray]:
    return [policy.predict_pmf(c.user_features, c.context, sp.CANDIDATES) for c in HELD_OUT]


@pytest.fixture()
def trained() -> Policy:
    policy = Policy.create(
        PolicyConfig.model_validate({"exploration": {"algorithm": "epsilon_greedy", "epsilon": 0.2}}),
        sp.USER_GROUP,
        sp.ITEM_GROUP,
    )
    policy.learn(sp.uniform_events(2000, seed=5))
    return policy


@pytest.fixture()
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "models", user_group=sp.USER_GROUP, item_group=sp.ITEM_GROUP)


def test_publish_then_load_gives_identical_pmfs_and_metadata(trained: Policy, store: ModelStore) -> None:
    assert store.current_version() is None and store.versions() == []
    learned_version = trained.model_version
    version = store.publish(trained)
    assert store.current_version() == version.id == trained.model_version  # the policy now reports it
    assert learned_version.endswith("+2000")
    assert version.parent_version == learned_version
    assert version.vw_args == tuple(trained.config.vw_args())
    assert version.schema_hash == trained.builder.schema_hash
    assert version.feature_schema["item"]["price"] == {"type": "numeric", "dim": None, "default": 0.0}
    assert version.event_range is not None and version.event_range.count == 2000
    assert version.event_range.first_event_id == "ev-5-0" and version.event_range.last_event_id == "ev-5-1999"
    assert version.exploration == {"algorithm": "epsilon_greedy", "epsilon": 0.2}
    assert [v.id for v in store.versions()] == [version.id]
    loaded = store.load()
    assert loaded.model_version == version.id and loaded.events_seen == version.event_range
    for a, b in zip(pmfs(trained), pmfs(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    # Nothing half-written is left behind.
    assert sorted(p.name for p in store.root.iterdir()) == [".staging", "current", "versions"]
    assert list((store.root / ".staging").iterdir()) == []


def test_a_loaded_model_keeps_learning_exactly_like_the_original(trained: Policy, store: ModelStore) -> None:
    store.publish(trained)
    loaded = store.load()
    more = sp.uniform_events(500, seed=6)
    trained.learn(more)
    loaded.learn(more)
    # VW saved its optimiser state with the weights, so training resumes where it stopped.
    for a, b in zip(pmfs(trained), pmfs(loaded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert loaded.events_seen.count == 2500


def test_ids_are_content_hashes(trained: Policy, store: ModelStore) -> None:
    first = store.publish(trained)
    again = store.publish(trained)  # same weights, same bytes: the same version
    assert again.id == first.id and len(store.versions()) == 1
    trained.learn(sp.uniform_events(10, seed=9))
    second = store.publish(trained)
    assert second.id != first.id and [v.id for v in store.versions()] == [first.id, second.id]
    assert store.current_version() == second.id


def test_the_same_bytes_published_again_keep_their_metadata_unless_renewed(trained: Policy, store: ModelStore) -> None:
    first = store.publish(trained, checkpoint={"position": 1})
    model_file = (first.path / MODEL_FILE).read_bytes()
    again = store.publish(trained, checkpoint={"position": 2})
    assert again.checkpoint == {"position": 1} and again.created_at == first.created_at
    renewed = store.publish(trained, checkpoint={"position": 3}, renew=True)
    assert renewed.id == first.id and len(store.versions()) == 1
    assert renewed.checkpoint == {"position": 3} and renewed.created_at > first.created_at
    assert store.version(first.id).checkpoint == {"position": 3}  # what a restart or a rollback reads
    assert (first.path / MODEL_FILE).read_bytes() == model_file  # the model file is untouched


def test_rollback_moves_the_pointer(trained: Policy, store: ModelStore) -> None:
    first = store.publish(trained)
    first_pmfs = pmfs(trained)
    trained.learn(sp.uniform_events(300, seed=10))
    second = store.publish(trained)
    assert store.rollback(first.id).id == first.id
    assert store.current_version() == first.id
    for a, b in zip(pmfs(store.load()), first_pmfs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert store.load(second.id).model_version == second.id
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        store.rollback("0" * 20)


def test_publish_without_activation(trained: Policy, store: ModelStore) -> None:
    version = store.publish(trained, make_current=False)
    assert store.current_version() is None and store.version(version.id).id == version.id
    with pytest.raises(ModelNotFoundError, match="no current model version"):
        store.load()


def test_a_model_trained_on_another_schema_is_refused(trained: Policy, store: ModelStore) -> None:
    version = store.publish(trained)
    changed_items = sp.ITEM_GROUP.model_copy(
        update={"features": {**sp.ITEM_GROUP.features, "price": FeatureSpec(type=FeatureType.CATEGORICAL)}}
    )
    with pytest.raises(ModelSchemaMismatchError, match=r"item\.price changed from .*numeric.* to .*categorical"):
        store.load(item_group=changed_items)
    fewer_users = sp.USER_GROUP.model_copy(update={"features": {"segment": sp.USER_GROUP.features["segment"]}})
    other = ModelStore(store.root, user_group=fewer_users, item_group=sp.ITEM_GROUP)
    with pytest.raises(ModelSchemaMismatchError, match=r"user\.embedding was trained on but is not served"):
        other.load(version.id)
    # Without groups to check against, the stored groups are used.
    assert ModelStore(store.root).load().builder.schema_hash == version.schema_hash


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda d: (d / "model.vw").write_bytes(b"garbage"), ModelCorruptError, "checksum mismatch"),
        (lambda d: (d / "model.vw").unlink(), ModelCorruptError, "cannot read the model file"),
        (lambda d: (d / "metadata.json").write_text("{not json"), ModelCorruptError, "unreadable model metadata"),
        (lambda d: (d / "metadata.json").write_text('{"format": 1}'), ModelCorruptError, "invalid model metadata"),
        (lambda d: (d / "metadata.json").unlink(), ModelNotFoundError, "no model metadata"),
    ],
)
def test_damaged_versions_raise_typed_errors(trained: Policy, store: ModelStore, damage, error, message) -> None:
    version = store.publish(trained)
    damage(version.path)
    with pytest.raises(error, match=message):
        store.load()


def test_a_model_file_vw_cannot_read_is_reported_as_corrupt(trained: Policy, store: ModelStore) -> None:
    version = store.publish(trained)
    model = version.path / "model.vw"
    broken = model.read_bytes()[:40]
    model.write_bytes(broken)
    metadata = json.loads((version.path / "metadata.json").read_text())
    import hashlib

    metadata["model_sha256"] = hashlib.sha256(broken).hexdigest()  # a consistent but truncated model
    (version.path / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelCorruptError, match="VW cannot load the model"):
        store.load()


def test_unreadable_pointer_and_bad_ids(store: ModelStore, trained: Policy) -> None:
    store.publish(trained)
    (store.root / "current").write_text("nonsense")
    with pytest.raises(ModelCorruptError, match="unreadable current-version pointer"):
        store.current_version()
    for bad in ("", "../x", ".staging"):
        with pytest.raises(ModelNotFoundError, match="is not a model version id"):
            store.load(bad)


def test_exploration_can_be_set_at_load(trained: Policy, store: ModelStore) -> None:
    store.publish(trained)
    greedy = store.load(exploration={"algorithm": "greedy"})
    assert greedy.exploration_settings() == {"algorithm": "greedy"}
    for a, b in zip(pmfs(trained), pmfs(greedy), strict=True):
        assert int(np.argmax(a)) == int(np.argmax(b)) and b.max() == pytest.approx(1.0)
    with pytest.raises(ExplorationChangeError, match="from 'epsilon_greedy' to 'bagging'"):
        store.load(exploration={"algorithm": "bagging", "bags": 3})


def test_a_cover_model_stored_with_an_explicit_epsilon_still_loads(store: ModelStore) -> None:
    config = {"exploration": {"algorithm": "online_cover", "policies": 2, "epsilon": 0.05}}
    policy = Policy.create(PolicyConfig.model_validate(config), sp.USER_GROUP, sp.ITEM_GROUP)
    policy.learn(sp.uniform_events(300, seed=4))
    version = store.publish(policy)
    assert version.exploration == {"algorithm": "online_cover", "policies": 2, "psi": 1.0, "nounif": False,
                                   "epsilon": 0.05}  # fmt: skip
    loaded = store.load()
    assert loaded.config.exploration.epsilon == 0.05
    for a, b in zip(pmfs(policy), pmfs(loaded), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert b.min() == pytest.approx(0.05 / sp.K, rel=1e-5)
    assert store.load(exploration={**config["exploration"], "epsilon": 0.2}).config.exploration.epsilon == 0.2
    # VW would silently keep the stored 0.05 without --epsilon: asking for the decaying default is refused.
    with pytest.raises(ExplorationChangeError, match=r"exploration\.epsilon from 0\.05 to unset"):
        store.load(exploration={"algorithm": "online_cover", "policies": 2})


def test_a_model_directory_round_trips(trained: Policy, tmp_path) -> None:
    version = write_model_dir(trained, tmp_path / "one")
    loaded = read_model_dir(tmp_path / "one", user_group=sp.USER_GROUP, item_group=sp.ITEM_GROUP)
    assert loaded.model_version == version.id
    for a, b in zip(pmfs(trained), pmfs(loaded), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelStoreError, match="already exists"):
        write_model_dir(trained, tmp_path / "one")


def test_multi_slot_models_round_trip(tmp_path) -> None:
    policy = Policy.create(PolicyConfig.model_validate({"mode": "ccb"}), sp.USER_GROUP, sp.ITEM_GROUP)
    policy.learn(sp.uniform_events(500, seed=12, slots=2))
    store = ModelStore(tmp_path)
    store.publish(policy)
    loaded = store.load()
    ctx = HELD_OUT[0]
    kwargs = dict(
        event_id="slate",
        user_id=None,
        user_features=ctx.user_features,
        context=ctx.context,
        candidate_ids=sp.CANDIDATE_IDS,
        candidate_features=sp.CANDIDATES,
        slots=3,
    )
    a, b = policy.decide(**kwargs), loaded.decide(**kwargs)
    assert a.chosen == b.chosen and np.allclose(a.pmfs, b.pmfs)


def publish_many(store: ModelStore, n: int, *, make_current: bool = True, seed: int = 0) -> list[str]:
    """``n`` distinct versions (the same policy learning a little more before each publish)."""
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    ids = []
    for i in range(n):
        policy.learn(sp.uniform_events(5, seed=seed + i))
        ids.append(store.publish(policy, make_current=make_current).id)
    return ids


def test_prune_keeps_the_newest_the_pinned_the_current_and_the_rollback_targets(store: ModelStore) -> None:
    currents = publish_many(store, 6)  # each made current in turn
    later = publish_many(store, 6, make_current=False, seed=100)  # published, never current
    assert store.current_version() == currents[-1]
    assert store.rollback_targets(2) == [currents[4], currents[3]]
    retention = RetentionConfig(keep_last=2, keep_previous_currents=2, pinned=(currents[0],))
    removed = store.prune(retention)
    kept = {currents[0], currents[3], currents[4], currents[5], later[4], later[5]}
    assert set(removed) == set(currents + later) - kept and len(removed) == 6
    assert {v.id for v in store.versions()} == kept
    assert {p.name for p in (store.root / "versions").iterdir()} == kept
    assert list((store.root / ".staging").iterdir()) == []
    assert store.rollback(currents[3]).id == currents[3]  # a rollback target is intact and loadable
    assert store.load().model_version == currents[3]
    assert store.prune(retention) == []  # nothing more to prune
    # After the rollback, the version rolled back from is itself a rollback target.
    assert store.rollback_targets(2) == [currents[5], currents[4]]


def test_many_publishes_with_pruning_keep_the_store_bounded(store: ModelStore) -> None:
    retention = RetentionConfig(keep_last=4, keep_previous_currents=3)
    policy = Policy.create(PolicyConfig(), sp.USER_GROUP, sp.ITEM_GROUP)
    sizes = []
    for i in range(60):
        policy.learn(sp.uniform_events(5, seed=i))
        store.publish(policy)
        store.prune(retention)
        assert len(store.versions()) <= 4 + 3
        sizes.append(sum(f.stat().st_size for f in store.root.rglob("*") if f.is_file()))
    assert len(store.versions()) == 4
    assert max(sizes[10:]) < 1.2 * min(sizes[10:]), sizes  # the disk used stops growing
    assert len(store.history()) <= 100

"""Personalizer's administration client (azure-ai-personalizer) against the running service: what maps onto
our settings changes them the way a config-file edit does; what does not map is refused, saying why."""

from __future__ import annotations

import pytest
import yaml
from azure.ai.personalizer import PersonalizerAdministrationClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from recommender.policy.examples import ExampleBuilder
from recommender.policy.model_dir import MODEL_FILE
from recommender.policy.model_store import open_model_store
from recommender.policy.policy import Policy, content_id
from recommender.policy.vw import VWModel
from tests.recommender.served_app import events_in, wait_for
from tests.recommender.service.personalizer.conftest import KEY, personalizer_document


def test_service_configuration_reads_and_changes_the_followed_settings(served, admin, client):
    config = admin.get_service_configuration()
    assert config["rewardWaitTime"] == "PT1S" and config["explorationPercentage"] == 0.1
    assert config["learningMode"] == "Online" and config["logRetentionDays"] == -1
    changed = admin.update_service_configuration({**config, "explorationPercentage": 0.3, "defaultReward": -0.5,
                                                  "learningMode": "Apprentice"})  # fmt: skip
    assert changed["explorationPercentage"] == 0.3 and changed["learningMode"] == "Apprentice"
    # Applied live, as a config-file edit is (the file is the mechanism):
    snapshot = served.runtime.snapshot
    assert snapshot.config.policy.exploration.epsilon == 0.3 and snapshot.config.trainer.mode == "apprentice"
    assert snapshot.config.join.default_reward == -0.5
    written = yaml.safe_load(served.runtime.config_path.read_text())
    assert written["policy"]["exploration"]["epsilon"] == 0.3 and written["trainer"]["mode"] == "apprentice"
    # Apprentice mode serves the baseline: the first action, with probability 1.
    ranked = client.rank({"actions": [{"id": "first", "features": [{"a": 1}]}, {"id": "second", "features": []}],
                          "eventId": "apprentice-1"})  # fmt: skip
    assert ranked["rewardActionId"] == "first" and ranked["ranking"][0] == {"id": "first", "probability": 1.0}
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get("apprentice-1"))
    assert event.rewards == (-0.5,) and event.reward_is_default == (True,)


def test_unmapped_service_settings_and_operations_are_refused_saying_why(admin):
    config = admin.get_service_configuration()
    with pytest.raises(HttpResponseError, match="logRetentionDays: only -1 is supported"):
        admin.update_service_configuration({**config, "logRetentionDays": 30})
    with pytest.raises(HttpResponseError, match="rewardWaitTime: 'soon' is not an ISO 8601 duration"):
        admin.update_service_configuration({**config, "rewardWaitTime": "soon"})
    with pytest.raises(HttpResponseError, match="deleting the logs is not supported"):
        admin.delete_logs()
    # Evaluations run (test_evaluations.py); applying one's policy is a configuration change, refused saying how.
    with pytest.raises(HttpResponseError, match="applying an evaluation's policy .* `recommender optimize "
                                                "--write-config`"):  # fmt: skip
        admin.apply_from_evaluation({"evaluationId": "e1", "policyName": "p"})


def test_learning_policy_get_update_reset(served, admin):
    policy = admin.get_policy()
    assert "--cb_explore_adf" in policy["arguments"] and "--epsilon 0.1" in policy["arguments"]
    updated = admin.update_policy({"name": "p", "arguments": policy["arguments"].replace("--epsilon 0.1",
                                                                                        "--epsilon 0.25")})  # fmt: skip
    assert "--epsilon 0.25" in updated["arguments"]
    assert served.runtime.snapshot.config.policy.exploration.epsilon == 0.25
    # One mapping of learning policies (settings.vw_arguments): another spelling of the same policy is the same.
    respelled = policy["arguments"].replace("--epsilon 0.1", "--epsilon=0.25").replace(" -l ", " --learning_rate ")
    assert admin.update_policy({"name": "p", "arguments": respelled})["arguments"] == updated["arguments"]
    with pytest.raises(HttpResponseError, match=r"only --epsilon .* can change while the service runs; differs: "
                                                r"exploration \(.*'epsilon_greedy'.* -> .*'bagging'"):  # fmt: skip
        admin.update_policy({"name": "p", "arguments": policy["arguments"] + " --bag 5"})
    with pytest.raises(HttpResponseError, match=r"differs: learning.cb_type \('mtr' -> 'dr'\)"):
        admin.update_policy({"name": "p", "arguments": policy["arguments"].replace("mtr", "dr")})
    with pytest.raises(HttpResponseError, match="not supported by the policy section: --marginal A; --coin"):
        admin.update_policy({"name": "p", "arguments": policy["arguments"] + " --marginal A --coin"})
    reset = admin.reset_policy()
    assert "--epsilon 0.1" in reset["arguments"]  # epsilon_greedy's default
    assert served.runtime.snapshot.config.policy.exploration.epsilon == 0.1


def test_model_export_and_log_properties(served, admin, client):
    with pytest.raises(ResourceNotFoundError):
        admin.get_log_properties()  # nothing logged yet
    client.rank({"actions": [{"id": "a", "features": []}], "eventId": "logged-1"})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get("logged-1"))
    dates = admin.get_log_properties()["dateRange"]
    assert dates["from"] <= dates["to"]
    served.runtime.trainer.stop(publish=True)  # publish what was learned: a current version to export
    model = b"".join(admin.export_model())
    store = open_model_store(served.config)
    assert model == (store.version(store.current_version()).path / MODEL_FILE).read_bytes()  # VW's own file
    assert "creationTime" in admin.get_model_properties()


def test_model_import_and_reset_publish_versions_that_serving_swaps_in(served, admin, client, tmp_path):
    client.rank({"actions": [{"id": "a", "features": []}], "eventId": "before-import"})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get("before-import"))
    served.runtime.trainer.stop(publish=True)
    store = open_model_store(served.config)
    learned = store.version(store.current_version())
    # A model trained elsewhere with the same arguments (as a Personalizer export is a VW model file).
    builder = ExampleBuilder(served.config.user_group, served.config.item_group)
    other = VWModel(served.config.policy.vw_args())
    items = [builder.item({" ": {"i": {"constant": 1, "id": a}}}) for a in ("a", "b")]
    for _ in range(20):
        other.learn_cb(builder.shared({}, {" ": {"timeOfDay": "Morning"}}), items, 1, -1.0, 0.5)
    other.save(tmp_path / "elsewhere.vw")
    other.close()
    model_bytes = (tmp_path / "elsewhere.vw").read_bytes()
    assert admin.import_model(model_bytes) is None
    imported = store.version(store.current_version())
    assert imported.id != learned.id  # a new version (VW's file as the model store saves it)
    assert imported.checkpoint == learned.checkpoint  # learning continues from where it was, not the log's start
    wait_for(lambda: served.runtime.snapshot.policy.model_version == imported.id)
    assert b"".join(admin.export_model()) == (imported.path / MODEL_FILE).read_bytes()

    assert admin.reset_model() is None
    fresh = Policy.create(served.config.policy, served.config.user_group, served.config.item_group)
    expected = content_id(fresh.model_bytes())
    fresh.close()
    assert store.current_version() == expected and store.version(expected).checkpoint == learned.checkpoint
    wait_for(lambda: served.runtime.snapshot.policy.model_version == expected)

    with pytest.raises(HttpResponseError) as refused:
        admin.import_model(b"not a VW model")
    assert refused.value.status_code == 400 and refused.value.error.code == "InvalidModelFile"
    assert store.current_version() == expected  # a refused file changes nothing


def test_changes_go_into_the_followed_layer_and_leave_the_file_it_extends_as_written(serve, tmp_path):
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text("# the shipped settings, comments included\n" + yaml.safe_dump(personalizer_document(tmp_path)))
    written = shipped.read_bytes()
    served = serve({"extends": shipped.name})
    with PersonalizerAdministrationClient(served.url, AzureKeyCredential(KEY), retry_total=0) as admin:
        config = admin.get_service_configuration()
        admin.update_service_configuration({**config, "explorationPercentage": 0.3})
    assert served.runtime.snapshot.config.policy.exploration.epsilon == 0.3
    assert shipped.read_bytes() == written
    layer = yaml.safe_load(served.runtime.config_path.read_text())
    assert layer == {"extends": shipped.name, "policy": {"exploration": {"epsilon": 0.3}}}


def test_a_second_reset_starts_from_the_log_position_at_that_reset(served, admin, client):
    """The fresh model's bytes are always the same version: a second reset must renew its checkpoint, or the
    trainer, following the reset, would learn again everything joined since the first reset."""
    trainer = served.runtime.trainer
    trainer.stop(publish=False)  # cycles run here, one at a time
    store = open_model_store(served.config)
    client.rank({"actions": [{"id": "a", "features": []}], "eventId": "before-first-reset"})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get("before-first-reset"))
    assert trainer.run_once(publish=True).learned == 1
    assert admin.reset_model() is None
    fresh = store.current_version()
    first_reset = store.version(fresh)

    # Other actions than before the first reset: learning them on the fresh model gives other bytes.
    client.rank({"actions": [{"id": "b", "features": [{"size": "large"}]}], "eventId": "between-resets"})
    wait_for(lambda: events_in(served.config.join.event_log_dir).get("between-resets"))
    assert trainer.run_once(publish=True).learned == 1  # on top of the reset model: a new version
    assert store.current_version() != fresh

    assert admin.reset_model() is None
    assert store.current_version() == fresh  # the same bytes, the same id
    second_reset = store.version(fresh)
    assert second_reset.checkpoint != first_reset.checkpoint and second_reset.created_at > first_reset.created_at
    report = trainer.run_once(publish=True)  # follows the reset: nothing joined since it is learned again
    assert report.learned == 0 and trainer.version == fresh

"""Personalizer's own SDKs, installed from PyPI, against the running service over HTTP: the calls a storefront
written for Azure Personalizer makes, with only the endpoint and the key changed."""

from __future__ import annotations

import pytest
from azure.ai.personalizer import PersonalizerClient
from azure.cognitiveservices.personalizer.models import ErrorResponseException, RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from msrest.exceptions import HttpOperationError

from tests.recommender.served_app import events_in, wait_for

ACTIONS = [
    {"id": "news", "features": [{"topic": "news", "length": 3}, {"editorial": {"tone": "serious"}}]},
    {"id": "sports", "features": [{"topic": "sports", "length": 1, "tags": {"live": True, "football": True}}]},
    {"id": "music", "features": [{"topic": "music", "embedding": [0.5, -1.0, 0.0]}]},
]
CONTEXT = [{"timeOfDay": "Morning"}, {"device": {"os": "ios", "screen": {"width": 390}}}]


def test_rank_reward_with_the_current_sdk(served, client):
    ranked = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "sdk-rank-1"})
    assert ranked["eventId"] == "sdk-rank-1"
    assert sorted(a["id"] for a in ranked["ranking"]) == ["music", "news", "sports"]
    assert ranked["rewardActionId"] == ranked["ranking"][0]["id"]
    assert abs(sum(a["probability"] for a in ranked["ranking"]) - 1.0) < 1e-6
    assert client.reward("sdk-rank-1", {"value": 0.75}) is None

    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get("sdk-rank-1"))
    decision = event.decision
    assert event.rewards == (0.75,) and event.reward_is_default == (False,)
    # Logged exactly as used, as Personalizer logged them: the merged context objects as the example's own
    # object (key " ", VW's default namespace); each action's id and constant in namespace i, its merged
    # features in j, beside the store's declared features.
    assert decision.context == {" ": {"timeOfDay": "Morning", "device": {"os": "ios", "screen": {"width": 390}}}}
    news = decision.candidate_features[decision.candidate_ids.index("news")]
    assert news[" "] == {"i": {"constant": 1, "id": "news"},
                         "j": {"topic": "news", "length": 3, "editorial": {"tone": "serious"}}}  # fmt: skip
    assert decision.candidate_ids == ("news", "sports", "music")  # request order: the first is the baseline


def test_excluded_actions_are_never_chosen_and_ranked_last_at_zero(client):
    for i in range(20):
        ranked = client.rank({"actions": ACTIONS, "excludedActions": ["news", "unknown-id"], "eventId": f"ex-{i}"})
        assert ranked["rewardActionId"] in {"sports", "music"}
        assert ranked["ranking"][-1] == {"id": "news", "probability": 0.0}


def test_deferred_activation(served, client):
    client.rank({"actions": ACTIONS, "eventId": "deferred-on", "deferActivation": True})
    client.rank({"actions": ACTIONS, "eventId": "deferred-off", "deferActivation": True})
    client.activate("deferred-on")
    client.reward("deferred-on", {"value": 1.0})
    client.reward("deferred-off", {"value": 1.0})  # accepted while pending; counts only if activated in time
    client.rank({"actions": ACTIONS, "eventId": "plain"})
    log = wait_for(lambda: (e := events_in(served.config.join.event_log_dir)) and "plain" in e and e)
    wait_for(lambda: "deferred-on" in (log := events_in(served.config.join.event_log_dir)) and log)
    log = events_in(served.config.join.event_log_dir)
    assert log["deferred-on"].decision.deferred and log["deferred-on"].rewards == (1.0,)
    assert "deferred-off" not in log  # never activated: not logged, not learned (as Personalizer ignored it)
    with pytest.raises(ResourceNotFoundError, match="no pending decision 'never-ranked'"):
        client.activate("never-ranked")


def test_a_bad_request_raises_the_sdks_own_error_with_our_message(client, old_client):
    bad = {"actions": [{"id": "a", "features": [{"sizes": [1, "L"]}]}]}  # VW's JSON parser refuses it too
    with pytest.raises(HttpResponseError) as raised:
        client.rank(bad)
    assert raised.value.status_code == 400
    assert raised.value.error.code == "InvalidRankRequest"
    assert (
        "actions[0].features[0].sizes[1]: an array holds numbers (a vector) or objects; a string in an array is "
        "refused by VW's JSON parser" in str(raised.value)
    )
    with pytest.raises(HttpResponseError, match=r"value: 2\.0 is outside the accepted range \[-1\.0, 1\.0\]"):
        client.reward("whatever", {"value": 2.0})
    with pytest.raises(ErrorResponseException) as old_raised:
        duplicate = [RankableAction(id="a", features=[{}]), RankableAction(id="a", features=[])]
        old_client.rank(RankRequest(actions=duplicate))
    assert old_raised.value.error.error.code == "InvalidRankRequest"
    assert old_raised.value.error.error.message == "actions[1].id: duplicate action id 'a' (also actions[0])"


def test_the_subscription_key_is_our_api_key(served):
    with PersonalizerClient(served.url, AzureKeyCredential("wrong-key-0123456789"), retry_total=0) as stranger:
        stranger.rank({"actions": ACTIONS})  # rank is open unless service.protect_score, like /v1/score
        with pytest.raises(ClientAuthenticationError, match="a valid API key is required"):
            stranger.reward("any-event", {"value": 1.0})


def test_rank_reward_activate_with_the_older_sdk(served, old_client):
    request = RankRequest(
        context_features=CONTEXT,
        actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS],
        excluded_actions=["sports"],
        event_id="old-sdk-1",
        defer_activation=True,
    )
    ranked = old_client.rank(request)
    assert ranked.event_id == "old-sdk-1" and ranked.reward_action_id in {"news", "music"}
    assert [a.id for a in ranked.ranking][-1] == "sports" and ranked.ranking[-1].probability == 0.0
    old_client.events.activate("old-sdk-1")
    old_client.events.reward("old-sdk-1", 0.5)
    event = wait_for(lambda: events_in(served.config.join.event_log_dir).get("old-sdk-1"))
    assert event.rewards == (0.5,) and event.decision.deferred
    with pytest.raises(HttpOperationError):
        old_client.events.reward("old-sdk-unknown", 0.5)


def test_multi_slot_rank_reward_activate(served_ccb):
    actions = [*ACTIONS, {"id": "film", "features": [{"topic": "film"}]}]
    slots = [{"id": "Main", "baselineAction": "music", "features": [{"size": "large"}]},
             {"id": "Side", "baselineAction": "news"}]  # fmt: skip
    with PersonalizerClient(served_ccb.url, AzureKeyCredential("p" * 8 + "-0123456789abcdef"), retry_total=0) as sdk:
        ranked = sdk.rank_multi_slot({"contextFeatures": CONTEXT, "actions": actions, "slots": slots,
                                      "eventId": "ms-1", "deferActivation": True})  # fmt: skip
        assert ranked["eventId"] == "ms-1" and [s["id"] for s in ranked["slots"]] == ["Main", "Side"]
        chosen = [s["rewardActionId"] for s in ranked["slots"]]
        assert len(set(chosen)) == 2 and set(chosen) <= {a["id"] for a in actions}
        sdk.activate_multi_slot("ms-1")
        sdk.reward_multi_slot("ms-1", {"reward": [{"slotId": "Side", "value": 1.0}, {"slotId": "Main", "value": -0.5}]})
        with pytest.raises(HttpResponseError, match="reward\\[0\\].slotId: decision 'ms-1' has no slot 'Footer'"):
            sdk.reward_multi_slot("ms-1", {"reward": [{"slotId": "Footer", "value": 1.0}]})
    event = wait_for(lambda: events_in(served_ccb.config.join.event_log_dir).get("ms-1"))
    assert event.rewards == (-0.5, 1.0)  # by position: Main is slot 0, Side slot 1
    # The slots' baselines come first, in slot order: apprentice mode shows them, offline evaluation compares.
    assert event.decision.candidate_ids[:2] == ("music", "news")
    assert [event.decision.candidate_ids[c] for c in event.decision.chosen] == chosen


def test_openapi_documents_the_personalizer_routes(served, client):
    document = served.client().get("/openapi.json").json()
    rank = document["paths"]["/personalizer/{apiVersion}/rank"]["post"]
    assert "201" in rank["responses"] and rank["parameters"][0]["schema"]["enum"][0] == "v1.0"
    assert "/personalizer/{apiVersion}/multislot/events/{eventId}/reward" in document["paths"]
    assert document["components"]["schemas"]["PersonalizerRankRequest"]["properties"]["actions"]["maxItems"] == 500
    # The administration routes, and our /v1/reward body stays ours beside Personalizer's.
    admin = document["paths"]["/personalizer/{apiVersion}/model"]
    assert sorted(admin) == ["delete", "get", "put"]
    assert "application/octet-stream" in admin["put"]["requestBody"]["content"]
    assert sorted(document["paths"]["/personalizer/{apiVersion}/configurations/policy"]) == ["delete", "get", "put"]
    schemas = document["components"]["schemas"]
    assert "reward" in schemas["RewardRequest"]["properties"]
    assert "value" in schemas["PersonalizerRewardRequest"]["properties"]


def test_unknown_paths_under_personalizer_get_its_error_shape(served, client):
    with pytest.raises(HttpResponseError, match="no Personalizer operation at '/personalizer/v9.9/rank'") as raised:
        client.send_request(HttpRequest("POST", f"{served.url}/personalizer/v9.9/rank", json={})).raise_for_status()
    assert raised.value.status_code == 404 and raised.value.error.code == "ResourceNotFound"
    response = served.client().get("/personalizer/v1.0/rank")
    assert response.status == 405 and response.json()["error"]["code"] == "MethodNotAllowed"


def test_multi_slot_needs_a_multi_slot_policy(client):
    slots = [{"id": "Main", "baselineAction": "news"}, {"id": "Side", "baselineAction": "music"}]
    body = {"actions": ACTIONS, "slots": slots}
    with pytest.raises(HttpResponseError, match="slots: 2 slots need a multi-slot policy") as raised:
        client.rank_multi_slot(body)
    assert raised.value.error.code == "InvalidMultiSlotApiAccess"

"""Personalizer-API events take the one path of /v1: the Parquet event log, the trainer, `recommender evaluate`,
and offline replay."""

from __future__ import annotations

import json

from recommender.cli.main import main
from recommender.policy.examples import ExampleBuilder, cost_from_reward
from recommender.policy.model_store import open_model_store
from recommender.policy.vw import cb_text
from recommender.service.personalizer.features import action_features, context_row
from simulators.readers.event_log import read_event_log
from simulators.replay_log import ReplayLog
from tests.recommender.served_app import events_in, wait_for

N = 60


def test_rank_and_reward_events_are_logged_learned_and_evaluated(served, client, capsys):
    for i in range(N):
        time_of_day = "Morning" if i % 2 else "Evening"
        ranked = client.rank({
            "contextFeatures": [{"timeOfDay": time_of_day}],
            "actions": [{"id": "coffee", "features": [{"kind": "drink", "hot": True}]},
                        {"id": "wine", "features": [{"kind": "drink", "hot": False}]}],
            "eventId": f"e2e-{i}",
        })  # fmt: skip
        best = "coffee" if time_of_day == "Morning" else "wine"
        client.reward(f"e2e-{i}", {"value": 1.0 if ranked["rewardActionId"] == best else 0.0})
    log_dir = served.config.join.event_log_dir
    wait_for(lambda: len([k for k in events_in(log_dir) if k.startswith("e2e-")]) == N, timeout=20)

    served.runtime.trainer.stop(publish=True)
    store = open_model_store(served.config)
    learned = store.version(store.current_version()).event_range
    assert learned is not None and learned.count >= N  # the trainer learned from them

    capsys.readouterr()
    code = main(["evaluate", "--log", str(log_dir), "--target", "uniform", "--estimators", "ipw,snipw",
                 "--bootstrap", "0", "--json"])  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["log"]["n_rows"] == N and document["read_report"]["rows_kept"] == N


REPLAYED_CONTEXTS = [
    [{"timeOfDay": "Morning", "visits": 3}, {"device": {"os": "ios", "screen": {"width": 390, "dark": True}}}],
    [{"timeOfDay": "Evening", "history": [0.5, None, 0, 2]}, {"_text": "rainy day", "_meta": "dropped"}],
]
REPLAYED_ACTIONS = [
    {"id": "coffee", "features": [{"kind": "drink", "hot": True}, {"origin": [{"country": "BR"}, {"altitude": 1.2}]}]},
    {"id": "wine", "features": [{"kind": "drink", "hot": False, "price": 9}]},
    {"id": "plain", "features": []},
]


def test_replay_of_logged_schema_free_rows_gives_the_examples_serving_built(served, client, tmp_path):
    """Offline replay (``recommender optimize``'s ReplayLog over our event log) rebuilds exactly the VW
    examples the rank's features gave when served: they survive the log as used."""
    for i, context in enumerate(REPLAYED_CONTEXTS):
        client.rank({"contextFeatures": context, "actions": REPLAYED_ACTIONS, "eventId": f"replay-{i}"})
        client.reward(f"replay-{i}", {"value": 1.0})
    log_dir = served.config.join.event_log_dir
    wait_for(lambda: len([k for k in events_in(log_dir) if k.startswith("replay-")]) == len(REPLAYED_CONTEXTS))

    config = served.config
    replay = ReplayLog.build(read_event_log(log_dir).bandit, tmp_path / "replay.vw", user_group=config.user_group,
                             item_group=config.item_group)  # fmt: skip
    builder = ExampleBuilder(config.user_group, config.item_group)
    rows = replay.bandit
    expected = []
    for i in range(rows.n_rounds):
        context = REPLAYED_CONTEXTS[int(rows.decisions[int(rows.round_id[i])].decision.event_id[len("replay-") :])]
        served_items = [
            builder.item(action_features(a["features"], f"actions[{j}].features", a["id"]))
            for j, a in enumerate(REPLAYED_ACTIONS)
        ]
        label = (int(rows.action[i]), cost_from_reward(rows.reward[i]), float(rows.pscore[i]))
        expected.append("\n".join(cb_text(builder.shared({}, context_row(context)), served_items, label)) + "\n\n")
    assert replay.path.read_text(encoding="utf-8") == "".join(expected)
    assert "|device osios" in expected[0] and "|  rainy day" in expected[1] and "|history 0:0.5 2:2.0" in expected[1]

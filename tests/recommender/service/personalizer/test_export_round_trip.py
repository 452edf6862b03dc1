"""Personalizer-API traffic, our event log, ``recommender export --format dsjson``, and back: real VW reading the
export with ``--dsjson`` parses exactly the features serving encoded (the same namespaces, hashes and values),
and the export reads back to the same rows and estimates as the log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from azure.ai.personalizer import PersonalizerClient
from azure.core.credentials import AzureKeyCredential
from vowpalwabbit import pyvw

from recommender.policy.examples import ExampleBuilder
from recommender.policy.vw import cb_text
from simulators import evaluate_log
from simulators.dsjson_export import export_dsjson
from simulators.readers import read_log
from tests.recommender.policy.test_json_features import ARGS, Hashes, example_hashes
from tests.recommender.served_app import events_in, wait_for
from tests.recommender.service.personalizer.conftest import KEY, personalizer_document

EVENTS = 40
# A team coming from Personalizer declares nothing: groups whose defaults give no features, so every feature
# of a decision is one of the request's own.
GROUPS = {"users": {"entity": "user", "key": "user_id", "features": {"age": {"type": "numeric"}}},
          "items": {"entity": "item", "key": "item_id", "features": {"price": {"type": "numeric"}}}}  # fmt: skip
TOPICS = ["news", "sports", "music", "film", "travel"]


def _request(i: int) -> dict:
    actions = [{"id": topic, "features": [{"topic": topic, "length": 1 + (i + j) % 4},
                                         {"meta": {"fresh": (i + j) % 2 == 0, "score": [0.5 * j, 1.0]}}]}
               for j, topic in enumerate(TOPICS)]  # fmt: skip
    context = [{"timeOfDay": ["Morning", "Evening"][i % 2]}, {"device": {"os": ["ios", "android", "web"][i % 3]}}]
    return {"contextFeatures": context, "actions": actions, "eventId": f"rt-{i}"}


def _vw_parse(args: list[str], text: str | list[str]) -> list[Hashes]:
    workspace = pyvw.Workspace(arg_list=args)
    examples = workspace.parse(text)
    hashes = [example_hashes(workspace, e) for e in examples]
    workspace.finish_example(examples)
    workspace.finish()
    return hashes


def test_personalizer_traffic_exports_to_dsjson_that_vw_parses_as_served(serve, tmp_path: Path) -> None:
    document = personalizer_document(tmp_path)
    document["features"].update(groups=GROUPS, sample_catalog=False)
    served = serve(document)
    with PersonalizerClient(served.url, AzureKeyCredential(KEY), retry_total=0) as client:
        for i in range(EVENTS):
            ranked = client.rank(_request(i))
            if ranked["rewardActionId"] in ("music", "film"):
                client.reward(ranked["eventId"], {"value": 1.0 if i % 3 else 0.5})
    log_dir = served.config.join.event_log_dir
    events = wait_for(lambda: (e := events_in(log_dir)) and len(e) == EVENTS and e, timeout=20)

    out = tmp_path / "export.dsjson"
    assert export_dsjson(log_dir, out).decisions == EVENTS
    builder = ExampleBuilder(served.config.user_group, served.config.item_group)
    for text in out.read_text().splitlines():
        line = json.loads(text)
        decision = events[line["EventId"]].decision
        # Personalizer's layout: the context's objects in c, each action's i and j beside its _tag.
        assert line["c"]["timeOfDay"] in ("Morning", "Evening") and set(line["c"]["_multi"][0]) >= {"_tag", "i", "j"}
        served_text = cb_text(builder.shared(decision.user_features, decision.context),
                              [builder.item(row) for row in decision.candidate_features])  # fmt: skip
        served_hashes = _vw_parse(ARGS, served_text)
        assert sum(len(ns) for ns in served_hashes[0].values()) >= 2  # the context's features, not nothing
        assert _vw_parse([*ARGS, "--dsjson"], text) == served_hashes, decision.event_id

    # Read back: the same rows, feature matrices and estimates as the log itself.
    a, b = read_log(log_dir).bandit, read_log(out).bandit
    for name in ("context", "action", "pscore", "reward", "logging_dist", "candidate_items", "action_context"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.context.shape[1] > 0 and a.action_context.shape[1] > 0
    targets, estimators = ["uniform", "greedy", "epsilon:0.1"], ["ipw", "snipw", "dr"]
    ea, eb = evaluate_log(log_dir, targets, estimators), evaluate_log(out, targets, estimators)
    for x, y in zip(ea.report.evaluations, eb.report.evaluations, strict=True):
        assert [(e.estimator, e.value) for e in x.estimates] == [(e.estimator, e.value) for e in y.estimates]

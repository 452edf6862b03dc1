"""Personalizer's offline evaluations and feature importances through its administration SDK, mapped onto
``recommender optimize`` runs over the service's event log (a small log of a real VW policy's decisions)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from recommender.service.personalizer.evaluations import personalizer_feature_name
from tests.recommender.served_app import wait_for
from tests.simulators.log_files import write_policy_log

START, END = datetime(2024, 4, 30, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)
EPSILON = "--cb_explore_adf --epsilon 0.05 --cb_type mtr -l 2 --power_t 0.5 -q UI -q CI"


def _finished(get):
    """Poll a job until it is no longer running (each run is one `recommender optimize`, a few seconds)."""
    return wait_for(lambda: (job := get()) and job["status"] != "Running" and job, timeout=90, interval=0.5)


def test_an_evaluation_and_a_feature_importance_through_the_sdk(served, admin, tmp_path: Path) -> None:
    write_policy_log(served.config, Path(served.config.join.event_log_dir), tmp_path / "logged-models", 200)
    body = {"name": "epsilon vs squarecb", "startTime": START, "endTime": END,
            "policies": [{"name": "epsilon 0.05", "arguments": EPSILON}]}  # fmt: skip
    assert admin.create_evaluation("eval-1", body) is None
    with pytest.raises(ResourceExistsError, match="'eval-1' exists already"):
        admin.create_evaluation("eval-1", body)
    with pytest.raises(ResourceExistsError, match="'eval-1' is running; one runs at a time"):
        admin.create_feature_importance("fi-1", {"name": "fi", "startTime": START, "endTime": END})
    evaluation = _finished(lambda: admin.get_evaluation("eval-1", start_time=START, end_time=END))
    assert evaluation["status"] == "Succeeded", evaluation
    assert (evaluation["id"], evaluation["name"], evaluation["evaluationType"]) == ("eval-1", body["name"], "Manual")
    by_name = {v["name"]: v for v in evaluation["content"]["value"]}
    assert {by_name[n]["policySource"] for n in ("logged", "baseline", "uniform")} == {"Online", "Baseline", "Random"}
    requested = by_name["epsilon 0.05"]
    assert requested["policySource"] == "Custom" and requested["arguments"] == EPSILON
    low, high = requested["summary"]["confidenceInterval"]
    assert low <= requested["summary"]["expectedReward"] <= high
    assert requested["timeseries"]["data"] and "timeStamp" in requested["timeseries"]["data"][0]
    assert "--cb_explore_adf" in by_name["configured"]["arguments"]
    assert [e["id"] for e in admin.list_evaluations()] == ["eval-1"]

    admin.create_feature_importance("fi-1", {"name": "fi", "startTime": START, "endTime": END})
    importance = _finished(lambda: admin.get_feature_importance("fi-1"))
    assert importance["status"] == "Succeeded", importance
    scores = importance["featureScores"]
    assert {s["namespace"] for s in scores} >= {"user", "item"}
    assert any(s["namespace"] == "user" and s["featureName"] == "preferred_categories" for s in scores)
    assert all(isinstance(s["score"], float) for s in scores)
    assert [f["id"] for f in admin.list_feature_importances()] == ["fi-1"]

    admin.delete_evaluation("eval-1")
    admin.delete_feature_importance("fi-1")
    with pytest.raises(ResourceNotFoundError):
        admin.get_evaluation("eval-1", start_time=START, end_time=END)
    assert list(admin.list_evaluations()) == [] and list(admin.list_feature_importances()) == []


def test_bad_evaluations_are_refused_naming_what_is_wrong(served, admin) -> None:
    bad = {"name": "x", "startTime": START, "endTime": END, "policies": [{"name": "p", "arguments": "--marginal A"}]}
    with pytest.raises(HttpResponseError, match=r"policies\[0\].arguments: .*--marginal A") as raised:
        admin.create_evaluation("bad-1", bad)
    assert raised.value.status_code == 400
    with pytest.raises(HttpResponseError, match="endTime: must be after startTime"):
        admin.create_evaluation("bad-2", {"name": "x", "startTime": END, "endTime": START})
    # A time whose UTC instant is past the year 9999 (as the schema fuzzing found): a 400 naming the field.
    for kind in ("evaluation", "feature_importance"):
        create = getattr(admin, f"create_{kind}")
        with pytest.raises(HttpResponseError, match="endTime.*outside the years 1 to 9999") as raised:
            create("bad-3", {"name": "x", "startTime": START, "endTime": "9999-12-31T23:00:00-05:00"})
        assert raised.value.status_code == 400
    with pytest.raises(HttpResponseError, match="id: letters, digits"):
        admin.create_evaluation(".hidden", {"name": "x", "startTime": START, "endTime": END})
    # An empty log: the run fails, and says why.
    admin.create_evaluation("empty", {"name": "x", "startTime": START, "endTime": END})
    failed = _finished(lambda: admin.get_evaluation("empty", start_time=START, end_time=END))
    assert failed["status"] == "Failed" and failed["description"]


@pytest.mark.parametrize(("key", "expected"), [
    ("user.preferred_categories", ("user", "preferred_categories")), ("item", ("item", "")),
    ("context.device", ("device", "")), ("action.product", ("product", "")), ("context.user.geo", ("user", "geo")),
])  # fmt: skip
def test_feature_importance_keys_are_named_as_personalizer_names_them(key: str, expected: tuple[str, str]) -> None:
    assert personalizer_feature_name(key) == expected
